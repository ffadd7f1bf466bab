// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * packet.bpf.c: L2-L4 header elements of every packet on an interface, at TC
 * (clsact / tcx, ingress and egress) or XDP (ingress). The first HDR_WINDOW
 * bytes of the frame are copied to a per-CPU buffer and parsed there, so TC
 * (where an skb's linear part may end after the headers) and XDP share one
 * parser; filters, sampling and first-N run before anything is reserved.
 * With cfg_flows, packets that pass the traffic filters (protocol, port,
 * networks) are also counted into the per-CPU `flows` map, which user space
 * reads once per interval; cfg_packets off leaves the ring unused.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include "hdrlog_abi.h"
#include "ring_wake.h"

#define TC_ACT_UNSPEC (-1) /* tcx: TCX_NEXT; cls_bpf: continue with the next filter */

/* Header bytes parsed per packet: Ethernet + 2 tags + IPv4 with 40 bytes of
 * options + TCP with 40 bytes of options is 142; the rest is for IPv6
 * extension headers. A power of two so offsets can be masked for the verifier. */
#define HDR_WINDOW 256
#define HDR_MASK (HDR_WINDOW - 1)

#define ETH_HLEN 14
#define ETH_P_IP 0x0800
#define ETH_P_IPV6 0x86DD
#define ETH_P_8021Q 0x8100
#define ETH_P_8021AD 0x88A8
#define ETH_P_QINQ1 0x9100

#define HL_IPPROTO_ICMPV6 58 /* vmlinux.h has no IPPROTO_ICMPV6 enumerator */

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10

const volatile __u32 cfg_snaplen = 0;
/* Set before load; the verifier drops the branches of the modes that are off. */
const volatile __u32 cfg_flows = 0;   /* count packets into `flows` */
const volatile __u32 cfg_packets = 1; /* send packet records through the ring */

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, HL_CNT__MAX);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct hl_settings);
} settings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u16);
	__type(value, __u8);
} ports SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct hl_net_key);
	__type(value, __u8);
} nets_include SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(max_entries, 1024);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct hl_net_key);
	__type(value, __u8);
} nets_exclude SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct hl_flow_key);
	__type(value, __u64);
} flow_packets SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} sample_counter SEC(".maps");

/* Per-CPU values: no cache line is shared between CPUs; user space sums them.
 * Sized from user space before load (1 entry when flows are off). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_PERCPU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct hl_flow_id);
	__type(value, struct hl_flow_stats);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, HL_FC__MAX);
	__type(key, __u32);
	__type(value, __u64);
} flow_counters SEC(".maps");

struct parse_state {
	__u32 n;     /* bytes in the window */
	__u32 len;   /* bytes in the packet */
	__u32 off;   /* next header */
	__u32 l3_off;
	__u32 l4_off;
	__u32 ip_end;
};

struct scratch {
	__u8 hdr[2 * HDR_WINDOW]; /* the second half is slack for masked reads */
	struct hl_packet pkt;
	struct parse_state st;
	struct hl_flow_key flow;
	struct hl_net_key net;
	struct hl_flow_id fid;
	struct hl_flow_stats fnew;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct scratch);
} scratch_buf SEC(".maps");

/* Kept alive for BTF so user space can check the ABI against the object. */
struct hl_packet _abi_packet = {};
struct hl_settings _abi_settings = {};
struct hl_flow_id _abi_flow_id = {};
struct hl_flow_stats _abi_flow_stats = {};

static __always_inline void count_in(void *map, __u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(map, &idx);

	if (c)
		*c += 1;
}

static __always_inline void count(__u32 idx)
{
	count_in(&counters, idx);
}

/* Offsets are masked so the verifier sees them inside the buffer; every
 * caller has checked off + size <= n <= HDR_WINDOW first. */
static __always_inline __u8 rd8(const __u8 *b, __u32 off)
{
	return b[off & HDR_MASK];
}

static __always_inline __u16 rd16(const __u8 *b, __u32 off)
{
	const __u8 *q = b + (off & HDR_MASK);

	return ((__u16)q[0] << 8) | q[1];
}

