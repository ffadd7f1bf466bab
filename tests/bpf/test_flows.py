"""Flows in the kernel: the real packet program, run with BPF_PROG_TEST_RUN on scapy-built packets,
counts both directions of a flow into one entry of the `flows` map, and FlowReader turns the map
into flow records. Also the binding's batch lookup and lookup-and-delete on that map."""

from __future__ import annotations

import ipaddress

import msgspec
import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Raw, raw

from hdrlog.capture.packets import FLOW_MAP, PacketCapture, PacketFilters
from hdrlog.config import parse_tcp_flags
from hdrlog.flows import FlowReader, FlowRecorder, totals
from tests.conftest import require_bpf

C, S = "10.0.0.2", "10.0.0.1"  # client, server: the server's address is the lower one


class Flows:
    """The packet program loaded with flows on; run(pkt) feeds it one packet."""

    def __init__(self, packets: bool = False, max_flows: int = 1024, idle_timeout: float = 3600):
        self.cap = PacketCapture.load(snaplen=0, flows=True, packets=packets, max_flows=max_flows)
        self.map = self.cap.obj.map(FLOW_MAP)
        self.reader = FlowReader(self.cap, FlowRecorder(ifname=str), interval=3600, idle_timeout=idle_timeout)

    def run(self, *frames: bytes, hook: str = "tc_ingress") -> None:
        prog = self.cap.obj.program(hook)
        for f in frames:
            assert prog.test_run(f).retval in (-1, 2)  # TC_ACT_UNSPEC, XDP_PASS: never drops traffic

    def records(self, final: bool = False) -> list[dict]:
        return [msgspec.to_builtins(r) for r in self.reader.read(final=final)]

    def reset(self) -> None:
        """As loaded: no flows, counters zero, no filters, a fresh reader."""
        self.map.clear()
        for name in ("counters", "flow_counters"):
            m = self.cap.obj.map(name)
            for k in list(m.keys()):
                m.update(k, bytes(m.value_size))
        self.cap.configure(PacketFilters())
        self.reader = FlowReader(self.cap, FlowRecorder(ifname=str), interval=3600, idle_timeout=3600)

    def close(self) -> None:
        self.cap.close()


@pytest.fixture(scope="module")
def loaded():
    require_bpf()
    f = Flows()
    yield f
    f.close()


@pytest.fixture
def fl(loaded):
    """The flows-only program, loaded once for the module and reset for each test."""
    loaded.reset()
    return loaded


def sports(frame: bytes, ports) -> list[bytes]:
    """Copies of an Ethernet/IPv4 (no options)/TCP or UDP frame with other source ports (checksums are not checked)."""
    return [frame[:34] + p.to_bytes(2, "big") + frame[36:] for p in ports]


def tcp(src=C, dst=S, sport=40000, dport=80, flags="A", payload=b""):
    return raw(Ether() / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags) / Raw(payload))


def reply(flags="A", payload=b""):
    return tcp(src=S, dst=C, sport=80, dport=40000, flags=flags, payload=payload)


def test_both_directions_make_one_flow(fl):
    """A TCP connection's packets both ways are one flow: per-direction packets and bytes (frame lengths),
    flags ORed per direction, SYN/FIN/RST counted, the SYN's sender as source (though its address is the higher)."""
    c2s = [tcp(flags="S"), tcp(flags="A"), tcp(flags="PA", payload=b"x" * 100), tcp(flags="FA")]
    s2c = [reply(flags="SA"), reply(flags="PA", payload=b"y" * 1000), reply(flags="FA")]
    fl.run(c2s[0], s2c[0], c2s[1], c2s[2], s2c[1], c2s[3], s2c[2])
    (r,) = fl.records()
    assert (r["source.address"], r["source.port"], r["destination.address"], r["destination.port"]) == (C, 40000, S, 80)
    assert r["hdrlog.flow.source_by"] == "syn"
    assert (r["source.packets"], r["source.bytes"]) == (4, sum(map(len, c2s)))
    assert (r["destination.packets"], r["destination.bytes"]) == (3, sum(map(len, s2c)))
    assert r["network.packets"] == 7
    assert r["source.tcp.flags"] == ["fin", "syn", "psh", "ack"]
    assert r["destination.tcp.flags"] == ["fin", "syn", "psh", "ack"]
    assert (r["hdrlog.tcp.syn_packets"], r["hdrlog.tcp.fin_packets"], r["hdrlog.tcp.rst_packets"]) == (2, 2, 0)
    assert r["frame.interface_name"] == "1"  # the ifindex BPF_PROG_TEST_RUN gives (lo), through ifname=str
    assert r["event.duration"] > 0
    c = fl.reader.counters()
    assert (c["flow_packets"], c["flow_new"], c["flow_failed"], c["seen"], c["logged"]) == (7, 1, 0, 7, 0)


