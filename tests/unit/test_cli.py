"""The command line's own manners: help that says something, quiet on a closed pipe."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gateway.cli.main import _parser, main
from gateway.config import Settings

REPO = Path(__file__).resolve().parents[2]
COMMANDS = ["run", "demo", "check", "explain", "calls", "status", "probe"]


def help_of(command: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_says_what_it_does(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    text = help_of(command, capsys)
    _usage, _, rest = text.partition("\n\n")
    description = rest.split("\n\n", 1)[0]
    assert not description.startswith(("options:", "positional arguments:")), text
    assert len(description.split()) >= 10, f"no description for {command}:\n{text}"


def test_run_help_lists_every_setting_it_reads(capsys: pytest.CaptureFixture[str]) -> None:
    text = help_of("run", capsys)
    assert "SIGTERM" in text
    assert "SIP_FAILOVER_SECRETS_DIR" in text
    expected = ["SIP_FAILOVER_SIP__LISTEN", "SIP_FAILOVER_TRUNK__REGISTRAR",
                "SIP_FAILOVER_MQTT__URL", "SIP_FAILOVER_SHUTDOWN_GRACE"]  # fmt: skip
    expected += [f"SIP_FAILOVER_{name.upper()}" for name in Settings.model_fields]
    missing = [name for name in expected if name not in text]
    assert missing == [], text
    assert "[0.0.0.0:5060]" in text  # defaults are shown


def test_the_parser_knows_every_command() -> None:
    parsed = _parser().parse_args(["status", "--json"])
    assert parsed.command == "status"


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["explain", "rules/example.yaml", "--to", "+3225550100"], 141),
        (["run", "--help"], 0),  # argparse ignores a failed write of its help itself
    ],
)
def test_a_reader_that_goes_away_ends_the_command_quietly(args: list[str], code: int) -> None:
    # `sip-failover ... | head -1`: head exits before the command writes.
    child = subprocess.Popen(
        [sys.executable, "-m", "gateway", *args],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert child.stdout is not None
    child.stdout.close()  # the reader is gone before the command gets to write
    _, err = child.communicate(timeout=60)
    assert b"Traceback" not in err, err.decode()
    assert b"BrokenPipeError" not in err, err.decode()
    assert child.returncode == code
