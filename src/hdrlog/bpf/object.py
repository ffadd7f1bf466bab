"""BPF objects: open -> configure (rodata, map sizes, autoload) -> load -> programs and maps.

    with ObjectSpec.open(path) as spec:
        spec.rodata["cfg_snaplen"] = 128
        spec.map("events").max_entries = 1 << 22
        obj = spec.load()
    with obj, obj.program("tc_ingress").attach_tc(ifindex, "ingress"):
        ...

A spec cannot change after load; ownership of the libbpf object moves to the Object.
"""

from __future__ import annotations

import ctypes
import errno as E
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from hdrlog.bpf import _libbpf as L
from hdrlog.bpf import btf as B
from hdrlog.bpf.errors import BpfError, VerifierError, check_int, check_ptr

__all__ = ["ObjectSpec", "Object", "Program", "Map", "TestRun", "BPF_ANY", "BPF_NOEXIST"]

BPF_ANY, BPF_NOEXIST, BPF_EXIST = 0, 1, 2
# declared here rather than in _libbpf: only Map uses them
_lookup_and_delete = L._fn("bpf_map_lookup_and_delete_elem", ctypes.c_int, ctypes.c_int, L.p, L.p)
_lookup_batch = L._fn("bpf_map_lookup_batch", ctypes.c_int, ctypes.c_int, L.p, L.p, L.p, L.p,
                      ctypes.POINTER(ctypes.c_uint32), L.p)
# enum bpf_map_type values the binding treats specially
_PERCPU_MAP_TYPES = {5, 6, 10}  # PERCPU_HASH, PERCPU_ARRAY, LRU_PERCPU_HASH


class _ObjectBase:
    """What an opened and a loaded object share: lookups by name, BTF struct layouts."""

    def _find(self, kind: str, name: str) -> int:
        fn = L.bpf_object__find_map_by_name if kind == "map" else L.bpf_object__find_program_by_name
        ptr = fn(self._handle.require(), name.encode())
        if not ptr:
            raise KeyError(f"{self.path} has no {kind} {name!r}")
        return ptr

    def _btf(self) -> int:
        btf = L.bpf_object__btf(self._handle.require())
        if not btf:
            raise KeyError(f"{self.path} has no BTF")
        return btf

    def struct_members(self, name: str) -> list[B.Member]:
        return B.struct_members(self._btf(), name)

    def struct_size(self, name: str) -> int:
        return B.struct_size(self._btf(), name)


class _Handle:
    """Owner of a `struct bpf_object *`; closed once."""

    def __init__(self, ptr: int, path: str):
        self.ptr = ptr
        self.path = path

    def close(self) -> None:
        if self.ptr:
            L.bpf_object__close(self.ptr)
            self.ptr = 0

    def require(self) -> int:
        if not self.ptr:
            raise ValueError(f"BPF object {self.path} is closed")
        return self.ptr


class RoData:
    """The `const volatile` globals of an object, by name, writable until load."""

    def __init__(self, handle: _Handle):
        self._handle = handle
        self._frozen = False
        obj = handle.require()
        self._map = L.bpf_object__find_map_by_name(obj, b".rodata")
        btf = L.bpf_object__btf(obj)
        self._vars = B.datasec_vars(btf, ".rodata") if btf and self._map else {}

    def _slot(self, name: str) -> tuple[int, B.Var]:
        if self._frozen:
            # after load the kernel's copy is frozen (and mapped read-only)
            raise ValueError(f"rodata of {self._handle.path} cannot change after load")
        if name not in self._vars:
            raise KeyError(f"{self._handle.path} has no rodata variable {name!r}")
        size = ctypes.c_size_t()
        base = L.bpf_map__initial_value(self._map, ctypes.byref(size))
        if not base:
            raise BpfError(E.EINVAL, f"rodata of {self._handle.path}", "not writable after load")
        return base, self._vars[name]

    def __setitem__(self, name: str, value: int | bytes) -> None:
        base, var = self._slot(name)
        raw = value if isinstance(value, bytes) else value.to_bytes(var.size, "little", signed=value < 0)
        if len(raw) != var.size:
            raise ValueError(f"rodata {name} takes {var.size} bytes, got {len(raw)}")
        ctypes.memmove(base + var.offset, raw, var.size)

    def __getitem__(self, name: str) -> int:
        base, var = self._slot(name)
        return int.from_bytes(ctypes.string_at(base + var.offset, var.size), "little")

    def __contains__(self, name: str) -> bool:
        return name in self._vars