static __always_inline __u32 rd32(const __u8 *b, __u32 off)
{
	const __u8 *q = b + (off & HDR_MASK);

	return ((__u32)q[0] << 24) | ((__u32)q[1] << 16) | ((__u32)q[2] << 8) | q[3];
}


/* Needing `want` bytes at `off`: 0 if they are in the window; otherwise flag
 * the record (headers longer than the window) or mark it malformed (the
 * packet itself ends first). */
static __always_inline int need(struct parse_state *st, struct hl_packet *p, __u32 off, __u32 want,
				__u8 bad)
{
	if (off + want <= st->n)
		return 0;
	if (off + want <= st->len)
		p->flags |= HL_PKT_HDR_TRUNCATED;
	else
		p->malformed = bad;
	return -1;
}

static __always_inline int parse_eth(struct parse_state *st, const __u8 *b, struct hl_packet *p)
{
	__u16 proto;
	int i;

	if (need(st, p, 0, ETH_HLEN, HL_BAD_ETH_SHORT))
		return -1;
	__builtin_memcpy(p->eth_dst, b, 6);
	__builtin_memcpy(p->eth_src, b + 6, 6);
	proto = rd16(b, 12);
	p->eth_type = proto;
	st->off = ETH_HLEN;
#pragma unroll
	for (i = 0; i < 2; i++) {
		if (proto != ETH_P_8021Q && proto != ETH_P_8021AD && proto != ETH_P_QINQ1)
			break;
		if (need(st, p, st->off, 4, HL_BAD_VLAN_SHORT))
			return -1;
		p->vlan_tpid[i] = proto;
		p->vlan_tci[i] = rd16(b, st->off);
		proto = rd16(b, st->off + 2);
		p->vlan_count = i + 1;
		st->off += 4;
	}
	p->eth_proto = proto;
	return 0;
}

static __always_inline int parse_ipv4(struct parse_state *st, const __u8 *b, struct hl_packet *p)
{
	__u32 off = st->off, ihl, i;
	const __u8 *q;

	if (need(st, p, off, 20, HL_BAD_IP_SHORT))
		return -1;
	if ((rd8(b, off) >> 4) != 4) {
		p->malformed = HL_BAD_IP_VERSION;
		return -1;
	}
	ihl = (rd8(b, off) & 0xf) * 4;
	if (ihl < 20) {
		p->malformed = HL_BAD_IPV4_IHL;
		return -1;
	}
	if (need(st, p, off, ihl, HL_BAD_IPV4_IHL))
		return -1;
	p->ip_version = 4;
	p->ip_hdr_len = ihl;
	p->tos = rd8(b, off + 1);
	p->ip_len = rd16(b, off + 2);
	p->ip_id = rd16(b, off + 4);
	p->ip_frag = rd16(b, off + 6);
	p->ttl = rd8(b, off + 8);
	p->ip_proto = rd8(b, off + 9);
	p->ip_csum = rd16(b, off + 10);
	q = b + (off & HDR_MASK);
	__builtin_memcpy(p->saddr, q + 12, 4);
	__builtin_memcpy(p->daddr, q + 16, 4);
	p->ip_opts_len = ihl - 20;
	for (i = 0; i < HL_IP_OPTS_MAX; i++) {
		if (20 + i >= ihl)
			break;
		p->ip_opts[i] = q[20 + i];
	}
	/* Total length 0: a TSO/GSO skb at TC egress; the skb length is the truth. */
	if (p->ip_len) {
		if (p->ip_len < ihl || off + p->ip_len > st->len) {
			p->malformed = HL_BAD_IP_LEN;
			return -1;
		}
		st->ip_end = off + p->ip_len;
	} else {
		st->ip_end = st->len;
	}
	st->l3_off = off;
	st->off = off + ihl;
	if (p->ip_frag & 0x1fff) {
		p->flags |= HL_PKT_IP_FRAGMENT;
		return -1;
	}
	return 0;
}

