"""Real SIPp peers on loopback: ports, a runner, its message trace, RTP sinks.

A :class:`Sipp` is one ``/usr/bin/sipp`` process playing one scenario from
``scenarios/``. It never reads stdin, writes its message trace, error log
and statistics into the test's own folder, and is bounded by ``-timeout``.
:meth:`Sipp.wait` returns a :class:`SippResult` with the exit code, the call
counters and every SIP message sent or received, parsed for assertions.

A runner speaks UDP by default, TCP with ``transport="t1"``. Debian's SIPp
has no TLS (``sipp -v`` lists no TLS): a TLS peer is a TCP runner behind a
TLS front (:mod:`tlsfront`), and its ``advertise`` puts the front's address
in the Contact of its messages.

SIPp binds ``media_port`` and ``media_port + 2`` for RTP; the caller
scenarios advertise ``media_port + 4`` in their SDP and play the pcap from
it through a raw socket, so an :class:`RtpSink` bound there hears whatever
the far end sends back (see ``scenarios/caller_answered.xml``).
"""

from __future__ import annotations

import math
import os
import random
import re
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Self
from xml.sax.saxutils import escape as xml_escape

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from types import TracebackType

SIPP = Path("/usr/bin/sipp")
SCENARIOS = Path(__file__).parent / "scenarios"
LOOPBACK = "127.0.0.1"
G711A_PCAP = Path("/usr/share/sip-tester/g711a.pcap")
RX_OFFSET = 4  # caller scenarios: SDP port = media_port + 4 (the test's socket)

# Keys every scenario may use, so no run fails on "Unsupported keyword".
DEFAULT_KEYS: dict[str, str] = {
    "dial": "+3225550100",
    "cli": "+32470999999",
    "hold_ms": "2000",
    "ring_ms": "1000",
    "answer_ms": "500",
    "code": "404",
    "cause": "1",
    "user": "gateway",
    "password": "secret",
    "realm": "sip-failover-test",
    "expires": "300",
    "fails": "1",
    "retry_after": "1",
    "retry_ms": "1000",
    "unassigned": "+32470000001",
    # phone_checks_caller: what the INVITE must show (POSIX extended regexps).
    "from_re": r'^[ \t]*"\+32470999999"[ \t]*<sip:\+32470999999@',
    "pai_header": "P-Asserted-Identity",
    "pai_re": r"^[ \t]*<sip:\+32470999999@",
    "redirect_header": "Diversion",
    "redirect_re": r"^[ \t]*<sip:\+3225550100@[^>]*>;reason=unconditional;counter=1",
    "pcap": str(G711A_PCAP),
}

# Ports the tests hand out lie below Linux's ephemeral range (32768-60999): no socket
# bound to port 0 (an MQTT client, aiosmtplib) can land on one the harness handed out.
# Under pytest-xdist each worker takes its own share, so two workers never hand out the
# same port: a block handed out but not bound yet (a gateway's RTP ports, bound per leg)
# is safe from the other workers' bind checks.
PORTS = range(20000, 32768)


def _share() -> range:
    """This process's share of :data:`PORTS` (the whole range outside pytest-xdist)."""
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    index = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))
    size = len(PORTS) // count
    return range(PORTS.start + index * size, PORTS.start + (index + 1) * size)


class _PortTurns:
    """Hands out the ports of one share in turn, each free when handed out.

    A port comes back only after the whole share has gone round once, long after the
    test that had it ended. The start is random so that two runs at once start apart.
    """

    def __init__(self, share: range) -> None:
        self.share = share
        self.cursor = random.randrange(share.start, share.stop)

    def take(self, span: int, *, even: bool) -> int:
        last = self.share.stop - span
        for _ in range(len(self.share)):
            port = self.cursor if self.cursor <= last else self.share.start
            self.cursor = port + 1
            if even and port % 2:
                continue
            if all(_udp_free(p) for p in range(port, port + span)):
                self.cursor = port + span
                return port
        raise RuntimeError(f"no free block of {span} port(s) in {self.share} on 127.0.0.1")


