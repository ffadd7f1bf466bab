"""A BPF ring buffer read from Python without a foreign-function call per record.

The map is mmap'ed like libbpf does (kernel/bpf/ringbuf.c): the consumer page
read-write at offset 0; the producer page and the data area, mapped twice in a
row so a record that wraps reads as one run, read-only at one page. Each record
has an 8-byte header (u32 length with BUSY and DISCARD bits, u32 page offset)
and is 8-byte aligned. A drain copies all committed records in one slice and
advances the consumer position once.
"""

from __future__ import annotations

import ctypes
import errno as E
import mmap as _mmap
import select
from dataclasses import dataclass

from hdrlog.bpf import _libbpf as L
from hdrlog.bpf.errors import BpfError

__all__ = ["RingBuffer", "Batch"]

BPF_MAP_TYPE_RINGBUF = 27
_BUSY = 1 << 31
_DISCARD = 1 << 30
_HDR = 8
_PAGE = _mmap.PAGESIZE


@dataclass(frozen=True, slots=True)
class Batch:
    """Records drained at once: `data` holds them all, `records` their (offset, length)."""

    data: bytes
    records: list[tuple[int, int]]

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self):
        mv = memoryview(self.data)
        for off, n in self.records:
            yield mv[off : off + n]


class RingBuffer:
    def __init__(self, ring_map):
        if ring_map.type != BPF_MAP_TYPE_RINGBUF:
            raise TypeError(f"map {ring_map.name} is not a ring buffer")
        self.name = ring_map.name
        self.size = ring_map.max_entries
        self._mask = self.size - 1
        fd = ring_map.fd
        cons = L.mmap(None, _PAGE, _mmap.PROT_READ | _mmap.PROT_WRITE, _mmap.MAP_SHARED, fd, 0)
        if cons in (None, L.MAP_FAILED):
            raise BpfError(L.errno() or E.ENOMEM, f"mmap consumer page of ring {self.name}")
        prod_len = _PAGE + 2 * self.size
        prod = L.mmap(None, prod_len, _mmap.PROT_READ, _mmap.MAP_SHARED, fd, _PAGE)
        if prod in (None, L.MAP_FAILED):
            L.munmap(cons, _PAGE)
            raise BpfError(L.errno() or E.ENOMEM, f"mmap data of ring {self.name}")
        self._cons_addr, self._prod_addr, self._prod_len = cons, prod, prod_len
        # aligned 8-byte loads and stores through ctypes are single instructions
        self._consumer = ctypes.c_uint64.from_address(cons)
        self._producer = ctypes.c_uint64.from_address(prod)
        data = (ctypes.c_char * (2 * self.size)).from_address(prod + _PAGE)
        self._data = memoryview(data).cast("B")
        self._words = self._data.cast("I")
        self._epoll = select.epoll()
        self._epoll.register(fd, select.EPOLLIN)
        self.records_read = 0
        self.bytes_read = 0

    def fileno(self) -> int:
        return self._epoll.fileno()

    def pending_bytes(self) -> int:
        return self._producer.value - self._consumer.value

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for a wakeup; True if one came."""
        try:
            return bool(self._epoll.poll(timeout))
        except InterruptedError:
            return False

    def drain(self, max_bytes: int | None = None) -> Batch:
        """Take every committed record (up to about max_bytes of them)."""
        cons = start = self._consumer.value
        prod = self._producer.value
        limit = prod if max_bytes is None else min(prod, cons + max_bytes)
        words, mask = self._words, self._mask
        records = []
        while cons < limit:
            hdr = words[(cons & mask) >> 2]
            if hdr & _BUSY:
                break
            n = hdr & ~(_BUSY | _DISCARD)
            if not hdr & _DISCARD:
                records.append((cons - start + _HDR, n))
            cons += (n + _HDR + 7) & ~7
        if cons == start:
            return Batch(b"", [])
        first = start & mask
        data = bytes(self._data[first : first + (cons - start)])
        self._consumer.value = cons
        self.records_read += len(records)
        self.bytes_read += cons - start
        return Batch(data, records)

    def close(self) -> None:
        if self._cons_addr:
            self._epoll.close()
            self._words.release()
            self._data.release()
            L.munmap(self._prod_addr, self._prod_len)
            L.munmap(self._cons_addr, _PAGE)
            self._cons_addr = 0

    def __enter__(self) -> "RingBuffer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
