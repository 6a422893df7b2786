"""Settings from the environment, a .env file and a secrets folder."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from pydantic import ValidationError

from gateway.config import Settings, sip_uri_hostport

if TYPE_CHECKING:
    from pathlib import Path


@pytest.fixture(autouse=True)
def _clean(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No SIP_FAILOVER_* from the machine, and no .env of the developer's."""
    for name in [n for n in __import__("os").environ if n.startswith("SIP_FAILOVER_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)


def test_nested_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIP_FAILOVER_SIP__LISTEN", "127.0.0.1:5070")
    monkeypatch.setenv("SIP_FAILOVER_TRUNK__REGISTRAR", "sip:trunk.example.net:5080")
    monkeypatch.setenv("SIP_FAILOVER_TRUNK__REGISTER", "false")
    monkeypatch.setenv("SIP_FAILOVER_TRUNK__SOURCES", '["127.0.0.2", "::1"]')
    monkeypatch.setenv("SIP_FAILOVER_SMTP__LIFETIME_DAYS", "2")
    settings = Settings()
    assert (settings.sip.host, settings.sip.port) == ("127.0.0.1", 5070)
    assert settings.trunk.register_enabled is False
    assert settings.trunk.outbound_proxy == "sip:trunk.example.net:5080"  # proxy defaults to it
    assert settings.trunk.allowed_sources() == frozenset({"127.0.0.2", "::1"})
    assert settings.smtp.lifetime_days == 2


def test_the_trunk_is_the_registrars_address_when_no_sources_are_given(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SIP_FAILOVER_TRUNK__REGISTRAR", "sip:127.0.0.9")
    assert Settings().trunk.allowed_sources() == frozenset({"127.0.0.9"})


def test_a_password_from_the_secrets_folder_never_shows(tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "sip_failover_trunk__password").write_text("hunter2-trunk")
    # SIP_FAILOVER_SECRETS_DIR sets this folder when the class is built (as
    # systemd's credentials are); the same folder is given here per instance.
    settings = Settings(_secrets_dir=secrets)  # type: ignore[call-arg]
    assert settings.trunk.password.get_secret_value() == "hunter2-trunk"
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings.model_dump())


def test_the_environment_wins_over_a_dot_env_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("SIP_FAILOVER_GATEWAY_ID=from-file\nSIP_FAILOVER_STATE_DIR=/x\n")
    monkeypatch.setenv("SIP_FAILOVER_GATEWAY_ID", "from-env")
    settings = Settings()
    assert settings.gateway_id == "from-env"
    assert str(settings.state_dir) == "/x"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("SIP_FAILOVER_TRUNK__REGISTRAR", "trunk.example.net"),  # not a sip: URI
        ("SIP_FAILOVER_MQTT__URL", "http://broker"),
        ("SIP_FAILOVER_SMTP__LIFETIME_DAYS", "0"),
    ],
)
def test_bad_settings_are_refused_with_their_name(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError):
        Settings()


def test_both_tls_modes_at_once_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIP_FAILOVER_SMTP__STARTTLS", "true")
    monkeypatch.setenv("SIP_FAILOVER_SMTP__TLS", "true")
    with pytest.raises(ValidationError, match="STARTTLS or implicit TLS"):
        Settings()


@pytest.mark.parametrize(
    ("uri", "hostport"),
    [
        ("sip:trunk.example.net", ("trunk.example.net", 5060)),
        ("sip:user@10.0.0.1:5080;transport=udp", ("10.0.0.1", 5080)),
        ("sips:[2001:db8::1]:5061", ("2001:db8::1", 5061)),
    ],
)
def test_sip_uri_host_and_port(uri: str, hostport: tuple[str, int]) -> None:
    assert sip_uri_hostport(uri) == hostport
