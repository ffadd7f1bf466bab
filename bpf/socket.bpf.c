// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/*
 * socket.bpf.c: the bytes processes read from and write to TCP sockets, from
 * syscall tracepoints only (no kprobes). Each sys_enter_* program stashes its
 * arguments per thread; the matching sys_exit_* program resolves the fd to its
 * socket (task -> files -> fdt -> file -> socket -> sock), applies the filters,
 * infers the protocol from a connection's first bytes and copies a bounded
 * prefix of the data. connect/accept/close mark the connection's boundaries.
 *
 * A tracepoint program may read only its own tracepoint's arguments (reading
 * beyond them loads but fails to attach with EACCES): one program per arity.
 */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_tracing.h>
#include "hdrlog_abi.h"
#include "ring_wake.h"

#define AF_UNIX 1
#define AF_INET 2
#define AF_INET6 10
#define SOCK_STREAM 1
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define EINPROGRESS 115
#define MSG_PEEK 2

const volatile __u32 cfg_self_tgid = 0; /* hdrlog itself: never captured */
const volatile __u64 cfg_sock_key = 0;  /* keys socket addresses so records do not show kernel pointers */

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 16 << 20);
} sock_events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, HL_SC__MAX);
	__type(key, __u32);
	__type(value, __u64);
} sock_counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct hl_sock_settings);
} sock_settings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, __u8);
} pids SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u64);
	__type(value, __u8);
} cgroups SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, char[16]);
	__type(value, __u8);
} comms SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u16);
	__type(value, __u8);
} sock_ports SEC(".maps");

/* A syscall's arguments between its enter and exit, per thread. */
struct stash {
	__u64 buf; /* buffer, iovec array or msghdr in user memory */
	__u32 fd;
	__u32 count; /* iovec count */
	__u8 syscall;
	__u8 _pad[7];
};


/* What is known of a connection's protocol (keyed by the keyed struct sock). */
enum conn_state {
	CONN_NEW = 1,      /* connect/accept seen, no bytes yet */
	CONN_L7 = 2,       /* first bytes were a known protocol: copy */
	CONN_OTHER = 3,    /* first bytes were something else: do not copy */
	CONN_TLS = 4,      /* TLS handshake: copy handshake records (the hellos) only */
	CONN_TLS_DATA = 5, /* TLS application data: nothing more to copy */
};

/* The plaintext of a TLS connection has its own state, under this key. */
#define PLAINTEXT_KEY(sock) ((sock) ^ 1)

/* An SSL_* call in progress, per thread: its arguments, for the return probe. */
struct ssl_call {
	__u64 ssl;
	__u64 buf;
	__u64 done_ptr; /* SSL_*_ex: where the byte count is written */
	__u8 syscall;   /* HL_SYS_SSL_READ / HL_SYS_SSL_WRITE */
	__u8 ex;
	__u8 _pad[6];
};

/* What a thread has in flight, kept in the task itself (task storage): no hashing and
 * no locking on the path every read and write takes, and it goes when the thread does.
 * A zero `syscall` means none. */
struct in_flight {
	struct stash sys;
	struct ssl_call ssl;
};

struct {
	__uint(type, BPF_MAP_TYPE_TASK_STORAGE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, int);
	__type(value, struct in_flight);
} in_flight SEC(".maps");

static __always_inline struct in_flight *in_flight_of_current(__u64 flags)
{
	return bpf_task_storage_get(&in_flight, bpf_get_current_task_btf(), 0, flags);
}

struct ssl_key {
	__u64 ssl;
	__u32 tgid;
	__u32 _pad;
};

/* SSL* -> fd, from SSL_set_fd or from the socket syscall made inside an SSL_* call;
 * forgotten on SSL_free (SSL* values are reused). */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct ssl_key);
	__type(value, __u32);
} ssl_fds SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, __u8);
} conns SEC(".maps");

struct data_scratch {
	struct hl_sock_data ev;
	__u8 data[2 * HL_DATA_MAX]; /* the second half is slack for masked offsets */
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct data_scratch);
} data_buf SEC(".maps");

