"""The demo's timeline keeps the gateway's lines after what caused them."""

from __future__ import annotations

import io
import json

from gateway.demo.story import Story
from gateway.demo.timeline import Timeline

CALL = "c-3"


def log(ms: int, message: str) -> str:
    return f"2026-11-30 00:07:{ms // 1000:02d}.{ms % 1000:03d} INFO     {message}"


def event(kind: str, **data: object) -> str:
    return "event " + kind + " " + json.dumps({"call_id": CALL, **data})


def test_a_failover_on_tones_logged_in_the_same_millisecond_is_shown_after_them() -> None:
    story, out = Story(), io.StringIO()
    timeline = Timeline(out, story)
    incoming = event("call.incoming", caller="+32470777777", called="+3225550101",
                     route="workshop-line")  # fmt: skip
    t0 = story.gateway_line(log(0, incoming))
    assert t0 is not None
    story.t0 = t0[0]
    timeline.add(t0)
    sit = log(1403, f"leg {CALL}/1: SIT itu 950.0/1400.0/1800.0 Hz 330/330/160 ms at +0.83 s: "
                    "unassigned")  # fmt: skip
    # The failover's own log time reads one millisecond earlier than the tones'.
    failover = log(1402, event("call.failover", **{"from": ["workshop-mobile"], "to": ["anna"],
                                                   "outcome": "unassigned", "sip_code": None,
                                                   "q850": None}))  # fmt: skip
    for line in (sit, failover):
        entry = story.gateway_line(line)
        assert entry is not None
        timeline.add(entry)
    timeline.flush(force=True)
    lines = out.getvalue().splitlines()
    heard = next(n for n, line in enumerate(lines) if "hears SIT itu" in line)
    moved = next(n for n, line in enumerate(lines) if "failover workshop-mobile -> anna" in line)
    assert heard < moved, out.getvalue()
    assert "(unassigned, tones, no SIP answer)" in lines[moved]
