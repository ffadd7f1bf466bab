"""HTTP/1.x request/response exchanges from captured socket data (sans-IO).

The kernel hands user space, per connection and direction, a bounded prefix of each read/write
syscall's bytes (`feed`) and the count of the bytes it did not copy (`gap`); captures may start
mid-connection. `Http1Parser` turns that into `HttpExchange`s and `ParseFailure`s. It never
raises on input bytes and holds at most `Limits.max_buffer` bytes per direction.

- Message heads (start line and header fields) are validated by httptools (llhttp), one parser
  per direction reused between messages; the fields of a head it accepted are split from its
  bytes when first read (llhttp reports them one Python call per field; most are never read).
- Body framing (RFC 9112 6 and 7.1) is tracked here: bodies are skipped and counted, never
  stored. A gap inside a body of known length is just counted; a gap that hides framing (a
  chunk-size line, the rest of a head) truncates that message and the side resynchronises.
- Resynchronising (at the start of a capture, after lost framing or a parse failure) skips to
  the next line that is a request line (client) or a status line (server). A position right
  after a gap counts as a line start: it is a syscall boundary, where messages usually begin.
- `truncated` means the record is incomplete: its head was cut or invalid, or the end of its
  body was not seen. Bytes a gap hid inside a body of known length do not make it truncated.
- Responses pair with requests first in, first out; a response that arrives with no request
  waiting (a capture started mid-connection) pairs with `request=None`.
- A ParseFailure is reported for invalid bytes and exceeded limits, not for gaps or for
  skipping to the first message of a capture: those are normal, and `truncated` records them.
"""

from __future__ import annotations

import dataclasses
import re
from bisect import bisect_right
from dataclasses import dataclass

import httptools
import msgspec

__all__ = [
    "CLIENT",
    "SERVER",
    "Http1Parser",
    "HttpExchange",
    "HttpRequest",
    "HttpResponse",
    "Limits",
    "ParseFailure",
    "accepted_head",
    "message_sender",
]

CLIENT = "client"  # bytes the client sent (requests)
SERVER = "server"  # bytes the server sent (responses)


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Ceilings that keep one connection's parser bounded whatever bytes it is fed."""

    # nginx (4 x 8 KiB buffers) and Apache (100 fields of 8 KiB) refuse far smaller heads
    max_head: int = 65536
    # Apache refuses more than 100 fields (LimitRequestFields); 256 is well above real servers
    max_headers: int = 256
    # twice nginx's 8 KiB line buffer and Apache's 8190-byte LimitRequestLine
    max_line: int = 16384
    # pipelining clients keep a few requests in flight; 64 unanswered means responses were lost
    max_pending: int = 64
    # a final response follows one or two 1xx (100, 103); dozens in a row are not HTTP we log
    max_interim: int = 32
    # what a side may hold between calls (a head being assembled); the limits above keep under it
    max_buffer: int = 131072

    def __post_init__(self) -> None:
        if min(dataclasses.astuple(self)) < 1:
            raise ValueError("limits must be positive")
        if not self.max_line <= self.max_head <= self.max_buffer:
            raise ValueError("limits must satisfy max_line <= max_head <= max_buffer")


def accepted_head(msg: HttpRequest | HttpResponse) -> bytes | None:
    """The head llhttp accepted whole that msg.headers will be split from, while it is not yet:
    for readers that want a few fields and can find them in it exactly. None otherwise."""
    h = msg._headers
    return h if type(h) is bytes else None


def _split_fields(head: bytes) -> list[tuple[str, str]]:
    """(name, value) of each field line of a head llhttp accepted whole."""
    fields = []
    for line in head.decode("latin-1").split("\r\n")[1:-2]:
        name, _, value = line.partition(":")
        fields.append((name, value.strip(" \t")))  # llhttp drops leading OWS; the trailing goes too
    return fields


class _Message(msgspec.Struct, eq=False):
    """What requests and responses share: their header fields. A head llhttp accepted whole is
    kept as its bytes (`_headers`) and split into fields on first use of `headers` (a record
    selects a few; most are never looked at). The split is exact: llhttp accepts only
    `token ":" OWS value OWS CRLF` field lines. Messages are msgspec structs because the parser
    builds one or two per exchange on its hot path and a struct is made at C speed."""

    @property
    def headers(self) -> list[tuple[str, str]]:
        """Names as sent, in order; values latin-1, OWS stripped."""
        h = self._headers
        if type(h) is bytes:
            h = self._headers = _split_fields(h)
        return h

    @headers.setter
    def headers(self, value: list[tuple[str, str]]) -> None:
        self._headers = value

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        # the header fields first: reading them splits a head kept as bytes, so the structs
        # then compare fields against fields
        return self.headers == other.headers and msgspec.structs.astuple(self) == msgspec.structs.astuple(other)


class HttpRequest(_Message):
    """One request as seen on the wire (body counted, not kept)."""

    method: str
    target: str
    version: str  # "1.0" or "1.1"
    _headers: list[tuple[str, str]] | bytes  # see _Message.headers
    body_size: int | None  # body bytes (chunked: payload bytes); None if unknown
    chunked: bool
    truncated: bool  # head or body not seen whole
    ts_start: int  # ns: first byte
    ts_head_end: int | None  # ns: end of the header section
    ts_end: int | None  # ns: last byte; None if the end was not seen