_turns = _PortTurns(_share())


def _udp_free(port: int) -> bool:
    """Free for UDP and for TCP: a runner or the gateway may listen on both."""
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        with socket.socket(socket.AF_INET, kind) as probe:
            try:
                probe.bind((LOOPBACK, port))
            except OSError:
                return False
    return True


def free_udp_port(span: int = 1, *, even: bool = False) -> int:
    """A port on 127.0.0.1 such that ``port .. port + span - 1`` are free (UDP and TCP).

    Ports are not handed out twice by this process until its share has gone round;
    another process may still take one between this check and its use (rare, loopback
    only).
    """
    return _turns.take(span, even=even)


def free_media_port() -> int:
    """An even RTP base port with room for SIPp's two sockets and the test's."""
    return free_udp_port(RX_OFFSET + 2, even=True)


def port_listening(port: int, proto: str = "udp") -> bool:
    hex_port = f":{port:04X}"
    for table in (f"/proc/net/{proto}", f"/proc/net/{proto}6"):
        with Path(table).open(encoding="ascii") as rows:
            if any(row.split()[1].endswith(hex_port) for row in list(rows)[1:]):
                return True
    return False


@dataclass(frozen=True)
class SipMessage:
    """One SIP message from SIPp's trace, as sent or received by SIPp."""

    direction: str  # "sent" | "received"
    text: str

    @property
    def first_line(self) -> str:
        return self.text.split("\n", 1)[0].strip()

    @property
    def method(self) -> str | None:
        """The request method, None for a response."""
        first = self.first_line
        return None if first.startswith("SIP/2.0") else first.split(" ", 1)[0]

    @property
    def status(self) -> int | None:
        """The response code, None for a request."""
        first = self.first_line
        return int(first.split()[1]) if first.startswith("SIP/2.0") else None

    @property
    def cseq_method(self) -> str:
        return (self.header("CSeq") or " ").split()[-1]

    def headers(self, name: str) -> list[str]:
        """Every value of header ``name`` (case-insensitive), in order."""
        head = self.text.split("\n\n", 1)[0]
        pattern = rf"^{re.escape(name)}[ \t]*:[ \t]*(.*)$"
        found = re.findall(pattern, head, re.IGNORECASE | re.MULTILINE)
        return [value.strip() for value in found]

    def header(self, name: str) -> str | None:
        values = self.headers(name)
        return values[0] if values else None

    @property
    def q850_cause(self) -> int | None:
        """The cause of a ``Reason: Q.850;cause=N`` header, if any."""
        for reason in self.headers("Reason"):
            match = re.search(r"Q\.850\s*;.*?\bcause\s*=\s*(\d+)", reason, re.IGNORECASE)
            if match:
                return int(match.group(1))
        return None

    @property
    def body(self) -> str:
        return self.text.split("\n\n", 1)[1] if "\n\n" in self.text else ""


_ENTRY = re.compile(
    r"^-{10,} [^\n]*\n\S+ message (sent|received)[^\n]*:\n\n(.*?)(?=^-{10,} |\Z)",
    re.MULTILINE | re.DOTALL,
)


def parse_trace(trace: str) -> tuple[SipMessage, ...]:
    """Split a ``-trace_msg`` log into messages (line ends normalised)."""
    text = trace.replace("\r\n", "\n")
    return tuple(SipMessage(kind, body.strip("\n") + "\n") for kind, body in _ENTRY.findall(text))


_STATUS_KEY = re.compile(r"^(\s*SIP/2\.0 )\[(\w+)\]", re.MULTILINE)
_EREG = re.compile(r"<ereg\b[^>]*>")
_KEY = re.compile(r"\[(\w+)\]")
_OWN_CONTACT = "[local_ip]:[local_port];transport=[transport]"
_PCAP_KEY = re.compile(r'(play_pcap_audio=")\[(\w+)\]"')


