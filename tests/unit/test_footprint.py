"""What the gateway loads at start: libraries only some rules or calls need wait until then."""

from __future__ import annotations

import subprocess
import sys

# numpy: about 13 MB, for the SIT detector (loaded with the first tapped leg);
# holidays: about 6 MB, for schedules that name a region; aiosmtpd: the demo's
# and tests' mail server; matplotlib: the benchmark's plots.
NOT_AT_START = ("numpy", "holidays", "aiosmtpd", "matplotlib")


def test_the_gateway_starts_without_what_only_some_rules_or_calls_need() -> None:
    probe = "import sys, gateway.app; print(' '.join(sorted(set(sys.modules))))"
    loaded = set(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                                check=True).stdout.split())  # fmt: skip
    assert not {name for name in loaded if name.split(".")[0] in NOT_AT_START}
