#!/bin/sh
# Install, upgrade or remove sip-failover on Debian 12 / Ubuntu 22.04+ (x86-64).
#
#   sudo deploy/install.sh                     # from this checkout
#   sudo deploy/install.sh dist/sip_failover-0.1.0-py3-none-any.whl   # or an sdist
#   sudo deploy/install.sh --firewall          # also load deploy/firewall/nftables.conf
#   sudo deploy/install.sh --uninstall         # keeps /var/lib/sip-failover and /etc/sip-failover
#   sudo deploy/install.sh --uninstall --purge # removes those too
#   deploy/install.sh --root DIR ...           # into DIR instead of / (tests, images)
#
# Idempotent: run it again to upgrade; a second run with the same source changes
# nothing. The rules file, the env file and the secrets are written only when
# missing: an admin's edits are never overwritten.
set -eu

NAME=sip-failover
HERE=$(cd "$(dirname "$0")" && pwd)
CHECKOUT=$(dirname "$HERE")
ROOT=${DESTDIR:-/}
SOURCE=""
ACTION=install
PURGE=0
FIREWALL=0

usage() { sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
say() { printf '%s: %s\n' "$NAME" "$*"; }
die() { printf '%s: %s\n' "$NAME" "$*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --root) [ $# -ge 2 ] || die "--root needs a folder"; ROOT=$2; shift ;;
        --root=*) ROOT=${1#--root=} ;;
        --uninstall) ACTION=uninstall ;;
        --purge) PURGE=1 ;;
        --firewall) FIREWALL=1 ;;
        -h|--help) usage 0 ;;
        -*) die "unknown option $1 (--help)" ;;
        *) SOURCE=$1 ;;
    esac
    shift
done
ROOT=${ROOT%/}
OPT=$ROOT/opt/$NAME
VENV=$OPT/.venv
ETC=$ROOT/etc/$NAME
STATE=$ROOT/var/lib/$NAME
UNIT_DIR=$ROOT/etc/systemd/system
UNIT=$UNIT_DIR/$NAME.service
WANTS=$UNIT_DIR/multi-user.target.wants/$NAME.service
F2B=$ROOT/etc/fail2ban
CHANGED=0

[ "$(id -u)" -eq 0 ] || [ -n "$ROOT" ] || die "run as root (sudo), or with --root DIR"
on_host() { [ -z "$ROOT" ]; }
systemd_running() { on_host && [ -d /run/systemd/system ]; }

# put SRC DEST MODE: copy when the content differs; always settle the mode.
put() {
    if ! cmp -s "$1" "$2"; then
        install -D -m "$3" "$1" "$2"
        CHANGED=1
        say "wrote ${2#"$ROOT"}"
    fi
    [ "$(stat -c %a "$2")" = "$3" ] || chmod "$3" "$2"
}

# keep SRC DEST MODE [OWNER]: write only when missing (the admin's file wins).
keep() {
    if [ -e "$2" ]; then
        say "kept ${2#"$ROOT"} (yours)"
        return
    fi
    install -D -m "$3" "$1" "$2"
    [ -z "${4:-}" ] || chown "$4" "$2"
    CHANGED=1
    say "wrote ${2#"$ROOT"}"
}

# folder DIR MODE OWNER: create or settle a folder's mode and owner.
folder() {
    [ -d "$1" ] || { mkdir -p "$1"; CHANGED=1; }
    [ "$(stat -c %a "$1")" = "$2" ] || chmod "$2" "$1"
    [ "$(stat -c %u:%g "$1")" = "$3" ] || chown "$3" "$1"
}

