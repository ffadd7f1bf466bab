"""The paths from a ring buffer to records, one per capture:

    packets: ring -> decode -> PacketEncoder -> JSON line (the PacketRecord schema)
    sockets: ring -> decode -> streams (per connection) -> HTTP/1 parser -> HttpLineEncoder -> JSON line
                                                                            (other shapes: HttpRecord -> processors)
                                                        -> TLS hello parser -> TlsRecord -> processors

Each drain() takes what the kernel has committed and returns finished records; finish()
flushes what is still open at shutdown. Processors (enrichment, redaction) run here, so
no record reaches a sink before them.
"""

from __future__ import annotations

import logging
import time

from hdrlog import decode as D
from hdrlog.bpf import Batch
from hdrlog.capture.packets import PacketCapture
from hdrlog.capture.sockets import SocketCapture
from hdrlog.http_lines import HttpLineEncoder
from hdrlog.l7_records import HttpRecorder, TlsRecorder
from hdrlog.packets import PacketEncoder
from hdrlog.protocols.http1 import ParseFailure
from hdrlog.records import Processor, Record, processed
from hdrlog.stitch.streams import StreamTable, TlsHandshake

__all__ = ["PacketPipeline", "SocketPipeline"]

log = logging.getLogger("hdrlog.pipeline")

# Bytes of events taken from a ring per drain() call: what is in memory at once (events,
# records, their JSON) stays near this, however far behind the reader is. Callers call
# drain() again while more() says the last one stopped at this limit.
DRAIN_CHUNK = 1 << 20


class _RingPipeline:
    capture: PacketCapture | SocketCapture
    _cut = False

    def _take(self) -> Batch:
        batch = self.capture.ring.drain(DRAIN_CHUNK)
        self._cut = len(batch.data) >= DRAIN_CHUNK
        return batch

    def more(self) -> bool:
        """The last drain() stopped at DRAIN_CHUNK, not at the end of what was committed
        (so a record still being written never makes the caller spin)."""
        return self._cut


class PacketPipeline(_RingPipeline):
    """Packet records leave as finished JSON lines (bytes): see packets.PacketEncoder."""

    def __init__(self, capture: PacketCapture, encoder: PacketEncoder):
        self.capture = capture
        self.encoder = encoder

    @property
    def decode_errors(self) -> int:
        return self.encoder.decode_errors

    def drain(self) -> list[bytes]:
        return self.encoder.lines(self._take())

    def finish(self) -> list[Record]:
        return []

    def detach(self) -> None:
        self.capture.detach()

    def counters(self) -> dict[str, int]:
        return {**self.capture.counters(), "events_read": self.capture.ring.records_read}


class SocketPipeline(_RingPipeline):
    def __init__(self, capture: SocketCapture, streams: StreamTable, recorder: HttpRecorder,
                 processors: list[Processor], tls_recorder: TlsRecorder | None = None, tls_probes=None):
        self.capture = capture
        self.streams = streams
        self.recorder = recorder
        self.lines = HttpLineEncoder(recorder.clock, recorder, processors)
        self.tls_recorder = tls_recorder
        self.tls_probes = tls_probes  # capture.tls_libs.TlsProbes: told of every exec and fork
        self.processors = processors
        self.handshakes = 0
        self.decode_errors = 0
        self.parse_failures = 0
        self.exchanges = 0
        self._next_idle_check = 0.0

    def _records(self, items) -> list[Record | bytes]:
        out: list[Record | bytes] = []
        encode = self.lines.encode
        for conn, item in items:
            if isinstance(item, ParseFailure):
                self.parse_failures += 1
                log.debug("HTTP parse failure on pid %d: %s", conn.tgid, item.reason)
                continue
            if isinstance(item, TlsHandshake):
                self.handshakes += 1
                if self.tls_recorder is None:
                    continue
                rec = processed(self.tls_recorder.record(conn, item), self.processors)
            else:
                self.exchanges += 1
                rec = encode(conn, item)  # a line, or a record (processed either way)
            if rec is not None:
                out.append(rec)
        return out

    def drain(self) -> list[Record | bytes]:
        batch = self._take()
        items = []
        feed = self.streams.feed
        feed_data = self.streams.feed_data
        data = batch.data
        data_head, sock_id, known_ids = D.SOCK_DATA_HEAD.unpack_from, D.sock_id, D.SOCK_IDS
        id_at, id_end, size = D.SOCK_DATA_HEAD.size, D.SOCK_DATA_HEAD.size + D.SOCK_ID_BYTES, D.SOCK_DATA_SIZE
        for off, n in batch.records:
            # a data event, the usual one, is read here: its fields go to the streams as they are
            if data[off] == D.EV_SOCK_DATA and n >= size:
                _, direction, _, flags, captured, length, ts = data_head(data, off)
                start = off + size
                if captured <= n - size:
                    sid = known_ids.get(data[off + id_at : off + id_end]) or sock_id(data, off + id_at)
                    items += feed_data(ts, direction, flags, length, sid, data[start : start + captured])
                    continue
            try:
                ev = D.decode_sock_event(data, off, n)
            except D.DecodeError as e:
                self.decode_errors += 1
                log.debug("undecodable socket event: %s", e)
                continue
            if isinstance(ev, D.ExecEvent):
                if self.tls_probes is not None:
                    self.tls_probes.on_exec(ev.tgid)
                continue
            if isinstance(ev, D.ForkEvent):
                if self.tls_probes is not None:
                    self.tls_probes.on_fork(ev.tgid)
                continue
            items += feed(ev)
        if self.tls_probes is not None:
            self.tls_probes.poll()
        now = time.monotonic()
        if now >= self._next_idle_check:
            self._next_idle_check = now + 10
            items += self.streams.flush_idle(time.monotonic_ns())
        return self._records(items)

    def finish(self) -> list[Record | bytes]:
        return self._records(self.streams.close_all())

    def detach(self) -> None:
        """Nothing more from the kernel: uprobes and tracepoints off."""
        if self.tls_probes is not None:
            self.tls_probes.close()
        self.capture.detach()

    def counters(self) -> dict[str, int]:
        c = {f"l7_{k}": v for k, v in self.capture.counters().items()}
        c["l7_events_read"] = self.capture.ring.records_read
        s = self.streams.stats
        c.update(l7_parse_failures=self.parse_failures, l7_exchanges=self.exchanges, l7_tls_handshakes=self.handshakes,
                 l7_unplaced_bytes=s.unplaced_bytes, l7_evicted=s.evicted)
        return c
