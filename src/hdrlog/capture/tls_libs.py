"""Finding OpenSSL in the processes of the host and attaching the socket program's probes to it.

Uprobes bind to a file (its inode), not to a process: once libssl.so.3 is probed, every
process that maps it, now or later, is covered. So hdrlog attaches once per distinct
library file: the system's libssl, the ones running processes map (containers' through
/proc/PID/root), binaries that link OpenSSL statically, and `--ssl-lib` paths. A process
that execs a new program is looked at again shortly after (its libraries are mapped by the
dynamic loader after exec), which catches libraries that appear later, e.g. a container's.
"""

from __future__ import annotations

import glob
import logging
import mmap
import os
import time
from dataclasses import dataclass, field

from hdrlog.bpf import BpfError, Link
from hdrlog.bpf.links import close_all

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
_LIB_NAMES = ("libssl.so",)


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

    def __init__(self, obj, extra_paths: list[str] | None = None):
        self.obj = obj
        self.extra_paths = list(extra_paths or [])
        self.libraries: dict[tuple[int, int], TlsLibrary] = {}
        self.skipped: dict[tuple[int, int] | str, str] = {}  # file -> why it was not probed
        self._seen_exes: set[tuple[int, int]] = set()
        self._pending: dict[int, list[float]] = {}  # pid -> times to look again

    # --- discovery ---------------------------------------------------------------------

    def scan_all(self) -> int:
        """The system's libraries, --ssl-lib paths, and every running process. Returns how many were attached."""
        before = len(self.libraries)
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

    def poll(self) -> None:
        """Look again at processes that exec'ed, once their loader had time to map libraries."""
        if not self._pending:
            return
        now = time.monotonic()
        for pid in list(self._pending):
            times = self._pending[pid]
            if times[0] <= now:
                self.scan_process(pid)
                times.pop(0)
                if not times:
                    del self._pending[pid]

    # --- attaching ---------------------------------------------------------------------

    def _consider(self, path: str, shown: str, kind: str, explicit: bool = False) -> None:
        try:
            st = os.stat(path)
        except OSError:
            return
        key = (st.st_dev, st.st_ino)
        if key in self.libraries or key in self.skipped:
            return
        lib = TlsLibrary(path=path, shown=shown, kind=kind)
        missing = self._attach(lib)
        if lib.links and not missing:
            self.libraries[key] = lib
            log.info("TLS: probing %s (%s: %s)", shown, kind, ", ".join(lib.symbols))
        else:
            for link in lib.links:
                link.close()
            self.skipped[key] = f"{shown}: no {', '.join(missing)}"
            (log.warning if explicit else log.debug)("TLS: not probing %s: lacks %s", shown, ", ".join(missing))

    def _attach(self, lib: TlsLibrary) -> list[str]:
        """Attach every probe whose symbol the file has; returns the required symbols it lacks."""
        missing = []
        for symbol, enter, ret in PROBES:
            links: list[Link] = []
            try:
                links.append(self.obj.program(enter).attach_uprobe(lib.path, symbol))
                if ret:
                    links.append(self.obj.program(ret).attach_uprobe(lib.path, symbol, retprobe=True))
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
        for lib in self.libraries.values():
            lib.links.clear()
        close_all(links)

    def describe(self) -> list[str]:
        return [f"{lib.shown} ({lib.kind}: {', '.join(lib.symbols)})" for lib in self.libraries.values()]
