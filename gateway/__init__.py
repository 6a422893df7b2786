"""sip-failover: a SIP failover gateway."""
