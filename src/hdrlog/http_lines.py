"""HTTP exchanges -> `http` records, written straight as JSON lines from cached pieces.

An exchange's record is the sum of what its connection gives (endpoints, flow, process,
container, TLS), what its request head gives (method, target, version, chosen header fields,
Host), what its response head gives (status, chosen header fields) and a few numbers (times,
body sizes, thread). Heads repeat byte for byte (the same clients, the same servers), and a
connection's context repeats on every record, so each part's JSON text is made once, through
the same recorder, processors and encoder the record would go through, and cached:

    context   per connection identity, made again after CONTEXT_REFRESH_NS (the enrichers'
              own staleness bound: a process may exec)
    request   per request head bytes (heads of at most HEAD_MAX bytes are remembered); a head
              not seen before from its request line's part and its field lines' part, each
              cached on its own (other targets, the same fields)
    response  per response head bytes

The processors (enrichment, redaction) must be field-local: what they do to a field depends
only on fields of the same part. Each part is passed through them as a record of its own.

An exchange of another shape (a missing or cut message, interim responses, a head llhttp
did not accept whole) goes the general way: HttpRecorder.record, then the processors, and
returns the record. tests/unit/test_http_lines.py checks both ways give the same bytes.
"""

from __future__ import annotations

import msgspec

from hdrlog.clock import Clock
from hdrlog.l7_records import HttpRecorder
from hdrlog.protocols.http1 import HttpExchange, accepted_head
from hdrlog.records import FLAT_HEADERS, HttpRecord, Processor, Record, processed
from hdrlog.stitch.streams import Connection

__all__ = ["HttpLineEncoder", "CONTEXT_REFRESH_NS", "HEAD_MAX", "CACHE_MAX"]

CONTEXT_REFRESH_NS = 1_000_000_000  # as enrich.process.REVALIDATE_SECONDS
HEAD_MAX = 2048  # longer heads (cookies, tokens) are rarely repeated: encoded, not remembered
CACHE_MAX = 4096  # entries per cache; when full it starts over (under ~20 MiB in all)

_ENC = msgspec.json.Encoder()
_NAMES = {f.name: f.encode_name for f in msgspec.structs.fields(HttpRecord)}


def _key(field: str) -> bytes:
    return b',"' + _NAMES[field].encode() + b'":'


# Fields in HttpRecord's order; the header maps are written last, flattened (json_form)
_LINE = (
    b'{"ts":"%b.%09dZ","type":"http"%b%b%b%b%b%b%b%b'
    + _key("request_body_size") + b"%d" + _key("response_body_size") + b"%d"
    + _key("duration") + b"%d" + _key("time_to_headers") + b"%d"
    + b"%b" + _key("tid") + b"%d%b%b%b}"
)  # fmt: skip
# the parts' fields (each part's text is these fields' members, in this order)
_ROLE = ("role",)
_TARGET = ("method", "url_path", "url_query")
_CLIENT = ("client_address", "client_port")
_VERSION = ("protocol_version",)
_STATUS = ("status_code",)
_AGENT = ("user_agent",)
_FLOW = ("community_id", "network_type", "transport", "tls", "tls_server_name", "tls_version", "tls_cipher",
         "tls_next_protocol", "pid")  # fmt: skip
_PROCESS = ("executable_name", "executable_path", "command_line", "cgroup_id", "container_id", "container_runtime")


_MEMBER = {f: _key(f) for f in _NAMES}
_FLAT = {f: b',"' + prefix.encode() for f, prefix in FLAT_HEADERS.items()}


def _text(rec: HttpRecord, fields: tuple[str, ...]) -> bytes:
    """The JSON members (each with a leading comma) rec's `fields` are written as: what msgspec
    writes for the record (None left out; a header map flattened, as json_form does), member by
    member (tests/unit/test_http_lines.py holds them to the same bytes)."""
    out = []
    for f in fields:
        v = getattr(rec, f)
        if v is None:
            continue
        flat = _FLAT.get(f)
        if flat is None:
            out.append(_MEMBER[f] + _ENC.encode(v))
        else:
            for name, values in v.items():
                out.append(flat + _ENC.encode(name)[1:] + b":" + _ENC.encode(values))
    return b"".join(out)


def _put(cache: dict, key, part):
    """part, kept for key (a full cache starts over)."""
    if len(cache) >= CACHE_MAX:
        cache.clear()
    cache[key] = part
    return part


def _remember(cache: dict, head: bytes, part):
    """part, kept for head if head is short enough to be seen again."""
    return _put(cache, head, part) if len(head) <= HEAD_MAX else part


class _Context:
    __slots__ = ("role", "address", "port", "client", "flow", "process", "expires", "held")


class _Request:
    __slots__ = ("target", "address", "port", "version", "agent", "headers")


class _Response:
    __slots__ = ("status", "headers")


