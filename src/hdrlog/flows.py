"""Flow records from the kernel's flow table (`--flows`, `--flows-only`).

With cfg_flows set, packet.bpf.c adds every packet that passes the traffic filters to
`flows`: an LRU per-CPU hash keyed by the ordered 5-tuple, interface and IP version,
holding packets, bytes and TCP flags per direction. Once per interval FlowReader reads
the whole table (batched), sums the CPUs, and FlowTable turns the running totals into
what happened since the previous read:

    flows map --lookup_batch--> FlowTotals (CPUs summed) --FlowTable--> FlowDelta --FlowRecorder--> FlowRecord

Flows idle past the timeout (or TCP flows that saw FIN or RST and were idle a whole
interval) are removed with lookup-and-delete, so packets counted between the read and
the removal are still reported. A flow the kernel evicted (LRU, table full) is counted
as evicted: its packets since the previous read are lost, and if it comes back it is a
new flow.
"""

from __future__ import annotations

import functools
import logging
import struct
import time
from dataclasses import dataclass
from typing import Callable, Iterable

from hdrlog.capture.packets import FLOW_COUNTER_MAP, FLOW_MAP, PacketCapture
from hdrlog.clock import Clock
from hdrlog.interfaces import ifname
from hdrlog.config import TCP_FLAG_BITS
from hdrlog.packets import TRANSPORTS
from hdrlog.records import FlowRecord
from hdrlog.stitch.flows import address_text, community_id

__all__ = ["FLOW_ID_FIELDS", "FLOW_STATS_FIELDS", "FLOW_COUNTERS", "FlowKey", "FlowTotals", "FlowDelta",
           "FlowTable", "FlowRecorder", "FlowReader", "totals"]

log = logging.getLogger("hdrlog.flows")

# struct hl_flow_id and struct hl_flow_stats (bpf/hdrlog_abi.h): (name, struct format)
FLOW_ID_FIELDS = (
    ("addr_lo", "16s"), ("addr_hi", "16s"), ("port_lo", "H"), ("port_hi", "H"), ("ifindex", "I"),
    ("proto", "B"), ("ip_version", "B"), ("l4", "B"), ("_pad0", "x"),
)  # fmt: skip
FLOW_STATS_FIELDS = (
    ("first_ns", "Q"), ("last_ns", "Q"), ("packets", "2Q"), ("bytes", "2Q"), ("syn", "I"), ("fin", "I"),
    ("rst", "I"), ("tcp_flags", "2H"), ("first_dir", "B"), ("syn_dirs", "B"), ("icmp_type", "2B"),
    ("icmp_code", "2B"), ("_pad0", "2x"),
)  # fmt: skip
_ID = struct.Struct("<" + "".join(f for _, f in FLOW_ID_FIELDS))
_STATS = struct.Struct("<" + "".join(f for _, f in FLOW_STATS_FIELDS))
_STRIDE = (_STATS.size + 7) & ~7  # per-CPU values are 8-byte aligned, one after another
_NEVER = bytes(8)  # first_ns of a CPU that has not seen the flow

# enum hl_flow_counter, index = value
FLOW_COUNTERS = ("packets", "new", "failed")

TCP_FIN, TCP_RST = 0x01, 0x04
_FLAG_NAMES = tuple(TCP_FLAG_BITS.items())


@dataclass(frozen=True, slots=True)
class FlowKey:
    """struct hl_flow_id: direction 0 goes from (addr_lo, port_lo) to (addr_hi, port_hi)."""

    addr_lo: bytes
    addr_hi: bytes
    port_lo: int
    port_hi: int
    ifindex: int
    proto: int
    ip_version: int
    l4: bool

    @classmethod
    def unpack(cls, raw: bytes) -> "FlowKey":
        a, b, pa, pb, ifindex, proto, version, l4 = _ID.unpack(raw)
        n = 4 if version == 4 else 16
        return cls(a[:n], b[:n], pa, pb, ifindex, proto, version, bool(l4))

    def pack(self) -> bytes:
        return _ID.pack(self.addr_lo, self.addr_hi, self.port_lo, self.port_hi, self.ifindex, self.proto,
                        self.ip_version, self.l4)


