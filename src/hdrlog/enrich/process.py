"""Executable path and command line of a pid, read from /proc and cached.

Called once per record, so a hit is a dict lookup. A cached pid is checked
again (one read of /proc/PID/stat) at most every REVALIDATE_SECONDS: a changed
start time or comm means the pid was reused or the process exec'd, and the
entry is read afresh. A pid that is not there is remembered as gone for
GONE_SECONDS, so a burst of records from an exited process costs one miss.
Nothing here raises on /proc races: what cannot be read is None.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["ProcessInfo", "ProcessCache", "MAX_PROCESSES", "REVALIDATE_SECONDS", "GONE_SECONDS", "comm_and_start"]

MAX_PROCESSES = 4096  # pids remembered (LRU); a busy host has a few hundred talking processes
REVALIDATE_SECONDS = 1.0  # how stale a cached pid may be before its start time is checked
GONE_SECONDS = 5.0  # how long a pid found missing is not looked for again
MAX_CMDLINE_BYTES = 4096  # the kernel allows megabytes; a log line should not carry them
_STAT_BYTES = 4096  # /proc/PID/stat is ~300 bytes; comm is at most 64


@dataclass(frozen=True, slots=True)
class ProcessInfo:
    exe_path: str | None
    command_line: str | None


class _Entry:
    __slots__ = ("identity", "info", "checked")

    def __init__(self, identity: bytes | None, info: ProcessInfo | None, checked: float) -> None:
        self.identity = identity  # comm and start time from stat; None: the pid was not there
        self.info = info
        self.checked = checked


class ProcessCache:
    """pid -> ProcessInfo, bounded, revalidated by start time."""

    def __init__(
        self,
        max_entries: int = MAX_PROCESSES,
        revalidate: float = REVALIDATE_SECONDS,
        gone: float = GONE_SECONDS,
        proc: str = "/proc",
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._entries: OrderedDict[int, _Entry] = OrderedDict()
        self._max = max_entries
        self._revalidate = revalidate
        self._gone = gone
        self._proc = proc
        self._clock = clock

    def __len__(self) -> int:
        return len(self._entries)

    def lookup(self, pid: int) -> ProcessInfo | None:
        """What is known of pid, or None when nothing could be read."""
        now = self._clock()
        entry = self._entries.get(pid)
        if entry is not None:
            self._entries.move_to_end(pid)
            wait = self._revalidate if entry.identity is not None else self._gone
            if now - entry.checked < wait:
                return entry.info
            identity = self._identity(pid)
            if identity is None or identity == entry.identity:
                # Gone since: records still queued were made before it exited, so the
                # last answer stays right for them.
                entry.checked = now
                return entry.info
        else:
            identity = self._identity(pid)
        info = self._read(pid) if identity is not None else None
        self._entries[pid] = _Entry(identity, info, now)
        self._entries.move_to_end(pid)
        if len(self._entries) > self._max:
            self._entries.popitem(last=False)
        return info

    def _identity(self, pid: int) -> bytes | None:
        """comm and start time: they change on pid reuse and on exec."""
        found = comm_and_start(pid, self._proc)
        return None if found is None else found[0] + b" " + found[1]

    def _read(self, pid: int) -> ProcessInfo | None:
        base = f"{self._proc}/{pid}"
        try:
            exe: str | None = os.readlink(f"{base}/exe")
        except OSError:  # kernel thread, zombie, gone, or not ours to see
            exe = None
        raw = _read_bytes(f"{base}/cmdline", MAX_CMDLINE_BYTES)
        args = raw.rstrip(b"\0").replace(b"\0", b" ") if raw else b""
        command_line = args.decode("utf-8", "replace") if args else None
        if exe is None and command_line is None:
            return None
        return ProcessInfo(exe, command_line)


def comm_and_start(pid: int, proc: str = "/proc") -> tuple[bytes, bytes] | None:
    """A process's stat fields 2 and 22: "(comm)" and its start time (a reused pid has another);
    None if it is not there."""
    data = _read_bytes(f"{proc}/{pid}/stat", _STAT_BYTES)
    close = data.rfind(b")")  # comm may itself contain ") "
    if close < 0:
        return None
    fields = data[close + 2 :].split()
    if len(fields) < 20:
        return None
    return data[: close + 1], fields[19]  # fields[0] is field 3 (state)


def _read_bytes(path: str, limit: int) -> bytes:
    """Up to limit bytes of a /proc file, b'' on any error."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return b""
    try:
        chunks = []
        size = 0
        while size < limit:
            chunk = os.read(fd, limit - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    except OSError:  # ESRCH when the process exits between open and read
        return b""
    finally:
        os.close(fd)