def _counter(screen: str, name: str) -> int:
    """A cumulative counter from SIPp's last statistics screen.

    The screen printed at exit is the only complete count: the ``-trace_stat``
    file is written every ``-fd`` period, so a call that ends just before
    SIPp exits may be missing from it.
    """
    found = re.findall(rf"^\s*{name}\s*\|\s*\d+\s*\|\s*(\d+)", screen, re.MULTILINE)
    return int(found[-1]) if found else 0


@dataclass(frozen=True)
class SippResult:
    """What one SIPp run did."""

    scenario: str
    exit_code: int
    successful: int
    failed: int
    messages: tuple[SipMessage, ...]
    trace: str
    errors: str
    output: str

    def received(self, method: str | None = None, status: int | None = None) -> list[SipMessage]:
        """Messages SIPp received, optionally only one request method or status."""
        return [
            m
            for m in self.messages
            if m.direction == "received"
            and (method is None or m.method == method)
            and (status is None or m.status == status)
        ]

    def sent(self, method: str | None = None, status: int | None = None) -> list[SipMessage]:
        """Messages SIPp sent, optionally only one request method or status."""
        return [
            m
            for m in self.messages
            if m.direction == "sent"
            and (method is None or m.method == method)
            and (status is None or m.status == status)
        ]

    def final_response(self, cseq_method: str = "INVITE") -> SipMessage:
        """The last final (>= 200) response received for ``cseq_method``."""
        finals = [
            m
            for m in self.received()
            if m.status is not None and m.status >= 200 and m.cseq_method == cseq_method
        ]
        if not finals:
            raise AssertionError(f"no final response to {cseq_method}\n{self.describe()}")
        return finals[-1]

    def describe(self, tail: int = 4000) -> str:
        """Exit code, counters and the end of the logs, for failure messages."""
        return (
            f"sipp {self.scenario}: exit {self.exit_code}, "
            f"{self.successful} successful / {self.failed} failed calls\n"
            f"--- errors ---\n{self.errors[-tail:]}\n"
            f"--- output ---\n{self.output[-1500:]}\n"
            f"--- message trace (tail) ---\n{self.trace[-tail:]}"
        )

    def assert_success(self, calls: int = 1) -> None:
        """Fail unless SIPp exited 0 with ``calls`` successful calls."""
        if self.exit_code != 0 or self.successful != calls or self.failed:
            raise AssertionError(f"expected {calls} successful call(s)\n{self.describe()}")


