"""Rules texts that several end-to-end tests share."""

from __future__ import annotations

CALLED = "+3225550100"  # the business's public number in every test


def one_phone(phone: str, *, timeout: str = "5s") -> str:
    """The public number rings one phone (``host:port``) and nothing else."""
    return f"""version: 1
targets:
  phone: {{uri: "sip:phone@{phone}"}}
routes:
  - name: main-line
    match: {{to: "{CALLED}"}}
    steps:
      - ring: phone
        timeout: {timeout}
"""
