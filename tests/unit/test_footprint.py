"""What the gateway loads at start: libraries only some rules or calls need wait until then."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# numpy: about 13 MB, for the SIT detector (loaded with the first tapped leg);
# holidays: about 6 MB, for schedules that name a region; aiosmtpd: the demo's
# and tests' mail server; matplotlib: the benchmark's plots.
NOT_AT_START = ("numpy", "holidays", "aiosmtpd", "matplotlib")
# aiomqtt with paho: 1.7 MB, for a gateway with a broker; aiosmtplib: 1.1 MB,
# from the first mail on (benchmarks/README.md, "Memory").
NOT_WITHOUT_USE = ("aiomqtt", "paho", "aiosmtplib")


def loaded_after(code: str) -> set[str]:
    """The top-level packages a fresh interpreter holds after running ``code``."""
    probe = f"{textwrap.dedent(code)}\nimport sys; print(' '.join(sorted(sys.modules)))"
    ran = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=False)  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    return {name.split(".")[0] for name in ran.stdout.split()}


def test_the_gateway_starts_without_what_only_some_rules_or_calls_need() -> None:
    unwanted = loaded_after("import gateway.app") & set(NOT_AT_START)
    assert not unwanted, f"loaded at start: {sorted(unwanted)}"


CONTROL = """
    import os, sys, tempfile
    from pathlib import Path
    for name in [n for n in os.environ if n.startswith("SIP_FAILOVER_")]:
        del os.environ[name]
    folder = Path(tempfile.mkdtemp())
    rules = folder / "rules.yaml"
    rules.write_text(
        'version: 1\\ntargets: {{a: {{uri: "sip:a@127.0.0.1"}}}}\\n'
        'routes: [{{name: r, match: {{to: "+3225550100"}}, steps: [{{ring: a}}]}}]\\n'
    )
    from gateway.config import Settings
    from gateway.control import Control
    from gateway.rules.keeper import RulesKeeper
    from gateway.rules.load import load_rules
    settings = Settings(trunk={{"registrar": "sip:trunk.example.net"}}, rules=rules,
                        state_dir=folder / "state", {mqtt})
    keeper = RulesKeeper(rules, load_rules(rules), lambda kind, data: None, 3)
    Control(settings, keeper, prober=None, health={{}}).close()
"""


def test_a_gateway_without_a_broker_or_a_mail_to_send_loads_no_client_for_them() -> None:
    unwanted = loaded_after(CONTROL.format(mqtt="")) & set(NOT_WITHOUT_USE)
    assert not unwanted, f"loaded with no use for them: {sorted(unwanted)}"


def test_a_gateway_with_a_broker_loads_its_client_at_start() -> None:
    loaded = loaded_after(CONTROL.format(mqtt='mqtt={"url": "mqtt://127.0.0.1:1883"}'))
    assert {"aiomqtt", "paho"} <= loaded, "the first event must not wait on an import"
