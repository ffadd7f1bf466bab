"""Flow identity: the Community ID (https://github.com/corelight/community-id-spec)."""

from __future__ import annotations

import base64
import functools
import hashlib
import ipaddress
import logging
import struct

import communityid

__all__ = ["community_id", "address_text"]

# the library logs every calculation at INFO; hdrlog's logging must not pay for that
logging.getLogger("communityid").setLevel(logging.WARNING)
_CID = communityid.CommunityID()

# Flows seen at once on a busy host; each entry is a few hundred bytes.
FLOW_CACHE_SIZE = 65536


_PORT_PROTOS = (6, 17, 132)  # TCP, UDP, SCTP
_PORTS = struct.Struct("!HH")


@functools.lru_cache(maxsize=FLOW_CACHE_SIZE)
def community_id(proto: int, saddr: bytes, daddr: bytes, sport: int | None, dport: int | None) -> str | None:
    """Community ID v1 (seed 0) of a flow; addresses are 4 or 16 packed bytes.
    ICMP type/code stand in for ports as the spec says. None if not computable."""
    if proto in _PORT_PROTOS and sport is not None and dport is not None and len(saddr) == len(daddr):
        return _ports_community_id(proto, saddr, daddr, sport, dport)
    return library_community_id(proto, saddr, daddr, sport, dport)


def _ports_community_id(proto: int, saddr: bytes, daddr: bytes, sport: int, dport: int) -> str:
    """The spec's hash written out for flows with ports, the common case: the library parses
    and logs on every call (~350 µs measured), a flow on a busy host cannot wait that long.
    tests/unit/test_flows.py checks it against the library."""
    if (saddr, sport) > (daddr, dport):
        saddr, daddr, sport, dport = daddr, saddr, dport, sport
    digest = hashlib.sha1(b"\0\0" + saddr + daddr + bytes((proto, 0)) + _PORTS.pack(sport, dport)).digest()
    return "1:" + base64.b64encode(digest).decode()


def library_community_id(proto: int, saddr: bytes, daddr: bytes, sport: int | None, dport: int | None) -> str | None:
    """The communityid library's answer (ICMP, flows without ports, and the tests' reference)."""
    try:
        tpl = communityid.FlowTuple(proto, saddr, daddr, sport, dport)
        return _CID.calc(tpl)
    except communityid.error.Error:
        return None


@functools.lru_cache(maxsize=FLOW_CACHE_SIZE)
def address_text(raw: bytes) -> str:
    """4 or 16 packed bytes -> the address as text ("10.0.0.1", "2001:db8::1")."""
    return str(ipaddress.ip_address(raw))