static __always_inline int parse_ipv6(struct parse_state *st, const __u8 *b, struct hl_packet *p)
{
	__u32 off = st->off, vtcfl, hlen;
	__u8 nh;
	const __u8 *q;
	int i;

	if (need(st, p, off, 40, HL_BAD_IP_SHORT))
		return -1;
	vtcfl = rd32(b, off);
	if ((vtcfl >> 28) != 6) {
		p->malformed = HL_BAD_IP_VERSION;
		return -1;
	}
	p->ip_version = 6;
	p->ip_hdr_len = 40;
	p->tos = (vtcfl >> 20) & 0xff;
	p->ip6_flow = vtcfl & 0xfffff;
	p->ip_len = rd16(b, off + 4);
	nh = rd8(b, off + 6);
	p->ip6_nxt = nh;
	p->ttl = rd8(b, off + 7);
	q = b + (off & HDR_MASK);
	__builtin_memcpy(p->saddr, q + 8, 16);
	__builtin_memcpy(p->daddr, q + 24, 16);
	st->l3_off = off;
	st->ip_end = p->ip_len ? off + 40 + p->ip_len : st->len;
	if (st->ip_end > st->len) {
		p->malformed = HL_BAD_IP_LEN;
		return -1;
	}
	off += 40;
#pragma unroll
	for (i = 0; i < HL_IP6_EXT_MAX; i++) {
		if (nh == 0 || nh == 43 || nh == 60 || nh == 135 || nh == 139 || nh == 140) {
			/* hop-by-hop, routing, destination options, mobility, HIP, shim6 */
			if (need(st, p, off, 2, HL_BAD_IPV6_EXT))
				return -1;
			hlen = ((__u32)rd8(b, off + 1) + 1) * 8;
		} else if (nh == 44) {
			if (need(st, p, off, 8, HL_BAD_IPV6_EXT))
				return -1;
			hlen = 8;
			p->ip6_frag = rd16(b, off + 2);
			p->ip6_frag_id = rd32(b, off + 4);
		} else if (nh == 51) {
			/* AH: length in 4-octet units, minus 2 (RFC 4302 2.2) */
			if (need(st, p, off, 2, HL_BAD_IPV6_EXT))
				return -1;
			hlen = ((__u32)rd8(b, off + 1) + 2) * 4;
		} else {
			break;
		}
		if (off + hlen > st->ip_end) {
			p->malformed = HL_BAD_IPV6_EXT;
			return -1;
		}
		p->ip6_ext[i] = nh;
		p->ip6_ext_count = i + 1;
		nh = rd8(b, off);
		off += hlen;
		if (p->ip6_ext[i] == 44 && (p->ip6_frag & 0xfff8)) {
			p->ip_proto = nh;
			st->off = off;
			p->flags |= HL_PKT_IP_FRAGMENT;
			return -1;
		}
	}
	if (nh == 0 || nh == 43 || nh == 60 || nh == 44 || nh == 51 || nh == 135 || nh == 139 ||
	    nh == 140) {
		p->malformed = HL_BAD_IPV6_EXT_DEPTH;
		return -1;
	}
	p->ip_proto = nh;
	st->off = off;
	return 0;
}

/* Global functions are verified once, on their own: keeping the option loop
 * and the whole parser out of line stops the verifier's paths multiplying. */
__noinline int hl_parse_tcp_options(struct scratch *s, __u32 start, __u32 end)
{
	__u32 o = start, kind, olen, i;
	const __u8 *b;
	struct hl_packet *p;

	if (!s)
		return 0;
	b = s->hdr;
	p = &s->pkt;

	/* At most 40 option bytes; every step consumes at least one. */
	for (i = 0; i < 40; i++) {
		if (o >= end)
			break;
		kind = rd8(b, o);
		if (kind == 0)
			break;
		if (kind == 1) {
			o++;
			continue;
		}
		if (o + 2 > end) {
			p->flags |= HL_PKT_TCP_OPTS_BAD;
			break;
		}
		olen = rd8(b, o + 1);
		if (olen < 2 || o + olen > end) {
			p->flags |= HL_PKT_TCP_OPTS_BAD;
			break;
		}
		if (kind == 2 && olen == 4) {
			p->tcp_opts |= HL_TCPOPT_MSS;
			p->mss = rd16(b, o + 2);
		} else if (kind == 3 && olen == 3) {
			p->tcp_opts |= HL_TCPOPT_WSCALE;
			p->wscale = rd8(b, o + 2);
		} else if (kind == 4 && olen == 2) {
			p->tcp_opts |= HL_TCPOPT_SACK_PERM;
		} else if (kind == 5 && olen >= 10 && ((olen - 2) & 7) == 0) {
			__u32 blocks = (olen - 2) / 8, j;

			p->tcp_opts |= HL_TCPOPT_SACK;
			for (j = 0; j < HL_SACK_MAX; j++) {
				if (j >= blocks)
					break;
				p->sack[j * 2] = rd32(b, o + 2 + j * 8);
				p->sack[j * 2 + 1] = rd32(b, o + 6 + j * 8);
				p->sack_count = j + 1;
			}
		} else if (kind == 8 && olen == 10) {
			p->tcp_opts |= HL_TCPOPT_TIMESTAMP;
			p->ts_val = rd32(b, o + 2);
			p->ts_ecr = rd32(b, o + 6);
		}
		o += olen;
	}
	return 0;
}

