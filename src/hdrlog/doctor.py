"""`hdrlog doctor`: can hdrlog run here? One line per check, with what to do on failure."""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import dataclass
from typing import Callable

__all__ = ["Check", "checks", "run_doctor"]

# enum bpf_prog_type / bpf_map_type values (include/uapi/linux/bpf.h)
PROG_TYPES = {"sched_cls (TC)": 3, "xdp": 6, "tracepoint": 5, "raw_tracepoint": 17}
MAP_TYPES = {"ringbuf": 27, "lpm_trie": 11, "lru_hash": 9, "percpu_array": 6, "lru_percpu_hash": 10}


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True

    def line(self) -> str:
        mark = "ok  " if self.ok else ("FAIL" if self.required else "warn")
        text = f"{mark} {self.name}: {self.detail}"
        if not self.ok and self.fix:
            text += f" -> {self.fix}"
        return text


def _privileges() -> Check:
    from hdrlog.privileges import missing_capabilities

    missing = missing_capabilities()
    if missing:
        return Check("privileges", False, f"missing {', '.join(missing)}", "run as root")
    return Check("privileges", True, f"uid {os.geteuid()}, capabilities present")


def _btf() -> Check:
    path = "/sys/kernel/btf/vmlinux"
    if os.path.exists(path):
        return Check("kernel BTF", True, path)
    return Check("kernel BTF", False, f"{path} missing", "use a kernel built with CONFIG_DEBUG_INFO_BTF=y")


def _libbpf() -> Check:
    try:
        from hdrlog.bpf import _libbpf as L
    except ImportError as e:
        return Check("libbpf", False, str(e), "apt-get install libbpf1")
    version = f"{L.lib.libbpf_major_version()}.{L.lib.libbpf_minor_version()}"
    return Check("libbpf", True, f"libbpf.so.1 version {version}")


def _build() -> Check:
    from hdrlog.capture.base import ObjectMissingError, object_path
    from hdrlog.capture.packets import PacketCapture
    from hdrlog.capture.sockets import SocketCapture

    try:
        paths = [object_path(c.OBJECT) for c in (PacketCapture, SocketCapture)]
    except ObjectMissingError as e:
        return Check("BPF objects", False, str(e), "make -C bpf")
    return Check("BPF objects", True, ", ".join(paths))


def _prog_types() -> list[Check]:
    from hdrlog.bpf import _libbpf as L

    out = []
    for name, t in PROG_TYPES.items():
        ret = L.libbpf_probe_bpf_prog_type(t, None)
        out.append(Check(f"program type {name}", ret == 1, "supported" if ret == 1 else f"probe said {ret}",
                         "needs a newer kernel or root"))
    for name, t in MAP_TYPES.items():
        ret = L.libbpf_probe_bpf_map_type(t, None)
        out.append(Check(f"map type {name}", ret == 1, "supported" if ret == 1 else f"probe said {ret}",
                         "needs a newer kernel or root"))
    return out


