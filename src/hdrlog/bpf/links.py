"""Links: a program attached somewhere. Every link is a context manager; close() detaches.

Links made with bpf_link_create (tcx, XDP) and perf-event links (tracepoints,
uprobes) are dropped by the kernel when hdrlog's descriptors close, so even
`kill -9` leaves nothing attached. Only the legacy TC path (clsact + cls_bpf
via netlink, for kernels before 6.6) outlives the process; it uses a fixed
handle and priority so a later run can find and remove what a killed one left.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import errno as E
import os
import threading

from hdrlog.bpf import _libbpf as L
from hdrlog.bpf.errors import BpfError, NotSupported

__all__ = [
    "Link",
    "close_all",
    "attach_tc",
    "attach_xdp",
    "attach_libbpf",
    "attach_uprobe",
    "remove_stale_tc_filters",
    "tcx_supported",
    "ensure_tracefs",
    "LEGACY_TC_HANDLE",
    "LEGACY_TC_PRIORITY",
]

# hdrlog's cls_bpf filters: handle and priority "HL", so stale ones can be found
LEGACY_TC_HANDLE = 0x484C
LEGACY_TC_PRIORITY = 0x484C

_DIRECTIONS = {"ingress": (L.BPF_TCX_INGRESS, L.BPF_TC_INGRESS), "egress": (L.BPF_TCX_EGRESS, L.BPF_TC_EGRESS)}


class Link:
    """Something attached; close() detaches it (idempotent)."""

    kind = "link"

    def __init__(self, description: str):
        self.description = description
        self._closed = False

    def _detach(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._detach()

    @property
    def closed(self) -> bool:
        return self._closed

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.description}{' closed' if self._closed else ''}>"


def close_all(links: list[Link]) -> None:
    """Detach many links at once. Detaching a tracepoint or uprobe link waits for an RCU grace
    period (~65 ms each, measured: 1.6 s for the socket capture's 25 links one by one); from
    parallel threads (ctypes lets go of the GIL) the waits overlap."""
    if len(links) < 2:
        for link in links:
            link.close()
        return
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(32, len(links))) as pool:
        for _ in pool.map(Link.close, links):  # every close runs; the first error is raised
            pass


class FdLink(Link):
    """A BPF link held by a file descriptor (tcx, XDP)."""

    def __init__(self, fd: int, description: str, kind: str):
        super().__init__(description)
        self.fd = fd
        self.kind = kind

    def _detach(self) -> None:
        os.close(self.fd)


class LibbpfLink(Link):
    """A `struct bpf_link *` from libbpf (tracepoints, raw tracepoints, tp_btf, uprobes)."""

    kind = "libbpf"

    def __init__(self, ptr: int, description: str):
        super().__init__(description)
        self._ptr = ptr

    @property
    def fd(self) -> int:
        return L.bpf_link__fd(self._ptr)

    def _detach(self) -> None:
        L.bpf_link__destroy(self._ptr)


# Legacy TC: one clsact qdisc per interface shared by hdrlog's filters on it;
# removed with the last of them, and only if hdrlog created it.
_qdisc_lock = threading.Lock()
_qdiscs: dict[int, list] = {}  # ifindex -> [users, created]


class LegacyTcLink(Link):
    kind = "tc-legacy"

    def __init__(self, ifindex: int, attach_point: int, description: str):
        super().__init__(description)
        self.ifindex = ifindex
        self.attach_point = attach_point

    def _detach(self) -> None:
        hook = _tc_hook(self.ifindex, self.attach_point)
        opts = L.BpfTcOpts(sz=ctypes.sizeof(L.BpfTcOpts), handle=LEGACY_TC_HANDLE, priority=LEGACY_TC_PRIORITY)
        L.bpf_tc_detach(ctypes.byref(hook), ctypes.byref(opts))  # gone with its interface: fine
        with _qdisc_lock:
            users, created = _qdiscs.get(self.ifindex, [1, False])
            if users <= 1:
                _qdiscs.pop(self.ifindex, None)
                if created:
                    both = _tc_hook(self.ifindex, L.BPF_TC_INGRESS | L.BPF_TC_EGRESS)
                    L.bpf_tc_hook_destroy(ctypes.byref(both))
            else:
                _qdiscs[self.ifindex][0] = users - 1


def _tc_hook(ifindex: int, attach_point: int) -> L.BpfTcHook:
    return L.BpfTcHook(sz=ctypes.sizeof(L.BpfTcHook), ifindex=ifindex, attach_point=attach_point)


def _link_create(prog_fd: int, target: int, attach_type: int, flags: int = 0) -> int:
    opts = L.BpfLinkCreateOpts(sz=ctypes.sizeof(L.BpfLinkCreateOpts), flags=flags)
    return L.bpf_link_create(prog_fd, target, attach_type, ctypes.byref(opts))


def tcx_supported(program) -> bool:
    """tcx links (Linux 6.6+), probed with a loaded sched_cls program and ifindex 0:
    kernels that know tcx look for the device (ENODEV), older ones reject the
    attach type (EINVAL). Nothing is attached."""
    ret = _link_create(program.fd, 0, L.BPF_TCX_INGRESS)
    if ret >= 0:
        os.close(ret)
        return True
    return ret == -E.ENODEV


def attach_tc(program, ifindex: int, direction: str, *, mode: str = "auto") -> Link:
    """Attach a sched_cls program at an interface's ingress or egress.

    mode: "tcx" (a BPF link, Linux 6.6+), "legacy" (clsact qdisc + cls_bpf
    filter via netlink), or "auto" (tcx where the kernel has it)."""
    if direction not in _DIRECTIONS:
        raise ValueError(f"TC direction must be ingress or egress, not {direction!r}")
    if mode not in ("auto", "tcx", "legacy"):
        raise ValueError(f"TC attach mode must be auto, tcx or legacy, not {mode!r}")
    tcx_type, tc_point = _DIRECTIONS[direction]
    what = f"TC {direction} on ifindex {ifindex}"
    if mode in ("auto", "tcx"):
        fd = _link_create(program.fd, ifindex, tcx_type)
        if fd >= 0:
            return FdLink(fd, f"{program.name} {what} (tcx)", "tcx")
        if fd == -E.EINVAL and mode == "auto" and not tcx_supported(program):
            return _attach_tc_legacy(program, ifindex, tc_point, what)
        if fd == -E.EINVAL and not tcx_supported(program):
            raise NotSupported("tcx links (Linux 6.6+)", E.EINVAL)
        raise BpfError(-fd, f"attach {program.name} at {what}")
    return _attach_tc_legacy(program, ifindex, tc_point, what)


def _attach_tc_legacy(program, ifindex: int, tc_point: int, what: str) -> Link:
    hook = _tc_hook(ifindex, tc_point)
    with _qdisc_lock:
        ret = L.bpf_tc_hook_create(ctypes.byref(hook))
        if ret < 0 and ret != -E.EEXIST:
            raise BpfError(-ret, f"create clsact qdisc for {what}")
        entry = _qdiscs.setdefault(ifindex, [0, False])
        entry[0] += 1
        entry[1] = entry[1] or ret == 0
    link = LegacyTcLink(ifindex, tc_point, f"{program.name} {what} (clsact)")
    opts = L.BpfTcOpts(
        sz=ctypes.sizeof(L.BpfTcOpts),
        prog_fd=program.fd,
        flags=1,  # BPF_TC_F_REPLACE: take over a filter a killed hdrlog left
        handle=LEGACY_TC_HANDLE,
        priority=LEGACY_TC_PRIORITY,
    )
    ret = L.bpf_tc_attach(ctypes.byref(hook), ctypes.byref(opts))
    if ret < 0:
        link.close()
        raise BpfError(-ret, f"attach {program.name} at {what}")
    return link


def remove_stale_tc_filters(ifindex: int) -> int:
    """Remove cls_bpf filters with hdrlog's handle and priority (left by a killed run)."""
    removed = 0
    for point in (L.BPF_TC_INGRESS, L.BPF_TC_EGRESS):
        hook = _tc_hook(ifindex, point)
        opts = L.BpfTcOpts(sz=ctypes.sizeof(L.BpfTcOpts), handle=LEGACY_TC_HANDLE, priority=LEGACY_TC_PRIORITY)
        if L.bpf_tc_query(ctypes.byref(hook), ctypes.byref(opts)) == 0:
            opts = L.BpfTcOpts(sz=ctypes.sizeof(L.BpfTcOpts), handle=LEGACY_TC_HANDLE, priority=LEGACY_TC_PRIORITY)
            if L.bpf_tc_detach(ctypes.byref(hook), ctypes.byref(opts)) == 0:
                removed += 1
    return removed


_XDP_MODES = {"generic": L.XDP_FLAGS_SKB_MODE, "native": L.XDP_FLAGS_DRV_MODE}


def attach_xdp(program, ifindex: int, *, mode: str = "generic") -> Link:
    """Attach an XDP program as a link. mode: generic, native, or auto (native, else generic)."""
    if mode not in ("generic", "native", "auto"):
        raise ValueError(f"XDP mode must be generic, native or auto, not {mode!r}")
    tries = ["native", "generic"] if mode == "auto" else [mode]
    ret = 0
    for m in tries:
        ret = _link_create(program.fd, ifindex, L.BPF_XDP, _XDP_MODES[m])
        if ret >= 0:
            return FdLink(ret, f"{program.name} XDP ({m}) on ifindex {ifindex}", f"xdp-{m}")
    what = f"attach {program.name} as XDP ({mode}) on ifindex {ifindex}"
    if ret == -E.EOPNOTSUPP:
        raise NotSupported(f"native XDP on ifindex {ifindex}", E.EOPNOTSUPP)
    if ret == -E.EBUSY:
        raise BpfError(E.EBUSY, what, "another XDP program is attached")
    raise BpfError(-ret, what)


TRACEFS = "/sys/kernel/tracing"
_TRACEFS_DIRS = (f"{TRACEFS}/events", "/sys/kernel/debug/tracing/events")


def ensure_tracefs() -> None:
    """Tracepoint links look up event ids in tracefs, which is often not mounted."""
    if any(os.path.isdir(d) for d in _TRACEFS_DIRS):
        return
    if L.mount(b"nodev", TRACEFS.encode(), b"tracefs", 0, None) != 0:
        raise BpfError(L.errno() or E.EPERM, f"mount tracefs at {TRACEFS}", "tracepoints need it")


def attach_libbpf(program, what: str, fn, *args) -> Link:
    with L.captured_messages() as msgs:
        ptr = fn(program._ptr, *args)
        err = L.errno()
    if not ptr:
        detail = next((m.strip() for m in reversed(msgs) if m.strip()), "")
        if err == E.ENOENT and "tracepoint" in what:
            raise NotSupported(what, E.ENOENT, detail)
        raise BpfError(err or E.EINVAL, f"attach {program.name} to {what}", detail)
    return LibbpfLink(ptr, f"{program.name} {what}")


def attach_uprobe(program, binary: str, symbol: str, *, retprobe: bool, pid: int, offset: int) -> Link:
    opts = L.BpfUprobeOpts(
        sz=ctypes.sizeof(L.BpfUprobeOpts), retprobe=retprobe, func_name=symbol.encode() if symbol else None
    )
    kind = "uretprobe" if retprobe else "uprobe"
    return attach_libbpf(
        program,
        f"{kind} {binary}:{symbol or hex(offset)}",
        L.bpf_program__attach_uprobe_opts,
        pid,
        binary.encode(),
        offset,
        ctypes.byref(opts),
    )
