#!/usr/bin/env bash
# Starts a throwaway redis-server for the tests and prints, on stdout, the
# line to eval:
#
#   export LUMEN_TEST_REDIS_ADDR=127.0.0.1:PORT
#
# redis-server is installed with apt-get when missing (as root, Debian
# mirrors only). The server listens on a free loopback port, keeps nothing on
# disk, and runs in the background; its pid is in
# $LUMEN_REDIS_DIR/redis-PORT.pid (default dir: a fresh mktemp -d), also
# exported as LUMEN_TEST_REDIS_PID so the caller can stop exactly that one.
# Everything else goes to stderr, so `eval "$(scripts/redis.sh)"` is safe.
set -euo pipefail

log() { echo "redis.sh: $*" >&2; }

if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" != 0 ]; then
    log "redis-server is not installed and this is not root; install the redis-server package"
    exit 1
  fi
  log "installing redis-server with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends redis-server >&2
  # The package's own service may start on 6379; the tests use their own.
fi

dir="${LUMEN_REDIS_DIR:-}"
if [ -z "$dir" ]; then
  dir="$(mktemp -d -t lumen-redis.XXXXXX)"
fi
mkdir -p "$dir"

# port_free reports whether nothing accepts connections on 127.0.0.1:$1.
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

for _ in $(seq 1 20); do
  port=$(( 20000 + RANDOM % 40000 ))
  port_free "$port" || continue
  pidfile="$dir/redis-$port.pid"
  if ! redis-server --bind 127.0.0.1 --port "$port" --daemonize yes \
      --pidfile "$pidfile" --logfile "$dir/redis-$port.log" --dir "$dir" \
      --save '' --appendonly no >&2; then
    continue
  fi
  for _ in $(seq 1 50); do
    if [ -s "$pidfile" ] && ! port_free "$port"; then
      echo "export LUMEN_TEST_REDIS_ADDR=127.0.0.1:$port"
      echo "export LUMEN_TEST_REDIS_PID=$(cat "$pidfile")"
      log "redis-server listening on 127.0.0.1:$port (pid $(cat "$pidfile"), log $dir/redis-$port.log)"
      exit 0
    fi
    sleep 0.1
  done
  log "redis-server did not come up on port $port; see $dir/redis-$port.log"
  if [ -s "$pidfile" ]; then kill "$(cat "$pidfile")" 2>/dev/null || true; fi
done
log "could not start redis-server on a free loopback port"
exit 1
