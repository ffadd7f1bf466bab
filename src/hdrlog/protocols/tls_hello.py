"""TLS ClientHello / ServerHello from captured socket data (sans-IO), with JA3, JA3S and JA4.

The kernel hands user space, per connection and direction, a bounded prefix of each read/write
syscall's bytes (`feed`) and the count of the bytes it did not copy (`gap`). For a TLS
connection the first bytes of each direction are that side's hello: `HelloParser` reassembles
the TLS records (RFC 8446 5.1, RFC 5246 6.2) and the handshake message inside them, parses the
hello and ignores everything after it (ChangeCipherSpec, encrypted records). It never raises on
input bytes, and holds at most MAX_HELLO_BYTES + 7 bytes per side.

- A hello split over many feeds or records, or several records in one feed, gives the same
  result however the bytes are cut: record and handshake headers are checked byte by byte.
- Bytes that are not a TLS record where a side's first record should start give one
  HelloFailure and the parser is done (both sides): the connection is not TLS.
- A hello longer than MAX_HELLO_BYTES, a malformed hello, an alert or an unexpected record
  before the hello give a HelloFailure for that side; the other side carries on.
- A gap (or `close`) inside a hello emits it with `truncated=True`: every field then holds only
  what was seen in full (a list or extension cut by the gap is left out; `extensions` lists the
  extensions seen in full, a prefix of those offered), and the fingerprints are None, since a
  fingerprint of part of a hello would be a wrong one. A hello cut before its version (client)
  or cipher suite (server) is a HelloFailure instead.
- Inside an extension that is itself malformed (an SNI list whose lengths disagree, ...) the
  content is ignored, as if empty: the extension still counts in `extensions` and fingerprints.

Fingerprints follow their specifications: JA3 and JA3S (github.com/salesforce/ja3, README) and
JA4 (github.com/FoxIO-LLC/ja4, technical_details/JA4.md). GREASE values (RFC 8701) are left out
of all of them. Lists on the records are as offered, GREASE included, except supported_versions.
"""

# Hand-written: no maintained library parses hellos from a partial byte stream sans a TLS stack

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass

__all__ = [
    "CLIENT",
    "MAX_HELLO_BYTES",
    "MAX_RECORD",
    "SERVER",
    "ClientHello",
    "HelloFailure",
    "HelloParser",
    "ServerHello",
    "cipher_name",
    "is_grease",
    "ja3",
    "ja3s",
    "ja4",
    "looks_like_tls",
    "version_name",
]

CLIENT = "client"  # bytes the client sent (the ClientHello)
SERVER = "server"  # bytes the server sent (the ServerHello)

# RFC 5246 6.2.3: TLSCiphertext.length <= 2^14 + 2048 (RFC 8446 5.2 lowers it to 2^14 + 256);
# a hello travels in plaintext records (<= 2^14, RFC 8446 5.1), so this bound only ever widens
MAX_RECORD = 2**14 + 2048
# ClientHellos are ~250 bytes (curl, openssl) to ~2 KiB (post-quantum key shares); 64 KiB leaves
# room for large session tickets and ECH while bounding what one connection may hold
MAX_HELLO_BYTES = 65536

_CCS, _ALERT, _HANDSHAKE, _APPDATA = 20, 21, 22, 23
_RECORD_NAMES = {_CCS: "change_cipher_spec", _APPDATA: "application_data"}
_CLIENT_HELLO, _SERVER_HELLO = 1, 2
_HELLO_NAMES = {_CLIENT_HELLO: "ClientHello", _SERVER_HELLO: "ServerHello"}

_EXT_SERVER_NAME = 0x0000
_EXT_SUPPORTED_GROUPS = 0x000A
_EXT_EC_POINT_FORMATS = 0x000B
_EXT_SIGNATURE_ALGORITHMS = 0x000D
_EXT_ALPN = 0x0010
_EXT_SUPPORTED_VERSIONS = 0x002B

# RFC 8446 4.1.3: a ServerHello whose random is SHA-256("HelloRetryRequest") is a HelloRetryRequest
HRR_RANDOM = hashlib.sha256(b"HelloRetryRequest").digest()

