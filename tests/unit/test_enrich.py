"""Enrichment: process executable and command line from /proc, container from the cgroup id."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from hdrlog.enrich import (
    ContainerEnricher,
    ContainerResolver,
    ProcessCache,
    ProcessEnricher,
    ProcessInfo,
    cgroup2_mount,
    container_from_path,
)
from hdrlog.records import HttpRecord, PacketRecord

ID = "3f4e5d6c7b8a99887766554433221100ffeeddccbbaa00112233445566778899"
ID2 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def fake_proc(
    root, pid: int, *, comm="app", start=100, cmdline=b"app\0", exe="/usr/bin/app", state="S"
):
    """A /proc/PID with stat, cmdline and an exe link, as the kernel lays them out."""
    d = root / str(pid)
    d.mkdir(exist_ok=True)
    fields = [state] + ["0"] * 18 + [str(start)] + ["0"] * 30  # fields[19] is stat field 22
    (d / "stat").write_text(f"{pid} ({comm}) " + " ".join(fields) + "\n")
    (d / "cmdline").write_bytes(cmdline)
    if (d / "exe").is_symlink() or (d / "exe").exists():
        (d / "exe").unlink()
    if exe is not None:
        (d / "exe").symlink_to(exe)
    return d


# ---- processes -------------------------------------------------------------


def test_own_process():
    """The cache reports this process's executable and a command line that names pytest."""
    info = ProcessCache().lookup(os.getpid())
    assert info is not None
    assert info.exe_path == os.readlink("/proc/self/exe")
    assert "pytest" in info.command_line