@dataclass
class Sipp:
    """One SIPp process playing ``scenarios/<scenario>.xml`` on 127.0.0.1.

    Args:
        scenario: scenario file name without ``.xml``.
        workdir: folder for the trace, error log and statistics.
        remote: ``host:port`` to call (UAC scenarios), None for a UAS.
        port: local SIP port (default: a free one).
        ip: local address (``-i`` with ``-bind_local``: the source of its packets).
        media_port: RTP base port (default: a free even block).
        calls: ``-m``, the number of calls after which SIPp exits (None: none).
        keys: ``-key`` values over :data:`DEFAULT_KEYS`.
        timeout_s: ``-timeout`` with ``-timeout_error``: SIPp's own bound.
        recv_timeout_ms: ``-recv_timeout``, used by ``ontimeout`` exits.
        rtp_echo: ``-rtp_echo``: echo RTP to its sender.
        transport: ``-t``: ``u1`` (UDP) or ``t1`` (TCP, one connection per peer).
        advertise: ``host:port;transport=…`` for the Contact of its messages
            (a TLS front's address), None: its own.
        extra: more SIPp arguments.
    """

    scenario: str
    workdir: Path
    remote: str | None = None
    port: int = 0
    ip: str = LOOPBACK
    media_port: int = 0
    calls: int | None = 1
    keys: Mapping[str, str | int] = field(default_factory=dict)
    timeout_s: float = 20.0
    recv_timeout_ms: int | None = None
    rtp_echo: bool = False
    transport: str = "u1"
    advertise: str | None = None
    extra: Sequence[str] = ()
    process: subprocess.Popen[bytes] | None = field(default=None, init=False)
    result: SippResult | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.port = self.port or free_udp_port()
        self.media_port = self.media_port or free_media_port()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._stem = self.workdir / f"{self.scenario}-{self.port}"

    @property
    def address(self) -> str:
        return f"{self.ip}:{self.port}"

    @property
    def rx_port(self) -> int:
        """The SDP port of the caller scenarios: where the far end's RTP lands."""
        return self.media_port + RX_OFFSET

    def command(self) -> list[str]:
        """The SIPp command line."""
        args = [str(SIPP)] + ([self.remote] if self.remote else [])
        args += ["-sf", str(self._render_scenario())]
        args += ["-i", self.ip, "-bind_local", "-p", str(self.port), "-mp", str(self.media_port)]
        args += ["-nostdin", "-aa", "-timeout", f"{self.timeout_s}s", "-timeout_error"]
        args += ["-trace_msg", "-message_file", f"{self._stem}.messages.log"]
        args += ["-trace_err", "-error_file", f"{self._stem}.errors.log"]
        args += ["-trace_stat", "-stf", f"{self._stem}.stats.csv"]
        args += ["-m", str(self.calls)] if self.calls is not None else []
        args += ["-recv_timeout", str(self.recv_timeout_ms)] if self.recv_timeout_ms else []
        args += ["-rtp_echo"] if self.rtp_echo else []
        args += ["-t", self.transport]
        keys = self._keys()
        for key, value in keys.items():
            args += ["-key", key, value]
        # [authentication] in client scenarios answers challenges with these.
        args += ["-au", keys["user"], "-ap", keys["password"]]
        return [*args, *self.extra]

    def _keys(self) -> dict[str, str]:
        return {**DEFAULT_KEYS, **{key: str(value) for key, value in self.keys.items()}}

    def _render_scenario(self) -> Path:
        """The scenario with keys in status lines filled in.

        SIPp reads a response's status code when it loads the scenario, so
        ``SIP/2.0 [code] ...`` is refused ("Response codes must be in the
        range of 100-700"): such keys are substituted here instead. So are
        keys in ``<ereg>`` attributes (SIPp reads those literally; a test
        passes the regular expression a header must match), the
        ``advertise`` address in Contact headers, and a pcap named by a key
        (SIPp opens the file at load).
        """
        text = (SCENARIOS / f"{self.scenario}.xml").read_text(encoding="iso-8859-1")
        keys = self._keys()
        rendered = _STATUS_KEY.sub(lambda m: m.group(1) + keys[m.group(2)], text)
        rendered = _EREG.sub(lambda m: _KEY.sub(lambda k: _attr(keys, k), m.group(0)), rendered)
        if self.advertise is not None:
            rendered = rendered.replace(_OWN_CONTACT, self.advertise)
        # Nor are keys read in <exec play_pcap_audio="...">: the file is opened at load.
        rendered = _PCAP_KEY.sub(lambda m: m.group(1) + keys[m.group(2)] + '"', rendered)
        if rendered == text:
            return SCENARIOS / f"{self.scenario}.xml"
        path = Path(f"{self._stem}.xml")
        path.write_text(rendered, encoding="iso-8859-1")
        return path

    def start(self) -> Self:
        """Start SIPp (a UAS also waits until its SIP port is bound)."""
        with Path(f"{self._stem}.out").open("wb") as out:
            self.process = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT
            )
        if self.remote is None:
            self.wait_listening()
        return self

    def wait_listening(self, timeout: float = 5.0) -> None:
        """Block until SIPp's SIP port is bound; fail with its output if it died."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while not port_listening(self.port, "tcp" if self.transport == "t1" else "udp"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(
                    f"sipp {self.scenario} not listening\n{self.collect().describe()}"
                )
            time.sleep(0.02)

    def wait(self, timeout: float | None = None) -> SippResult:
        """Wait for SIPp to exit (default: its own timeout plus 5 s) and collect."""
        assert self.process is not None
        try:
            self.process.wait(timeout=self.timeout_s + 5 if timeout is None else timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise AssertionError(
                f"sipp {self.scenario} still running\n{self.collect().describe()}"
            ) from None
        return self.collect()

    def stop(self) -> None:
        """Kill SIPp if it still runs (SIGTERM, then SIGKILL)."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=3)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=3)

    def collect(self) -> SippResult:
        """Read the logs written so far into a :class:`SippResult`."""
        code = self.process.poll() if self.process else None
        output = _read(f"{self._stem}.out")
        trace = _read(f"{self._stem}.messages.log")
        self.result = SippResult(
            scenario=self.scenario,
            exit_code=-999 if code is None else code,
            successful=_counter(output, "Successful call"),
            failed=_counter(output, "Failed call"),
            messages=parse_trace(trace),
            trace=trace,
            errors=_read(f"{self._stem}.errors.log"),
            output=output,
        )
        return self.result

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _attr(keys: Mapping[str, str], key: re.Match[str]) -> str:
    """A key's value escaped for an XML attribute; an unknown ``[name]`` is kept."""
    value = keys.get(key.group(1))
    return key.group(0) if value is None else xml_escape(value, {'"': "&quot;"})


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def _alaw_to_linear(byte: int) -> int:
    """G.711 A-law sample to 16-bit linear (ITU-T G.711 section 3)."""
    value = byte ^ 0x55
    segment = (value & 0x70) >> 4
    magnitude = ((value & 0x0F) << 4) + 8
    if segment:
        magnitude = (magnitude + 0x100) << (segment - 1)
    return magnitude if value & 0x80 else -magnitude


