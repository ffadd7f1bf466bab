"""Raw event bytes -> typed events. The layouts mirror bpf/hdrlog_abi.h field by field;
tests/unit/test_abi.py checks them against the BTF of the built objects."""

from __future__ import annotations

import functools
import struct

import msgspec

__all__ = [
    "EV_PACKET",
    "EV_SOCK_DATA",
    "EV_SOCK_CONN",
    "SOCK_ID_FIELDS",
    "SOCK_DATA_FIELDS",
    "SOCK_CONN_FIELDS",
    "SOCK_COUNTERS",
    "SockId",
    "SockDataEvent",
    "SockConnEvent",
    "ExecEvent",
    "ForkEvent",
    "SOCK_DATA_HEAD",
    "sock_id",
    "EXEC_FIELDS",
    "decode_sock_event",
    "PACKET_FIELDS",
    "PACKET_SIZE",
    "PACKET_STRIDE",
    "packet_rows",
    "PACKET_ROW",
    "packet_values",
    "PacketEvent",
    "DecodeError",
    "decode_packet",
    "COUNTERS",
    "MALFORMED",
]

EV_PACKET = 1
EV_SOCK_DATA = 2
EV_SOCK_CONN = 3
EV_EXEC = 4
EV_FORK = 5

# enum hl_packet_flag
PKT_HDR_TRUNCATED = 1 << 0
PKT_XDP = 1 << 1
PKT_IP_FRAGMENT = 1 << 2
PKT_L4 = 1 << 3
PKT_TCP_OPTS_BAD = 1 << 4

# enum hl_tcp_opt
TCPOPT_MSS = 1 << 0
TCPOPT_WSCALE = 1 << 1
TCPOPT_SACK_PERM = 1 << 2
TCPOPT_SACK = 1 << 3
TCPOPT_TIMESTAMP = 1 << 4

# enum hl_malformed, index = value
MALFORMED = (
    None,
    "eth.short",
    "vlan.short",
    "ip.short",
    "ip.version",
    "ip.hdr_len",
    "ip.len",
    "ipv6.ext_header",
    "ipv6.ext_depth",
    "l4.short",
    "tcp.hdr_len",
)

# enum hl_counter, index = value
COUNTERS = (
    "seen",
    "logged",
    "filtered_proto",
    "filtered_port",
    "filtered_net",
    "filtered_tcp_flags",
    "first_packets",
    "sampled",
    "ring_full",
    "malformed",
    "truncated",
)

# struct hl_packet: (name, struct format). Arrays stay bytes and are split on use.
PACKET_FIELDS: tuple[tuple[str, str], ...] = (
    # what changes from packet to packet
    ("type", "B"),
    ("_pad0", "x"),
    ("captured", "H"),
    ("len", "I"),
    ("ts_ns", "Q"),
    ("l4_payload", "I"),
    ("ip_len", "H"),
    ("ip_id", "H"),
    ("ip_csum", "H"),
    ("window", "H"),
    ("l4_csum", "H"),
    ("udp_len", "H"),
    ("seq", "I"),
    ("ack", "I"),
    ("ts_val", "I"),
    ("ts_ecr", "I"),
    ("icmp_rest", "I"),
    # what a flow usually keeps: the block PACKET_ROW reads as one bytes value
    ("direction", "B"),
    ("flags", "B"),
    ("malformed", "B"),
    ("ip_version", "B"),
    ("ifindex", "I"),
    ("eth_proto", "H"),
    ("eth_dst", "6s"),
    ("eth_src", "6s"),
    ("eth_type", "H"),
    ("vlan_tpid", "4s"),
    ("vlan_tci", "4s"),
    ("vlan_count", "B"),
    ("ip_proto", "B"),
    ("ttl", "B"),
    ("tos", "B"),
    ("ip_hdr_len", "B"),
    ("l4_hdr_len", "B"),
    ("ip6_nxt", "B"),
    ("ip6_ext_count", "B"),
    ("ip_opts_len", "B"),
    ("tcp_opts", "B"),
    ("ip_frag", "H"),
    ("saddr", "16s"),
    ("daddr", "16s"),
    ("ip6_flow", "I"),
    ("sport", "H"),
    ("dport", "H"),
    ("urg_ptr", "H"),
    ("tcp_flags", "H"),
    ("icmp_type", "B"),
    ("icmp_code", "B"),
    ("_pad1", "2x"),
    # options and extension headers
    ("ip6_ext", "8s"),
    ("ip6_frag_id", "I"),
    ("ip6_frag", "H"),
    ("mss", "H"),
    ("wscale", "B"),
    ("sack_count", "B"),
    ("_pad2", "2x"),
    ("ip_opts", "40s"),
    ("sack", "32s"),
    ("_pad3", "4x"),
)


