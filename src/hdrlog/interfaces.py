"""Network interfaces of this network namespace, from /sys/class/net."""

from __future__ import annotations

import functools
import os
import socket

__all__ = ["up_interfaces", "ifindex", "ifname", "UnknownInterfaceError"]

_IFF_UP = 0x1
_SYS = "/sys/class/net"


class UnknownInterfaceError(LookupError):
    pass


def up_interfaces() -> list[str]:
    """Every interface whose administrative state is up, sorted by ifindex."""
    out = []
    for name in os.listdir(_SYS):
        try:
            with open(f"{_SYS}/{name}/flags") as f:
                flags = int(f.read(), 16)
            with open(f"{_SYS}/{name}/ifindex") as f:
                idx = int(f.read())
        except (OSError, ValueError):
            continue  # gone while we looked
        if flags & _IFF_UP:
            out.append((idx, name))
    return [name for _, name in sorted(out)]


def ifindex(name: str) -> int:
    try:
        return socket.if_nametoindex(name)
    except OSError:
        raise UnknownInterfaceError(f"interface: no such interface {name!r}") from None


@functools.lru_cache(maxsize=1024)
def ifname(ifindex: int) -> str:
    """An interface's name, or "if<index>" once it is gone (records name what was seen)."""
    try:
        return socket.if_indextoname(ifindex)
    except OSError:
        return f"if{ifindex}"
