"""Throwaway network namespaces joined by veth pairs, for tests on real traffic.

Names are `hltest-<pid>-<tag>-a|b`, the pid being the test process's, so a crashed run's
leftovers can be found and removed without touching those of a run still going.
Deleting a namespace deletes its veth end and everything attached to it."""

from __future__ import annotations

import ipaddress
import os
import secrets
import signal
import subprocess
import time
from dataclasses import dataclass, field

PREFIX = "hltest-"


def sh(*args: str, check: bool = True, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, check=check, capture_output=True, text=True, **kw)


def _owner_alive(name: str) -> bool:
    try:
        pid = int(name[len(PREFIX):].split("-")[0])
    except ValueError:
        return False
    if pid == os.getpid():
        return False  # ours: always ours to clean
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def cleanup_stale_namespaces() -> None:
    """Remove this process's namespaces and those whose test process is gone."""
    out = sh("ip", "netns", "list", check=False).stdout
    for line in out.splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith(PREFIX) and not _owner_alive(name):
            kill_namespace_processes(name)
            sh("ip", "netns", "delete", name, check=False)


def kill_namespace_processes(ns: str) -> None:
    pids = sh("ip", "netns", "pids", ns, check=False).stdout.split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


@dataclass
class NetnsPair:
    """Namespace `a` (veth `a0`, 10.x.y.1, fd00:x:y::1) and `b` (veth `b0`, .2, ::2)."""

    a: str
    b: str
    a_ip: str
    b_ip: str
    a_ip6: str
    b_ip6: str
    dev_a: str = "a0"
    dev_b: str = "b0"
    procs: list[subprocess.Popen] = field(default_factory=list)

    @classmethod
    def create(cls) -> "NetnsPair":
        tag = secrets.token_hex(3)
        n = int(tag[:2], 16)
        pair = cls(
            a=f"{PREFIX}{os.getpid()}-{tag}-a",
            b=f"{PREFIX}{os.getpid()}-{tag}-b",
            a_ip=f"10.251.{n}.1",
            b_ip=f"10.251.{n}.2",
            # canonical text (n == 0 is fd00:251::1), as ss and hdrlog print it
            a_ip6=str(ipaddress.IPv6Address(f"fd00:251:{n:x}::1")),
            b_ip6=str(ipaddress.IPv6Address(f"fd00:251:{n:x}::2")),
        )
        try:
            pair._setup()
        except BaseException:
            pair.destroy()
            raise
        return pair

    def _setup(self) -> None:
        sh("ip", "netns", "add", self.a)
        sh("ip", "netns", "add", self.b)
        sh("ip", "-n", self.a, "link", "add", self.dev_a, "type", "veth", "peer", "name", self.dev_b, "netns", self.b)
        for ns, dev, ip, ip6 in ((self.a, self.dev_a, self.a_ip, self.a_ip6), (self.b, self.dev_b, self.b_ip, self.b_ip6)):
            # no duplicate address detection: link-local addresses are usable at once
            sh("ip", "netns", "exec", ns, "sysctl", "-q", "-w", f"net.ipv6.conf.{dev}.accept_dad=0")
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            sh("ip", "-n", ns, "addr", "add", f"{ip6}/64", "dev", dev, "nodad")
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            out = sh("ip", "-n", self.a, "-6", "addr", "show", "dev", self.dev_a).stdout
            if "tentative" not in out:
                break
            time.sleep(0.05)

    def run(self, ns: str, *args: str, check: bool = True, timeout: float = 30, **kw) -> subprocess.CompletedProcess:
        return sh("ip", "netns", "exec", ns, *args, check=check, timeout=timeout, **kw)

    def popen(self, ns: str, *args: str, **kw) -> subprocess.Popen:
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        p = subprocess.Popen(("ip", "netns", "exec", ns, *args), **kw)
        self.procs.append(p)
        return p

    def destroy(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            try:
                p.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
        for ns in (self.a, self.b):
            kill_namespace_processes(ns)
            sh("ip", "netns", "delete", ns, check=False)