/* Kept alive for BTF so user space can check the ABI against the object. */
struct hl_sock_data _abi_sock_data = {};
struct hl_sock_conn _abi_sock_conn = {};
struct hl_sock_settings _abi_sock_settings = {};
struct hl_exec _abi_exec = {};

static __always_inline void count(__u32 idx)
{
	__u64 *c = bpf_map_lookup_elem(&sock_counters, &idx);

	if (c)
		*c += 1;
}

static __always_inline const struct hl_sock_settings *settings(void)
{
	__u32 zero = 0;

	return bpf_map_lookup_elem(&sock_settings, &zero);
}

/* Process filters, cheap enough to run at every syscall entry. */
static __always_inline int process_wanted_(const struct hl_sock_settings *cfg, int tally)
{
	__u64 id = bpf_get_current_pid_tgid();
	__u32 tgid = id >> 32;

	if (tgid == cfg_self_tgid)
		return 0;
	if ((cfg->flags & HL_SS_PIDS) && !bpf_map_lookup_elem(&pids, &tgid)) {
		if (tally)
			count(HL_SC_FILTERED_PID);
		return 0;
	}
	if (cfg->flags & HL_SS_CGROUPS) {
		__u64 cg = bpf_get_current_cgroup_id();

		if (!bpf_map_lookup_elem(&cgroups, &cg)) {
			if (tally)
				count(HL_SC_FILTERED_CGROUP);
			return 0;
		}
	}
	if (cfg->flags & HL_SS_COMMS) {
		char comm[16] = {};

		bpf_get_current_comm(comm, sizeof(comm));
		if (!bpf_map_lookup_elem(&comms, comm)) {
			if (tally)
				count(HL_SC_FILTERED_COMM);
			return 0;
		}
	}
	return 1;
}

#define process_wanted(cfg) process_wanted_(cfg, 1)

__noinline int hl_stash(__u8 syscall, long fd, long buf, long n, long peek)
{
	const struct hl_sock_settings *cfg = settings();
	struct in_flight *t;

	/* MSG_PEEK leaves the bytes in the socket: they are read again later
	 * (nginx peeks one byte after accept to tell TLS from plaintext) */
	if (!cfg || fd < 0 || peek || !process_wanted(cfg))
		return 0;
	t = in_flight_of_current(BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!t)
		return 0;
	t->sys.buf = buf;
	t->sys.fd = fd;
	t->sys.count = n;
	t->sys.syscall = syscall;
	return 0;
}

/* A kernel pointer read as a number, typed again: its fields are then plain (fault-checked)
 * loads, not a bpf_probe_read_kernel call each (what BPF_CORE_READ does). */
extern void *bpf_rdonly_cast(const void *obj, __u32 btf_id) __ksym;
#define TYPED(type, p) ((type *)bpf_rdonly_cast((p), bpf_core_type_id_kernel(type)))

/* fd -> struct sock of the current task, or NULL if the fd is not a socket. */
static __always_inline struct sock *sock_of_fd(__u32 fd, __u16 *type)
{
	/* the task is a typed pointer: its fields up to the fd array are plain loads */
	struct task_struct *task = bpf_get_current_task_btf();
	struct fdtable *fdt = task->files->fdt;
	struct file *f = NULL;
	struct socket *sock;
	struct sock *sk;
	umode_t mode;

	if (!fdt || fd >= fdt->max_fds)
		return NULL;
	if (bpf_probe_read_kernel(&f, sizeof(f), &fdt->fd[fd]) || !f)
		return NULL;
	f = TYPED(struct file, f);
	mode = f->f_inode->i_mode;
	if ((mode & S_IFMT) != S_IFSOCK)
		return NULL;
	sock = TYPED(struct socket, f->private_data);
	if (!sock)
		return NULL;
	*type = sock->type;
	/* read as a number: the callers key maps with it (no arithmetic on typed pointers) */
	if (bpf_probe_read_kernel(&sk, sizeof(sk), &sock->sk))
		return NULL;
	return sk;
}

