"""The mode in force (normal, force-backup, closed) on the feed and in `status`."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from test_status_schemas import errors, schema

from gateway.status.bus import EventBus, StatusEvent
from gateway.status.state import StatusState
from gateway.status.statusfile import StatusFile, format_status

if TYPE_CHECKING:
    from pathlib import Path

T0 = datetime(2026, 1, 5, 8, 0, 12, 345678, tzinfo=UTC)


def folded(*modes: tuple[str, str]) -> StatusState:
    state = StatusState()
    for mode, source in modes:
        state.apply(StatusEvent("rules.mode", T0, {"mode": mode, "source": source}))
    return state


def test_the_mode_is_a_retained_topic_with_who_set_it_and_since_when() -> None:
    state = StatusState()
    changed = state.apply(StatusEvent("rules.mode", T0, {"mode": "force-backup", "source": "mqtt"}))
    assert changed == {"mode"}
    payload = json.loads(state.retained()["mode"])
    since = "2026-01-05T08:00:12+00:00"
    assert payload == {"mode": "force-backup", "source": "mqtt", "since": since}
    assert errors(payload, schema("mode")) == []


def test_the_schema_refuses_a_mode_the_gateway_does_not_have() -> None:
    assert errors({"mode": "panic", "source": "mqtt", "since": "x"}, schema("mode")) != []


def test_status_json_and_text_show_the_mode(tmp_path: Path) -> None:
    status = StatusFile(tmp_path / "status.json", EventBus(), "gw1")
    status.state = folded(("normal", "file"), ("closed", "mqtt"))
    document = status.document()
    assert document["mode"] == {"mode": "closed", "source": "mqtt",
                                "since": "2026-01-05T08:00:12+00:00"}  # fmt: skip
    shown = format_status(document).splitlines()
    assert "mode           closed (set over MQTT since 2026-01-05T08:00:12+00:00)" in shown
    document["mode"] = None
    assert "mode           (not reported yet)" in format_status(document).splitlines()