_ALERTS = {  # RFC 8446 6 (the common ones)
    0: "close_notify",
    10: "unexpected_message",
    20: "bad_record_mac",
    22: "record_overflow",
    40: "handshake_failure",
    42: "bad_certificate",
    47: "illegal_parameter",
    48: "unknown_ca",
    50: "decode_error",
    51: "decrypt_error",
    70: "protocol_version",
    71: "insufficient_security",
    80: "internal_error",
    86: "inappropriate_fallback",
    90: "user_canceled",
    109: "missing_extension",
    110: "unsupported_extension",
    112: "unrecognized_name",
    116: "certificate_required",
    120: "no_application_protocol",
}


# -- records ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientHello:
    """The client's first handshake message (RFC 8446 4.1.2, RFC 5246 7.4.1.2)."""

    record_version: int  # the first record's version (0x0301 from most clients, RFC 8446 5.1)
    legacy_version: int  # ClientHello.legacy_version (0x0303 from TLS 1.3 clients)
    supported_versions: list[int]  # supported_versions extension, GREASE left out, in order
    cipher_suites: list[int]  # as offered, GREASE included
    extensions: list[int]  # extension types as offered, GREASE included
    server_name: str | None  # SNI host_name (ASCII; other bytes as \xNN escapes)
    alpn: list[str]  # offered ALPN protocol names, in order (ASCII; other bytes escaped)
    signature_algorithms: list[int]  # as offered
    supported_groups: list[int]  # as offered
    ec_point_formats: list[int]  # as offered
    ja3: str | None  # MD5 of ja3_string; None when truncated
    ja3_string: str | None
    ja4: str | None  # e.g. t13d1516h2_8daaf6152771_e5627efa2ab1; None when truncated
    ja4_r: str | None  # JA4 with its b and c parts unhashed
    truncated: bool  # the hello was not seen whole: see the module docstring
    ts_start: int  # ts of the feed that carried its first byte
    ts_end: int  # ts of the feed that completed it (or of the gap / close that cut it)


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerHello:
    """The server's first handshake message (RFC 8446 4.1.3, RFC 5246 7.4.1.3)."""

    legacy_version: int
    version: int | None  # selected: supported_versions (TLS 1.3) else legacy_version; None if cut
    cipher_suite: int
    alpn: str | None  # the selected ALPN protocol: TLS 1.2 only (1.3 encrypts it, RFC 8446 4.3.1)
    extensions: list[int]  # extension types in order
    hello_retry_request: bool  # a TLS 1.3 HelloRetryRequest (the client will send a 2nd hello)
    ja3s: str | None  # MD5 of ja3s_string; None when truncated
    ja3s_string: str | None
    truncated: bool
    ts_start: int
    ts_end: int


@dataclass(frozen=True, slots=True, kw_only=True)
class HelloFailure:
    """`side`'s bytes did not hold a usable hello; that side (or, for non-TLS bytes, the
    whole connection) is given up."""

    side: str
    reason: str
    ts: int


# -- small public helpers -----------------------------------------------------------------------


# RFC 8701 2: 0x0A0A, 0x1A1A, ... 0xFAFA (both bytes equal, low nibbles 0xA)
_GREASE = frozenset(0x0A0A + 0x1010 * i for i in range(16))


def is_grease(v: int) -> bool:
    """True for the 16 GREASE values of RFC 8701 2 (0x0A0A, 0x1A1A, ... 0xFAFA)."""
    return v in _GREASE


def looks_like_tls(data: bytes) -> bool:
    """True if `data` starts with a TLS handshake record header: type 22, version 3.0-3.4, a
    length of 1..MAX_RECORD, and (when present) a ClientHello or ServerHello inside."""
    if len(data) < 5 or data[0] != _HANDSHAKE or data[1] != 3 or data[2] > 4:
        return False
    if not 0 < (data[3] << 8 | data[4]) <= MAX_RECORD:
        return False
    return len(data) == 5 or data[5] in (_CLIENT_HELLO, _SERVER_HELLO)