/* Fill the identity of a socket event from its sock; 0 if the socket is not one to capture. */
static __always_inline int fill_id_of(struct hl_sock_id *id, const struct hl_sock_settings *cfg, struct sock *sk,
				      __u16 type, __u32 fd)
{
	__u16 family;
	__u64 pid_tgid;
	__u64 sk_value = (__u64)sk;

	sk = TYPED(struct sock, sk);
	family = sk->__sk_common.skc_family;
	if (family == AF_UNIX) {
		if (!(cfg->flags & HL_SS_UNIX)) {
			count(HL_SC_FILTERED_FAMILY);
			return 0;
		}
	} else if (family != AF_INET && family != AF_INET6) {
		count(HL_SC_FILTERED_FAMILY);
		return 0;
	}
	if (type != SOCK_STREAM)
		return 0; /* datagram sockets come with later protocols (DNS) */
	id->family = family;
	id->protocol = sk->sk_protocol;
	id->lport = sk->__sk_common.skc_num;
	id->rport = __builtin_bswap16(sk->__sk_common.skc_dport);
	if (family == AF_INET) {
		*(__u32 *)id->laddr = sk->__sk_common.skc_rcv_saddr;
		*(__u32 *)id->raddr = sk->__sk_common.skc_daddr;
	} else if (family == AF_INET6) {
		const __u32 *l = sk->__sk_common.skc_v6_rcv_saddr.in6_u.u6_addr32;
		const __u32 *r = sk->__sk_common.skc_v6_daddr.in6_u.u6_addr32;

		for (int i = 0; i < 4; i++) {
			((__u32 *)id->laddr)[i] = l[i];
			((__u32 *)id->raddr)[i] = r[i];
		}
	}
	if ((cfg->flags & HL_SS_PORTS) && !bpf_map_lookup_elem(&sock_ports, &id->lport) &&
	    !bpf_map_lookup_elem(&sock_ports, &id->rport)) {
		count(HL_SC_FILTERED_PORT);
		return 0;
	}
	pid_tgid = bpf_get_current_pid_tgid();
	id->tgid = pid_tgid >> 32;
	id->tid = (__u32)pid_tgid;
	id->fd = fd;
	id->sock = sk_value ^ cfg_sock_key;
	id->netns = sk->__sk_common.skc_net.net->ns.inum;
	id->cgroup_id = bpf_get_current_cgroup_id();
	id->ts_ns = bpf_ktime_get_ns();
	bpf_get_current_comm(id->comm, sizeof(id->comm));
	return 1;
}

static __always_inline int fill_id(struct hl_sock_id *id, const struct hl_sock_settings *cfg, __u32 fd)
{
	__u16 type = 0;
	struct sock *sk = sock_of_fd(fd, &type);

	return sk && fill_id_of(id, cfg, sk, type, fd);
}

static __always_inline void emit_conn(__u8 kind, __u8 syscall, __u32 fd, long ret)
{
	const struct hl_sock_settings *cfg = settings();
	struct hl_sock_conn ev = {};
	__u8 state = CONN_NEW;

	if (!cfg || !fill_id(&ev.id, cfg, fd))
		return;
	ev.type = HL_EV_SOCK_CONN;
	ev.kind = kind;
	ev.syscall = syscall;
	ev.ret = ret;
	if (kind == HL_CONN_CLOSE) {
		/* only connections this program has seen are worth a close event */
		if (bpf_map_delete_elem(&conns, &ev.id.sock))
			return;
	} else {
		bpf_map_update_elem(&conns, &ev.id.sock, &state, BPF_ANY);
	}
	if (bpf_ringbuf_output(&sock_events, &ev, sizeof(ev), 0))
		count(HL_SC_RING_FULL);
	else
		count(HL_SC_CONN_EVENTS);
}

