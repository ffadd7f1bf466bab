"""What every capture shares: a loaded object, its ring buffer, its per-CPU counters, its links."""

from __future__ import annotations

import contextlib
import os
import struct
from importlib import resources

from hdrlog.bpf import BpfError, Link, Object, ObjectSpec, RingBuffer
from hdrlog.bpf.links import close_all

__all__ = ["Capture", "object_path", "ObjectMissingError", "wake_bytes_per_cpu"]

_U32 = struct.Struct("<I")


class ObjectMissingError(FileNotFoundError):
    pass


def wake_bytes_per_cpu(ring_size: int) -> int:
    """The reader is woken once about a quarter of the ring waits; each CPU counts its own
    share of that (bpf/ring_wake.h), so no program reads the ring's shared positions."""
    return max(1, ring_size // 4 // (os.cpu_count() or 1))


def object_path(name: str) -> str:
    """Path of a built BPF object shipped in the package."""
    path = resources.files("hdrlog") / "objects" / name
    if not path.is_file():
        raise ObjectMissingError(
            f"BPF object {name} is not built: run `make -C bpf` in the source tree "
            "(the README's commands do it)"
        )
    return str(path)


class Capture:
    """A loaded program set. Subclasses name the object, ring, counter map and counter names."""

    OBJECT = ""
    RING = ""
    COUNTER_MAP = ""
    COUNTER_NAMES: tuple[str, ...] = ()

    def __init__(self, obj: Object):
        self.obj = obj
        self.ring = RingBuffer(obj.map(self.RING))
        self._counters = obj.map(self.COUNTER_MAP)
        self.links: list[Link] = []

    @classmethod
    def _open(cls, path: str | None, ring_size: int, rodata: dict[str, int]) -> Object:
        with ObjectSpec.open(path or object_path(cls.OBJECT)) as spec:
            for name, value in rodata.items():
                spec.rodata[name] = value
            spec.map(cls.RING).max_entries = ring_size
            return spec.load()

    @classmethod
    def _new(cls, obj: Object):
        try:
            return cls(obj)
        except BaseException:
            obj.close()
            raise

    def counters(self) -> dict[str, int]:
        return {name: self._counters.sum_u64(_U32.pack(i)) for i, name in enumerate(self.COUNTER_NAMES)}

    def detach(self) -> None:
        links, self.links = self.links[::-1], []
        close_all(links)

    def close(self) -> None:
        self.detach()
        with contextlib.suppress(BpfError):
            self.ring.close()
        self.obj.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()
