-- wrk script: cycle through request paths read from a file, one per line.
--
--   wrk -t2 -c8 -d15s --latency -s bench/lua/paths.lua http://127.0.0.1:8077 -- PATHS_FILE ["Header: value" ...]
--
-- Every thread reads the whole list and starts at its own offset (threads do not request the same
-- path in lockstep); each connection then takes the next path in turn. Extra arguments after the
-- file are request headers (e.g. "Accept-Encoding: gzip" for the download scenario).

local thread_count = 0

function setup(thread)
  thread:set("thread_index", thread_count)
  thread_count = thread_count + 1
end

local paths = {}
local headers = {}
local i = 0

function init(args)
  local file = args[1]
  if file == nil then
    error("paths.lua: give the paths file after --")
  end
  for line in io.lines(file) do
    if #line > 0 then
      paths[#paths + 1] = line
    end
  end
  if #paths == 0 then
    error("paths.lua: no path in " .. file)
  end
  for a = 2, #args do
    local name, value = string.match(args[a], "^([^:]+):%s*(.*)$")
    if name then
      headers[name] = value
    end
  end
  -- spread the threads over the list
  i = math.floor((thread_index or 0) * #paths * 0.618) % #paths
end

function request()
  i = i % #paths + 1
  return wrk.format("GET", paths[i], headers)
end
