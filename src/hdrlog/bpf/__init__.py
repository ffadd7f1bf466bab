"""hdrlog's libbpf binding: objects, programs, maps, links, ring buffers. Knows no protocols."""

from hdrlog.bpf.errors import BpfError, NotSupported, VerifierError
from hdrlog.bpf.links import Link, remove_stale_tc_filters, tcx_supported
from hdrlog.bpf.object import BPF_ANY, BPF_NOEXIST, Map, Object, ObjectSpec, Program, TestRun
from hdrlog.bpf.ringbuf import Batch, RingBuffer

__all__ = [
    "BPF_ANY",
    "BPF_NOEXIST",
    "Batch",
    "BpfError",
    "Link",
    "Map",
    "NotSupported",
    "Object",
    "ObjectSpec",
    "Program",
    "RingBuffer",
    "TestRun",
    "VerifierError",
    "remove_stale_tc_filters",
    "tcx_supported",
]