@dataclass(slots=True)
class FlowTotals:
    """A flow's running totals, all CPUs summed; index [d] is direction d."""

    first_ns: int
    last_ns: int
    packets: list[int]
    bytes: list[int]
    syn: int = 0
    fin: int = 0
    rst: int = 0
    tcp_flags: tuple[int, int] = (0, 0)
    first_dir: int = 0
    syn_dirs: int = 0
    icmp: tuple[tuple[int, int], tuple[int, int]] = ((0, 0), (0, 0))  # (type, code) each way, the last seen

    def continues(self, prev: "FlowTotals") -> bool:
        """Could these totals have grown from `prev`? Not if the kernel dropped the flow and it began again."""
        return (self.first_ns == prev.first_ns and self.packets[0] >= prev.packets[0]
                and self.packets[1] >= prev.packets[1])

    def source_dir(self) -> tuple[int, str]:
        """The initiator's direction: the one a SYN without ACK went, else the first packet's."""
        if self.syn_dirs in (1, 2):
            return self.syn_dirs - 1, "syn"
        return self.first_dir & 1, "first_packet"

    @property
    def closed(self) -> bool:
        return bool((self.tcp_flags[0] | self.tcp_flags[1]) & (TCP_FIN | TCP_RST))


def totals(raw: bytes) -> FlowTotals | None:
    """Sum a per-CPU value (as Map.lookup gives it); None if no CPU has counted a packet yet."""
    cpus = [_STATS.unpack_from(raw, off) for off in range(0, len(raw) - _STATS.size + 1, _STRIDE)
            if raw[off : off + 8] != _NEVER]
    if not cpus:
        return None
    if len(cpus) == 1:
        (first, last, p0, p1, b0, b1, syn, fin, rst, f0, f1, first_dir, syn_dirs, t0, t1, c0, c1), = cpus
        return FlowTotals(first, last, [p0, p1], [b0, b1], syn, fin, rst, (f0, f1), first_dir, syn_dirs,
                          ((t0, c0), (t1, c1)))
    cols = list(zip(*cpus))
    earliest = min(cpus, key=lambda v: v[0])
    icmp = []
    for d in (0, 1):
        # the ICMP type and code a direction carried last: from the latest CPU that saw that direction
        latest = max((v for v in cpus if v[2 + d]), key=lambda v: v[1], default=None)
        icmp.append((latest[13 + d], latest[15 + d]) if latest else (0, 0))
    flags = (_or(cols[9]), _or(cols[10]))
    return FlowTotals(earliest[0], max(cols[1]), [sum(cols[2]), sum(cols[3])], [sum(cols[4]), sum(cols[5])],
                      sum(cols[6]), sum(cols[7]), sum(cols[8]), flags, earliest[11], _or(cols[12]), tuple(icmp))


def _or(values) -> int:
    out = 0
    for v in values:
        out |= v
    return out


@dataclass(frozen=True, slots=True)
class FlowDelta:
    """What a flow did since its previous record."""

    packets: tuple[int, int]
    bytes: tuple[int, int]
    syn: int
    fin: int
    rst: int

    @classmethod
    def between(cls, now: FlowTotals, prev: FlowTotals | None) -> "FlowDelta":
        if prev is None:
            return cls(tuple(now.packets), tuple(now.bytes), now.syn, now.fin, now.rst)
        return cls(
            (now.packets[0] - prev.packets[0], now.packets[1] - prev.packets[1]),
            (now.bytes[0] - prev.bytes[0], now.bytes[1] - prev.bytes[1]),
            now.syn - prev.syn, now.fin - prev.fin, now.rst - prev.rst,
        )