def _load_sockets() -> list[Check]:
    from hdrlog.bpf import BpfError
    from hdrlog.bpf.links import ensure_tracefs
    from hdrlog.capture.sockets import SYSCALLS, SocketCapture

    try:
        ensure_tracefs()
    except BpfError as e:
        return [Check("syscall tracepoints", False, str(e), "mount -t tracefs nodev /sys/kernel/tracing")]
    events = next(d for d in ("/sys/kernel/tracing/events", "/sys/kernel/debug/tracing/events") if os.path.isdir(d))
    missing = [n for n in SYSCALLS + ("close",) if not os.path.isdir(f"{events}/syscalls/sys_enter_{n}")]
    out = [Check("syscall tracepoints", not missing,
                 "all present" if not missing else f"missing: {', '.join(missing)}",
                 "use a kernel with CONFIG_FTRACE_SYSCALLS=y (HTTP logging needs it)")]
    try:
        cap = SocketCapture.load(ring_size=1 << 16)
    except (BpfError, OSError) as e:
        return out + [Check("socket program", False, f"does not load: {e}",
                            "HTTP logging needs Linux 6.2+ (task storage, bpf_rdonly_cast, tp_btf); "
                            "see `hdrlog -vv doctor` for the verifier's log")]
    from hdrlog.capture.tls_libs import TlsProbes

    with cap:
        probes = TlsProbes(cap.obj)
        try:
            probes.scan_all()
            found = probes.describe()
            skipped = sorted(set(probes.skipped.values()))
        finally:
            probes.close()
    checks = [
        Check("socket program", True, "loads and passes the verifier"),
        Check("OpenSSL", bool(found), "; ".join(found) if found else "no OpenSSL library found: no HTTPS plaintext",
              "install libssl3, or point --ssl-lib at the library or binary", required=False),
    ]
    if skipped:
        checks.append(Check("OpenSSL skipped", False, "; ".join(skipped),
                            "a stripped or non-OpenSSL file: its TLS plaintext is not logged", required=False))
    return out + checks


def _load() -> list[Check]:
    from hdrlog.bpf import BpfError, tcx_supported
    from hdrlog.capture.packets import PacketCapture

    try:
        cap = PacketCapture.load(ring_size=1 << 16)
    except (BpfError, OSError) as e:
        return [Check("packet program", False, f"does not load: {e}", "see `hdrlog -vv doctor` for the log")]
    with cap:
        tcx = tcx_supported(cap.obj.program("tc_ingress"))
        checks = [
            Check("packet program", True, "loads and passes the verifier"),
            Check("tcx links", tcx, "supported (attachments end with the process)" if tcx
                  else "not supported: the clsact + cls_bpf fallback is used, which a killed run can leave behind",
                  "Linux 6.6+ drops them automatically; hdrlog removes stale filters at start", required=False),
        ]
    try:
        # the flow code is verified only when it is on (rodata switches it)
        PacketCapture.load(ring_size=1 << 16, flows=True, packets=False, max_flows=16).close()
        checks.append(Check("flows", True, "the packet program with --flows loads and passes the verifier"))
    except (BpfError, OSError) as e:
        checks.append(Check("flows", False, f"the packet program with --flows does not load: {e}",
                            "flows need Linux 5.14+ (lookup-and-delete on a hash map); see `hdrlog -vv doctor` for "
                            "the log; run without --flows", required=False))
    return checks


def _optional() -> list[Check]:
    tracefs = any(os.path.isdir(p) for p in ("/sys/kernel/tracing/events", "/sys/kernel/debug/tracing/events"))
    uprobe = os.path.exists("/sys/bus/event_source/devices/uprobe/type")
    kprobe = os.path.exists("/sys/bus/event_source/devices/kprobe/type")
    return [
        Check("tracefs", tracefs, "mounted" if tracefs else "not mounted (hdrlog mounts it for its tracepoints)",
              "mount -t tracefs nodev /sys/kernel/tracing", required=False),
        Check("uprobes", uprobe, "available" if uprobe else "not available (needed for TLS plaintext)",
              "use a kernel with CONFIG_UPROBE_EVENTS=y", required=False),
        Check("kprobes", True, "available" if kprobe else "not available (hdrlog does not need them)",
              required=False),
    ]


def checks() -> list[Check]:
    out = [_privileges(), _btf(), _libbpf()]
    if not out[2].ok:
        return out
    out.append(_build())
    if out[0].ok:
        out += _prog_types()
        if out[3].ok:
            out += _load()
            out += _load_sockets()
    out += _optional()
    return out


def run_doctor(print_: Callable[[str], None] = print) -> int:
    print_(f"hdrlog doctor: kernel {platform.release()}, Python {sys.version.split()[0]}")
    results = checks()
    for c in results:
        print_(c.line())
    failed = [c for c in results if c.required and not c.ok]
    print_("all required checks passed" if not failed else f"{len(failed)} required check(s) failed")
    return 1 if failed else 0