class MapSpec:
    def __init__(self, ptr: int, name: str):
        self._ptr = ptr
        self.name = name

    @property
    def max_entries(self) -> int:
        return L.bpf_map__max_entries(self._ptr)

    @max_entries.setter
    def max_entries(self, n: int) -> None:
        check_int(L.bpf_map__set_max_entries(self._ptr, n), f"set max_entries of map {self.name}")


class ProgramSpec:
    def __init__(self, ptr: int, name: str):
        self._ptr = ptr
        self.name = name

    def set_autoload(self, load: bool) -> None:
        check_int(L.bpf_program__set_autoload(self._ptr, load), f"set autoload of {self.name}")


class ObjectSpec(_ObjectBase):
    """An opened, not yet loaded, BPF object file."""

    def __init__(self, handle: _Handle):
        self._handle = handle
        self.path = handle.path
        self.rodata = RoData(handle)

    @classmethod
    def open(cls, path: str | os.PathLike) -> "ObjectSpec":
        path = str(path)
        if not Path(path).is_file():
            raise BpfError(E.ENOENT, f"open BPF object {path}", "build it with `make -C bpf`")
        with L.captured_messages() as msgs:
            ptr = L.bpf_object__open_file(path.encode(), None)
            err = L.errno()
        check_ptr(ptr, f"open BPF object {path}", err, _last(msgs))
        return cls(_Handle(ptr, path))

    def map(self, name: str) -> MapSpec:
        return MapSpec(self._find("map", name), name)

    def program(self, name: str) -> ProgramSpec:
        return ProgramSpec(self._find("program", name), name)

    def load(self) -> "Object":
        obj = self._handle.require()
        with L.captured_messages() as msgs:
            ret = L.bpf_object__load(obj)
        if ret < 0:
            text = "".join(msgs)
            if "BEGIN PROG LOAD LOG" in text:
                raise VerifierError(-ret, f"load {self.path}", _verifier_log(text))
            raise BpfError(-ret, f"load {self.path}", _last(msgs))
        loaded = Object(self._handle)
        self.rodata._frozen = True
        self._handle = _Handle(0, self.path)  # ownership moved
        return loaded

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> "ObjectSpec":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _last(msgs: list[str]) -> str:
    for m in reversed(msgs):
        if m.strip():
            return m.strip().removeprefix("libbpf: ")
    return ""


def _verifier_log(text: str) -> str:
    start = text.find("-- BEGIN PROG LOAD LOG --")
    end = text.find("-- END PROG LOAD LOG --")
    head = text[: max(start, 0)].strip().splitlines()
    body = text[start + len("-- BEGIN PROG LOAD LOG --") : end if end > 0 else None]
    prog = next((h for h in reversed(head) if "prog '" in h), "")
    return (prog + "\n" if prog else "") + body.strip() + "\n"


class Object(_ObjectBase):
    """A loaded BPF object: its programs and maps live until close()."""

    def __init__(self, handle: _Handle):
        self._handle = handle
        self.path = handle.path
        self._programs: dict[str, Program] = {}
        self._maps: dict[str, Map] = {}

    def program(self, name: str) -> "Program":
        if name not in self._programs:
            self._programs[name] = Program(self._find("program", name), name, self)
        return self._programs[name]

    def map(self, name: str) -> "Map":
        if name not in self._maps:
            self._maps[name] = Map(self._find("map", name), name)
        return self._maps[name]

    @property
    def closed(self) -> bool:
        return not self._handle.ptr

    def close(self) -> None:
        self._handle.close()

    def __enter__(self) -> "Object":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True, slots=True)
class TestRun:
    retval: int
    data: bytes
    duration_ns: int


