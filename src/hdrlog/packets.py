"""struct hl_packet values -> one `packet` record, written straight as a JSON line.

A packet record has up to ~60 fields and a busy host sends ~100k packets a second, so this
path does not build an object per packet: the text is assembled from fragments. What is
constant for a flow (interface, Community ID, MACs, VLAN tags, addresses, ports) is
formatted once per flow and cached; what changes per packet is formatted from lookup
tables (TOS, IP flags, TCP flags) and a few %-formats.

The usual packet (TCP, no IP options or extension headers, timestamps or no options) goes
faster still: the kernel puts what a flow keeps from packet to packet in one block of the
event, and the first packet with a given block leaves a template of the whole line with
only the per-packet numbers to fill (see PacketEncoder.lines). Field names and types are
those of records.PacketRecord, in its order; tests decode every line into PacketRecord
strictly, and check the template path against encoding each packet whole.
"""

from __future__ import annotations

import logging

import msgspec

from hdrlog import decode as D
from hdrlog.clock import Clock
from hdrlog.interfaces import ifname
from hdrlog.stitch.flows import address_text, community_id

__all__ = ["PacketEncoder", "TRANSPORTS", "VALUE_NAMES"]

log = logging.getLogger(__name__)

TRANSPORTS = {1: "icmp", 6: "tcp", 17: "udp", 58: "ipv6-icmp", 132: "sctp", 47: "gre"}
_ECHO_V4 = {0, 8, 13, 14, 15, 16, 17, 18}  # types that carry identifier and sequence
_ECHO_V6 = {128, 129}
_TPID_8021AD = (0x88A8, 0x9100)
_FLOW_KEY_FLAGS = D.PKT_L4 | D.PKT_IP_FRAGMENT | D.PKT_HDR_TRUNCATED
# Flows whose constant text is kept; past this the cache starts over (a few hundred bytes each).
FLOW_TEXT_CACHE = 65536

# The order encode() unpacks struct hl_packet's values in; checked against decode.PACKET_FIELDS.
VALUE_NAMES = (
    "type captured len ts_ns l4_payload ip_len ip_id ip_csum window l4_csum udp_len seq ack ts_val ts_ecr "
    "icmp_rest direction flags malformed ip_version ifindex eth_proto eth_dst eth_src eth_type vlan_tpid "
    "vlan_tci vlan_count ip_proto ttl tos ip_hdr_len l4_hdr_len ip6_nxt ip6_ext_count ip_opts_len tcp_opts "
    "ip_frag saddr daddr ip6_flow sport dport urg_ptr tcp_flags icmp_type icmp_code ip6_ext ip6_frag_id "
    "ip6_frag mss wscale sack_count ip_opts sack"
).split()
assert VALUE_NAMES == [n for n, f in D.PACKET_FIELDS if not f.endswith("x")], "PACKET_FIELDS changed"

_json = msgspec.json.encode


def _s(value: str) -> str:
    """A JSON string literal (names such as interfaces may hold any character)."""
    return _json(value).decode()


def _b(flag: int) -> str:
    return "true" if flag else "false"


def _ds(prefix: str, tos: int) -> str:
    return f'"{prefix}":{tos},"{prefix}.dscp":{tos >> 2},"{prefix}.ecn":{tos & 3},'


_TOS4 = [_ds("ip.dsfield", t).encode() for t in range(256)]
_TOS6 = [_ds("ipv6.tclass", t).encode() for t in range(256)]
_IP_FLAGS = [
    f'"ip.flags":{f},"ip.flags.rb":{_b(f & 4)},"ip.flags.df":{_b(f & 2)},"ip.flags.mf":{_b(f & 1)},'.encode()
    for f in range(8)
]
_TCP_FLAG_NAMES = ((0x100, "ae"), (0x80, "cwr"), (0x40, "ece"), (0x20, "urg"), (0x10, "ack"),
                   (0x08, "push"), (0x04, "reset"), (0x02, "syn"), (0x01, "fin"))  # fmt: skip


def _tcp_flags_text(fl: int) -> bytes:
    return (f'"tcp.flags":{fl},' + "".join(f'"tcp.flags.{n}":{_b(fl & bit)},' for bit, n in _TCP_FLAG_NAMES)).encode()


_TCP_FLAGS = [_tcp_flags_text(f) for f in range(512)]


