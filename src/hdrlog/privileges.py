"""What the process may do: the capabilities hdrlog needs, read from /proc."""

from __future__ import annotations

__all__ = ["missing_capabilities", "effective_capabilities"]

CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21
CAP_PERFMON = 38
CAP_BPF = 39


def effective_capabilities() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


def missing_capabilities(caps: int | None = None) -> list[str]:
    """Names of the capabilities still needed to load and attach hdrlog's programs."""
    caps = effective_capabilities() if caps is None else caps
    has = lambda bit: bool(caps >> bit & 1)  # noqa: E731
    missing = []
    if not (has(CAP_BPF) or has(CAP_SYS_ADMIN)):
        missing.append("CAP_BPF")
    if not (has(CAP_PERFMON) or has(CAP_SYS_ADMIN)):
        missing.append("CAP_PERFMON")
    if not has(CAP_NET_ADMIN):
        missing.append("CAP_NET_ADMIN")
    return missing
