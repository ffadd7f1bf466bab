"""Per-connection byte streams from socket events, handed to a protocol parser per connection.

A connection is one process's socket: (tgid, keyed struct sock). connect and accept start
one and say its role; close ends it; bytes the kernel did not copy become gaps. A
connection whose start was not seen gets its role from its first message start (a process
that writes a request line or a ClientHello is the client). TLS connections carry two
streams: the handshake records as they crossed the socket (to the hello parser, one
TlsHandshake item per connection) and the plaintext from the TLS library (to the HTTP
parser, like any plaintext). Memory is bounded: at most MAX_CONNECTIONS are
tracked (when full, the least recently active sixteenth is flushed), idle ones are flushed
after IDLE_NS.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import Callable, Protocol

from hdrlog.decode import CONN_ACCEPT, CONN_CONNECT, SD_TLS, SD_TLS_RAW, SockConnEvent, SockDataEvent, SockId
from hdrlog.protocols.http1 import CLIENT, SERVER, message_sender
from hdrlog.protocols.tls_hello import ClientHello, ServerHello

__all__ = ["Connection", "StreamTable", "StreamStats", "TlsHandshake", "CLIENT", "SERVER", "MAX_CONNECTIONS", "IDLE_NS"]

MAX_CONNECTIONS = 16384  # concurrent connections of a busy host; each holds a parser and a few KiB at most
IDLE_NS = 300 * 1_000_000_000  # a keep-alive connection silent for 5 minutes is flushed
_EGRESS = 1



class Parser(Protocol):
    def feed(self, side: str, data: bytes, ts: int) -> list: ...
    def gap(self, side: str, n: int, ts: int) -> list: ...
    def close(self, ts: int) -> list: ...


@dataclass(frozen=True)
class TlsHandshake:
    """A connection's hellos (either may be None when it was not seen)."""

    client: object | None
    server: object | None
    ts: int


@dataclass
class Connection:
    """One process's socket; records are tagged with a shallow copy of it (StreamTable._tag)."""

    tgid: int
    sock: int
    id: SockId  # the latest event's identity: tuple, process, cgroup
    role: str
    parser: Parser
    last_ts: int
    hello: Parser | None = None  # TLS: the hello parser, while the handshake goes on
    client_hello: object | None = None
    server_hello: object | None = None
    tls_reported: bool = False
    tls: bool = False  # plaintext came from a TLS library

    @property
    def client_ip(self) -> bytes:
        return self.id.local_ip if self.role == CLIENT else self.id.remote_ip

    @property
    def server_ip(self) -> bytes:
        return self.id.remote_ip if self.role == CLIENT else self.id.local_ip

    @property
    def client_port(self) -> int:
        return self.id.lport if self.role == CLIENT else self.id.rport

    @property
    def server_port(self) -> int:
        return self.id.rport if self.role == CLIENT else self.id.lport


_new_connection = object.__new__


def _feed(parser: Parser, side: str, data: bytes, length: int, ts: int) -> list:
    """What a syscall's copied bytes and then the rest it moved (a gap) give a parser."""
    items = parser.feed(side, data, ts) if data else []  # (a new list each call)
    if length > len(data):
        items += parser.gap(side, length - len(data), ts)
    return items


def _last_ts(conn: Connection) -> int:
    return conn.last_ts


@dataclass
class StreamStats:
    connections: int = 0
    unplaced_bytes: int = 0  # bytes of connections whose role could not be told yet (skipped)
    evicted: int = 0  # connections flushed to stay under MAX_CONNECTIONS
    idle_flushed: int = 0


def _infer_role(direction: int, data: bytes) -> str | None:
    """The role of the process that moved `data`: whoever sends a request or a ClientHello
    is the client (a TLS handshake record's 6th byte is the message type, RFC 8446 4)."""
    sender = message_sender(data)
    if sender is None and data[:1] == b"\x16":
        sender = {b"\x01": CLIENT, b"\x02": SERVER}.get(data[5:6])
    if sender is None:
        return None
    if direction == _EGRESS:
        return sender
    return SERVER if sender == CLIENT else CLIENT