# Little-endian, no implicit alignment: the C struct's padding is spelled out above.
_PACKET = struct.Struct("<" + "".join(f for _, f in PACKET_FIELDS))
PACKET_SIZE = _PACKET.size
# A ring record of a packet without payload: 8-byte ring header, the struct, 8-byte alignment.
PACKET_STRIDE = (PACKET_SIZE + 8 + 7) & ~7
_CAPTURED = [n for n, f in PACKET_FIELDS if not f.endswith("x")].index("captured")

# A packet as packets.PacketEncoder reads it once its flow's line is known: the per-packet
# values, then the flow's block (direction .. _pad1) as one bytes value, the row's last.
_NAMES = [n for n, _ in PACKET_FIELDS]
_BLOCK_START, _BLOCK_END = _NAMES.index("direction"), _NAMES.index("ip6_ext")
_PER_PACKET, _BLOCK, _REST = ("".join(f for _, f in PACKET_FIELDS[a:b])
                              for a, b in ((0, _BLOCK_START), (_BLOCK_START, _BLOCK_END), (_BLOCK_END, None)))
PACKET_ROW = struct.Struct(f"<{_PER_PACKET}{struct.calcsize('<' + _BLOCK)}s{struct.calcsize('<' + _REST)}x")


@functools.cache
def packet_rows(stride: int) -> struct.Struct:
    """PACKET_ROW of each ring record of a batch whose records are `stride` bytes apart (all
    of one size: the struct and room for a payload of up to the snaplen)."""
    return struct.Struct(f"<8x{PACKET_ROW.format[1:]}{stride - 8 - PACKET_SIZE}x")


class DecodeError(ValueError):
    """An event whose bytes do not fit its layout."""


class PacketEvent(msgspec.Struct, frozen=True, array_like=True):
    """struct hl_packet, decoded; `payload` holds the captured L4 payload bytes."""

    type: int
    captured: int
    len: int
    ts_ns: int
    l4_payload: int
    ip_len: int
    ip_id: int
    ip_csum: int
    window: int
    l4_csum: int
    udp_len: int
    seq: int
    ack: int
    ts_val: int
    ts_ecr: int
    icmp_rest: int
    direction: int
    flags: int
    malformed: int
    ip_version: int
    ifindex: int
    eth_proto: int
    eth_dst: bytes
    eth_src: bytes
    eth_type: int
    vlan_tpid: bytes
    vlan_tci: bytes
    vlan_count: int
    ip_proto: int
    ttl: int
    tos: int
    ip_hdr_len: int
    l4_hdr_len: int
    ip6_nxt: int
    ip6_ext_count: int
    ip_opts_len: int
    tcp_opts: int
    ip_frag: int
    saddr: bytes
    daddr: bytes
    ip6_flow: int
    sport: int
    dport: int
    urg_ptr: int
    tcp_flags: int
    icmp_type: int
    icmp_code: int
    ip6_ext: bytes
    ip6_frag_id: int
    ip6_frag: int
    mss: int
    wscale: int
    sack_count: int
    ip_opts: bytes
    sack: bytes
    payload: bytes

    def vlan_tags(self) -> list[tuple[int, int]]:
        """(TPID, TCI) of each tag, outermost first."""
        tpids = struct.unpack("<2H", self.vlan_tpid)
        tcis = struct.unpack("<2H", self.vlan_tci)
        return [(tpids[i], tcis[i]) for i in range(min(self.vlan_count, 2))]

    def sack_blocks(self) -> list[tuple[int, int]]:
        edges = struct.unpack("<8I", self.sack)
        return [(edges[2 * i], edges[2 * i + 1]) for i in range(min(self.sack_count, 4))]

    def ipv6_ext_headers(self) -> list[int]:
        return list(self.ip6_ext[: min(self.ip6_ext_count, 8)])


