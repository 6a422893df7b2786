"""The command line: ``sip-failover run | edge | demo | check | explain | calls | status | probe``.

``main.py`` parses the arguments and runs a command; each command that reads
rather than runs lives beside it (``rules.py``: check/explain, ``probe.py``,
``state.py``: calls/status).
"""

from gateway.cli.main import main

__all__ = ["main"]
