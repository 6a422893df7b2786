"""What the gateway writes, read by fail2ban and searched for secrets.

- Under systemd (JOURNAL_STREAM names its stderr) every line carries its
  syslog priority; refused strangers get one stable line a minute, which the
  shipped fail2ban filter matches, and no other line of the gateway does.
- A recognisable password in every secret setting (trunk, SMTP, MQTT URL)
  never appears in the log, the state folder, the MQTT messages or the mail,
  after a real registration with digest, a call, a voicemail mailed with SMTP
  AUTH, and the MQTT feed.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import threading
import time
from contextlib import suppress
from pathlib import Path
from typing import TYPE_CHECKING, Self

import aiomqtt
import pytest
from gateway_process import GatewayProcess
from mosquitto import Mosquitto
from rulesets import one_phone
from test_voicemail import (
    GREET_MS,
    PCAP_SECONDS,
    only_user_with,
    voicemail_rules,
    wait_for,
    write_greeting,
)

if TYPE_CHECKING:
    from conftest import SippFactory
    from mailserver import MailServer

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
FILTER = REPO / "deploy" / "fail2ban" / "filter.d" / "sip-failover.conf"
FAIL2BAN_REGEX = shutil.which("fail2ban-regex") or "/usr/bin/fail2ban-regex"
SECRET = "S3cr3t-pa55-XYZ"
TRUNK_ELSEWHERE = "127.0.0.3"  # the trunk is another address: 127.0.0.1 is a stranger
REFUSED = "refused source 127.0.0.1: not the trunk"
PJLIB_LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d{3} ")


def fail2ban_matches(log: Path) -> tuple[int, int]:
    """``fail2ban-regex`` with the shipped filter: (lines matched, lines missed)."""
    done = subprocess.run([FAIL2BAN_REGEX, str(log), str(FILTER)], capture_output=True,
                          text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    found = re.search(r"Lines: \d+ lines, \d+ ignored, (\d+) matched, (\d+) missed", done.stdout)
    assert found, done.stdout
    return int(found[1]), int(found[2])


def as_journal_shows_it(log: str) -> str:
    """The journal's view (journald strips ``<N>``; fail2ban adds time, host, unit[pid])."""
    stamp = time.strftime("%b %d %H:%M:%S")
    return "".join(f"{stamp} vps sip-failover[4242]: {re.sub(r'^<[0-7]>', '', line)}\n"
                   for line in log.splitlines())  # fmt: skip


needs_fail2ban = pytest.mark.skipif(
    not Path(FAIL2BAN_REGEX).exists(), reason="needs fail2ban-regex (Debian fail2ban)"
)


@needs_fail2ban
@pytest.mark.parametrize("log_format", ["text", "journal"])
def test_fail2ban_matches_every_refusal_and_no_other_line(
    sipp: SippFactory, gateway_dir: Path, log_format: str
) -> None:
    phone = sipp("phone_answer")
    gateway_dir.mkdir(parents=True)
    log = gateway_dir / "gateway.log"
    log.touch()  # GatewayProcess reopens it: same inode, which JOURNAL_STREAM names
    env = {"SIP_FAILOVER_LOG_LEVEL": "DEBUG"}
    if log_format == "journal":
        env["JOURNAL_STREAM"] = f"{log.stat().st_dev}:{log.stat().st_ino}"
    with GatewayProcess(gateway_dir, one_phone(phone.address), sources=[TRUNK_ELSEWHERE],
                        env=env) as gateway:  # fmt: skip
        for _ in range(3):
            sipp("caller_refused", remote=gateway.address).start().wait()
        assert f"{REFUSED} (1 INVITEs)" in gateway.log, gateway.describe()
    gateway.assert_clean_exit()
    text = gateway.log
    assert text.count(REFUSED) == 1, "more than one line a minute for one source"
    if log_format == "journal":
        assert f"<4>{REFUSED} (1 INVITEs)" in text
        assert "<6>ready listen=" in text
        # pjlib prints its start-up lines itself ("23:36:10.443 sip_endpoint.c ..."),
        # before the gateway's log takes over: journald files those as info.
        ours = [line for line in text.splitlines() if not PJLIB_LINE.match(line)]
        assert all(re.match(r"<[0-7]>", line) for line in ours), text
        log.write_text(as_journal_shows_it(text))
    matched, missed = fail2ban_matches(log)
    assert matched == 1, log.read_text()
    assert missed == len(log.read_text().splitlines()) - 1