/* RFC 9110 method tokens and the HTTP/1.x status line (RFC 9112 4). */
static __always_inline int looks_like_http(const __u8 *b)
{
	switch (b[0]) {
	case 'G': return b[1] == 'E' && b[2] == 'T' && b[3] == ' ';
	case 'P': return (b[1] == 'O' && b[2] == 'S' && b[3] == 'T' && b[4] == ' ') ||
			 (b[1] == 'U' && b[2] == 'T' && b[3] == ' ') ||
			 (b[1] == 'A' && b[2] == 'T' && b[3] == 'C' && b[4] == 'H' && b[5] == ' ');
	case 'H': return (b[1] == 'E' && b[2] == 'A' && b[3] == 'D' && b[4] == ' ') ||
			 (b[1] == 'T' && b[2] == 'T' && b[3] == 'P' && b[4] == '/' && b[5] == '1' && b[6] == '.');
	case 'D': return b[1] == 'E' && b[2] == 'L' && b[3] == 'E' && b[4] == 'T' && b[5] == 'E' && b[6] == ' ';
	case 'O': return b[1] == 'P' && b[2] == 'T' && b[3] == 'I' && b[4] == 'O' && b[5] == 'N' && b[6] == 'S';
	case 'C': return b[1] == 'O' && b[2] == 'N' && b[3] == 'N' && b[4] == 'E' && b[5] == 'C' && b[6] == 'T';
	case 'T': return b[1] == 'R' && b[2] == 'A' && b[3] == 'C' && b[4] == 'E' && b[5] == ' ';
	}
	return 0;
}

/* A TLS record header (RFC 8446 5.1): content type, legacy version 3.x. */
static __always_inline int tls_record(const __u8 *b, __u8 content_type)
{
	return b[0] == content_type && b[1] == 3 && b[2] <= 4;
}

/* Copy up to `max` bytes of an iovec array into the scratch buffer; returns the
 * bytes copied. Global, so the verifier walks its loop once, apart from the caller. */
__noinline int hl_copy_iov(struct data_scratch *s, __u64 iov_addr, __u32 iovcnt, __u32 max)
{
	const struct iovec *iov = (const struct iovec *)iov_addr;
	__u32 off = 0, i;

	if (!s)
		return 0;
	for (i = 0; i < HL_IOV_MAX; i++) {
		struct iovec v;
		__u32 part;

		if (i >= iovcnt || off >= max)
			break;
		if (bpf_probe_read_user(&v, sizeof(v), &iov[i]))
			break;
		part = v.iov_len < max - off ? v.iov_len : max - off;
		/* off < max <= HL_DATA_MAX and part <= HL_DATA_MAX: inside the 2x buffer */
		off &= HL_DATA_MAX - 1;
		part &= 2 * HL_DATA_MAX - 1;
		if (part > HL_DATA_MAX)
			part = HL_DATA_MAX;
		if (part && bpf_probe_read_user(s->data + off, part, v.iov_base))
			break;
		off += part;
	}
	return off;
}

