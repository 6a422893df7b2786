#!/bin/sh
# Build pjsua2 (pjproject's SIP engine and its Python module) from source with
# sip-failover's configuration, and install it into the gateway's virtual
# environment. This is how a Raspberry Pi (arm64) gets the engine, and how a
# VPS gets more call slots than the PyPI wheel's 4.
set -eu

PJ_RELEASE=2.15.1
PJ_TARBALL="https://github.com/pjsip/pjproject/archive/refs/tags/${PJ_RELEASE}.tar.gz"
APT_PACKAGES="build-essential pkg-config swig python3-dev libssl-dev uuid-dev"
APT_OPTIONAL="libasound2-dev"

usage() {
    cat <<USAGE
usage: $0 SOURCE_DIR [VENV]

Builds pjproject ${PJ_RELEASE} from SOURCE_DIR with deploy/pjsua2/config_site.h
(32 call slots, 1024 I/O handles in an epoll queue, no video, asserts kept) and
installs its Python module into VENV (default /opt/sip-failover/.venv), in
place of the pjsua2-python wheel.

Get the source (pjproject ${PJ_RELEASE}, from its GitHub releases page,
https://github.com/pjsip/pjproject/releases/tag/${PJ_RELEASE}):
    curl -L -o pjproject-${PJ_RELEASE}.tar.gz ${PJ_TARBALL}
    tar -xzf pjproject-${PJ_RELEASE}.tar.gz     # gives pjproject-${PJ_RELEASE}/

Needs the Debian packages: ${APT_PACKAGES}
(and ${APT_OPTIONAL} for ALSA sound devices, which the gateway does not use).
Set INSTALL_APT=1 to have this script apt-get install them (as root).

Environment: JOBS (parallel make jobs, default: the number of cores),
NICE (niceness of the build, default 10).
Took under 5 minutes on a shared 2-core x86-64 machine; not measured on a Pi.
USAGE
}

[ $# -ge 1 ] && [ $# -le 2 ] || { usage >&2; exit 2; }
case "$1" in -h|--help) usage; exit 0 ;; esac

HERE=$(cd "$(dirname "$0")" && pwd)
SRC=$(cd "$1" && pwd)
VENV=${2:-/opt/sip-failover/.venv}
PY="$VENV/bin/python"
JOBS=${JOBS:-$(nproc)}
NICE=${NICE:-10}

fail() { echo "build-pjsua2: $*" >&2; exit 1; }

[ -f "$SRC/version.mak" ] || fail "$SRC is not a pjproject source tree (no version.mak)"
version=$(sed -n 's/^export PJ_VERSION_\(MAJOR\|MINOR\|REV\) *:= *//p' "$SRC/version.mak" | paste -sd.)
[ "$version" = "$PJ_RELEASE" ] || fail "$SRC is pjproject $version; this script builds $PJ_RELEASE"
[ -x "$PY" ] || fail "no Python in $VENV (create the gateway's virtual environment first)"

if [ "${INSTALL_APT:-0}" = 1 ]; then
    apt-get install -y $APT_PACKAGES
fi
for tool in swig make g++ pkg-config; do
    command -v "$tool" >/dev/null || fail "$tool is missing: apt-get install $APT_PACKAGES"
done
"$PY" -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
    || fail "Python headers are missing: apt-get install python3-dev"
pkg-config --exists openssl || fail "OpenSSL headers are missing: apt-get install libssl-dev"

cp "$HERE/pjsua2/config_site.h" "$SRC/pjlib/include/pj/config_site.h"
cd "$SRC"
# -fPIC: the static libraries end up inside a Python extension module.
nice -n "$NICE" ./configure --enable-epoll --disable-video --disable-v4l2 \
    --disable-libyuv --disable-sdl --disable-ffmpeg --disable-openh264 \
    --disable-vpx --disable-libwebrtc \
    CFLAGS="-O2 -fPIC" CXXFLAGS="-O2 -fPIC"
nice -n "$NICE" make dep
nice -n "$NICE" make -j"$JOBS"

cd pjsip-apps/src/swig/python
# Only the SWIG wrapper here: pip compiles it, once.
nice -n "$NICE" make pjsua2_wrap.cpp PYTHON_EXE="$PY"
"$PY" -m pip install -q setuptools wheel
"$PY" -m pip uninstall -y pjsua2-python >/dev/null 2>&1 || true
nice -n "$NICE" "$PY" -m pip install --no-build-isolation .

cd /
"$PY" - <<'PYTHON'
import ctypes
import pjsua2
lib = ctypes.CDLL(pjsua2._pjsua2.__file__)
lib.pj_ioqueue_name.restype = ctypes.c_char_p
print("pjsua2 installed: PJSUA_MAX_CALLS", pjsua2.UaConfig().maxCalls,
      "- I/O queue", lib.pj_ioqueue_name().decode().split("[")[0])
PYTHON