class StreamTable:
    """feed(event) -> [(connection, parser output), ...]."""

    def __init__(self, new_parser: Callable[[], Parser], max_connections: int = MAX_CONNECTIONS,
                 new_hello_parser: Callable[[], Parser] | None = None):
        self._new_parser = new_parser
        self._new_hello = new_hello_parser
        self._max = max_connections
        self._conns: dict[tuple[int, int], Connection] = {}  # (recency is each one's last_ts)
        self.stats = StreamStats()

    def __len__(self) -> int:
        return len(self._conns)

    def feed(self, ev: SockDataEvent | SockConnEvent) -> list[tuple[Connection, object]]:
        if isinstance(ev, SockConnEvent):
            return self._conn_event((ev.id.tgid, ev.id.sock), ev)
        return self.feed_data(ev.ts_ns, ev.direction, ev.flags, ev.len, ev.id, ev.data)

    def feed_data(self, ts: int, direction: int, flags: int, length: int, sid: SockId, data: bytes
                  ) -> list[tuple[Connection, object]]:
        """A SockDataEvent's fields (what pipelines.SocketPipeline reads from the ring without
        building the event)."""
        key = (sid.tgid, sid.sock)
        out: list[tuple[Connection, object]] = []
        conn = self._conns.get(key)
        if conn is None:
            role = _infer_role(direction, data)
            if role is None:
                self.stats.unplaced_bytes += length
                return []
            conn = self._open(key, sid, ts, role, out)
        conn.id = sid
        conn.last_ts = ts
        # requests travel client -> server: what a client writes, what a server reads
        side = CLIENT if (direction == _EGRESS) == (conn.role == CLIENT) else SERVER
        if flags & SD_TLS_RAW:
            return out + self._handshake(conn, side, data, length, ts)
        if flags & SD_TLS:
            conn.tls = True
        items = _feed(conn.parser, side, data, length, ts)
        if not items:
            return out
        return out + self._tag(conn, items)

    def _handshake(self, conn: Connection, side: str, data: bytes, length: int, ts: int
                   ) -> list[tuple[Connection, object]]:
        if self._new_hello is None or conn.tls_reported:
            return []
        if conn.hello is None:
            conn.hello = self._new_hello()
        found = _feed(conn.hello, side, data, length, ts)
        self._keep_hellos(conn, found)
        if conn.hello.done:
            return self._tls_report(conn, ts)
        return []

    @staticmethod
    def _keep_hellos(conn: Connection, found: list) -> None:
        for item in found:
            if isinstance(item, ClientHello):
                conn.client_hello = item
            elif isinstance(item, ServerHello):
                conn.server_hello = item

    def _tls_report(self, conn: Connection, ts: int) -> list[tuple[Connection, object]]:
        """The connection's TlsHandshake item, once (when both hellos are in, or at its end)."""
        if conn.tls_reported or (conn.client_hello is None and conn.server_hello is None):
            return []
        conn.tls_reported = True
        conn.hello = None
        return self._tag(conn, [TlsHandshake(conn.client_hello, conn.server_hello, ts)])

    def _close(self, conn: Connection, ts: int) -> list[tuple[Connection, object]]:
        if conn.hello is not None:
            self._keep_hellos(conn, conn.hello.close(ts))  # a hello cut short is still reported
        return self._tls_report(conn, ts) + self._tag(conn, conn.parser.close(ts))

    def _conn_event(self, key, ev: SockConnEvent) -> list[tuple[Connection, object]]:
        out: list[tuple[Connection, object]] = []
        old = self._conns.pop(key, None)
        if old is not None:
            out += self._close(old, ev.ts_ns)
        if ev.kind in (CONN_CONNECT, CONN_ACCEPT):
            self._open(key, ev.id, ev.ts_ns, CLIENT if ev.kind == CONN_CONNECT else SERVER, out)
        return out

    def _open(self, key, sid: SockId, ts: int, role: str, out: list) -> Connection:
        if len(self._conns) >= self._max:
            # the least recently active sixteenth at once: a full table costs one pass per
            # max/16 new connections, not one per connection
            for victim in heapq.nsmallest(max(1, self._max // 16), self._conns.values(), key=_last_ts):
                del self._conns[(victim.tgid, victim.sock)]
                self.stats.evicted += 1
                out += self._close(victim, victim.last_ts)
        conn = Connection(sid.tgid, sid.sock, sid, role, self._new_parser(), ts)
        self._conns[key] = conn
        self.stats.connections += 1
        return conn

    def flush_idle(self, now_ns: int, idle_ns: int = IDLE_NS) -> list[tuple[Connection, object]]:
        """Close connections silent for idle_ns (their process may have died without close)."""
        out: list[tuple[Connection, object]] = []
        idle = [(key, conn) for key, conn in self._conns.items() if now_ns - conn.last_ts >= idle_ns]
        idle.sort(key=lambda kc: kc[1].last_ts)
        for key, conn in idle:
            del self._conns[key]
            self.stats.idle_flushed += 1
            out += self._close(conn, conn.last_ts)
        return out

    def close_all(self) -> list[tuple[Connection, object]]:
        out: list[tuple[Connection, object]] = []
        conns = sorted(self._conns.values(), key=_last_ts)
        self._conns.clear()
        for conn in conns:
            out += self._close(conn, conn.last_ts)
        return out

    def _tag(self, conn: Connection, items: list) -> list[tuple[Connection, object]]:
        """Each item with the connection as it is now: later events of the same batch
        (another thread, say) must not change whose record it is."""
        if not items:
            return []
        snapshot = _new_connection(Connection)  # copy.copy(conn), without the copy protocol's detour
        snapshot.__dict__.update(conn.__dict__)
        return [(snapshot, item) for item in items]
