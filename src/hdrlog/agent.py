"""startup -> run -> shutdown. Everything attached is detached on the way out,
whether the run ends by --count/--duration, SIGINT, SIGTERM or an exception."""

from __future__ import annotations

import contextlib
import gc
import itertools
import logging
import os
import select
import signal
import sys
import time
from dataclasses import dataclass, field

from hdrlog.capture.packets import PacketCapture, PacketFilters
from hdrlog.capture.sockets import SocketCapture, SocketFilters, process_matcher
from hdrlog.clock import Clock
from hdrlog.config import Config, ConfigError
from hdrlog.flows import FlowReader, FlowRecorder
from hdrlog.l7_records import HeaderSelection, HttpRecorder, TlsRecorder
from hdrlog.interfaces import ifindex, up_interfaces
from hdrlog.packets import PacketEncoder
from hdrlog.pipelines import PacketPipeline, SocketPipeline
from hdrlog.records import Processor
from hdrlog.capture.tls_libs import TlsProbes
from hdrlog.protocols.http1 import Http1Parser
from hdrlog.protocols.tls_hello import HelloParser
from hdrlog.sinks import NdjsonSink
from hdrlog.stitch.streams import StreamTable

__all__ = ["Agent", "Summary", "filters_from"]

log = logging.getLogger("hdrlog.agent")


PACKET_DROPS = ("filtered_proto", "filtered_port", "filtered_net", "filtered_tcp_flags",
                "first_packets", "sampled", "ring_full")  # fmt: skip
L7_DROPS = ("l7_filtered_pid", "l7_filtered_cgroup", "l7_filtered_comm", "l7_filtered_port",
            "l7_filtered_family", "l7_not_l7", "l7_ring_full", "l7_tls_no_fd")  # fmt: skip


@dataclass
class Summary:
    counters: dict[str, int] = field(default_factory=dict)
    records: int = 0
    decode_errors: int = 0
    packet_records: bool = True  # False with --flows-only: no packet is "logged"

    def line(self) -> str:
        c = self.counters
        parts = []
        if "seen" in c:
            drops = {k: c[k] for k in PACKET_DROPS if c.get(k)}
            detail = ", ".join(f"{k} {v}" for k, v in drops.items())
            logged = f"logged {c['logged']}, " if self.packet_records else ""
            text = f"seen {c['seen']}, {logged}dropped {sum(drops.values())}{f' ({detail})' if detail else ''}"
            if c.get("malformed") or c.get("truncated"):
                text += f", {c.get('malformed', 0)} malformed, {c.get('truncated', 0)} with headers past the parse window"
            parts.append(text)
        if "flow_packets" in c:
            text = (f"flows: {c['flow_packets']} packets in {c['flow_new']} flows, "
                    f"{c['flow_records']} flow records, {c['flow_expired']} expired")
            parts.append(_noting(text, c, (("flow_evicted", "{} evicted before they were read (raise --max-flows)"),
                                           ("flow_failed", "{} packets not counted (flow table full)"))))
        if "l7_events" in c:
            drops = {k.removeprefix("l7_"): c[k] for k in L7_DROPS if c.get(k)}
            detail = ", ".join(f"{k} {v}" for k, v in drops.items())
            text = (f"L7 {c['l7_events']} socket events, {c['l7_exchanges']} HTTP exchanges, "
                    f"{c.get('l7_tls_handshakes', 0)} TLS handshakes, "
                    f"skipped {sum(drops.values())}{f' ({detail})' if detail else ''}")
            parts.append(_noting(text, c, (("l7_parse_failures", "{} unparseable stretches"),
                                           ("l7_cut", "{} copies cut to --capture-bytes"))))
        if "events_read" in c or "l7_events_read" in c:
            parts.append(f"{c.get('events_read', 0) + c.get('l7_events_read', 0)} events read")
        text = "hdrlog: " + "; ".join(parts + [f"{self.records} records written"])
        if self.decode_errors:
            text += f"; {self.decode_errors} undecodable events"
        return text