class Program:
    """A loaded program. attach_* return Links (context managers)."""

    def __init__(self, ptr: int, name: str, owner: Object):
        self._ptr = ptr
        self.name = name
        self._owner = owner

    @property
    def fd(self) -> int:
        self._owner._handle.require()
        fd = L.bpf_program__fd(self._ptr)
        if fd < 0:
            raise BpfError(E.EBADF, f"program {self.name}", "not loaded")
        return fd

    def test_run(self, data: bytes, *, ctx: bytes | None = None, repeat: int = 1) -> TestRun:
        """Run the program on `data` with BPF_PROG_TEST_RUN."""
        out = ctypes.create_string_buffer(max(len(data), 64) + 256)
        din = ctypes.create_string_buffer(data, len(data))
        opts = L.BpfTestRunOpts(sz=ctypes.sizeof(L.BpfTestRunOpts))
        opts.data_in = ctypes.cast(din, ctypes.c_void_p)
        opts.data_size_in = len(data)
        opts.data_out = ctypes.cast(out, ctypes.c_void_p)
        opts.data_size_out = len(out)
        opts.repeat = repeat
        if ctx is not None:
            cin = ctypes.create_string_buffer(ctx, len(ctx))
            opts.ctx_in = ctypes.cast(cin, ctypes.c_void_p)
            opts.ctx_size_in = len(ctx)
        check_int(L.bpf_prog_test_run_opts(self.fd, ctypes.byref(opts)), f"test run of {self.name}")
        return TestRun(
            retval=ctypes.c_int32(opts.retval).value,
            data=out.raw[: opts.data_size_out],
            duration_ns=opts.duration,
        )

    # Attach methods live in links.py; bound here so callers write prog.attach_tc(...).
    def attach_tc(self, ifindex: int, direction: str, *, mode: str = "auto"):
        from hdrlog.bpf.links import attach_tc

        return attach_tc(self, ifindex, direction, mode=mode)

    def attach_xdp(self, ifindex: int, *, mode: str = "generic"):
        from hdrlog.bpf.links import attach_xdp

        return attach_xdp(self, ifindex, mode=mode)

    def attach_tracepoint(self, category: str, name: str):
        from hdrlog.bpf.links import attach_libbpf, ensure_tracefs

        ensure_tracefs()
        return attach_libbpf(
            self,
            f"tracepoint {category}:{name}",
            L.bpf_program__attach_tracepoint,
            category.encode(),
            name.encode(),
        )

    def attach_raw_tracepoint(self, name: str):
        from hdrlog.bpf.links import attach_libbpf

        return attach_libbpf(
            self, f"raw tracepoint {name}", L.bpf_program__attach_raw_tracepoint, name.encode()
        )

    def attach_trace(self):
        """tp_btf / fentry-style programs: the target comes from the SEC() name."""
        from hdrlog.bpf.links import attach_libbpf

        return attach_libbpf(self, f"BTF trace program {self.name}", L.bpf_program__attach_trace)

    def attach_uprobe(
        self, binary: str, symbol: str, *, retprobe: bool = False, pid: int = -1, offset: int = 0
    ):
        from hdrlog.bpf.links import attach_uprobe

        return attach_uprobe(self, binary, symbol, retprobe=retprobe, pid=pid, offset=offset)