class HttpResponse(_Message):
    """One final response, with the 1xx interim statuses that preceded it."""

    status: int
    reason: str
    version: str
    _headers: list[tuple[str, str]] | bytes  # see _Message.headers
    body_size: int | None
    chunked: bool
    truncated: bool
    interim: list[int]
    ts_start: int
    ts_head_end: int | None
    ts_end: int | None


class HttpExchange(msgspec.Struct):
    """A request and its response; either may be missing (not captured / never sent)."""

    request: HttpRequest | None  # None: a response whose request was not seen
    response: HttpResponse | None  # None: the connection ended (or the parser gave up) first


@dataclass(frozen=True, slots=True, kw_only=True)
class ParseFailure:
    """The bytes on `side` were not HTTP/1 (or broke a limit); that side now skips to resync."""

    side: str
    reason: str
    ts: int


# llhttp's HTTP methods (its RTSP methods and the HTTP/2 preface's PRI left out)
_METHODS = (
    "GET HEAD POST PUT DELETE CONNECT OPTIONS TRACE PATCH COPY LOCK MKCOL MOVE PROPFIND PROPPATCH "
    "SEARCH UNLOCK BIND REBIND UNBIND ACL REPORT MKACTIVITY CHECKOUT MERGE M-SEARCH NOTIFY "
    "SUBSCRIBE UNSUBSCRIBE PURGE MKCALENDAR LINK UNLINK SOURCE QUERY"
).split()
# RFC 9112 3: method SP request-target SP HTTP-version CRLF (raw non-ASCII targets left to llhttp)
_REQUEST_LINE = rb"(%s) ([!-~\x80-\xff]+) HTTP/1\.([01])\r\n" % b"|".join(
    re.escape(m.encode()) for m in _METHODS
)
# RFC 9112 4: HTTP-version SP 3DIGIT SP [ reason-phrase ] CRLF (a missing SP is widely sent)
_STATUS_LINE = rb"HTTP/1\.([01]) ([0-9]{3})(?: ([\t -~\x80-\xff]*))?\r\n"
# RFC 9112 7.1: chunk-size [ chunk-ext ] CRLF; 16 hex digits is the most a 64-bit size holds
_CHUNK_SIZE = re.compile(rb"([0-9A-Fa-f]{1,16})[\t ]*(?:;[\t -~\x80-\xff]*)?\r\n")
_CRLFS = re.compile(rb"(?:\r\n)+")
# the framing fields (llhttp has already refused malformed field lines)
_FRAMING = re.compile(rb"\n(content-length|transfer-encoding):[\t ]*([^\r\n]*)", re.IGNORECASE)
# httptools raises HttpParserUpgrade for requests only: after a 101 response llhttp's pause
# surfaces as a plain HttpParserError with this reason
_LLHTTP_UPGRADE_PAUSE = "Pause on CONNECT/Upgrade"

_START_LINES = {line: re.compile(line) for line in (_REQUEST_LINE, _STATUS_LINE)}
_METHOD_NAMES = {m.encode(): m for m in _METHODS}  # what the request line matched -> its name
_START_SEARCH = {
    line: re.compile(b"^" + line, re.MULTILINE) for line in (_REQUEST_LINE, _STATUS_LINE)
}


def message_sender(data: bytes) -> str | None:
    """CLIENT if `data` starts with a request line, SERVER if with a status line, else None."""
    if _START_LINES[_REQUEST_LINE].match(data):
        return CLIENT
    if _START_LINES[_STATUS_LINE].match(data):
        return SERVER
    return None

# Heads llhttp accepted whole, remembered with what was read from them (start line groups,
# framing fields, whether llhttp's parser could go on to the next message): the same client or
# server sends the same head again and again, and a head's verdict depends on its bytes only.
HEAD_MEMO = 4096  # heads per direction (then it starts over)
HEAD_MEMO_BYTES = 2048  # longer heads (cookies, tokens) are rarely repeated
_KNOWN_HEADS: dict[Limits, tuple[dict, dict]] = {}

# Side states. Body framing and resync are by hand: no HTTP library reads on from a gap or
# finds the next message in the middle of a stream.
SYNC, HEAD, BODY, CHUNK_SIZE, CHUNK_DATA, CHUNK_END, TRAILERS, UNTIL_CLOSE, DONE = range(9)
_IN_BODY = (BODY, CHUNK_SIZE, CHUNK_DATA, CHUNK_END, TRAILERS, UNTIL_CLOSE)


class _Malformed(Exception):
    """A head or trailer section broke a rule; `upto` ends the complete lines still usable."""

    def __init__(self, reason: str, upto: int) -> None:
        self.reason = reason
        self.upto = upto


class _Check:
    """httptools callback target while validating a head: only whether the message ended (the
    fields are split from the accepted bytes later, without a Python call per field)."""

    __slots__ = ("complete",)
    # httptools looks each callback up when a parser is made; present and None is the cheap miss
    on_header = on_headers_complete = on_body = on_message_begin = None
    on_chunk_header = on_chunk_complete = on_url = on_status = None

    def __init__(self) -> None:
        self.complete = False

    def on_message_complete(self) -> None:
        self.complete = True