class FlowTable:
    """What each flow had at its last record, and the rules for reporting and removing flows.

    `read(entries, now_ns, take)` goes through one read of the kernel's table, (key, per-CPU
    value) pairs: it returns (key, totals, delta) for every flow with packets since its last
    record, removes the flows that are done with `take` (which deletes a kernel entry and
    returns its last value), and counts flows that vanished or began again without being
    removed (evicted). A value equal to the previous read's is not decoded again (a flow that
    was quiet costs a hash and a dict lookup); should two values hash alike, the change shows
    at the next read, nothing is lost, as deltas are taken against the totals last reported."""

    def __init__(self, interval_ns: int, idle_timeout_ns: int):
        self.interval_ns = interval_ns
        self.idle_timeout_ns = idle_timeout_ns
        # key -> (hash of the raw value, totals, when it is done if nothing more comes)
        self.reported: dict[bytes, tuple[int, FlowTotals, int]] = {}
        self.evicted = 0
        self.expired = 0

    def done_at(self, t: FlowTotals) -> int:
        """When a flow is done without more packets: idle past the timeout, or, for a TCP flow
        that saw FIN or RST, idle a whole interval."""
        return t.last_ns + (self.interval_ns if t.closed else self.idle_timeout_ns)

    def read(self, entries: Iterable[tuple[bytes, bytes]], now_ns: int,
             take: Callable[[bytes], bytes | None] | None = None) -> list[tuple[bytes, FlowTotals, FlowDelta]]:
        out = []
        present = set()
        reported = self.reported
        for key, raw in entries:
            present.add(key)
            h = hash(raw)
            known = reported.get(key)
            if known is not None and known[0] == h:
                tot = prev = known[1]  # quiet since the last read
                done_at = known[2]
            else:
                tot = totals(raw)
                if tot is None:
                    continue  # created this instant, no packet counted yet
                prev = known[1] if known is not None else None
                if prev is not None and not tot.continues(prev):
                    self.evicted += 1  # dropped by the kernel and begun again
                    prev = None
                done_at = self.done_at(tot)
            if take is not None and now_ns > done_at:
                last_raw = take(key)
                last = totals(last_raw) if last_raw is not None else None
                if last is not None and last.continues(tot):
                    tot = last  # what arrived between the read and the removal counts too
                reported.pop(key, None)
                self.expired += 1
            else:
                reported[key] = (h, tot, done_at)
            if tot is not prev:
                delta = FlowDelta.between(tot, prev)
                if delta.packets[0] or delta.packets[1]:
                    out.append((key, tot, delta))
        for key in reported.keys() - present:
            del reported[key]  # gone without being removed: the kernel evicted it
            self.evicted += 1
        return out




@functools.lru_cache(maxsize=512)
def _flag_names(bits: int) -> list[str]:
    """Names of the TCP flags set (one shared list per value: records never change it)."""
    return [name for name, bit in _FLAG_NAMES if bits & bit]