# -- secrets ------------------------------------------------------------------------------


class Subscriber:
    """Every MQTT message (topic and payload) on ``#``, gathered in a thread of its own."""

    def __init__(self, broker: Mosquitto) -> None:
        self.port = broker.port
        self.messages: list[tuple[str, bytes]] = []
        self.subscribed = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        assert self.subscribed.wait(10), "the test's MQTT subscriber did not subscribe"
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    async def _run(self) -> None:
        async with aiomqtt.Client("127.0.0.1", self.port, timeout=5) as client:
            await client.subscribe("#", qos=1)
            self.subscribed.set()
            while not self._stop.is_set():
                with suppress(TimeoutError):
                    async with asyncio.timeout(0.2):
                        message = await anext(aiter(client.messages))
                        payload = message.payload
                        raw = payload if isinstance(payload, bytes) else str(payload).encode()
                        self.messages.append((str(message.topic), raw))


def state_files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.mark.timeout(180)
def test_secrets_never_reach_logs_state_mqtt_or_mail(
    sipp: SippFactory, gateway_dir: Path, mail: MailServer, tmp_path: Path
) -> None:
    mail.start(authenticator=only_user_with(SECRET), auth_require_tls=False)
    registrar = sipp("registrar", keys={"expires": 60, "password": SECRET},
                     recv_timeout_ms=60000, timeout_s=90).start()  # fmt: skip
    main = sipp("phone_reject_reason", keys={"code": 404, "cause": 1}).start()
    write_greeting(gateway_dir)
    secrets = tmp_path / "secrets"  # the SMTP password comes from the secrets folder
    secrets.mkdir()
    (secrets / "sip_failover_smtp__password").write_text(SECRET)
    broker_dir = tmp_path / "broker"
    broker_dir.mkdir()
    with Mosquitto(broker_dir) as broker, Subscriber(broker) as feed:
        env = {**mail.env(SIP_FAILOVER_SMTP__USERNAME="gateway"),
               "SIP_FAILOVER_SECRETS_DIR": str(secrets), "SIP_FAILOVER_LOG_LEVEL": "DEBUG",
               "SIP_FAILOVER_MQTT__URL": f"mqtt://gw:{SECRET}@127.0.0.1:{broker.port}"}  # fmt: skip
        with GatewayProcess(gateway_dir, voicemail_rules(main), registrar=registrar.address,
                            password=SECRET, expires=60, env=env) as gateway:  # fmt: skip
            wait_for(gateway, "trunk.registration")
            talk = {"greet_ms": GREET_MS, "hold_ms": int(PCAP_SECONDS * 1000)}
            caller = sipp("caller_message", remote=gateway.address, keys=talk)
            caller.start().wait().assert_success()
            wait_for(gateway, "voicemail.delivered", timeout=30)
            deadline = time.monotonic() + 10  # the feed is asynchronous: give it a moment
            while not any(b"voicemail.delivered" in p for _, p in feed.messages):
                assert time.monotonic() < deadline, "the MQTT feed never told the delivery"
                time.sleep(0.1)
        gateway.assert_clean_exit()
    assert registrar.collect().sent(status=200), "the digest registration never succeeded"
    assert mail.inbox.accepted, "the mail (SMTP AUTH with the secret) was not accepted"
    secret = SECRET.encode()
    assert secret not in gateway.log.encode(), "a secret reached the log"
    for name, content in state_files(gateway_dir / "state").items():
        assert secret not in content, f"a secret reached the state folder: {name}"
    for topic, payload in feed.messages:
        assert secret not in payload, f"a secret went out on {topic}"
        assert SECRET not in topic, f"a secret is in a topic: {topic}"
    for message in mail.inbox.accepted:
        assert secret not in message.as_bytes(), "a secret went out in a mail"
    if Path(FAIL2BAN_REGEX).exists():  # a whole call's log: fail2ban finds nothing to ban
        assert fail2ban_matches(gateway.log_path)[0] == 0
