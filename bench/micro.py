"""Micro-benchmarks of hdrlog's user-space hot paths, on the real programs where there is one.

    sudo .venv/bin/python bench/micro.py            # all of them
    sudo .venv/bin/python bench/micro.py ring http  # some

ring:    records drained from a ring buffer (RingBuffer.drain() until empty), 64-byte and 1 KiB
         records put there by tests/bpf/progs/ring_echo.bpf.c under BPF_PROG_TEST_RUN
packet:  packet events drained from the ring and written as JSON lines (PacketPipeline)
http:    HTTP/1 keep-alive GET/200 exchanges through the sans-IO parser
record:  HttpRecord JSON encoding (with the flattened headers)
l7:      ring batches of a keep-alive connection's socket events to NDJSON: decode, streams, parser,
         records, processors, JSON (SocketPipeline.drain, as the agent runs it)
l7-unique: the same with every request head different (none is a repeat the parser or the
         record encoder remembers: the cost of new heads)

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
    """tests/bpf/progs/ring_echo.bpf.c turns each BPF_PROG_TEST_RUN repetition into one ring
    record of the test packet's size: N_RING records of 64 bytes and of 1 KiB, then the drain
    (the whole reader: RingBuffer.drain() until the ring is empty) is timed."""
    import subprocess

    from hdrlog.bpf import ObjectSpec, RingBuffer

    root = Path(__file__).resolve().parents[1]
    subprocess.run(["make", "-s", "-C", str(root / "bpf"), "test-objects"], check=True, timeout=300)
    for size in (64, 1024):
        ring_size = 1 << max(16, (N_RING * (size + 8)).bit_length())  # a power of two holding them all
        with ObjectSpec.open(root / "build" / "test" / "ring_echo.bpf.o") as spec:
            spec.map("echo_ring").max_entries = ring_size
            obj = spec.load()
        with obj, RingBuffer(obj.map("echo_ring")) as ring:
            prog = obj.program("ring_echo")
            record = bytes(range(256)) * (size // 256) + bytes(size % 256)
            times = []
            for _ in range(3):
                prog.test_run(record, repeat=N_RING)
                n = 0
                t = time.perf_counter()
                while got := len(ring.drain()):
                    n += got
                times.append(time.perf_counter() - t)
                assert n == N_RING, f"{n} of {N_RING} records in the ring"
        print(f"ring     {size:5d}-byte records: {N_RING / min(times) / 1e6:6.2f} M records/s drained")


def bench_packet() -> None:
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether
    from scapy.packet import raw

    from hdrlog.capture.packets import PacketCapture
    from hdrlog.packets import PacketEncoder
    from hdrlog.pipelines import PacketPipeline

    cap = PacketCapture.load(snaplen=0, ring_size=1 << 26)
    try:
        pipe = PacketPipeline(cap, PacketEncoder())
        prog = cap.obj.program("tc_ingress")
        times = []
        for i in range(3):
            for port in range(1000, 1100):  # 100 flows
                pkt = raw(Ether() / IP(src="10.0.0.1", dst="10.0.0.2") /
                          TCP(sport=port, dport=80, flags="PA", seq=i,
                              options=[("NOP", None), ("NOP", None), ("Timestamp", (1, 2))]))
                prog.test_run(pkt, repeat=N_RING // 400)
            t = time.perf_counter()
            lines = pipe.drain()
            while pipe.more():
                lines += pipe.drain()
            times.append(time.perf_counter() - t)
        print(f"packet   ring->JSON lines:   {len(lines) / min(times) / 1e3:6.1f} k packets/s")
    finally:
        cap.close()


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


# what nginx reads and writes per request of a keep-alive client (curl-like request, static file)
L7_REQ = (b"GET /index.html?id=42 HTTP/1.1\r\nHost: 10.0.0.2:8080\r\nUser-Agent: curl/8.5.0\r\n"
          b"Accept: */*\r\nAuthorization: Bearer abc.def\r\n\r\n")
L7_BODY = 615  # bytes nginx sends with sendfile (the kernel copies none of them)
L7_RESP = (b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sat, 22 Nov 2026 02:24:36 GMT\r\n"
           b"Content-Type: text/html\r\nContent-Length: 615\r\nLast-Modified: Tue, 13 Jun 2023 15:08:10 GMT\r\n"
           b"Connection: keep-alive\r\nETag: \"64888a1a-267\"\r\nAccept-Ranges: bytes\r\n\r\n")


def l7_events(n: int, unique: bool = False) -> list:
    """An accepted keep-alive connection as the socket ring gives it, as nginx serves a static file:
    n requests read (recvfrom), n response heads written (writev), n bodies sent (sendfile).
    unique: every request head differs (its target), so none is a repeat the parser remembers."""
    import os

    from hdrlog import decode as D
    from hdrlog.decode import CONN_ACCEPT, SockConnEvent, SockDataEvent, SockId

    pid = os.getpid()  # a live process: the enrichers find it (and cache it) as they would nginx
    try:
        cgroup = os.stat("/sys/fs/cgroup").st_ino
    except OSError:
        cgroup = 1
    v4a, v4b = b"\x0a\x00\x00\x02" + b"\0" * 12, b"\x0a\x00\x00\x01" + b"\0" * 12

    def sid():
        return SockId(0xFFFF8881, cgroup, pid, pid, 7, 4026531840, 2, 8080, 40000, 6, v4a, v4b,
                      b"nginx".ljust(16, b"\0"))

    start = time.monotonic_ns()  # kernel time is monotonic: now, or the idle check closes the connection
    events = [SockConnEvent(start, CONN_ACCEPT, 43, 7, sid())]
    for i in range(n):
        ts = start + 100_000 * i
        req = L7_REQ.replace(b"id=42", b"id=%d" % i) if unique else L7_REQ
        events.append(SockDataEvent(ts, 0, 0, 0, len(req), sid(), req))
        events.append(SockDataEvent(ts + 40_000, 1, 4, 0, len(L7_RESP), sid(), L7_RESP))  # writev: the head
        events.append(SockDataEvent(ts + 45_000, 1, 9, D.SD_NO_DATA, L7_BODY, sid(), b""))  # sendfile: the body
    return events


def _ring_bytes(ev) -> bytes:
    """An event as the socket ring holds it: an 8-byte record header, the struct, its bytes, padding."""
    import struct

    from hdrlog import decode as D

    i = ev.id
    ident = (ev.ts_ns, i.sock, i.cgroup_id, i.tgid, i.tid, i.fd, i.netns, i.family, i.lport, i.rport, i.protocol,
             i.laddr, i.raddr, i.comm)  # fmt: skip
    if isinstance(ev, D.SockConnEvent):
        body = D._SOCK_CONN.pack(D.EV_SOCK_CONN, ev.kind, ev.syscall, ev.ret, *ident)
    else:
        body = D._SOCK_DATA.pack(D.EV_SOCK_DATA, ev.direction, ev.syscall, ev.flags, len(ev.data), ev.len, *ident)
        body += ev.data
    return struct.pack("<II", len(body), 0) + body + b"\0" * (-len(body) % 8)


class _Ring:
    """Batches as RingBuffer.drain() gives them, one per call."""

    def __init__(self, batches: list) -> None:
        self.batches = batches
        self.i = 0
        self.records_read = 0

    def drain(self, limit: int):
        from hdrlog.bpf import Batch

        if self.i >= len(self.batches):
            return Batch(b"", (), ())
        self.i += 1
        return self.batches[self.i - 1]


def bench_l7(unique: bool = False) -> None:
    """Socket events of one keep-alive connection, as ring batches -> SocketPipeline.drain() (decode,
    streams, HTTP/1 parser, records with enrichment and redaction as agent.py sets them up) -> NDJSON
    bytes, as sinks.NdjsonSink writes them."""
    from types import SimpleNamespace

    from hdrlog.agent import processors_from
    from hdrlog.bpf import Batch
    from hdrlog.clock import Clock
    from hdrlog.l7_records import HeaderSelection, HttpRecorder
    from hdrlog.pipelines import SocketPipeline
    from hdrlog.protocols.http1 import Http1Parser
    from hdrlog.records import json_form
    from hdrlog.stitch.streams import StreamTable

    batches = []
    events = [_ring_bytes(ev) for ev in l7_events(N_HTTP, unique)]
    for i in range(0, len(events), 256):  # a drain's batch
        chunk = events[i : i + 256]
        offsets, sizes, off = [], [], 0
        for raw in chunk:
            offsets.append(off + 8)
            sizes.append(int.from_bytes(raw[:4], "little"))
            off += len(raw)
        batches.append(Batch(b"".join(chunk), offsets, sizes))
    cfg = SimpleNamespace(redact=True, redact_mode="mask", redact_key=None, redact_headers=None, redact_params=None)
    processors = processors_from(cfg)
    recorder = HttpRecorder(Clock(), HeaderSelection.parse(None))
    enc = msgspec.json.Encoder()
    out = [bytearray()]
    records = []

    def run():
        capture = SimpleNamespace(ring=_Ring(batches))
        pipe = SocketPipeline(capture, StreamTable(Http1Parser), recorder, processors)
        buf = out[0]
        buf.clear()
        for _ in batches:
            recs = pipe.drain()
            for rec in recs:  # as sinks.NdjsonSink writes them
                if rec.__class__ is bytes:
                    buf += rec
                else:
                    enc.encode_into(json_form(rec), buf, -1)
                buf += b"\n"
            records[:] = recs
        assert pipe.exchanges == N_HTTP, pipe.exchanges

    t = best(run)
    assert records and b"[REDACTED]" in out[0], "the bench must produce redacted records"
    name = "l7-unique events->NDJSON:" if unique else "l7       events->NDJSON:    "
    print(f"{name} {N_HTTP / t / 1e3:6.1f} k exchanges/s ({t / N_HTTP * 1e6:5.2f} us each)")


BENCHES = {"ring": bench_ring, "packet": bench_packet, "http": bench_http, "record": bench_record, "l7": bench_l7,
           "l7-unique": lambda: bench_l7(unique=True)}

if __name__ == "__main__":
    names = sys.argv[1:] or list(BENCHES)
    for name in names:
        BENCHES[name]()