# The system user, in the target root's own passwd (useradd --root).
system_user() {
    if chroot_id "$NAME" >/dev/null 2>&1; then return; fi
    useradd ${ROOT:+--root "$ROOT"} --system --user-group --home-dir /var/lib/$NAME \
        --no-create-home --shell /usr/sbin/nologin --comment "sip-failover gateway" "$NAME"
    CHANGED=1
    say "created system user $NAME"
}
chroot_id() { grep -q "^$1:" "$ROOT/etc/passwd"; }
# Numeric ids from the target root's passwd: with --root, the host may not know the user.
uid() { grep "^$NAME:" "$ROOT/etc/passwd" | cut -d: -f3; }
gid() { grep "^$NAME:" "$ROOT/etc/group" | cut -d: -f3; }
owner() { printf '%s:%s' "$(uid)" "$(gid)"; }

# A CPython the SIP engine's wheel supports (3.11 or 3.12); apt installs one when
# this is the machine itself.
pick_python() {
    for py in python3.12 python3.11 python3; do
        bin=$(command -v "$py" 2>/dev/null) || continue
        if "$bin" -c 'import sys, venv, ensurepip; assert (3, 11) <= sys.version_info[:2] <= (3, 12)' \
            2>/dev/null; then
            echo "$bin"
            return
        fi
    done
}

need_python() {
    PYTHON=$(pick_python)
    [ -n "$PYTHON" ] && return
    on_host || die "no Python 3.11/3.12 with venv here; install python3-venv first"
    command -v apt-get >/dev/null || die "no Python 3.11/3.12 and no apt-get"
    codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
    case "$codename" in
        jammy) pkgs="python3.11 python3.11-venv" ;;  # Ubuntu 22.04 has 3.10 as python3
        *) pkgs="python3 python3-venv" ;;
    esac
    say "installing $pkgs ca-certificates (apt)"
    apt-get update -qq
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        $pkgs ca-certificates >/dev/null
    PYTHON=$(pick_python)
    [ -n "$PYTHON" ] || die "Python 3.11 or 3.12 is needed (the SIP engine's wheel)"
}

# The digest of what is being installed: the same digest, no reinstall.
source_digest() {
    if [ -d "$1" ]; then
        (cd "$1" && find gateway pyproject.toml README.md -type f \
            ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 | sort -z |
            xargs -0 sha256sum | sha256sum | cut -d' ' -f1)
    else
        sha256sum "$1" | cut -d' ' -f1
    fi
}

program() {
    src=${SOURCE:-$CHECKOUT}
    if [ -z "$SOURCE" ] && [ ! -e "$CHECKOUT/pyproject.toml" ]; then
        say "program kept: give a wheel or sdist to upgrade it"
        return
    fi
    [ -e "$src" ] || die "$src: no such wheel, sdist or folder"
    dir=$(cd "$(dirname "$src")" && pwd)
    src=${dir%/}/$(basename "$src")  # "//src" would be a network path to pip
    digest=$(source_digest "$src")
    if [ ! -x "$VENV/bin/python" ]; then
        need_python
        "$PYTHON" -m venv "$VENV"
        CHANGED=1
    fi
    if [ "$(cat "$OPT/installed-from.sha256" 2>/dev/null)" = "$digest" ]; then
        say "program up to date ($(basename "$src"))"
        return
    fi
    say "installing the program from $src"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check --no-warn-script-location \
        "$src"
    echo "$digest" >"$OPT/installed-from.sha256"
    CHANGED=1
}

