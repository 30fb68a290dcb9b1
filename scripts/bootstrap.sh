#!/usr/bin/env bash
# Idempotent machine bootstrap: installs the Debian packages the test suite and the scale path
# need when they are missing, then the npm packages. Safe to run again; does nothing when all
# is in place. (The default `npm start` needs none of the Debian packages: it embeds PostgreSQL.)
#   redis-server, redis-tools    the inventory gate's Redis and Redis Cluster
#   postgresql-15                the cluster engine (Debian's PostgreSQL 15 under Patroni)
#   patroni, etcd-server         failover and its consensus store (`meridian cluster`)
#   pgbackrest                   backups and point-in-time restore
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v redis-cli >/dev/null 2>&1 || need+=(redis-tools)
command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
[ -x /usr/lib/postgresql/15/bin/postgres ] || need+=(postgresql-15)
command -v patroni >/dev/null 2>&1 || need+=(patroni)
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v pgbackrest >/dev/null 2>&1 || need+=(pgbackrest)
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
id postgres >/dev/null 2>&1 || useradd --system --home /var/lib/postgresql --shell /bin/bash postgres

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
