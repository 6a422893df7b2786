"""The edge's Kamailio configuration, generated from the settings.

Everything the edge does is Kamailio's own modules; this module only writes
their configuration: ``kamailio.cfg``, the db_text tables ``uacreg``
(the trunk registration, uac module) and ``address`` (the trunk's sources,
permissions module), and the dispatcher list of workers. Pure text from
settings: :func:`edge_files` returns file name -> content, the caller writes.

The routing, in short (docs/scaling.md):

- a request from a worker (``ds_is_from_list``: its IP, port and protocol)
  goes to the trunk's proxy; a 401/407 from the trunk is answered with the
  trunk's credentials (``uac_auth``), so the trunk sees every leg from the
  edge's address and workers hold no credentials;
- any other source must be one of the trunk's addresses
  (``allow_source_address``); anyone else gets no answer at all, and is
  counted by ``pike`` (a flood is logged and banned); the trunk is not
  counted (a busy trunk is not a flood: past the pool's capacity its callers
  get 503);
- an INVITE from the trunk goes to a worker (``ds_select_dst``, round
  robin). A worker that is full answers 480/503 without a Q.850 cause (or
  cause 42), or does not answer within ``WORKER_FR_MS``: the next worker is
  tried (``ds_next_dst``), so the caller never sees a full worker. When every
  worker refused, the pool is asked once more with the last-resort header:
  a worker with one free leg takes a voicemail. When that fails too, the
  caller gets 503 + Retry-After, and a ``pool-full`` line in the log tells
  the control process, which logs the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway.config import sip_uri_hostport
from gateway.edge.settings import LAST_RESORT_HEADER

if TYPE_CHECKING:
    from pathlib import Path

    from gateway.config import Settings

MODULES_DIR = "/usr/lib/x86_64-linux-gnu/kamailio/modules/"
WORKER_FR_MS = 2000  # a live worker answers 100/180 within a poll (20 ms); 2 s is a dead one
POOL_FULL_MARK = "sip-failover pool-full"
_MODULES = ("jsonrpcs", "kex", "corex", "tm", "tmx", "sl", "rr", "pv", "maxfwd", "textops",
            "siputils", "xlog", "db_text", "permissions", "pike", "dispatcher", "uac")  # fmt: skip


@dataclass(frozen=True, slots=True)
class EdgeLayout:
    """Where the edge listens, where its workers are, and where its files go."""

    listen: tuple[str, int]
    workers: tuple[tuple[str, int], ...]
    folder: Path

    @property
    def rpc_socket(self) -> Path:
        """jsonrpcs datagram socket: the supervisor asks ``uac.reg_info`` here."""
        return self.folder / "rpc.sock"


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _db_escape(value: str) -> str:
    """A db_text field: ``:`` and ``\\`` are escaped; a line break cannot be stored."""
    if "\n" in value or "\r" in value:
        raise ValueError("a line break cannot be stored in a db_text table")
    return value.replace("\\", "\\\\").replace(":", "\\:")


def _cfg_string(value: str) -> str:
    """A string literal of Kamailio's configuration language."""
    if any(ch in value for ch in "\n\r"):
        raise ValueError("a line break cannot be stored in kamailio.cfg")
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def edge_files(settings: Settings, layout: EdgeLayout) -> dict[str, str]:
    """Every file of the edge's configuration folder, by name."""
    return {
        "kamailio.cfg": kamailio_cfg(settings, layout),
        "db/version": _version_table(),
        "db/address": address_table(settings),
        "db/uacreg": uacreg_table(settings, layout),
        "db/trusted": _TRUSTED,
        "dispatcher.list": dispatcher_list(layout),
    }


_TRUSTED = (
    "id(int,auto) src_ip(string) proto(string) from_pattern(string,null) "
    "ruri_pattern(string,null) tag(string,null) priority(int) \n"
)


def _version_table() -> str:
    rows = ("version:1", "address:6", "trusted:6", "uacreg:5")
    return "table_name(string) table_version(int) \n" + "".join(f"{r}\n" for r in rows)


def address_table(settings: Settings) -> str:
    """permissions' ``address`` table: group 1 holds the trunk's sources (any port)."""
    head = "id(int,auto) grp(int) ip_addr(string) mask(int) port(int) tag(string,null) \n"
    rows = []
    for n, ip in enumerate(sorted(settings.trunk.allowed_sources()), start=1):
        mask = 128 if ":" in ip else 32
        rows.append(f"{n}:1:{_db_escape(ip)}:{mask}:0:trunk\n")
    return head + "".join(rows)


