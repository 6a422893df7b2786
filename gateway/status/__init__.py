"""Status: event bus, MQTT publisher, call log."""