class FlowRecorder:
    """(key, totals, delta) -> FlowRecord."""

    def __init__(self, clock: Clock | None = None, hook: str = "tc", ifname: Callable[[int], str] = ifname):
        self.clock = clock or Clock()
        self.hook = hook
        self.ifname = ifname

    def record(self, key: FlowKey, t: FlowTotals, d: FlowDelta, interval: tuple[str, str]) -> FlowRecord:
        """`interval`: the RFC 3339 times of the reads before and at this one."""
        s, by = t.source_dir()
        r = 1 - s
        ends = ((key.addr_lo, key.port_lo), (key.addr_hi, key.port_hi))
        (saddr, sport), (daddr, dport) = ends[s], ends[r]
        ts = self.clock.rfc3339
        end = ts(t.last_ns)
        f: dict = {
            "ts": end,
            "type": "flow",
            "interface": self.ifname(key.ifindex),
            "hook": self.hook,
            "network_type": f"ipv{key.ip_version}",
            "transport": TRANSPORTS.get(key.proto, str(key.proto)),
            "source_address": address_text(saddr),
            "destination_address": address_text(daddr),
            "source_packets": d.packets[s],
            "source_bytes": d.bytes[s],
            "destination_packets": d.packets[r],
            "destination_bytes": d.bytes[r],
            "network_packets": d.packets[0] + d.packets[1],
            "network_bytes": d.bytes[0] + d.bytes[1],
            "start": ts(t.first_ns),
            "end": end,
            "duration": t.last_ns - t.first_ns,
            "interval_start": interval[0],
            "interval_end": interval[1],
            "source_by": by,
        }
        proto = key.proto
        cid_ports: tuple[int | None, int | None] = (None, None)
        if key.l4 and proto in (6, 17):
            f.update(source_port=sport, destination_port=dport)
        elif key.l4 and proto in (1, 58):
            cid_ports = t.icmp[s] if t.packets[s] else t.icmp[r]
        if proto == 6 and key.l4:
            f.update(source_tcp_flags=_flag_names(t.tcp_flags[s]), destination_tcp_flags=_flag_names(t.tcp_flags[r]),
                     syn_packets=d.syn, fin_packets=d.fin, rst_packets=d.rst)
        # without the ports of a TCP/UDP flow a Community ID would name another flow (as for packets)
        if key.l4 and proto in (6, 17):
            f["community_id"] = community_id(proto, saddr, daddr, sport, dport)
        elif key.l4 or proto not in (6, 17, 132):
            cid = community_id(proto, saddr, daddr, *cid_ports)
            if cid:
                f["community_id"] = cid
        return FlowRecord(**f)


class FlowReader:
    """Pipeline-like (drain / finish / detach / counters) reader of the packet program's flow
    table: reads it every `interval` seconds and at finish(), and turns it into FlowRecords."""

    def __init__(self, capture: PacketCapture, recorder: FlowRecorder, *, interval: float = 10.0,
                 idle_timeout: float = 60.0):
        self.packet_capture = capture
        self.map = capture.obj.map(FLOW_MAP)
        self._counters = capture.obj.map(FLOW_COUNTER_MAP)
        self.recorder = recorder
        self.interval_ns = int(interval * 1e9)
        self.table = FlowTable(self.interval_ns, int(idle_timeout * 1e9))
        self.decode_errors = 0
        self.records = 0
        self.reads = 0
        self._last_read = time.monotonic_ns()
        self._next_read = self._last_read + self.interval_ns

    def read(self, *, final: bool = False) -> list[FlowRecord]:
        """One read of the whole table; `final` removes nothing (the table goes away with the program)."""
        entries = list(self.map.lookup_batch())
        now = time.monotonic_ns()
        found = self.table.read(entries, now, None if final else self.map.lookup_and_delete)
        start, self._last_read = self._last_read, now
        self._next_read = now + self.interval_ns
        self.reads += 1
        record = self.recorder.record
        interval = (self.recorder.clock.rfc3339(start), self.recorder.clock.rfc3339(now))
        out = [record(FlowKey.unpack(k), t, d, interval) for k, t, d in found]
        self.records += len(out)
        return out

    def drain(self) -> list[FlowRecord]:
        if time.monotonic_ns() < self._next_read:
            return []
        return self.read()

    def more(self) -> bool:
        """Nothing waits between reads: the table is read whole on its timer."""
        return False

    def finish(self) -> list[FlowRecord]:
        """The last partial interval: what the kernel counted before detach."""
        return self.read(final=True)

    def detach(self) -> None:
        self.packet_capture.detach()

    def counters(self) -> dict[str, int]:
        k = {f"flow_{n}": self._counters.sum_u64(struct.pack("<I", i)) for i, n in enumerate(FLOW_COUNTERS)}
        c = self.packet_capture.counters()
        c.update(k, flow_records=self.records, flow_expired=self.table.expired, flow_evicted=self.table.evicted,
                 flow_tracked=len(self.table.reported))
        return c