static __always_inline void emit_data(const struct stash *st, long ret, int plaintext)
{
	const struct hl_sock_settings *cfg = settings();
	__u32 zero = 0, want, n = 0, max;
	struct data_scratch *s = bpf_map_lookup_elem(&data_buf, &zero);
	__u8 state = 0, *known, syscall = st->syscall;
	const struct iovec *iov = NULL;
	__u32 iovcnt = 0;
	__u64 flags, key;

	__u16 type = 0;
	struct sock *sk;

	if (!cfg || !s)
		return;
	sk = sock_of_fd(st->fd, &type);
	if (!sk)
		return;
	/* What is known of the connection decides first: bytes of a connection that is not
	 * L7, or TLS past its handshake, are neither described nor copied. */
	key = (__u64)sk ^ cfg_sock_key;
	if (plaintext)
		key = PLAINTEXT_KEY(key);
	known = bpf_map_lookup_elem(&conns, &key);
	if (known)
		state = *known;
	if (!(cfg->flags & HL_SS_ALL_DATA)) {
		if (state == CONN_OTHER) {
			count(HL_SC_NOT_L7);
			return;
		}
		if (state == CONN_TLS_DATA && !plaintext) {
			count(HL_SC_TLS_CIPHERTEXT);
			return;
		}
	}
	__builtin_memset(&s->ev, 0, sizeof(s->ev));
	if (!fill_id_of(&s->ev.id, cfg, sk, type, st->fd))
		return;
	s->ev.type = HL_EV_SOCK_DATA;
	s->ev.syscall = syscall;
	s->ev.len = ret;
	s->ev.direction = (syscall == HL_SYS_WRITE || syscall == HL_SYS_WRITEV || syscall == HL_SYS_SENDTO ||
			   syscall == HL_SYS_SENDMSG || syscall == HL_SYS_SENDFILE || syscall == HL_SYS_SSL_WRITE)
				  ? HL_DIR_EGRESS : HL_DIR_INGRESS;
	if (plaintext)
		s->ev.flags |= HL_SD_TLS;


	if (syscall == HL_SYS_SENDFILE) {
		s->ev.flags = HL_SD_NO_DATA;
	} else {
		max = cfg->data_max < HL_DATA_MAX ? cfg->data_max : HL_DATA_MAX;
		want = ret < max ? ret : max;
		if (syscall == HL_SYS_READV || syscall == HL_SYS_WRITEV) {
			iov = (const struct iovec *)st->buf;
			iovcnt = st->count;
		} else if (syscall == HL_SYS_SENDMSG || syscall == HL_SYS_RECVMSG) {
			struct user_msghdr msg;

			if (!bpf_probe_read_user(&msg, sizeof(msg), (void *)st->buf)) {
				iov = msg.msg_iov;
				iovcnt = msg.msg_iovlen;
			}
		}
		if (iov) {
			n = hl_copy_iov(s, (__u64)iov, iovcnt, want);
		} else {
			n = want;
			barrier_var(n);
			n &= 2 * HL_DATA_MAX - 1;
			if (n > HL_DATA_MAX)
				n = HL_DATA_MAX;
			if (n && bpf_probe_read_user(s->data, n, (void *)st->buf))
				n = 0;
		}
		if (n == 0 && want)
			s->ev.flags |= HL_SD_READ_FAILED;
		if (n < ret)
			count(HL_SC_CUT);
	}

	/* Protocol inference: a new connection's first bytes decide; a connection
	 * whose start was not seen is checked until a message start shows up.
	 * TLS connections: the handshake records are copied (for the hellos), the
	 * encrypted rest is not; the plaintext comes from the TLS library's probes
	 * and is inferred apart, under PLAINTEXT_KEY. */
	if (!(cfg->flags & HL_SS_ALL_DATA) && state != CONN_L7) {
		__u8 next = 0;
		int copy = 0;

		if (n >= 8 && looks_like_http(s->data)) {
			next = CONN_L7;
			copy = 1;
		} else if (plaintext) {
			/* not (yet) HTTP inside TLS: checked again on the next call */
		} else if (state == CONN_TLS_DATA || (state == CONN_TLS && n >= 5 && tls_record(s->data, 23))) {
			/* application data: encrypted, nothing for us */
			next = CONN_TLS_DATA;
			count(HL_SC_TLS_CIPHERTEXT);
			if (state != next)
				bpf_map_update_elem(&conns, &key, &next, BPF_ANY);
			return;
		} else if (state == CONN_TLS || (n >= 5 && tls_record(s->data, 22))) {
			/* the handshake, in whatever pieces the process reads it (OpenSSL
			 * reads a record header, then its body) */
			next = CONN_TLS;
			copy = 1;
			s->ev.flags |= HL_SD_TLS_RAW;
		} else if (state == CONN_NEW && n >= 8) {
			/* eight bytes are enough to tell; fewer leave the connection undecided */
			next = CONN_OTHER;
		}
		if (next && next != state)
			bpf_map_update_elem(&conns, &key, &next, BPF_ANY);
		if (!copy) {
			count(HL_SC_NOT_L7);
			return;
		}
	}
	if (s->ev.flags & HL_SD_READ_FAILED)
		count(HL_SC_READ_FAILED);

	s->ev.captured = n;
	n &= 2 * HL_DATA_MAX - 1;
	flags = ring_wake_flag(cfg->wake_bytes, sizeof(s->ev) + n);
	if (bpf_ringbuf_output(&sock_events, s, sizeof(s->ev) + n, flags))
		count(HL_SC_RING_FULL);
	else
		count(HL_SC_EVENTS);
}

/* Global (not inlined): verified once for all twelve exit programs, which keeps
 * loading fast; it takes only scalars, so nothing about the caller's context leaks in. */
