"""Micro-benchmarks of hdrlog's user-space hot paths, on the real programs where there is one.

    sudo .venv/bin/python bench/micro.py            # all of them
    sudo .venv/bin/python bench/micro.py ring http  # some

ring:    records drained from a ring buffer the packet program filled (BPF_PROG_TEST_RUN),
         for packet records of ~240 bytes and ~1.3 KiB (snaplen 0 and 1024)
packet:  decode + PacketRecord + JSON, per packet
http:    HTTP/1 keep-alive GET/200 exchanges through the sans-IO parser
record:  HttpRecord JSON encoding (with the flattened headers)

Each number is the best of three runs; the machine is shared, so compare runs made side by side.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the harness under tests/

N_RING = 200_000
N_HTTP = 50_000


def best(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def bench_ring() -> None:
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.packet import raw

    from tests.packets import PacketHarness

    pkt = raw(Ether() / IP() / TCP(flags="PA") / (b"x" * 1100))
    for snaplen in (0, 1024):
        h = PacketHarness(snaplen=snaplen, ring_size=1 << 29)
        try:
            prog = h.cap.obj.program("tc_ingress")

            times = []
            size = 0
            for _ in range(3):
                prog.test_run(pkt, repeat=N_RING)
                t = time.perf_counter()
                batch = h.cap.ring.drain()
                times.append(time.perf_counter() - t)
                size = len(batch.data) // len(batch)
            print(f"ring     {size:5d}-byte records: {N_RING / min(times) / 1e6:6.2f} M records/s drained")
        finally:
            h.close()


def bench_packet() -> None:
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.packet import raw

    from hdrlog.decode import decode_packet
    from hdrlog.records import json_form
    from tests.packets import PacketHarness

    h = PacketHarness(snaplen=0, ring_size=1 << 26)
    try:
        pkt = raw(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") /
                  TCP(sport=1234, dport=80, flags="PA", options=[("NOP", None), ("NOP", None), ("Timestamp", (1, 2))]))
        h.cap.obj.program("tc_ingress").test_run(pkt, repeat=N_RING // 4)
        batch = h.cap.ring.drain()
        enc = msgspec.json.Encoder()
        buf = bytearray()

        def run():
            buf.clear()
            for off, n in batch.records:
                enc.encode_into(json_form(h.recorder.record(decode_packet(batch.data, off, n))), buf, -1)

        print(f"packet   decode+record+JSON: {len(batch) / best(run) / 1e3:6.1f} k packets/s")
    finally:
        h.close()


REQ = b"GET /index.html HTTP/1.1\r\nHost: example.com\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n"
RESP = (b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/html\r\n"
        b"Content-Length: 12\r\nConnection: keep-alive\r\n\r\nhello world\n")


def bench_http() -> None:
    from hdrlog.protocols.http1 import CLIENT, SERVER, Http1Parser

    def run():
        p = Http1Parser()
        for i in range(N_HTTP):
            p.feed(CLIENT, REQ, i)
            p.feed(SERVER, RESP, i)

    print(f"http     keep-alive GET/200: {N_HTTP / best(run) / 1e3:6.1f} k exchanges/s")


def bench_record() -> None:
    from hdrlog.records import HttpRecord, json_form

    rec = HttpRecord(ts="2026-01-01T00:00:00.000000000Z", type="http", role="client", method="GET", url_path="/index.html",
                     server_address="example.com", server_port=80, client_address="10.0.0.1", client_port=40000,
                     protocol_version="1.1", status_code=200, user_agent="curl/8.5.0",
                     request_headers={"host": ["example.com"], "user-agent": ["curl/8.5.0"], "accept": ["*/*"]},
                     response_headers={"server": ["nginx"], "content-type": ["text/html"], "content-length": ["12"]},
                     request_body_size=0, response_body_size=12, duration=123456, pid=1, executable_name="curl")
    enc = msgspec.json.Encoder()
    buf = bytearray()

    def run():
        buf.clear()
        for _ in range(N_HTTP):
            enc.encode_into(json_form(rec), buf, -1)

    print(f"record   HttpRecord JSON:    {N_HTTP / best(run) / 1e3:6.1f} k records/s")


BENCHES = {"ring": bench_ring, "packet": bench_packet, "http": bench_http, "record": bench_record}

if __name__ == "__main__":
    names = sys.argv[1:] or list(BENCHES)
    for name in names:
        BENCHES[name]()
