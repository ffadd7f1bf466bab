"""Flow records without a kernel: per-CPU values summed, per-interval deltas, idle removal,
evictions noticed, and the record's source, counts and Community ID."""

from __future__ import annotations

import ipaddress
import struct

import msgspec

from hdrlog import flows as F
from hdrlog.clock import Clock
from hdrlog.flows import FlowDelta, FlowKey, FlowTable, FlowTotals, FlowRecorder, totals
from hdrlog.stitch.flows import community_id

S = 1_000_000_000
STATS = struct.Struct("<" + "".join(f for _, f in F.FLOW_STATS_FIELDS))


def cpu(first=0, last=0, packets=(0, 0), bytes_=(0, 0), syn=0, fin=0, rst=0, flags=(0, 0), first_dir=0,
        syn_dirs=0, icmp_type=(0, 0), icmp_code=(0, 0)) -> bytes:
    """One CPU's struct hl_flow_stats, padded to the 8-byte per-CPU stride."""
    raw = STATS.pack(first, last, *packets, *bytes_, syn, fin, rst, *flags, first_dir, syn_dirs, *icmp_type, *icmp_code)
    return raw.ljust((len(raw) + 7) & ~7, b"\0")


def val(first=1 * S, last=2 * S, packets=(1, 0), bytes_=(100, 0), **kw) -> bytes:
    """A per-CPU value as the kernel gives it: this CPU's stats, then a CPU that never saw the flow."""
    return cpu(first, last, packets, bytes_, **kw) + cpu()


def tot(**kw) -> FlowTotals:
    return totals(val(**kw))


def key(n: int = 1) -> bytes:
    return FlowKey(bytes([10, 0, 0, 1]), bytes([10, 0, 0, 2]), 1000 + n, 80, 2, 6, 4, True).pack()


def test_cpus_are_summed():
    """Packets and bytes add up over CPUs; first and last seen are the earliest and latest; flags are ORed;
    a CPU that never saw the flow is skipped."""
    raw = (cpu(5 * S, 6 * S, (2, 1), (200, 60), syn=1, flags=(0x02, 0x12), first_dir=1, syn_dirs=2)
           + cpu()
           + cpu(3 * S, 4 * S, (1, 4), (50, 400), fin=1, flags=(0x11, 0x10), first_dir=0))
    t = totals(raw)
    assert (t.first_ns, t.last_ns, t.first_dir) == (3 * S, 6 * S, 0)
    assert (t.packets, t.bytes, t.syn, t.fin) == ([3, 5], [250, 460], 1, 1)
    assert t.tcp_flags == (0x13, 0x12)
    assert t.source_dir() == (1, "syn")  # a SYN without ACK went direction 1
    assert totals(cpu() + cpu()) is None


def test_source_is_the_first_sender_without_a_lone_syn():
    """Without a SYN (UDP, a capture that began mid-connection) or with SYNs both ways, the first packet's sender."""
    assert tot(first_dir=1).source_dir() == (1, "first_packet")
    assert tot(first_dir=0, syn_dirs=3).source_dir() == (0, "first_packet")


def test_icmp_type_of_each_direction_comes_from_the_cpu_that_saw_it_last():
    """Echo request one way, reply (type 0) the other, split over CPUs: each direction keeps its own."""
    raw = cpu(1 * S, 2 * S, (1, 0), (98, 0), icmp_type=(8, 0)) + cpu(1 * S + 5, 3 * S, (0, 1), (0, 98), icmp_type=(0, 0))
    t = totals(raw)
    assert t.icmp == ((8, 0), (0, 0))
    assert t.packets == [1, 1]


def test_deltas_between_reads():
    """Each read reports what a flow did since its previous record, and a flow that did nothing is not reported."""
    table = FlowTable(interval_ns=10 * S, idle_timeout_ns=60 * S)
    first = table.read([(key(), val(packets=(3, 2), bytes_=(300, 200), syn=1))], 3 * S)
    assert [(d.packets, d.bytes, d.syn) for _, _, d in first] == [((3, 2), (300, 200), 1)]
    second = table.read([(key(), val(last=5 * S, packets=(5, 2), bytes_=(500, 200), syn=1))], 6 * S)
    assert [(d.packets, d.bytes, d.syn) for _, _, d in second] == [((2, 0), (200, 0), 0)]
    assert table.read([(key(), val(last=5 * S, packets=(5, 2), bytes_=(500, 200)))], 9 * S) == []
    assert (table.evicted, table.expired) == (0, 0)


