"""`sip-failover doctor` against real peers: all good, then each peer wrong in turn.

The trunk is SIPp answering OPTIONS, the mail server aiosmtpd with AUTH, the
broker Mosquitto. Each break (wrong mail password, broker down, registrar
unreachable, rules broken, SIP port taken) must turn exactly its check red,
with its fix, and make doctor exit non-zero. The clock check is left out:
it reads this machine's clock, which the test does not control (its logic is
tested in tests/unit/test_doctor_checks.py).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aiosmtpd.smtp import AuthResult, LoginPassword
from sipp import free_udp_port

if TYPE_CHECKING:

    from conftest import SippFactory
    from mailserver import MailServer
    from mosquitto import Mosquitto

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[2]
USER, PASSWORD = "gateway", "mail-secret-7"
RULES = """version: 1
targets:
  office: {uri: "sip:office@127.0.0.1:5999"}
routes:
  - name: main
    match: {to: "+3225550100"}
    steps: [{ring: office}]
"""


def only_our_login(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
    ok = isinstance(auth_data, LoginPassword) and auth_data == (USER.encode(), PASSWORD.encode())
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def peers(sipp: SippFactory, mail: MailServer, broker: Mosquitto, tmp_path: Path) -> dict[str, str]:
    """A working set of peers, and the settings that point the gateway at them."""
    trunk = sipp("operator_options_ok_calls_404", calls=None, timeout_s=60).start()
    trunk.wait_listening()
    mail.start(authenticator=only_our_login, auth_require_tls=False)
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES, encoding="utf-8")
    return {
        "SIP_FAILOVER_TRUNK__REGISTRAR": f"sip:{trunk.address}",
        "SIP_FAILOVER_SIP__LISTEN": f"127.0.0.1:{free_udp_port()}",
        "SIP_FAILOVER_RULES": str(rules),
        "SIP_FAILOVER_STATE_DIR": str(tmp_path / "state"),
        "SIP_FAILOVER_MQTT__URL": broker.url,
        **mail.env(SIP_FAILOVER_SMTP__USERNAME=USER, SIP_FAILOVER_SMTP__PASSWORD=PASSWORD),
    }


def doctor(settings: dict[str, str], cwd: Path) -> tuple[int, dict[str, dict[str, Any]], str]:
    """Run ``sip-failover doctor --json`` as an admin would; results by check name."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("SIP_FAILOVER_")}
    env = {**base, "PYTHONPATH": str(REPO), **settings}
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "doctor", "--json", "--skip", "clock"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    document = json.loads(done.stdout)
    return done.returncode, {c["name"]: c for c in document["checks"]}, done.stderr


def failed(checks: dict[str, dict[str, Any]]) -> list[str]:
    return [name for name, check in checks.items() if not check["ok"]]


def test_every_check_passes_against_working_peers(peers: dict[str, str], tmp_path: Path) -> None:
    code, checks, err = doctor(peers, tmp_path)
    assert (code, failed(checks)) == (0, []), (checks, err)
    assert set(checks) == {"settings", "engine", "rules", "sip port", "trunk", "smtp", "mqtt",
                           "state folder"}  # fmt: skip
    assert "call slots" in checks["engine"]["detail"]
    assert "answered OPTIONS with 200 OK" in checks["trunk"]["detail"]
    assert f"login {USER!r} accepted" in checks["smtp"]["detail"]
    assert PASSWORD not in json.dumps(checks)


def test_a_wrong_mail_password_is_named_with_its_fix(
    peers: dict[str, str], tmp_path: Path
) -> None:
    wrong = "not-the-password-42"
    code, checks, _ = doctor({**peers, "SIP_FAILOVER_SMTP__PASSWORD": wrong}, tmp_path)
    assert (code, failed(checks)) == (1, ["smtp"])
    assert "refused the login of user 'gateway': 535" in checks["smtp"]["detail"]
    assert "SIP_FAILOVER_SMTP__PASSWORD" in checks["smtp"]["fix"]
    assert wrong not in json.dumps(checks)


def test_a_broker_that_is_down_is_named(
    peers: dict[str, str], broker: Mosquitto, tmp_path: Path
) -> None:
    broker.stop()
    code, checks, _ = doctor(peers, tmp_path)
    assert (code, failed(checks)) == (1, ["mqtt"])
    assert "SIP_FAILOVER_MQTT__URL" in checks["mqtt"]["fix"]


def test_a_registrar_that_does_not_answer_is_named(peers: dict[str, str], tmp_path: Path) -> None:
    nobody = f"sip:127.0.0.1:{free_udp_port()}"
    code, checks, _ = doctor({**peers, "SIP_FAILOVER_TRUNK__REGISTRAR": nobody}, tmp_path)
    assert (code, failed(checks)) == (1, ["trunk"])
    assert "to OPTIONS" in checks["trunk"]["detail"]
    assert "SIP_FAILOVER_TRUNK__REGISTRAR" in checks["trunk"]["fix"]


def test_a_registrar_that_does_not_resolve_is_named(peers: dict[str, str], tmp_path: Path) -> None:
    unknown = "sip:trunk.invalid"  # RFC 2606: never resolves
    code, checks, _ = doctor({**peers, "SIP_FAILOVER_TRUNK__REGISTRAR": unknown}, tmp_path)
    assert (code, failed(checks)) == (1, ["trunk"])
    assert "trunk.invalid does not resolve" in checks["trunk"]["detail"]


def test_broken_rules_are_named_with_their_line(peers: dict[str, str], tmp_path: Path) -> None:
    rules = Path(peers["SIP_FAILOVER_RULES"])
    rules.write_text(RULES.replace("ring: office", "ring: nobody"), encoding="utf-8")
    code, checks, _ = doctor(peers, tmp_path)
    assert (code, failed(checks)) == (1, ["rules"])
    assert f"{rules}:7: routes[0].steps[0].ring: unknown target" in checks["rules"]["detail"]
    assert "sip-failover check" in checks["rules"]["fix"]


def test_a_sip_port_taken_is_named(peers: dict[str, str], tmp_path: Path) -> None:
    host, port = peers["SIP_FAILOVER_SIP__LISTEN"].rsplit(":", 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as holder:
        holder.bind((host, int(port)))
        code, checks, _ = doctor(peers, tmp_path)
    assert (code, failed(checks)) == (1, ["sip port"])
    assert "Address already in use" in checks["sip port"]["detail"]
    assert "SIP_FAILOVER_SIP__LISTEN" in checks["sip port"]["fix"]


def test_the_text_report_says_each_failure_and_its_fix(
    peers: dict[str, str], broker: Mosquitto, tmp_path: Path
) -> None:
    broker.stop()
    base = {k: v for k, v in os.environ.items() if not k.startswith("SIP_FAILOVER_")}
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "doctor", "--skip", "clock"],
        cwd=tmp_path, env={**base, "PYTHONPATH": str(REPO), **peers},
        capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip
    lines = done.stdout.splitlines()
    assert done.returncode == 1
    assert [line.split()[0] for line in lines[:-1] if not line.startswith(" ")] == [
        "ok", "ok", "ok", "ok", "ok", "ok", "FAIL", "ok"]  # fmt: skip
    mqtt = next(i for i, line in enumerate(lines) if line.startswith("FAIL  mqtt"))
    assert "fix: check SIP_FAILOVER_MQTT__URL" in lines[mqtt + 1]
    assert lines[-1] == "1 of 8 checks failed"
