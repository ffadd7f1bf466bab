"""Finding OpenSSL in the processes of the host and attaching the socket program's probes to it.

Uprobes bind to a file (its inode), not to a process: once libssl.so.3 is probed, every
process that maps it, now or later, is covered. So hdrlog attaches once per distinct
library file: the system's libssl, the ones running processes map (containers' through
/proc/PID/root), binaries that link OpenSSL statically, and `--ssl-lib` paths. A process
that execs a new program is looked at again shortly after (its libraries are mapped by the
dynamic loader after exec), which catches libraries that appear later, e.g. a container's.

A uprobe costs every process that runs the probed code a trap per call, whether or not the
program then keeps what it sees. So when the socket program's process filters are set
(`only`: --pid, --comm, --cgroup), the probes go per process instead: attached for each
wanted process only (the kernel then leaves the breakpoints out of every other process,
a load generator or another service on the same libssl), found at start, after an exec,
and when a wanted process forks (the socket program's on_fork reports its children).
Probes of processes that exited are closed at the next liveness check.
"""

from __future__ import annotations

import glob
import logging
import mmap
import os
import time
from dataclasses import dataclass, field
from typing import Callable

from hdrlog.bpf import BpfError, Link
from hdrlog.bpf.links import close_all
from hdrlog.enrich.process import comm_and_start

__all__ = ["TlsLibrary", "TlsProbes", "PROBES", "find_system_libraries"]

log = logging.getLogger("hdrlog.tls")

# (symbol, entry program, return program); SSL_set_fd and SSL_free have no return probe.
PROBES = (
    ("SSL_read", "ssl_read_enter", "ssl_exit"),
    ("SSL_write", "ssl_write_enter", "ssl_exit"),
    ("SSL_read_ex", "ssl_read_ex_enter", "ssl_exit"),  # OpenSSL 1.1.1+, used by Python
    ("SSL_write_ex", "ssl_write_ex_enter", "ssl_exit"),
    ("SSL_set_fd", "ssl_set_fd", None),
    ("SSL_free", "ssl_free", None),
)
REQUIRED = ("SSL_read", "SSL_write")
MAX_STATIC_SCAN_BYTES = 512 << 20  # a binary larger than this is not searched for OpenSSL
RESCAN_DELAYS = (0.2, 1.5)  # seconds after an exec: the loader maps libraries after exec returns
MAX_PENDING_RESCANS = 4096  # exec storms: beyond this, rescans wait for the periodic one
LIVENESS_SECONDS = 2.0  # per-process probes: how often probed processes are checked for exit
_LIB_NAMES = ("libssl.so",)


def _start_time(pid: int) -> bytes | None:
    """A process's start time (a reused pid has another); None if it is gone."""
    found = comm_and_start(pid)
    return None if found is None else found[1]


@dataclass
class _Process:
    """Per-process probes: one wanted process's links, on the files it maps."""

    start: bytes
    files: set[tuple[int, int]] = field(default_factory=set)
    links: list[Link] = field(default_factory=list)


@dataclass
class TlsLibrary:
    path: str  # as attached (may go through /proc/PID/root)
    shown: str  # the path inside its mount namespace
    kind: str  # "shared" or "static"
    symbols: list[str] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)


def find_system_libraries() -> list[str]:
    """libssl files of this mount namespace, whether or not a process maps them yet."""
    found = []
    for pattern in ("/usr/lib/*/libssl.so.*", "/lib/*/libssl.so.*", "/usr/lib/libssl.so.*", "/usr/lib64/libssl.so.*",
                    "/usr/local/lib/libssl.so.*", "/usr/local/lib64/libssl.so.*"):
        found += [p for p in glob.glob(pattern) if not p.endswith((".hmac", ".a"))]
    return sorted(set(found))


def _process_paths(pid: int) -> tuple[list[str], str | None]:
    """(libssl paths a process maps, its executable), as paths of its own mount namespace."""
    libs: list[str] = []
    try:
        with open(f"/proc/{pid}/maps") as f:
            for line in f:
                parts = line.split(None, 5)
                if len(parts) == 6 and any(n in parts[5] for n in _LIB_NAMES):
                    libs.append(parts[5].strip())
    except OSError:
        return [], None
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        exe = None
    return sorted(set(libs)), exe


