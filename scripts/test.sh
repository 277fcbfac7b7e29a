#!/usr/bin/env bash
# The project's test command (README, .ci/run): vet and race-test everything.
# Services the tests need (Redis for the shared cache, Chromium for the
# dashboard test) are installed and started here when a script for them
# exists, so a fresh machine needs nothing by hand.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ -x scripts/redis.sh ]; then
  # shellcheck disable=SC1091
  eval "$(scripts/redis.sh)"   # exports LUMEN_TEST_REDIS_ADDR
fi
if [ -x scripts/chromium.sh ]; then
  eval "$(scripts/chromium.sh)"  # exports LUMEN_TEST_CHROMIUM
fi

go vet ./...
go test -race -timeout 20m ./...
