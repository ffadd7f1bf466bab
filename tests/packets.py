"""Run the packet program on hand-built packets with BPF_PROG_TEST_RUN and decode what it emitted."""

from __future__ import annotations

from hdrlog.capture.packets import PacketCapture, PacketFilters
import msgspec

from hdrlog.decode import decode_packet, packet_values
from hdrlog.packets import PacketEncoder
from hdrlog.records import PacketRecord


class PacketHarness:
    """The real packet program, loaded once; `run(pkt)` returns the JSON record it produced (or None)."""

    PROGRAMS = {"tc": "tc_ingress", "tc_egress": "tc_egress", "xdp": "xdp_ingress"}

    def __init__(self, snaplen: int = 64, ring_size: int = 1 << 20):
        self.cap = PacketCapture.load(snaplen=snaplen, ring_size=ring_size)
        self.encoder = PacketEncoder()

    def configure(self, filters: PacketFilters | None = None) -> None:
        self.cap.configure(filters or PacketFilters())

    def events(self, data: bytes, hook: str = "tc"):
        res = self.cap.obj.program(self.PROGRAMS[hook]).test_run(bytes(data))
        expected = 2 if hook == "xdp" else -1  # XDP_PASS, TC_ACT_UNSPEC: never drops traffic
        assert res.retval == expected, f"program returned {res.retval}"
        batch = self.cap.ring.drain()
        return [decode_packet(batch.data, off, n) for off, n in batch.records]

    def run(self, data: bytes, hook: str = "tc") -> dict | None:
        """The record the packet gives, as its JSON object (checked against PacketRecord)."""
        res = self.cap.obj.program(self.PROGRAMS[hook]).test_run(bytes(data))
        assert res.retval == (2 if hook == "xdp" else -1), f"program returned {res.retval}"
        batch = self.cap.ring.drain()
        assert len(batch) <= 1
        if not len(batch):
            return None
        off, n = next(batch.records)
        line = self.encoder.encode(*packet_values(batch.data, off, n))
        # the batch path: the first sight of a flow, then its template if it keeps one
        assert self.encoder.lines(batch) == [line]
        assert self.encoder.lines(batch) == [line]
        return record_object(line)

    def counters(self) -> dict[str, int]:
        return self.cap.counters()

    def close(self) -> None:
        self.cap.close()


def record_object(line: bytes) -> dict:
    """A packet record line as its JSON object, after checking it is a valid PacketRecord:
    known names only, the right types, and the same object when encoded back."""
    obj = msgspec.json.decode(line)
    rec = msgspec.json.decode(line, type=PacketRecord)
    assert msgspec.json.decode(msgspec.json.encode(rec)) == obj
    assert list(obj) == [k for k in msgspec.to_builtins(rec)], "fields out of PacketRecord's order"
    return obj
