"""Checks of the gateway's peers: its SIP port, the trunk, the mail server, the broker.

The trunk is asked with a plain OPTIONS over a socket of its own, not through
pjsua2: it needs no account, no endpoint and no free port dance, works where
the engine does not load, and answers the one question asked here (does the
trunk's server answer SIP at all?). ``sip-failover probe`` is the engine's
own view, targets included.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import secrets
import socket
import ssl
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

import aiomqtt
import aiosmtplib

from gateway.cli.doctor.result import CheckResult
from gateway.config import sip_uri_hostport

if TYPE_CHECKING:
    from email.message import EmailMessage

    from gateway.config import MqttSettings, SipSettings, SmtpSettings, TrunkSettings

T1 = 0.5  # RFC 3261 17.1.2.2: UDP retransmits at T1, 2*T1, … until timer F (64*T1)
OPTIONS_WAIT_S = 8.0  # a trunk that has not answered in 8 s does not answer
_LOGIN_FIX = ("fix SIP_FAILOVER_SMTP__USERNAME or SIP_FAILOVER_SMTP__PASSWORD "
              "(the password best as a file in the secrets folder)")  # fmt: skip


# -- the SIP port ---------------------------------------------------------------------


def check_sip_port(sip: SipSettings, transport: str) -> CheckResult:
    """The gateway's SIP port can be bound (UDP, and TCP for a TCP trunk)."""
    family = socket.AF_INET6 if ":" in sip.host else socket.AF_INET
    kinds = [("UDP", socket.SOCK_DGRAM)] + ([("TCP", socket.SOCK_STREAM)]
                                            if transport == "tcp" else [])  # fmt: skip
    for name, kind in kinds:
        with socket.socket(family, kind) as sock:
            try:
                sock.bind((sip.host, sip.port))
            except OSError as error:
                return CheckResult.failed("sip port", f"{name} {sip.listen}: {error.strerror}",
                                          _port_fix(error, name, sip.port))  # fmt: skip
    return CheckResult.passed("sip port", f"{sip.listen} is free")


def _port_fix(error: OSError, name: str, port: int) -> str:
    if error.errno == errno.EADDRINUSE:
        return (f"another process holds {name} port {port} (`ss -lnp sport = :{port}`; a gateway "
                "already running?): stop it, or choose SIP_FAILOVER_SIP__LISTEN")  # fmt: skip
    if error.errno == errno.EACCES:
        return (f"port {port} needs privileges: run the gateway with CAP_NET_BIND_SERVICE "
                "(the systemd unit has it) or use a port above 1023")  # fmt: skip
    return "set SIP_FAILOVER_SIP__LISTEN to an address of this machine"


# -- the trunk ------------------------------------------------------------------------


async def check_trunk(trunk: TrunkSettings) -> CheckResult:
    """The trunk's registrar resolves and answers an OPTIONS."""
    host, port = sip_uri_hostport(trunk.registrar)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except socket.gaierror as error:
        return CheckResult.failed("trunk", f"{host} does not resolve: {error.strerror}",
                                  "check SIP_FAILOVER_TRUNK__REGISTRAR and the DNS")  # fmt: skip
    address = str(infos[0][4][0])
    try:
        status = await asyncio.wait_for(_options(trunk, host, address, port), OPTIONS_WAIT_S)
    except (TimeoutError, OSError) as error:
        said = "no answer" if isinstance(error, TimeoutError) else str(error)
        return CheckResult.failed(
            "trunk", f"{trunk.registrar} ({address}:{port}, {trunk.transport}): {said} to OPTIONS",
            "check SIP_FAILOVER_TRUNK__REGISTRAR and __TRANSPORT, and that the firewall lets "
            f"SIP through to {address}:{port}",
        )
    return CheckResult.passed("trunk", f"{trunk.registrar} ({address}:{port}) answered OPTIONS "
                                       f"with {status}")  # fmt: skip