def test_intervals_report_what_is_new(fl):
    """The next read reports only the packets since the previous one; flags stay those since the flow began."""
    fl.run(tcp(flags="S"), reply(flags="SA"))
    assert [r["network.packets"] for r in fl.records()] == [2]
    assert fl.records() == []
    fl.run(tcp(flags="A", payload=b"z" * 10))
    (r,) = fl.records()
    assert (r["source.packets"], r["destination.packets"], r["hdrlog.tcp.syn_packets"]) == (1, 0, 0)
    assert r["source.tcp.flags"] == ["syn", "ack"]


def test_flows_are_told_apart(fl):
    """Another port, protocol, or IP version is another flow; UDP's source is the first packet's sender."""
    fl.run(tcp(sport=1), tcp(sport=2), tcp(sport=2),
           raw(Ether() / IP(src=C, dst=S) / UDP(sport=5353, dport=53)),
           raw(Ether() / IP(src=S, dst=C) / UDP(sport=53, dport=5353)),
           raw(Ether() / IPv6(src="2001:db8::2", dst="2001:db8::1") / UDP(sport=5353, dport=53)))
    recs = {(r["network.type"], r["network.transport"], r.get("source.port")): r for r in fl.records()}
    assert set(recs) == {("ipv4", "tcp", 1), ("ipv4", "tcp", 2), ("ipv4", "udp", 5353), ("ipv6", "udp", 5353)}
    assert recs[("ipv4", "tcp", 2)]["source.packets"] == 2
    udp = recs[("ipv4", "udp", 5353)]
    assert (udp["source.address"], udp["source.packets"], udp["destination.packets"]) == (C, 1, 1)
    assert udp["hdrlog.flow.source_by"] == "first_packet" and "source.tcp.flags" not in udp
    assert recs[("ipv6", "udp", 5353)]["source.address"] == "2001:db8::2"


def test_icmp_echo_is_one_flow_with_the_packet_records_community_id(fl):
    """Echo request and reply are one flow whose Community ID is the one the packet records carry."""
    from hdrlog.stitch.flows import community_id

    fl.run(raw(Ether() / IP(src=C, dst=S) / ICMP(type=8, id=7, seq=1)),
           raw(Ether() / IP(src=S, dst=C) / ICMP(type=0, id=7, seq=1)))
    (r,) = fl.records()
    assert (r["network.transport"], r["source.address"], r["source.packets"], r["destination.packets"]) == ("icmp", C, 1, 1)
    ip = lambda a: ipaddress.ip_address(a).packed  # noqa: E731
    assert r["network.community_id"] == community_id(1, ip(C), ip(S), 8, 0) == community_id(1, ip(S), ip(C), 0, 0)


