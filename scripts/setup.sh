#!/usr/bin/env bash
# Install what Bruso needs on a fresh Debian machine: Python venv + dependencies, PostGIS cluster.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if ! command -v "$PY" >/dev/null 2>&1 || ! "$PY" -c "import venv, ensurepip" >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq && apt-get install -y -qq python3 python3-venv python3-pip >/dev/null
  else
    echo "Python 3.11+ with venv is needed: sudo apt-get install -y python3 python3-venv" >&2; exit 1
  fi
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
stamp=.venv/.bruso-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "Installing Python dependencies into .venv (log: .venv/install.log)…" >&2
  if ! { .venv/bin/pip install --upgrade pip && .venv/bin/pip install -e '.[test]'; } > .venv/install.log 2>&1; then
    tail -n 30 .venv/install.log >&2; exit 1
  fi
  touch "$stamp"
fi
scripts/db.sh up >/dev/null
