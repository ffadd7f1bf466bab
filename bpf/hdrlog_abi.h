/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/*
 * The event ABI shared by hdrlog's BPF programs and its Python decoder
 * (src/hdrlog/decode.py). Every record starts with a type tag; fields are
 * fixed-width, in host byte order unless named *_be or byte arrays, with
 * explicit padding. tests/unit/test_abi.py compares this layout (read from
 * the object's BTF) with the decoder's.
 */
#ifndef HDRLOG_ABI_H
#define HDRLOG_ABI_H

/* Padding in the ABI must be explicit. */
#pragma clang diagnostic push
#pragma clang diagnostic error "-Wpadded"

enum hl_event_type {
	HL_EV_PACKET = 1,
	HL_EV_SOCK_DATA = 2,
	HL_EV_SOCK_CONN = 3,
	HL_EV_EXEC = 4,
	HL_EV_FORK = 5,
};

enum hl_direction {
	HL_DIR_INGRESS = 0,
	HL_DIR_EGRESS = 1,
};

/* hl_packet.flags */
enum hl_packet_flag {
	HL_PKT_HDR_TRUNCATED = 1 << 0, /* headers go on past the parse window */
	HL_PKT_XDP = 1 << 1,           /* seen by the XDP program, not TC */
	HL_PKT_IP_FRAGMENT = 1 << 2,   /* a non-first fragment: no L4 header */
	HL_PKT_L4 = 1 << 3,            /* the L4 fields below are valid */
	HL_PKT_TCP_OPTS_BAD = 1 << 4,  /* TCP options ran past the header */
};

/* hl_packet.malformed: why parsing stopped early (the outer layers are valid) */
enum hl_malformed {
	HL_BAD_NONE = 0,
	HL_BAD_ETH_SHORT = 1,     /* shorter than an Ethernet header */
	HL_BAD_VLAN_SHORT = 2,    /* VLAN tag cut off */
	HL_BAD_IP_SHORT = 3,      /* shorter than the fixed IP header */
	HL_BAD_IP_VERSION = 4,    /* version field disagrees with the ethertype */
	HL_BAD_IPV4_IHL = 5,      /* IHL < 5 or past the end of the packet */
	HL_BAD_IP_LEN = 6,        /* IP length field < header or past the end */
	HL_BAD_IPV6_EXT = 7,      /* extension header past the end */
	HL_BAD_IPV6_EXT_DEPTH = 8,/* more extension headers than hdrlog follows */
	HL_BAD_L4_SHORT = 9,      /* L4 header cut off */
	HL_BAD_TCP_DOFF = 10,     /* data offset < 5 or past the end */
};

/* hl_packet.tcp_opts: which TCP options were present */
enum hl_tcp_opt {
	HL_TCPOPT_MSS = 1 << 0,
	HL_TCPOPT_WSCALE = 1 << 1,
	HL_TCPOPT_SACK_PERM = 1 << 2,
	HL_TCPOPT_SACK = 1 << 3,
	HL_TCPOPT_TIMESTAMP = 1 << 4,
};

#define HL_IP_OPTS_MAX 40   /* IPv4 options: IHL 15 * 4 - 20 */
#define HL_IP6_EXT_MAX 8    /* extension headers followed before giving up */
#define HL_SACK_MAX 4       /* SACK blocks: 4 fit in 40 option bytes */
#define HL_SNAPLEN_MAX 1024 /* payload bytes a packet record may carry */

