#!/usr/bin/env bash
# Private PostgreSQL + PostGIS cluster for Bruso on 127.0.0.1, no Docker.
#   scripts/db.sh up      install PostGIS if missing, initdb (as postgres), start, enable extensions (idempotent)
#   scripts/db.sh down    stop the cluster
#   scripts/db.sh reset   stop, delete the data directory, up again
#   scripts/db.sh status  print whether it runs and its URL
# Settings (environment): BRUSO_PG_PORT (5433), BRUSO_PG_DATA (/var/lib/bruso/pg-$PORT), BRUSO_PG_DB (bruso)
set -euo pipefail
PORT="${BRUSO_PG_PORT:-5433}"
DATA="${BRUSO_PG_DATA:-/var/lib/bruso/pg-$PORT}"
DB="${BRUSO_PG_DB:-bruso}"
SOCK="$(dirname "$DATA")/sock-$PORT"

pg_bin() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
  [ -n "$d" ] && echo "$d"
}

as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

install_postgis() {
  local bin
  bin=$(pg_bin || true)
  if [ -n "$bin" ] && ls /usr/share/postgresql/*/extension/postgis.control >/dev/null 2>&1; then return 0; fi
  if [ "$(id -u)" != 0 ]; then
    echo "PostGIS is missing. Install it with:  sudo apt-get install -y postgresql-postgis" >&2
    exit 1
  fi
  echo "Installing postgresql-postgis (apt-get)…" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq postgresql-postgis >/dev/null
}

psql_admin() {
  as_pg env PGOPTIONS="-c client_min_messages=warning" "$(pg_bin)/psql" -h 127.0.0.1 -p "$PORT" -U postgres -v ON_ERROR_STOP=1 -qAt "$@"
}

running() {
  [ -f "$DATA/postmaster.pid" ] && as_pg "$(pg_bin)/pg_ctl" -D "$DATA" status >/dev/null 2>&1
}

up() {
  install_postgis
  local bin; bin=$(pg_bin)
  mkdir -p "$(dirname "$DATA")" "$SOCK"
  chown postgres:postgres "$(dirname "$DATA")" "$SOCK"
  if [ ! -f "$DATA/PG_VERSION" ]; then
    as_pg "$bin/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
    cat >> "$DATA/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
port = $PORT
unix_socket_directories = '$SOCK'
max_connections = 200
shared_buffers = 512MB
work_mem = 16MB
maintenance_work_mem = 256MB
fsync = on
synchronous_commit = off
jit = off
CONF
  fi
  if ! running; then
    as_pg "$bin/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w -t 60 start >/dev/null
  fi
  for ext in postgis pg_trgm unaccent; do
    psql_admin -d template1 -c "CREATE EXTENSION IF NOT EXISTS $ext" >/dev/null
  done
  if [ -z "$(psql_admin -d postgres -c "SELECT 1 FROM pg_database WHERE datname='$DB'")" ]; then
    psql_admin -d postgres -c "CREATE DATABASE \"$DB\"" >/dev/null
  fi
  echo "postgresql+psycopg://postgres@127.0.0.1:$PORT/$DB"
}

down() {
  if running; then as_pg "$(pg_bin)/pg_ctl" -D "$DATA" -m fast -w stop >/dev/null; fi
  echo "stopped" >&2
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  reset) down; rm -rf "$DATA"; up ;;
  status) if running; then echo "running postgresql+psycopg://postgres@127.0.0.1:$PORT/$DB"; else echo "not running"; exit 3; fi ;;
  *) echo "usage: $0 up|down|reset|status" >&2; exit 2 ;;
esac