def test_idle_flows_are_removed_with_what_came_after_the_read():
    """A flow idle past the timeout is taken out of the kernel's table; packets counted between the read and
    the removal are reported, and the flow is forgotten (its next packet starts a new flow)."""
    table = FlowTable(interval_ns=10 * S, idle_timeout_ns=60 * S)
    table.read([(key(), val(packets=(4, 4), bytes_=(400, 400)))], 3 * S)
    taken = []

    def take(k):
        taken.append(k)
        return val(packets=(5, 4), bytes_=(450, 400))  # one more packet arrived meanwhile

    out = table.read([(key(), val(packets=(4, 4), bytes_=(400, 400)))], 70 * S, take)
    assert taken == [key()]
    assert [d.packets for _, _, d in out] == [(1, 0)]
    assert table.reported == {} and table.expired == 1
    # the same 5-tuple again: a new flow, counted from zero
    again = table.read([(key(), val(first=80 * S, last=80 * S, packets=(1, 0)))], 81 * S, take)
    assert [d.packets for _, _, d in again] == [(1, 0)] and table.evicted == 0


def test_closed_tcp_flows_go_after_one_idle_interval():
    """A TCP flow that saw FIN or RST is removed once idle a whole interval; an open one waits for the timeout."""
    table = FlowTable(interval_ns=10 * S, idle_timeout_ns=60 * S)
    closed = tot(last=2 * S, flags=(0x11, 0x10))
    open_ = tot(last=2 * S, flags=(0x10, 0x10))
    assert (table.done_at(closed), table.done_at(open_)) == (12 * S, 62 * S)
    taken = []
    table.read([(key(1), val(last=2 * S, flags=(0x11, 0x10))), (key(2), val(last=2 * S))], 13 * S, taken.append)
    assert taken == [key(1)] and set(table.reported) == {key(2)}


def test_final_read_removes_nothing():
    """Without `take` (the read at shutdown) idle flows are reported but not removed."""
    table = FlowTable(interval_ns=10 * S, idle_timeout_ns=60 * S)
    out = table.read([(key(), val())], 1000 * S)
    assert len(out) == 1 and key() in table.reported and table.expired == 0


def test_evictions_are_noticed():
    """A flow that vanished between reads, or began again (new first packet, smaller totals), was evicted
    by the kernel: counted, and the new totals are reported whole."""
    table = FlowTable(interval_ns=10 * S, idle_timeout_ns=60 * S)
    table.read([(key(1), val(packets=(5, 5))), (key(2), val(packets=(5, 5)))], 3 * S)
    out = table.read([(key(1), val(first=4 * S, last=4 * S, packets=(2, 0)))], 5 * S)
    assert table.evicted == 2  # key(2) vanished, key(1) restarted
    assert [(k, d.packets) for k, _, d in out] == [(key(1), (2, 0))]
    assert set(table.reported) == {key(1)}


def test_entry_without_packets_yet_is_skipped():
    """An entry read the instant it was created (no CPU has counted into it) is neither reported nor evicted."""
    table = FlowTable(interval_ns=10 * S, idle_timeout_ns=60 * S)
    table.read([(key(), val())], 3 * S)
    assert table.read([(key(), val()), (key(2), cpu() + cpu())], 4 * S) == []
    assert set(table.reported) == {key()} and table.evicted == 0


