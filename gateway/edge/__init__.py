"""The Kamailio edge and the pool of gateway workers behind it (docs/scaling.md)."""