def test_traffic_filters_apply_record_selectors_do_not():
    """Protocol, port and network filters keep packets out of flows; TCP-flag, first-N and sampling
    filters only select packet records: flows count every packet."""
    require_bpf()
    f = Flows(packets=True)
    try:
        f.cap.configure(PacketFilters(ports=[80], not_nets=[ipaddress.ip_network("192.0.2.0/24")]))
        f.run(tcp(), tcp(dport=81), tcp(src="192.0.2.9"), raw(Ether() / IP(src=C, dst=S) / ICMP()))
        assert [r["network.packets"] for r in f.records()] == [1]
        f.cap.ring.drain()
        f.cap.configure(PacketFilters(sample=1000, first_packets=1, tcp_flags=parse_tcp_flags("syn")))
        f.run(*[tcp(flags="A")] * 5)
        (r,) = f.records()
        assert r["source.packets"] == 5
        assert len(f.cap.ring.drain()) == 0  # no SYN: no packet record
        c = f.cap.counters()
        assert (c["filtered_port"], c["filtered_net"], c["filtered_tcp_flags"]) == (2, 1, 5)
    finally:
        f.close()


def test_flows_only_writes_nothing_to_the_ring(fl):
    """In flows-only mode every packet is counted into a flow and none is sent as a record."""
    fl.run(*[tcp()] * 10, hook="tc_ingress")
    fl.run(*[reply()] * 3, hook="xdp_ingress")
    assert len(fl.cap.ring.drain()) == 0
    c = fl.cap.counters()
    assert (c["seen"], c["logged"], c["ring_full"]) == (13, 0, 0)
    (r,) = fl.records()
    assert (r["source.packets"], r["destination.packets"]) == (10, 3)


def test_packets_and_flows_together():
    """With both on, every packet gives a record and is counted into its flow."""
    require_bpf()
    f = Flows(packets=True)
    try:
        f.run(tcp(flags="S"), reply(flags="SA"), tcp())
        assert len(f.cap.ring.drain()) == 3
        assert [r["network.packets"] for r in f.records()] == [3]
    finally:
        f.close()


def test_flows_off_leaves_the_map_alone():
    """Without flows the map is one entry, never written; packet records are as before."""
    require_bpf()
    cap = PacketCapture.load(snaplen=0)
    try:
        for _ in range(3):
            cap.obj.program("tc_ingress").test_run(tcp())
        m = cap.obj.map(FLOW_MAP)
        assert m.max_entries == 1 and list(m.keys()) == []
        assert len(cap.ring.drain()) == 3
    finally:
        cap.close()


def test_idle_flows_are_removed():
    """A flow idle past the timeout is reported and removed from the kernel's table; its next packet
    starts a new flow."""
    require_bpf()
    f = Flows(idle_timeout=1e-9)
    try:
        f.run(tcp(), reply())
        assert [r["network.packets"] for r in f.records()] == [2]
        assert list(f.map.keys()) == [] and f.reader.table.expired == 1
        f.run(tcp())
        assert [r["network.packets"] for r in f.records()] == [1]
        assert f.reader.counters()["flow_new"] == 2
    finally:
        f.close()


def test_evicted_flows_are_counted():
    """When more flows arrive than the table holds, the kernel drops the least recently used;
    FlowReader counts the reported flows that vanished, and reports every flow still there."""
    require_bpf()
    f = Flows(max_flows=16)
    try:
        f.run(*sports(tcp(), range(1000, 1008)))
        assert len(f.records()) == 8
        f.run(*sports(tcp(), range(2000, 2300)))
        recs = f.records()
        kept = len(list(f.map.keys()))
        assert len(recs) == kept and kept <= 16 * 2
        assert f.reader.table.evicted >= 8 - kept
        assert f.reader.counters()["flow_new"] == 308
    finally:
        f.close()


def test_batch_lookup_and_lookup_and_delete(fl):
    """Map.lookup_batch returns every entry once, across several batches; lookup_and_delete returns the
    value the entry had and removes it."""
    fl.run(*sports(tcp(), range(3000, 3600)))
    got = list(fl.map.lookup_batch(chunk=64))
    assert len(got) == 600 == len({k for k, _ in got})
    assert {k: v for k, v in got} == dict(fl.map.items())
    key, value = got[0]
    assert fl.map.lookup_and_delete(key) == value
    assert fl.map.lookup(key) is None and fl.map.lookup_and_delete(key) is None
    assert totals(value).packets == [0, 1] or totals(value).packets == [1, 0]
