"""A TLS front (stunnel) for SIPp peers, and certificates made with openssl.

Debian's SIPp is built without OpenSSL (``sipp -v`` lists no TLS; ``-t l1``
answers "you must compile SIPp with OpenSSL"). A trunk over TLS is played by
SIPp over TCP behind stunnel, a real TLS stack apart from the gateway's:

- ``trunk_port`` (TLS, server side): where the gateway's legs and
  registration go; stunnel hands them to a SIPp UAS over plain TCP.
- ``caller_port`` (plain TCP, client side): a SIPp caller connects here and
  stunnel carries its calls to the gateway's TLS port.
"""

from __future__ import annotations

import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Self

from sipp import LOOPBACK, free_udp_port, port_listening

if TYPE_CHECKING:
    from types import TracebackType

STUNNEL = Path("/usr/bin/stunnel4")
OPENSSL = Path("/usr/bin/openssl")


@dataclass(frozen=True)
class Certificate:
    """A self-signed certificate for 127.0.0.1 and its key (PEM files)."""

    cert: Path
    key: Path


def make_certificate(folder: Path, name: str = "trunk") -> Certificate:
    """A fresh RSA-2048 self-signed certificate valid for 127.0.0.1 and localhost."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / f"{name}.crt", folder / f"{name}.key"
    subprocess.run(
        [str(OPENSSL), "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-sha256",
         "-days", "2", "-subj", f"/CN={name}", "-keyout", str(key), "-out", str(cert),
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    return Certificate(cert, key)


class TlsFront:
    """stunnel between TLS (the gateway) and plain TCP (SIPp) on 127.0.0.1.

    Args:
        workdir: folder for its configuration and log.
        certificate: what it presents on ``trunk_port``.
        sipp_port: the SIPp UAS's TCP port behind ``trunk_port``.
        gateway_tls: the gateway's TLS ``host:port`` behind ``caller_port``.
    """

    def __init__(
        self, workdir: Path, certificate: Certificate, sipp_port: int, gateway_tls: str
    ) -> None:
        self.workdir = workdir
        self.trunk_port = free_udp_port()
        self.caller_port = free_udp_port()
        self.log_path = workdir / "stunnel.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._config = "\n".join([
            "foreground = yes", "pid =", f"output = {self.log_path}", "debug = 5",
            "[trunk]", f"accept = {LOOPBACK}:{self.trunk_port}",
            f"connect = {LOOPBACK}:{sipp_port}",
            f"cert = {certificate.cert}", f"key = {certificate.key}",
            "[caller]", "client = yes", f"accept = {LOOPBACK}:{self.caller_port}",
            f"connect = {gateway_tls}", "",
        ])  # fmt: skip

    @property
    def trunk_address(self) -> str:
        return f"{LOOPBACK}:{self.trunk_port}"

    @property
    def caller_address(self) -> str:
        return f"{LOOPBACK}:{self.caller_port}"

    @property
    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def start(self, timeout: float = 10.0) -> Self:
        """Start stunnel and wait until both its ports listen."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        config = self.workdir / "stunnel.conf"
        config.write_text(self._config, encoding="utf-8")
        self.process = subprocess.Popen(
            [str(STUNNEL), str(config)],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while not all(port_listening(p, "tcp") for p in (self.trunk_port, self.caller_port)):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"stunnel did not start\n{self.log[-3000:]}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def tls_available() -> bool:
    """Whether stunnel and openssl are installed (scripts/test.sh installs stunnel4)."""
    return STUNNEL.exists() and OPENSSL.exists()