def packet_values(buf: bytes | memoryview, offset: int = 0, length: int | None = None) -> tuple[tuple, bytes]:
    """struct hl_packet's values (PACKET_FIELDS without padding) and its payload, checked."""
    avail = (len(buf) - offset) if length is None else length
    if avail < PACKET_SIZE:
        raise DecodeError(f"packet event of {avail} bytes, the layout needs {PACKET_SIZE}")
    values = _PACKET.unpack_from(buf, offset)
    if values[0] != EV_PACKET:
        raise DecodeError(f"event type {values[0]} is not a packet ({EV_PACKET})")
    captured = values[_CAPTURED]
    if captured > avail - PACKET_SIZE:
        raise DecodeError(f"packet event claims {captured} payload bytes, {avail - PACKET_SIZE} follow")
    start = offset + PACKET_SIZE
    return values, bytes(buf[start : start + captured])


def decode_packet(buf: bytes | memoryview, offset: int = 0, length: int | None = None) -> PacketEvent:
    """Decode one struct hl_packet (and its payload) at `offset` of `buf`."""
    values, payload = packet_values(buf, offset, length)
    return PacketEvent(*values, payload)



# ---- socket syscalls (bpf/socket.bpf.c) ----

# enum hl_sock_counter, index = value
SOCK_COUNTERS = (
    "events",
    "conn_events",
    "filtered_pid",
    "filtered_cgroup",
    "filtered_comm",
    "filtered_port",
    "filtered_family",
    "not_l7",
    "ring_full",
    "cut",
    "read_failed",
    "tls_no_fd",
    "tls_ciphertext",
)

CONN_CONNECT, CONN_ACCEPT, CONN_CLOSE = 1, 2, 3  # enum hl_conn_kind
SD_NO_DATA = 1 << 0  # enum hl_sock_data_flag
SD_READ_FAILED = 1 << 1
SD_TLS = 1 << 2  # plaintext from the TLS library
SD_TLS_RAW = 1 << 3  # TLS records off the socket (the handshake)
SYSCALLS = (None, "read", "write", "readv", "writev", "sendto", "recvfrom", "sendmsg", "recvmsg",
            "sendfile", "connect", "accept", "accept4", "close", "SSL_read", "SSL_write")  # fmt: skip

SOCK_ID_FIELDS: tuple[tuple[str, str], ...] = (
    ("ts_ns", "Q"),
    ("sock", "Q"),
    ("cgroup_id", "Q"),
    ("tgid", "I"),
    ("tid", "I"),
    ("fd", "I"),
    ("netns", "I"),
    ("family", "H"),
    ("lport", "H"),
    ("rport", "H"),
    ("protocol", "B"),
    ("_pad0", "x"),
    ("laddr", "16s"),
    ("raddr", "16s"),
    ("comm", "16s"),
)
SOCK_DATA_FIELDS: tuple[tuple[str, str], ...] = (
    ("type", "B"),
    ("direction", "B"),
    ("syscall", "B"),
    ("flags", "B"),
    ("captured", "I"),
    ("len", "Q"),
    ("id", "".join(f for _, f in SOCK_ID_FIELDS)),
)
SOCK_CONN_FIELDS: tuple[tuple[str, str], ...] = (
    ("type", "B"),
    ("kind", "B"),
    ("syscall", "B"),
    ("_pad0", "x"),
    ("ret", "i"),
    ("id", "".join(f for _, f in SOCK_ID_FIELDS)),
)
EXEC_FIELDS: tuple[tuple[str, str], ...] = (("type", "B"), ("_pad0", "3x"), ("tgid", "I"), ("ts_ns", "Q"))
_EXEC = struct.Struct("<" + "".join(f for _, f in EXEC_FIELDS))
_SOCK_DATA = struct.Struct("<" + "".join(f for _, f in SOCK_DATA_FIELDS))
_SOCK_CONN = struct.Struct("<" + "".join(f for _, f in SOCK_CONN_FIELDS))
SOCK_DATA_SIZE = _SOCK_DATA.size
SOCK_CONN_SIZE = _SOCK_CONN.size
_AF_INET = 2


class SockId(msgspec.Struct, frozen=True, array_like=True):
    """struct hl_sock_id but its time (the event's ts_ns): who moved bytes on which connection
    (local and remote endpoint). The same bytes give the same object (decode_sock_event keeps
    them), so a connection's events share one."""

    sock: int
    cgroup_id: int
    tgid: int
    tid: int
    fd: int
    netns: int
    family: int
    lport: int
    rport: int
    protocol: int
    laddr: bytes
    raddr: bytes
    comm: bytes

    @property
    def local_ip(self) -> bytes:
        return _ip(self.family, self.laddr)

    @property
    def remote_ip(self) -> bytes:
        return _ip(self.family, self.raddr)

    @property
    def command(self) -> str:
        return self.comm.split(b"\0", 1)[0].decode(errors="replace")