__noinline int hl_on_exit(long ret)
{
	struct in_flight *t = in_flight_of_current(0);
	struct stash st;

	if (!t || !t->sys.syscall)
		return 0;
	st = t->sys;
	t->sys.syscall = 0;
	switch (st.syscall) {
	case HL_SYS_CONNECT:
		if (ret == 0 || ret == -EINPROGRESS)
			emit_conn(HL_CONN_CONNECT, st.syscall, st.fd, ret);
		break;
	case HL_SYS_ACCEPT:
	case HL_SYS_ACCEPT4:
		if (ret >= 0)
			emit_conn(HL_CONN_ACCEPT, st.syscall, ret, 0);
		break;
	default: {
		/* Inside SSL_read/SSL_write this syscall moves ciphertext: it tells
		 * which socket the SSL* is on (curl never calls SSL_set_fd). */
		if (t->ssl.syscall) {
			struct ssl_key k = { .ssl = t->ssl.ssl, .tgid = bpf_get_current_pid_tgid() >> 32 };

			bpf_map_update_elem(&ssl_fds, &k, &st.fd, BPF_ANY);
		}
		if (ret > 0)
			emit_data(&st, ret, 0);
	}
	}
	return 0;
}

/* ---- OpenSSL: SSL_read, SSL_write, SSL_read_ex, SSL_write_ex, SSL_set_fd, SSL_free ---- */

static __always_inline int ssl_enter(__u8 syscall, void *ssl, void *buf, void *done_ptr, __u8 ex)
{
	const struct hl_sock_settings *cfg = settings();
	struct in_flight *t;

	if (!cfg || !process_wanted(cfg))
		return 0;
	t = in_flight_of_current(BPF_LOCAL_STORAGE_GET_F_CREATE);
	if (!t)
		return 0;
	t->ssl.ssl = (__u64)ssl;
	t->ssl.buf = (__u64)buf;
	t->ssl.done_ptr = (__u64)done_ptr;
	t->ssl.syscall = syscall;
	t->ssl.ex = ex;
	return 0;
}

/* Global: one verification for the four return probes. */
__noinline int hl_ssl_exit(long ret)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct in_flight *t = in_flight_of_current(0);
	struct ssl_key k = {};
	struct stash st = {};
	struct ssl_call c;
	__u32 *fd;
	__u64 n = 0;

	if (!t || !t->ssl.syscall)
		return 0;
	c = t->ssl;
	t->ssl.syscall = 0;
	if (c.ex) {
		/* SSL_read_ex / SSL_write_ex return 1 and store the count (OpenSSL 1.1.1+) */
		if ((int)ret != 1 || bpf_probe_read_user(&n, sizeof(n), (void *)c.done_ptr))
			return 0;
	} else {
		if ((int)ret <= 0)
			return 0;
		n = (int)ret;
	}
	if (n == 0)
		return 0;
	k.ssl = c.ssl;
	k.tgid = id >> 32;
	fd = bpf_map_lookup_elem(&ssl_fds, &k);
	if (!fd) {
		count(HL_SC_TLS_NO_FD);
		return 0;
	}
	st.buf = c.buf;
	st.fd = *fd;
	st.syscall = c.syscall;
	emit_data(&st, n, 1);
	return 0;
}

SEC("uprobe")
int BPF_KPROBE(ssl_read_enter, void *ssl, void *buf, int num)
{
	return ssl_enter(HL_SYS_SSL_READ, ssl, buf, NULL, 0);
}

SEC("uprobe")
int BPF_KPROBE(ssl_write_enter, void *ssl, const void *buf, int num)
{
	return ssl_enter(HL_SYS_SSL_WRITE, ssl, (void *)buf, NULL, 0);
}

SEC("uprobe")
int BPF_KPROBE(ssl_read_ex_enter, void *ssl, void *buf, size_t num, size_t *readbytes)
{
	return ssl_enter(HL_SYS_SSL_READ, ssl, buf, readbytes, 1);
}

SEC("uprobe")
int BPF_KPROBE(ssl_write_ex_enter, void *ssl, const void *buf, size_t num, size_t *written)
{
	return ssl_enter(HL_SYS_SSL_WRITE, ssl, (void *)buf, written, 1);
}

/* The return value is declared int: a uretprobe sees -1 as 4294967295 otherwise. */
SEC("uretprobe")
int BPF_KRETPROBE(ssl_exit, int ret)
{
	return hl_ssl_exit(ret);
}

