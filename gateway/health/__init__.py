"""Health: the monitor that drives ``core/health.py``, the probes, and the alert mails."""