def test_flow_record_fields():
    """The initiator is the source: its packets and bytes are source.*, the other way destination.*; the
    Community ID is the one packet records of this flow carry."""
    k = FlowKey.unpack(key())  # 10.0.0.1:1001 (lo) <-> 10.0.0.2:80 (hi)
    t = tot(first=1 * S, last=3 * S, packets=(6, 4), bytes_=(600, 5000), syn=2, flags=(0x13, 0x12), syn_dirs=1)
    rec = FlowRecorder(Clock(), hook="tc", ifname=lambda i: f"if{i}").record(
        k, t, FlowDelta((6, 4), (600, 5000), 2, 1, 0), ("a", "b"))
    j = msgspec.to_builtins(rec)
    assert j["type"] == "flow" and j["frame.interface_name"] == "if2" and j["hdrlog.hook"] == "tc"
    assert (j["source.address"], j["source.port"], j["destination.address"], j["destination.port"]) == (
        "10.0.0.1", 1001, "10.0.0.2", 80)
    assert (j["source.packets"], j["source.bytes"], j["destination.packets"], j["destination.bytes"]) == (6, 600, 4, 5000)
    assert (j["network.packets"], j["network.bytes"]) == (10, 5600)
    assert j["source.tcp.flags"] == ["fin", "syn", "ack"] and j["destination.tcp.flags"] == ["syn", "ack"]
    assert (j["hdrlog.tcp.syn_packets"], j["hdrlog.tcp.fin_packets"], j["hdrlog.tcp.rst_packets"]) == (2, 1, 0)
    assert j["event.duration"] == 2 * S and j["ts"] == j["event.end"]
    assert j["hdrlog.flow.source_by"] == "syn" and j["network.transport"] == "tcp" and j["network.type"] == "ipv4"
    assert (j["hdrlog.interval.start"], j["hdrlog.interval.end"]) == ("a", "b")
    ip = lambda a: ipaddress.ip_address(a).packed  # noqa: E731
    assert j["network.community_id"] == community_id(6, ip("10.0.0.1"), ip("10.0.0.2"), 1001, 80)


def test_flow_record_source_in_the_high_direction():
    """When the hi endpoint started the flow, it is the source and direction 1's counts are its."""
    k = FlowKey.unpack(key())
    t = tot(packets=(2, 3), bytes_=(20, 30), syn_dirs=2, flags=(0x12, 0x02))
    j = msgspec.to_builtins(FlowRecorder(ifname=str).record(k, t, FlowDelta((2, 3), (20, 30), 1, 0, 0), ("a", "b")))
    assert (j["source.address"], j["source.port"], j["source.packets"], j["destination.bytes"]) == ("10.0.0.2", 80, 3, 20)


def test_icmp_and_portless_flows():
    """ICMP flows have no ports, and their Community ID uses the source's ICMP type and code; a TCP flow
    whose ports were never seen (fragments) has none."""
    a, b = ipaddress.ip_address("2001:db8::1").packed, ipaddress.ip_address("2001:db8::2").packed
    icmp = FlowKey(a, b, 0, 0, 3, 58, 6, True)
    t = tot(packets=(2, 2), icmp_type=(128, 129))
    j = msgspec.to_builtins(FlowRecorder(ifname=str).record(icmp, t, FlowDelta((2, 2), (1, 1), 0, 0, 0), ("a", "b")))
    assert "source.port" not in j and "source.tcp.flags" not in j
    assert (j["network.type"], j["network.transport"]) == ("ipv6", "ipv6-icmp")
    assert j["network.community_id"] == community_id(58, a, b, 128, 129)
    frag = FlowKey(a, b, 0, 0, 3, 6, 6, False)
    j = msgspec.to_builtins(FlowRecorder(ifname=str).record(frag, tot(), FlowDelta((1, 0), (1, 0), 0, 0, 0), ("a", "b")))
    assert "network.community_id" not in j and "source.port" not in j


def test_key_round_trip():
    """FlowKey packs to struct hl_flow_id's size and back; IPv4 addresses are 4 bytes once unpacked."""
    raw = key()
    assert len(raw) == struct.calcsize("<" + "".join(f for _, f in F.FLOW_ID_FIELDS))
    k = FlowKey.unpack(raw)
    assert (k.addr_lo, k.port_lo, k.ifindex, k.proto, k.ip_version, k.l4) == (bytes([10, 0, 0, 1]), 1001, 2, 6, 4, True)


def test_ports_community_id_is_the_librarys():
    """The Community ID of TCP, UDP and SCTP flows, computed without the library, equals the
    communityid library's, both orders, IPv4 and IPv6, equal addresses (then the ports order them)."""
    from hdrlog.stitch.flows import library_community_id

    import random

    rnd = random.Random(7)
    cases = [(6, b"\x7f\0\0\1", b"\x7f\0\0\1", 5000, 80), (17, b"\x7f\0\0\1", b"\x7f\0\0\1", 80, 5000)]
    for _ in range(200):
        n = rnd.choice((4, 16))
        a, b = rnd.randbytes(n), rnd.randbytes(n)
        cases.append((rnd.choice((6, 17, 132)), a, b if rnd.random() < 0.9 else a, rnd.randrange(65536), rnd.randrange(65536)))
    for proto, a, b, pa, pb in cases:
        want = library_community_id(proto, a, b, pa, pb)
        assert community_id(proto, a, b, pa, pb) == want == community_id(proto, b, a, pb, pa)
