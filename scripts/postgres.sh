#!/usr/bin/env bash
# Starts a throwaway PostgreSQL server for the tests and prints, on stdout,
# the lines to eval:
#
#   export LUMEN_TEST_POSTGRES_URL=postgres://lumen@127.0.0.1:PORT/lumen?sslmode=disable
#   export LUMEN_TEST_POSTGRES_PID=PID
#
# PostgreSQL is installed with apt-get when missing (as root, Debian mirrors
# only). The cluster lives in $LUMEN_POSTGRES_DIR (default: a fresh
# mktemp -d), trusts loopback connections, runs without fsync (test data
# only) and listens on a free loopback port; as root it runs as the
# package's postgres user. LUMEN_TEST_POSTGRES_PID is the postmaster, so the
# caller can stop exactly that one (SIGINT: fast shutdown). Everything else
# goes to stderr, so `eval "$(scripts/postgres.sh)"` is safe.
set -euo pipefail

log() { echo "postgres.sh: $*" >&2; }

bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

bin="$(bindir || true)"
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
  if [ "$(id -u)" != 0 ]; then
    log "PostgreSQL is not installed and this is not root; install the postgresql package"
    exit 1
  fi
  log "installing postgresql with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends postgresql >&2
  # The package's own cluster may start on 5432; the tests use their own.
  bin="$(bindir)"
fi

dir="${LUMEN_POSTGRES_DIR:-}"
if [ -z "$dir" ]; then
  dir="$(mktemp -d -t lumen-postgres.XXXXXX)"
fi
mkdir -p "$dir"
as=()
if [ "$(id -u)" = 0 ]; then
  # PostgreSQL refuses to run as root.
  chown postgres: "$dir"
  as=(runuser -u postgres --)
fi

if [ ! -s "$dir/data/PG_VERSION" ]; then
  if ! "${as[@]}" "$bin/initdb" -D "$dir/data" -U lumen --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1; then
    log "initdb failed; see $dir/initdb.log"
    exit 1
  fi
fi

# port_free reports whether nothing accepts connections on 127.0.0.1:$1.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

for _ in $(seq 1 20); do
  port=$(( 20000 + RANDOM % 40000 ))
  port_free "$port" || continue
  logfile="$dir/postgres-$port.log"
  if ! "${as[@]}" "$bin/pg_ctl" -D "$dir/data" -l "$logfile" -w -t 60 \
      -o "-h 127.0.0.1 -p $port -k $dir -c fsync=off -c synchronous_commit=off -c full_page_writes=off" \
      start >&2; then
    log "postgres did not start on port $port; see $logfile"
    continue
  fi
  if ! "${as[@]}" "$bin/createdb" -h 127.0.0.1 -p "$port" -U lumen lumen >&2 2>/dev/null; then
    # A data directory reused from an earlier run already has it.
    "${as[@]}" "$bin/psql" -h 127.0.0.1 -p "$port" -U lumen -d lumen -Atc 'SELECT 1' >/dev/null
  fi
  pid="$(head -n 1 "$dir/data/postmaster.pid")"
  echo "export LUMEN_TEST_POSTGRES_URL='postgres://lumen@127.0.0.1:$port/lumen?sslmode=disable'"
  echo "export LUMEN_TEST_POSTGRES_PID=$pid"
  log "postgres listening on 127.0.0.1:$port (pid $pid, log $logfile)"
  exit 0
done
log "could not start postgres on a free loopback port"
exit 1