def _noting(text: str, counters: dict[str, int], notes: tuple[tuple[str, str], ...]) -> str:
    """text, then ", <note>" for each of the counters that is not zero ({} in the note is its value)."""
    for key, note in notes:
        if counters.get(key):
            text += ", " + note.format(counters[key])
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


def cgroup_ids(specs: list[str | int]) -> list[int]:
    """cgroup v2 directories (absolute, or relative to the cgroup2 mount) or ids -> ids."""
    from hdrlog.enrich.container import cgroup2_mount

    ids = []
    for spec in specs:
        if isinstance(spec, int) or str(spec).isdigit():
            ids.append(int(spec))
            continue
        path = str(spec)
        if not os.path.isabs(path):
            mount = cgroup2_mount()
            if mount is None:
                raise ConfigError("cgroup: no cgroup2 file system is mounted")
            path = os.path.join(mount, path)
        try:
            ids.append(os.stat(path).st_ino)
        except OSError:
            raise ConfigError(f"cgroup: no cgroup directory {spec!r}") from None
    return ids


def socket_filters_from(cfg: Config) -> SocketFilters:
    return SocketFilters(
        pids=list(cfg.pid),
        cgroups=cgroup_ids(cfg.cgroup),
        comms=list(cfg.comm),
        ports=list(cfg.port),
        unix=cfg.unix_sockets,
        data_max=cfg.capture_bytes,
    )


def processors_from(cfg: Config) -> list[Processor]:
    """Enrichment first, redaction last: nothing leaves the pipeline unredacted."""
    from hdrlog.enrich import ContainerEnricher, ProcessEnricher
    from hdrlog.redact import Redactor

    return [ProcessEnricher(), ContainerEnricher(), Redactor.from_config(cfg)]