def options_request(host: str, port: int, transport: str, local: tuple[str, int]) -> bytes:
    """An OPTIONS to ``host`` (RFC 3261 11.1) from ``local``, with a fresh branch and tags."""
    via_host = f"[{local[0]}]" if ":" in local[0] else local[0]
    branch = "z9hG4bK" + secrets.token_hex(8)  # the magic cookie of RFC 3261 8.1.1.7
    lines = [
        f"OPTIONS sip:{host}:{port} SIP/2.0",
        f"Via: SIP/2.0/{transport.upper()} {via_host}:{local[1]};branch={branch};rport",
        "Max-Forwards: 70",
        f"From: <sip:doctor@{via_host}>;tag={secrets.token_hex(4)}",
        f"To: <sip:{host}:{port}>",
        f"Call-ID: {secrets.token_hex(12)}@sip-failover",
        "CSeq: 1 OPTIONS",
        "Accept: application/sdp",
        "User-Agent: sip-failover doctor",
        "Content-Length: 0",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _options(trunk: TrunkSettings, host: str, address: str, port: int) -> str:
    if trunk.transport == "udp":
        return await _options_udp(host, address, port)
    context = None
    if trunk.transport == "tls":
        context = ssl.create_default_context(cafile=str(trunk.tls.ca_file))
        if not trunk.tls.verify_server:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
    name = host if context else None
    reader, writer = await asyncio.open_connection(address, port, ssl=context,
                                                   server_hostname=name)  # fmt: skip
    try:
        local = writer.get_extra_info("sockname")
        writer.write(options_request(host, port, trunk.transport, local))
        while True:
            status = _final_status(await reader.readuntil(b"\r\n\r\n"))
            if status is not None:
                return status
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


class _Answer(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.final: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def datagram_received(self, data: bytes, addr: object) -> None:  # noqa: ARG002
        status = _final_status(data)
        if status is not None and not self.final.done():
            self.final.set_result(status)

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable on a connected socket: nobody listens there.
        if not self.final.done():
            self.final.set_exception(exc)


async def _options_udp(host: str, address: str, port: int) -> str:
    loop = asyncio.get_running_loop()
    transport, answer = await loop.create_datagram_endpoint(_Answer, remote_addr=(address, port))
    try:
        request = options_request(host, port, "udp", transport.get_extra_info("sockname"))
        interval = T1
        while True:  # retransmitted as RFC 3261 17.1.2.2 asks, until wait_for gives up
            transport.sendto(request)
            with contextlib.suppress(TimeoutError):
                return await asyncio.wait_for(asyncio.shield(answer.final), interval)
            interval = min(interval * 2, 4.0)
    finally:
        transport.close()


def _final_status(data: bytes) -> str | None:
    """``200 OK`` from a final response; None for a provisional one or anything else."""
    first = data.split(b"\r\n", 1)[0].decode("utf-8", "replace")
    parts = first.split(" ", 2)
    if len(parts) < 2 or parts[0] != "SIP/2.0" or not parts[1].isdigit():
        return None
    return None if int(parts[1]) < 200 else " ".join(parts[1:])


# -- mail -----------------------------------------------------------------------------


async def check_smtp(smtp: SmtpSettings, test_mail: EmailMessage | None = None) -> CheckResult:
    """The mail server accepts a connection and the login; a test mail only when asked."""
    client = aiosmtplib.SMTP(hostname=smtp.host, port=smtp.port, use_tls=smtp.tls,
                             start_tls=smtp.starttls, timeout=min(smtp.timeout, 10.0),
                             local_hostname=smtp.ehlo_name)  # fmt: skip
    where = f"{smtp.host}:{smtp.port}"
    try:
        await client.connect()
        if smtp.username:
            await client.login(smtp.username, smtp.password.get_secret_value())
        if test_mail is not None:
            await client.send_message(test_mail, sender=smtp.from_)
        with contextlib.suppress(aiosmtplib.SMTPException):
            await client.quit()
    except aiosmtplib.SMTPAuthenticationError as error:
        said = f"{where} refused the login of user {smtp.username!r}: {error.code} {error.message}"
        return CheckResult.failed("smtp", said, _LOGIN_FIX)
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as error:
        return CheckResult.failed("smtp", f"{where}: {_smtp_error(error)}",
                                  "check SIP_FAILOVER_SMTP__HOST, __PORT, __TLS/__STARTTLS, "
                                  "and that the server is up")  # fmt: skip
    finally:
        client.close()
    login = f", login {smtp.username!r} accepted" if smtp.username else ", no login set"
    sent = ", test mail accepted" if test_mail is not None else ""
    return CheckResult.passed("smtp", f"{where} accepted the connection{login}{sent}")


def _smtp_error(error: BaseException) -> str:
    if isinstance(error, aiosmtplib.SMTPResponseException):
        return f"{error.code} {error.message}"
    return str(error) or type(error).__name__


# -- the broker -----------------------------------------------------------------------


async def check_mqtt(mqtt: MqttSettings) -> CheckResult:
    """The broker accepts the connection (and its login); no URL: nothing to check."""
    if not mqtt.url:
        return CheckResult.passed("mqtt", "not configured (SIP_FAILOVER_MQTT__URL): no feed")
    url = urlsplit(mqtt.url)
    tls = aiomqtt.TLSParameters(ca_certs=str(mqtt.tls_ca) if mqtt.tls_ca else None) \
        if url.scheme == "mqtts" else None
    where = f"{url.hostname or 'localhost'}:{url.port or (8883 if tls else 1883)}"
    client = aiomqtt.Client(url.hostname or "localhost", url.port or (8883 if tls else 1883),
                            username=unquote(url.username) if url.username else None,
                            password=unquote(url.password) if url.password else None,
                            tls_params=tls, timeout=10.0)  # fmt: skip
    try:
        async with client:
            pass
    except aiomqtt.MqttError as error:
        return CheckResult.failed("mqtt", f"{where}: {error}",
                                  "check SIP_FAILOVER_MQTT__URL (host, port, user, password) "
                                  "and that the broker is up")  # fmt: skip
    return CheckResult.passed("mqtt", f"{where} accepted the connection")
