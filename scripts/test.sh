#!/usr/bin/env bash
# The project's test command (README, .ci/run): vet and race-test everything.
# Services the tests need (Redis for the shared cache and limits, PostgreSQL
# for the shared ledger, Chromium for the dashboard test) are installed and
# started here when a script for them exists, so a fresh machine needs
# nothing by hand.
set -euo pipefail
cd "$(dirname "$0")/.."

cleanup() {
  if [ -n "${LUMEN_TEST_REDIS_PID:-}" ]; then kill "$LUMEN_TEST_REDIS_PID" 2>/dev/null || true; fi
  if [ -n "${LUMEN_TEST_POSTGRES_PID:-}" ]; then kill -INT "$LUMEN_TEST_POSTGRES_PID" 2>/dev/null || true; fi
}
trap cleanup EXIT

if [ -x scripts/redis.sh ]; then
  eval "$(scripts/redis.sh)"   # exports LUMEN_TEST_REDIS_ADDR and LUMEN_TEST_REDIS_PID
fi
if [ -x scripts/postgres.sh ]; then
  eval "$(scripts/postgres.sh)"  # exports LUMEN_TEST_POSTGRES_URL and LUMEN_TEST_POSTGRES_PID
fi
if [ -x scripts/chromium.sh ]; then
  eval "$(scripts/chromium.sh)"  # exports LUMEN_TEST_CHROMIUM
fi

# Screenshots of the dashboard's browser test are kept here.
export LUMEN_ARTIFACTS="${LUMEN_ARTIFACTS:-$PWD/artifacts}"
mkdir -p "$LUMEN_ARTIFACTS"

go vet ./...
go test -race -timeout 20m ./...
