"""The socket program: load it, write its filters, attach its syscall tracepoints."""

from __future__ import annotations

import os
import secrets
import struct
from dataclasses import dataclass, field
from typing import Callable

from hdrlog.bpf import Link
from hdrlog.capture.base import Capture, wake_bytes_per_cpu
from hdrlog.decode import SOCK_COUNTERS

__all__ = ["SocketCapture", "SocketFilters", "SYSCALLS", "DATA_MAX", "process_matcher"]

# enum hl_sock_setting_flag (bpf/hdrlog_abi.h)
SS_PIDS = 1 << 0
SS_CGROUPS = 1 << 1
SS_COMMS = 1 << 2
SS_PORTS = 1 << 3
SS_UNIX = 1 << 4
SS_ALL_DATA = 1 << 5

DATA_MAX = 8192  # HL_DATA_MAX
_SETTINGS = struct.Struct("<IIII")  # struct hl_sock_settings
_U32 = struct.Struct("<I")

# the syscalls with enter and exit programs; close has an enter program only
SYSCALLS = ("read", "write", "readv", "writev", "sendto", "recvfrom", "sendmsg", "recvmsg",
            "sendfile64", "connect", "accept", "accept4")  # fmt: skip


@dataclass(frozen=True)
class SocketFilters:
    pids: list[int] = field(default_factory=list)
    cgroups: list[int] = field(default_factory=list)  # cgroup v2 ids
    comms: list[str] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)  # local or remote
    unix: bool = False
    all_data: bool = False  # copy every connection, not only those whose first bytes are HTTP
    data_max: int = 4096


def _comm(c: str) -> bytes:
    return c.encode()[:15]  # the kernel's TASK_COMM_LEN, with its NUL


def process_matcher(f: SocketFilters, proc: str = "/proc") -> Callable[[int], bool] | None:
    """The socket program's process filters (pid, cgroup, comm: all that are set) asked of a
    running process through /proc, by its main thread; None when no process filter is set."""
    if not (f.pids or f.cgroups or f.comms):
        return None
    pids, cgroups, comms = set(f.pids), set(f.cgroups), {_comm(c) for c in f.comms}
    mount = None
    if cgroups:
        from hdrlog.enrich.container import cgroup2_mount

        mount = cgroup2_mount()

    def wanted(pid: int) -> bool:
        if pids and pid not in pids:
            return False
        try:
            if comms:
                with open(f"{proc}/{pid}/comm", "rb") as fh:
                    if fh.read().rstrip(b"\n") not in comms:
                        return False
            if cgroups:
                if mount is None:
                    return False
                with open(f"{proc}/{pid}/cgroup", "rb") as fh:
                    path = next((ln[3:].rstrip(b"\n") for ln in fh if ln.startswith(b"0::")), None)
                if path is None or os.stat(os.path.join(mount.encode(), path.lstrip(b"/"))).st_ino not in cgroups:
                    return False
        except OSError:  # gone, or not ours to see
            return False
        return True

    return wanted


class SocketCapture(Capture):
    OBJECT = "socket.bpf.o"
    RING = "sock_events"
    COUNTER_MAP = "sock_counters"
    COUNTER_NAMES = SOCK_COUNTERS

    @classmethod
    def load(cls, *, ring_size: int = 16 << 20, path: str | None = None) -> "SocketCapture":
        rodata = {"cfg_self_tgid": os.getpid(), "cfg_sock_key": secrets.randbits(64)}
        cap = cls._new(cls._open(path, ring_size, rodata))
        cap._wake_bytes = wake_bytes_per_cpu(ring_size)
        cap.configure(SocketFilters())
        return cap

    def configure(self, f: SocketFilters) -> None:
        """Write the filters into the maps (safe while attached)."""
        if not 0 < f.data_max <= DATA_MAX:
            raise ValueError(f"data_max must be 1..{DATA_MAX}")
        flags = (SS_UNIX if f.unix else 0) | (SS_ALL_DATA if f.all_data else 0)
        for name, items, bit, pack in (
            ("pids", f.pids, SS_PIDS, _U32.pack),
            ("cgroups", f.cgroups, SS_CGROUPS, struct.Struct("<Q").pack),
            ("comms", f.comms, SS_COMMS, lambda c: _comm(c).ljust(16, b"\0")),
            ("sock_ports", f.ports, SS_PORTS, struct.Struct("<H").pack),
        ):
            m = self.obj.map(name)
            m.clear()
            for item in items:
                m.update(pack(item), b"\1")
            if items:
                flags |= bit
        self.obj.map("sock_settings").update(_U32.pack(0), _SETTINGS.pack(flags, f.data_max, self._wake_bytes, 0))

    def attach_exec(self) -> list[Link]:
        """Report every exec (user space then looks for TLS libraries in the new program)."""
        link = self.obj.program("on_exec").attach_tracepoint("sched", "sched_process_exec")
        self.links.append(link)
        return [link]

    def attach_fork(self) -> list[Link]:
        """Report each new child of a process the filters want (uprobes per process follow it)."""
        link = self.obj.program("on_fork").attach_trace()
        self.links.append(link)
        return [link]

    def attach(self) -> list[Link]:
        """Attach every syscall tracepoint; all or none."""
        new: list[Link] = []
        try:
            for name in SYSCALLS:
                for kind in ("enter", "exit"):
                    prog = self.obj.program(f"{kind}_{name}")
                    new.append(prog.attach_tracepoint("syscalls", f"sys_{kind}_{name}"))
            new.append(self.obj.program("enter_close").attach_tracepoint("syscalls", "sys_enter_close"))
        except BaseException:
            for link in reversed(new):
                link.close()
            raise
        self.links.extend(new)
        return new
