"""PCMU RTP in a pcap file, for SIPp's ``play_pcap_audio``, from generated audio.

SIPp replays the UDP payloads of an Ethernet + IPv4 + UDP capture, paced by
the packets' timestamps, from its media port to the address in the far
end's SDP. One RTP packet per 20 ms (160 mu-law samples), payload type 0.
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING

from gateway.demo.tones import ulaw

if TYPE_CHECKING:
    from pathlib import Path

    import numpy as np

_GLOBAL = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)  # LINKTYPE_ETHERNET
_ETHERNET = bytes(6) + bytes.fromhex("020000000001") + struct.pack("!H", 0x0800)
_SRC, _DST = bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1])
SAMPLES = 160
PCMU = 0


def _checksum(header: bytes) -> int:
    total = sum(struct.unpack(f"!{len(header) // 2}H", header))
    total = (total & 0xFFFF) + (total >> 16)
    return ~((total & 0xFFFF) + (total >> 16)) & 0xFFFF


def _ipv4_udp(payload: bytes, ident: int) -> bytes:
    udp = struct.pack("!HHHH", 6000, 6002, 8 + len(payload), 0) + payload
    fields = (0x45, 0, 20 + len(udp), ident & 0xFFFF, 0, 64, 17, 0, _SRC, _DST)
    header = struct.pack("!BBHHHBBH4s4s", *fields)
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    return header + udp


def write_rtp_pcap(path: Path, audio: np.ndarray, ssrc: int = 0x5EED0001) -> float:
    """Write ``audio`` (16-bit, 8 kHz) as PCMU RTP; return its length in seconds."""
    coded = ulaw(audio)
    frames = [coded[i : i + SAMPLES] for i in range(0, len(coded) - SAMPLES + 1, SAMPLES)]
    with path.open("wb") as out:
        out.write(_GLOBAL)
        for n, payload in enumerate(frames):
            marker = 0x80 if n == 0 else 0
            rtp = struct.pack("!BBHII", 0x80, marker | PCMU, n & 0xFFFF, n * SAMPLES, ssrc)
            packet = _ETHERNET + _ipv4_udp(rtp + payload, n)
            usec = n * 20_000
            out.write(struct.pack("<IIII", usec // 1_000_000, usec % 1_000_000,
                                  len(packet), len(packet)))  # fmt: skip
            out.write(packet)
    return len(frames) * SAMPLES / 8000
