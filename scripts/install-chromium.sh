#!/usr/bin/env bash
# Installs Debian's chromium for the browser test (test/browser.test.ts) when it is missing.
# playwright-core drives it at /usr/bin/chromium; it never downloads a browser of its own.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then
  exit 0
fi

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

echo "install-chromium: installing chromium"
as_root apt-get update -qq
DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq chromium >/dev/null
/usr/bin/chromium --version
