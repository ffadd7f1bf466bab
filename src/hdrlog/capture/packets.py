"""The packet program: load it, write the filters into its maps, attach it, read it.

    with PacketCapture.load(snaplen=64) as cap:
        cap.configure(filters)
        cap.attach("veth0", mode="tc")
        for batch in ...: cap.ring.drain()
"""

from __future__ import annotations

import ipaddress
import mmap
import struct
from dataclasses import dataclass, field

from hdrlog.bpf import Link, ObjectSpec, remove_stale_tc_filters
from hdrlog.capture.base import Capture, ObjectMissingError, object_path, wake_bytes_per_cpu
from hdrlog.decode import COUNTERS

__all__ = ["PacketCapture", "PacketFilters", "object_path", "ObjectMissingError"]

# enum hl_setting_flag (bpf/hdrlog_abi.h)
SET_PORTS = 1 << 0
SET_NET_INCLUDE = 1 << 1
SET_NET_EXCLUDE = 1 << 2
SET_TCP_FLAGS = 1 << 3
SET_TCP_FLAGS_ANY = 1 << 4
SET_PROTOS = 1 << 5

_SETTINGS = struct.Struct("<IIIHH32sII")  # struct hl_settings

FLOW_MAP = "flows"  # struct hl_flow_id -> per-CPU struct hl_flow_stats
FLOW_COUNTER_MAP = "flow_counters"
DEFAULT_MAX_FLOWS = 65536
_U32 = struct.Struct("<I")


@dataclass(frozen=True)
class PacketFilters:
    """What the kernel keeps. Empty lists and zeros mean no filter."""

    protocols: list[int] = field(default_factory=list)
    ports: list[int] = field(default_factory=list)
    nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = field(default_factory=list)
    not_nets: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = field(default_factory=list)
    tcp_flags: tuple[int, int, bool] | None = None  # (mask, value, match_any)
    sample: int = 1
    first_packets: int = 0


def _net_key(net) -> bytes:
    """struct hl_net_key: IPv4 as IPv4-mapped IPv6, prefix shifted by 96."""
    if net.version == 4:
        addr = b"\0" * 10 + b"\xff\xff" + net.network_address.packed
        plen = net.prefixlen + 96
    else:
        addr = net.network_address.packed
        plen = net.prefixlen
    return _U32.pack(plen) + addr


class PacketCapture(Capture):
    OBJECT = "packet.bpf.o"
    RING = "events"
    COUNTER_MAP = "counters"
    COUNTER_NAMES = COUNTERS

    @classmethod
    def load(cls, *, snaplen: int = 0, ring_size: int = 8 << 20, path: str | None = None,
             flows: bool = False, packets: bool = True, max_flows: int = DEFAULT_MAX_FLOWS) -> "PacketCapture":
        """flows: count packets into the `flows` map (max_flows entries, per CPU);
        packets=False: no packet records, the ring is left at its smallest."""
        if not packets:
            ring_size = mmap.PAGESIZE
        rodata = {"cfg_snaplen": snaplen, "cfg_flows": int(flows), "cfg_packets": int(packets)}
        with ObjectSpec.open(path or object_path(cls.OBJECT)) as spec:
            for name, value in rodata.items():
                spec.rodata[name] = value
            spec.map(cls.RING).max_entries = ring_size
            # LRU maps are preallocated: max_flows x CPUs x the value's size of kernel memory
            spec.map(FLOW_MAP).max_entries = max_flows if flows else 1
            cap = cls._new(spec.load())
        # wake the reader when a quarter of the ring is waiting; it drains on a timer otherwise
        cap._wake_bytes = wake_bytes_per_cpu(ring_size)
        cap.configure(PacketFilters())
        return cap

    def configure(self, f: PacketFilters) -> None:
        """Write the filters into the maps (safe while attached)."""
        flags = 0
        protos = bytearray(32)
        for p in f.protocols:
            protos[p >> 3] |= 1 << (p & 7)
            flags |= SET_PROTOS
        ports = self.obj.map("ports")
        ports.clear()
        for p in f.ports:
            ports.update(struct.pack("<H", p), b"\1")
            flags |= SET_PORTS
        for name, nets, bit in (("nets_include", f.nets, SET_NET_INCLUDE), ("nets_exclude", f.not_nets, SET_NET_EXCLUDE)):
            trie = self.obj.map(name)
            trie.clear()
            for net in nets:
                trie.update(_net_key(net), b"\1")
                flags |= bit
        mask = value = 0
        if f.tcp_flags:
            mask, value, any_ = f.tcp_flags
            flags |= SET_TCP_FLAGS | (SET_TCP_FLAGS_ANY if any_ else 0)
        raw = _SETTINGS.pack(flags, f.sample, f.first_packets, mask, value, bytes(protos), self._wake_bytes, 0)
        self.obj.map("settings").update(_U32.pack(0), raw)

    def attach(self, ifindex: int, *, mode: str = "tc", directions=("ingress", "egress"),
               xdp_mode: str = "auto", tc_attach: str = "auto") -> list[Link]:
        """Attach to one interface; returns the new links (also kept in self.links)."""
        new: list[Link] = []
        try:
            if mode == "xdp":
                new.append(self.obj.program("xdp_ingress").attach_xdp(ifindex, mode=xdp_mode))
            else:
                if tc_attach != "tcx":
                    remove_stale_tc_filters(ifindex)
                for d in directions:
                    prog = self.obj.program(f"tc_{d}")
                    new.append(prog.attach_tc(ifindex, d, mode=tc_attach))
        except BaseException:
            for link in reversed(new):
                link.close()
            raise
        self.links.extend(new)
        return new