documents() {
    put "$CHECKOUT/README.md" "$OPT/README.md" 644
    for doc in "$CHECKOUT"/docs/*.md; do
        put "$doc" "$OPT/docs/$(basename "$doc")" 644
    done
    for file in rules/example.yaml rules/rules.schema.json deploy/env.example \
        deploy/$NAME.service deploy/firewall/nftables.conf \
        deploy/fail2ban/filter.d/$NAME.conf deploy/fail2ban/jail.d/$NAME.conf; do
        put "$CHECKOUT/$file" "$OPT/$file" 644
    done
    put "$CHECKOUT/deploy/install.sh" "$OPT/deploy/install.sh" 755
    put "$CHECKOUT/rules/rules.schema.json" "$ETC/rules.schema.json" 644
}

settings() {
    folder "$ETC" 750 "0:$(gid)"
    keep "$CHECKOUT/rules/example.yaml" "$ETC/rules.yaml" 640 "0:$(gid)"
    keep "$HERE/env.example" "$ETC/env" 600
    folder "$ETC/secrets" 700 "$(owner)"
    for secret in trunk_password smtp_password; do
        # systemd's LoadCredential= refuses to start without the file: an empty
        # one is an empty password until the admin writes the real one.
        keep /dev/null "$ETC/secrets/$secret" 600 "$(owner)"
    done
    folder "$STATE" 750 "$(owner)"
}

unit() {
    put "$HERE/$NAME.service" "$UNIT" 644
    if [ -L "$WANTS" ]; then return; fi
    if command -v systemctl >/dev/null; then
        systemctl ${ROOT:+--root="$ROOT"} enable "$NAME.service" 2>/dev/null ||
            ln -s "/etc/systemd/system/$NAME.service" "$WANTS"
    else
        # No systemctl (a chroot, an image): what 'enable' does, by hand.
        mkdir -p "$(dirname "$WANTS")"
        ln -s "/etc/systemd/system/$NAME.service" "$WANTS"
    fi
    CHANGED=1
    say "enabled $NAME.service"
}

firewall() {
    tmp=$(mktemp)
    trap 'rm -f "$tmp"' EXIT
    (cd "$ETC" && SIP_FAILOVER_RULES="$ETC/rules.yaml" PYTHONDONTWRITEBYTECODE=1 \
        "$VENV/bin/python" -m gateway.service.firewall "$HERE/firewall/nftables.conf" "$ETC/env") \
        >"$tmp" || {
        [ "$FIREWALL" -eq 0 ] || die "firewall not written: see above"
        say "firewall not written yet: fill in /etc/$NAME/env, then run $0 --firewall"
        return 0
    }
    put "$tmp" "$ETC/nftables.conf" 640
    if [ -d "$F2B" ]; then
        put "$HERE/fail2ban/filter.d/$NAME.conf" "$F2B/filter.d/$NAME.conf" 644
        put "$HERE/fail2ban/jail.d/$NAME.conf" "$F2B/jail.d/$NAME.conf" 644
    fi
    [ "$FIREWALL" -eq 1 ] || return 0
    on_host || { say "--firewall: not loaded (--root)"; return 0; }
    nft -f "$ETC/nftables.conf"
    grep -q "$ETC/nftables.conf" /etc/nftables.conf ||
        printf 'include "%s"\n' "$ETC/nftables.conf" >>/etc/nftables.conf
    systemctl enable --quiet nftables.service
    say "firewall loaded, and included from /etc/nftables.conf"
}

install_all() {
    system_user
    program
    documents
    settings
    unit
    firewall
    if systemd_running; then
        systemctl daemon-reload
        [ "$CHANGED" -eq 0 ] || systemctl try-restart "$NAME.service"
    else
        say "systemd is not running here: the unit is enabled for the next boot"
    fi
    if [ "$CHANGED" -eq 0 ]; then say "nothing to change"; return; fi
    say "next: edit /etc/$NAME/env, /etc/$NAME/rules.yaml and the files in" \
        "/etc/$NAME/secrets, then: systemctl start $NAME"
}

uninstall() {
    if systemd_running; then systemctl disable --now "$NAME.service" 2>/dev/null || true; fi
    rm -f "$WANTS" "$UNIT"
    rm -rf "$OPT"
    rm -f "$F2B/filter.d/$NAME.conf" "$F2B/jail.d/$NAME.conf"
    if systemd_running; then systemctl daemon-reload; fi
    if [ "$PURGE" -eq 1 ]; then
        rm -rf "$ETC" "$STATE"
        if chroot_id "$NAME"; then userdel ${ROOT:+--root "$ROOT"} "$NAME"; fi
        say "removed the program, its settings, voicemail and call log"
    else
        say "removed the program; kept /etc/$NAME and /var/lib/$NAME (--purge removes them)"
    fi
}

if [ "$ACTION" = uninstall ]; then uninstall; else install_all; fi
