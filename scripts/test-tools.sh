#!/usr/bin/env bash
# The real clients the tests drive, from Debian's packages: GDAL's ogrinfo/ogr2ogr for the OGC API
# and headless Chromium for the embed pages. Installed once; a no-op when present.
set -euo pipefail
missing=()
command -v ogrinfo >/dev/null 2>&1 || missing+=(gdal-bin)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "Tests need: sudo apt-get install -y ${missing[*]}" >&2; exit 1
  fi
  echo "Installing ${missing[*]} (Debian packages)…" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
