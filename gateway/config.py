"""Settings that are not routing: where to listen, the trunk, the broker, mail.

One pydantic-settings tree, built once in the composition root and passed
down. Sources, strongest first: environment (``SIP_FAILOVER_*``, nested with
``__``), a ``.env`` file, then a secrets folder (one file per setting, e.g.
``/run/secrets/sip_failover_trunk__password``, as systemd's
``LoadCredential=`` or container secrets lay them out). Secrets are
``SecretStr``: they never appear in a repr, a log line or an error.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import (
    BaseSettings,
    NestedSecretsSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from gateway.core.presentation import Present, Redirection
from gateway.edge.settings import EdgeSettings

SECRETS_DIR_ENV = "SIP_FAILOVER_SECRETS_DIR"


def _split_hostport(value: str, default_port: int) -> tuple[str, int]:
    """Split ``host:port``, ``[v6]:port`` or a bare host."""
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest.removeprefix(":")
        return host, int(port) if port else default_port
    if value.count(":") == 1:
        host, port = value.split(":")
        return host, int(port)
    return value, default_port


def sip_uri_hostport(uri: str) -> tuple[str, int]:
    """Host and port of a ``sip:`` URI (``sip:user@host:port;params``).

    With no port, 5061 for ``sips:`` and ``transport=tls``, else 5060 (RFC 3263).
    """
    rest = uri.split(":", 1)[1] if ":" in uri else uri
    tls = uri.lower().startswith("sips:") or ";transport=tls" in uri.lower()
    rest = rest.split(";", 1)[0].split("?", 1)[0]
    rest = rest.rsplit("@", 1)[-1]
    return _split_hostport(rest, 5061 if tls else 5060)


class SipSettings(BaseModel):
    """The gateway's own SIP endpoint."""

    listen: str = Field(
        default="0.0.0.0:5060",
        description="host:port of the UDP SIP socket",
    )
    public_address: str | None = Field(
        default=None, description="address to put in Contact/SDP when behind NAT"
    )
    rtp_port: int = Field(default=10000, ge=0, le=65535, description="first RTP port (0: any)")
    rtp_port_range: int = Field(default=200, ge=0, description="how many RTP ports to try")
    log_level: int = Field(default=1, ge=0, le=6, description="pjsua's own log level")
    max_calls_per_source_per_minute: int = Field(default=120, ge=1)

    @field_validator("listen")
    @classmethod
    def _is_hostport(cls, value: str) -> str:
        try:
            port = _split_hostport(value, 5060)[1]
        except ValueError:
            port = -1
        if not 0 <= port <= 65535:
            raise ValueError("expected host:port, e.g. 0.0.0.0:5060 or [::]:5060")
        return value

    @property
    def host(self) -> str:
        return _split_hostport(self.listen, 5060)[0]

    @property
    def port(self) -> int:
        return _split_hostport(self.listen, 5060)[1]


DEBIAN_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


class TrunkTlsSettings(BaseModel):
    """SIP over TLS to the trunk (``transport: tls``)."""

    port: int = Field(default=5061, ge=1, le=65535, description="the gateway's TLS listen port")
    ca_file: Path = Field(default=DEBIAN_CA_BUNDLE, description="CAs to check the trunk against")
    verify_server: bool = Field(default=True, description="refuse a trunk whose certificate fails")
    cert_file: Path | None = Field(default=None, description="the gateway's certificate (PEM)")
    key_file: Path | None = Field(default=None, description="its private key (PEM)")
    key_password: SecretStr = SecretStr("")


class TrunkSettings(BaseModel):
    """The SIP provider account that holds the public number."""

    # No default: a gateway registering to a guessed address fails 32 s later
    # with a 408 that says nothing about the missing setting.
    registrar: str = Field(description="SIP URI of the registrar")
    register_enabled: Annotated[bool, Field(alias="register")] = Field(
        default=True, description="false for trunks that send calls to a static IP"
    )
    username: str = ""
    password: SecretStr = SecretStr("")
    realm: str = "*"
    proxy: str | None = Field(default=None, description="where legs to numbers go")
    dial_format: Literal["e164", "national", "international_00"] = Field(
        default="e164",
        description="how numbers are written in legs' Request-URIs: +32470000001, "
        "0470000001 (national, from the rules' country) or 0032470000001",
    )
    sources: list[str] = Field(
        default_factory=list, description="addresses allowed to send calls in"
    )
    expires: int = Field(default=300, ge=30, le=86400)
    retry_first: float = Field(default=5.0, gt=0, description="first re-REGISTER after a failure")
    retry_max: float = Field(default=300.0, gt=0, description="cap of the re-REGISTER backoff")
    transport: Literal["udp", "tcp", "tls"] = "udp"
    tls: TrunkTlsSettings = TrunkTlsSettings()
    present: Present = Field(default=Present.CALLER, description="caller's or public number")
    assert_identity: bool = Field(default=False, description="add P-Asserted-Identity")
    redirect_header: Redirection = Redirection.DIVERSION

    model_config = {"populate_by_name": True}

    @field_validator("tls")
    @classmethod
    def _tls_files(cls, tls: TrunkTlsSettings, info: ValidationInfo) -> TrunkTlsSettings:
        if info.data.get("transport") != "tls":
            return tls
        if tls.verify_server and not tls.ca_file.is_file():
            raise ValueError(f"CA_FILE {tls.ca_file} is not a file: nothing to verify with")
        if (tls.cert_file is None) != (tls.key_file is None):
            raise ValueError("CERT_FILE and KEY_FILE go together")
        return tls

    def uri(self, uri: str) -> str:
        """``uri`` (one of the trunk's) over the trunk's transport: ``;transport=tcp|tls``."""
        lower = uri.lower()
        if self.transport == "udp" or lower.startswith("sips:") or ";transport=" in lower:
            return uri
        return f"{uri};transport={self.transport}"

    @field_validator("registrar", "proxy")
    @classmethod
    def _is_sip_uri(cls, value: str | None) -> str | None:
        if value is not None and not value.lower().startswith(("sip:", "sips:")):
            raise ValueError("must be a sip: URI, e.g. sip:trunk.example.net")
        return value

    @property
    def outbound_proxy(self) -> str:
        return self.proxy or self.registrar

    def allowed_sources(self) -> frozenset[str]:
        """IP addresses that may send calls in (names resolved once, at start)."""
        names = self.sources or [sip_uri_hostport(self.registrar)[0]]
        found: set[str] = set()
        for name in names:
            found.update(_resolve(name))
        return frozenset(found)


