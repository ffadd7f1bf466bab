"""The one place where libbpf's and the kernel's return codes become exceptions."""

from __future__ import annotations

import errno as _errno
import os

__all__ = ["BpfError", "VerifierError", "NotSupported", "check_int", "check_ptr"]

_HINTS = {
    _errno.EPERM: "needs root (CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON)",
    _errno.EACCES: "denied by the kernel",
}


class BpfError(OSError):
    """A bpf() or libbpf call failed. `errno` holds the error number."""

    def __init__(self, err: int, what: str, detail: str = ""):
        self.what = what
        self.detail = detail
        message = f"{what}: {os.strerror(err)}"
        if err in _HINTS:
            message += f" ({_HINTS[err]})"
        if detail:
            message += f": {detail}"
        super().__init__(err, message)

    def __str__(self) -> str:
        return self.strerror


class VerifierError(BpfError):
    """The verifier rejected a program. `log` keeps the whole verifier log."""

    def __init__(self, err: int, what: str, log: str):
        self.log = log
        super().__init__(err, what, _summary(log))


class NotSupported(BpfError):
    """The running kernel lacks a feature. `feature` names it."""

    def __init__(self, feature: str, err: int = _errno.EOPNOTSUPP, detail: str = ""):
        self.feature = feature
        super().__init__(err, f"not supported by this kernel: {feature}", detail)


def _summary(log: str) -> str:
    """The verifier's reason: the last line of its log that is not a statistic."""
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    skip = ("processed ", "-- END", "verification time", "stack depth", "libbpf:")
    for line in reversed(lines):
        if not line.startswith(skip):
            return line
    return lines[-1] if lines else "no log"


def check_int(ret: int, what: str, detail: str = "") -> int:
    """libbpf's int-returning calls give -errno on failure."""
    if ret < 0:
        raise BpfError(-ret, what, detail)
    return ret


def check_ptr(ptr: int | None, what: str, err: int, detail: str = "") -> int:
    """libbpf's pointer-returning calls give NULL and set errno."""
    if not ptr:
        raise BpfError(err or _errno.EINVAL, what, detail)
    return ptr
