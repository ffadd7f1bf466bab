"""The libbpf binding on the real kernel: maps, per-CPU values, every link type the
later programs use, the ring buffer across wrap-around, and errors as typed exceptions."""

from __future__ import annotations

import ctypes
import errno
import os
import struct
import subprocess
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.packet import raw

from hdrlog.bpf import BpfError, ObjectSpec, RingBuffer, VerifierError
from hdrlog.bpf import _libbpf as L
from tests.conftest import require_bpf
from tests.packets import PacketHarness

ROOT = Path(__file__).resolve().parents[2]
TEST_OBJECTS = ROOT / "build" / "test"
U32 = struct.Struct("<I")
U64 = struct.Struct("<Q")


@pytest.fixture(scope="module")
def test_objects() -> Path:
    require_bpf()
    subprocess.run(["make", "-s", "-C", str(ROOT / "bpf"), "test-objects"], check=True, capture_output=True, timeout=120)
    return TEST_OBJECTS


@pytest.fixture
def probes(test_objects):
    with ObjectSpec.open(test_objects / "probes.bpf.o") as spec:
        spec.rodata["cfg_tgid"] = os.getpid()
        obj = spec.load()
    with obj:
        yield obj


def hits(obj, idx: int) -> int:
    return U64.unpack(obj.map("hits").lookup(U32.pack(idx)))[0]


def getppid_n(n: int) -> None:
    # through libc, so the uprobe on libc's getppid fires as well as the syscall hooks
    libc = ctypes.CDLL("libc.so.6")
    for _ in range(n):
        libc.getppid()


def test_hash_map_update_lookup_iterate_delete(probes):
    """A hash map stores, finds, lists and deletes entries; a missing key is None."""
    m = probes.map("table")
    for k in range(5):
        m.update(U32.pack(k), U64.pack(k * 10))
    assert U64.unpack(m.lookup(U32.pack(3)))[0] == 30
    assert sorted(U32.unpack(k)[0] for k in m.keys()) == [0, 1, 2, 3, 4]
    assert m.delete(U32.pack(3)) is True and m.delete(U32.pack(3)) is False
    assert m.lookup(U32.pack(3)) is None
    m.clear()
    assert list(m.keys()) == []


def test_map_errors_are_typed(probes):
    """A wrong key size is a ValueError; a full map is a BpfError carrying E2BIG."""
    m = probes.map("table")
    with pytest.raises(ValueError):
        m.lookup(b"\0")
    for k in range(m.max_entries):
        m.update(U32.pack(k), U64.pack(1))
    with pytest.raises(BpfError) as e:
        m.update(U32.pack(999), U64.pack(1))
    assert e.value.errno == errno.E2BIG


def test_percpu_values(probes):
    """A per-CPU map gives one value per possible CPU and sums them."""
    m = probes.map("percpu")
    m.update(U32.pack(0), U64.pack(7))
    values = m.lookup_percpu(U32.pack(0))
    assert len(values) == L.NUM_POSSIBLE_CPUS
    assert all(U64.unpack(v)[0] == 7 for v in values)
    assert m.sum_u64(U32.pack(0)) == 7 * L.NUM_POSSIBLE_CPUS


def test_rodata_is_read_only_after_load(probes, test_objects):
    """rodata is set before load; a spec's rodata is gone once loaded."""
    with ObjectSpec.open(test_objects / "probes.bpf.o") as spec:
        spec.rodata["cfg_tgid"] = 1234
        assert spec.rodata["cfg_tgid"] == 1234
        with pytest.raises(KeyError):
            spec.rodata["nope"] = 1
        obj = spec.load()
        obj.close()
        with pytest.raises(ValueError):
            spec.rodata["cfg_tgid"] = 1


def test_tracepoint_link(probes):
    """A syscall tracepoint program runs while attached and stops when the link closes."""
    with probes.program("tp_getppid").attach_tracepoint("syscalls", "sys_enter_getppid"):
        getppid_n(5)
    assert hits(probes, 0) >= 5
    before = hits(probes, 0)
    getppid_n(5)
    assert hits(probes, 0) == before


def test_raw_and_btf_tracepoint_links(probes):
    """raw_tracepoint and tp_btf programs on sys_enter see the getppid calls."""
    with probes.program("raw_sys_enter").attach_raw_tracepoint("sys_enter"), probes.program("btf_sys_enter").attach_trace():
        getppid_n(4)
    assert hits(probes, 1) >= 4 and hits(probes, 2) >= 4