_VERSIONS = {
    0x0304: "1.3",
    0x0303: "1.2",
    0x0302: "1.1",
    0x0301: "1.0",
    0x0300: "3.0",
    0x0002: "2.0",
}


def version_name(v: int) -> str:
    """The version as "1.3", "1.2", "1.1", "1.0", "3.0" or "2.0" (SSL), else in hex ("0x7f1c")."""
    return _VERSIONS.get(v) or f"0x{v:04x}"


# IANA TLS Cipher Suites registry: the suites current clients and servers offer
_CIPHERS = {
    0x1301: "TLS_AES_128_GCM_SHA256",
    0x1302: "TLS_AES_256_GCM_SHA384",
    0x1303: "TLS_CHACHA20_POLY1305_SHA256",
    0x1304: "TLS_AES_128_CCM_SHA256",
    0x1305: "TLS_AES_128_CCM_8_SHA256",
    0xC02B: "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    0xC02C: "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    0xC02F: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    0xC030: "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    0xCCA8: "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    0xCCA9: "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    0xCCAA: "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    0xC009: "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    0xC00A: "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    0xC013: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    0xC014: "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    0xC023: "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    0xC024: "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384",
    0xC027: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    0xC028: "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384",
    0x009E: "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
    0x009F: "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
    0x0033: "TLS_DHE_RSA_WITH_AES_128_CBC_SHA",
    0x0039: "TLS_DHE_RSA_WITH_AES_256_CBC_SHA",
    0x0067: "TLS_DHE_RSA_WITH_AES_128_CBC_SHA256",
    0x006B: "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256",
    0x009C: "TLS_RSA_WITH_AES_128_GCM_SHA256",
    0x009D: "TLS_RSA_WITH_AES_256_GCM_SHA384",
    0x002F: "TLS_RSA_WITH_AES_128_CBC_SHA",
    0x0035: "TLS_RSA_WITH_AES_256_CBC_SHA",
    0x003C: "TLS_RSA_WITH_AES_128_CBC_SHA256",
    0x003D: "TLS_RSA_WITH_AES_256_CBC_SHA256",
    0x000A: "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    0x0005: "TLS_RSA_WITH_RC4_128_SHA",
    0x0004: "TLS_RSA_WITH_RC4_128_MD5",
    0x00FF: "TLS_EMPTY_RENEGOTIATION_INFO_SCSV",
    0x5600: "TLS_FALLBACK_SCSV",
}


def cipher_name(code: int) -> str | None:
    """The IANA name of a common cipher suite, else None (the caller prints hex)."""
    return _CIPHERS.get(code)


# -- fingerprints -------------------------------------------------------------------------------


def _dec(values) -> str:
    return "-".join([str(v) for v in values if v not in _GREASE])


def _md5(s: str) -> str:
    return hashlib.md5(s.encode(), usedforsecurity=False).hexdigest()


def ja3(
    legacy_version: int,
    cipher_suites: list[int],
    extensions: list[int],
    supported_groups: list[int],
    ec_point_formats: list[int],
) -> tuple[str, str]:
    """(JA3 string, its MD5): SSLVersion,Cipher,SSLExtension,EllipticCurve,EllipticCurvePointFormat
    in decimal, '-' between values, GREASE left out (salesforce/ja3 README)."""
    s = ",".join(
        (
            str(legacy_version),
            _dec(cipher_suites),
            _dec(extensions),
            _dec(supported_groups),
            _dec(ec_point_formats),
        )
    )
    return s, _md5(s)


def ja3s(legacy_version: int, cipher_suite: int, extensions: list[int]) -> tuple[str, str]:
    """(JA3S string, its MD5): SSLVersion,Cipher,SSLExtension (salesforce/ja3 README)."""
    s = f"{legacy_version},{cipher_suite},{_dec(extensions)}"
    return s, _md5(s)


# JA4.md "TLS and DTLS Version"; anything else is "00"
_JA4_VERSIONS = {
    0x0304: "13",
    0x0303: "12",
    0x0302: "11",
    0x0301: "10",
    0x0300: "s3",
    0x0002: "s2",
    0xFEFF: "d1",
    0xFEFD: "d2",
    0xFEFC: "d3",
}


