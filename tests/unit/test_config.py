"""Settings from the environment, a .env file and a secrets folder."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from pydantic import ValidationError

from gateway.config import Settings, StateSettings, sip_uri_hostport
from gateway.config_check import checked_settings, known_variables, unknown_variables

REGISTRAR = ("SIP_FAILOVER_TRUNK__REGISTRAR", "sip:trunk.example.net")


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
    settings = Settings(_secrets_dir=secrets, trunk={"registrar": "sip:trunk.example.net"})
    assert settings.trunk.password.get_secret_value() == "hunter2-trunk"
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings.model_dump())


def test_the_environment_wins_over_a_dot_env_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text("SIP_FAILOVER_GATEWAY_ID=from-file\nSIP_FAILOVER_STATE_DIR=/x\n")
    monkeypatch.setenv("SIP_FAILOVER_GATEWAY_ID", "from-env")
    monkeypatch.setenv(*REGISTRAR)
    settings = Settings()
    assert settings.gateway_id == "from-env"
    assert str(settings.state_dir) == "/x"


def problems(err: io.StringIO) -> list[str]:
    return err.getvalue().splitlines()


def test_without_a_registrar_the_settings_say_which_variable_is_missing() -> None:
    err = io.StringIO()
    assert checked_settings(err) is None
    assert problems(err) == [
        "settings: SIP_FAILOVER_TRUNK__REGISTRAR: required, but not set (SIP URI of the registrar)"
    ]


def test_run_and_probe_stop_at_once_without_a_registrar(capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.cli import main  # noqa: PLC0415 - imports the SIP engine

    assert main(["run"]) == 2
    assert "SIP_FAILOVER_TRUNK__REGISTRAR: required" in capsys.readouterr().err
    started = time.monotonic()
    assert main(["probe", "anna"]) == 2
    assert time.monotonic() - started < 5, "the probe ran before its settings were checked"
    err = capsys.readouterr().err
    assert "SIP_FAILOVER_TRUNK__REGISTRAR: required" in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("SIP_FAILOVER_TRUNK__REGISTRAR", "trunk.invalid", "must be a sip: URI"),
        ("SIP_FAILOVER_MQTT__URL", "http://broker", "must start with mqtt://"),
        ("SIP_FAILOVER_SMTP__LIFETIME_DAYS", "0", "greater than 0"),
        ("SIP_FAILOVER_TRUNK__EXPIRES", "often", "valid integer"),
        ("SIP_FAILOVER_SIP__LISTEN", "0.0.0.0:sip", "host:port"),
        ("SIP_FAILOVER_TRUNK__SOURCES", "198.51.100.77", 'a JSON list, e.g. ["198.51.100.10"]'),
    ],
)
def test_bad_settings_are_refused_with_their_name(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, words: str
) -> None:
    monkeypatch.setenv(*REGISTRAR)
    monkeypatch.setenv(name, value)
    err = io.StringIO()
    assert checked_settings(err) is None
    (line,) = problems(err)
    assert line.startswith(f"settings: {name}: "), line
    assert words in line
    said = line.removeprefix(f"settings: {name}: ")
    assert value not in said or value == "0", "a value may be a secret: never printed"


def test_a_bad_setting_in_the_dot_env_file_is_named_too(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("SIP_FAILOVER_TRUNK__REGISTRAR=trunk.example.net\n")
    err = io.StringIO()
    assert checked_settings(err) is None
    assert problems(err)[0].startswith("settings: SIP_FAILOVER_TRUNK__REGISTRAR: must be a sip:")


def test_both_tls_modes_at_once_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(*REGISTRAR)
    monkeypatch.setenv("SIP_FAILOVER_SMTP__STARTTLS", "true")
    monkeypatch.setenv("SIP_FAILOVER_SMTP__TLS", "true")
    err = io.StringIO()
    assert checked_settings(err) is None
    assert problems(err) == [
        (
            "settings: SIP_FAILOVER_SMTP__TLS: choose STARTTLS (SIP_FAILOVER_SMTP__STARTTLS) "
            "or implicit TLS, not both"
        )
    ]


def test_misspelt_variables_are_warned_about_with_the_likely_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(*REGISTRAR)
    monkeypatch.setenv("SIP_FAILOVER_TRUNK_REGISTRAR", "sip:typo.example.net")
    monkeypatch.setenv("sip_failover_smtp__hots", "mail.example.com")
    (tmp_path / ".env").write_text("SIP_FAILOVER_MQTT__URI=mqtt://broker\nOTHER=1\n")
    err = io.StringIO()
    settings = checked_settings(err)
    assert settings is not None
    assert problems(err) == [
        ("settings: warning: SIP_FAILOVER_MQTT__URI (in .env) is no setting and is ignored; "
         "did you mean SIP_FAILOVER_MQTT__URL?"),
        ("settings: warning: SIP_FAILOVER_SMTP__HOTS is no setting and is ignored; "
         "did you mean SIP_FAILOVER_SMTP__HOST?"),
        ("settings: warning: SIP_FAILOVER_TRUNK_REGISTRAR is no setting and is ignored; "
         "did you mean SIP_FAILOVER_TRUNK__REGISTRAR?"),
    ]


def test_every_documented_variable_is_known(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(*REGISTRAR)
    for name in ("SIP_FAILOVER_TRUNK__REGISTER", "SIP_FAILOVER_SMTP__FROM",
                 "SIP_FAILOVER_SECRETS_DIR", "SIP_FAILOVER_SIP__RTP_PORT_RANGE"):  # fmt: skip
        monkeypatch.setenv(name, "1" if "PORT" in name else "x")
    monkeypatch.setenv("SIP_FAILOVER_TRUNK__REGISTER", "false")
    err = io.StringIO()
    assert checked_settings(err) is not None
    assert problems(err) == []


def test_calls_and_status_need_only_the_state_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIP_FAILOVER_STATE_DIR", "/var/lib/sip-failover")
    assert str(StateSettings().state_dir) == "/var/lib/sip-failover"


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


def test_every_setting_is_in_the_readme_table() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    rows = [line for line in readme.splitlines() if line.startswith("| `SIP_FAILOVER_")]
    _, spelled = known_variables()
    for name in spelled:
        section, _, key = name.rpartition("__")
        listed = any(name in row or (f"{section}__" in row and f"`__{key}`" in row) for row in rows)
        assert listed, f"{name} is not in README.md's settings table"


def test_a_trunk_over_tls_reaches_its_uris_over_tls_on_5061(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    monkeypatch.setenv(*REGISTRAR)
    monkeypatch.setenv("SIP_FAILOVER_TRUNK__TRANSPORT", "tls")
    monkeypatch.setenv("SIP_FAILOVER_TRUNK__TLS__CA_FILE", str(ca))
    trunk = Settings().trunk
    assert trunk.uri("sip:trunk.example") == "sip:trunk.example;transport=tls"
    assert trunk.uri("sips:trunk.example") == "sips:trunk.example"  # already TLS
    assert sip_uri_hostport(trunk.uri("sip:trunk.example")) == ("trunk.example", 5061)
    assert trunk.tls.verify_server is True  # verified unless the admin says otherwise


def test_tls_without_a_ca_file_to_verify_with_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv(*REGISTRAR)
    monkeypatch.setenv("SIP_FAILOVER_TRUNK__TRANSPORT", "tls")
    monkeypatch.setenv("SIP_FAILOVER_TRUNK__TLS__CA_FILE", str(tmp_path / "missing.pem"))
    with pytest.raises(ValidationError, match="CA_FILE"):
        Settings()


def test_udp_leaves_the_trunks_uris_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(*REGISTRAR)
    monkeypatch.setenv("SIP_FAILOVER_TRUNK__PRESENT", "public")
    trunk = Settings().trunk
    assert trunk.uri("sip:trunk.example") == "sip:trunk.example"
    assert trunk.present == "public"


def test_settings_two_sections_deep_are_known_and_their_typos_caught() -> None:
    right = "SIP_FAILOVER_TRUNK__TLS__CA_FILE"
    assert unknown_variables({right: "/etc/ca.pem"}, {}) == []
    warned = unknown_variables({"SIP_FAILOVER_TRUNK__TLS__CA_FLE": "/etc/ca.pem"}, {})
    hint = f"did you mean {right}?"
    assert warned == [f"SIP_FAILOVER_TRUNK__TLS__CA_FLE is no setting and is ignored; {hint}"]


def test_numbers_are_dialled_as_e164_unless_the_trunk_wants_another_form(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(*REGISTRAR)
    assert Settings().trunk.dial_format == "e164"
    monkeypatch.setenv("SIP_FAILOVER_TRUNK__DIAL_FORMAT", "national")
    assert Settings().trunk.dial_format == "national"
    monkeypatch.setenv("SIP_FAILOVER_TRUNK__DIAL_FORMAT", "0032")
    err = io.StringIO()
    assert checked_settings(err) is None
    (problem,) = problems(err)
    assert problem.startswith("settings: SIP_FAILOVER_TRUNK__DIAL_FORMAT: "), problem
    assert "national" in problem


def test_the_ehlo_name_is_a_setting_and_its_default_needs_no_dns(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import socket  # noqa: PLC0415

    def looked_up(name: str = "") -> str:
        raise AssertionError(f"socket.getfqdn({name!r}): a DNS look-up")

    monkeypatch.setattr(socket, "getfqdn", looked_up)
    monkeypatch.setenv(*REGISTRAR)
    assert Settings().smtp.ehlo_name == socket.gethostname()
    monkeypatch.setenv("SIP_FAILOVER_SMTP__EHLO_NAME", "gw1.example.net")
    assert Settings().smtp.ehlo_name == "gw1.example.net"
    monkeypatch.setenv("SIP_FAILOVER_SMTP__EHLO_NAME", "two words")
    err = io.StringIO()
    assert checked_settings(err) is None
    (line,) = problems(err)
    assert line.startswith("settings: SIP_FAILOVER_SMTP__EHLO_NAME: "), line
