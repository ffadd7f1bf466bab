"""startup -> run -> shutdown. Everything attached is detached on the way out,
whether the run ends by --count/--duration, SIGINT, SIGTERM or an exception."""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import time
from dataclasses import dataclass, field

from hdrlog import decode as D
from hdrlog.capture.packets import PacketCapture, PacketFilters
from hdrlog.config import Config
from hdrlog.interfaces import ifindex, up_interfaces
from hdrlog.packets import PacketRecorder
from hdrlog.sinks import NdjsonSink

__all__ = ["Agent", "Summary", "filters_from"]

log = logging.getLogger("hdrlog.agent")


@dataclass
class Summary:
    counters: dict[str, int] = field(default_factory=dict)
    records: int = 0
    decode_errors: int = 0
    interfaces: list[str] = field(default_factory=list)
    stopped_by: str = ""

    def line(self) -> str:
        c = self.counters
        drops = {k: v for k, v in c.items() if k not in ("seen", "logged", "malformed", "truncated") and v}
        dropped = sum(drops.values())
        detail = ", ".join(f"{k} {v}" for k, v in drops.items())
        text = (
            f"hdrlog: seen {c.get('seen', 0)}, logged {c.get('logged', 0)}, "
            f"dropped {dropped}{f' ({detail})' if detail else ''}; "
            f"{self.records} records written"
        )
        if c.get("malformed") or c.get("truncated"):
            text += f"; {c.get('malformed', 0)} malformed, {c.get('truncated', 0)} with headers past the parse window"
        if self.decode_errors:
            text += f"; {self.decode_errors} undecodable events"
        return text


def filters_from(cfg: Config) -> PacketFilters:
    return PacketFilters(
        protocols=cfg.protocols(),
        ports=list(cfg.port),
        nets=cfg.networks("net"),
        not_nets=cfg.networks("not_net"),
        tcp_flags=cfg.tcp_flag_match(),
        sample=cfg.sample,
        first_packets=cfg.first_packets,
    )


class Agent:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self._stop_reason = ""
        self._recorder = PacketRecorder()

    def stop(self, reason: str = "stop") -> None:
        self._stop_reason = self._stop_reason or reason

    def _on_signal(self, signum, _frame) -> None:
        self.stop(signal.Signals(signum).name)

    def run(self) -> Summary:
        cfg = self.cfg
        names = cfg.interface or up_interfaces()
        indexes = [(n, ifindex(n)) for n in names]  # unknown names fail before anything loads
        summary = Summary(interfaces=names)
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            with contextlib.ExitStack() as stack:
                sink = NdjsonSink(cfg.output)
                stack.callback(sink.close)
                cap = stack.enter_context(PacketCapture.load(snaplen=cfg.snaplen, ring_size=cfg.ring_size))
                cap.configure(filters_from(cfg))
                for name, idx in indexes:
                    # lo: each packet passes egress then ingress; ingress alone logs it once
                    dirs = ("ingress",) if name == "lo" else ("ingress", "egress")
                    cap.attach(idx, mode=cfg.mode, directions=dirs, xdp_mode=cfg.xdp_mode, tc_attach=cfg.tc_attach)
                log.info("attached to %s (%s)", ", ".join(names), cfg.mode)
                self._loop(cap, sink, summary)
                cap.detach()
                self._drain(cap, sink, summary)  # what arrived before detach
                summary.counters = cap.counters()
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        summary.stopped_by = self._stop_reason
        return summary

    def _loop(self, cap: PacketCapture, sink: NdjsonSink, summary: Summary) -> None:
        cfg = self.cfg
        deadline = time.monotonic() + cfg.duration if cfg.duration else None
        while not self._stop_reason:
            timeout = cfg.drain_interval
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.stop("duration")
                    break
                timeout = min(timeout, left)
            cap.ring.wait(timeout)
            self._drain(cap, sink, summary)

    def _drain(self, cap: PacketCapture, sink: NdjsonSink, summary: Summary) -> None:
        recorder = self._recorder
        limit = self.cfg.count
        while True:
            batch = cap.ring.drain()
            if not batch:
                return
            out = []
            for off, n in batch.records:
                if limit is not None and summary.records + len(out) >= limit:
                    break
                try:
                    ev = D.decode_packet(batch.data, off, n)
                except D.DecodeError as e:
                    summary.decode_errors += 1
                    log.debug("undecodable event: %s", e)
                    continue
                out.append(recorder.record(ev))
            try:
                sink.write_many(out)
            finally:
                summary.records = sink.records
            if limit is not None and summary.records >= limit:
                self.stop("count")
                return


def print_summary(summary: Summary) -> None:
    print(summary.line(), file=sys.stderr, flush=True)