static __always_inline int parse_l4(struct scratch *s, struct parse_state *st, const __u8 *b,
				    struct hl_packet *p)
{
	__u32 off = st->off, doff;

	st->l4_off = off;
	if (p->ip_proto == IPPROTO_TCP) {
		if (need(st, p, off, 20, HL_BAD_L4_SHORT))
			return -1;
		doff = (rd8(b, off + 12) >> 4) * 4;
		if (doff < 20) {
			p->malformed = HL_BAD_TCP_DOFF;
			return -1;
		}
		if (off + doff > st->ip_end) {
			p->malformed = HL_BAD_TCP_DOFF;
			return -1;
		}
		if (need(st, p, off, doff, HL_BAD_TCP_DOFF))
			return -1;
		p->sport = rd16(b, off);
		p->dport = rd16(b, off + 2);
		p->seq = rd32(b, off + 4);
		p->ack = rd32(b, off + 8);
		p->tcp_flags = ((__u16)(rd8(b, off + 12) & 1) << 8) | rd8(b, off + 13);
		p->window = rd16(b, off + 14);
		p->l4_csum = rd16(b, off + 16);
		p->urg_ptr = rd16(b, off + 18);
		p->l4_hdr_len = doff;
		hl_parse_tcp_options(s, off + 20, off + doff);
	} else if (p->ip_proto == IPPROTO_UDP) {
		if (need(st, p, off, 8, HL_BAD_L4_SHORT))
			return -1;
		p->sport = rd16(b, off);
		p->dport = rd16(b, off + 2);
		p->udp_len = rd16(b, off + 4);
		p->l4_csum = rd16(b, off + 6);
		p->l4_hdr_len = 8;
	} else if (p->ip_proto == IPPROTO_ICMP || p->ip_proto == HL_IPPROTO_ICMPV6) {
		if (need(st, p, off, 8, HL_BAD_L4_SHORT))
			return -1;
		p->icmp_type = rd8(b, off);
		p->icmp_code = rd8(b, off + 1);
		p->l4_csum = rd16(b, off + 2);
		p->icmp_rest = rd32(b, off + 4);
		p->l4_hdr_len = 8;
	} else {
		return -1;
	}
	p->flags |= HL_PKT_L4;
	if (st->ip_end > off + p->l4_hdr_len)
		p->l4_payload = st->ip_end - off - p->l4_hdr_len;
	return 0;
}

__noinline int hl_parse(struct scratch *s)
{
	struct parse_state *st;
	struct hl_packet *p;
	const __u8 *b;

	if (!s)
		return 0;
	st = &s->st;
	p = &s->pkt;
	b = s->hdr;
	if (parse_eth(st, b, p))
		return 0;
	if (p->eth_proto == ETH_P_IP) {
		if (parse_ipv4(st, b, p))
			return 0;
	} else if (p->eth_proto == ETH_P_IPV6) {
		if (parse_ipv6(st, b, p))
			return 0;
	} else {
		return 0;
	}
	parse_l4(s, st, b, p);
	return 0;
}

