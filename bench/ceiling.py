"""The raw ceiling: a bare ASGI app (no framework, no database) answering the exact bytes Bruso
answered for the same paths, precomputed once by bench/run.py. What uvicorn + HTTP on this machine
allow at best for scenario (3) (one record by id) and (6) (the full GeoJSON download).

    BENCH_CEILING_DIR=DIR .venv/bin/uvicorn bench.ceiling:app --port 8079 --workers 1 --no-access-log

DIR holds ``index.json`` — ``{path: {"file": name, "content_type": ..., "encoding": "gzip" | null}}`` —
and the body files, in the encoding the scenario's clients ask for (the download scenario sends
``Accept-Encoding: gzip`` and gets Bruso's pre-compressed bytes). Unknown paths are 404.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def _load(directory: Path) -> dict[str, tuple[list, bytes]]:
    index = json.loads((directory / "index.json").read_text())
    table = {}
    for path, entry in index.items():
        body = (directory / entry["file"]).read_bytes()
        headers = [(b"content-type", entry["content_type"].encode()), (b"content-length", str(len(body)).encode())]
        if entry.get("encoding"):
            headers += [(b"content-encoding", entry["encoding"].encode()), (b"vary", b"Accept-Encoding")]
        table[path] = (headers, body)
    return table


TABLE = _load(Path(os.environ.get("BENCH_CEILING_DIR", ".")))
NOT_FOUND = (404, [(b"content-type", b"text/plain"), (b"content-length", b"9")], b"not found")


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"]
    if scope["query_string"]:
        path += "?" + scope["query_string"].decode("latin-1")
    entry = TABLE.get(path)
    if entry is None:
        status, headers, body = NOT_FOUND
    else:
        status = 200
        headers, body = entry
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
