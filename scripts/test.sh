#!/usr/bin/env bash
# Set up everything the tests need on a fresh Debian 12 machine, then run them.
#   bash scripts/test.sh            # lint, types, every test
#   bash scripts/test.sh -m "not integration"   # extra arguments go to pytest
# Installs (once): SIPp, Mosquitto, sipvicious, iproute2, stunnel4, openssl and Kamailio from Debian
# (stunnel: Debian's SIPp has no TLS, so TLS trunk tests put it in front of SIPp), the package and
# its test tools into .venv. Real peers only: the integration tests start their
# own SIPp, Mosquitto and aiosmtpd on free 127.0.0.1 ports.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pkg in sip-tester mosquitto sipvicious iproute2 stunnel4 openssl kamailio; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
    sudo_=""; [ "$(id -u)" -eq 0 ] || sudo_="sudo"
    $sudo_ apt-get update -qq
    $sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e . --group test --group lint

.venv/bin/ruff check gateway tests
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