class Map:
    """A loaded map. Keys and values are bytes; per-CPU maps give one value per CPU."""

    def __init__(self, ptr: int, name: str):
        self.name = name
        self.fd = L.bpf_map__fd(ptr)
        self.type = L.bpf_map__type(ptr)
        self.key_size = L.bpf_map__key_size(ptr)
        self.value_size = L.bpf_map__value_size(ptr)
        self.max_entries = L.bpf_map__max_entries(ptr)
        self.percpu = self.type in _PERCPU_MAP_TYPES
        # per-CPU values are padded to 8 bytes per CPU (kernel/bpf/syscall.c bpf_map_value_size)
        self._stride = (self.value_size + 7) & ~7
        self._buf_size = self._stride * L.NUM_POSSIBLE_CPUS if self.percpu else self.value_size

    def _key(self, key: bytes):
        if len(key) != self.key_size:
            raise ValueError(f"map {self.name}: key is {self.key_size} bytes, got {len(key)}")
        return ctypes.create_string_buffer(key, len(key))

    def lookup(self, key: bytes) -> bytes | None:
        """The value, or None if the key is absent (per-CPU maps: all CPUs' values joined)."""
        val = ctypes.create_string_buffer(self._buf_size)
        ret = L.bpf_map_lookup_elem(self.fd, self._key(key), val)
        if ret == -E.ENOENT:
            return None
        check_int(ret, f"lookup in map {self.name}")
        return val.raw

    def lookup_percpu(self, key: bytes) -> list[bytes] | None:
        raw = self.lookup(key)
        if raw is None:
            return None
        if not self.percpu:
            raise TypeError(f"map {self.name} is not per-CPU")
        s, n = self._stride, self.value_size
        return [raw[i * s : i * s + n] for i in range(L.NUM_POSSIBLE_CPUS)]

    def sum_u64(self, key: bytes) -> int:
        """Sum of a u64 per-CPU value over all CPUs (counters)."""
        values = self.lookup_percpu(key) or []
        return sum(struct.unpack_from("<Q", v)[0] for v in values)

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        if self.percpu and len(value) == self.value_size:
            # one value for every CPU
            value = value.ljust(self._stride, b"\0") * L.NUM_POSSIBLE_CPUS
        if len(value) != self._buf_size:
            raise ValueError(f"map {self.name}: value is {self.value_size} bytes, got {len(value)}")
        val = ctypes.create_string_buffer(value, len(value))
        check_int(L.bpf_map_update_elem(self.fd, self._key(key), val, flags), f"update map {self.name}")

    def lookup_and_delete(self, key: bytes) -> bytes | None:
        """Remove an entry and return its value as it was when removed (None if absent):
        nothing the kernel added between a lookup and a delete is lost."""
        val = ctypes.create_string_buffer(self._buf_size)
        ret = _lookup_and_delete(self.fd, self._key(key), val)
        if ret == -E.ENOENT:
            return None
        check_int(ret, f"lookup and delete in map {self.name}")
        return val.raw

    def lookup_batch(self, chunk: int = 1024) -> Iterator[tuple[bytes, bytes]]:
        """Every entry, `chunk` per syscall (BPF_MAP_LOOKUP_BATCH; hash and array maps).
        Values are as lookup() gives them. Like keys(), not a snapshot of one instant."""
        out_batch = ctypes.create_string_buffer(max(self.key_size, 8))
        in_batch = None
        while True:
            keys = ctypes.create_string_buffer(self.key_size * chunk)
            values = ctypes.create_string_buffer(self._buf_size * chunk)
            count = ctypes.c_uint32(chunk)
            ret = _lookup_batch(self.fd, in_batch, out_batch, keys, values, ctypes.byref(count), None)
            if ret == -E.ENOSPC and count.value == 0:
                chunk *= 2  # a hash bucket holds more entries than fit: retry larger
                continue
            if ret < 0 and ret != -E.ENOENT:
                check_int(ret, f"batch lookup in map {self.name}")
            kr, vr, ks, vs = keys.raw, values.raw, self.key_size, self._buf_size
            for i in range(count.value):
                yield kr[i * ks : (i + 1) * ks], vr[i * vs : (i + 1) * vs]
            if ret == -E.ENOENT:
                return
            in_batch = ctypes.create_string_buffer(out_batch.raw, len(out_batch))

    def delete(self, key: bytes) -> bool:
        ret = L.bpf_map_delete_elem(self.fd, self._key(key))
        if ret == -E.ENOENT:
            return False
        check_int(ret, f"delete from map {self.name}")
        return True

    def keys(self) -> Iterator[bytes]:
        cur = None
        nxt = ctypes.create_string_buffer(self.key_size)
        while True:
            ret = L.bpf_map_get_next_key(self.fd, cur, nxt)
            if ret == -E.ENOENT:
                return
            check_int(ret, f"iterate map {self.name}")
            key = nxt.raw
            yield key
            cur = ctypes.create_string_buffer(key, len(key))

    def items(self) -> Iterator[tuple[bytes, bytes]]:
        for k in self.keys():
            v = self.lookup(k)
            if v is not None:
                yield k, v

    def clear(self) -> None:
        for k in list(self.keys()):
            self.delete(k)
