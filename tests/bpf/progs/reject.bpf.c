// SPDX-License-Identifier: (LGPL-2.1 OR BSD-2-Clause)
/* Test-only: a program the verifier must reject (packet read without a bounds check). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

SEC("tc")
int unchecked_read(struct __sk_buff *skb)
{
	return *(__u32 *)(long)skb->data;
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
