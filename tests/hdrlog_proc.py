"""Run `hdrlog run` as a real process (optionally inside a namespace) and read its records."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class HdrlogRun:
    proc: subprocess.Popen
    output: Path
    stderr_lines: list[str] = field(default_factory=list)

    def _read_stderr(self, until: str | None, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        fd = self.proc.stderr.fileno()
        buf = ""
        while time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], 0.1)
            if r:
                chunk = os.read(fd, 65536).decode(errors="replace")
                if not chunk:
                    return False
                buf += chunk
                *lines, buf = buf.split("\n")
                self.stderr_lines.extend(lines)
                if until and any(until in ln for ln in lines):
                    return True
            elif self.proc.poll() is not None and not r:
                return False
        return False

    def wait_ready(self, timeout: float = 20) -> None:
        if not self._read_stderr("attached to", timeout):
            self.proc.kill()
            _, err = self.proc.communicate(timeout=5)
            raise AssertionError(f"hdrlog did not attach: {self.stderr_lines} {err!r}")

    def stop(self, sig: int = signal.SIGINT, timeout: float = 20) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        return self.wait(timeout)

    def wait(self, timeout: float = 20) -> int:
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("hdrlog did not stop in time")
        rest = self.proc.stderr.read().decode(errors="replace")
        self.stderr_lines.extend(rest.splitlines())
        return self.proc.returncode

    @property
    def summary(self) -> str:
        return next((ln for ln in reversed(self.stderr_lines) if ln.startswith("hdrlog: seen")), "")

    def records(self) -> list[dict]:
        if not self.output.exists():
            return []
        return [json.loads(line) for line in self.output.read_text().splitlines() if line]


def hdrlog_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "hdrlog", "-v", *args]


def start_hdrlog(tmp_path: Path, *args: str, netns: str | None = None, ready: bool = True) -> HdrlogRun:
    out = tmp_path / f"records-{time.monotonic_ns()}.ndjson"
    cmd = hdrlog_cmd("run", "--output", str(out), *args)
    if netns:
        cmd = ["ip", "netns", "exec", netns, *cmd]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    run = HdrlogRun(proc, out)
    if ready:
        run.wait_ready()
    return run
