"""``sip-failover demo``: the outage replayed on loopback (``run.py``), its far side
(``peers.py``), its bookkeeping (``story.py``), rules and synthetic audio (``tones.py``)."""
