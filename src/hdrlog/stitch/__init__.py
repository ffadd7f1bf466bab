"""Flows, per-connection streams and request/response pairing."""