struct hl_packet {
	/* What changes from packet to packet. */
	__u8 type;        /* HL_EV_PACKET */
	__u8 _pad0;
	__u16 captured;   /* payload bytes that follow this struct */
	__u32 len;        /* frame length (pre-segmentation at TC egress) */
	__u64 ts_ns;      /* bpf_ktime_get_ns() */
	__u32 l4_payload; /* L4 payload bytes in the packet */
	__u16 ip_len;     /* IPv4 total length / IPv6 payload length */
	__u16 ip_id;
	__u16 ip_csum;
	__u16 window;
	__u16 l4_csum;
	__u16 udp_len;
	__u32 seq;
	__u32 ack;
	__u32 ts_val;
	__u32 ts_ecr;
	__u32 icmp_rest;  /* ICMP bytes 4..7, as on the wire (id and seq for echo) */
	/* What a flow usually keeps from packet to packet, in one block (direction .. _pad1):
	 * user space formats a line's constant text once per distinct block. */
	__u8 direction;   /* enum hl_direction */
	__u8 flags;       /* enum hl_packet_flag */
	__u8 malformed;   /* enum hl_malformed */
	__u8 ip_version;  /* 0, 4 or 6 */
	__u32 ifindex;
	__u16 eth_proto;  /* ethertype after VLAN tags */
	__u8 eth_dst[6];
	__u8 eth_src[6];
	__u16 eth_type;   /* first ethertype (a TPID when tagged) */
	__u16 vlan_tpid[2];
	__u16 vlan_tci[2];
	__u8 vlan_count;
	__u8 ip_proto;    /* L4 protocol (after IPv6 extension headers) */
	__u8 ttl;         /* IPv4 TTL / IPv6 hop limit */
	__u8 tos;         /* IPv4 TOS / IPv6 traffic class */
	__u8 ip_hdr_len;  /* IPv4 IHL * 4; 40 for IPv6 */
	__u8 l4_hdr_len;
	__u8 ip6_nxt;     /* next header of the fixed IPv6 header */
	__u8 ip6_ext_count;
	__u8 ip_opts_len;
	__u8 tcp_opts;    /* enum hl_tcp_opt */
	__u16 ip_frag;    /* IPv4 flags and fragment offset, as on the wire */
	__u8 saddr[16];   /* IPv4 in the first 4 bytes */
	__u8 daddr[16];
	__u32 ip6_flow;   /* flow label */
	__u16 sport;
	__u16 dport;
	__u16 urg_ptr;
	__u16 tcp_flags;  /* 9 bits: AE(NS) CWR ECE URG ACK PSH RST SYN FIN */
	__u8 icmp_type;
	__u8 icmp_code;
	__u16 _pad1;
	/* Options and extension headers. */
	__u8 ip6_ext[HL_IP6_EXT_MAX]; /* extension header types, in order */
	__u32 ip6_frag_id;
	__u16 ip6_frag;   /* fragment header offset and M flag, as on the wire */
	__u16 mss;
	__u8 wscale;
	__u8 sack_count;
	__u16 _pad2;
	__u8 ip_opts[HL_IP_OPTS_MAX];
	__u32 sack[HL_SACK_MAX * 2]; /* left, right edge pairs */
	__u32 _pad3;
	/* followed by `captured` bytes of L4 payload */
};

/* Per-CPU counters of the packet program: index into the `counters` array */
enum hl_counter {
	HL_CNT_SEEN = 0,
	HL_CNT_LOGGED,
	HL_CNT_FILTERED_PROTO,
	HL_CNT_FILTERED_PORT,
	HL_CNT_FILTERED_NET,
	HL_CNT_FILTERED_TCP_FLAGS,
	HL_CNT_FIRST_N,
	HL_CNT_SAMPLED,
	HL_CNT_RING_FULL,
	HL_CNT_MALFORMED,   /* logged, with the layers that were valid */
	HL_CNT_TRUNCATED,   /* logged, headers longer than the parse window */
	HL_CNT__MAX,
};

/* Filter settings, one element of the `settings` array, written by user space */
enum hl_setting_flag {
	HL_SET_PORTS = 1 << 0,      /* keep only packets with a port in `ports` */
	HL_SET_NET_INCLUDE = 1 << 1,/* keep only packets with an address in nets_include */
	HL_SET_NET_EXCLUDE = 1 << 2,/* drop packets with an address in nets_exclude */
	HL_SET_TCP_FLAGS = 1 << 3,  /* keep only TCP packets whose flags match */
	HL_SET_TCP_FLAGS_ANY = 1 << 4, /* match: any of mask set (else flags & mask == value) */
	HL_SET_PROTOS = 1 << 5,     /* keep only the IP protocols in `protos` */
};

struct hl_settings {
	__u32 flags;          /* enum hl_setting_flag */
	__u32 sample_every;   /* keep 1 in N (0 or 1: all); SYN, FIN, RST always kept */
	__u32 first_packets;  /* keep the first N packets of each flow (0: all) */
	__u16 tcp_flags_mask;
	__u16 tcp_flags_value;
	__u8 protos[32];      /* bitmap of IP protocols to keep (all zero: all) */
	__u32 wake_bytes;     /* per CPU: wake the reader after writing this much (ring_wake.h) */
	__u32 _pad0;
};