static __always_inline int net_listed(void *trie, struct hl_net_key *k, const __u8 *addr, __u8 v4)
{
	k->prefixlen = 128;
	if (v4) {
		/* IPv4 lives in the tries as IPv4-mapped IPv6 (::ffff:a.b.c.d) */
		__builtin_memset(k->addr, 0, 10);
		k->addr[10] = 0xff;
		k->addr[11] = 0xff;
		__builtin_memcpy(k->addr + 12, addr, 4);
	} else {
		__builtin_memcpy(k->addr, addr, 16);
	}
	return bpf_map_lookup_elem(trie, k) != NULL;
}

static __always_inline int addr_lt(const __u8 *a, const __u8 *b)
{
	int i;

#pragma unroll
	for (i = 0; i < 16; i++) {
		if (a[i] != b[i])
			return a[i] < b[i];
	}
	return 0;
}

/* Which direction of its flow a packet goes: 0 from the lower (address,
 * port) endpoint to the higher, 1 back. */
static __always_inline int flow_dir(const struct hl_packet *p)
{
	return addr_lt(p->daddr, p->saddr) || (!addr_lt(p->saddr, p->daddr) && p->dport < p->sport);
}

/* First-N: the flow's packet count so far, both directions together. */
static __always_inline __u64 flow_count(struct scratch *s, struct hl_packet *p)
{
	struct hl_flow_key *k = &s->flow;
	__u64 one = 1, *c;
	int swap = flow_dir(p);

	__builtin_memcpy(k->addr_lo, swap ? p->daddr : p->saddr, 16);
	__builtin_memcpy(k->addr_hi, swap ? p->saddr : p->daddr, 16);
	k->port_lo = swap ? p->dport : p->sport;
	k->port_hi = swap ? p->sport : p->dport;
	k->proto = p->ip_proto;
	c = bpf_map_lookup_elem(&flow_packets, k);
	if (c)
		return __sync_fetch_and_add(c, 1) + 1;
	bpf_map_update_elem(&flow_packets, k, &one, BPF_NOEXIST);
	return 1;
}

/* Count the packet into its flow. A global function: verified once, on its own. */
__noinline int hl_flow_update(struct scratch *s)
{
	struct hl_packet *p;
	struct hl_flow_id *k;
	struct hl_flow_stats *v;
	__u64 now;
	int d;

	if (!s)
		return 0;
	p = &s->pkt;
	k = &s->fid;
	d = flow_dir(p);
	__builtin_memcpy(k->addr_lo, d ? p->daddr : p->saddr, 16);
	__builtin_memcpy(k->addr_hi, d ? p->saddr : p->daddr, 16);
	k->port_lo = d ? p->dport : p->sport;
	k->port_hi = d ? p->sport : p->dport;
	k->ifindex = p->ifindex;
	k->proto = p->ip_proto;
	k->ip_version = p->ip_version;
	k->l4 = !!(p->flags & HL_PKT_L4);
	k->_pad0 = 0;
	now = bpf_ktime_get_ns();
	v = bpf_map_lookup_elem(&flows, k);
	if (!v) {
		/* New here: the other CPUs' values start zeroed. Two CPUs may race to
		 * create it; the loser finds the winner's entry. */
		__builtin_memset(&s->fnew, 0, sizeof(s->fnew));
		if (!bpf_map_update_elem(&flows, k, &s->fnew, BPF_NOEXIST))
			count_in(&flow_counters, HL_FC_NEW);
		v = bpf_map_lookup_elem(&flows, k);
		if (!v) {
			count_in(&flow_counters, HL_FC_FAILED);
			return 0;
		}
	}
	if (!v->first_ns) {
		v->first_ns = now;
		v->first_dir = d;
	}
	v->last_ns = now;
	v->packets[d & 1] += 1;
	v->bytes[d & 1] += p->len;
	if (k->l4 && p->ip_proto == IPPROTO_TCP) {
		__u16 f = p->tcp_flags;

		v->tcp_flags[d & 1] |= f;
		if (f & TCP_SYN) {
			v->syn += 1;
			if (!(f & TCP_ACK))
				v->syn_dirs |= 1 << d;
		}
		if (f & TCP_FIN)
			v->fin += 1;
		if (f & TCP_RST)
			v->rst += 1;
	} else if (k->l4 && (p->ip_proto == IPPROTO_ICMP || p->ip_proto == HL_IPPROTO_ICMPV6)) {
		v->icmp_type[d & 1] = p->icmp_type;
		v->icmp_code[d & 1] = p->icmp_code;
	}
	count_in(&flow_counters, HL_FC_PACKETS);
	return 0;
}

