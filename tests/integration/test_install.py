"""deploy/install.sh: installs, is idempotent, keeps the admin's files, uninstalls.

Everything goes into a folder given with ``--root``, never the host's /etc or
/opt. The fast test runs on the host into a bare root; the chroot test
(marked ``chroot``: minutes, network) bootstraps a minimal Debian 12 first and
runs the script inside it, the way an admin would on a fresh VPS.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from collections.abc import Callable

# alone: pip installs load both cores, enough to upset the timing of tests beside them.
pytestmark = [pytest.mark.integration, pytest.mark.alone]

REPO = Path(__file__).resolve().parents[2]
INSTALL = REPO / "deploy" / "install.sh"
UNIT = "etc/systemd/system/sip-failover.service"
EDIT = "\n# the admin's own line\n"
MEASURED: dict[str, float] = {}
HOST_CA = "root/host-ca.pem"


def manifest(root: Path) -> dict[str, tuple[str, str]]:
    """Every path under ``root``: its mode and owner, and the sha256 of a file's content."""
    found: dict[str, tuple[str, str]] = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        what = f"{stat.filemode(info.st_mode)} {info.st_uid}:{info.st_gid}"
        if path.is_symlink():
            digest = f"-> {path.readlink()}"
        elif path.is_file():
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            digest = ""
        found[str(path.relative_to(root))] = (what, digest)
    return found


