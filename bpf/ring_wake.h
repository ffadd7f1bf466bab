/* SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause) */
/* When to wake the ring's reader, decided without touching shared state.
 *
 * bpf_ringbuf_query(BPF_RB_AVAIL_DATA) reads the consumer position user space writes:
 * a cache line that moves between CPUs, measured at ~500 ns per event here. Instead each
 * CPU counts the bytes it wrote since it last woke the reader and wakes it past its share
 * (user space writes wake_bytes as ring/4 divided by the CPUs), so at most about a quarter
 * of the ring waits unannounced; the reader also drains on a timer. */
#ifndef HL_RING_WAKE_H
#define HL_RING_WAKE_H

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} unannounced SEC(".maps");

static __always_inline __u64 ring_wake_flag(__u32 wake_bytes, __u32 size)
{
	__u32 zero = 0;
	__u64 *n = bpf_map_lookup_elem(&unannounced, &zero);

	if (wake_bytes == 0 || !n)
		return BPF_RB_FORCE_WAKEUP;
	*n += size;
	if (*n < wake_bytes)
		return BPF_RB_NO_WAKEUP;
	*n = 0;
	return BPF_RB_FORCE_WAKEUP;
}

#endif
