"""cgroup v2 id -> cgroup path -> (container id, runtime).

bpf_get_current_cgroup_id() is the inode number of the cgroup's directory on
the cgroup2 file system (kernfs ids are never reused on 64-bit kernels), so
the id is found by walking that hierarchy. The walk is cached and repeated on
a miss at most once per RESCAN_SECONDS and over at most MAX_CGROUP_DIRS
directories. The container id is read off the path by the naming conventions
of the runtimes; a path that names none is no container.
"""

from __future__ import annotations

import os
import re
import time
from collections import deque
from collections.abc import Callable

__all__ = [
    "ContainerResolver",
    "container_from_path",
    "cgroup2_mount",
    "MAX_CGROUP_DIRS",
    "RESCAN_SECONDS",
]

MAX_CGROUP_DIRS = 100_000  # a walk's bound; large Kubernetes nodes have a few thousand
RESCAN_SECONDS = 1.0  # at most one walk per this long, however many ids miss

_HEX64 = r"[0-9a-f]{64}"
# docker-, cri-containerd-, crio-, libpod-<id>.scope (systemd driver) or without
# .scope (cgroupfs). The conmon scopes ("crio-conmon-", "libpod-conmon-") hold the
# runtime's monitor, not the container, and do not match: "conmon-" is not hex.
_SCOPE = re.compile(rf"(docker|cri-containerd|crio|libpod)-({_HEX64})(?:\.scope)?")
_RUNTIMES = {
    "docker": "docker", "cri-containerd": "containerd", "crio": "cri-o", "libpod": "podman",
}  # fmt: skip
_BARE = re.compile(_HEX64)  # /docker/<id>, /kubepods/<qos>/pod<uid>/<id>
_MACHINE = re.compile(r"machine-(.+)\.scope")
_NSPAWN_SERVICE = re.compile(r"systemd-nspawn@(.+)\.service")
# libvirt registers its VMs and LXC domains with machined too: "qemu-1-vm", "lxc-42-web".
_LIBVIRT = re.compile(r"(qemu|lxc)-\d+-")
_ESCAPE = re.compile(r"\\x([0-9a-fA-F]{2})")


def _unescape(name: str) -> str:
    """systemd unit name escaping: "my\\x2dbox" -> "my-box"."""
    return _ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), name)


def container_from_path(path: str) -> tuple[str, str] | None:
    """(container id, runtime) named by a cgroup path, the innermost container winning."""
    parts = path.split("/")
    for i in range(len(parts) - 1, -1, -1):
        part = parts[i]
        if m := _SCOPE.fullmatch(part):
            return m.group(2), _RUNTIMES[m.group(1)]
        if _BARE.fullmatch(part):
            if i > 0 and parts[i - 1] == "docker":
                return part, "docker"
            if any(p.startswith("kubepods") for p in parts[:i]):
                # A bare id under kubepods is the cgroupfs driver: containerd (or the
                # retired dockershim); cri-o would have written crio-<id>.
                return part, "containerd"
        child = parts[i + 1] if i + 1 < len(parts) else None
        if (m := _MACHINE.fullmatch(part)) and child != "supervisor":
            # nspawn --keep-unit runs itself in <scope>/supervisor, the container in payload.
            name = _unescape(m.group(1))
            if not _LIBVIRT.match(name):
                return name, "systemd-nspawn"
        if (m := _NSPAWN_SERVICE.fullmatch(part)) and child == "payload":
            return _unescape(m.group(1)), "systemd-nspawn"
    return None


def _unescape_mount(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as \\ooo."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def cgroup2_mount(mountinfo: str = "/proc/self/mountinfo") -> str | None:
    """Where the cgroup2 hierarchy is mounted (its root preferred), or None."""
    found: list[tuple[str, str]] = []
    try:
        with open(mountinfo, encoding="utf-8", errors="surrogateescape") as f:
            for line in f:
                pre, sep, post = line.partition(" - ")
                fields = pre.split()
                if sep and post.split()[:1] == ["cgroup2"] and len(fields) >= 5:
                    found.append((_unescape_mount(fields[3]), _unescape_mount(fields[4])))
    except OSError:
        return None
    # Inside a cgroup namespace or a bind mount the root may be a subtree ("/..").
    found.sort(key=lambda rm: rm[0] != "/")
    return found[0][1] if found else None


class ContainerResolver:
    """cgroup id -> cgroup path and container, from a cached walk of the cgroup2 tree."""

    def __init__(
        self,
        mount: str | None = None,
        max_dirs: int = MAX_CGROUP_DIRS,
        rescan: float = RESCAN_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.mount = mount if mount is not None else cgroup2_mount()
        self._max_dirs = max_dirs
        self._rescan = rescan
        self._clock = clock
        self._paths: dict[int, str] = {}
        self._containers: dict[int, tuple[str, str] | None] = {}
        self._last_scan: float | None = None
        self.scans = 0
        self.truncated = False  # the last walk stopped at max_dirs

    def path(self, cgroup_id: int) -> str | None:
        """The cgroup's path below the mount ("/system.slice/x.service"), or None."""
        path = self._paths.get(cgroup_id)
        if path is None and self._may_scan():
            self._scan()
            path = self._paths.get(cgroup_id)
        return path

    def resolve(self, cgroup_id: int) -> tuple[str, str] | None:
        """(container id, runtime) of the cgroup, or None."""
        try:
            return self._containers[cgroup_id]
        except KeyError:
            pass
        path = self.path(cgroup_id)
        if path is None:
            return None  # not cached: the cgroup may yet appear
        found = self._containers[cgroup_id] = container_from_path(path)
        return found

    def _may_scan(self) -> bool:
        if self.mount is None:
            return False
        now = self._clock()
        if self._last_scan is not None and now - self._last_scan < self._rescan:
            return False
        self._last_scan = now
        return True

    def _scan(self) -> None:
        """Walk the hierarchy breadth first; the result replaces the cache, so removed
        cgroups drop out."""
        self.scans += 1
        paths: dict[int, str] = {}
        try:
            paths[os.stat(self.mount).st_ino] = "/"
        except OSError:
            return
        queue = deque([(self.mount, "")])
        seen = 0
        self.truncated = False
        while queue:
            directory, rel = queue.popleft()
            try:
                with os.scandir(directory) as it:
                    for entry in it:
                        if not entry.is_dir(follow_symlinks=False):
                            continue
                        seen += 1
                        if seen > self._max_dirs:
                            self.truncated = True
                            queue.clear()
                            break
                        child = f"{rel}/{entry.name}"
                        # d_ino from readdir: kernfs reports the node id, no stat needed.
                        paths[entry.inode()] = child
                        queue.append((entry.path, child))
            except OSError:  # removed while we walked
                continue
        self._paths = paths
        self._containers = {i: c for i, c in self._containers.items() if i in paths}
