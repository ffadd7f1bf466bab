"""The packet program on hand-built packets (BPF_PROG_TEST_RUN): every header element it
parses, at TC and at XDP, and malformed packets that must be counted, never logged wrong."""

from __future__ import annotations

import struct

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_RR
from scapy.layers.inet6 import (
    ICMPv6EchoReply,
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
)
from scapy.layers.l2 import Dot1AD, Dot1Q, Ether
from scapy.packet import Raw, raw

from tests.conftest import require_bpf
from tests.packets import PacketHarness

MACS = dict(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
HOOKS = ["tc", "xdp"]


@pytest.fixture(scope="module")
def h():
    require_bpf()
    harness = PacketHarness(snaplen=64)
    yield harness
    harness.close()


@pytest.fixture(autouse=True)
def _reset(request):
    if "h" in request.fixturenames:
        request.getfixturevalue("h").configure()


def eth(**kw):
    return Ether(**{**MACS, **kw})


@pytest.mark.parametrize("hook", HOOKS)
def test_tcp_syn_with_every_option(h, hook):
    """A SYN's ports, seq/ack, flags, window, urgent pointer and MSS/WS/SACK-perm/TS options are logged as sent."""
    pkt = eth() / IP(src="192.0.2.1", dst="198.51.100.7", ttl=57, tos=0xB9, id=4321, flags="DF") / TCP(
        sport=40000, dport=443, seq=0xDEADBEEF, ack=0x01020304, flags="S", window=64240, urgptr=7,
        options=[("MSS", 1460), ("SAckOK", b""), ("Timestamp", (123456, 654321)), ("NOP", None), ("WScale", 7)],
    )
    r = h.run(raw(pkt), hook)
    assert r["hdrlog.hook"] == hook
    assert r["network.direction"] == "ingress"
    assert r["frame.len"] == len(pkt)
    assert (r["eth.src"], r["eth.dst"], r["eth.type"]) == (MACS["src"], MACS["dst"], 0x0800)
    assert (r["ip.src"], r["ip.dst"], r["ip.ttl"], r["ip.id"]) == ("192.0.2.1", "198.51.100.7", 57, 4321)
    assert (r["ip.dsfield"], r["ip.dsfield.dscp"], r["ip.dsfield.ecn"]) == (0xB9, 46, 1)
    assert (r["ip.flags"], r["ip.flags.df"], r["ip.flags.mf"], r["ip.frag_offset"]) == (2, True, False, 0)
    assert r["ip.len"] == len(pkt) - 14 and r["ip.hdr_len"] == 20 and r["ip.proto"] == 6
    assert r["ip.checksum"] == IP(raw(pkt[IP])).chksum
    assert (r["tcp.srcport"], r["tcp.dstport"]) == (40000, 443)
    assert (r["tcp.seq_raw"], r["tcp.ack_raw"]) == (0xDEADBEEF, 0x01020304)
    assert r["tcp.flags"] == 0x002 and r["tcp.flags.syn"] is True and r["tcp.flags.ack"] is False
    assert (r["tcp.window_size_value"], r["tcp.urgent_pointer"]) == (64240, 7)
    assert r["tcp.hdr_len"] == 40
    assert r["tcp.options.mss_val"] == 1460
    assert r["tcp.options.sack_perm"] is True
    assert (r["tcp.options.timestamp.tsval"], r["tcp.options.timestamp.tsecr"]) == (123456, 654321)
    assert (r["tcp.options.wscale.shift"], r["tcp.options.wscale.multiplier"]) == (7, 128)
    assert r["tcp.len"] == 0 and "tcp.payload" not in r
    assert r["network.transport"] == "tcp"
    assert r["network.community_id"].startswith("1:")


def test_all_nine_tcp_flags_and_sack_blocks(h):
    """Every TCP flag bit including AE, and up to four SACK blocks, come out as on the wire."""
    tcp = TCP(sport=1, dport=2, flags=0x1FF, options=[("NOP", None), ("NOP", None),
              ("SAck", (100, 200, 300, 400, 500, 600, 700, 800))])
    r = h.run(raw(eth() / IP() / tcp))
    assert r["tcp.flags"] == 0x1FF
    for name in ("ae", "cwr", "ece", "urg", "ack", "push", "reset", "syn", "fin"):
        assert r[f"tcp.flags.{name}"] is True, name
    assert r["tcp.options.sack_le"] == [100, 300, 500, 700]
    assert r["tcp.options.sack_re"] == [200, 400, 600, 800]


def test_tcp_payload_prefix_and_length(h):
    """The L4 payload length is the whole payload; only the first snaplen bytes are carried."""
    body = b"GET / HTTP/1.1\r\nHost: example\r\n\r\n" + b"x" * 200
    r = h.run(raw(eth() / IP() / TCP(flags="PA") / body))
    assert r["tcp.len"] == len(body)
    assert r["tcp.payload"] == body[:64].hex()


def test_ethernet_padding_is_not_payload(h):
    """A short frame padded to 60 bytes: the padding is neither counted nor captured as payload."""
    pkt = eth() / IP() / UDP(sport=5, dport=6) / b"ab"
    r = h.run(raw(pkt) + b"\0" * (60 - len(pkt)))
    assert r["frame.len"] == 60
    assert r["udp.length"] == 10 and r["udp.payload"] == b"ab".hex()


def test_snaplen_zero_carries_no_payload(h):
    """With snaplen 0 no payload bytes are captured, lengths are still there."""
    h0 = PacketHarness(snaplen=0, ring_size=1 << 16)
    try:
        r = h0.run(raw(eth() / IP() / TCP() / (b"z" * 50)))
        assert r["tcp.len"] == 50 and "tcp.payload" not in r
    finally:
        h0.close()


@pytest.mark.parametrize("hook", HOOKS)
def test_udp(h, hook):
    """UDP ports, length and checksum are logged."""
    pkt = eth() / IP(src="10.1.1.1", dst="10.1.1.2") / UDP(sport=5353, dport=53) / b"hello"
    r = h.run(raw(pkt), hook)
    assert (r["udp.srcport"], r["udp.dstport"], r["udp.length"]) == (5353, 53, 13)
    assert r["udp.checksum"] == UDP(raw(pkt[UDP])).chksum
    assert r["udp.payload"] == b"hello".hex()
    assert r["network.transport"] == "udp"


def test_icmp_echo(h):
    """ICMP echo type, code, checksum, identifier and sequence number are logged."""
    r = h.run(raw(eth() / IP() / ICMP(type=8, id=0x1234, seq=9) / b"ping"))
    assert (r["icmp.type"], r["icmp.code"], r["icmp.ident"], r["icmp.seq"]) == (8, 0, 0x1234, 9)
    assert r["data.data"] == b"ping".hex()
    assert r["network.transport"] == "icmp"


def test_icmp_error_has_no_echo_fields(h):
    """A destination-unreachable message has no identifier or sequence number."""
    r = h.run(raw(eth() / IP() / ICMP(type=3, code=3)))
    assert (r["icmp.type"], r["icmp.code"]) == (3, 3)
    assert "icmp.ident" not in r and "icmp.seq" not in r


def test_icmp_echo_request_and_reply_share_a_community_id(h):
    """Echo request and reply are one flow: the Community ID maps ICMP types as the spec says."""
    a = h.run(raw(eth() / IP(src="10.0.0.1", dst="10.0.0.2") / ICMP(type=8, id=1, seq=1)))
    b = h.run(raw(eth() / IP(src="10.0.0.2", dst="10.0.0.1") / ICMP(type=0, id=1, seq=1)))
    assert a["network.community_id"] == b["network.community_id"]


def test_tcp_community_id_matches_the_spec(h):
    """The Community ID of a known tuple equals the spec's published value."""
    # community-id-spec baseline: tcp 128.232.110.120:34855 -> 66.35.250.204:80, seed 0
    r = h.run(raw(eth() / IP(src="128.232.110.120", dst="66.35.250.204") / TCP(sport=34855, dport=80)))
    assert r["network.community_id"] == "1:LQU9qZlK+B5F3KDmev6m5PMibrg="


@pytest.mark.parametrize("hook", HOOKS)
def test_ipv6_tcp(h, hook):
    """IPv6 traffic class, flow label, payload length, next header, hop limit and addresses are logged."""
    pkt = eth() / IPv6(src="2001:db8::1", dst="2001:db8::2", tc=0xB8, fl=0xABCDE, hlim=33) / TCP(sport=1000, dport=80, flags="S")
    r = h.run(raw(pkt), hook)
    assert r["eth.type"] == 0x86DD
    assert (r["ipv6.src"], r["ipv6.dst"], r["ipv6.hlim"]) == ("2001:db8::1", "2001:db8::2", 33)
    assert (r["ipv6.tclass"], r["ipv6.tclass.dscp"], r["ipv6.flow"]) == (0xB8, 46, 0xABCDE)
    assert (r["ipv6.plen"], r["ipv6.nxt"]) == (20, 6)
    assert r["tcp.dstport"] == 80 and "ip.src" not in r


def test_ipv6_extension_headers_are_skipped_to_l4(h):
    """Hop-by-hop, routing and destination options are walked over to reach UDP."""
    pkt = eth() / IPv6(src="fd00::1", dst="fd00::2") / IPv6ExtHdrHopByHop() / IPv6ExtHdrRouting(addresses=["fd00::9"]) / IPv6ExtHdrDestOpt() / UDP(sport=7, dport=8) / b"q"
    r = h.run(raw(pkt))
    assert r["ipv6.nxt"] == 0
    assert r["ipv6.ext_headers"] == [0, 43, 60]
    assert (r["udp.srcport"], r["udp.dstport"], r["udp.length"]) == (7, 8, 9)


def test_ipv6_first_fragment_has_l4_and_later_ones_do_not(h):
    """The first IPv6 fragment carries the L4 header; a later one is logged without ports."""
    first = eth() / IPv6() / IPv6ExtHdrFragment(offset=0, m=1, id=0xCAFE) / UDP(sport=1, dport=2) / (b"a" * 16)
    r = h.run(raw(first))
    assert (r["ipv6.fraghdr.offset"], r["ipv6.fraghdr.more"], r["ipv6.fraghdr.ident"]) == (0, True, 0xCAFE)
    assert r["udp.srcport"] == 1
    later = eth() / IPv6() / IPv6ExtHdrFragment(offset=3, m=0, id=0xCAFE, nh=17) / (b"b" * 16)
    r = h.run(raw(later))
    assert (r["ipv6.fraghdr.offset"], r["ipv6.fraghdr.more"]) == (3, False)
    assert "udp.srcport" not in r and "network.community_id" not in r


def test_ipv4_fragments(h):
    """An IPv4 first fragment has ports; a later fragment is logged with its offset and without ports."""
    r = h.run(raw(eth() / IP(flags="MF", id=77) / UDP(sport=1, dport=2) / (b"a" * 32)))
    assert r["ip.flags.mf"] is True and r["ip.frag_offset"] == 0 and r["udp.srcport"] == 1
    r = h.run(raw(eth() / IP(frag=5, id=77, proto=17) / (b"b" * 32)))
    assert r["ip.frag_offset"] == 5 and r["ip.flags.mf"] is False
    assert "udp.srcport" not in r and "network.community_id" not in r
    assert r["network.transport"] == "udp"


def test_ipv4_options(h):
    """IPv4 options are logged as raw bytes and option types; the header length counts them."""
    r = h.run(raw(eth() / IP(options=[IPOption_RR(routers=["1.2.3.4"])]) / UDP(sport=3, dport=4)))
    assert r["ip.hdr_len"] == 28
    assert r["ip.opt.type"] == [7, 0]
    assert r["ip.options"].startswith("0707")
    assert r["udp.srcport"] == 3


def test_8021q_vlan(h):
    """A single 802.1Q tag: id, priority, DEI and the inner EtherType."""
    r = h.run(raw(eth() / Dot1Q(vlan=100, prio=5, dei=1) / IP() / UDP(sport=1, dport=2)))
    assert r["eth.type"] == 0x8100
    assert (r["vlan.id"], r["vlan.priority"], r["vlan.dei"], r["vlan.etype"]) == (100, 5, True, 0x0800)
    assert "ieee8021ad.id" not in r
    assert r["udp.dstport"] == 2


@pytest.mark.parametrize("hook", HOOKS)
def test_8021ad_double_tag(h, hook):
    """802.1ad service tag outside an 802.1Q tag: both are logged, then IPv6 inside."""
    pkt = eth() / Dot1AD(vlan=300, prio=2) / Dot1Q(vlan=42, prio=1) / IPv6() / ICMPv6EchoRequest(id=5, seq=6)
    r = h.run(raw(pkt), hook)
    assert r["eth.type"] == 0x88A8
    assert (r["ieee8021ad.id"], r["ieee8021ad.priority"], r["ieee8021ad.dei"]) == (300, 2, False)
    assert (r["vlan.id"], r["vlan.priority"], r["vlan.etype"]) == (42, 1, 0x86DD)
    assert (r["icmpv6.type"], r["icmpv6.echo.identifier"], r["icmpv6.echo.sequence_number"]) == (128, 5, 6)


def test_icmpv6_echo_reply(h):
    """ICMPv6 echo replies carry identifier and sequence number."""
    r = h.run(raw(eth() / IPv6() / ICMPv6EchoReply(id=7, seq=8)))
    assert (r["icmpv6.type"], r["icmpv6.echo.identifier"], r["icmpv6.echo.sequence_number"]) == (129, 7, 8)
    assert r["network.transport"] == "ipv6-icmp"


def test_non_ip_frame(h):
    """An ARP frame is logged with its Ethernet header only."""
    r = h.run(raw(eth(type=0x0806) / (b"\0" * 28)))
    assert r["eth.type"] == 0x0806
    assert not any(k.startswith(("ip.", "ipv6.", "tcp.", "udp.")) for k in r)


# Malformed packets: logged with the layers that were valid, marked, and counted.

def _ip_bytes(pkt) -> bytearray:
    return bytearray(raw(pkt))


def _malformed_cases():
    base = eth() / IP(src="10.9.9.9", dst="10.9.9.8") / TCP(sport=1, dport=2)
    ihl_small = _ip_bytes(base)
    ihl_small[14] = 0x44  # IHL 4 (16 bytes) < 5
    ihl_past = _ip_bytes(eth() / IP() / (b"\0" * 10))
    ihl_past[14] = 0x4F  # IHL 15 = 60 bytes, the packet has 30
    tot_len_past = _ip_bytes(eth() / IP() / UDP())
    struct.pack_into("!H", tot_len_past, 16, 1500)
    doff_small = _ip_bytes(base)
    doff_small[14 + 20 + 12] = 0x30  # data offset 3
    doff_past = _ip_bytes(base)
    doff_past[14 + 20 + 12] = 0xF0  # data offset 15 = 60 bytes, only 20 there
    v6_ext_past = raw(eth() / IPv6(nh=0, plen=8) / (b"\x11\x05" + b"\0" * 6))  # hop-by-hop claims 48 bytes
    v6_chain = eth() / IPv6()
    for _ in range(9):
        v6_chain = v6_chain / IPv6ExtHdrDestOpt()
    vlan_cut = raw(eth(type=0x8100)) + b"\x00\x64"
    version_bad = _ip_bytes(base)
    version_bad[14] = 0x65  # version 6 in an IPv4 ethertype
    return [
        ("short-ethernet", b"\x02\0\0\0\0\x01\x02", "eth.short", None),
        ("vlan-cut", vlan_cut, "vlan.short", None),
        ("ihl-below-5", bytes(ihl_small), "ip.hdr_len", "eth"),
        ("ihl-past-end", bytes(ihl_past), "ip.hdr_len", "eth"),
        ("ip-version", bytes(version_bad), "ip.version", "eth"),
        ("total-length-past-end", bytes(tot_len_past), "ip.len", "ip"),
        ("tcp-doff-below-5", bytes(doff_small), "tcp.hdr_len", "ip"),
        ("tcp-doff-past-end", bytes(doff_past), "tcp.hdr_len", "ip"),
        ("udp-cut", raw(eth() / IP(proto=17, len=24) / b"\0\1\0\2"), "l4.short", "ip"),
        ("ipv6-ext-past-end", v6_ext_past, "ipv6.ext_header", "ipv6"),
        ("ipv6-ext-chain-too-long", raw(v6_chain / UDP()), "ipv6.ext_depth", "ipv6"),
    ]


@pytest.mark.parametrize("name,data,reason,valid", _malformed_cases(), ids=[c[0] for c in _malformed_cases()])
@pytest.mark.parametrize("hook", HOOKS)
def test_malformed_packets_are_marked_and_counted(h, hook, name, data, reason, valid):
    """A malformed packet yields a record that names what was wrong, with only the valid outer layers."""
    before = h.counters()["malformed"]
    try:
        r = h.run(data, hook)
    except OSError as e:
        # BPF_PROG_TEST_RUN refuses input shorter than an Ethernet header (KERNEL.md)
        assert len(data) < 14, e
        return
    assert r["packet.malformed"] == reason
    assert h.counters()["malformed"] == before + 1
    if valid is None:
        assert not any(k.startswith(("ip.", "ipv6.", "tcp.", "udp.")) for k in r)
    if valid == "eth":
        assert "eth.src" in r and not any(k.startswith(("ip.", "tcp.")) for k in r)
    if valid == "ip":
        assert r["ip.src"] and not any(k.startswith(("tcp.", "udp.")) for k in r)
        assert "network.community_id" not in r
    if valid == "ipv6":
        assert r["ipv6.src"] and not any(k.startswith(("tcp.", "udp.")) for k in r)


def test_tcp_option_running_past_the_header_is_flagged(h):
    """A TCP option whose length runs past the header stops option parsing and is flagged."""
    pkt = bytearray(raw(eth() / IP() / TCP(options=[("NOP", None), ("NOP", None), ("NOP", None), ("NOP", None)])))
    pkt[14 + 20 + 20 : 14 + 20 + 24] = b"\x02\x08\x05\xb4"  # MSS claiming 8 bytes in a 4-byte option area
    r = h.run(bytes(pkt))
    assert r["tcp.options.malformed"] is True
    assert "tcp.options.mss_val" not in r
    assert r["tcp.hdr_len"] == 24


def test_headers_past_the_parse_window_are_marked_truncated(h):
    """An extension-header chain longer than the 256-byte window is marked truncated, not malformed."""
    # destination options, next header UDP, (32 + 1) * 8 = 264 bytes: two PadN options fill it
    dest = bytes([17, 32, 1, 255]) + b"\0" * 255 + bytes([1, 3]) + b"\0" * 3
    udp = raw(UDP(sport=1, dport=2))
    before = h.counters()["truncated"]
    r = h.run(raw(eth() / IPv6(nh=60, plen=len(dest) + len(udp)) / Raw(dest + udp)))
    assert r["packet.truncated"] is True
    assert "packet.malformed" not in r
    assert "udp.srcport" not in r
    assert h.counters()["truncated"] == before + 1


def test_egress_program_marks_direction(h):
    """The egress program logs direction egress."""
    r = h.run(raw(eth() / IP() / UDP()), "tc_egress")
    assert r["network.direction"] == "egress"