class _Fields:
    """httptools callback target: the fields llhttp reported before it refused a head."""

    __slots__ = ("headers",)

    def __init__(self) -> None:
        self.headers: list[tuple[str, str]] = []

    def on_header(self, name: bytes, value: bytes) -> None:
        # llhttp drops leading whitespace of a value but keeps trailing whitespace
        self.headers.append((name.decode("latin-1"), value.decode("latin-1").rstrip(" \t")))


class _Slot(msgspec.Struct, gc=False):
    """A request whose head was seen, waiting for its response (and for its own end)."""

    method: str
    request: HttpRequest | None = None
    response: HttpResponse | None = None  # set when it came before the request ended


class _Side:
    """One direction's stream position, buffer and message in progress."""

    __slots__ = (
        "name", "line_re", "search_re", "parser_cls", "state", "bol", "buf", "base", "moff",
        "mts", "scan", "ls", "lines", "last_ts", "check", "hp", "slot", "start", "headers",
        "ts_start", "ts_head_end", "body", "remaining", "chunked", "interim", "known",
    )  # fmt: skip

    def __init__(self, name: str, line: bytes, parser_cls: type, known: dict) -> None:
        self.name = name
        self.line_re = _START_LINES[line]  # a start line at a given position ...
        self.search_re = _START_SEARCH[line]  # ... or the next one at the start of a line
        self.parser_cls = parser_cls
        self.state = SYNC
        self.bol = True  # in SYNC: the next byte starts a line (capture start, after a gap)
        self.buf = bytearray()  # unconsumed bytes kept between calls
        self.base = 0  # stream offset (gaps included) of the work buffer's first byte
        self.moff = [0]  # stream offsets where a feed with a new ts began ...
        self.mts = [0]  # ... and that ts
        self.scan = 0  # bytes at the unit start already searched (no quadratic re-scans)
        self.ls = 0  # head/trailers: offset of the current line from the unit start
        self.lines = 0  # head/trailers: complete lines so far
        self.last_ts = 0
        self.check = _Check()
        self.hp = None  # an httptools parser, reused while it is between messages
        self.slot: _Slot | None = None
        self.start: tuple | None = None  # start-line fields of the message in progress
        self.headers: list[tuple[str, str]] | bytes | None = None  # bytes: an accepted head
        self.ts_start = 0
        self.ts_head_end: int | None = None
        self.body = 0
        self.remaining = 0
        self.chunked = False
        self.interim: list[int] = []
        self.known = known  # heads accepted before (shared by the parsers of one Limits)


