"""Filters, sampling and first-N in the kernel: each keeps exactly what it should, and the
counters add up (seen = logged + every drop), run on hand-built packets with BPF_PROG_TEST_RUN."""

from __future__ import annotations

import ipaddress

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import raw

from hdrlog.capture.packets import PacketFilters
from hdrlog.config import parse_tcp_flags
from tests.conftest import require_bpf
from tests.packets import PacketHarness

DROPS = ("filtered_proto", "filtered_port", "filtered_net", "filtered_tcp_flags", "first_packets", "sampled", "ring_full")


@pytest.fixture
def h():
    require_bpf()
    harness = PacketHarness(snaplen=0)
    yield harness
    harness.close()


def tcp(src="10.0.0.1", dst="10.0.0.2", sport=1000, dport=80, flags="A"):
    return raw(Ether() / IP(src=src, dst=dst) / TCP(sport=sport, dport=dport, flags=flags))


def udp(src="10.0.0.1", dst="10.0.0.2", sport=1000, dport=53):
    return raw(Ether() / IP(src=src, dst=dst) / UDP(sport=sport, dport=dport))


def kept(h, packets) -> list[bool]:
    return [bool(h.events(p)) for p in packets]


def assert_counters_add_up(h, seen: int) -> dict:
    c = h.counters()
    assert c["seen"] == seen
    assert c["seen"] == c["logged"] + sum(c[d] for d in DROPS), c
    return c


def test_no_filter_keeps_everything(h):
    """Without filters every packet is logged."""
    assert kept(h, [tcp(), udp(), raw(Ether() / IP() / ICMP())]) == [True, True, True]
    assert assert_counters_add_up(h, 3)["logged"] == 3


def test_protocol_filter(h):
    """--proto udp,icmp keeps UDP and ICMP, drops TCP and non-IP frames."""
    h.configure(PacketFilters(protocols=[17, 1]))
    pkts = [tcp(), udp(), raw(Ether() / IP() / ICMP()), raw(Ether(type=0x0806) / (b"\0" * 28))]
    assert kept(h, pkts) == [False, True, True, False]
    assert assert_counters_add_up(h, 4)["filtered_proto"] == 2


def test_port_filter_matches_either_port(h):
    """--port 53,8080 keeps packets with that source or destination port only."""
    h.configure(PacketFilters(ports=[53, 8080]))
    pkts = [udp(dport=53), udp(sport=53, dport=999), tcp(dport=8080), tcp(dport=80), raw(Ether() / IP() / ICMP())]
    assert kept(h, pkts) == [True, True, True, False, False]
    assert assert_counters_add_up(h, 5)["filtered_port"] == 2


def test_net_include_v4_and_v6(h):
    """--net keeps packets with either address inside one of the networks, IPv4 and IPv6 alike."""
    nets = [ipaddress.ip_network("10.1.0.0/16"), ipaddress.ip_network("2001:db8:1::/48")]
    h.configure(PacketFilters(nets=nets))
    v6 = lambda s, d: raw(Ether() / IPv6(src=s, dst=d) / UDP())  # noqa: E731
    pkts = [
        tcp(src="10.1.2.3", dst="192.0.2.1"),
        tcp(src="192.0.2.1", dst="10.1.255.255"),
        tcp(src="10.2.0.1", dst="192.0.2.1"),
        v6("2001:db8:1:5::1", "2001:db8:9::1"),
        v6("2001:db8:2::1", "2001:db8:9::1"),
        raw(Ether(type=0x0806) / (b"\0" * 28)),
    ]
    assert kept(h, pkts) == [True, True, False, True, False, False]
    assert assert_counters_add_up(h, 6)["filtered_net"] == 3