def run_install(*args: str, root: Path | None = None) -> str:
    command = [str(INSTALL), *args]
    if root is not None:
        command += ["--root", str(root)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def bare_root(root: Path) -> Path:
    """A root with just the account files useradd --root needs."""
    (root / "etc").mkdir(parents=True)
    accounts = {"passwd": "root:x:0:0:root:/root:/bin/sh", "group": "root:x:0:",
                "shadow": "root:*:19000:0:99999:7:::", "gshadow": "root:*::"}  # fmt: skip
    for name, line in accounts.items():
        (root / "etc" / name).write_text(line + "\n")
    return root


def assert_unit_verifies(root: Path) -> None:
    """systemd-analyze verify on the installed unit, with systemd's own units beside it."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("needs systemd-analyze")
    if not (root / "usr/lib/systemd/system/sysinit.target").exists():
        shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system",
                        symlinks=True, dirs_exist_ok=True)  # fmt: skip
    kill = root / "bin" / "kill"
    if not kill.exists():  # ExecReload=/bin/kill (merged /usr on Debian)
        kill.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2("/usr/bin/kill", kill)
    done = subprocess.run([analyze, "verify", f"--root={root}", f"/{UNIT}"],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, f"systemd-analyze verify:\n{done.stdout}{done.stderr}"


def check_installed(root: Path) -> None:
    etc = root / "etc/sip-failover"
    assert stat.S_IMODE((etc / "env").stat().st_mode) == 0o600
    secrets = etc / "secrets"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o700
    passwd = (root / "etc/passwd").read_text()
    (uid,) = [ln.split(":")[2] for ln in passwd.splitlines() if ln.startswith("sip-failover:")]
    assert secrets.stat().st_uid == int(uid), "the secrets folder is not the service user's"
    assert (etc / "rules.yaml").read_text().startswith("# yaml-language-server")
    wants = root / "etc/systemd/system/multi-user.target.wants/sip-failover.service"
    assert wants.is_symlink(), "the unit is not enabled"
    assert (root / "opt/sip-failover/.venv/bin/sip-failover").exists()


def check_twice_and_uninstall(root: Path, run: Callable[..., str]) -> None:
    """Second run changes nothing and keeps an edit; --uninstall keeps data and settings."""
    rules = root / "etc/sip-failover/rules.yaml"
    rules.write_text(rules.read_text() + EDIT)
    before = manifest(root)
    said = run()
    assert manifest(root) == before, f"a second run changed files:\n{said}"
    assert "nothing to change" in said
    assert rules.read_text().endswith(EDIT)
    (root / "var/lib/sip-failover/calls.sqlite3").write_bytes(b"call log")
    run("--uninstall")
    assert not (root / "opt/sip-failover").exists()
    assert not (root / UNIT).exists()
    assert not (root / "etc/systemd/system/multi-user.target.wants/sip-failover.service").exists()
    assert (root / "var/lib/sip-failover/calls.sqlite3").read_bytes() == b"call log"
    assert rules.read_text().endswith(EDIT), "--uninstall lost the admin's rules"


@pytest.mark.timeout(300)  # pip installs the package and its wheels (from pip's cache)
def test_install_twice_keeps_edits_and_uninstall_keeps_data(tmp_path: Path) -> None:
    root = bare_root(tmp_path / "root")
    started = time.monotonic()
    said = run_install(root=root)
    MEASURED["install_s"] = time.monotonic() - started
    print(f"measured: {MEASURED}")
    assert "enabled sip-failover.service" in said
    check_installed(root)
    assert_unit_verifies(root)
    assert "firewall not written yet" in said, "a firewall without the trunk's address"
    env = root / "etc/sip-failover/env"
    trunk = "SIP_FAILOVER_TRUNK__REGISTRAR=sip:198.51.100.10\n"
    sources = "SIP_FAILOVER_TRUNK__SOURCES='[\"198.51.100.10\",\"2001:db8::5\"]'\n"
    env.write_text(env.read_text() + trunk + sources)
    run_install(root=root)
    firewall = (root / "etc/sip-failover/nftables.conf").read_text()
    assert "elements = { 192.0.2.10, 198.51.100.10 }" in firewall  # the sample's desk phone too
    assert "elements = { 2001:db8::5 }" in firewall
    check_twice_and_uninstall(root, lambda *a: run_install(*a, root=root))
    run_install("--uninstall", "--purge", root=root)
    assert not (root / "etc/sip-failover").exists()
    assert not (root / "var/lib/sip-failover").exists()
    assert "sip-failover:" not in (root / "etc/passwd").read_text()


# -- a fresh Debian 12, the way an admin meets it ------------------------------------------


def _chroot_run(root: Path, *args: str) -> str:
    """deploy/install.sh inside the chroot, from a copy of this checkout in it."""
    command = ["chroot", str(root), "/bin/sh", "/src/deploy/install.sh", *args]
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}
    if (root / HOST_CA).exists():
        env["PIP_CERT"] = f"/{HOST_CA}"
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False,
                          env=env)  # fmt: skip
    assert done.returncode == 0, f"{command}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _copy_checkout(root: Path) -> None:
    ignore = shutil.ignore_patterns(".venv", ".git", "__pycache__", "*.pyc", ".*_cache")
    shutil.copytree(REPO, root / "src", ignore=ignore)


@pytest.mark.chroot
@pytest.mark.timeout(1800)
def test_fresh_debian_12_install_upgrade_uninstall(tmp_path: Path) -> None:
    debootstrap = shutil.which("debootstrap")
    if debootstrap is None or os.geteuid() != 0:
        pytest.skip("needs root and debootstrap (apt-get install debootstrap)")
    root = tmp_path / "bookworm"
    started = time.monotonic()
    subprocess.run([debootstrap, "--variant=minbase", "bookworm", str(root),
                    "http://deb.debian.org/debian"], check=True, capture_output=True,
                   timeout=900)  # fmt: skip
    MEASURED["debootstrap_s"] = time.monotonic() - started
    shutil.copy2("/etc/resolv.conf", root / "etc/resolv.conf")
    if os.environ.get("PIP_CERT"):  # a network that inspects TLS: pip must trust its CA
        shutil.copy2(os.environ["PIP_CERT"], root / HOST_CA)
    _copy_checkout(root)
    started = time.monotonic()
    _chroot_run(root)
    MEASURED["chroot_install_s"] = time.monotonic() - started
    print(f"measured: {MEASURED}")
    check_installed(root)
    program = "/opt/sip-failover/.venv/bin/sip-failover"
    rules = "/etc/sip-failover/rules.yaml"
    checked = subprocess.run(["chroot", str(root), program, "check", rules],
                             capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert_unit_verifies(root)
    check_twice_and_uninstall(root, lambda *a: _chroot_run(root, *a))
