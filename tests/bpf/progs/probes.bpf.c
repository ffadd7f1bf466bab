// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Test-only programs for the binding: one of each attach type hdrlog's later programs use. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

const volatile __u32 cfg_tgid = 0;

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 8);
	__type(key, __u32);
	__type(value, __u64);
} hits SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, __u32);
	__type(value, __u64);
} table SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} percpu SEC(".maps");

static __always_inline void hit(__u32 idx)
{
	__u64 *c;

	if (cfg_tgid && (bpf_get_current_pid_tgid() >> 32) != cfg_tgid)
		return;
	c = bpf_map_lookup_elem(&hits, &idx);
	if (c)
		__sync_fetch_and_add(c, 1);
}

SEC("tracepoint/syscalls/sys_enter_getppid")
int tp_getppid(void *ctx)
{
	hit(0);
	return 0;
}

SEC("raw_tracepoint/sys_enter")
int raw_sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
	if (ctx->args[1] == 110 /* __NR_getppid on x86_64 */)
		hit(1);
	return 0;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(btf_sys_enter, struct pt_regs *regs, long id)
{
	if (id == 110)
		hit(2);
	return 0;
}

SEC("uprobe")
int BPF_KPROBE(up_getppid)
{
	hit(3);
	return 0;
}

SEC("uretprobe")
int BPF_KRETPROBE(uret_getppid, int ret)
{
	hit(4);
	return 0;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