def uacreg_table(settings: Settings, layout: EdgeLayout) -> str:
    """uac's ``uacreg`` table: one row, the trunk registration (none if disabled)."""
    head = (
        "id(int,auto) l_uuid(string) l_username(string) l_domain(string) r_username(string) "
        "r_domain(string) realm(string,null) auth_username(string,null) "
        "auth_password(string,null) auth_ha1(string,null) auth_proxy(string) expires(int) "
        "flags(int) reg_delay(int) contact_addr(string,null) socket(string,null) \n"
    )
    trunk = settings.trunk
    if not trunk.register_enabled:
        return head
    host, port = sip_uri_hostport(trunk.registrar)
    domain = _hostport(host, port)
    realm = "" if trunk.realm == "*" else trunk.realm
    user = trunk.username or "sip-failover"
    fields = [
        "1", "trunk", user, domain, user, domain, realm, trunk.username,
        trunk.password.get_secret_value(), "", f"sip:{domain}", str(trunk.expires), "0", "0",
        _hostport(*layout.listen), "",
    ]  # fmt: skip
    return head + ":".join(_db_escape(f) for f in fields) + "\n"


def dispatcher_list(layout: EdgeLayout) -> str:
    """dispatcher's list file: set 1 is the pool of workers."""
    return "".join(f"1 sip:{_hostport(h, p)}\n" for h, p in layout.workers)


def kamailio_cfg(settings: Settings, layout: EdgeLayout) -> str:
    """The configuration script: globals, modules, then the routing."""
    return _globals(settings, layout) + _modparams(settings, layout) + _routing(settings)


def _globals(settings: Settings, layout: EdgeLayout) -> str:
    advertise = ""
    if settings.sip.public_address:
        advertise = f" advertise {settings.sip.public_address}:{layout.listen[1]}"
    loads = "".join(f'loadmodule "{m}.so"\n' for m in _MODULES)
    return f"""#!KAMAILIO
# Generated by sip-failover from its settings: edits here are overwritten.
debug=2
log_stderror=yes
log_prefix=""
memdbg=5
memlog=5
children={settings.edge.children}
listen=udp:{_hostport(*layout.listen)}{advertise}
disable_tcp=yes
auto_aliases=no
dns=no
rev_dns=no
use_dns_cache=no
server_header="Server: sip-failover-edge"
user_agent_header="User-Agent: sip-failover-edge"
mpath="{MODULES_DIR}"
{loads}"""


def _modparams(settings: Settings, layout: EdgeLayout) -> str:
    edge = settings.edge
    db = f"text://{layout.folder / 'db'}"
    retry = max(10, int(settings.trunk.retry_first))
    ping_from = f"sip:edge@{_hostport(*layout.listen)}"
    return f"""
modparam("jsonrpcs", "transport", 4)
modparam("jsonrpcs", "dgram_socket", {_cfg_string(str(layout.rpc_socket))})
modparam("tm", "fr_timer", 5000)
modparam("tm", "fr_inv_timer", 120000)
modparam("rr", "enable_full_lr", 1)
modparam("permissions", "db_url", {_cfg_string(db)})
modparam("permissions", "db_mode", 1)
modparam("pike", "sampling_time_unit", 2)
modparam("pike", "reqs_density_per_unit", {edge.pike_per_2s})
modparam("pike", "remove_latency", 10)
modparam("dispatcher", "list_file", {_cfg_string(str(layout.folder / 'dispatcher.list'))})
modparam("dispatcher", "ds_ping_interval", 1)
modparam("dispatcher", "ds_probing_mode", 1)
modparam("dispatcher", "ds_probing_threshold", 1)
modparam("dispatcher", "ds_inactive_threshold", 1)
modparam("dispatcher", "ds_ping_from", {_cfg_string(ping_from)})
modparam("uac", "restore_mode", "none")
modparam("uac", "reg_db_url", {_cfg_string(db)})
modparam("uac", "reg_contact_addr", {_cfg_string(_hostport(*layout.listen))})
modparam("uac", "reg_timer_interval", 10)
modparam("uac", "reg_retry_interval", {retry})
modparam("uac", "reg_keep_callid", 1)
modparam("uac", "auth_username_avp", "$avp(auser)")
modparam("uac", "auth_password_avp", "$avp(apass)")
modparam("uac", "auth_realm_avp", "$avp(arealm)")
"""


def _routing(settings: Settings) -> str:
    trunk = settings.trunk
    proxy_host, proxy_port = sip_uri_hostport(trunk.outbound_proxy)
    realm = "" if trunk.realm == "*" else trunk.realm
    retry_after = settings.edge.retry_after
    return (
        _ROUTES.replace("@PROXY_HOST@", _cfg_string(proxy_host))
        .replace("@PROXY_PORT@", str(proxy_port))
        .replace("@AUTH_USER@", _cfg_string(trunk.username))
        .replace("@AUTH_PASS@", _cfg_string(trunk.password.get_secret_value()))
        .replace("@AUTH_REALM@", _cfg_string(realm))
        .replace("@RETRY_AFTER@", str(retry_after))
        .replace("@LAST_RESORT@", LAST_RESORT_HEADER)
        .replace("@WORKER_FR@", str(WORKER_FR_MS))
        .replace("@POOL_FULL@", POOL_FULL_MARK)
    )