def _rms(payloads: list[bytes]) -> float:
    samples = [_alaw_to_linear(b) for payload in payloads for b in payload]
    return math.sqrt(sum(s * s for s in samples) / len(samples)) if samples else 0.0


class RtpSink:
    """A UDP socket on 127.0.0.1 (or ``host``) that gathers RTP packets for assertions."""

    def __init__(self, port: int, host: str = LOOPBACK) -> None:
        self.port = port
        self.packets: list[tuple[float, bytes]] = []
        self.senders: dict[tuple[str, int], list[bytes]] = {}  # payloads by source address
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._sock.bind((host, port))
        self._sock.setblocking(False)

    def drain(self) -> int:
        """Read what has arrived so far; return the number of packets kept."""
        while True:
            try:
                data, sender = self._sock.recvfrom(4096)
            except BlockingIOError:
                return len(self.packets)
            self.packets.append((time.monotonic(), data))
            self.senders.setdefault(sender, []).append(data[12 + 4 * (data[0] & 0x0F) :])

    def collect(self, seconds: float) -> int:
        """Keep reading for ``seconds`` (bounded); return the packet count."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.drain()
            time.sleep(0.02)
        return self.drain()

    def payloads(self, since: float = 0.0) -> list[bytes]:
        """RTP payloads (12-byte header, no CSRC/extension assumed) after ``since``."""
        return [data[12 + 4 * (data[0] & 0x0F) :] for at, data in self.packets if at >= since]

    def voiced_by_sender(self, loud: float = 30.0) -> dict[tuple[str, int], int]:
        """How many packets from each sender carry voice (one sender: one far end).

        Silence is A-law 0xD5 (RMS 8); a packet louder than ``loud`` is speech.
        """
        return {
            sender: sum(1 for payload in payloads if _rms([payload]) > loud)
            for sender, payloads in self.senders.items()
        }

    def rms(self, since: float = 0.0) -> float:
        """Loudness of the A-law audio received (0 is silence)."""
        return _rms(self.payloads(since))

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def sipp_available() -> bool:
    """Whether SIPp can run here (binary present, raw sockets for pcap play)."""
    return SIPP.exists() and os.geteuid() == 0