def _ja4_alpn(first: bytes | None) -> str:
    """JA4.md "ALPN Extension Value": first and last characters of the first ALPN value, or of
    its hex form when either end is not an ASCII letter or digit; "00" when there is none."""
    if not first:
        return "00"
    a, z = first[0], first[-1]
    if chr(a).isascii() and chr(a).isalnum() and chr(z).isascii() and chr(z).isalnum():
        return chr(a) + chr(z)  # a one-byte value gives its character twice
    h = first.hex()
    return h[0] + h[-1]


def _hash12(s: str) -> str:
    return hashlib.sha256(s.encode()).hexdigest()[:12]


def ja4(
    *,
    legacy_version: int,
    supported_versions: list[int],
    cipher_suites: list[int],
    extensions: list[int],
    signature_algorithms: list[int],
    first_alpn: bytes | None,
) -> tuple[str, str]:
    """(JA4, JA4_r) of a ClientHello over TCP, per FoxIO's technical_details/JA4.md."""
    ciphers = [c for c in cipher_suites if c not in _GREASE]
    exts = [e for e in extensions if e not in _GREASE]
    offered = [v for v in supported_versions if v not in _GREASE]
    # the highest supported_versions entry if the extension is there, else legacy_version; a
    # supported_versions of GREASE only (the spec is silent) falls back to legacy_version too
    version = max(offered) if _EXT_SUPPORTED_VERSIONS in exts and offered else legacy_version
    a = "t{}{}{:02d}{:02d}{}".format(
        _JA4_VERSIONS.get(version, "00"),
        "d" if _EXT_SERVER_NAME in exts else "i",
        min(len(ciphers), 99),
        min(len(exts), 99),  # SNI and ALPN count here, and only here
        _ja4_alpn(first_alpn),
    )
    b_raw = ",".join(f"{c:04x}" for c in sorted(ciphers))
    c_exts = ",".join(
        f"{e:04x}" for e in sorted(e for e in exts if e not in (_EXT_SERVER_NAME, _EXT_ALPN))
    )
    sigs = ",".join([f"{s:04x}" for s in signature_algorithms if s not in _GREASE])  # offered order
    c_raw = f"{c_exts}_{sigs}" if sigs else c_exts  # no signature algorithms: no underscore
    b = _hash12(b_raw) if b_raw else "000000000000"
    c = _hash12(c_raw) if c_exts else "000000000000"
    return f"{a}_{b}_{c}", f"{a}_{b_raw}_{c_raw}"


# -- bounded reading ----------------------------------------------------------------------------


class _Bad(Exception):
    """A length runs past the field that encloses it: the message is malformed."""


class _Cut(Exception):
    """The bytes seen end before the field does (only when parsing a truncated hello)."""


class _Reader:
    """Reads a field of buf that ends at a fence; nothing can move it past the fence (_Bad) or
    past the end of the bytes seen (_Cut)."""

    __slots__ = ("_buf", "_end", "_pos")

    def __init__(self, buf: bytes, pos: int, end: int) -> None:
        self._buf, self._pos, self._end = buf, pos, end

    @property
    def left(self) -> int:
        return self._end - self._pos

    @property
    def whole(self) -> bool:
        """Every byte up to the fence was seen."""
        return self._end <= len(self._buf)

    def _take(self, n: int) -> int:
        p = self._pos
        if p + n > self._end:
            raise _Bad
        if p + n > len(self._buf):
            raise _Cut
        self._pos = p + n
        return p

    def u8(self) -> int:
        return self._buf[self._take(1)]

    def u16(self) -> int:
        p = self._take(2)
        return self._buf[p] << 8 | self._buf[p + 1]

    def raw(self, n: int) -> bytes:
        p = self._take(n)
        return self._buf[p : p + n]

    def rest(self) -> bytes:
        return self.raw(self.left)

    def vec(self, size: int) -> _Reader:
        """A field with a `size`-byte length prefix (RFC 8446 3.4), as a reader fenced to it."""
        n = self.u8() if size == 1 else self.u16()
        p = self._pos
        if p + n > self._end:
            raise _Bad
        self._pos = p + n
        return _Reader(self._buf, p, p + n)

    def u16s(self) -> list[int]:
        """All of the field as 16-bit values (an odd length is _Bad)."""
        n = self.left
        if n % 2:
            raise _Bad
        return list(struct.unpack_from(f">{n // 2}H", self._buf, self._take(n)))

    def u8s(self) -> list[int]:
        return list(self.rest())


