"""HttpLineEncoder writes the same bytes as the general way (HttpRecorder, the processors, the
JSON encoder), first time and from its caches, for every shape of exchange and connection."""

from __future__ import annotations

import functools
import os
from types import SimpleNamespace

import msgspec
import pytest

from hdrlog.agent import processors_from
from hdrlog.clock import Clock
from hdrlog.decode import CONN_ACCEPT, CONN_CONNECT, SockConnEvent, SockDataEvent, SockId
from hdrlog.http_lines import CONTEXT_REFRESH_NS, HttpLineEncoder
from hdrlog.l7_records import HeaderSelection, HttpRecorder
from hdrlog.protocols.http1 import Http1Parser, HttpExchange
from hdrlog.records import json_form
from hdrlog.stitch.streams import StreamTable

IN, OUT = 0, 1
V4A, V4B = b"\x0a\x00\x00\x02" + b"\0" * 12, b"\x0a\x00\x00\x01" + b"\0" * 12
V6A = b"\x20\x01\x0d\xb8" + b"\0" * 11 + b"\x01"
V6B = b"\x20\x01\x0d\xb8" + b"\0" * 11 + b"\x02"
AF_UNIX, AF_INET, AF_INET6 = 1, 2, 10

# (request bytes, response bytes): what a server reads and writes
EXCHANGES = [
    (b"GET /index.html?id=42&token=s3cr3t HTTP/1.1\r\nHost: 10.0.0.2:8080\r\nUser-Agent: curl/8.5.0\r\n"
     b"Accept: */*\r\nAuthorization: Bearer abc.def\r\n\r\n",
     b"HTTP/1.1 200 OK\r\nServer: nginx\r\nContent-Type: text/html\r\nContent-Length: 5\r\n"
     b"Set-Cookie: sid=42; Path=/\r\n\r\nhello"),
    (b"GET / HTTP/1.1\r\nHost: example.com\r\nCookie: a=1; b=2\r\nX-Api-Key: k\r\n\r\n",
     b"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n"),
    (b"POST /api/v1/items HTTP/1.1\r\nHost: [::1]:8443\r\nContent-Type: application/json\r\n"
     b"Content-Length: 7\r\n\r\n{\"a\":1}",
     b"HTTP/1.1 201 Created\r\nLocation: /api/v1/items/9?sig=abc\r\nTransfer-Encoding: chunked\r\n\r\n"
     b"3\r\nabc\r\n0\r\n\r\n"),
    (b"HEAD /big HTTP/1.1\r\nHost: h\r\nUser-Agent: \"quoted\" \xe9\\agent\r\n\r\n",
     b"HTTP/1.1 200 OK\r\nContent-Length: 999999\r\n\r\n"),
    (b"GET /nohost HTTP/1.1\r\nAccept: */*\r\n\r\n",
     b"HTTP/1.1 204 No Content\r\nServer: x\r\n\r\n"),
    (b"OPTIONS * HTTP/1.1\r\nHost: h:81\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
    (b"GET /a%20b?x HTTP/1.1\r\nHost: h\r\nReferer: http://u:pw@h/?password=1\r\n\r\n",
     b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 2\r\nServer: a\r\nServer: b\r\n\r\nno"),
    # another shape, the general way: an interim response, then the final one
    (b"PUT /up HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
     b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"),
]


@functools.cache
def sid(family: int, local: bytes, remote: bytes, tid: int) -> SockId:
    """One object per identity, as decode.sock_id gives them (the encoder's contexts key on it)."""
    pid = os.getpid()  # a live process: the enrichers find it
    cgroup = os.stat("/sys/fs/cgroup").st_ino if os.path.exists("/sys/fs/cgroup") else 1
    return SockId(0xFFFF8881, cgroup, pid, tid, 7, 4026531840, family, 8080, 40000, 6, local, remote,
                  b"nginx".ljust(16, b"\0"))


def exchanges(family=AF_INET, local=V4A, remote=V4B, accept=True, tls=None, repeat=2, gap_ns=0):
    """Each of EXCHANGES `repeat` times on one keep-alive connection, as (connection, exchange)."""
    table = StreamTable(Http1Parser)
    kind = CONN_ACCEPT if accept else CONN_CONNECT
    out = table.feed(SockConnEvent(1, kind, 43, 7, sid(family, local, remote, 5)))
    ts = 1_000
    for i in range(repeat):
        for req, resp in EXCHANGES:
            # a server reads requests and writes responses; a client the other way round
            sends = ((IN, req), (OUT, resp)) if accept else ((OUT, req), (IN, resp))
            for direction, data in sends:
                ts += 1000 + gap_ns
                ev = SockDataEvent(ts, direction, 0, 0, len(data), sid(family, local, remote, 5 + i), data)
                if tls is not None:
                    conn = table._conns[(ev.id.tgid, ev.id.sock)]
                    conn.tls = True
                    conn.client_hello, conn.server_hello = tls
                out += table.feed(ev)
    return [(c, x) for c, x in out if isinstance(x, HttpExchange)]


def general_bytes(enc: HttpLineEncoder, conn, ex) -> bytes:
    return msgspec.json.encode(json_form(enc.general(conn, ex)))


def check(enc: HttpLineEncoder, items) -> int:
    """Every exchange's line is the general way's bytes; returns how many went the fast way."""
    fast = 0
    for conn, ex in items:
        got = enc.encode(conn, ex)
        want = general_bytes(enc, conn, ex)
        if isinstance(got, bytes):
            fast += 1
            assert got == want
            msgspec.json.decode(got)
        else:
            assert msgspec.json.encode(json_form(got)) == want
    return fast


def encoder(redact=True, mode="mask", headers=None, processors=None) -> HttpLineEncoder:
    cfg = SimpleNamespace(redact=redact, redact_mode=mode, redact_key="k", redact_headers=["x-api-key"],
                          redact_params=None)
    recorder = HttpRecorder(Clock(), HeaderSelection.parse(headers))
    return HttpLineEncoder(recorder.clock, recorder, processors_from(cfg) if processors is None else processors)


@pytest.mark.parametrize("headers", [None, "all", "host,set-cookie,location"])
@pytest.mark.parametrize("mode", ["mask", "hash"])
def test_same_bytes_as_the_general_way(headers, mode):
    enc = encoder(mode=mode, headers=headers)
    items = exchanges()
    fast = check(enc, items)
    assert fast == len(items) - 2  # all but the interim-response exchange, each time
    assert b"[REDACTED]" in enc.encode(*items[0]) or mode == "hash"


@pytest.mark.parametrize("family,local,remote", [(AF_INET6, V6A, V6B), (AF_UNIX, b"\0" * 16, b"\0" * 16)])
def test_ipv6_and_unix_connections(family, local, remote):
    assert check(encoder(), exchanges(family, local, remote)) > 0


def test_client_side_and_no_redaction_or_processors():
    assert check(encoder(redact=False), exchanges(accept=False)) > 0
    assert check(encoder(processors=[]), exchanges()) > 0


def test_tls_connections_carry_their_handshake():
    ch = SimpleNamespace(server_name="example.com")
    sh = SimpleNamespace(version=0x0303, cipher_suite=0xC02F, alpn="http/1.1")
    enc = encoder()
    items = exchanges(tls=(ch, sh))
    assert check(enc, items) > 0
    line = msgspec.json.decode(enc.encode(*items[0]))
    assert line["tls"] is True and line["tls.client.server_name"] == "example.com"
    # the same connection identity with other hellos is another context
    items = exchanges(tls=(SimpleNamespace(server_name="other.example"), None))
    assert check(enc, items) > 0
    assert msgspec.json.decode(enc.encode(*items[0]))["tls.client.server_name"] == "other.example"


def test_context_is_made_once_then_again_after_the_refresh_interval():
    """A connection's context goes through the processors once per identity (a thread), and again
    once it is CONTEXT_REFRESH_NS old (enrichment is asked again: a process may exec)."""
    made = []

    def count(rec):
        if rec.pid is not None and rec.method is None and rec.status_code is None:  # a context alone
            made.append(rec.pid)
        return rec

    fast = check(encoder(processors=[count]), exchanges(repeat=2))  # threads 5 and 6
    assert fast == 2 * (len(EXCHANGES) - 1) and len(made) == 2
    made.clear()
    fast = check(encoder(processors=[count]), exchanges(repeat=1, gap_ns=CONTEXT_REFRESH_NS))
    assert fast == len(EXCHANGES) - 1 and len(made) == fast  # every exchange over a second after the last


def test_a_processor_that_drops_a_part_sends_the_exchange_the_general_way():
    def drop_posts(rec):
        return None if rec.method == "POST" else rec

    enc = encoder(processors=[drop_posts])
    for conn, ex in exchanges(repeat=1):
        got = enc.encode(conn, ex)
        if ex.request.method == "POST":
            assert got is None
        else:
            assert got is not None