/* The filters that select traffic (protocol, port, networks), in order; they
 * apply to flows and packet records alike. Returns the counter of the one that
 * dropped the packet, or HL_CNT_LOGGED to keep it. */
static __always_inline __u32 select_traffic(struct scratch *s, struct hl_packet *p,
					    const struct hl_settings *cfg)
{
	__u8 proto = p->ip_proto, v4 = p->ip_version == 4, has_ports = 0;

	if (p->flags & HL_PKT_L4)
		has_ports = proto == IPPROTO_TCP || proto == IPPROTO_UDP;
	if (cfg->flags & HL_SET_PROTOS) {
		if (!p->ip_version || !(cfg->protos[(proto >> 3) & 31] & (1 << (proto & 7))))
			return HL_CNT_FILTERED_PROTO;
	}
	if (cfg->flags & HL_SET_PORTS) {
		if (!has_ports || (!bpf_map_lookup_elem(&ports, &p->sport) &&
				   !bpf_map_lookup_elem(&ports, &p->dport)))
			return HL_CNT_FILTERED_PORT;
	}
	if (cfg->flags & HL_SET_NET_INCLUDE) {
		if (!p->ip_version || (!net_listed(&nets_include, &s->net, p->saddr, v4) &&
				       !net_listed(&nets_include, &s->net, p->daddr, v4)))
			return HL_CNT_FILTERED_NET;
	}
	if ((cfg->flags & HL_SET_NET_EXCLUDE) && p->ip_version) {
		if (net_listed(&nets_exclude, &s->net, p->saddr, v4) ||
		    net_listed(&nets_exclude, &s->net, p->daddr, v4))
			return HL_CNT_FILTERED_NET;
	}
	return HL_CNT_LOGGED;
}

/* The filters that select packet records (TCP flags, first-N, sampling), in
 * order, after select_traffic(). */
static __always_inline __u32 select_record(struct scratch *s, struct hl_packet *p,
					   const struct hl_settings *cfg)
{
	__u8 proto = p->ip_proto;
	__u32 zero = 0;

	if (cfg->flags & HL_SET_TCP_FLAGS) {
		__u16 f = p->tcp_flags & cfg->tcp_flags_mask;

		if (proto != IPPROTO_TCP || !(p->flags & HL_PKT_L4))
			return HL_CNT_FILTERED_TCP_FLAGS;
		if (cfg->flags & HL_SET_TCP_FLAGS_ANY ? f == 0 : f != cfg->tcp_flags_value)
			return HL_CNT_FILTERED_TCP_FLAGS;
	}
	if (cfg->first_packets && p->ip_version && flow_count(s, p) > cfg->first_packets)
		return HL_CNT_FIRST_N;
	if (cfg->sample_every > 1 &&
	    !(proto == IPPROTO_TCP && (p->tcp_flags & (TCP_SYN | TCP_FIN | TCP_RST)))) {
		__u64 *n = bpf_map_lookup_elem(&sample_counter, &zero);

		if (n && __sync_fetch_and_add(n, 1) % cfg->sample_every)
			return HL_CNT_SAMPLED;
	}
	return HL_CNT_LOGGED;
}

