"""PacketEncoder.lines(), the path every packet batch takes: a flow's line template, kept from its
first packet, gives the same lines as encoding each packet whole, for every kind of packet."""

from __future__ import annotations

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_RR
from scapy.layers.inet6 import IPv6, IPv6ExtHdrHopByHop
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw, raw

from hdrlog import decode as D
from hdrlog import packets as P
from hdrlog.bpf import Batch
from hdrlog.capture.packets import PacketCapture
from hdrlog.clock import Clock
from hdrlog.packets import PacketEncoder
from tests.conftest import require_bpf
from tests.packets import record_object

MACS = dict(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
TS = [("NOP", None), ("NOP", None), ("Timestamp", (1000, 2000))]
V4 = dict(src="192.0.2.1", dst="198.51.100.7")
V6 = dict(src="2001:db8::1", dst="2001:db8::2")
CLOCK = Clock()  # one wall-clock offset for every encoder here, so their timestamps agree

# (what it is, the packet, whether its flow keeps a template)
PACKETS = [
    ("IPv4 TCP, timestamps", Ether(**MACS) / IP(**V4, flags="DF") / TCP(sport=40000, dport=80, flags="A", options=TS), True),
    ("IPv4 TCP, no options", Ether(**MACS) / IP(**V4) / TCP(sport=40001, dport=80, flags="PA", window=1234), True),
    ("IPv6 TCP, timestamps", Ether(**MACS) / IPv6(**V6, fl=77) / TCP(sport=40002, dport=443, flags="A", options=TS), True),
    ("IPv6 TCP, no options", Ether(**MACS) / IPv6(**V6, tc=0xB8) / TCP(sport=40003, dport=443, flags="FA"), True),
    ("VLAN-tagged IPv4 TCP", Ether(**MACS) / Dot1Q(vlan=42, prio=5) / IP(**V4, ttl=3) / TCP(sport=40004, dport=22), True),
    ("TCP with payload", Ether(**MACS) / IP(**V4) / TCP(sport=40005, dport=80, flags="PA") / Raw(b"GET / HTTP/1.1\r\n"), True),
    ("SYN with MSS and window scale", Ether(**MACS) / IP(**V4) / TCP(
        sport=40006, dport=80, flags="S", options=[("MSS", 1460), ("WScale", 7)] + TS), False),
    ("IPv4 options", Ether(**MACS) / IP(**V4, options=[IPOption_RR()]) / TCP(sport=40007, dport=80), False),
    ("IPv6 extension header", Ether(**MACS) / IPv6(**V6) / IPv6ExtHdrHopByHop() / TCP(sport=40008, dport=80), False),
    ("first fragment (its TCP header whole)", Ether(**MACS) / IP(**V4, flags="MF", id=9) / TCP(sport=40009, dport=80),
     True),
    ("later fragment", Ether(**MACS) / IP(**V4, frag=100, id=9, proto=6) / Raw(b"\x00" * 24), False),
    ("UDP", Ether(**MACS) / IP(**V4) / UDP(sport=5353, dport=53) / Raw(b"\x00" * 12), False),
    ("ICMP echo", Ether(**MACS) / IP(**V4) / ICMP(id=7, seq=9), False),
    ("truncated TCP", raw(Ether(**MACS) / IP(**V4) / TCP(sport=40010, dport=80))[:40], False),
]


@pytest.fixture(params=[0, 64], ids=["snaplen0", "snaplen64"])
def cap(request):
    require_bpf()
    c = PacketCapture.load(snaplen=request.param, ring_size=1 << 20)
    yield c
    c.close()


def _batch(cap, packets, times: int = 3):
    prog = cap.obj.program("tc_ingress")
    for _ in range(times):
        for pkt in packets:
            assert prog.test_run(raw(pkt)).retval == -1
    return cap.ring.drain()


def _whole(batch) -> list[bytes]:
    encoder = PacketEncoder(CLOCK)
    return [encoder.encode(*D.packet_values(batch.data, off, n)) for off, n in batch.records]


def test_templates_give_the_lines_of_whole_encoding(cap):
    """Each packet kind, three times in one batch: the batch path's lines (first sight, then from
    the template) equal encoding every packet whole, and are valid packet records."""
    batch = _batch(cap, [p for _, p, _ in PACKETS])
    assert len(batch) == 3 * len(PACKETS)
    want = _whole(batch)
    encoder = PacketEncoder(CLOCK)
    assert encoder.lines(batch) == want
    assert encoder.lines(batch) == want  # every flow's template known now
    for line, (off, n) in zip(want, batch.records):
        # the timestamp is the event's, in wall-clock time, to the nanosecond
        assert record_object(line)["ts"] == CLOCK.rfc3339(D.decode_packet(batch.data, off, n).ts_ns)
    # the usual packets' flows keep a template (a packet whose payload was captured still comes whole)
    assert sum(1 for t in encoder._templates.values() if t) == sum(1 for _, _, usual in PACKETS if usual)


def test_template_text_with_a_percent_sign(cap, monkeypatch):
    """Constant text with a % in it (an interface name may hold one) stays literal in a template."""
    monkeypatch.setattr(P, "ifname", lambda index: "we%dird%s")
    batch = _batch(cap, [PACKETS[0][1]], times=2)
    want = _whole(batch)
    assert b'"frame.interface_name":"we%dird%s"' in want[1]
    assert PacketEncoder(CLOCK).lines(batch) == want


def test_undecodable_event_is_counted(cap):
    """An event of another type, or one claiming payload that is not there, is counted and skipped;
    the packets around it still come out."""
    good = _batch(cap, [PACKETS[0][1]], times=1)
    rec = good.data[8 : 8 + D.PACKET_SIZE]
    foreign = bytes([7]) + rec[1:]
    stride = D.PACKET_STRIDE
    data = b"".join(good.data[:8] + r + b"\0" * (stride - 8 - D.PACKET_SIZE) for r in (rec, foreign, rec))
    batch = Batch(data, [8, 8 + stride, 8 + 2 * stride], [D.PACKET_SIZE] * 3, stride)
    encoder = PacketEncoder(CLOCK)
    lines = encoder.lines(batch)
    assert len(lines) == 2 and encoder.decode_errors == 1
    # the same records as a batch read one by one (as when their sizes differ)
    assert encoder.lines(Batch(data, batch.offsets, batch.sizes)) == lines
    assert encoder.decode_errors == 2