/* Key of the LPM tries: prefix length, then an IPv4-mapped or IPv6 address */
struct hl_net_key {
	__u32 prefixlen;
	__u8 addr[16];
};

/* Key of the first-N LRU map: the flow, lower endpoint first */
struct hl_flow_key {
	__u8 addr_lo[16];
	__u8 addr_hi[16];
	__u16 port_lo;
	__u16 port_hi;
	__u8 proto;
	__u8 _pad[3];
};

/* ---- flows (packet.bpf.c with cfg_flows): per-flow totals kept in the kernel ---- */

/* Key of the `flows` map: the 5-tuple with the lower (address, port) endpoint
 * first, the interface and the IP version. Direction 0 of a flow is lo -> hi. */
struct hl_flow_id {
	__u8 addr_lo[16]; /* IPv4 in the first 4 bytes */
	__u8 addr_hi[16];
	__u16 port_lo;    /* 0 without ports (ICMP, fragments, other protocols) */
	__u16 port_hi;
	__u32 ifindex;
	__u8 proto;
	__u8 ip_version;  /* 4 or 6 */
	__u8 l4;          /* 1: the L4 header was parsed (ports, ICMP type) */
	__u8 _pad0;
};

/* Value of `flows`, one per CPU (user space sums them); [d] is direction d */
struct hl_flow_stats {
	__u64 first_ns;   /* bpf_ktime_get_ns() of this CPU's first packet */
	__u64 last_ns;    /* and of its last */
	__u64 packets[2];
	__u64 bytes[2];   /* frame lengths, as frame.len */
	__u32 syn;        /* TCP packets with SYN set */
	__u32 fin;
	__u32 rst;
	__u16 tcp_flags[2]; /* OR of the TCP flags seen each way */
	__u8 first_dir;   /* direction of this CPU's first packet */
	__u8 syn_dirs;    /* bit d: a SYN without ACK went direction d */
	__u8 icmp_type[2];/* last ICMP / ICMPv6 type and code each way */
	__u8 icmp_code[2];
	__u8 _pad0[2];
};

/* Per-CPU counters of the flow path: index into the `flow_counters` array */
enum hl_flow_counter {
	HL_FC_PACKETS = 0, /* packets counted into a flow */
	HL_FC_NEW,         /* flows created */
	HL_FC_FAILED,      /* packets not counted: no map entry could be made */
	HL_FC__MAX,
};

/* ---- socket syscalls (socket.bpf.c) ---- */

enum hl_syscall {
	HL_SYS_READ = 1,
	HL_SYS_WRITE,
	HL_SYS_READV,
	HL_SYS_WRITEV,
	HL_SYS_SENDTO,
	HL_SYS_RECVFROM,
	HL_SYS_SENDMSG,
	HL_SYS_RECVMSG,
	HL_SYS_SENDFILE,
	HL_SYS_CONNECT,
	HL_SYS_ACCEPT,
	HL_SYS_ACCEPT4,
	HL_SYS_CLOSE,
	HL_SYS_SSL_READ,  /* plaintext from SSL_read / SSL_read_ex */
	HL_SYS_SSL_WRITE, /* plaintext to SSL_write / SSL_write_ex */
};

enum hl_conn_kind {
	HL_CONN_CONNECT = 1, /* this socket connected out: its process is the client */
	HL_CONN_ACCEPT = 2,  /* this socket was accepted: its process is the server */
	HL_CONN_CLOSE = 3,
};

/* hl_sock_data.flags */
enum hl_sock_data_flag {
	HL_SD_NO_DATA = 1 << 0,   /* sendfile: only the length is known */
	HL_SD_READ_FAILED = 1 << 1, /* the user buffer could not be read */
	HL_SD_TLS = 1 << 2,       /* plaintext of a TLS connection, from the TLS library */
	HL_SD_TLS_RAW = 1 << 3,   /* TLS records as they went over the socket (the handshake) */
};

#define HL_DATA_MAX 8192 /* largest prefix of one syscall's bytes that is copied (twice this is a per-CPU buffer; 32 KiB is the limit) */
#define HL_IOV_MAX 16     /* iovec entries followed per readv/writev/sendmsg/recvmsg */