/* Parse, filter and reserve a record; the caller copies the payload and submits. */
static __always_inline struct hl_packet *handle(struct scratch *s, __u32 n, __u32 len, __u32 ifindex,
						__u8 dir, __u8 flags, __u32 *payload_off,
						__u32 *cap, __u64 *wake)
{
	struct parse_state *st = &s->st;
	struct hl_packet *p = &s->pkt, *rec;
	const struct hl_settings *cfg;
	__u32 zero = 0, verdict, snap = cfg_snaplen, avail = 0;

	__builtin_memset(p, 0, sizeof(*p));
	p->type = HL_EV_PACKET;
	p->direction = dir;
	p->flags = flags;
	p->ifindex = ifindex;
	p->len = len;
	__builtin_memset(st, 0, sizeof(*st));
	st->n = n;
	st->len = len;
	hl_parse(s);
	if (p->malformed)
		count(HL_CNT_MALFORMED);
	if (p->flags & HL_PKT_HDR_TRUNCATED)
		count(HL_CNT_TRUNCATED);

	cfg = bpf_map_lookup_elem(&settings, &zero);
	if (!cfg)
		return NULL;
	verdict = select_traffic(s, p, cfg);
	if (verdict == HL_CNT_LOGGED) {
		if (cfg_flows && p->ip_version)
			hl_flow_update(s);
		if (!cfg_packets)
			return NULL;
		verdict = select_record(s, p, cfg);
	}
	if (verdict != HL_CNT_LOGGED) {
		count(verdict);
		return NULL;
	}

	if (snap > HL_SNAPLEN_MAX)
		snap = HL_SNAPLEN_MAX;
	*payload_off = st->l4_off + p->l4_hdr_len;
	if ((p->flags & HL_PKT_L4) && !p->malformed && !(p->flags & HL_PKT_HDR_TRUNCATED))
		avail = p->l4_payload;
	if (avail > snap)
		avail = snap;
	*cap = avail;

	rec = bpf_ringbuf_reserve(&events, sizeof(*rec) + snap, 0);
	if (!rec) {
		count(HL_CNT_RING_FULL);
		return NULL;
	}
	p->ts_ns = bpf_ktime_get_ns();
	p->captured = avail;
	__builtin_memcpy(rec, p, sizeof(*rec));
	/* Wake the reader only when enough is waiting; it also drains on a timer. */
	*wake = ring_wake_flag(cfg->wake_bytes, sizeof(*rec) + snap);
	count(HL_CNT_LOGGED);
	return rec;
}

/* TC and XDP differ only in how bytes are read from the packet; `xdp` is a
 * constant at every call site, so clang keeps one branch. */
static __always_inline long load_bytes(void *ctx, bool xdp, __u32 off, void *to, __u32 len)
{
	return xdp ? bpf_xdp_load_bytes(ctx, off, to, len) : bpf_skb_load_bytes(ctx, off, to, len);
}

static __always_inline void capture(void *ctx, bool xdp, __u32 len, __u32 ifindex, __u8 dir)
{
	__u32 zero = 0, n = len, payload_off = 0, cap = 0;
	__u64 wake = 0;
	struct scratch *s = bpf_map_lookup_elem(&scratch_buf, &zero);
	struct hl_packet *rec;

	if (!s)
		return;
	count(HL_CNT_SEEN);
	if (n > HDR_WINDOW)
		n = HDR_WINDOW;
	/* clang tests the unclamped copy of n; the masked copy is what the verifier sees */
	barrier_var(n);
	n &= 2 * HDR_WINDOW - 1;
	if (n == 0 || load_bytes(ctx, xdp, 0, s->hdr, n))
		n = 0;
	rec = handle(s, n, len, ifindex, dir, xdp ? HL_PKT_XDP : 0, &payload_off, &cap, &wake);
	if (!rec)
		return;
	if (cap && cap <= HL_SNAPLEN_MAX && load_bytes(ctx, xdp, payload_off, rec + 1, cap))
		rec->captured = 0;
	bpf_ringbuf_submit(rec, wake);
}

SEC("tc")
int tc_ingress(struct __sk_buff *skb)
{
	capture(skb, false, skb->len, skb->ifindex, HL_DIR_INGRESS);
	return TC_ACT_UNSPEC;
}

SEC("tc")
int tc_egress(struct __sk_buff *skb)
{
	capture(skb, false, skb->len, skb->ifindex, HL_DIR_EGRESS);
	return TC_ACT_UNSPEC;
}

SEC("xdp")
int xdp_ingress(struct xdp_md *ctx)
{
	/* the whole frame, fragments of multi-buffer XDP included */
	capture(ctx, true, bpf_xdp_get_buff_len(ctx), ctx->ingress_ifindex, HL_DIR_INGRESS);
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