def _slots(fmt: bytes) -> tuple[bytes, bytes]:
    """A line's format with per-packet slots marked %D, %09D or %S -> (the format of the whole line,
    the format of a flow's template: what the flow keeps filled in, the per-packet slots left)."""
    marks = ((b"%09D", b"09d"), (b"%D", b"d"), (b"%S", b"s"))
    whole, template = fmt, fmt
    for mark, conv in marks:
        whole = whole.replace(mark, b"%" + conv)
        template = template.replace(mark, b"%%" + conv)
    return whole, template


# Per-packet slots in capitals: a flow's template leaves them for each packet (see PacketEncoder.lines).
_HEAD, _HEAD_T = _slots(b'{"ts":"%S.%09DZ","type":"packet",%s"frame.len":%D,%s')
_IPV4, _IPV4_T = _slots(b'"ip.version":4,"ip.hdr_len":%d,%s"ip.len":%D,"ip.id":%D,%s"ip.frag_offset":%d,"ip.ttl":%d,'
                        b'"ip.checksum":%D,')  # fmt: skip
_IPV6, _IPV6_T = _slots(b'"ipv6.version":6,%s"ipv6.flow":%d,"ipv6.plen":%D,"ipv6.nxt":%d,"ipv6.hlim":%d,')
_TCP, _TCP_T = _slots(b'"tcp.seq_raw":%D,"tcp.ack_raw":%D,"tcp.hdr_len":%d,%s"tcp.window_size_value":%D,'
                      b'"tcp.checksum":%D,"tcp.urgent_pointer":%d,"tcp.len":%D,')  # fmt: skip
_TCP_TS, _TCP_TS_T = _slots(b'"tcp.options.timestamp.tsval":%D,"tcp.options.timestamp.tsecr":%D,')
# A template is kept for the usual packet: TCP without IP options, extension headers or payload,
# its options none or timestamps only. Its kind says which per-packet values it takes.
_V4, _V4_TS, _V6, _V6_TS = range(4)
_NOT_FAST = D.PKT_HDR_TRUNCATED | D.PKT_TCP_OPTS_BAD | D.PKT_IP_FRAGMENT
# Templates kept (each ~1.4 KB); past this the cache starts over.
TEMPLATE_CACHE = 4096


def _esc(text: bytes) -> bytes:
    """Constant text for a template (a %-format): names such as interfaces may hold a %."""
    return text.replace(b"%", b"%%")


def _ip_options(opts: bytes) -> list[int]:
    """Option types in order (RFC 791 3.1): EOL ends, NOP is one byte, others carry a length."""
    types, i = [], 0
    while i < len(opts):
        t = opts[i]
        types.append(t)
        if t == 0:
            break
        if t == 1:
            i += 1
            continue
        if i + 1 >= len(opts) or opts[i + 1] < 2:
            break
        i += opts[i + 1]
    return types


def _ints(values) -> str:
    return "[" + ",".join(str(x) for x in values) + "]"