class Http1Parser:
    """One TCP connection's HTTP/1.x parser: feed each direction's bytes and gaps in order."""

    def __init__(self, limits: Limits = Limits()) -> None:
        self.limits = limits
        known = _KNOWN_HEADS.get(limits)
        if known is None:
            known = _KNOWN_HEADS[limits] = ({}, {})
        self._client = _Side(CLIENT, _REQUEST_LINE, httptools.HttpRequestParser, known[0])
        self._server = _Side(SERVER, _STATUS_LINE, httptools.HttpResponseParser, known[1])
        self._sides = {CLIENT: self._client, SERVER: self._server}
        self._pending: list[_Slot] = []  # requests without a response yet, oldest first (short)
        self._out: list[HttpExchange | ParseFailure] | None = None  # this call's results
        self._done = False
        self._closed = False
        self._max_line = limits.max_line
        self._max_headers = limits.max_headers
        self._max_pending = limits.max_pending

    @property
    def done(self) -> bool:
        """True once the connection left HTTP/1 (101 Switching Protocols, CONNECT 2xx)."""
        return self._done

    def buffered(self, side: str) -> int:
        """Bytes held for `side` between calls (at most limits.max_buffer)."""
        return len(self._side(side).buf)

    # -- input ---------------------------------------------------------------------------

    def feed(self, side: str, data: bytes, ts: int) -> list[HttpExchange | ParseFailure]:
        """Bytes `side` sent, captured at `ts`; returns what they completed."""
        try:
            s = self._sides[side]
        except (KeyError, TypeError):
            s = self._side(side)
        if self._done or self._closed or not data:
            return []
        if s.state == HEAD and not s.buf and type(data) is bytes:
            out = self._whole(s, data, ts)
            if out is not None:
                return out
        out = self._out = []
        s.last_ts = ts
        if s.buf:
            if s.mts[-1] != ts:
                s.moff.append(s.base + len(s.buf))
                s.mts.append(ts)
            s.buf += data
            w = s.buf
        else:
            if len(s.moff) == 1:  # one feed: all of w has this ts
                s.moff[0] = s.base
                s.mts[0] = ts
            else:
                s.moff = [s.base]
                s.mts = [ts]
            w = data if type(data) is bytes else bytes(data)
        steps = self._STEPS
        p, n = 0, len(w)
        while p < n:
            q = steps[s.state](self, s, w, p)
            if q < 0:
                break
            p = q
        if p >= n and not s.buf and len(s.moff) == 1:
            s.base += p  # all consumed, nothing kept: what _keep would do
        else:
            self._keep(s, w, p)
        self._out = None
        return out

    def gap(self, side: str, n: int, ts: int) -> list[HttpExchange | ParseFailure]:
        """`n` bytes `side` sent that were not captured (the rest of a syscall's data)."""
        s = self._side(side)
        if n < 0:
            raise ValueError("a gap cannot be negative")
        if self._done or self._closed or n == 0:
            return []
        out = self._out = []
        s.last_ts = ts
        st = s.state
        if st == CHUNK_DATA and n == s.remaining + 2:
            # RFC 9112 7.1: the chunk's data and the CRLF after it, written in one syscall
            # (nginx, Python, Go all do) and cut by the capture: still in step
            s.body += s.remaining
            s.base += n
            s.remaining = 0
            s.state = CHUNK_SIZE
            self._out = None
            return out
        if st == UNTIL_CLOSE or (st in (BODY, CHUNK_DATA) and n <= s.remaining):
            # RFC 9112 6.3 / 7.1: the body's (or chunk's) length is known: hidden bytes just count
            s.body += n
            s.base += n
            if st != UNTIL_CLOSE:
                s.remaining -= n
                if not s.remaining:
                    if st == BODY:
                        self._finish(s, False, ts, s.body)
                    else:
                        s.state = CHUNK_END
            self._out = None
            return out
        # the gap hides framing or the start of the next message: lose sync on this side
        if st == BODY:
            s.body += s.remaining
            self._finish(s, False, ts, s.body)
        elif st == CHUNK_DATA:
            s.body += s.remaining
            self._finish(s, True, None, s.body)
        elif st in _IN_BODY:
            self._finish(s, True, None, s.body)
        elif st == HEAD and s.buf:
            self._cut_head(s, s.buf, 0, s.buf.rfind(b"\n") + 1)
        s.base += len(s.buf) + n
        s.buf = bytearray()
        self._resync(s, True)
        self._out = None
        return out

    def close(self, ts: int) -> list[HttpExchange | ParseFailure]:
        """The connection ended at `ts`: flush what is in progress and every unanswered request.

        A body that runs until close ends here; its ts_end is its last byte's time, not `ts`."""
        if self._closed:
            return []
        out = self._out = []
        self._closed = True
        if not self._done:
            for s in (self._client, self._server):
                st = s.state
                if st == UNTIL_CLOSE:  # RFC 9112 6.3: the body ends with the connection
                    self._finish(s, False, s.last_ts if s.body else s.ts_head_end, s.body)
                elif st in _IN_BODY:
                    self._finish(s, True, None, s.body)
                elif st == HEAD and s.buf:
                    self._cut_head(s, s.buf, 0, s.buf.rfind(b"\n") + 1)
            self._flush_pending()
        for s in (self._client, self._server):
            s.state = DONE
            s.buf = bytearray()
            s.hp = None
        self._out = None
        return out

    # -- plumbing --------------------------------------------------------------------------

    def _side(self, side: str) -> _Side:
        try:
            return self._sides[side]
        except (KeyError, TypeError):
            raise ValueError(f"side must be {CLIENT!r} or {SERVER!r}, not {side!r}") from None

    def _keep(self, s: _Side, w: bytes | bytearray, p: int) -> None:
        """Keep w[p:] for the next call; forget timestamps of bytes already consumed."""
        if p >= len(w) or s.state == DONE:
            if s.buf:
                s.buf = bytearray()
        elif w is s.buf:
            if p:
                del s.buf[:p]
        else:
            s.buf = bytearray(w[p:])
        s.base += p
        if len(s.buf) > self.limits.max_buffer:  # backstop: the other limits should prevent this
            s.base += len(s.buf)
            bol = s.buf.endswith(b"\n")
            s.buf = bytearray()
            self._fail(s, f"over {self.limits.max_buffer} buffered bytes", s.last_ts, 0, bol)
        if len(s.moff) > 1:
            i = bisect_right(s.moff, s.base) - 1
            if i > 0:
                del s.moff[:i], s.mts[:i]

    def _ts(self, s: _Side, i: int) -> int:
        """Capture time of byte i of the work buffer."""
        a = s.base + i
        if a >= s.moff[-1]:
            return s.mts[-1]
        return s.mts[bisect_right(s.moff, a) - 1]

    def _fail(self, s: _Side, reason: str, ts: int, resume: int, bol: bool) -> int:
        self._out.append(ParseFailure(side=s.name, reason=reason, ts=ts))
        self._resync(s, bol)
        return resume

    def _resync(self, s: _Side, bol: bool) -> None:
        if self._done:  # a truncated 101 may have ended HTTP/1 on the way here
            return
        s.state = SYNC
        s.bol = bol
        s.scan = s.ls = s.lines = 0

    # -- states: each takes (side, work buffer, position) and returns the new position, or -1
    # -- when it needs more bytes than the buffer holds

    def _sync(self, s: _Side, w: bytes | bytearray, p: int) -> int:
        """Skip to the next line that is a request line (client) or status line (server)."""
        n = len(w)
        max_line = self.limits.max_line
        if s.scan:  # the partial line kept at p: wait for its end
            if w.find(b"\n", p + s.scan) < 0:
                if n - p >= max_line:
                    s.scan, s.bol = 0, False
                    return n
                s.scan = n - p
                return -1
            s.scan = 0
        if s.bol:
            m = s.line_re.match(w, p)
            if m is not None and m.end() - p <= max_line:
                s.state = HEAD
                return p
            if w.find(b"\n", p) < 0:
                if n - p >= max_line:
                    s.bol = False
                    return n
                s.scan = n - p
                return -1
        m = s.search_re.search(w, p + 1)
        while m is not None and m.end() - m.start() > max_line:
            m = s.search_re.search(w, m.start() + 1)
        if m is not None:
            s.state, s.bol = HEAD, True
            return m.start()
        k = w.rfind(b"\n", p, n)
        if k < 0 or n - k - 1 >= max_line:
            s.bol = False
            return n
        s.bol, s.scan = True, n - k - 1  # keep the last, partial line: it may be a start line
        return k + 1 if k + 1 < n else n

    def _head(self, s: _Side, w: bytes | bytearray, p: int) -> int:
        if not s.scan and w[p] == 13:  # RFC 9112 2.2: ignore empty lines before a start line
            m = _CRLFS.match(w, p)
            if m is not None:
                return m.end()
            if len(w) - p == 1:
                return -1
        # fast paths, on the first look only (no re-scans): a head seen before, byte for byte, was
        # accepted before (_remember); a whole head shorter than one line needs only its start line
        # and its field count checked
        if s.scan:
            m, e = None, -1
        else:
            e = w.find(b"\r\n\r\n", p, p + self._max_line)
            if e >= 0:
                end = e + 4
                head = w[p:end] if type(w) is bytes else bytes(w[p:end])
                known = s.known.get(head)
                if known is not None:
                    g, framing, keep, _ = known
                    if not keep:
                        s.hp = None
                    return self._head_found(s, g, head, head, None, p, end, len(w), framing)
            m = s.line_re.match(w, p)
        if m is not None and e >= 0 and (e - p <= self._max_headers or w.count(b"\n", p, e) <= self._max_headers):
            end = e + 4
        else:
            try:
                end = self._block(s, w, p, s.line_re, "head")
            except _Malformed as e:
                self._cut_head(s, w, p, e.upto)
                return self._fail(s, e.reason, self._ts(s, p), p + 1, False)
            if end < 0:
                return -1
            m = s.line_re.match(w, p)
        head = w[p:end] if type(w) is bytes else bytes(w[p:end])
        # llhttp validates the head; its fields are split from the bytes only when asked for
        c = s.check
        c.complete = False
        hp = s.hp
        if hp is None:
            hp = s.hp = s.parser_cls(c)
        try:
            hp.feed_data(head)
        except Exception as exc:  # noqa: BLE001 - sorted out in _refused
            headers, err = self._refused(s, head, exc)
        else:
            headers, err = head, None  # accepted whole: its fields are split when first asked for
            # a parser left inside a body (or closing the connection) cannot read the next head
            if not c.complete or not hp.should_keep_alive():
                s.hp = None
        g = m.groups()
        framing = None
        if err is None and len(head) <= HEAD_MEMO_BYTES:
            framing = _framing_fields(head)
            known = s.known
            if len(known) >= HEAD_MEMO:
                known.clear()
            known[head] = (g, framing, s.hp is not None, self._plain(s, g, framing))
        return self._head_found(s, g, head, headers, err, p, end, len(w), framing)

    def _plain(self, s: _Side, g: tuple, framing: tuple) -> tuple | None:
        """What _whole needs of an accepted head, if it is one it handles: a request without a
        body, or a final response (not 101) framed by Content-Length or by never having a body."""
        cl, te = framing
        start = self._start_line(s, g)
        if s is self._client:
            if te is not None or (cl is not None and _content_length(cl) != 0):
                return None
            return start
        if start[0] < 200:
            return None
        return (*start, _content_length(cl) if te is None and cl is not None else None)

    def _whole(self, s: _Side, data: bytes, ts: int) -> list | None:
        """The usual syscall, at C speed where it can be: a head seen before (a repeat of one
        llhttp accepted), alone or with all of its body or the start of it, between messages.
        None: anything else, for the state machine (which gives the same result, slower).
        (The stream offsets of ts, s.moff/s.mts, are left as they are: they matter only while
        bytes are kept, and feed() sets them afresh when it starts on an empty buffer.)"""
        e = data.find(b"\r\n\r\n", 0, self._max_line)
        if e < 0:
            return None
        end = e + 4
        n = len(data)
        head = data if end == n else data[:end]
        known = s.known.get(head)
        if known is None:
            return None
        plain = known[3]
        if plain is None:
            return None
        pending = self._pending
        if s is self._client:
            if end != n:
                return None
            slot = self._new_slot(plain[0])
            if slot is None:
                return None  # (the state machine reports the overflow)
            slot.request = HttpRequest(plain[0], plain[1], plain[2], head, 0, False, False, ts, ts, ts)
            out = []
        else:
            if s.interim:
                return None
            slot = pending[0] if pending else None
            status, reason, version, length = plain
            if (slot is not None and slot.method == "HEAD") or status in (204, 304):
                length = 0
            elif length is None or (slot is not None and slot.method == "CONNECT" and status < 300):
                return None
            rest = n - end
            if rest > length:
                return None  # (the next message follows in the same bytes)
            if pending:
                del pending[0]
            if rest < length:  # the body goes on in the next syscalls
                self._start(s, slot, plain[:3], head, ts, ts)
                s.remaining = length - rest
                s.body = rest
                s.state = BODY
                out = []
            else:
                resp = HttpResponse(status, reason, version, head, length, False, False, [], ts, ts, ts)
                if slot is None or slot.request is not None:
                    out = [HttpExchange(slot and slot.request, resp)]
                else:
                    slot.response = resp
                    out = []
        if not known[2]:
            s.hp = None
        s.last_ts = ts
        s.base += n
        return out

    def _head_found(self, s: _Side, g: tuple, head: bytes, headers, err: str | None, p: int, end: int, n: int,
                    framing: tuple | None) -> int:
        """The head at p..end was read: its start line's groups, fields, complaint (None: llhttp
        accepted it) and its framing fields, if already known."""
        if len(s.moff) == 1:
            ts_start = ts_head_end = s.mts[0]
        else:
            ts_start, ts_head_end = self._ts(s, p), self._ts(s, end - 1)
        if s is self._client:
            return self._request_head(s, g, head, headers, err, ts_start, ts_head_end, p, end, framing)
        return self._response_head(s, g, head, headers, err, ts_start, ts_head_end, p, end, n, framing)

    def _body(self, s: _Side, w: bytes | bytearray, p: int) -> int:
        n = len(w)
        if n - p < s.remaining:
            s.remaining -= n - p
            s.body += n - p
            return n
        p += s.remaining
        s.body += s.remaining
        s.remaining = 0
        self._finish(s, False, self._ts(s, p - 1), s.body)
        return p

    def _chunk_size(self, s: _Side, w: bytes | bytearray, p: int) -> int:
        max_line = self.limits.max_line
        j = w.find(b"\n", p + s.scan)
        if j < 0:
            if len(w) - p >= max_line:
                return self._chunk_fail(s, f"chunk size line over {max_line} bytes", p)
            s.scan = len(w) - p
            return -1
        s.scan = 0
        if j + 1 - p > max_line:
            return self._chunk_fail(s, f"chunk size line over {max_line} bytes", p)
        m = _CHUNK_SIZE.fullmatch(w, p, j + 1)
        if m is None:
            return self._chunk_fail(s, "invalid chunk size line", p)
        size = int(m[1], 16)
        if size:
            s.remaining = size
            s.state = CHUNK_DATA
        else:  # RFC 9112 7.1: last-chunk, then the trailer section
            s.state = TRAILERS
        return j + 1

    def _chunk_data(self, s: _Side, w: bytes | bytearray, p: int) -> int:
        n = len(w)
        if n - p < s.remaining:
            s.remaining -= n - p
            s.body += n - p
            return n
        p += s.remaining
        s.body += s.remaining
        s.remaining = 0
        s.state = CHUNK_END
        return p

    def _chunk_end(self, s: _Side, w: bytes | bytearray, p: int) -> int:
        if w.startswith(b"\r\n", p):  # RFC 9112 7.1: chunk-data CRLF
            s.state = CHUNK_SIZE
            return p + 2
        if len(w) - p == 1 and w[p] == 13:
            return -1
        return self._chunk_fail(s, "chunk data not followed by CRLF", p)

    def _trailers(self, s: _Side, w: bytes | bytearray, p: int) -> int:
        if not s.scan:
            if w.startswith(b"\r\n", p):  # no trailer fields: the chunked body ends here
                self._finish(s, False, self._ts(s, p + 1), s.body)
                return p + 2
            if len(w) - p == 1 and w[p] == 13:
                return -1
        try:
            end = self._block(s, w, p, None, "trailer section")
        except _Malformed as e:
            return self._chunk_fail(s, e.reason, p)
        if end < 0:
            return -1
        self._finish(s, False, self._ts(s, end - 1), s.body)
        return end

    def _until_close(self, s: _Side, w: bytes | bytearray, p: int) -> int:
        s.body += len(w) - p
        return len(w)

    def _ignore(self, s: _Side, w: bytes | bytearray, p: int) -> int:
        return len(w)

    # -- heads -----------------------------------------------------------------------------

    def _block(
        self, s: _Side, w: bytes | bytearray, p: int, start_re: re.Pattern | None, what: str
    ) -> int:
        """End of the field block (head, or trailers if start_re is None) at p; -1 if incomplete.

        Checks the limits line by line in stream order, so a failure and its reason do not
        depend on how the bytes were split across calls."""
        lim = self.limits
        hi = min(len(w), p + lim.max_head)
        e = w.find(b"\r\n\r\n", p + s.scan - 3 if s.scan > 3 else p, hi)
        end = e + 4 if e >= 0 else -1
        first = start_re is not None
        ls = p + s.ls
        stop = end if end > 0 else hi
        while (j := w.find(b"\n", ls, stop)) >= 0:
            if j + 1 - ls > lim.max_line:
                raise _Malformed(f"line over {lim.max_line} bytes", ls)
            if first and not s.lines:
                m = start_re.match(w, p)
                if m is None or m.end() != j + 1:
                    kind = "request" if s.name == CLIENT else "status"
                    raise _Malformed(f"invalid {kind} line", -1)
            elif j + 1 != end and s.lines - first >= lim.max_headers:
                raise _Malformed(f"more than {lim.max_headers} header fields", ls)
            s.lines += 1
            ls = j + 1
        if end > 0:
            s.scan = s.ls = s.lines = 0
            return end
        if hi - ls >= lim.max_line:
            raise _Malformed(f"line over {lim.max_line} bytes", ls)
        if hi - p >= lim.max_head:
            raise _Malformed(f"{what} over {lim.max_head} bytes", ls)
        s.scan, s.ls = hi - p, ls - p
        return -1

    def _refused(
        self, s: _Side, head: bytes, e: Exception
    ) -> tuple[list[tuple[str, str]] | bytes, str | None]:
        """What llhttp raising `e` on a head means: its fields, and the complaint if malformed.

        A head llhttp accepted whole comes back as itself, its fields split on first use."""
        s.hp = None
        # llhttp pauses at CONNECT / Upgrade (after 101: a plain error with the pause's reason),
        # after the whole head; the framing is ours
        if isinstance(e, httptools.HttpParserUpgrade) or e.args == (_LLHTTP_UPGRADE_PAUSE,):
            return head, None
        return self._fields_before_error(s, head), f"invalid head: {e}"  # any other: malformed

    @staticmethod
    def _fields_before_error(s: _Side, head: bytes) -> list[tuple[str, str]]:
        """The fields llhttp reports from a head before it refuses it (or of a cut head)."""
        f = _Fields()
        try:
            s.parser_cls(f).feed_data(head)
        except Exception:  # noqa: BLE001 - the fields seen up to the error are what we want
            pass
        return f.headers

    def _cut_head(self, s: _Side, w: bytes | bytearray, p: int, upto: int) -> None:
        """Emit the message whose head at p was cut off: its complete lines before upto."""
        m = s.line_re.match(w, p)
        if m is None or m.end() > upto:
            return  # the start line itself was not seen whole: nothing to report
        headers = self._fields_before_error(s, bytes(w[p:upto]) + b"\r\n")
        ts_start = self._ts(s, p)
        start = self._start_line(s, m.groups())
        if s is self._client:
            slot = self._new_slot(start[0])
            if slot is None:
                return
        else:
            status = int(m[2])
            if 100 <= status < 200 and status != 101:
                if len(s.interim) < self.limits.max_interim:
                    s.interim.append(status)
                return
            slot = self._take_slot()
        self._start(s, slot, start, headers, ts_start, None)
        self._finish(s, True, None, None)
        if s is self._server and self._upgrades(slot, status):
            self._upgrade()

    def _request_head(
        self,
        s: _Side,
        g: tuple,
        head: bytes,
        headers: list[tuple[str, str]] | bytes,
        err: str | None,
        ts_start: int,
        ts_head_end: int,
        p: int,
        end: int,
        framing: tuple | None,
    ) -> int:
        start = self._start_line(s, g)
        slot = self._new_slot(start[0])
        if slot is None:
            reason = f"over {self.limits.max_pending} pending requests"
            return self._fail(s, reason, ts_start, p + 1, False)
        self._start(s, slot, start, headers, ts_start, ts_head_end)
        length, chunked = 0, False
        if err is None:
            cl, te = framing or _framing_fields(head)
            # RFC 9112 6.3: chunked if it is the final coding, else Content-Length, else no body
            if te is not None:
                chunked = _final_coding_is_chunked(te)
                if not chunked:
                    err = "request Transfer-Encoding does not end in chunked"
            elif cl is not None:
                length = _content_length(cl)
                if length is None:
                    err = f"invalid Content-Length {cl[:32]!r}"
        if err is not None:
            self._finish(s, True, None, None)
            return self._fail(s, err, ts_start, p + 1, False)
        if length or chunked:
            return self._start_body(s, length, chunked, False, end)
        self._finish(s, False, ts_head_end, 0)
        return end

    def _response_head(
        self,
        s: _Side,
        g: tuple,
        head: bytes,
        headers: list[tuple[str, str]] | bytes,
        err: str | None,
        ts_start: int,
        ts_head_end: int,
        p: int,
        end: int,
        n: int,
        framing: tuple | None,
    ) -> int:
        status = int(g[1])
        if err is None and 100 <= status < 200 and status != 101:
            if len(s.interim) >= self.limits.max_interim:
                s.interim = []
                reason = f"over {self.limits.max_interim} interim responses"
                return self._fail(s, reason, ts_start, p + 1, False)
            s.interim.append(status)  # RFC 9110 15.2: interim; the final response follows
            return end
        slot = self._take_slot()
        self._start(s, slot, self._start_line(s, g), headers, ts_start, ts_head_end)
        if err is not None:
            self._finish(s, True, None, None)
            return self._fail(s, err, ts_start, p + 1, False)
        if self._upgrades(slot, status):
            # RFC 9112 6.3: after 101, or a 2xx to CONNECT, the connection is no longer HTTP/1
            self._finish(s, False, ts_head_end, 0)
            self._upgrade()
            return n
        if (slot is not None and slot.method == "HEAD") or status in (204, 304) or status < 200:
            return self._start_body(s, 0, False, False, end)  # RFC 9112 6.3: never a body
        cl, te = framing or _framing_fields(head)
        if te is not None:  # RFC 9112 6.3: chunked last, else the body runs until close
            chunked = _final_coding_is_chunked(te)
            return self._start_body(s, 0, chunked, not chunked, end)
        if cl is not None:
            length = _content_length(cl)
            if length is None:
                self._finish(s, True, None, None)
                return self._fail(s, f"invalid Content-Length {cl[:32]!r}", ts_start, p + 1, False)
            if 0 < length <= n - end:  # the whole body is here: what _body would do at once
                s.body = length
                end += length
                ts_end = ts_head_end if len(s.moff) == 1 else self._ts(s, end - 1)
                self._finish(s, False, ts_end, length)
                return end
            return self._start_body(s, length, False, False, end)
        return self._start_body(s, 0, False, True, end)  # RFC 9112 6.3: read until close

    # -- messages and pairing ----------------------------------------------------------------

    def _start_line(self, s: _Side, g: tuple) -> tuple:
        """A start line's groups as the message's first fields: (method, target, version) or
        (status, reason, version)."""
        if s is self._client:
            return _METHOD_NAMES[g[0]], g[1].decode("latin-1"), "1.1" if g[2] == b"1" else "1.0"
        return int(g[1]), g[2].decode("latin-1") if g[2] else "", "1.1" if g[0] == b"1" else "1.0"

    def _start(self, s: _Side, slot, start: tuple, headers, ts_start: int, ts_head_end) -> None:
        """start: the message's first fields (_start_line)."""
        s.slot = slot
        s.start = start
        s.headers = headers
        s.ts_start = ts_start
        s.ts_head_end = ts_head_end
        s.body = s.remaining = 0
        s.chunked = False

    def _start_body(self, s: _Side, length: int, chunked: bool, until_close: bool, end: int) -> int:
        s.chunked = chunked
        if chunked:
            s.state = CHUNK_SIZE
        elif until_close:
            s.state = UNTIL_CLOSE
        elif length:
            s.remaining = length
            s.state = BODY
        else:
            self._finish(s, False, s.ts_head_end, 0)
        return end

    def _finish(self, s: _Side, truncated: bool, ts_end: int | None, body_size: int | None) -> None:
        """The message in progress on s ended (or was given up): record it and pair it."""
        a, b, c = s.start
        slot = s.slot
        if s is self._client:
            # fields in HttpRequest's order: method, target, version, headers, body_size, chunked,
            # truncated, ts_start, ts_head_end, ts_end
            req = HttpRequest(
                a, b, c, s.headers,
                body_size, s.chunked, truncated, s.ts_start, s.ts_head_end, ts_end,
            )  # fmt: skip
            slot.request = req
            if slot.response is not None:
                self._out.append(HttpExchange(req, slot.response))
        else:
            # status, reason, version, headers, body_size, chunked, truncated, interim, ts_start,
            # ts_head_end, ts_end
            resp = HttpResponse(
                a, b, c, s.headers,
                body_size, s.chunked, truncated, s.interim, s.ts_start, s.ts_head_end, ts_end,
            )  # fmt: skip
            s.interim = []  # the response keeps the list
            if slot is None or slot.request is not None:
                self._out.append(HttpExchange(slot and slot.request, resp))
            else:
                slot.response = resp  # emitted when its request ends
        s.slot = s.start = s.headers = None
        s.state = HEAD

    def _new_slot(self, method: str) -> _Slot | None:
        if len(self._pending) >= self._max_pending:
            return None
        slot = _Slot(method)
        self._pending.append(slot)
        return slot

    def _take_slot(self) -> _Slot | None:
        """The oldest unanswered request (None: its request was not captured)."""
        return self._pending.pop(0) if self._pending else None

    def _upgrades(self, slot: _Slot | None, status: int) -> bool:
        return status == 101 or (
            slot is not None and slot.method == "CONNECT" and 200 <= status < 300
        )

    def _upgrade(self) -> None:
        """Stop parsing: give up the request in progress, flush the rest."""
        c = self._client
        if c.state in _IN_BODY:
            self._finish(c, True, None, c.body)
        self._done = True
        for s in (self._client, self._server):
            s.state = DONE
            s.buf = bytearray()
        self._flush_pending()

    def _flush_pending(self) -> None:
        while self._pending:
            self._out.append(HttpExchange(request=self._pending.pop(0).request, response=None))

    def _chunk_fail(self, s: _Side, reason: str, p: int) -> int:
        self._finish(s, True, None, s.body)
        return self._fail(s, reason, self._ts(s, p), p, True)

    # the state machine: what runs on a side's bytes, by state
    _STEPS = (
        _sync, _head, _body, _chunk_size, _chunk_data, _chunk_end, _trailers, _until_close, _ignore,
    )  # fmt: skip


def _framing_fields(head: bytes) -> tuple[str | None, str | None]:
    """Content-Length and (combined) Transfer-Encoding values of a head llhttp accepted."""
    # the pattern's case folding is ASCII's, as bytes.lower(): scan from the first framing line on
    low = head.lower()
    i = low.find(b"\ncontent-length:")
    j = low.find(b"\ntransfer-encoding:")
    if j < 0:
        if i < 0:
            return None, None
        if low.find(b"\ncontent-length:", i + 16) < 0:  # one field: the pattern matches there only
            return _FRAMING.match(head, i)[2].rstrip(b" \t").decode("latin-1"), None
    elif i < 0 or j < i:
        i = j
    cl = te = None
    for name, value in _FRAMING.findall(head, i):
        value = value.rstrip(b" \t").decode("latin-1")
        if len(name) == 14:
            cl = value
        else:
            te = value if te is None else f"{te},{value}"
    return cl, te


def _final_coding_is_chunked(te: str) -> bool:
    return te.rpartition(",")[2].strip(" \t").lower() == "chunked"


def _content_length(value: str) -> int | None:
    # RFC 9110 8.6: 1*DIGIT (llhttp has already refused lists and duplicates)
    return int(value) if value.isascii() and value.isdigit() else None
