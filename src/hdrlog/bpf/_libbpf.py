"""ctypes declarations of the parts of libbpf.so.1 (1.1 and later) that hdrlog uses."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import threading
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_bool,
    c_char_p,
    c_int,
    c_long,
    c_size_t,
    c_uint32,
    c_uint64,
    c_void_p,
)

log = logging.getLogger("hdrlog.libbpf")


def _load(name: str) -> ctypes.CDLL:
    try:
        return ctypes.CDLL(name, use_errno=True)
    except OSError as e:
        raise ImportError(
            f"cannot load {name}: {e} (install libbpf1: apt-get install libbpf1)"
        ) from e


lib = _load("libbpf.so.1")
libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)

# bpf_attach_type values hdrlog passes to bpf_link_create (include/uapi/linux/bpf.h)
BPF_XDP = 37
BPF_TCX_INGRESS = 46
BPF_TCX_EGRESS = 47

# enum bpf_tc_attach_point
BPF_TC_INGRESS = 1
BPF_TC_EGRESS = 2

# XDP attach flags (include/uapi/linux/if_link.h)
XDP_FLAGS_SKB_MODE = 1 << 1
XDP_FLAGS_DRV_MODE = 1 << 2

# enum libbpf_print_level
LIBBPF_WARN, LIBBPF_INFO, LIBBPF_DEBUG = 0, 1, 2


class BpfTestRunOpts(Structure):
    _fields_ = [
        ("sz", c_size_t),
        ("data_in", c_void_p),
        ("data_out", c_void_p),
        ("data_size_in", c_uint32),
        ("data_size_out", c_uint32),
        ("ctx_in", c_void_p),
        ("ctx_out", c_void_p),
        ("ctx_size_in", c_uint32),
        ("ctx_size_out", c_uint32),
        ("retval", c_uint32),
        ("repeat", c_int),
        ("duration", c_uint32),
        ("flags", c_uint32),
        ("cpu", c_uint32),
        ("batch_size", c_uint32),
    ]


class BpfLinkCreateOpts(Structure):
    _fields_ = [
        ("sz", c_size_t),
        ("flags", c_uint32),
        ("iter_info", c_void_p),
        ("iter_info_len", c_uint32),
        ("target_btf_id", c_uint32),
        ("cookie", c_uint64),  # first member of the union
        ("_union_rest", c_uint64 * 4),
    ]


class BpfTcHook(Structure):
    _fields_ = [
        ("sz", c_size_t),
        ("ifindex", c_int),
        ("attach_point", c_int),
        ("parent", c_uint32),
    ]


class BpfTcOpts(Structure):
    _fields_ = [
        ("sz", c_size_t),
        ("prog_fd", c_int),
        ("flags", c_uint32),
        ("prog_id", c_uint32),
        ("handle", c_uint32),
        ("priority", c_uint32),
    ]


class BpfUprobeOpts(Structure):
    _fields_ = [
        ("sz", c_size_t),
        ("ref_ctr_offset", c_size_t),
        ("bpf_cookie", c_uint64),
        ("retprobe", c_bool),
        ("func_name", c_char_p),
    ]


class BtfType(Structure):
    _fields_ = [("name_off", c_uint32), ("info", c_uint32), ("size_or_type", c_uint32)]


def _fn(name: str, restype, *argtypes):
    f = getattr(lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


p = c_void_p
# objects
bpf_object__open_file = _fn("bpf_object__open_file", p, c_char_p, p)
bpf_object__load = _fn("bpf_object__load", c_int, p)
bpf_object__close = _fn("bpf_object__close", None, p)
bpf_object__btf = _fn("bpf_object__btf", p, p)
bpf_object__find_map_by_name = _fn("bpf_object__find_map_by_name", p, p, c_char_p)
bpf_object__find_program_by_name = _fn("bpf_object__find_program_by_name", p, p, c_char_p)
bpf_object__next_program = _fn("bpf_object__next_program", p, p, p)
bpf_object__next_map = _fn("bpf_object__next_map", p, p, p)
# programs
bpf_program__name = _fn("bpf_program__name", c_char_p, p)
bpf_program__fd = _fn("bpf_program__fd", c_int, p)
bpf_program__type = _fn("bpf_program__type", c_int, p)
bpf_program__set_autoload = _fn("bpf_program__set_autoload", c_int, p, c_bool)
bpf_program__attach_tracepoint = _fn(
    "bpf_program__attach_tracepoint", p, p, c_char_p, c_char_p
)
bpf_program__attach_raw_tracepoint = _fn("bpf_program__attach_raw_tracepoint", p, p, c_char_p)
bpf_program__attach_trace = _fn("bpf_program__attach_trace", p, p)
bpf_program__attach_uprobe_opts = _fn(
    "bpf_program__attach_uprobe_opts", p, p, c_int, c_char_p, c_size_t, POINTER(BpfUprobeOpts)
)
bpf_link__destroy = _fn("bpf_link__destroy", c_int, p)
bpf_link__fd = _fn("bpf_link__fd", c_int, p)
# maps
bpf_map__name = _fn("bpf_map__name", c_char_p, p)
bpf_map__fd = _fn("bpf_map__fd", c_int, p)
bpf_map__type = _fn("bpf_map__type", c_int, p)
bpf_map__key_size = _fn("bpf_map__key_size", c_uint32, p)
bpf_map__value_size = _fn("bpf_map__value_size", c_uint32, p)
bpf_map__max_entries = _fn("bpf_map__max_entries", c_uint32, p)
bpf_map__set_max_entries = _fn("bpf_map__set_max_entries", c_int, p, c_uint32)
bpf_map__initial_value = _fn("bpf_map__initial_value", p, p, POINTER(c_size_t))
bpf_map_lookup_elem = _fn("bpf_map_lookup_elem", c_int, c_int, p, p)
bpf_map_update_elem = _fn("bpf_map_update_elem", c_int, c_int, p, p, c_uint64)
bpf_map_delete_elem = _fn("bpf_map_delete_elem", c_int, c_int, p)
bpf_map_get_next_key = _fn("bpf_map_get_next_key", c_int, c_int, p, p)
# links, test runs, tc
bpf_link_create = _fn("bpf_link_create", c_int, c_int, c_int, c_int, POINTER(BpfLinkCreateOpts))
bpf_prog_test_run_opts = _fn("bpf_prog_test_run_opts", c_int, c_int, POINTER(BpfTestRunOpts))
bpf_tc_hook_create = _fn("bpf_tc_hook_create", c_int, POINTER(BpfTcHook))
bpf_tc_hook_destroy = _fn("bpf_tc_hook_destroy", c_int, POINTER(BpfTcHook))
bpf_tc_attach = _fn("bpf_tc_attach", c_int, POINTER(BpfTcHook), POINTER(BpfTcOpts))
bpf_tc_detach = _fn("bpf_tc_detach", c_int, POINTER(BpfTcHook), POINTER(BpfTcOpts))
bpf_tc_query = _fn("bpf_tc_query", c_int, POINTER(BpfTcHook), POINTER(BpfTcOpts))
# features
libbpf_num_possible_cpus = _fn("libbpf_num_possible_cpus", c_int)
libbpf_probe_bpf_prog_type = _fn("libbpf_probe_bpf_prog_type", c_int, c_int, p)
libbpf_probe_bpf_map_type = _fn("libbpf_probe_bpf_map_type", c_int, c_int, p)
libbpf_major_version = _fn("libbpf_major_version", c_uint32)
libbpf_minor_version = _fn("libbpf_minor_version", c_uint32)
# BTF
btf__find_by_name_kind = _fn("btf__find_by_name_kind", c_int, p, c_char_p, c_uint32)
btf__type_by_id = _fn("btf__type_by_id", POINTER(BtfType), p, c_uint32)
btf__name_by_offset = _fn("btf__name_by_offset", c_char_p, p, c_uint32)
btf__resolve_size = _fn("btf__resolve_size", c_long, p, c_uint32)

# libc
mmap = libc.mmap
mmap.restype = c_void_p
mmap.argtypes = [c_void_p, c_size_t, c_int, c_int, c_int, c_long]
munmap = libc.munmap
munmap.restype = c_int
munmap.argtypes = [c_void_p, c_size_t]
_vsnprintf = libc.vsnprintf
_vsnprintf.restype = c_int
_vsnprintf.argtypes = [c_char_p, c_size_t, c_char_p, c_void_p]
MAP_FAILED = ctypes.c_void_p(-1).value
mount = libc.mount
mount.restype = c_int
mount.argtypes = [c_char_p, c_char_p, c_char_p, ctypes.c_ulong, c_void_p]

# libbpf's messages: captured while a caller listens (to explain a failure),
# otherwise sent to the `hdrlog.libbpf` logger at debug level.
_capture = threading.local()


@CFUNCTYPE(c_int, c_int, c_char_p, c_void_p)
def _print(level: int, fmt: bytes, args: int) -> int:
    buf = ctypes.create_string_buffer(8192)
    _vsnprintf(buf, len(buf), fmt, args)
    text = buf.value.decode(errors="replace")
    lines = getattr(_capture, "lines", None)
    if lines is not None:
        lines.append(text)
    log.debug("%s", text.rstrip("\n"))
    return 0


_fn("libbpf_set_print", c_void_p, c_void_p)(ctypes.cast(_print, c_void_p))


@contextlib.contextmanager
def captured_messages():
    """Collect libbpf's messages printed inside the block into a list."""
    outer = getattr(_capture, "lines", None)
    lines: list[str] = []
    _capture.lines = lines
    try:
        yield lines
    finally:
        _capture.lines = outer
        if outer is not None:
            outer.extend(lines)


def errno() -> int:
    return ctypes.get_errno()


NUM_POSSIBLE_CPUS = lib.libbpf_num_possible_cpus()
