#!/usr/bin/env bash
# Debian's Chromium for the dashboard's browser tests (Playwright drives it through its
# executable_path; no browser is ever downloaded). Installed with apt-get when it is missing and
# this runs as root; otherwise says what to do (the dashboard tests fail without it).
set -euo pipefail

if [ -n "${EDFI_IM_TEST_CHROMIUM:-}" ] || command -v chromium >/dev/null; then
    exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "Installing Debian's chromium (and a font) for the browser tests"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core >/dev/null
else
    echo "chromium is missing: install Debian's package (sudo apt-get install chromium), or set" \
         "EDFI_IM_TEST_CHROMIUM to a Chromium binary; the dashboard's browser tests need it" >&2
fi
