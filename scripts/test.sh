#!/usr/bin/env bash
# Set up everything the tests need on a fresh Debian 12 machine, then run them.
#   bash scripts/test.sh            # lint, types, every test
#   bash scripts/test.sh -m "not integration"   # extra arguments go to pytest (both passes)
#   SIP_FAILOVER_TEST_WORKERS=2 bash scripts/test.sh   # parallel workers (default 3)
#   CHROOT=1 bash scripts/test.sh   # also install into a fresh Debian 12 chroot
# Installs (once): SIPp, Mosquitto, sipvicious, iproute2, stunnel4, openssl and Kamailio from Debian
# (stunnel: Debian's SIPp has no TLS, so TLS trunk tests put it in front of SIPp),
# fail2ban (fail2ban-regex) and nftables (nft -c), the package and its test tools into
# .venv. Real peers only: the integration tests start their own SIPp, Mosquitto and
# aiosmtpd on free 127.0.0.1 ports. With CI=true (or CHROOT=1) the chroot install test
# (debootstrap, a few minutes, network) runs first, alone, in a folder of its own.
set -euo pipefail
cd "$(dirname "$0")/.."

chroot_test=0
if [ "${CI:-}" = "true" ] || [ "${CHROOT:-}" = "1" ]; then chroot_test=1; fi
packages=(sip-tester mosquitto sipvicious iproute2 stunnel4 openssl kamailio fail2ban nftables)
[ "$chroot_test" -eq 0 ] || packages+=(debootstrap)
need=()
for pkg in "${packages[@]}"; do
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
if [ "$chroot_test" -eq 1 ]; then
    # First and alone: run beside the suite, its debootstrap and pip installs loaded
    # the machine enough to upset timing-sensitive tests (the demo's timeline).
    echo "--- chroot install test ---"
    SIP_FAILOVER_TEST_CHROOT=1 .venv/bin/python -m pytest -p no:cacheprovider -m chroot \
        --basetemp="$(mktemp -d)" tests/integration/test_install.py
fi

# The suite mostly waits (SIP timers, ring timeouts, peers starting): its tests are
# spread over pytest-xdist workers, each whole file on one worker (module fixtures,
# one port share per worker: tests/integration/sipp.py). Tests marked "alone" (timing,
# bursts, floods, installs) then run one after another on a machine left to them.
# Exit status 5 is "no test selected", as when the arguments name only one kind.
workers="${SIP_FAILOVER_TEST_WORKERS:-3}"
status=0
.venv/bin/python -m pytest -n "$workers" --dist loadfile --alone=skip "$@" || status=$?
alone=0
.venv/bin/python -m pytest --alone=only "$@" || alone=$?
if [ "$status" -eq 5 ] && [ "$alone" -eq 5 ]; then exit 5; fi
[ "$status" -ne 5 ] || status=0
[ "$alone" -ne 5 ] || alone=0
[ "$status" -ne 0 ] || status=$alone
exit "$status"