def _links_openssl_statically(path: str) -> bool:
    """The file's symbol names include SSL_write and SSL_read (a cheap test before ELF parsing)."""
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0 or size > MAX_STATIC_SCAN_BYTES:
                return False
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
                if m[:4] != b"\x7fELF":
                    return False
                return m.find(b"\0SSL_write\0") >= 0 and m.find(b"\0SSL_read\0") >= 0
    except (OSError, ValueError):
        return False


class TlsProbes:
    """The OpenSSL libraries found and attached, for one loaded socket program."""

    def __init__(self, obj, extra_paths: list[str] | None = None, only: Callable[[int], bool] | None = None):
        self.obj = obj
        self.extra_paths = list(extra_paths or [])
        self.only = only  # per-process probes: the processes the filters want (None: per file)
        self.processes: dict[int, _Process] = {}  # per-process probes, by pid
        self._next_liveness = 0.0
        self.libraries: dict[tuple[int, int], TlsLibrary] = {}
        self.skipped: dict[tuple[int, int] | str, str] = {}  # file -> why it was not probed
        self._seen_exes: set[tuple[int, int]] = set()
        self._pending: dict[int, list[float]] = {}  # pid -> times to look again

    # --- discovery ---------------------------------------------------------------------

    def scan_all(self) -> int:
        """The system's libraries, --ssl-lib paths, and every running process. Returns how many were attached
        (per-process probes: files, each in every wanted process that maps it)."""
        before = len(self.libraries)
        if self.only is not None:
            for entry in os.listdir("/proc"):
                if entry.isdigit():
                    self.scan_process(int(entry))
            return len(self.libraries) - before
        for path in find_system_libraries():
            self._consider(path, path, "shared")
        for path in self.extra_paths:
            if not os.path.exists(path):
                self.skipped[path] = "no such file"
                log.warning("--ssl-lib %s: no such file", path)
                continue
            kind = "shared" if ".so" in os.path.basename(path) else "static"
            self._consider(path, path, kind, explicit=True)
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                self.scan_process(int(entry))
        return len(self.libraries) - before

    def scan_process(self, pid: int) -> None:
        if self.only is not None:
            self._scan_wanted(pid)
            return
        libs, exe = _process_paths(pid)
        root = f"/proc/{pid}/root"
        for lib in libs:
            self._consider(root + lib, lib, "shared")
        if exe and not exe.endswith(" (deleted)"):
            path = root + exe
            try:
                st = os.stat(path)
            except OSError:
                return
            key = (st.st_dev, st.st_ino)
            if key in self._seen_exes:
                return
            self._seen_exes.add(key)
            if _links_openssl_statically(path):
                self._consider(path, exe, "static")

    def on_exec(self, pid: int) -> None:
        if len(self._pending) < MAX_PENDING_RESCANS:
            now = time.monotonic()
            self._pending[pid] = [now + d for d in RESCAN_DELAYS]

    def on_fork(self, pid: int) -> None:
        """A wanted process started a child: it maps what its parent mapped (per-process probes)."""
        if self.only is not None:
            self._scan_wanted(pid)

    def poll(self) -> None:
        """Look again at processes that exec'ed, once their loader had time to map libraries;
        per-process probes: close those of processes that exited."""
        now = time.monotonic()
        if self.processes and now >= self._next_liveness:
            self._next_liveness = now + LIVENESS_SECONDS
            for pid, proc in list(self.processes.items()):
                if _start_time(pid) != proc.start:
                    self._forget(pid)
        if not self._pending:
            return
        for pid in list(self._pending):
            times = self._pending[pid]
            if times[0] <= now:
                self.scan_process(pid)
                times.pop(0)
                if not times:
                    del self._pending[pid]

    # --- per-process probes ------------------------------------------------------------

    def _scan_wanted(self, pid: int) -> None:
        """Probe each OpenSSL file a wanted process maps (libssl, its executable if OpenSSL is
        linked in), for that process alone; a process no longer wanted (exec) loses its probes."""
        if pid == os.getpid():
            return
        start = _start_time(pid)
        proc = self.processes.get(pid)
        if proc is not None and proc.start != start:
            self._forget(pid)  # the pid was reused
            proc = None
        if start is None or not self.only(pid):
            if proc is not None:
                self._forget(pid)
            return
        libs, exe = _process_paths(pid)
        root = f"/proc/{pid}/root"
        candidates = [(root + lib, lib, "shared") for lib in libs]
        if exe and not exe.endswith(" (deleted)"):
            candidates.append((root + exe, exe, "static"))
        for path, shown, kind in candidates:
            try:
                st = os.stat(path)
            except OSError:
                continue
            key = (st.st_dev, st.st_ino)
            if (proc is not None and key in proc.files) or key in self.skipped:
                continue
            if kind == "static" and key not in self.libraries:
                explicit = any(_same_file(x, st) for x in self.extra_paths)
                if not explicit and not _links_openssl_statically(path):
                    self.skipped[key] = f"{shown}: not OpenSSL"
                    continue
            lib = self._probe(key, path, shown, kind, pid=pid)
            if lib is None:
                continue
            if proc is None:
                proc = self.processes[pid] = _Process(start)
            proc.files.add(key)
            proc.links += lib.links
            lib.links = []  # (the process holds them)
            known = self.libraries.setdefault(key, lib)
            log.info("TLS: probing %s in pid %d (%s: %s)", shown, pid, kind, ", ".join(known.symbols))

    def _forget(self, pid: int) -> None:
        proc = self.processes.pop(pid, None)
        if proc is not None:
            close_all(proc.links)
            log.debug("TLS: pid %d gone, its probes closed", pid)

    # --- attaching ---------------------------------------------------------------------

    def _consider(self, path: str, shown: str, kind: str, explicit: bool = False) -> None:
        try:
            st = os.stat(path)
        except OSError:
            return
        key = (st.st_dev, st.st_ino)
        if key in self.libraries or key in self.skipped:
            return
        lib = self._probe(key, path, shown, kind, explicit=explicit)
        if lib is not None:
            self.libraries[key] = lib
            log.info("TLS: probing %s (%s: %s)", shown, kind, ", ".join(lib.symbols))

    def _probe(self, key: tuple[int, int], path: str, shown: str, kind: str, *, pid: int = -1,
               explicit: bool = False) -> TlsLibrary | None:
        """The file with its probes attached (for one process, or all: pid -1), or None: it
        lacks a required symbol, noted in `skipped`."""
        lib = TlsLibrary(path=path, shown=shown, kind=kind)
        missing = self._attach(lib, pid)
        if lib.links and not missing:
            return lib
        close_all(lib.links)
        self.skipped[key] = f"{shown}: no {', '.join(missing)}"
        (log.warning if explicit else log.debug)("TLS: not probing %s: lacks %s", shown, ", ".join(missing))
        return None

    def _attach(self, lib: TlsLibrary, pid: int = -1) -> list[str]:
        """Attach every probe whose symbol the file has (for one process, or all: pid -1);
        returns the required symbols it lacks."""
        missing = []
        for symbol, enter, ret in PROBES:
            links: list[Link] = []
            try:
                links.append(self.obj.program(enter).attach_uprobe(lib.path, symbol, pid=pid))
                if ret:
                    links.append(self.obj.program(ret).attach_uprobe(lib.path, symbol, retprobe=True, pid=pid))
            except BpfError as e:
                for link in links:
                    link.close()
                log.debug("TLS: %s in %s: %s", symbol, lib.shown, e)
                if symbol in REQUIRED:
                    missing.append(symbol)
                continue
            lib.links += links
            lib.symbols.append(symbol)
        return missing

    def close(self) -> None:
        links = [link for lib in self.libraries.values() for link in lib.links]
        links += [link for proc in self.processes.values() for link in proc.links]
        for lib in self.libraries.values():
            lib.links.clear()
        self.processes.clear()
        close_all(links)

    def describe(self) -> list[str]:
        return [f"{lib.shown} ({lib.kind}: {', '.join(lib.symbols)})" for lib in self.libraries.values()]


def _same_file(path: str, st: os.stat_result) -> bool:
    try:
        other = os.stat(path)
    except OSError:
        return False
    return (other.st_dev, other.st_ino) == (st.st_dev, st.st_ino)