SEC("uprobe")
int BPF_KPROBE(ssl_set_fd, void *ssl, int fd)
{
	struct ssl_key k = { .ssl = (__u64)ssl, .tgid = bpf_get_current_pid_tgid() >> 32 };
	__u32 v = fd;

	if (fd >= 0)
		bpf_map_update_elem(&ssl_fds, &k, &v, BPF_ANY);
	return 0;
}

SEC("uprobe")
int BPF_KPROBE(ssl_free, void *ssl)
{
	struct ssl_key k = { .ssl = (__u64)ssl, .tgid = bpf_get_current_pid_tgid() >> 32 };

	bpf_map_delete_elem(&ssl_fds, &k);
	return 0;
}

/* A new program: user space looks at its mappings for TLS libraries. */
SEC("tracepoint/sched/sched_process_exec")
int on_exec(void *ctx)
{
	struct hl_exec ev = { .type = HL_EV_EXEC };
	__u64 id = bpf_get_current_pid_tgid();

	ev.tgid = id >> 32;
	ev.ts_ns = bpf_ktime_get_ns();
	bpf_ringbuf_output(&sock_events, &ev, sizeof(ev), 0);
	return 0;
}

/* Attached when uprobes go per process (a process filter is set): a wanted process's new
 * child (not a thread) inherits what made it wanted, so user space probes it too. */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(on_fork, struct task_struct *parent, struct task_struct *child)
{
	const struct hl_sock_settings *cfg = settings();
	struct hl_exec ev = { .type = HL_EV_FORK };

	if (!cfg || child->pid != child->tgid || !process_wanted_(cfg, 0))
		return 0;
	ev.tgid = child->tgid;
	ev.ts_ns = bpf_ktime_get_ns();
	bpf_ringbuf_output(&sock_events, &ev, sizeof(ev), 0);
	return 0;
}

#define ENTER(name, syscall, buf, n, peek)                                    \
	SEC("tracepoint/syscalls/sys_enter_" #name)                           \
	int enter_##name(struct trace_event_raw_sys_enter *ctx)               \
	{                                                                     \
		hl_stash(syscall, ctx->args[0], buf, n, peek);                \
		return 0;                                                     \
	}

#define EXIT(name)                                                            \
	SEC("tracepoint/syscalls/sys_exit_" #name)                            \
	int exit_##name(struct trace_event_raw_sys_exit *ctx)                 \
	{                                                                     \
		return hl_on_exit(ctx->ret);                                  \
	}

ENTER(read, HL_SYS_READ, ctx->args[1], 0, 0)
ENTER(write, HL_SYS_WRITE, ctx->args[1], 0, 0)
ENTER(readv, HL_SYS_READV, ctx->args[1], ctx->args[2], 0)
ENTER(writev, HL_SYS_WRITEV, ctx->args[1], ctx->args[2], 0)
ENTER(sendto, HL_SYS_SENDTO, ctx->args[1], 0, 0)
ENTER(recvfrom, HL_SYS_RECVFROM, ctx->args[1], 0, ctx->args[3] & MSG_PEEK)
ENTER(sendmsg, HL_SYS_SENDMSG, ctx->args[1], 0, 0)
ENTER(recvmsg, HL_SYS_RECVMSG, ctx->args[1], 0, ctx->args[2] & MSG_PEEK)
ENTER(sendfile64, HL_SYS_SENDFILE, 0, 0, 0)
ENTER(connect, HL_SYS_CONNECT, 0, 0, 0)
ENTER(accept, HL_SYS_ACCEPT, 0, 0, 0)
ENTER(accept4, HL_SYS_ACCEPT4, 0, 0, 0)

EXIT(read)
EXIT(write)
EXIT(readv)
EXIT(writev)
EXIT(sendto)
EXIT(recvfrom)
EXIT(sendmsg)
EXIT(recvmsg)
EXIT(sendfile64)
EXIT(connect)
EXIT(accept)
EXIT(accept4)

/* close has one argument; the socket is still there at entry. */
SEC("tracepoint/syscalls/sys_enter_close")
int enter_close(struct trace_event_raw_sys_enter *ctx)
{
	const struct hl_sock_settings *cfg = settings();
	long fd = ctx->args[0];

	if (!cfg || fd < 0 || !process_wanted(cfg))
		return 0;
	emit_conn(HL_CONN_CLOSE, HL_SYS_CLOSE, fd, 0);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