def _text(b: bytes) -> str:
    # RFC 6066 3 (host names) and RFC 7301 3.1 (ALPN ids) are ASCII in practice; keep other
    # bytes visible and unambiguous
    return b.decode("ascii", "backslashreplace")


class _Fields:
    """What a (possibly truncated) hello parse found so far."""

    __slots__ = (
        "alpn_raw",
        "cipher_suite",
        "cipher_suites",
        "ec_point_formats",
        "extensions",
        "exts_whole",
        "legacy_version",
        "random",
        "selected_version",
        "server_name",
        "signature_algorithms",
        "supported_groups",
        "supported_versions",
    )

    def __init__(self) -> None:
        self.legacy_version: int | None = None
        self.random = b""
        self.cipher_suites: list[int] = []
        self.cipher_suite: int | None = None
        self.extensions: list[int] = []
        self.exts_whole = False  # the extensions (or their absence) were seen in full
        self.server_name: str | None = None
        self.alpn_raw: list[bytes] = []
        self.signature_algorithms: list[int] = []
        self.supported_groups: list[int] = []
        self.ec_point_formats: list[int] = []
        self.supported_versions: list[int] = []
        self.selected_version: int | None = None


def _client_ext(f: _Fields, t: int, r: _Reader) -> None:
    """One ClientHello extension's content; a malformed one is ignored (module docstring)."""
    try:
        if t == _EXT_SERVER_NAME:  # RFC 6066 3
            names = r.vec(2)
            while names.left:
                if names.u8() != 0:  # only host_name (0) is defined; others cannot be skipped
                    break
                host = names.vec(2).rest()
                if f.server_name is None:
                    f.server_name = _text(host)
                break
        elif t == _EXT_ALPN:  # RFC 7301 3.1
            names = r.vec(2)
            alpn = []
            while names.left:
                alpn.append(names.vec(1).rest())
            f.alpn_raw = alpn
        elif t == _EXT_SIGNATURE_ALGORITHMS:  # RFC 8446 4.2.3
            f.signature_algorithms = r.vec(2).u16s()
        elif t == _EXT_SUPPORTED_GROUPS:  # RFC 8446 4.2.7 (RFC 4492 5.1.1: elliptic_curves)
            f.supported_groups = r.vec(2).u16s()
        elif t == _EXT_EC_POINT_FORMATS:  # RFC 4492 5.1.2
            f.ec_point_formats = r.vec(1).u8s()
        elif t == _EXT_SUPPORTED_VERSIONS:  # RFC 8446 4.2.1: a list in the ClientHello
            f.supported_versions = [v for v in r.vec(1).u16s() if v not in _GREASE]
    except (_Bad, _Cut):
        pass


def _server_ext(f: _Fields, t: int, r: _Reader) -> None:
    try:
        if t == _EXT_ALPN:  # RFC 7301 3.1: the server's list holds exactly one name
            names = r.vec(2)
            f.alpn_raw = [names.vec(1).rest()]
        elif t == _EXT_SUPPORTED_VERSIONS:  # RFC 8446 4.2.1: one version in the ServerHello
            f.selected_version = r.u16()
    except (_Bad, _Cut):
        pass


