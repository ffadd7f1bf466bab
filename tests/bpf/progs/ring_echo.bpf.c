// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Test-only: each packet given to BPF_PROG_TEST_RUN becomes one ring record holding
 * exactly its bytes (up to ECHO_MAX), so tests and benchmarks choose record sizes and
 * contents. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#define ECHO_MAX 2048

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 16);
} echo_ring SEC(".maps");

struct echo_buf {
	__u8 data[ECHO_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct echo_buf);
} echo_scratch SEC(".maps");

SEC("tc")
int ring_echo(struct __sk_buff *skb)
{
	__u32 zero = 0, len = skb->len;
	struct echo_buf *b = bpf_map_lookup_elem(&echo_scratch, &zero);

	if (!b || len == 0 || len > ECHO_MAX)
		return 0;
	if (bpf_skb_load_bytes(skb, 0, b->data, len))
		return 0;
	bpf_ringbuf_output(&echo_ring, b->data, len, 0);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
