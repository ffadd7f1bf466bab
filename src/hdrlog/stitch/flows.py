"""Flow identity: the Community ID (https://github.com/corelight/community-id-spec)."""

from __future__ import annotations

import functools
import ipaddress
import logging

import communityid

__all__ = ["community_id", "address_text"]

# the library logs every calculation at INFO; hdrlog's logging must not pay for that
logging.getLogger("communityid").setLevel(logging.WARNING)
_CID = communityid.CommunityID()

# Flows seen at once on a busy host; each entry is a few hundred bytes.
FLOW_CACHE_SIZE = 65536


@functools.lru_cache(maxsize=FLOW_CACHE_SIZE)
def community_id(proto: int, saddr: bytes, daddr: bytes, sport: int | None, dport: int | None) -> str | None:
    """Community ID v1 (seed 0) of a flow; addresses are 4 or 16 packed bytes.
    ICMP type/code stand in for ports as the spec says. None if not computable."""
    try:
        tpl = communityid.FlowTuple(proto, saddr, daddr, sport, dport)
        return _CID.calc(tpl)
    except communityid.error.Error:
        return None


@functools.lru_cache(maxsize=FLOW_CACHE_SIZE)
def address_text(raw: bytes) -> str:
    """4 or 16 packed bytes -> the address as text ("10.0.0.1", "2001:db8::1")."""
    return str(ipaddress.ip_address(raw))
