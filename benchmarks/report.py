"""The side-by-side results as JSON, a markdown table and a PNG of the delays.

The JSON names each figure by system, measure and statistic, e.g.
``results["gateway"]["failover"]["p99"]`` (milliseconds), so a script finds
it without parsing the table.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

ROWS = [
    ("failover", "main line's 404 in -> INVITE to the backup out, ms"),
    ("known_outage", "known outage: caller's INVITE in -> backup INVITE out, ms"),
    ("known_outage_ringing", "known outage: caller's INVITE in -> 180 to the caller, ms"),
]
SCALARS = [
    ("idle_cpu_percent", "idle CPU, % of a core (fresh)"),
    ("idle_cpu_percent_after_calls", "idle CPU, % of a core (after the calls)"),
    ("loaded_cpu_percent", "CPU during a burst, % of a core (highest)"),
    ("idle_pss_mb", "idle memory (PSS), MB, fresh"),
    ("idle_pss_mb_after_calls", "idle memory (PSS), MB, after the calls"),
    ("calls", "calls placed"),
    ("calls_failed", "calls that failed"),
]


def write_report(results: dict[str, Any], stem: Path) -> None:
    """Write ``stem``.json, ``stem``.md and ``stem``.png."""
    delays = results.pop("_delays_ms")
    Path(f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    Path(f"{stem}.md").write_text(markdown(results, f"{stem.name}.png"))
    plot(delays, Path(f"{stem}.png"))
    shutil.copyfile(f"{stem}.png", stem.parent / "latest.png")  # what README.md shows


def _cell(value: Any) -> str:
    if isinstance(value, dict):
        if not value.get("count"):
            return "-"
        return f"{value['p50']} / {value['p99']} / {value['max']} (n={value['count']})"
    return str(value)


def _ramp(rates: list[dict[str, Any]]) -> list[str]:
    """The rate ramp: what the callers got at each rate (status: calls)."""
    if not rates:
        return []
    clean = [r["sent_per_s"] for r in rates if r["clean"]]
    highest = max(clean) if clean else "none"
    lines = [f"Serial failover calls at rising rates (highest clean: {highest} calls/s sent):",
             "", "| calls/s asked / sent | final answers (status: calls) | gateway alive after |",
             "| --- | --- | --- |"]  # fmt: skip
    lines += [f"| {r['rate']} / {r['sent_per_s']} | {r['finals']} | "
              f"{'yes' if r['alive'] else 'NO'} |" for r in rates]  # fmt: skip
    return [*lines, ""]


def _detection(gw: dict[str, Any]) -> list[str]:
    """Detection: the operator answers 404 -> the health topic says ``unassigned``."""
    fast, default = gw.get("detection_fastest"), gw.get("detection_default")
    if not fast or not default:
        return []
    fast_row = (f"| every {fast['every_s']} s, down_after {fast['down_after']} (measured, "
                f"{fast['lost']} lost) | {_cell(fast)} ms | "
                f"{fast['overhead'].get('p50', '-')} / {fast['overhead'].get('p99', '-')} |")
    default_row = (f"| default: every {default['every_s'] / 60:g} min, down_after "
                   f"{default['down_after']} (computed) | {default['min_s'] / 60:.1f} to "
                   f"{default['max_s'] / 60:.1f} min, typically {default['typical_s'] / 60:.1f} "
                   f"| {default['overhead_ms']} (the measured p50) |")
    return [
        ("Detection: the operator starts answering 404 -> `target/<name>/health` says "
         "`unassigned` on MQTT:"),
        "",
        "| call probe | detection | of which after the operator's 404 (p50 / p99), ms |",
        "| --- | --- | --- |",
        fast_row,
        default_row,
        "",
    ]


def markdown(results: dict[str, Any], png: str) -> str:
    gw, kam, run = results["gateway"], results["kamailio"], results["run"]
    lines = [
        f"Run {run['when']} on {run['machine']}; {run['kamailio']}.",
        f"Load average before: {run['load_average_before']}, after: "
        f"{run['load_average_after']}. Command: `{run['command']}`.",
        "",
        "| what | gateway | Kamailio |",
        "| --- | --- | --- |",
    ]
    lines += [f"| {label} (p50 / p99 / max) | {_cell(gw.get(key))} | {_cell(kam.get(key))} |"
              for key, label in ROWS]  # fmt: skip
    lines += [f"| {label} | {_cell(gw.get(key))} | {_cell(kam.get(key))} |"
              for key, label in SCALARS]  # fmt: skip
    lines += [
        f"| memory after 300 calls / after {gw['calls']} calls, MB (leak check) | "
        f"{gw['pss_mb_after_300_calls']} / {gw['pss_mb_after_calls']} "
        f"({gw['leak_percent']:+} %) | - |",
        f"| RTP payload types: caller -> gateway / gateway -> backup | "
        f"{gw['rtp_payload_types']['caller_to_gateway']} / "
        f"{gw['rtp_payload_types']['gateway_to_backup']} | (media not relayed) |",
        "",
        *_detection(gw),
        *_ramp(gw.get("call_rates", [])),
        f"![latency distributions]({png})",
        "",
    ]
    return "\n".join(lines)


def plot(delays: dict[str, dict[str, list[float]]], path: Path) -> None:
    """One panel per measure: both systems' delays as cumulative distributions."""
    import matplotlib as mpl  # noqa: PLC0415 - a benchmark-only dependency

    mpl.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter  # noqa: PLC0415

    figure, axes = plt.subplots(1, len(ROWS), figsize=(15, 4.5))
    for axis, (key, label) in zip(axes, ROWS, strict=True):
        for system, series in delays.items():
            values = sorted(series.get(key, []))
            if values:
                share = [(i + 1) / len(values) for i in range(len(values))]
                axis.step(values, share, where="post", label=f"{system} (n={len(values)})")
        axis.set_xscale("log")
        # Labelled 0.2, 0.5, 1, 2 …: pyplot's own minor labels overlapped on a narrow range.
        axis.xaxis.set_major_locator(LogLocator(subs=(1.0, 1.5, 2.0, 3.0, 5.0, 7.0)))
        axis.xaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
        axis.xaxis.set_minor_formatter(NullFormatter())
        axis.tick_params(axis="x", labelsize=7)
        axis.set_xlabel("ms (log scale)")
        axis.set_ylabel("share of calls")
        axis.set_title(label, fontsize=9)
        axis.grid(visible=True, which="both", alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