def test_exited_process_is_none():
    """A pid whose process has exited and been reaped gives None, not an exception."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert ProcessCache().lookup(child.pid) is None


def test_cmdline_nuls_and_odd_comm(tmp_path):
    """NULs between arguments become spaces, trailing NULs go, and a comm with ') ' parses."""
    fake_proc(tmp_path, 10, comm="my) (proc", cmdline=b"/usr/bin/python3\0-c\0print('a b')\0\0")
    info = ProcessCache(proc=str(tmp_path)).lookup(10)
    assert info == ProcessInfo("/usr/bin/app", "/usr/bin/python3 -c print('a b')")


def test_zombie_and_unreadable(tmp_path):
    """A zombie (no exe, empty cmdline) gives None; an unreadable exe still gives the command line."""
    fake_proc(tmp_path, 11, state="Z", cmdline=b"", exe=None)
    fake_proc(tmp_path, 12, exe=None, cmdline=b"worker\0")
    fake_proc(tmp_path, 13, cmdline=b"\xff\xfe\0")
    (tmp_path / "14").mkdir()
    (tmp_path / "14" / "stat").write_text("14 (trunc")
    cache = ProcessCache(proc=str(tmp_path))
    assert cache.lookup(11) is None
    assert cache.lookup(12) == ProcessInfo(None, "worker")
    assert cache.lookup(13).command_line == "\ufffd\ufffd"
    assert cache.lookup(14) is None


def test_hit_reads_nothing_and_exit_keeps_last_answer(tmp_path):
    """Within the revalidation interval a hit does not touch /proc; once the process is gone the
    last answer stays, since queued records were made before it exited."""
    clock = Clock()
    d = fake_proc(tmp_path, 20, cmdline=b"server\0--port\0http\0")
    cache = ProcessCache(proc=str(tmp_path), clock=clock)
    first = cache.lookup(20)
    for f in d.iterdir():
        f.unlink()
    d.rmdir()
    assert cache.lookup(20) is first
    clock.now += 10
    assert cache.lookup(20) == ProcessInfo("/usr/bin/app", "server --port http")


def test_pid_reuse_and_exec_refresh(tmp_path):
    """A changed start time (pid reuse) or comm (exec) is seen at the next revalidation, not before."""
    clock = Clock()
    fake_proc(tmp_path, 30, start=100, cmdline=b"old\0")
    cache = ProcessCache(proc=str(tmp_path), clock=clock)
    assert cache.lookup(30).command_line == "old"
    fake_proc(tmp_path, 30, start=200, cmdline=b"new\0", exe="/usr/bin/new")
    assert cache.lookup(30).command_line == "old"
    clock.now += 1.5
    assert cache.lookup(30) == ProcessInfo("/usr/bin/new", "new")
    fake_proc(tmp_path, 30, start=200, comm="execd", cmdline=b"execd\0", exe="/usr/bin/execd")
    clock.now += 1.5
    assert cache.lookup(30) == ProcessInfo("/usr/bin/execd", "execd")


def test_gone_pid_is_not_looked_for_again_at_once(tmp_path):
    """A missing pid is negatively cached: it is read again only after GONE seconds."""
    clock = Clock()
    cache = ProcessCache(proc=str(tmp_path), clock=clock, gone=5.0)
    assert cache.lookup(40) is None
    fake_proc(tmp_path, 40, cmdline=b"late\0")
    clock.now += 4
    assert cache.lookup(40) is None
    clock.now += 2
    assert cache.lookup(40).command_line == "late"


def test_cache_is_bounded_lru(tmp_path):
    """The cache never holds more than max_entries pids and drops the least recently used."""
    for pid in (50, 51, 52):
        fake_proc(tmp_path, pid, cmdline=f"p{pid}\0".encode())
    cache = ProcessCache(max_entries=2, proc=str(tmp_path))
    cache.lookup(50)
    cache.lookup(51)
    cache.lookup(50)
    cache.lookup(52)
    assert len(cache) == 2
    assert set(cache._entries) == {50, 52}


# ---- containers ------------------------------------------------------------

POD = "pod0c1d2e3f_4a5b_6c7d_8e9f_0a1b2c3d4e5f"  # systemd slice names turn the uid's - into _
BURSTABLE = f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-{POD}.slice"
BESTEFFORT = f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-{POD}.slice"
POD_DIR = "pod0c1d2e3f-4a5b-6c7d-8e9f-0a1b2c3d4e5f"  # the cgroupfs driver keeps the uid as is


@pytest.mark.parametrize(
    "path,expected",
    [
        (f"/system.slice/docker-{ID}.scope", (ID, "docker")),
        (f"/docker/{ID}", (ID, "docker")),
        (f"/system.slice/docker-{ID}.scope/init.scope", (ID, "docker")),
        (f"/docker/{ID2}/docker/{ID}", (ID, "docker")),  # docker in docker: the inner one
        (f"{BURSTABLE}/cri-containerd-{ID}.scope", (ID, "containerd")),
        (f"{BESTEFFORT}/cri-containerd-{ID}.scope", (ID, "containerd")),
        (f"/kubepods.slice/kubepods-{POD}.slice/cri-containerd-{ID}.scope", (ID, "containerd")),
        (f"/kubepods/burstable/{POD_DIR}/{ID}", (ID, "containerd")),
        (f"/kubepods/besteffort/{POD_DIR}/{ID}", (ID, "containerd")),
        (f"/kubepods/{POD_DIR}/{ID}", (ID, "containerd")),  # guaranteed QoS
        (f"/system.slice/docker-{ID2}.scope/kubepods/besteffort/{POD_DIR}/{ID}", (ID, "containerd")),
        (f"{BURSTABLE}/crio-{ID}.scope", (ID, "cri-o")),
        (f"{BURSTABLE}/crio-{ID}.scope/container", (ID, "cri-o")),
        (f"{BURSTABLE}/crio-conmon-{ID}.scope", None),
        (f"/kubepods/besteffort/{POD_DIR}/crio-{ID}", (ID, "cri-o")),
        (f"/machine.slice/libpod-{ID}.scope", (ID, "podman")),
        (f"/machine.slice/libpod-{ID}.scope/container", (ID, "podman")),
        (f"/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope", (ID, "podman")),
        (f"/machine.slice/libpod-conmon-{ID}.scope", None),
        (f"/libpod_parent/libpod-{ID}", (ID, "podman")),
        (r"/machine.slice/machine-web\x2dfront.scope", ("web-front", "systemd-nspawn")),
        (r"/machine.slice/machine-web\x2dfront.scope/payload/init.scope", ("web-front", "systemd-nspawn")),
        (r"/machine.slice/machine-web\x2dfront.scope/supervisor", None),
        ("/machine.slice/systemd-nspawn@box.service/payload/init.scope", ("box", "systemd-nspawn")),
        ("/machine.slice/systemd-nspawn@box.service/supervisor", None),
        (r"/machine.slice/machine-qemu\x2d1\x2dvm1.scope/libvirt/emulator", None),
        ("/", None),
        ("/system.slice/sshd.service", None),
        ("/user.slice/user-1000.slice/session-3.scope", None),
        (f"/system.slice/{ID}", None),  # a bare id outside docker/ and kubepods is not claimed
        (f"/system.slice/docker-{ID[:63]}.scope", None),
        (f"/system.slice/docker-{ID.upper()}.scope", None),
    ],
)
def test_container_from_path(path, expected):
    """Each runtime's cgroup naming gives its container id; monitors, VMs and plain services give None."""
    assert container_from_path(path) == expected