def _parse_hello(kind: int, body: bytes, length: int) -> tuple[_Fields, str | None]:
    """Parse a hello's body (`length` bytes declared, `body` the ones seen). Returns the fields
    and None, or the fields found so far and the stage at which the bytes were malformed."""
    f = _Fields()
    r = _Reader(body, 0, length)
    stage = "version"
    try:
        f.legacy_version = r.u16()
        stage = "random"
        f.random = r.raw(32)
        stage = "session id"
        if r.vec(1).left > 32:  # legacy_session_id <0..32> (RFC 8446 4.1.2, RFC 5246 7.4.1.2)
            raise _Bad
        if kind == _CLIENT_HELLO:
            stage = "cipher suites"
            f.cipher_suites = r.vec(2).u16s()
            stage = "compression methods"
            r.vec(1)
        else:
            stage = "cipher suite"
            f.cipher_suite = r.u16()
            stage = "compression method"
            r.u8()
        stage = "extensions"
        # RFC 5246 7.4.1.2 / 7.4.1.3: extensions are optional before TLS 1.3, and are there iff
        # bytes follow the compression method(s)
        if r.left:
            exts = r.vec(2)
            while exts.left:
                t = exts.u16()
                data = exts.vec(2)
                if not data.whole:
                    raise _Cut  # an extension cut by the gap is left out
                f.extensions.append(t)
                (_client_ext if kind == _CLIENT_HELLO else _server_ext)(f, t, data)
        # bytes after the extensions are ignored (RFC 8446 4.1.2 makes them an error; lenient)
        f.exts_whole = True
    except _Cut:
        pass
    except _Bad:
        return f, stage
    return f, None


# -- the parser ---------------------------------------------------------------------------------


class _Side:
    __slots__ = (
        "alert",
        "done",
        "hdr",
        "hello",
        "hs",
        "hs_len",
        "name",
        "rec_left",
        "rec_type",
        "record_version",
        "records",
        "ts_start",
    )

    def __init__(self, name: str, hello: int) -> None:
        self.name = name
        self.hello = hello  # the handshake type expected: ClientHello or ServerHello
        self.hdr = bytearray()  # a record header being assembled (< 5 bytes)
        self.rec_type = 0
        self.rec_left = 0  # body bytes of the current record still to come
        self.records = 0  # record headers seen whole
        self.record_version: int | None = None
        self.hs = bytearray()  # the hello's handshake bytes: 4-byte header, then the body
        self.hs_len: int | None = None  # the body length, once the header is seen
        self.alert = bytearray()
        self.ts_start: int | None = None
        self.done = False

    def free(self) -> None:
        self.done = True
        self.hdr = bytearray()
        self.hs = bytearray()
        self.alert = bytearray()


Hello = ClientHello | ServerHello | HelloFailure


