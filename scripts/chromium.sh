#!/usr/bin/env bash
# Makes sure headless Chromium is installed for the dashboard's browser test
# (cmd/ui_browser_test.go) and prints, on stdout, the line to eval:
#
#   export LUMEN_TEST_CHROMIUM=/usr/bin/chromium
#
# Chromium comes from Debian's package (apt-get install chromium), installed
# when missing; apt runs with sudo only when this is not root. Everything
# else goes to stderr, so `eval "$(scripts/chromium.sh)"` is safe.
set -euo pipefail

log() { echo "chromium.sh: $*" >&2; }

find_chromium() {
  for c in "${LUMEN_TEST_CHROMIUM:-}" /usr/bin/chromium /usr/bin/chromium-browser; do
    if [ -n "$c" ] && [ -x "$c" ]; then
      echo "$c"
      return 0
    fi
  done
  return 1
}

if ! bin="$(find_chromium)"; then
  sudo=""
  if [ "$(id -u)" != 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
      log "chromium is not installed, this is not root and there is no sudo; install Debian's chromium package"
      exit 1
    fi
    sudo="sudo"
  fi
  log "installing chromium with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2
  if ! bin="$(find_chromium)"; then
    log "apt-get installed chromium but no binary was found at /usr/bin/chromium"
    exit 1
  fi
fi
log "using $bin ($("$bin" --version 2>/dev/null || echo 'version unknown'))"
echo "export LUMEN_TEST_CHROMIUM=$bin"