def test_uprobe_and_uretprobe_links(probes):
    """uprobe and uretprobe on libc's getppid fire once per call."""
    libc = ctypes.util.find_library("c")
    path = next(p for p in ("/lib/x86_64-linux-gnu/libc.so.6", "/usr/lib/x86_64-linux-gnu/libc.so.6") if os.path.exists(p))
    assert libc
    with probes.program("up_getppid").attach_uprobe(path, "getppid"), probes.program("uret_getppid").attach_uprobe(path, "getppid", retprobe=True):
        getppid_n(3)
    assert hits(probes, 3) == 3 and hits(probes, 4) == 3


def test_uprobe_on_missing_symbol_is_a_clear_error(probes):
    """Attaching to a symbol a library lacks raises BpfError naming the target."""
    with pytest.raises(BpfError, match="no_such_function"):
        probes.program("up_getppid").attach_uprobe("/lib/x86_64-linux-gnu/libc.so.6", "no_such_function")


def test_tracepoint_that_does_not_exist(probes):
    """A tracepoint the kernel lacks is a BpfError, not a crash."""
    with pytest.raises(BpfError):
        probes.program("tp_getppid").attach_tracepoint("syscalls", "sys_enter_no_such_call")


def test_verifier_rejection_keeps_the_log_and_says_one_line(test_objects):
    """A rejected program raises VerifierError: a one-line reason, and the whole log kept."""
    with ObjectSpec.open(test_objects / "reject.bpf.o") as spec:
        with pytest.raises(VerifierError) as e:
            spec.load()
    err = e.value
    assert "\n" not in str(err)
    assert str(err).endswith("outside of the packet")  # the verifier's own reason, not a statistic
    assert "unchecked_read" in err.log and len(err.log.splitlines()) > 3


def test_missing_object_file():
    """Opening an object that does not exist is a BpfError with ENOENT."""
    with pytest.raises(BpfError) as e:
        ObjectSpec.open("/nonexistent/x.bpf.o")
    assert e.value.errno == errno.ENOENT


def test_ring_buffer_survives_wraparound():
    """Thousands of records through a 64 KiB ring, drained in small batches, arrive whole and in order."""
    require_bpf()
    h = PacketHarness(snaplen=40, ring_size=1 << 16)
    try:
        prog = h.cap.obj.program("tc_ingress")
        seen = []
        for i in range(3000):
            body = bytes([i % 251]) * (i % 40)  # records of varying size
            prog.test_run(raw(Ether() / IP() / TCP(sport=1024 + i % 60000, seq=i) / body))
            if i % 7 == 6:
                seen += [ev.seq for ev in _events(h)]
        seen += [ev.seq for ev in _events(h)]
        assert seen == list(range(3000))
        assert h.counters()["ring_full"] == 0
    finally:
        h.close()


def _events(h):
    from hdrlog.decode import decode_packet

    batch = h.cap.ring.drain()
    out = []
    for off, n in batch.records:
        ev = decode_packet(batch.data, off, n)
        assert ev.payload == bytes([ev.seq % 251]) * (ev.seq % 40)
        out.append(ev)
    return out


def test_ring_buffer_rejects_other_maps(probes):
    """A RingBuffer can only be made from a ring buffer map."""
    with pytest.raises(TypeError):
        RingBuffer(probes.map("table"))


def test_ring_buffer_runs_of_equal_records(test_objects):
    """Runs of same-size records (read with one strided compare) mixed with other sizes, across the
    ring's wrap-around and a max_bytes cut, come out whole and in order; a batch of one size says so."""
    with ObjectSpec.open(test_objects / "ring_echo.bpf.o") as spec:
        obj = spec.load()
    with obj, RingBuffer(obj.map("echo_ring")) as ring:
        prog = obj.program("ring_echo")

        def send(i: int, size: int) -> None:
            prog.test_run(U32.pack(i) + bytes([i % 251]) * (size - 4))

        i, seen = 0, []
        for round_ in range(30):
            for size, count in ((64, 37), (70, 1), (71, 2), (64, 5), (1024, 20), (64, 1), (19, 3)):
                for _ in range(count):
                    send(i, size)
                    i += 1
            while len(seen) < i:
                batch = ring.drain(max_bytes=1 << 13 if round_ % 2 else None)
                for rec in batch:
                    n = U32.unpack(rec[:4])[0]
                    assert bytes(rec[4:]) == bytes([n % 251]) * (len(rec) - 4)
                    seen.append(n)
        assert seen == list(range(i))

        for j in range(50):
            send(j, 64)
        batch = ring.drain()
        assert len(batch) == 50 and batch.stride == 72 and len(batch.data) == 50 * 72
        assert list(batch.offsets) == [8 + j * 72 for j in range(50)]
        send(0, 64)
        send(1, 65)
        assert ring.drain().stride == 0
