"""Run the packet program on hand-built packets with BPF_PROG_TEST_RUN and decode what it emitted."""

from __future__ import annotations

from hdrlog.capture.packets import PacketCapture, PacketFilters
from hdrlog.decode import decode_packet
from hdrlog.packets import PacketRecorder


class PacketHarness:
    """The real packet program, loaded once; `run(pkt)` returns the JSON record it produced (or None)."""

    PROGRAMS = {"tc": "tc_ingress", "tc_egress": "tc_egress", "xdp": "xdp_ingress"}

    def __init__(self, snaplen: int = 64, ring_size: int = 1 << 20):
        self.cap = PacketCapture.load(snaplen=snaplen, ring_size=ring_size)
        self.recorder = PacketRecorder()

    def configure(self, filters: PacketFilters | None = None) -> None:
        self.cap.configure(filters or PacketFilters())

    def events(self, data: bytes, hook: str = "tc"):
        res = self.cap.obj.program(self.PROGRAMS[hook]).test_run(bytes(data))
        expected = 2 if hook == "xdp" else -1  # XDP_PASS, TC_ACT_UNSPEC: never drops traffic
        assert res.retval == expected, f"program returned {res.retval}"
        batch = self.cap.ring.drain()
        return [decode_packet(batch.data, off, n) for off, n in batch.records]

    def run(self, data: bytes, hook: str = "tc") -> dict | None:
        evs = self.events(data, hook)
        assert len(evs) <= 1
        if not evs:
            return None
        import msgspec

        return msgspec.to_builtins(self.recorder.record(evs[0]))

    def counters(self) -> dict[str, int]:
        return self.cap.counters()

    def close(self) -> None:
        self.cap.close()
