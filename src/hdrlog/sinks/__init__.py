"""Where records go: NDJSON to stdout or a file (more sinks come with later work)."""

from hdrlog.sinks.ndjson import NdjsonSink

__all__ = ["NdjsonSink"]