def _resolve(name: str) -> set[str]:
    try:
        return {str(ipaddress.ip_address(name))}
    except ValueError:
        pass
    infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_UDP)
    return {str(info[4][0]) for info in infos}


class SmtpSettings(BaseModel):
    """The mail server that voicemail and alerts go through."""

    host: str = "localhost"
    port: int = 25
    username: str = ""
    password: SecretStr = SecretStr("")
    starttls: bool = False
    tls: bool = False
    from_: Annotated[str, Field(alias="from")] = "sip-failover@localhost"
    timeout: float = 30.0
    lifetime_days: float = Field(
        default=5.0, gt=0, le=60, description="how long a mail is retried before it is given up"
    )
    retry_first: float = Field(
        default=60.0, gt=0, le=3600, description="seconds before the first retry (then doubled)"
    )
    # Never socket.getfqdn(): on a host whose name is not in /etc/hosts it waits on DNS.
    ehlo_name: str = Field(
        default_factory=socket.gethostname,
        pattern=r"^\S+$",
        description="the name the gateway gives in EHLO (default: the host name, as it is)",
    )

    model_config = {"populate_by_name": True}

    @field_validator("tls")
    @classmethod
    def _one_tls_mode(cls, tls: bool, info: ValidationInfo) -> bool:
        if tls and info.data.get("starttls"):
            raise ValueError(
                "choose STARTTLS (SIP_FAILOVER_SMTP__STARTTLS) or implicit TLS, not both"
            )
        return tls


class MqttSettings(BaseModel):
    """The broker the status feed goes to; no URL, no feed."""

    url: str | None = Field(default=None, description="mqtt://user:pass@host:1883 or mqtts://")
    prefix: str | None = None
    client_id: str | None = None
    tls_ca: Path | None = None
    queue_size: int = Field(default=1000, ge=10)

    @field_validator("url")
    @classmethod
    def _scheme(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in {"mqtt", "mqtts"}:
            raise ValueError("must start with mqtt:// or mqtts://")
        return value


class StateSettings(BaseSettings):
    """Where the gateway keeps its state: all that ``calls`` and ``status`` read.

    Those commands run next to the gateway, often with only
    ``SIP_FAILOVER_STATE_DIR`` set: they need no trunk.
    """

    model_config = SettingsConfigDict(
        env_prefix="SIP_FAILOVER_",
        env_nested_delimiter="__",
        env_file=".env",
        extra="ignore",
        secrets_dir=os.environ.get(SECRETS_DIR_ENV) or None,
        secrets_nested_delimiter="__",
        populate_by_name=True,
    )

    state_dir: Path = Path("state")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Nested secrets (trunk__password as one file) need the nested source.
        del settings_cls
        secrets = NestedSecretsSettingsSource(file_secret_settings)
        return init_settings, env_settings, dotenv_settings, secrets


class Settings(StateSettings):
    """Everything the gateway needs that is not in the rules file.

    ``trunk.registrar`` has no default: build these through
    ``gateway.config_check.checked_settings``, which names each wrong or
    missing variable.
    """

    gateway_id: str = Field(default_factory=lambda: socket.gethostname().split(".")[0])
    rules: Path = Path("rules/example.yaml")
    sip: SipSettings = SipSettings()
    trunk: TrunkSettings
    smtp: SmtpSettings = SmtpSettings()
    mqtt: MqttSettings = MqttSettings()
    edge: EdgeSettings = EdgeSettings()
    shutdown_grace: float = Field(default=30.0, ge=0)
    log_level: str = Field(default="INFO", description="loguru level of the gateway's log")
    log_format: Literal["auto", "text", "json", "journal"] = Field(
        default="auto",
        description="auto: journal priorities under systemd, else text; json for log shippers",
    )