def _ip(family: int, raw: bytes) -> bytes:
    """4 bytes for IPv4 and IPv4-mapped IPv6 (a dual-stack socket's IPv4 peer), else 16."""
    if family == _AF_INET:
        return raw[:4]
    if raw[:12] == b"\0" * 10 + b"\xff\xff":
        return raw[12:]
    return raw


class SockDataEvent(msgspec.Struct, frozen=True):
    ts_ns: int
    direction: int  # DIR_INGRESS: the process read it; DIR_EGRESS: it wrote it
    syscall: int
    flags: int
    len: int  # bytes the syscall moved; `data` is a prefix of them
    id: SockId
    data: bytes


class ExecEvent(msgspec.Struct, frozen=True):
    tgid: int
    ts_ns: int


class ForkEvent(msgspec.Struct, frozen=True):
    """A process the filters want started a child (tgid is the child's)."""

    tgid: int
    ts_ns: int


class SockConnEvent(msgspec.Struct, frozen=True):
    ts_ns: int
    kind: int  # CONN_CONNECT, CONN_ACCEPT, CONN_CLOSE
    syscall: int
    ret: int
    id: SockId


# The fields before struct hl_sock_id, and its ts_ns; the rest of it is read once per distinct
# bytes (a connection's thread): SOCK_IDS maps them to their SockId.
SOCK_DATA_HEAD = struct.Struct("<" + "".join(f for _, f in SOCK_DATA_FIELDS[:-1]) + "Q")
_CONN_HEAD = struct.Struct("<" + "".join(f for _, f in SOCK_CONN_FIELDS[:-1]) + "Q")
_ID_REST = struct.Struct("<" + "".join(f for _, f in SOCK_ID_FIELDS[1:]))
SOCK_ID_BYTES = _ID_REST.size
IDS_MAX = 65536  # distinct identities remembered (then it starts over)
SOCK_IDS: dict[bytes, SockId] = {}  # an identity's bytes -> its SockId (read directly on the hot path)


def sock_id(buf: bytes | memoryview, start: int) -> SockId:
    key = bytes(buf[start : start + SOCK_ID_BYTES])
    sid = SOCK_IDS.get(key)
    if sid is None:
        if len(SOCK_IDS) >= IDS_MAX:
            SOCK_IDS.clear()
        sid = SOCK_IDS[key] = SockId(*_ID_REST.unpack(key))
    return sid


def decode_sock_event(buf: bytes | memoryview, offset: int = 0, length: int | None = None):
    """Decode a struct hl_sock_data (with its bytes) or struct hl_sock_conn."""
    avail = (len(buf) - offset) if length is None else length
    if avail < 1:
        raise DecodeError("empty event")
    kind = buf[offset]
    if kind == EV_SOCK_DATA:
        if avail < SOCK_DATA_SIZE:
            raise DecodeError(f"socket data event of {avail} bytes, the layout needs {SOCK_DATA_SIZE}")
        _, direction, syscall, flags, captured, n, ts = SOCK_DATA_HEAD.unpack_from(buf, offset)
        if captured > avail - SOCK_DATA_SIZE:
            raise DecodeError(f"socket data event claims {captured} bytes, {avail - SOCK_DATA_SIZE} follow")
        start = offset + SOCK_DATA_SIZE
        return SockDataEvent(ts, direction, syscall, flags, n, sock_id(buf, offset + SOCK_DATA_HEAD.size),
                             bytes(buf[start : start + captured]))
    if kind == EV_SOCK_CONN:
        if avail < SOCK_CONN_SIZE:
            raise DecodeError(f"socket conn event of {avail} bytes, the layout needs {SOCK_CONN_SIZE}")
        _, kind, syscall, ret, ts = _CONN_HEAD.unpack_from(buf, offset)
        return SockConnEvent(ts, kind, syscall, ret, sock_id(buf, offset + _CONN_HEAD.size))
    if kind == EV_EXEC or kind == EV_FORK:
        if avail < _EXEC.size:
            raise DecodeError(f"exec event of {avail} bytes, the layout needs {_EXEC.size}")
        _, tgid, ts = _EXEC.unpack_from(buf, offset)
        return ExecEvent(tgid, ts) if kind == EV_EXEC else ForkEvent(tgid, ts)
    raise DecodeError(f"event type {kind} is not a socket event")
