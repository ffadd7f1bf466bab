"""PacketEvent -> PacketRecord: the header elements under their Wireshark names."""

from __future__ import annotations

import socket

from hdrlog import decode as D
from hdrlog.clock import Clock
from hdrlog.records import PacketRecord
from hdrlog.stitch.flows import address_text, community_id

__all__ = ["PacketRecorder", "TRANSPORTS"]

TRANSPORTS = {1: "icmp", 6: "tcp", 17: "udp", 58: "ipv6-icmp", 132: "sctp", 47: "gre"}
_ECHO_V4 = {0, 8, 13, 14, 15, 16, 17, 18}  # types that carry identifier and sequence
_ECHO_V6 = {128, 129}
_TPID_8021AD = (0x88A8, 0x9100)


def _mac(b: bytes) -> str:
    return b.hex(":")


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


class PacketRecorder:
    """Builds records; caches interface names."""

    def __init__(self, clock: Clock | None = None):
        self.clock = clock or Clock()
        self._ifnames: dict[int, str] = {}

    def ifname(self, ifindex: int) -> str:
        name = self._ifnames.get(ifindex)
        if name is None:
            try:
                name = socket.if_indextoname(ifindex)
            except OSError:
                name = f"if{ifindex}"
            self._ifnames[ifindex] = name
        return name

    def record(self, ev: D.PacketEvent) -> PacketRecord:
        f: dict = {
            "ts": self.clock.rfc3339(ev.ts_ns),
            "type": "packet",
            "interface": self.ifname(ev.ifindex),
            "direction": "egress" if ev.direction else "ingress",
            "hook": "xdp" if ev.flags & D.PKT_XDP else "tc",
            "frame_len": ev.len,
        }
        if ev.flags & D.PKT_HDR_TRUNCATED:
            f["truncated"] = True
        if ev.malformed:
            f["malformed"] = D.MALFORMED[ev.malformed] if ev.malformed < len(D.MALFORMED) else str(ev.malformed)
        if ev.eth_type:
            f["eth_dst"] = _mac(ev.eth_dst)
            f["eth_src"] = _mac(ev.eth_src)
            f["eth_type"] = ev.eth_type
        if ev.vlan_count:
            self._vlan(ev, f)
        if ev.ip_version == 4:
            self._ipv4(ev, f)
        elif ev.ip_version == 6:
            self._ipv6(ev, f)
        if ev.flags & D.PKT_L4:
            proto = ev.ip_proto
            if proto == 6:
                self._tcp(ev, f)
            elif proto == 17:
                f.update(udp_srcport=ev.sport, udp_dstport=ev.dport, udp_length=ev.udp_len, udp_checksum=ev.l4_csum)
                if ev.payload:
                    f["udp_payload"] = ev.payload.hex()
            else:
                self._icmp(ev, f)
        return PacketRecord(**f)

    def _vlan(self, ev: D.PacketEvent, f: dict) -> None:
        tags = ev.vlan_tags()
        if len(tags) == 2 or tags[0][0] in _TPID_8021AD:
            tci = tags[0][1]
            f.update(svlan_id=tci & 0xFFF, svlan_priority=tci >> 13, svlan_dei=bool(tci & 0x1000))
            tags = tags[1:]
        if tags:
            tci = tags[0][1]
            f.update(vlan_id=tci & 0xFFF, vlan_priority=tci >> 13, vlan_dei=bool(tci & 0x1000))
            f["vlan_etype"] = ev.eth_proto

    def _flow(self, ev: D.PacketEvent, f: dict, alen: int) -> None:
        proto = ev.ip_proto
        f["transport"] = TRANSPORTS.get(proto, str(proto))
        if ev.flags & D.PKT_L4:
            if proto in (1, 58):
                sport, dport = ev.icmp_type, ev.icmp_code
            else:
                sport, dport = ev.sport, ev.dport
            cid = community_id(proto, ev.saddr[:alen], ev.daddr[:alen], sport, dport)
        elif ev.flags & D.PKT_IP_FRAGMENT or proto in (6, 17, 132):
            return  # ports not seen: a Community ID without them would name another flow
        else:
            cid = community_id(proto, ev.saddr[:alen], ev.daddr[:alen], None, None)
        if cid:
            f["community_id"] = cid

    def _ipv4(self, ev: D.PacketEvent, f: dict) -> None:
        frag = ev.ip_frag
        f.update(
            ip_version=4,
            ip_hdr_len=ev.ip_hdr_len,
            ip_dsfield=ev.tos,
            ip_dscp=ev.tos >> 2,
            ip_ecn=ev.tos & 3,
            ip_len=ev.ip_len,
            ip_id=ev.ip_id,
            ip_flags=frag >> 13,
            ip_flags_rb=bool(frag & 0x8000),
            ip_flags_df=bool(frag & 0x4000),
            ip_flags_mf=bool(frag & 0x2000),
            ip_frag_offset=frag & 0x1FFF,
            ip_ttl=ev.ttl,
            ip_proto=ev.ip_proto,
            ip_checksum=ev.ip_csum,
            ip_src=address_text(ev.saddr[:4]),
            ip_dst=address_text(ev.daddr[:4]),
        )
        if ev.ip_opts_len:
            opts = ev.ip_opts[: ev.ip_opts_len]
            f["ip_options"] = opts.hex()
            f["ip_opt_type"] = _ip_options(opts)
        self._flow(ev, f, 4)

    def _ipv6(self, ev: D.PacketEvent, f: dict) -> None:
        f.update(
            ipv6_version=6,
            ipv6_tclass=ev.tos,
            ipv6_dscp=ev.tos >> 2,
            ipv6_ecn=ev.tos & 3,
            ipv6_flow=ev.ip6_flow,
            ipv6_plen=ev.ip_len,
            ipv6_nxt=ev.ip6_nxt,
            ipv6_hlim=ev.ttl,
            ipv6_src=address_text(ev.saddr),
            ipv6_dst=address_text(ev.daddr),
        )
        if ev.ip6_ext_count:
            ext = ev.ipv6_ext_headers()
            f["ipv6_ext"] = ext
            if 44 in ext:
                f.update(
                    ipv6_frag_offset=ev.ip6_frag >> 3,
                    ipv6_frag_more=bool(ev.ip6_frag & 1),
                    ipv6_frag_ident=ev.ip6_frag_id,
                )
        if not ev.malformed:
            self._flow(ev, f, 16)

    def _tcp(self, ev: D.PacketEvent, f: dict) -> None:
        fl = ev.tcp_flags
        f.update(
            tcp_srcport=ev.sport,
            tcp_dstport=ev.dport,
            tcp_seq_raw=ev.seq,
            tcp_ack_raw=ev.ack,
            tcp_hdr_len=ev.l4_hdr_len,
            tcp_flags=fl,
            tcp_flags_ae=bool(fl & 0x100),
            tcp_flags_cwr=bool(fl & 0x80),
            tcp_flags_ece=bool(fl & 0x40),
            tcp_flags_urg=bool(fl & 0x20),
            tcp_flags_ack=bool(fl & 0x10),
            tcp_flags_push=bool(fl & 0x08),
            tcp_flags_reset=bool(fl & 0x04),
            tcp_flags_syn=bool(fl & 0x02),
            tcp_flags_fin=bool(fl & 0x01),
            tcp_window=ev.window,
            tcp_checksum=ev.l4_csum,
            tcp_urgent=ev.urg_ptr,
            tcp_len=ev.l4_payload,
        )
        opts = ev.tcp_opts
        if opts & D.TCPOPT_MSS:
            f["tcp_mss"] = ev.mss
        if opts & D.TCPOPT_WSCALE:
            f["tcp_wscale"] = ev.wscale
            f["tcp_wscale_mult"] = 1 << min(ev.wscale, 14)  # RFC 7323 2.3: shifts above 14 mean 14
        if opts & D.TCPOPT_SACK_PERM:
            f["tcp_sack_perm"] = True
        if opts & D.TCPOPT_SACK:
            blocks = ev.sack_blocks()
            f["tcp_sack_le"] = [le for le, _ in blocks]
            f["tcp_sack_re"] = [re for _, re in blocks]
        if opts & D.TCPOPT_TIMESTAMP:
            f["tcp_tsval"] = ev.ts_val
            f["tcp_tsecr"] = ev.ts_ecr
        if ev.flags & D.PKT_TCP_OPTS_BAD:
            f["tcp_options_bad"] = True
        if ev.payload:
            f["tcp_payload"] = ev.payload.hex()

    def _icmp(self, ev: D.PacketEvent, f: dict) -> None:
        ident, seq = ev.icmp_rest >> 16, ev.icmp_rest & 0xFFFF
        if ev.ip_proto == 1:
            f.update(icmp_type=ev.icmp_type, icmp_code=ev.icmp_code, icmp_checksum=ev.l4_csum)
            if ev.icmp_type in _ECHO_V4:
                f.update(icmp_ident=ident, icmp_seq=seq)
        else:
            f.update(icmpv6_type=ev.icmp_type, icmpv6_code=ev.icmp_code, icmpv6_checksum=ev.l4_csum)
            if ev.icmp_type in _ECHO_V6:
                f.update(icmpv6_ident=ident, icmpv6_seq=seq)
        if ev.payload:
            f["data"] = ev.payload.hex()
