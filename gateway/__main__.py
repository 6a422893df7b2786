"""``python -m gateway`` is the ``sip-failover`` command."""

from gateway.cli import main

raise SystemExit(main())