class HelloParser:
    """One connection's hellos: feed each side's captured bytes and gaps as they come, until
    `done`. See the module docstring for what is reported when."""

    __slots__ = ("_given_up", "_max", "_sides")

    def __init__(self, max_hello_bytes: int = MAX_HELLO_BYTES) -> None:
        if max_hello_bytes < 1:
            raise ValueError("max_hello_bytes must be positive")
        self._max = max_hello_bytes
        self._sides = {CLIENT: _Side(CLIENT, _CLIENT_HELLO), SERVER: _Side(SERVER, _SERVER_HELLO)}
        self._given_up = False

    @property
    def done(self) -> bool:
        """Both hellos seen, or given up: the caller may stop feeding."""
        return self._given_up or all(s.done for s in self._sides.values())

    def buffered(self, side: str) -> int:
        """Bytes held for `side` between calls (at most max_hello_bytes + 7)."""
        s = self._side(side)
        return len(s.hdr) + len(s.hs) + len(s.alert)

    def _side(self, side: str) -> _Side:
        try:
            return self._sides[side]
        except KeyError:
            raise ValueError(f"side must be {CLIENT!r} or {SERVER!r}, not {side!r}") from None

    # -- input ----------------------------------------------------------------------------------

    def feed(self, side: str, data: bytes, ts: int) -> list[Hello]:
        """Bytes `side` sent, captured at `ts`; returns the hello or failure they completed."""
        s = self._side(side)
        if self._given_up or s.done or not data:
            return []
        if s.ts_start is None:
            s.ts_start = ts
        mv = memoryview(data).cast("B")
        i, n = 0, len(mv)
        while i < n:
            if s.rec_left == 0:
                start = len(s.hdr)
                take = min(5 - start, n - i)
                s.hdr += mv[i : i + take]
                i += take
                reason = self._check_header(s, start)
                if reason:
                    return self._fail(s, reason, ts, whole=s.records == 0)
                if len(s.hdr) == 5:
                    s.rec_type = s.hdr[0]
                    s.rec_left = s.hdr[3] << 8 | s.hdr[4]
                    if s.record_version is None:
                        s.record_version = s.hdr[1] << 8 | s.hdr[2]
                    s.records += 1
                    s.hdr.clear()
                continue
            take = min(s.rec_left, n - i)
            chunk = mv[i : i + take]
            i += take
            s.rec_left -= take
            if s.rec_type == _HANDSHAKE:
                out = self._handshake(s, chunk, ts)
            else:  # an alert (the header check lets nothing else through)
                s.alert += chunk[: 2 - len(s.alert)]
                out = self._alert(s, ts) if len(s.alert) == 2 else []
            if out:
                return out
        return []

    def gap(self, side: str, n: int, ts: int) -> list[Hello]:
        """`n` bytes `side` sent that were not captured: a hello in progress is cut there."""
        s = self._side(side)
        if n < 0:
            raise ValueError("a gap cannot be negative")
        if self._given_up or s.done or n == 0:
            return []
        return self._cut(s, ts, "a gap")

    def close(self, ts: int) -> list[Hello]:
        """The connection ended: a hello in progress is emitted truncated; the parser is done."""
        out: list[Hello] = []
        if not self._given_up:
            for s in self._sides.values():
                if not s.done and s.ts_start is not None:
                    out += self._cut(s, ts, "the connection's end")
                s.free()
        self._given_up = True
        return out

    # -- records and handshake messages ---------------------------------------------------------

    def _check_header(self, s: _Side, start: int) -> str | None:
        """Check the record header bytes from `start` on, as soon as each arrives."""
        h = s.hdr
        what = _HELLO_NAMES[s.hello]
        for k in range(start, len(h)):
            b = h[k]
            if k == 0 and b not in (_HANDSHAKE, _ALERT):
                if b in _RECORD_NAMES:
                    return f"{_RECORD_NAMES[b]} record before the {what}"
                return f"not a TLS record (first byte 0x{b:02x})"
            if k == 1 and b != 3:  # RFC 8446 5.1 / RFC 5246 6.2.1: ProtocolVersion {3, x}
                return f"not a TLS record (version major {b})"
            if k == 2 and b > 4:
                return f"not a TLS record (version 3.{b})"
            if k == 4:
                length = h[3] << 8 | b
                if length == 0:  # RFC 5246 6.2.1: no zero-length handshake or alert fragments
                    return "empty TLS record"
                if length > MAX_RECORD:
                    return f"TLS record of {length} bytes (more than 2^14 + 2048)"
                if h[0] == _ALERT and length != 2:  # a plaintext alert is 2 bytes (RFC 8446 6)
                    return f"alert record of {length} bytes before the {what}"
        return None

    def _handshake(self, s: _Side, chunk: memoryview, ts: int) -> list[Hello]:
        """Handshake record bytes: collect the first handshake message, then parse it. Messages
        may span records and several may share one (RFC 8446 5.1); only the first matters."""
        j, m = 0, len(chunk)
        while j < m:
            if s.hs_len is None:
                start = len(s.hs)
                take = min(4 - start, m - j)
                s.hs += chunk[j : j + take]
                j += take
                if start == 0 and s.hs[0] != s.hello:
                    what = _HELLO_NAMES[s.hello]
                    return self._fail(
                        s, f"handshake message type {s.hs[0]} where the {what} should be", ts
                    )
                if len(s.hs) < 4:
                    continue
                length = s.hs[1] << 16 | s.hs[2] << 8 | s.hs[3]
                if length > self._max:
                    return self._fail(
                        s, f"{_HELLO_NAMES[s.hello]} of {length} bytes (limit {self._max})", ts
                    )
                s.hs_len = length
            take = min(4 + s.hs_len - len(s.hs), m - j)
            s.hs += chunk[j : j + take]
            j += take
            if len(s.hs) == 4 + s.hs_len:
                return self._emit(s, ts, truncated=False)
        return []

    def _alert(self, s: _Side, ts: int) -> list[Hello]:
        level, desc = s.alert[0], s.alert[1]
        name = _ALERTS.get(desc, "unknown")
        return self._fail(
            s, f"alert {desc} ({name}, level {level}) before the {_HELLO_NAMES[s.hello]}", ts
        )

    def _cut(self, s: _Side, ts: int, why: str) -> list[Hello]:
        what = _HELLO_NAMES[s.hello]
        if s.hs_len is None:
            seen = "before" if s.ts_start is None else "at the start of"
            return self._fail(s, f"{why} {seen} the {what}", ts)
        return self._emit(s, ts, truncated=True, why=why)

    def _emit(self, s: _Side, ts: int, *, truncated: bool, why: str = "") -> list[Hello]:
        what = _HELLO_NAMES[s.hello]
        f, bad = _parse_hello(s.hello, bytes(s.hs[4:]), s.hs_len)
        if bad:
            return self._fail(s, f"malformed {what} ({bad})", ts)
        if s.hello == _CLIENT_HELLO:
            if f.legacy_version is None:
                return self._fail(s, f"{why} cut the {what} before its version", ts)
            out: Hello = _client_hello(f, s, ts, truncated)
        else:
            if f.cipher_suite is None:
                return self._fail(s, f"{why} cut the {what} before its cipher suite", ts)
            out = _server_hello(f, s, ts, truncated)
        s.free()
        return [out]

    def _fail(self, s: _Side, reason: str, ts: int, whole: bool = False) -> list[Hello]:
        s.free()
        if whole:  # not TLS at all: nothing more to look for on either side
            self._given_up = True
            for other in self._sides.values():
                other.free()
        return [HelloFailure(side=s.name, reason=reason, ts=ts)]


