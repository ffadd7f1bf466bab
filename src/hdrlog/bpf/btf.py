"""Just enough of a BTF reader: the variables of a data section and the layout of a struct."""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

from hdrlog.bpf import _libbpf as L

__all__ = ["Var", "Member", "datasec_vars", "struct_members", "struct_size"]

BTF_KIND_STRUCT = 4
BTF_KIND_DATASEC = 15


@dataclass(frozen=True, slots=True)
class Var:
    name: str
    offset: int
    size: int


@dataclass(frozen=True, slots=True)
class Member:
    name: str
    offset: int  # bytes
    size: int  # bytes


def _kind(t) -> int:
    return (t.info >> 24) & 0x1F


def _vlen(t) -> int:
    return t.info & 0xFFFF


def _trailer(t, count: int) -> list[tuple[int, int, int]]:
    """The vlen triples of u32 that follow a struct or datasec btf_type."""
    base = ctypes.addressof(t) + ctypes.sizeof(L.BtfType)
    words = (ctypes.c_uint32 * (3 * count)).from_address(base)
    return [(words[3 * i], words[3 * i + 1], words[3 * i + 2]) for i in range(count)]


def _name(btf: int, off: int) -> str:
    raw = L.btf__name_by_offset(btf, off)
    return raw.decode() if raw else ""


def datasec_vars(btf: int, section: str) -> dict[str, Var]:
    """Variables of a data section (".rodata", ".bss", ...) by name."""
    tid = L.btf__find_by_name_kind(btf, section.encode(), BTF_KIND_DATASEC)
    if tid < 0:
        return {}
    t = L.btf__type_by_id(btf, tid).contents
    out = {}
    for var_type, offset, size in _trailer(t, _vlen(t)):
        var = L.btf__type_by_id(btf, var_type).contents
        name = _name(btf, var.name_off)
        out[name] = Var(name, offset, size)
    return out


def _struct(btf: int, name: str):
    tid = L.btf__find_by_name_kind(btf, name.encode(), BTF_KIND_STRUCT)
    if tid < 0:
        raise KeyError(f"struct {name} is not in the object's BTF")
    return tid, L.btf__type_by_id(btf, tid).contents


def struct_size(btf: int, name: str) -> int:
    return _struct(btf, name)[1].size_or_type


def struct_members(btf: int, name: str) -> list[Member]:
    """Members of a struct in order, with byte offsets and sizes (no bitfields)."""
    _, t = _struct(btf, name)
    kflag = t.info >> 31
    out = []
    for name_off, mtype, offset in _trailer(t, _vlen(t)):
        bits = offset & 0xFFFFFF if kflag else offset
        size = L.btf__resolve_size(btf, mtype)
        out.append(Member(_name(btf, name_off), bits // 8, int(size)))
    return out