def test_net_exclude_longest_prefix(h):
    """--not-net drops packets with an address inside it and keeps the rest, non-IP included."""
    h.configure(PacketFilters(not_nets=[ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1/128")]))
    pkts = [
        tcp(src="10.200.1.1", dst="192.0.2.1"),
        tcp(src="11.0.0.1", dst="192.0.2.1"),
        raw(Ether() / IPv6(src="::1", dst="::2") / UDP()),
        raw(Ether() / IPv6(src="::3", dst="::2") / UDP()),
        raw(Ether(type=0x0806) / (b"\0" * 28)),
    ]
    assert kept(h, pkts) == [False, True, False, True, True]
    assert assert_counters_add_up(h, 5)["filtered_net"] == 2


def test_include_and_exclude_together(h):
    """An address in both an included and an excluded network is dropped."""
    h.configure(PacketFilters(nets=[ipaddress.ip_network("10.0.0.0/8")], not_nets=[ipaddress.ip_network("10.5.0.0/16")]))
    assert kept(h, [tcp(src="10.4.0.1", dst="1.1.1.1"), tcp(src="10.5.0.1", dst="1.1.1.1")]) == [True, False]


def test_tcp_flags_any(h):
    """--tcp-flags syn,rst keeps TCP packets with SYN or RST set, drops other TCP and non-TCP."""
    h.configure(PacketFilters(tcp_flags=parse_tcp_flags("syn,rst")))
    pkts = [tcp(flags="S"), tcp(flags="SA"), tcp(flags="R"), tcp(flags="A"), tcp(flags="FA"), udp()]
    assert kept(h, pkts) == [True, True, True, False, False, False]
    assert assert_counters_add_up(h, 6)["filtered_tcp_flags"] == 3


def test_tcp_flags_exact(h):
    """--tcp-flags syn/syn,ack keeps only a SYN without ACK (the first packet of a handshake)."""
    h.configure(PacketFilters(tcp_flags=parse_tcp_flags("syn/syn,ack")))
    assert kept(h, [tcp(flags="S"), tcp(flags="SA"), tcp(flags="A"), tcp(flags="SE")]) == [True, False, False, True]


def test_sampling_keeps_exactly_one_in_n_and_every_syn_fin_rst(h):
    """--sample 4 over 20 ACKs keeps 5 of them, and keeps every SYN, FIN and RST besides."""
    h.configure(PacketFilters(sample=4))
    acks = kept(h, [tcp(flags="A", sport=2000 + i) for i in range(20)])
    assert sum(acks) == 5
    assert acks == [i % 4 == 0 for i in range(20)]
    control = kept(h, [tcp(flags=f) for f in ("S", "SA", "FA", "R", "RA")])
    assert control == [True] * 5
    c = assert_counters_add_up(h, 25)
    assert c["sampled"] == 15 and c["logged"] == 10


def test_first_packets_per_flow_both_directions(h):
    """--first-packets 3 logs the first 3 packets of each flow, counting both directions together."""
    h.configure(PacketFilters(first_packets=3))
    fwd = tcp(src="10.0.0.1", dst="10.0.0.2", sport=5555, dport=80)
    rev = tcp(src="10.0.0.2", dst="10.0.0.1", sport=80, dport=5555)
    other = tcp(src="10.0.0.1", dst="10.0.0.2", sport=5556, dport=80)
    assert kept(h, [fwd, rev, fwd, rev, fwd]) == [True, True, True, False, False]
    assert kept(h, [other, other, other, other]) == [True, True, True, False]
    c = assert_counters_add_up(h, 9)
    assert c["first_packets"] == 3


def test_filters_combine_in_order(h):
    """Port filter first, then sampling: sampling counts only what the port filter kept."""
    h.configure(PacketFilters(ports=[80], sample=2))
    pkts = [tcp(dport=80), tcp(dport=81), tcp(dport=80), tcp(dport=81), tcp(dport=80)]
    assert kept(h, pkts) == [True, False, False, False, True]
    c = assert_counters_add_up(h, 5)
    assert (c["filtered_port"], c["sampled"]) == (2, 1)


def test_reconfigure_replaces_filters(h):
    """Writing new filters replaces the old ones entirely (ports and networks are cleared)."""
    h.configure(PacketFilters(ports=[53], nets=[ipaddress.ip_network("10.9.0.0/16")]))
    assert kept(h, [udp(dport=53)]) == [False]
    h.configure(PacketFilters(ports=[80]))
    assert kept(h, [udp(dport=53), tcp(dport=80)]) == [False, True]


def test_full_ring_is_counted_not_lost_silently(h):
    """When nobody drains the ring, the packets that do not fit are counted as ring_full."""
    small = PacketHarness(snaplen=1024, ring_size=1 << 16)
    try:
        prog = small.cap.obj.program("tc_ingress")
        sent = 100  # 100 records of ~1.3 KiB do not fit in 64 KiB
        for i in range(sent):
            prog.test_run(tcp(sport=3000 + i))
        c = small.counters()
        assert c["ring_full"] > 0
        assert c["seen"] == sent == c["logged"] + c["ring_full"]
        assert len(small.cap.ring.drain()) == c["logged"]
    finally:
        small.close()