def _client_hello(f: _Fields, s: _Side, ts: int, truncated: bool) -> ClientHello:
    ja3_string = ja3_hash = ja4_fp = ja4_r = None
    if not truncated:
        ja3_string, ja3_hash = ja3(
            f.legacy_version, f.cipher_suites, f.extensions, f.supported_groups, f.ec_point_formats
        )
        ja4_fp, ja4_r = ja4(
            legacy_version=f.legacy_version,
            supported_versions=f.supported_versions,
            cipher_suites=f.cipher_suites,
            extensions=f.extensions,
            signature_algorithms=f.signature_algorithms,
            first_alpn=f.alpn_raw[0] if f.alpn_raw else None,
        )
    return ClientHello(
        record_version=s.record_version,
        legacy_version=f.legacy_version,
        supported_versions=f.supported_versions,
        cipher_suites=f.cipher_suites,
        extensions=f.extensions,
        server_name=f.server_name,
        alpn=[_text(a) for a in f.alpn_raw],
        signature_algorithms=f.signature_algorithms,
        supported_groups=f.supported_groups,
        ec_point_formats=f.ec_point_formats,
        ja3=ja3_hash,
        ja3_string=ja3_string,
        ja4=ja4_fp,
        ja4_r=ja4_r,
        truncated=truncated,
        ts_start=s.ts_start,
        ts_end=ts,
    )


def _server_hello(f: _Fields, s: _Side, ts: int, truncated: bool) -> ServerHello:
    if f.selected_version is not None:
        version = f.selected_version
    else:  # the unseen extensions may hold supported_versions (RFC 8446 4.2.1)
        version = f.legacy_version if f.exts_whole else None
    ja3s_string = ja3s_hash = None
    if not truncated:
        ja3s_string, ja3s_hash = ja3s(f.legacy_version, f.cipher_suite, f.extensions)
    return ServerHello(
        legacy_version=f.legacy_version,
        version=version,
        cipher_suite=f.cipher_suite,
        alpn=_text(f.alpn_raw[0]) if f.alpn_raw else None,
        extensions=f.extensions,
        hello_retry_request=f.random == HRR_RANDOM,
        ja3s=ja3s_hash,
        ja3s_string=ja3s_string,
        truncated=truncated,
        ts_start=s.ts_start,
        ts_end=ts,
    )
