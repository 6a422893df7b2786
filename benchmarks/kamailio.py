"""Kamailio doing the same serial failover as the gateway, for the side-by-side benchmark.

The configuration is the smallest that does what the gateway's rules do:
tm relays the INVITE to the main line, and its failure route sends it on to
the backup when the main line answers 404 (``t_on_failure``, then a new
``$ru`` and ``t_relay``: with ``append_branch`` as well, tm sent the INVITE twice). The "known outage" number goes straight to the backup, the
way the gateway skips a target it knows is dead. Kamailio handles no media:
the caller and the phone exchange RTP directly.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

MODULES = Path("/usr/lib/x86_64-linux-gnu/kamailio/modules")

CONFIG = """#!KAMAILIO
debug=1
log_stderror=yes
children=2
disable_tcp=yes
auto_aliases=no
listen=udp:127.0.0.1:{port}
mpath="{modules}/"
loadmodule "tm.so"
loadmodule "sl.so"
loadmodule "pv.so"
loadmodule "maxfwd.so"
loadmodule "siputils.so"
loadmodule "textops.so"
loadmodule "corex.so"

request_route {{
    if (!mf_process_maxfwd_header("10")) {{
        sl_send_reply("483", "Too Many Hops");
        exit;
    }}
    if (is_method("CANCEL|ACK") || has_totag()) {{
        t_relay();
        exit;
    }}
    if ($rU == "{outage_number}") {{
        $ru = "sip:backup@127.0.0.1:{backup}";
        t_relay();
        exit;
    }}
    $ru = "sip:main@127.0.0.1:{main}";
    t_on_failure("FAILOVER");
    t_relay();
}}

failure_route[FAILOVER] {{
    if (t_is_canceled()) {{
        exit;
    }}
    if (t_check_status("404")) {{
        $ru = "sip:backup@127.0.0.1:{backup}";  # the new branch t_relay sends
        t_relay();
    }}
}}
"""


class Kamailio:
    """``kamailio -DD -E`` on 127.0.0.1 with the failover configuration."""

    def __init__(self, workdir: Path, port: int, main: int, backup: int,
                 outage_number: str) -> None:  # fmt: skip
        self.port = port
        self.config = workdir / "kamailio.cfg"
        self.config.write_text(CONFIG.format(port=port, modules=MODULES, main=main,
                                             backup=backup, outage_number=outage_number))  # fmt: skip
        self.log = workdir / "kamailio.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, listening: object) -> Kamailio:
        """Start it and wait until ``listening(port)`` says its socket is up."""
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                ["kamailio", "-DD", "-E", "-f", str(self.config), "-m", "32", "-M", "4"],
                stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 10
        while not listening(self.port):  # type: ignore[operator]
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"kamailio did not start:\n{self.log.read_text()}")
            time.sleep(0.05)
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
