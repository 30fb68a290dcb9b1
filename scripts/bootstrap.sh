#!/usr/bin/env bash
# Idempotent machine bootstrap: installs the Debian packages the test suite and the scale path
# need when they are missing, then the npm packages. Safe to run again; does nothing when all
# is in place. (The default `npm start` needs none of the Debian packages: it embeds PostgreSQL.)
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "bootstrap: missing Debian packages: ${need[*]} (run as root, or install them)" >&2
    exit 1
  fi
  echo "bootstrap: installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
