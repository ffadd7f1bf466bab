"""Per-connection streams: roles from connect/accept or from the first message, gaps for
bytes the kernel did not copy, close and socket reuse as boundaries, bounded tables."""

from __future__ import annotations

from hdrlog.decode import CONN_ACCEPT, CONN_CLOSE, CONN_CONNECT, SockConnEvent, SockDataEvent, SockId
from hdrlog.protocols.http1 import Http1Parser, HttpExchange
from hdrlog.stitch.streams import CLIENT, SERVER, StreamTable

IN, OUT = 0, 1
V4 = b"\x0a\x00\x00\x01" + b"\0" * 12
V4B = b"\x0a\x00\x00\x02" + b"\0" * 12
REQ = b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n"
RESP = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"


def sid(sock: int = 7, tgid: int = 100, fd: int = 3, lport: int = 40000, rport: int = 80) -> SockId:
    return SockId(sock, 1, tgid, tgid, fd, 4026531840, 2, lport, rport, 6, V4, V4B, b"curl".ljust(16, b"\0"))


def data(ts, direction, payload, length=None, **kw) -> SockDataEvent:
    return SockDataEvent(ts, direction, 1, 0, len(payload) if length is None else length, sid(**kw), payload)


def conn(ts, kind, **kw) -> SockConnEvent:
    return SockConnEvent(ts, kind, 10, 0, sid(**kw))


def exchanges(table: StreamTable, events) -> list:
    out = []
    for ev in events:
        out += table.feed(ev)
    return [(c, x) for c, x in out if isinstance(x, HttpExchange)]


def test_connect_makes_the_process_the_client():
    """After connect, what the process writes are requests and what it reads are responses."""
    t = StreamTable(Http1Parser)
    got = exchanges(t, [conn(1, CONN_CONNECT), data(2, OUT, REQ), data(3, IN, RESP)])
    assert len(got) == 1
    c, x = got[0]
    assert c.role == CLIENT and x.request.target == "/x" and x.response.status == 200
    assert (c.client_port, c.server_port) == (40000, 80)


def test_accept_makes_the_process_the_server():
    """After accept, what the process reads are requests."""
    t = StreamTable(Http1Parser)
    got = exchanges(t, [conn(1, CONN_ACCEPT, lport=80, rport=40000), data(2, IN, REQ, lport=80, rport=40000),
                        data(3, OUT, RESP, lport=80, rport=40000)])
    c, x = got[0]
    assert c.role == SERVER and x.response.body_size == 5
    assert (c.client_port, c.server_port) == (40000, 80)


def test_role_is_inferred_mid_connection_from_the_first_message():
    """Without connect/accept, a process writing a request line is the client; bytes before are skipped."""
    t = StreamTable(Http1Parser)
    got = exchanges(t, [data(1, IN, b"tail of an old body"), data(2, OUT, REQ), data(3, IN, RESP)])
    assert len(got) == 1 and got[0][0].role == CLIENT
    assert t.stats.unplaced_bytes == len(b"tail of an old body")


def test_uncopied_bytes_become_a_gap_in_the_body():
    """A write of 1 MB of which 64 bytes were copied still frames the body by Content-Length."""
    t = StreamTable(Http1Parser)
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n"
    got = exchanges(t, [conn(1, CONN_CONNECT), data(2, OUT, REQ),
                        data(3, IN, head + b"x" * 20, length=len(head) + 1048576),
                        data(4, OUT, REQ), data(5, IN, RESP)])
    assert [x.response.body_size for _, x in got] == [1048576, 5]


def test_close_flushes_and_socket_reuse_starts_a_new_connection():
    """close ends a connection (a pending request is flushed); a new connect on the same socket starts afresh."""
    t = StreamTable(Http1Parser)
    out = exchanges(t, [conn(1, CONN_CONNECT), data(2, OUT, REQ), conn(3, CONN_CLOSE)])
    assert len(out) == 1 and out[0][1].response is None
    assert len(t) == 0
    got = exchanges(t, [conn(4, CONN_CONNECT), data(5, OUT, REQ), data(6, IN, RESP)])
    assert len(got) == 1 and got[0][1].response.status == 200


def test_processes_sharing_a_connection_tuple_are_apart():
    """Client and server on one host are two connections (by process and socket), one record each."""
    t = StreamTable(Http1Parser)
    cli = dict(tgid=100, sock=1)
    srv = dict(tgid=200, sock=2, lport=80, rport=40000)
    got = exchanges(t, [conn(1, CONN_CONNECT, **cli), conn(1, CONN_ACCEPT, **srv), data(2, OUT, REQ, **cli),
                        data(3, IN, REQ, **srv), data(4, OUT, RESP, **srv), data(5, IN, RESP, **cli)])
    assert sorted(c.role for c, _ in got) == [CLIENT, SERVER]


def test_the_table_is_bounded():
    """Past max_connections the least recently active connection is flushed, not kept."""
    t = StreamTable(Http1Parser, max_connections=10)
    for i in range(50):
        t.feed(conn(i, CONN_CONNECT, sock=1000 + i))
    assert len(t) == 10 and t.stats.evicted == 40


def test_idle_connections_are_flushed():
    """A connection silent for longer than the idle time is closed and its pending request flushed."""
    t = StreamTable(Http1Parser)
    exchanges(t, [conn(1, CONN_CONNECT), data(2, OUT, REQ)])
    out = t.flush_idle(now_ns=10**12, idle_ns=10**9)
    assert len(out) == 1 and len(t) == 0


def test_items_keep_the_connection_as_it_was_when_they_completed():
    """An exchange is tagged with the connection's identity at its completion (the thread that
    completed it), not with what later events of the same batch change."""
    import msgspec

    def ev(ts, direction, payload, tid):
        return SockDataEvent(ts, direction, 1, 0, len(payload), msgspec.structs.replace(sid(), tid=tid), payload)

    t = StreamTable(Http1Parser)
    got = exchanges(t, [conn(1, CONN_CONNECT), ev(2, OUT, REQ, 101), ev(3, IN, RESP, 102), ev(4, OUT, REQ, 103)])
    (c, _), = got
    assert c.id.tid == 102 and c.last_ts == 3
    live = t._conns[(100, 7)]
    assert live.id.tid == 103 and live.last_ts == 4 and c is not live
