"""Kernel monotonic nanoseconds -> RFC 3339 UTC timestamps with nanoseconds."""

from __future__ import annotations

import time

__all__ = ["Clock"]


class Clock:
    """bpf_ktime_get_ns() counts CLOCK_MONOTONIC; the offset to wall time is
    measured at start and again every `resync_s` (NTP may slew the wall clock)."""

    def __init__(self, resync_s: float = 10.0):
        self._resync_ns = int(resync_s * 1e9)
        self._offset = 0
        self._next_sync = 0
        self._sec = -1
        self._prefix = ""
        self.sync()

    def sync(self) -> None:
        # the tighter of two readings brackets the monotonic clock best
        best = None
        for _ in range(3):
            m0 = time.monotonic_ns()
            w = time.time_ns()
            m1 = time.monotonic_ns()
            if best is None or m1 - m0 < best[0]:
                best = (m1 - m0, w - (m0 + m1) // 2)
        self._offset = best[1]
        self._next_sync = time.monotonic_ns() + self._resync_ns

    def wall_ns(self, mono_ns: int) -> int:
        if mono_ns > self._next_sync:
            self.sync()
        return mono_ns + self._offset

    def second_and_ns(self, mono_ns: int) -> tuple[str, int]:
        """The wall-clock second as RFC 3339 text ("2026-01-01T00:00:00") and the nanoseconds in it."""
        wall = self.wall_ns(mono_ns)
        sec, ns = divmod(wall, 1_000_000_000)
        if sec != self._sec:
            self._sec = sec
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec))
        return self._prefix, ns

    def second_span(self, mono_ns: int) -> tuple[bytes, int, int]:
        """The wall-clock second of `mono_ns` as RFC 3339 text, and the monotonic span [start, end)
        that falls in it (up to the next resync): a caller formats every timestamp in that span as
        the text and `ts - start` nanoseconds, with no call per timestamp."""
        second, ns = self.second_and_ns(mono_ns)
        start = mono_ns - ns
        return second.encode(), start, min(start + 1_000_000_000, self._next_sync + 1)

    def rfc3339(self, mono_ns: int) -> str:
        second, ns = self.second_and_ns(mono_ns)
        return f"{second}.{ns:09d}Z"