/* Who moved the bytes and on which connection; local and remote endpoint. */
struct hl_sock_id {
	__u64 ts_ns;      /* bpf_ktime_get_ns() at syscall exit */
	__u64 sock;       /* the struct sock, keyed: one connection across fd reuse */
	__u64 cgroup_id;  /* cgroup v2 id */
	__u32 tgid;
	__u32 tid;
	__u32 fd;
	__u32 netns;      /* network namespace inode */
	__u16 family;     /* AF_INET, AF_INET6, AF_UNIX */
	__u16 lport;      /* local port */
	__u16 rport;      /* remote port */
	__u8 protocol;    /* IPPROTO_TCP, IPPROTO_UDP */
	__u8 _pad0;
	__u8 laddr[16];   /* IPv4 in the first 4 bytes */
	__u8 raddr[16];
	char comm[16];
};

struct hl_sock_data {
	__u8 type;        /* HL_EV_SOCK_DATA */
	__u8 direction;   /* HL_DIR_INGRESS: read by the process, HL_DIR_EGRESS: written */
	__u8 syscall;     /* enum hl_syscall */
	__u8 flags;       /* enum hl_sock_data_flag */
	__u32 captured;   /* bytes that follow */
	__u64 len;        /* bytes the syscall moved */
	struct hl_sock_id id;
	/* followed by `captured` bytes: the first of the `len` moved */
};

struct hl_sock_conn {
	__u8 type;        /* HL_EV_SOCK_CONN */
	__u8 kind;        /* enum hl_conn_kind */
	__u8 syscall;     /* enum hl_syscall */
	__u8 _pad0;
	__s32 ret;        /* the syscall's result (connect: 0 or -EINPROGRESS) */
	struct hl_sock_id id;
};

/* A process started a new program (HL_EV_EXEC: user space looks for TLS libraries in it),
 * or a process that passes the process filters started a child (HL_EV_FORK, tgid is the
 * child's: with uprobes per process, user space probes the child too). */
struct hl_exec {
	__u8 type;        /* HL_EV_EXEC or HL_EV_FORK */
	__u8 _pad0[3];
	__u32 tgid;
	__u64 ts_ns;
};

enum hl_sock_counter {
	HL_SC_EVENTS = 0,     /* data events written to the ring */
	HL_SC_CONN_EVENTS,    /* connect / accept / close events written */
	HL_SC_FILTERED_PID,
	HL_SC_FILTERED_CGROUP,
	HL_SC_FILTERED_COMM,
	HL_SC_FILTERED_PORT,
	HL_SC_FILTERED_FAMILY,/* Unix and other non-IP sockets, unless asked for */
	HL_SC_NOT_L7,         /* bytes of connections whose first bytes are no known protocol: not copied */
	HL_SC_RING_FULL,
	HL_SC_CUT,            /* copies cut to the prefix size (logged, marked truncated) */
	HL_SC_READ_FAILED,
	HL_SC_TLS_NO_FD,      /* TLS plaintext whose socket could not be told: not logged */
	HL_SC_TLS_CIPHERTEXT, /* encrypted TLS records: not copied */
	HL_SC__MAX,
};

/* hl_sock_settings.flags */
enum hl_sock_setting_flag {
	HL_SS_PIDS = 1 << 0,     /* keep only the processes in `pids` */
	HL_SS_CGROUPS = 1 << 1,  /* keep only the cgroups in `cgroups` */
	HL_SS_COMMS = 1 << 2,    /* keep only the process names in `comms` */
	HL_SS_PORTS = 1 << 3,    /* keep only connections with a local or remote port in `sock_ports` */
	HL_SS_UNIX = 1 << 4,     /* also Unix sockets */
	HL_SS_ALL_DATA = 1 << 5, /* copy every connection's bytes, not only those inferred as L7 */
};

struct hl_sock_settings {
	__u32 flags;       /* enum hl_sock_setting_flag */
	__u32 data_max;    /* bytes copied per syscall, at most HL_DATA_MAX */
	__u32 wake_bytes;  /* per CPU: wake the reader after writing this much (ring_wake.h) */
	__u32 _pad0;
};

#pragma clang diagnostic pop

#endif /* HDRLOG_ABI_H */
