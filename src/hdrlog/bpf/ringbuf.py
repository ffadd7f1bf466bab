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
import struct
from dataclasses import dataclass
from typing import Sequence

from hdrlog.bpf import _libbpf as L
from hdrlog.bpf.errors import BpfError

__all__ = ["RingBuffer", "Batch"]

BPF_MAP_TYPE_RINGBUF = 27
_BUSY = 1 << 31
_DISCARD = 1 << 30
_HDR = 8
_PAGE = _mmap.PAGESIZE
_U32 = struct.Struct("<I")


@dataclass(frozen=True, slots=True)
class Batch:
    """Records drained at once: `data` holds them all (with their ring headers);
    record i is data[offsets[i] : offsets[i] + sizes[i]]. `stride` is nonzero when every
    record has the same size and they follow each other `stride` bytes apart from offset
    8, so a decoder can unpack the whole batch in one call (struct.iter_unpack)."""

    data: bytes
    offsets: Sequence[int]
    sizes: Sequence[int]
    stride: int = 0

    def __len__(self) -> int:
        return len(self.offsets)

    @property
    def records(self):
        """(offset, length) of each record."""
        return zip(self.offsets, self.sizes)

    def __iter__(self):
        mv = memoryview(self.data)
        for off, n in zip(self.offsets, self.sizes):
            yield mv[off : off + n]


_EMPTY = Batch(b"", (), ())
# A record whose header equals the one before it starts a check for a run of equal records
# (one strided slice compared at C speed); shorter runs are walked one by one.
_RUN_MIN = 4


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

    def wait(self, timeout: float) -> bool:
        """Wait up to `timeout` seconds for a wakeup; True if one came."""
        try:
            return bool(self._epoll.poll(timeout))
        except InterruptedError:
            return False

    def drain(self, max_bytes: int | None = None) -> Batch:
        """Take every committed record (up to about max_bytes of them).

        Headers are read in place, then the committed span is copied once. Runs of records
        of one size (packet events, fixed-size socket events) are recognised with one
        strided compare instead of a step per record."""
        cons = start = self._consumer.value
        prod = self._producer.value
        limit = prod if max_bytes is None else min(prod, cons + max_bytes)
        words, mask = self._words, self._mask
        offsets: list[int] = []
        sizes: list[int] = []
        prev = -1
        while cons < limit:
            hdr = words[(cons & mask) >> 2]
            if hdr & _BUSY:
                break
            n = hdr & ~(_BUSY | _DISCARD)
            stride = (n + _HDR + 7) & ~7
            run = 1
            if hdr == prev and (limit - cons) >= _RUN_MIN * stride:
                run = self._equal_headers(cons & mask, hdr, stride, (limit - cons) // stride)
            if not hdr & _DISCARD:
                rel = cons - start + _HDR
                if run == 1:
                    offsets.append(rel)
                    sizes.append(n)
                else:
                    offsets += range(rel, rel + run * stride, stride)
                    sizes += [n] * run
            cons += run * stride
            prev = hdr
        if cons == start:
            return _EMPTY
        first = start & mask
        data = bytes(self._data[first : first + (cons - start)])
        self._consumer.value = cons
        self.records_read += len(offsets)
        self.bytes_read += cons - start
        uniform = 0
        if offsets and offsets[0] == _HDR and sizes[0] == sizes[-1]:
            s0 = (sizes[0] + _HDR + 7) & ~7
            if len(offsets) * s0 == len(data):  # no other size and no discarded record between
                uniform = s0
        return Batch(data, offsets, sizes, uniform)

    def _equal_headers(self, pos: int, hdr: int, stride: int, most: int) -> int:
        """How many records from data offset `pos` on, `stride` apart, have header `hdr`
        (at least 1: the one at pos). Each one's length leads to the next, so they chain.
        Windows double while they match, so a short run costs little and a long one few calls."""
        step = stride >> 2
        first = pos >> 2
        done, window = 1, 8
        while done < most:
            m = min(window, most - done)
            start = first + done * step
            got = self._words[start : start + m * step : step].tobytes()
            want = _U32.pack(hdr) * m
            if got == want:
                done += m
                window <<= 1
                continue
            lo, hi = 0, m - 1  # got[:4*lo] matches; find the longest matching prefix
            while lo < hi:
                mid = (lo + hi + 1) >> 1
                if got[: 4 * mid] == want[: 4 * mid]:
                    lo = mid
                else:
                    hi = mid - 1
            return done + lo
        return done

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
