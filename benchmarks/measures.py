"""What the side-by-side benchmark reads: delays from a capture, CPU and memory from /proc.

Every delay comes from tcpdump's kernel timestamps on ``lo``, read by the same
code for the gateway and for Kamailio; calls are placed one at a time, so the
packets of one call never interleave with the next one's.
"""

from __future__ import annotations

import os
import re
import struct
from collections import Counter
from pathlib import Path

Packet = tuple[float, int, int, bytes]  # time, source port, destination port, UDP payload

__all__ = ["Packet", "caller_finals", "failover_delays", "invite_rate", "outage_delays",
           "percentile", "read_pcap", "rtp_payload_types", "stats", "tree_cpu_seconds", "tree_pids",
           "tree_pss_mb"]  # fmt: skip


def read_pcap(path: Path) -> list[Packet]:
    """(time, source port, destination port, UDP payload) of each IPv4 UDP packet."""
    data = path.read_bytes()
    magic = struct.unpack("<I", data[:4])[0]
    nano = magic == 0xA1B23C4D
    linktype = struct.unpack("<I", data[20:24])[0]
    offset, packets = 24, []
    while offset + 16 <= len(data):
        sec, frac, incl, _orig = struct.unpack("<IIII", data[offset : offset + 16])
        frame = data[offset + 16 : offset + 16 + incl]
        offset += 16 + incl
        ip = frame[14:] if linktype == 1 else frame[16:] if linktype == 113 else frame[4:]
        if len(ip) < 28 or ip[0] >> 4 != 4 or ip[9] != 17:
            continue
        header = (ip[0] & 0x0F) * 4
        sport, dport = struct.unpack("!HH", ip[header : header + 4])
        stamp = sec + frac / (1e9 if nano else 1e6)
        packets.append((stamp, sport, dport, ip[header + 8 :]))
    return packets


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def failover_delays(packets: list[Packet], system: int, main: int, backup: int) -> list[float]:
    """Seconds from the main line's 404 reaching ``system`` to its INVITE to the backup."""
    out, pending = [], None
    for stamp, sport, dport, payload in packets:
        if sport == main and dport == system and payload.startswith(b"SIP/2.0 404"):
            pending = pending or stamp
        elif sport == system and dport == backup and payload.startswith(b"INVITE ") and pending:
            out.append(stamp - pending)
            pending = None
    return out


_CALL_ID = re.compile(rb"^(?:Call-ID|i)\s*:\s*(\S+)", re.IGNORECASE | re.MULTILINE)
_CSEQ_INVITE = re.compile(rb"^CSeq\s*:\s*\d+\s+INVITE", re.IGNORECASE | re.MULTILINE)


def caller_finals(packets: list[Packet], system: int, caller: int) -> Counter[int]:
    """The final answers ``system`` gave the caller's INVITEs: status -> calls (once per call)."""
    finals: dict[bytes, int] = {}
    for _, sport, dport, payload in packets:
        if sport != system or dport != caller or not payload.startswith(b"SIP/2.0 "):
            continue
        status = int(payload[8:11])
        call_id = _CALL_ID.search(payload)
        if status >= 200 and call_id and _CSEQ_INVITE.search(payload):
            finals.setdefault(call_id.group(1), status)
    return Counter(finals.values())


def invite_rate(packets: list[Packet], caller: int, system: int) -> float:
    """New INVITEs per second the caller really sent (SIPp, one call at a time, may lag)."""
    first: dict[bytes, float] = {}
    for stamp, sport, dport, payload in packets:
        if sport == caller and dport == system and payload.startswith(b"INVITE "):
            call_id = _CALL_ID.search(payload)
            if call_id:
                first.setdefault(call_id.group(1), stamp)
    times = sorted(first.values())
    return (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0


def outage_delays(packets: list[Packet], system: int, caller: int, backup: int,
                  dead: int) -> tuple[list[float], list[float]]:  # fmt: skip
    """Seconds from the caller's INVITE to the backup INVITE, and to the caller's 180.

    Each is read once per call (by its Call-ID), in whichever order the two
    leave. A call that tried the dead line first (before the outage was
    known) is left out.
    """
    to_backup: list[float] = []
    to_ringing: list[float] = []
    call: bytes | None = None
    start = 0.0
    tried_dead = ringing_sent = backup_sent = False
    for stamp, sport, dport, payload in packets:
        if sport == caller and dport == system and payload.startswith(b"INVITE "):
            if (call_id := _call_id(payload)) != call:  # a new call, not a retransmission
                call, start = call_id, stamp
                tried_dead = ringing_sent = backup_sent = False
        elif call is None:
            continue
        elif sport == system and dport == dead and payload.startswith(b"INVITE "):
            tried_dead = True
        elif sport == system and dport == caller and payload.startswith(b"SIP/2.0 180"):
            if not ringing_sent and not tried_dead:
                to_ringing.append(stamp - start)
            ringing_sent = True
        elif sport == system and dport == backup and payload.startswith(b"INVITE "):
            if not backup_sent and not tried_dead:
                to_backup.append(stamp - start)
            backup_sent = True
    return to_backup, to_ringing


def _call_id(payload: bytes) -> bytes | None:
    found = _CALL_ID.search(payload)
    return found.group(1) if found else None


def rtp_payload_types(packets: list[Packet], sources: range, destinations: range) -> list[int]:
    """RTP payload types sent from a range of ports to another (either may be ``range(65536)``).

    RTCP (packet types 192-223 in the second byte, RFC 5761 4) is left out.
    """
    return sorted({payload[1] & 0x7F for _, sport, dport, payload in packets
                   if sport in sources and dport in destinations and len(payload) >= 12
                   and payload[0] >> 6 == 2 and not 192 <= payload[1] <= 223})  # fmt: skip


def stats(seconds: list[float]) -> dict[str, float | int]:
    """p50/p99/max in milliseconds, and how many values."""
    ms = [value * 1000 for value in seconds]
    if not ms:
        return {"count": 0}
    return {"count": len(ms), "p50": round(percentile(ms, 50), 3),
            "p99": round(percentile(ms, 99), 3), "max": round(max(ms), 3)}  # fmt: skip


def tree_pids(pid: int) -> list[int]:
    """``pid`` and every descendant (Kamailio's children)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            parents[int(entry.name)] = int(fields[1])
    tree, grew = {pid}, True
    while grew:
        more = {child for child, parent in parents.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    return sorted(tree)


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its descendants, seconds."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0
    for member in tree_pids(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / tick


def tree_pss_mb(pid: int) -> float:
    """Proportional set size of a process and its descendants (shared pages split), MB."""
    total_kb = 0
    for member in tree_pids(pid):
        try:
            rollup = Path(f"/proc/{member}/smaps_rollup").read_text()
        except OSError:
            continue
        total_kb += next(int(line.split()[1]) for line in rollup.splitlines()
                         if line.startswith("Pss:"))  # fmt: skip
    return round(total_kb / 1024, 1)