class Agent:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self._stop_reason = ""
        self.clock = Clock()

    def stop(self, reason: str = "stop") -> None:
        self._stop_reason = self._stop_reason or reason

    def _on_signal(self, signum, _frame) -> None:
        self.stop(signal.Signals(signum).name)

    def run(self) -> Summary:
        cfg = self.cfg
        packets = not cfg.l7_only  # the packet program: packet records, flows or both
        names = (cfg.interface or up_interfaces()) if packets else []
        indexes = [(n, ifindex(n)) for n in names]  # unknown names fail before anything loads
        sock_filters = socket_filters_from(cfg) if cfg.l7 else None
        processors = processors_from(cfg) if cfg.l7 else []
        summary = Summary(packet_records=not cfg.flows_only)
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            with contextlib.ExitStack() as stack:
                sink = NdjsonSink(cfg.output)
                stack.callback(sink.close)
                pipelines: list = []
                if packets:
                    pipelines += self._start_packets(stack, indexes)
                if cfg.l7:
                    pipelines.append(self._start_sockets(stack, sock_filters, processors))
                flows = ", flows only" if cfg.flows_only else ", with flows" if cfg.flows else ""
                what = ([f"{', '.join(names)} ({cfg.mode}{flows})"] if packets else []) + (["socket syscalls (L7)"] if cfg.l7 else [])
                log.info("attached to %s", " and ".join(what))
                _quiet_gc()
                self._loop(pipelines, sink, summary)
                for p in pipelines:
                    p.detach()
                if not (cfg.count and summary.records >= cfg.count):
                    self._drain(pipelines, sink, summary, final=True)  # what arrived before detach
                for p in pipelines:
                    summary.counters.update(p.counters())
                    summary.decode_errors += p.decode_errors
        finally:
            for s, h in old.items():
                signal.signal(s, h)
        return summary

    def _start_packets(self, stack: contextlib.ExitStack, indexes) -> list:
        """The packet program: a PacketPipeline for packet records, a FlowReader for flows, or both."""
        cfg = self.cfg
        records = not cfg.flows_only
        cap = stack.enter_context(PacketCapture.load(snaplen=cfg.snaplen, ring_size=cfg.ring_size, flows=cfg.flows,
                                                     packets=records, max_flows=cfg.max_flows))
        cap.configure(filters_from(cfg))
        for name, idx in indexes:
            # lo: each packet passes egress then ingress; ingress alone logs it once
            dirs = ("ingress",) if name == "lo" else ("ingress", "egress")
            cap.attach(idx, mode=cfg.mode, directions=dirs, xdp_mode=cfg.xdp_mode, tc_attach=cfg.tc_attach)
        out: list = [PacketPipeline(cap, PacketEncoder(self.clock))] if records else []
        if cfg.flows:
            recorder = FlowRecorder(self.clock, hook=cfg.mode)
            out.append(FlowReader(cap, recorder, interval=cfg.flow_interval, idle_timeout=cfg.flow_idle_timeout))
        return out

    def _start_sockets(self, stack: contextlib.ExitStack, filters: SocketFilters, processors) -> SocketPipeline:
        cfg = self.cfg
        cap = stack.enter_context(SocketCapture.load(ring_size=cfg.l7_ring_size))
        cap.configure(filters)
        cap.attach()
        probes = None
        if cfg.tls:
            # with process filters, uprobes only in the processes they want (no trap elsewhere)
            only = process_matcher(filters)
            probes = TlsProbes(cap.obj, cfg.ssl_lib, only=only)
            stack.callback(probes.close)
            if only is not None:
                cap.attach_fork()  # before the scan: a child forked meanwhile is reported
            cap.attach_exec()
            probes.scan_all()
            if only is None:
                log.info("TLS: %d OpenSSL libraries probed", len(probes.libraries))
            else:
                log.info("TLS: OpenSSL probed per process: %d wanted processes so far", len(probes.processes))
        recorder = HttpRecorder(self.clock, HeaderSelection.parse(cfg.headers))
        streams = StreamTable(Http1Parser, new_hello_parser=HelloParser)
        return SocketPipeline(cap, streams, recorder, processors, TlsRecorder(self.clock), probes)

    def _loop(self, pipelines, sink: NdjsonSink, summary: Summary) -> None:
        cfg = self.cfg
        deadline = time.monotonic() + cfg.duration if cfg.duration else None
        poller = select.epoll()
        try:
            for p in pipelines:
                if not isinstance(p, FlowReader):  # read on its own timer; no ring
                    poller.register(p.capture.ring.fileno(), select.EPOLLIN)
            while not self._stop_reason:
                timeout = cfg.drain_interval
                if deadline is not None:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        self.stop("duration")
                        break
                    timeout = min(timeout, left)
                if not any(p.more() for p in pipelines):
                    poller.poll(timeout)
                self._drain(pipelines, sink, summary)
        finally:
            poller.close()

    def _drain(self, pipelines, sink: NdjsonSink, summary: Summary, final: bool = False) -> None:
        limit = self.cfg.count

        def write(records: list) -> bool:
            """Write (up to --count); False once the count is reached."""
            left = None if limit is None else limit - summary.records
            try:
                sink.write_many(records if left is None else records[:left])
            finally:
                summary.records = sink.records
            return limit is None or summary.records < limit

        for p in pipelines:
            if limit is not None and summary.records >= limit:
                break
            for _ in itertools.count() if final else range(_MAX_CHUNKS):  # final: the kernel is detached
                if not write(p.drain()) or not p.more():
                    break
            if final and (limit is None or summary.records < limit):
                write(p.finish())
        if limit is not None and summary.records >= limit:
            self.stop("count")


def _quiet_gc() -> None:
    """What is loaded by now lives as long as the run: keep the collector off it (freeze),
    and let it run less often. A drain keeps thousands of young objects alive until its
    records are written, so the default threshold (700) collects over and over for nothing
    to free (~7% of the L7 path, bench/micro.py l7)."""
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)


# Ring chunks (pipelines.DRAIN_CHUNK) one drain takes from a pipeline before the others
# get their turn; a ring still holding more is read again at once (the poll does not wait).
_MAX_CHUNKS = 16


def print_summary(summary: Summary) -> None:
    print(summary.line(), file=sys.stderr, flush=True)