class PacketEncoder:
    """Packet events -> JSON lines; caches interface names, per-flow text and per-flow templates."""

    def __init__(self, clock: Clock | None = None):
        self.clock = clock or Clock()
        self.decode_errors = 0
        self._ifaces: dict[tuple[int, int, int], bytes] = {}
        self._flows: dict[tuple, tuple[bytes, bytes, bytes]] = {}
        # a flow's block (decode.PACKET_ROW) -> (template, kind), or None: no template for such packets
        self._templates: dict[bytes, tuple[bytes, int] | None] = {}
        self._span = (b"", 0, 0)  # Clock.second_span() of the last packet formatted

    def lines(self, batch) -> list[bytes]:
        """A ring batch of packet events -> their JSON lines, in order (undecodable events counted).

        A packet whose flow block has a template is read as decode.PACKET_ROW (its per-packet
        values and the block as one bytes value) and formatted into it: one dict lookup and one
        %-format of about a dozen numbers. Others take encode(), which keeps a template when it can."""
        data = batch.data
        if batch.stride and batch.sizes[0] >= D.PACKET_SIZE:
            rows = D.packet_rows(batch.stride).iter_unpack(data)
        else:
            rows = (D.PACKET_ROW.unpack_from(data, off) if n >= D.PACKET_SIZE else None for off, n in batch.records)
        templates = self._templates
        second_text, start, end = self._span
        out = []
        for off, n, row in zip(batch.offsets, batch.sizes, rows):
            t = row and row[0] == D.EV_PACKET and not row[1] and templates.get(row[-1])
            if not t:
                if (line := self._first(data, off, n, row)) is not None:
                    out.append(line)
                continue
            (_, _, flen, ts, l4_payload, ip_len, ip_id, ip_csum, window, csum, _, seq, ack, ts_val, ts_ecr, _,
             _) = row  # fmt: skip
            if not start <= ts < end:
                second_text, start, end = self._span = self.clock.second_span(ts)
            ns = ts - start
            fmt, kind = t
            if kind == _V4_TS:
                out.append(fmt % (second_text, ns, flen, ip_len, ip_id, ip_csum, seq, ack, window, csum, l4_payload,
                                  ts_val, ts_ecr))  # fmt: skip
            elif kind == _V4:
                out.append(fmt % (second_text, ns, flen, ip_len, ip_id, ip_csum, seq, ack, window, csum, l4_payload))
            elif kind == _V6_TS:
                out.append(fmt % (second_text, ns, flen, ip_len, seq, ack, window, csum, l4_payload, ts_val, ts_ecr))
            else:
                out.append(fmt % (second_text, ns, flen, ip_len, seq, ack, window, csum, l4_payload))
        return out

    def _first(self, data: bytes, off: int, n: int, row: tuple | None) -> bytes | None:
        """A packet lines() has no template for: decoded whole, then its line from encode()."""
        try:
            v, payload = D.packet_values(data, off, n)
        except D.DecodeError as e:
            self.decode_errors += 1
            log.debug("undecodable packet event: %s", e)
            return None
        # packets with payload come here too: a block already seen is not made into a template again
        block = None if row is None or row[-1] in self._templates else row[-1]
        return self.encode(v, payload, block)

    def _iface(self, ifindex: int, direction: int, xdp: int) -> bytes:
        text = (f'"frame.interface_name":{_s(ifname(ifindex))},'
                f'"network.direction":"{"egress" if direction else "ingress"}",'
                f'"hdrlog.hook":"{"xdp" if xdp else "tc"}",').encode()  # fmt: skip
        self._ifaces[(ifindex, direction, xdp)] = text
        return text

    def encode(self, v: tuple, payload: bytes = b"", block: bytes | None = None) -> bytes:
        """One JSON line (no newline) for struct hl_packet's values `v` and its payload bytes.
        With the packet's flow `block` (decode.PACKET_ROW), a template for the flow's next
        packets is kept when the packet is of the usual kind."""
        (_, _, flen, ts_ns, l4_payload, ip_len, ip_id, ip_csum, window, l4_csum, udp_len, seq, ack, ts_val, ts_ecr,
         icmp_rest, direction, flags, malformed, ip_version, ifindex, eth_proto, eth_dst, eth_src, eth_type,
         vlan_tpid, vlan_tci, vlan_count, ip_proto, ttl, tos, ip_hdr_len, l4_hdr_len, ip6_nxt, ip6_ext_count,
         ip_opts_len, tcp_opts, ip_frag, saddr, daddr, ip6_flow, sport, dport, urg_ptr, tcp_flags, icmp_type,
         icmp_code, ip6_ext, ip6_frag_id, ip6_frag, mss, wscale, sack_count, ip_opts, sack) = v  # fmt: skip
        xdp = flags & D.PKT_XDP
        iface = self._ifaces.get((ifindex, direction, xdp)) or self._iface(ifindex, direction, xdp)
        key = (flags & _FLOW_KEY_FLAGS, malformed, eth_type, eth_dst, eth_src, vlan_count, vlan_tpid, vlan_tci,
               eth_proto, ip_version, ip_proto, saddr, daddr, sport, dport, icmp_type, icmp_code)  # fmt: skip
        flow = self._flows.get(key) or self._flow_text(key)
        tcp = ip_proto == 6 and flags & D.PKT_L4
        tcp_flags_text = b""
        if tcp:
            tcp_flags_text = _TCP_FLAGS[tcp_flags] if tcp_flags < 512 else _tcp_flags_text(tcp_flags)
        if block is not None:
            if (tcp and ip_version in (4, 6) and not (flags & _NOT_FAST or malformed or ip_opts_len or ip6_ext_count)
                    and tcp_opts | D.TCPOPT_TIMESTAMP == D.TCPOPT_TIMESTAMP):  # fmt: skip
                t = [_HEAD_T % (_esc(iface), _esc(flow[0]))]
                if ip_version == 4:
                    t.append(_IPV4_T % (ip_hdr_len, _TOS4[tos], _IP_FLAGS[ip_frag >> 13], ip_frag & 0x1FFF, ttl))
                else:
                    t.append(_IPV6_T % (_TOS6[tos], ip6_flow, ip6_nxt, ttl))
                t += (_esc(flow[1]), _esc(flow[2]), _TCP_T % (l4_hdr_len, tcp_flags_text, urg_ptr))
                if tcp_opts:
                    t.append(_TCP_TS_T % ())
                kind = (_V4 if ip_version == 4 else _V6) + (1 if tcp_opts else 0)
                template = (b"".join(t)[:-1] + b"}", kind)
            else:
                template = None
            if len(self._templates) >= TEMPLATE_CACHE:
                self._templates.clear()
            self._templates[block] = template
        second_text, start, end = self._span
        if not start <= ts_ns < end:
            second_text, start, end = self._span = self.clock.second_span(ts_ns)
        parts = [_HEAD % (second_text, ts_ns - start, iface, flen, flow[0])]
        if ip_version == 4:
            parts.append(_IPV4 % (ip_hdr_len, _TOS4[tos], ip_len, ip_id, _IP_FLAGS[ip_frag >> 13], ip_frag & 0x1FFF,
                                  ttl, ip_csum))  # fmt: skip
            parts.append(flow[1])
            if ip_opts_len:
                opts = ip_opts[:ip_opts_len]
                parts.append(f'"ip.opt.type":{_ints(_ip_options(opts))},"ip.options":"{opts.hex()}",'.encode())
        elif ip_version == 6:
            parts.append(_IPV6 % (_TOS6[tos], ip6_flow, ip_len, ip6_nxt, ttl))
            parts.append(flow[1])
            if ip6_ext_count:
                ext = list(ip6_ext[: min(ip6_ext_count, 8)])
                text = f'"ipv6.ext_headers":{_ints(ext)},'
                if 44 in ext:
                    text += (f'"ipv6.fraghdr.offset":{ip6_frag >> 3},"ipv6.fraghdr.more":{_b(ip6_frag & 1)},'
                             f'"ipv6.fraghdr.ident":{ip6_frag_id},')  # fmt: skip
                parts.append(text.encode())
        if flags & D.PKT_L4:
            parts.append(flow[2])
            if tcp:
                parts.append(_TCP % (seq, ack, l4_hdr_len, tcp_flags_text, window, l4_csum, urg_ptr, l4_payload))
                if tcp_opts:
                    parts.append(self._tcp_options(tcp_opts, mss, wscale, sack_count, sack, ts_val, ts_ecr))
                if flags & D.PKT_TCP_OPTS_BAD:
                    parts.append(b'"tcp.options.malformed":true,')
                if payload:
                    parts.append(b'"tcp.payload":"%s",' % payload.hex().encode())
            elif ip_proto == 17:
                parts.append(b'"udp.length":%d,"udp.checksum":%d,' % (udp_len, l4_csum))
                if payload:
                    parts.append(b'"udp.payload":"%s",' % payload.hex().encode())
            else:
                parts.append(self._icmp(ip_proto, icmp_type, l4_csum, icmp_rest))
                if payload:
                    parts.append(b'"data.data":"%s",' % payload.hex().encode())
        line = b"".join(parts)
        return line[:-1] + b"}"

    def _flow_text(self, key: tuple) -> tuple[bytes, bytes, bytes]:
        """(text before the IP fields, IP protocol and addresses, ports / ICMP type and code)."""
        (kflags, malformed, eth_type, eth_dst, eth_src, vlan_count, vlan_tpid, vlan_tci, eth_proto, ip_version,
         proto, saddr, daddr, sport, dport, icmp_type, icmp_code) = key  # fmt: skip
        head, l3, l4 = [], "", ""
        alen = 4 if ip_version == 4 else 16
        if ip_version == 4 or (ip_version == 6 and not malformed):
            head.append(f'"network.transport":{_s(TRANSPORTS.get(proto, str(proto)))},')
            cid = None
            if kflags & D.PKT_L4:
                ports = (icmp_type, icmp_code) if proto in (1, 58) else (sport, dport)
                cid = community_id(proto, saddr[:alen], daddr[:alen], *ports)
            elif not (kflags & D.PKT_IP_FRAGMENT or proto in (6, 17, 132)):
                cid = community_id(proto, saddr[:alen], daddr[:alen], None, None)
            # (ports not seen: a Community ID without them would name another flow)
            if cid:
                head.insert(0, f'"network.community_id":{_s(cid)},')
        if kflags & D.PKT_HDR_TRUNCATED:
            head.append('"packet.truncated":true,')
        if malformed:
            name = D.MALFORMED[malformed] if malformed < len(D.MALFORMED) else str(malformed)
            head.append(f'"packet.malformed":{_s(name)},')
        if eth_type:
            head.append(f'"eth.dst":"{eth_dst.hex(":")}","eth.src":"{eth_src.hex(":")}","eth.type":{eth_type},')
        if vlan_count:
            head.append(self._vlan(vlan_count, vlan_tpid, vlan_tci, eth_proto))
        if ip_version == 4:
            l3 = f'"ip.proto":{proto},"ip.src":"{address_text(saddr[:4])}","ip.dst":"{address_text(daddr[:4])}",'
        elif ip_version == 6:
            l3 = f'"ipv6.src":"{address_text(saddr)}","ipv6.dst":"{address_text(daddr)}",'
        if proto == 6:
            l4 = f'"tcp.srcport":{sport},"tcp.dstport":{dport},'
        elif proto == 17:
            l4 = f'"udp.srcport":{sport},"udp.dstport":{dport},'
        elif proto == 1:
            l4 = f'"icmp.type":{icmp_type},"icmp.code":{icmp_code},'
        else:
            l4 = f'"icmpv6.type":{icmp_type},"icmpv6.code":{icmp_code},'
        if len(self._flows) >= FLOW_TEXT_CACHE:
            self._flows.clear()
        text = self._flows[key] = ("".join(head).encode(), l3.encode(), l4.encode())
        return text

    @staticmethod
    def _vlan(count: int, tpid_raw: bytes, tci_raw: bytes, eth_proto: int) -> str:
        tpids = int.from_bytes(tpid_raw[0:2], "little"), int.from_bytes(tpid_raw[2:4], "little")
        tcis = int.from_bytes(tci_raw[0:2], "little"), int.from_bytes(tci_raw[2:4], "little")
        tags = [(tpids[i], tcis[i]) for i in range(min(count, 2))]
        out = ""
        if len(tags) == 2 or tags[0][0] in _TPID_8021AD:
            tci = tags[0][1]
            out += f'"ieee8021ad.id":{tci & 0xFFF},"ieee8021ad.priority":{tci >> 13},"ieee8021ad.dei":{_b(tci & 0x1000)},'
            tags = tags[1:]
        if tags:
            tci = tags[0][1]
            out += (f'"vlan.id":{tci & 0xFFF},"vlan.priority":{tci >> 13},"vlan.dei":{_b(tci & 0x1000)},'
                    f'"vlan.etype":{eth_proto},')  # fmt: skip
        return out

    @staticmethod
    def _tcp_options(opts: int, mss: int, wscale: int, sack_count: int, sack: bytes, ts_val: int, ts_ecr: int) -> bytes:
        out = ""
        if opts & D.TCPOPT_MSS:
            out += f'"tcp.options.mss_val":{mss},'
        if opts & D.TCPOPT_WSCALE:
            # RFC 7323 2.3: shifts above 14 mean 14
            out += f'"tcp.options.wscale.shift":{wscale},"tcp.options.wscale.multiplier":{1 << min(wscale, 14)},'
        if opts & D.TCPOPT_SACK_PERM:
            out += '"tcp.options.sack_perm":true,'
        if opts & D.TCPOPT_SACK:
            edges = [int.from_bytes(sack[i : i + 4], "little") for i in range(0, 8 * min(sack_count, 4), 4)]
            out += f'"tcp.options.sack_le":{_ints(edges[0::2])},"tcp.options.sack_re":{_ints(edges[1::2])},'
        out = out.encode()
        if opts & D.TCPOPT_TIMESTAMP:
            out += _TCP_TS % (ts_val, ts_ecr)
        return out

    @staticmethod
    def _icmp(proto: int, icmp_type: int, csum: int, rest: int) -> bytes:
        ident, seq = rest >> 16, rest & 0xFFFF
        if proto == 1:
            out = f'"icmp.checksum":{csum},'
            if icmp_type in _ECHO_V4:
                out += f'"icmp.ident":{ident},"icmp.seq":{seq},'
        else:
            out = f'"icmpv6.checksum":{csum},'
            if icmp_type in _ECHO_V6:
                out += f'"icmpv6.echo.identifier":{ident},"icmpv6.echo.sequence_number":{seq},'
        return out.encode()