class HttpLineEncoder:
    """encode(conn, exchange) -> a JSON line (bytes), or a record when the exchange is of another shape."""

    def __init__(self, clock: Clock, recorder: HttpRecorder, processors: list[Processor]):
        self.clock = clock
        self.recorder = recorder
        self.processors = processors
        self._contexts: dict[tuple, _Context] = {}
        self._requests: dict[bytes, _Request] = {}
        self._targets: dict[tuple, tuple[bytes, bytes]] = {}  # request line -> its parts
        self._fields: dict[bytes, tuple] = {}  # a request's field lines -> their parts
        self._responses: dict[bytes, _Response] = {}
        self._second = None
        self._second_text = b""

    def _process(self, fields: dict) -> HttpRecord | None:
        """A record of one part's fields alone, through the processors."""
        return processed(HttpRecord(ts="", type="http", **fields), self.processors)  # type: ignore[return-value]

    def general(self, conn: Connection, ex: HttpExchange) -> Record | None:
        """The record, the general way."""
        return processed(self.recorder.record(conn, ex), self.processors)

    def encode(self, conn: Connection, ex: HttpExchange) -> bytes | Record | None:
        req, resp = ex.request, ex.response
        if (
            req is None or resp is None or req.truncated or resp.truncated or resp.interim
            or req.body_size is None or resp.body_size is None or resp.ts_end is None or resp.ts_head_end is None
        ):  # fmt: skip
            return self.general(conn, ex)
        qhead, shead = accepted_head(req), accepted_head(resp)
        if qhead is None or shead is None:
            return self.general(conn, ex)
        ts = req.ts_start
        sid = conn.id
        # decode gives one SockId per identity: its id() names it while a context holds it
        if conn.tls:
            hellos = (conn.client_hello, conn.server_hello)
            key = (id(sid), conn.role, id(hellos[0]), id(hellos[1]))
        else:
            hellos = None
            key = (id(sid), conn.role)
        c = self._contexts.get(key)
        if c is None or ts > c.expires:
            c = self._context(conn, key, ts, hellos)
        q = self._requests.get(qhead) or self._request(req, qhead)
        s = self._responses.get(shead) or self._response(resp, shead)
        if q is None or c is None or s is None:
            return self.general(conn, ex)  # a processor dropped a part: let it see the whole record
        second, ns = self.clock.second_and_ns(ts)
        if second is not self._second:
            self._second, self._second_text = second, second.encode()
        return _LINE % (
            self._second_text, ns, c.role, q.target, q.address or c.address, q.port or c.port, c.client, q.version,
            s.status, q.agent, req.body_size, resp.body_size, resp.ts_end - ts, resp.ts_head_end - ts, c.flow,
            sid.tid, c.process, q.headers, s.headers,
        )  # fmt: skip

    def _context(self, conn: Connection, key: tuple, ts: int, hellos) -> _Context | None:
        f = self.recorder.context(conn, ts)
        del f["ts"], f["tid"], f["type"]
        rec = self._process(f)
        if rec is None:
            return None
        c = _Context()
        c.role = _text(rec, _ROLE)
        c.address = _text(rec, ("server_address",))
        c.port = _text(rec, ("server_port",))
        c.client = _text(rec, _CLIENT)
        c.flow = _text(rec, _FLOW)
        c.process = _text(rec, _PROCESS)
        c.expires = ts + CONTEXT_REFRESH_NS
        c.held = (conn.id, hellos)  # kept alive while their ids are in the key
        return _put(self._contexts, key, c)

    def _request(self, req, head: bytes) -> _Request | None:
        """A head not seen whole before: its request line and its field lines are parts of their
        own (a client asks for other targets with the same fields)."""
        line = (req.method, req.target, req.version)
        target = self._targets.get(line)
        if target is None:
            rec = self._process(self.recorder.request_line(req))
            if rec is None:
                return None
            target = _put(self._targets, line, (_text(rec, _TARGET), _text(rec, _VERSION)))
        block = head[head.find(b"\n") + 1 :]
        fields = self._fields.get(block)
        if fields is None:
            rec = self._process(self.recorder.request_fields(req))
            if rec is None:
                return None
            fields = (_text(rec, ("server_address",)), _text(rec, ("server_port",)), _text(rec, _AGENT),
                      _text(rec, ("request_headers",)))
            _remember(self._fields, block, fields)
        q = _Request()
        q.target, q.version = target
        q.address, q.port, q.agent, q.headers = fields
        return _remember(self._requests, head, q)

    def _response(self, resp, head: bytes) -> _Response | None:
        rec = self._process(self.recorder.response(resp))
        if rec is None:
            return None
        s = _Response()
        s.status = _text(rec, _STATUS)
        s.headers = _text(rec, ("response_headers",))
        return _remember(self._responses, head, s)