def test_cgroup2_mount(tmp_path):
    """The cgroup2 mount is found in hybrid and unified layouts, with mountinfo's octal escapes."""
    hybrid = tmp_path / "hybrid"
    hybrid.write_text(
        "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
        "40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd\n"
        "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
    )
    unified = tmp_path / "unified"
    unified.write_text(
        "90 80 0:38 /.. /mnt/sub rw - cgroup2 cgroup2 rw\n"
        "35 24 0:30 / /sys/fs/cgroup rw,nosuid shared:9 - cgroup2 cgroup2 rw,nsdelegate\n"
    )
    spaced = tmp_path / "spaced"
    spaced.write_text("41 31 0:38 / /mnt/cg\\040two rw - cgroup2 none rw\n")
    none = tmp_path / "none"
    none.write_text("31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n")
    assert cgroup2_mount(str(hybrid)) == "/sys/fs/cgroup/unified"
    assert cgroup2_mount(str(unified)) == "/sys/fs/cgroup"
    assert cgroup2_mount(str(spaced)) == "/mnt/cg two"
    assert cgroup2_mount(str(none)) is None
    assert cgroup2_mount(str(tmp_path / "missing")) is None


def test_resolver_walks_and_rescans_at_most_once_per_interval(tmp_path):
    """Ids map to paths by inode; a miss rescans, but not more than once per interval."""
    clock = Clock()
    scope = tmp_path / "system.slice" / f"docker-{ID}.scope"
    scope.mkdir(parents=True)
    r = ContainerResolver(mount=str(tmp_path), clock=clock)
    ino = os.stat(scope).st_ino
    assert r.path(ino) == f"/system.slice/docker-{ID}.scope"
    assert r.resolve(ino) == (ID, "docker")
    assert r.path(os.stat(tmp_path).st_ino) == "/"
    assert r.scans == 1
    late = tmp_path / "machine.slice" / f"libpod-{ID2}.scope"
    late.mkdir(parents=True)
    for _ in range(100):
        assert r.resolve(os.stat(late).st_ino) is None  # within the interval: no walk
    assert r.scans == 1
    clock.now += 1.5
    assert r.resolve(os.stat(late).st_ino) == (ID2, "podman")
    assert r.scans == 2
    assert r.resolve(ino) == (ID, "docker") and r.scans == 2  # hits do not walk


def test_resolver_walk_is_capped(tmp_path):
    """A walk stops after max_dirs directories and says so."""
    for i in range(10):
        (tmp_path / f"d{i}").mkdir()
    r = ContainerResolver(mount=str(tmp_path), max_dirs=3)
    assert r.path(123456789) is None
    assert r.truncated and len(r._paths) == 4  # the root and three


def test_resolver_without_cgroup2():
    """Without a cgroup2 mount every id resolves to None and nothing is walked."""
    r = ContainerResolver()
    r.mount = None  # as cgroup2_mount() finds it on a cgroup v1-only host
    assert r.resolve(1) is None and r.scans == 0


def test_real_cgroup_directory():
    """A cgroup made under the real cgroup2 mount, named like a docker scope, resolves from its id."""
    mount = cgroup2_mount()
    if os.geteuid() != 0 or mount is None:
        pytest.skip("needs root and a cgroup2 mount")
    parent = os.path.join(mount, f"hdrlog-test-{os.getpid()}.slice")
    scope = os.path.join(parent, f"docker-{ID}.scope")
    try:
        os.mkdir(parent)
        os.mkdir(scope)
        r = ContainerResolver()
        assert r.mount == mount
        cgroup_id = os.stat(scope).st_ino
        assert r.path(cgroup_id) == f"/hdrlog-test-{os.getpid()}.slice/docker-{ID}.scope"
        assert r.resolve(cgroup_id) == (ID, "docker")
        assert r.resolve(os.stat(parent).st_ino) is None
    finally:
        for d in (scope, parent):
            if os.path.isdir(d):
                os.rmdir(d)


# ---- processors ------------------------------------------------------------


def test_enrichers_fill_missing_fields_only(tmp_path):
    """The enrichers add process and container fields a record lacks and never overwrite one it has."""
    (tmp_path / "proc").mkdir()
    fake_proc(tmp_path / "proc", 60, cmdline=b"curl\0-s\0")
    scope = tmp_path / "cg" / f"cri-containerd-{ID}.scope"
    scope.mkdir(parents=True)
    processes = ProcessEnricher(ProcessCache(proc=str(tmp_path / "proc")))
    containers = ContainerEnricher(ContainerResolver(mount=str(tmp_path / "cg")))
    rec = HttpRecord(ts="t", type="http", pid=60, cgroup_id=os.stat(scope).st_ino)
    out = containers(processes(rec))
    assert (out.executable_path, out.command_line) == ("/usr/bin/app", "curl -s")
    assert (out.container_id, out.container_runtime) == (ID, "containerd")
    assert rec.command_line is None  # the input is untouched
    kept = HttpRecord(ts="t", type="http", pid=60, command_line="from kernel", container_id="x")
    out = containers(processes(kept))
    assert out.command_line == "from kernel" and out.executable_path == "/usr/bin/app"
    assert out.container_id == "x"
    for same in (HttpRecord(ts="t", type="http", pid=999999, cgroup_id=1), PacketRecord(ts="t", type="packet")):
        assert containers(processes(same)) is same