_ROUTES = r"""
request_route {
    if (!mf_process_maxfwd_header("10")) {
        sl_send_reply("483", "Too Many Hops");
        exit;
    }
    # A worker: its IP and port are in the dispatcher list (mode 2: any protocol).
    if (ds_is_from_list("1", "2")) {
        route(FROM_WORKER);
        exit;
    }
    # Only the trunk may send anything in; strangers get no answer at all,
    # and are counted: pike logs (and bans) a flood. The trunk is not: a
    # busy trunk sends three requests a call, and a ban would drop every
    # caller; past the workers' capacity its callers get the pool's 503.
    if (!allow_source_address("1")) {
        pike_check_req();
        exit;
    }
    route(FROM_TRUNK);
}

route[WITHINDLG] {
    if (loose_route()) {
        t_relay();
        exit;
    }
    if (is_method("ACK")) {
        if (t_check_trans()) {
            t_relay();
        }
        exit;
    }
    sl_send_reply("404", "Not here");
    exit;
}

route[STATELESS_PARTS] {
    if (has_totag()) {
        route(WITHINDLG);
    }
    if (is_method("CANCEL") || is_method("ACK")) {
        if (t_check_trans()) {
            t_relay();
        }
        exit;
    }
    t_check_trans();
}

route[FROM_TRUNK] {
    route(STATELESS_PARTS);
    if (is_method("OPTIONS") && $rU == $null) {
        sl_send_reply("200", "OK");
        exit;
    }
    if (!is_method("INVITE")) {
        sl_send_reply("405", "Method Not Allowed");
        exit;
    }
    # Only the edge decides that a worker may take a last-resort voicemail.
    remove_hf("@LAST_RESORT@");
    record_route();
    if (!ds_select_dst("1", "4")) {
        route(POOL_FULL);
    }
    route(TO_WORKER);
}

route[TO_WORKER] {
    t_on_failure("WORKER_FAILED");
    t_set_fr(0, @WORKER_FR@);
    if (!t_relay()) {
        route(NEXT_WORKER);
    }
    exit;
}

failure_route[WORKER_FAILED] {
    if (t_is_canceled()) {
        exit;
    }
    if (t_branch_timeout() && !t_branch_replied()) {
        # Silent: dead or stuck. Inactive until it answers OPTIONS again
        # (a restarted worker does within a second).
        ds_mark_dst("ip");
        $avp(silent_worker) = 1;
        route(NEXT_WORKER);
    }
    # A full worker refuses before any dialog: 480/486/503 without a Q.850
    # cause (pjsua's own refusal), or with cause 42 (no circuit).
    if (t_check_status("480|486|503")) {
        if ($T_rpl($hdr(Reason)) == $null || $T_rpl($hdr(Reason)) =~ "cause=42") {
            route(NEXT_WORKER);
        }
    }
}

route[NEXT_WORKER] {
    if (ds_next_dst()) {
        route(TO_WORKER);
    }
    # A worker was silent while this caller waited: by now it may be back.
    if ($avp(silent_worker) == 1 && $avp(second_round) == $null) {
        $avp(second_round) = 1;
        if (ds_select_dst("1", "4")) {
            route(TO_WORKER);
        }
    }
    if ($avp(last_resort) == $null) {
        $avp(last_resort) = 1;
        append_hf("@LAST_RESORT@: voicemail\r\n");
        if (ds_select_dst("1", "4")) {
            route(TO_WORKER);
        }
    }
    route(POOL_FULL);
}

route[POOL_FULL] {
    xlog("L_NOTICE", "@POOL_FULL@ call_id=$ci caller=$fU asserted=$ai called=$tU source=$si\n");
    append_to_reply("Retry-After: @RETRY_AFTER@\r\nReason: Q.850;cause=42\r\n");
    send_reply("503", "Service Unavailable");
    exit;
}

route[FROM_WORKER] {
    route(STATELESS_PARTS);
    if (is_method("INVITE")) {
        record_route();
    }
    # Every leg of a worker leaves for the trunk's proxy.
    $rd = @PROXY_HOST@;
    $rp = @PROXY_PORT@;
    t_on_failure("TRUNK_AUTH");
    if (!t_relay()) {
        sl_reply_error();
    }
    exit;
}

failure_route[TRUNK_AUTH] {
    if (t_is_canceled()) {
        exit;
    }
    if (t_check_status("401|407") && $avp(authed) == $null) {
        $avp(authed) = 1;
        $avp(auser) = @AUTH_USER@;
        $avp(apass) = @AUTH_PASS@;
        $avp(arealm) = @AUTH_REALM@;
        if (uac_auth()) {
            t_on_failure("TRUNK_AUTH");
            t_relay();
        }
        exit;
    }
}
"""
