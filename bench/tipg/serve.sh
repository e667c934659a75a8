#!/usr/bin/env bash
# Start tipg by hand against a benchmark database, exactly as bench/run.py does.
#   bench/tipg/serve.sh bruso_bench_5000 [PORT=8081] [WORKERS=1]
# Then: curl 'http://127.0.0.1:8081/collections/bench_tipg.organisations/items?limit=2'
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
db="${1:?database name, e.g. bruso_bench_5000}"
port="${2:-8081}"
workers="${3:-1}"
pg="${BRUSO_PG_URL:-postgresql://postgres@127.0.0.1:5433}"
venv="$here/../.venv-tipg"
if [ ! -x "$venv/bin/uvicorn" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q -r "$here/requirements.txt"
fi
psql "$pg/$db" -q -v ON_ERROR_STOP=1 -f "$here/view.sql"
published="$(psql "$pg/$db" -Atc "SELECT count(*) FROM bench_tipg.organisations")"
cd "$(mktemp -d)"  # tipg reads a .env from its working directory: not ours
export DATABASE_URL="$pg/$db" TIPG_DB_SCHEMAS='["bench_tipg"]' TIPG_DB_SPATIAL_EXTENT=false TIPG_DB_DATETIME_EXTENT=false
export TIPG_MAX_FEATURES_PER_QUERY="$(( published > 10000 ? published : 10000 ))"
exec "$venv/bin/uvicorn" tipg.main:app --host 127.0.0.1 --port "$port" --workers "$workers" --no-access-log --log-level warning
