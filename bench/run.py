"""Macro-benchmark: what each observer costs an nginx, saturated and at a fixed rate, in throwaway namespaces.

    sudo ./bench.sh                                          # both phases, 5 pairs per row (about 26 min)
    sudo ./bench.sh --quick                                  # smoke run: 2 pairs of 3 s (about 3 min a phase)
    sudo ./bench.sh --phase fixed --observers none,hdrlog-http
    sudo .venv/bin/python bench/run.py --readme-from bench/results/<stamp>.json   # README section only

Workload: nginx (bench/nginx.conf.template: one process, one worker, access_log off, sendfile
on, a 612-byte static file, plain HTTP on port 8080 and TLS 1.2/1.3 on 8443 with a
self-signed certificate made for the run) in namespace a of a tests/netns.py NetnsPair; the
load generator in namespace b against a's address only. Nothing touches any other interface;
the namespaces, every process started here and the temporary files are removed at the end,
also on an error, Ctrl-C or SIGTERM, and kernel.bpf_stats_enabled is restored.

Phases (--phase saturation|fixed|both, default both):
    saturation  `wrk -t2 -c50 -d<S>s --latency` (as fast as nginx answers), every observer
    fixed       `h2load --h1 -t1 -c50 --rps=<rate/50> -D <S> --log-file=...` (keep-alive HTTP/1.1,
                --rate requests/s in all, default 10,000), observers none and the hdrlog rows. A
                calibration run with no observer checks that h2load reaches the rate; if it does
                not, the phase runs at the highest rate it sustains and says so. Latencies come
                from h2load's per-request log, in microseconds. h2load keeps one request in flight
                per HTTP/1.1 connection, so a request delayed past its slot delays the next one's
                start, not its measured latency.

Observers (one table row each; --observers picks some, in this order):
    none            nothing (baseline vs baseline: the noise floor)
    tcpdump         tcpdump -i a0 -s 128 -w /dev/null                      (namespace a)
    tshark          tshark -i a0 -Y http.request -T fields -e http.host
                    -e http.request.uri -e http.user_agent > /dev/null     (namespace a)
    hdrlog-packets  hdrlog run -i a0 --no-l7                               (namespace a)
    hdrlog-flows    hdrlog run -i a0 --flows-only                          (namespace a)
    hdrlog-http     hdrlog run --l7-only --port 8080 --comm nginx          (host namespace)
    hdrlog-https    hdrlog run --l7-only --port 8443 --comm nginx, load on https://
    hdrlog-all      hdrlog run -i a0 --comm nginx --flows (packets, L7, flows)  (namespace a)
(a0 is nginx's side of the veth pair: the traffic tcpdump would see on `lo` if client and
server shared one namespace.) A row whose hdrlog flag does not exist yet (hdrlog exits 2 with
its usage) is marked "not available"; any other observer failure marks the row "failed" and
the run goes on. hdrlog writes its records to a file on /dev/shm (tmpfs), deleted after each
run once its records are counted.

The HTTP rows model a server host: on a real server the client is another machine, here the
load generator shares the kernel, so hdrlog runs with --comm nginx (its in-kernel process
filter) and records only the server's side; coverage = http records with observer.role
"server" / requests the load generator completed.

Every observer run B is paired with a baseline run A (same workload, no observer) just
before it: A B A B ... for --pairs pairs. The ratio of a pair is B's requests/s over A's;
tables give the median of the ratios with min and max. Per observer run: p50/p99 latency;
the observer's CPU seconds (its process tree: utime+stime from /proc/PID/stat when the load
starts and when it stops, and wait4()'s rusage of it and its reaped children after it exits on
SIGINT, so the drain after the load is counted separately and in the total); peak RSS (VmHWM
summed over its process tree, read just before SIGINT); for hdrlog its stderr summary line
(events its BPF programs saw and put into the rings, records written, drops by reason), its
BPF programs' run_time_ns/run_cnt (bpftool prog show -j, with kernel.bpf_stats_enabled=1,
read just before SIGINT) and coverage.

Wall time on a 2-core VM: --quick about 3 min a phase with every row; the defaults (8 rows x 5 pairs
of 8 s saturated, 6 rows x 5 pairs of 5 s at the fixed rate) about 18 + 8 min, most of the
rest being observers draining after the load (tshark up to a minute, hdrlog's L7 rows up to
15 s). On a small shared VM the baseline alone moves by +-15 % between runs (the "none" row),
so compare medians of runs made side by side.

Results: bench/results/<UTC timestamp>.md, .json (every run's numbers and the machine) and
.png (the ratios and the fixed-rate p99 added; needs matplotlib: pip install -e '.[bench]').
--readme (after a run) or --readme-from JSON rewrites README.md between
<!-- bench:start --> and <!-- bench:end --> from a results JSON.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # tests/netns.py

from tests.netns import NetnsPair, cleanup_stale_namespaces  # noqa: E402

BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
README = ROOT / "README.md"
README_START, README_END = "<!-- bench:start -->", "<!-- bench:end -->"
PORT, TLS_PORT = 8080, 8443
CLK_TCK = os.sysconf("SC_CLK_TCK")
DRAIN_TIMEOUT = 300  # seconds an observer may take to exit after SIGINT
READY_TIMEOUT = 60
LOAD_CONNS = 50  # fixed-rate connections, each at rate/LOAD_CONNS requests/s
RATE_OK = 0.95  # the generator "reaches" a rate when it completes this share of it


@dataclass
class Observer:
    name: str
    ns: str  # "a" or "host"
    argv: list[str]  # hdrlog's get --output added
    ready: str  # text on its stderr once it captures
    tls: bool = False  # the workload is https://
    hdrlog: bool = False
    http: bool = False  # writes http records: coverage applies
    fixed: bool = False  # also in the fixed-rate phase


def hdrlog_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "hdrlog", "-v", "run", *args]


OBSERVERS = [
    Observer("none", "host", [], "", fixed=True),
    Observer("tcpdump", "a", ["tcpdump", "-i", "a0", "-s", "128", "-w", "/dev/null"], "listening on"),
    Observer("tshark", "a", ["tshark", "-i", "a0", "-Y", "http.request", "-T", "fields", "-e", "http.host",
                             "-e", "http.request.uri", "-e", "http.user_agent"], "Capturing on"),
    Observer("hdrlog-packets", "a", hdrlog_argv("-i", "a0", "--no-l7"), "attached to", hdrlog=True, fixed=True),
    Observer("hdrlog-flows", "a", hdrlog_argv("-i", "a0", "--flows-only"), "attached to", hdrlog=True, fixed=True),
    Observer("hdrlog-http", "host", hdrlog_argv("--l7-only", "--port", str(PORT), "--comm", "nginx"), "attached to",
             hdrlog=True, http=True, fixed=True),
    Observer("hdrlog-https", "host", hdrlog_argv("--l7-only", "--port", str(TLS_PORT), "--comm", "nginx"),
             "attached to", tls=True, hdrlog=True, http=True, fixed=True),
    Observer("hdrlog-all", "a", hdrlog_argv("-i", "a0", "--comm", "nginx", "--flows"), "attached to",
             hdrlog=True, http=True, fixed=True),
]
PHASES = ("saturation", "fixed")


class Unavailable(Exception):
    """The observer cannot run here (hdrlog rejected a flag it does not have yet)."""


class ObserverFailed(Exception):
    """The observer did not start, or broke during a run."""


def sh(*args: str, check: bool = True, timeout: float = 60) -> str:
    return subprocess.run(args, check=check, capture_output=True, text=True, timeout=timeout).stdout


# --- /proc --------------------------------------------------------------------------------------


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()  # fields from 3 (state) on


def tree(root: int) -> list[int]:
    """root and its living descendants."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit() and (f := _stat(int(d))):
            children.setdefault(int(f[1]), []).append(int(d))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def tree_cpu(root: int) -> float:
    """CPU seconds of the tree so far: utime+stime+cutime+cstime of each living process."""
    total = 0
    for pid in tree(root):
        if f := _stat(pid):
            total += sum(int(x) for x in f[11:15])  # fields 14-17
    return total / CLK_TCK


def tree_hwm(root: int) -> int:
    """VmHWM in KiB summed over the tree."""
    total = 0
    for pid in tree(root):
        try:
            m = re.search(r"^VmHWM:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
        except OSError:
            continue
        total += int(m.group(1)) if m else 0
    return total


# --- load generators ------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out: str, seconds: float) -> dict:
    r = {"tool": "wrk", "seconds": seconds,
         "requests": int(re.search(r"(\d+) requests in", out).group(1)),
         "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}
    for pct in ("50", "99"):
        r[f"p{pct}_ms"] = _ms(re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", out, re.M).group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    r["errors"] = sum(map(int, m.groups())) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    r["non_2xx"] = int(m.group(1)) if m else 0
    return r


def percentile(sorted_xs: list[float], pct: float) -> float | None:
    """Nearest-rank percentile of an ascending list."""
    if not sorted_xs:
        return None
    k = max(0, min(len(sorted_xs) - 1, -(-len(sorted_xs) * pct // 100) - 1))
    return sorted_xs[int(k)]


_HEY_LOAD = "hey -z {s:g}s -c 50 -q {q:g} -o csv"  # results made before h2load (no "fixed_load")


def fixed_load_argv(seconds: float, rate: float) -> list[str]:
    """The fixed-rate load generator, less its --log-file and URL."""
    return ["h2load", "--h1", "-t1", f"-c{LOAD_CONNS}", f"--rps={rate / LOAD_CONNS:g}", "-D", f"{seconds:g}"]


def parse_h2load(log: str, out: str, seconds: float, rate: float) -> dict:
    """h2load's --log-file (one tab-separated line per completed request: start µs since the
    epoch, status, µs until the end of the response; status -1 when it failed) and its summary's
    failed/errored/timeout counts."""
    lats, non_2xx, bad = [], 0, 0
    for line in log.splitlines():
        parts = line.split("\t")
        try:
            status, us = int(parts[1]), int(parts[2])
        except (IndexError, ValueError):
            bad += bool(line.strip())
            continue
        if status < 0:
            bad += 1
            continue
        lats.append(us / 1e3)
        non_2xx += not 200 <= status < 400
    lats.sort()
    m = re.search(r"requests: .*?(\d+) failed, (\d+) errored, (\d+) timeout", out)
    errors = max(bad, sum(int(x) for x in m.groups())) if m else bad
    return {"tool": "h2load", "seconds": seconds, "rate": rate, "requests": len(lats),
            "rps": round(len(lats) / seconds, 1),
            "p50_ms": percentile(lats, 50), "p99_ms": percentile(lats, 99), "p999_ms": percentile(lats, 99.9),
            "max_ms": lats[-1] if lats else None, "errors": errors, "non_2xx": non_2xx}


# --- hdrlog output ----------------------------------------------------------------------------------


def _split_top(text: str, sep: str) -> list[str]:
    """Split on sep outside parentheses."""
    parts, depth, cur = [], 0, []
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if ch == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def parse_summary(line: str | None) -> dict[str, int]:
    """hdrlog's stderr summary line as {name: number}, whatever counters it has.

    `hdrlog: seen 1200, logged 300, dropped 900 (filtered_port 880, sampled 20); L7 500 socket
    events, 200 HTTP exchanges, 0 TLS handshakes, skipped 10 (ring_full 10); 300 records written`
    gives seen, logged, dropped, dropped.filtered_port, dropped.sampled, L7 socket events,
    L7 HTTP exchanges, L7 TLS handshakes, L7 skipped, L7 skipped.ring_full, records written.
    A clause that starts with a label ("L7 500 socket events", "flows: ...") prefixes its
    counters with it; counters this harness does not know are kept under their own words."""
    out: dict[str, int] = {}
    if not line:
        return out
    for clause in _split_top(line.strip().removeprefix("hdrlog:").strip(), ";"):
        label = ""
        m = re.match(r"([A-Za-z][\w/-]*):\s+(.*)", clause)
        if m:
            label, clause = m.group(1) + " ", m.group(2)
        for i, item in enumerate(_split_top(clause, ",")):
            detail = None
            if m := re.fullmatch(r"(.*?)\s*\((.*)\)", item):
                item, detail = m.group(1), m.group(2)
            if i == 0 and not label and (m := re.fullmatch(r"([A-Za-z][\w/-]*) (\d+) ([A-Za-z].*)", item)):
                label = m.group(1) + " "  # "L7 500 socket events"
                item = f"{m.group(2)} {m.group(3)}"
            numbers = list(re.finditer(r"(?<![\w.-])\d+(?![\w.])", item))
            if len(numbers) > 1 and numbers[0].start() == 0:
                # "218088 packets in 51 flows": each number names the words after it
                for j, nm in enumerate(numbers):
                    words = item[nm.end(): numbers[j + 1].start() if j + 1 < len(numbers) else None]
                    words = re.sub(r"\s+(in|of|to|from|for|with|at|on|by)$", "", words.strip())
                    words = words or "count"
                    out[label.strip() if label.strip() == words else label + words] = int(nm.group())
                name = None
            elif m := re.fullmatch(r"(\d+) (.+)", item):
                name, n = m.group(2), int(m.group(1))
            elif m := re.fullmatch(r"(.+?) (\d+)", item):
                name, n = m.group(1), int(m.group(2))
            else:
                continue
            if name is None:
                continue
            out[label + name] = n
            for dm in re.finditer(r"([A-Za-z][\w ]*?) (\d+)", detail or ""):
                out[f"{label}{name}.{dm.group(1).strip()}"] = int(dm.group(2))
    return out


# what the tables call emitted / written / loss; anything else in the line is shown as it is
KNOWN = {"seen", "logged", "dropped", "L7 socket events", "L7 HTTP exchanges", "L7 TLS handshakes",
         "L7 skipped", "records written", "undecodable events", "events read"}
L7_LOSS = ("ring_full", "tls_no_fd", "read_failed")  # L7 skip reasons that lose data (the rest are filters)


def counter_view(c: dict[str, int]) -> dict:
    """The summary counters as the table's columns."""
    emitted = c.get("logged", 0) + c.get("L7 socket events", 0)
    has = "logged" in c or "L7 socket events" in c
    drops = {k.replace("dropped.", "").replace("skipped.", ""): v for k, v in c.items()
             if (k.startswith("dropped.") or k.startswith("L7 skipped.")) and v}
    other = {k: v for k, v in c.items()
             if k not in KNOWN and not k.startswith(("dropped.", "L7 skipped."))}
    return {"seen": c.get("seen"), "emitted": emitted if has else None,
            # ring records hdrlog read (connection and exec events included, so it can pass
            # "emitted"); older summaries without the counter: emitted less undecodable
            "consumed": c.get("events read", emitted - c.get("undecodable events", 0) if has else None),
            "records_written": c.get("records written"), "drops": drops, "other": other,
            "l7_loss": sum(c.get(f"L7 skipped.{k}", 0) for k in L7_LOSS) + c.get("L7 unparseable stretches", 0)}


_TYPE = re.compile(rb'"type":"([^"]*)"')


def count_records(path: Path | None) -> dict:
    """Records in hdrlog's output by type; http split by observer.role (server / client)."""
    counts = {"http_server": 0, "http_client": 0}
    if path is None or not path.exists():
        return counts
    with path.open("rb") as f:
        for line in f:
            if not line.strip():
                continue
            m = _TYPE.search(line)
            kind = m.group(1).decode(errors="replace") if m else "untyped"
            if kind == "http":
                kind = "http_server" if b'"observer.role":"server"' in line else "http_client"
            counts[kind] = counts.get(kind, 0) + 1
    return counts


def owned_prog_ids(root: int) -> set[int]:
    """Ids of the BPF programs the tree holds file descriptors of (/proc/PID/fdinfo prog_id):
    only the observer's, even when something else on the host loads programs meanwhile."""
    ids = set()
    for pid in tree(root):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:bpf-prog":
                    continue
                m = re.search(r"^prog_id:\s+(\d+)", Path(f"/proc/{pid}/fdinfo/{fd}").read_text(), re.M)
            except OSError:
                continue
            if m:
                ids.add(int(m.group(1)))
    return ids


def bpf_progs() -> dict[int, dict]:
    return {p["id"]: p for p in json.loads(sh("bpftool", "prog", "show", "-j") or "[]")}


# --- the harness ----------------------------------------------------------------------------------


@dataclass
class Run:
    phase: str
    observer: str
    role: str  # "baseline" or "observer"
    pair: int
    load: dict = field(default_factory=dict)
    cpu_load_s: float | None = None  # while the load ran
    cpu_s: float | None = None  # load + drain
    cpu_s_per_100k: float | None = None
    cores_load: float | None = None  # cpu_load_s / load seconds
    cores_total: float | None = None  # cpu_s / load seconds
    peak_rss_kib: int | None = None
    drain_s: float | None = None
    exit: str | None = None
    summary_line: str | None = None
    counters: dict = field(default_factory=dict)
    records: dict = field(default_factory=dict)
    coverage: float | None = None
    bpf: list = field(default_factory=list)


class Bench:
    def __init__(self, args):
        self.args = args
        self.procs: list[subprocess.Popen] = []
        self.pair: NetnsPair | None = None
        self.tmp = Path(tempfile.mkdtemp(prefix="hdrlog-bench-"))
        self.shm = Path(tempfile.mkdtemp(prefix="hdrlog-bench-", dir="/dev/shm"))
        self.old_bpf_stats: str | None = None
        self.rate = float(args.rate)
        self.calibration: list[dict] = []

    # setup / teardown
    def setup(self) -> None:
        cleanup_stale_namespaces()
        self.old_bpf_stats = sh("sysctl", "-n", "kernel.bpf_stats_enabled").strip()
        sh("sysctl", "-q", "-w", "kernel.bpf_stats_enabled=1")
        self.pair = NetnsPair.create()
        www = self.tmp / "www"
        www.mkdir()
        (www / "index.html").write_text("<!DOCTYPE html>\n<html><head><title>hdrlog bench</title></head><body>\n"
                                        + "<p>" + "x" * 520 + "</p>\n</body></html>\n")
        cert, key = self.tmp / "cert.pem", self.tmp / "key.pem"
        sh("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=bench.example",
           "-days", "1", "-keyout", str(key), "-out", str(cert))
        conf = (BENCH / "nginx.conf.template").read_text()
        for k, v in {"TMP": self.tmp, "ADDR": self.pair.a_ip, "PORT": PORT, "TLS_PORT": TLS_PORT,
                     "ROOT": www, "CERT": cert, "KEY": key}.items():
            conf = conf.replace(f"@{k}@", str(v))
        (self.tmp / "nginx.conf").write_text(conf)
        nginx = self.start(self.pair.a, ["nginx", "-p", str(self.tmp), "-c", str(self.tmp / "nginx.conf"),
                                         "-e", str(self.tmp / "nginx-error.log")], stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        want = {f"{self.pair.a_ip}:{PORT}", f"{self.pair.a_ip}:{TLS_PORT}"}
        while True:
            out = sh("ip", "netns", "exec", self.pair.a, "ss", "-ltnH")
            if want <= {ln.split()[3] for ln in out.splitlines() if ln.split()}:
                break
            if nginx.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"nginx did not start: {(self.tmp / 'nginx-error.log').read_text()}")
            time.sleep(0.1)
        self.nginx = nginx

    def teardown(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, signal.SIGKILL)  # its own session: the whole tree
                except ProcessLookupError:
                    pass
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
        if self.pair:
            self.pair.destroy()  # kills whatever is left in the namespaces
            self.pair = None
        if self.old_bpf_stats is not None:
            sh("sysctl", "-q", "-w", f"kernel.bpf_stats_enabled={self.old_bpf_stats}", check=False)
            self.old_bpf_stats = None
        shutil.rmtree(self.tmp, ignore_errors=True)
        shutil.rmtree(self.shm, ignore_errors=True)

    def start(self, ns: str | None, argv: list[str], **kw) -> subprocess.Popen:
        kw.setdefault("stdout", subprocess.DEVNULL)
        kw.setdefault("stdin", subprocess.DEVNULL)
        cmd = ["ip", "netns", "exec", ns, *argv] if ns else argv  # ip netns exec execs: same pid
        p = subprocess.Popen(cmd, start_new_session=True, **kw)
        self.procs.append(p)
        return p

    def _stop(self, p: subprocess.Popen) -> None:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=10)

    # the load
    def url(self, tls: bool) -> str:
        return f"{'https' if tls else 'http'}://{self.pair.a_ip}:{TLS_PORT if tls else PORT}/index.html"

    def load(self, phase: str, tls: bool, seconds: float | None = None, rate: float | None = None) -> dict:
        b = self.pair.b
        if phase == "saturation":
            seconds = seconds or self.args.seconds
            out = sh("ip", "netns", "exec", b, "wrk", "-t2", "-c50", f"-d{seconds:g}s", "--latency", self.url(tls),
                     timeout=seconds + 60)
            return parse_wrk(out, seconds)
        seconds, rate = seconds or self.args.fixed_seconds, rate or self.rate
        log = self.tmp / "h2load.log"
        log.unlink(missing_ok=True)  # h2load appends
        out = sh("ip", "netns", "exec", b, *fixed_load_argv(seconds, rate), f"--log-file={log}", self.url(tls),
                 timeout=seconds + 60)
        result = parse_h2load(log.read_text() if log.exists() else "", out, seconds, rate)
        log.unlink(missing_ok=True)
        return result

    def calibrate(self) -> str | None:
        """Check that h2load reaches --rate with no observer; if not, settle on a rate it sustains.
        Returns a note for the report when the rate had to come down."""
        target = self.rate
        seconds = min(4.0, self.args.fixed_seconds)

        def attempt(rate: float) -> float:
            got = self.load("fixed", False, seconds, rate)["rps"]
            self.calibration.append({"rate": rate, "seconds": seconds, "rps": got})
            print(f"calibration: h2load at {rate:.0f} req/s reached {got:.0f}", file=sys.stderr, flush=True)
            return got

        got = max(attempt(target), attempt(target))
        if got >= RATE_OK * target:
            return None
        rate = target
        for _ in range(3):
            rate = max(500.0, (got * 0.95) // 500 * 500)
            got = attempt(rate)
            if got >= RATE_OK * rate:
                break
        self.rate = rate
        return (f"h2load did not reach {target:,.0f} requests/s on this machine with no observer; the fixed-rate "
                f"runs use {rate:,.0f} requests/s (the highest rate it sustained, last reached {got:,.0f}).")

    # one run
    def run(self, phase: str, obs: Observer, role: str, pair_no: int) -> Run:
        r = Run(phase, obs.name, role, pair_no)
        if role == "baseline" or obs.name == "none":
            r.load = self.load(phase, obs.tls)
            return r
        argv = list(obs.argv)
        out = None
        if obs.hdrlog:
            out = self.shm / f"{phase}-{obs.name}-{pair_no}.ndjson"
            argv += ["--output", str(out)]
        err_path = self.tmp / f"{phase}-{obs.name}-{pair_no}.stderr"
        progs_before = set(bpf_progs())
        with err_path.open("wb") as err:
            p = self.start(self.pair.a if obs.ns == "a" else None, argv, stderr=err)
        try:
            self._wait_ready(obs, p, err_path)
            time.sleep(0.5)  # let it settle (tshark's dumpcap, hdrlog's uprobes on late-found libs)
            cpu0 = tree_cpu(p.pid)
            r.load = self.load(phase, obs.tls)
            seconds = r.load["seconds"]
            r.cpu_load_s = round(tree_cpu(p.pid) - cpu0, 3)
            r.peak_rss_kib = tree_hwm(p.pid)
            if obs.hdrlog:
                progs = bpf_progs()
                owned = owned_prog_ids(p.pid)
                if owned:
                    progs_before = set(progs) - owned
                r.bpf = [{"id": i, "name": q.get("name"), "type": q.get("type"),
                          "run_time_ns": q.get("run_time_ns", 0), "run_cnt": q.get("run_cnt", 0),
                          "ns_per_event": round(q["run_time_ns"] / q["run_cnt"], 1) if q.get("run_cnt") else None}
                         for i, q in sorted(progs.items()) if i not in progs_before]
            if p.poll() is not None:
                raise ObserverFailed(f"{obs.name} exited during the load ({p.returncode}): "
                                     f"{err_path.read_text(errors='replace')[-500:]}")
            t0 = time.monotonic()
            p.send_signal(signal.SIGINT)
            r.exit = "SIGINT"
            try:
                _, status, ru = _wait4(p.pid, DRAIN_TIMEOUT)
            except TimeoutError:
                os.killpg(p.pid, signal.SIGKILL)
                _, status, ru = os.wait4(p.pid, 0)
                r.exit = f"killed after {DRAIN_TIMEOUT} s"
            p.returncode = os.waitstatus_to_exitcode(status)
            if r.exit == "SIGINT" and p.returncode not in (0, -signal.SIGINT, 130):
                r.exit = f"SIGINT, exit {p.returncode}"
        finally:
            if p.returncode is None:
                self._stop(p)
        r.drain_s = round(time.monotonic() - t0, 2)
        r.cpu_s = round(ru.ru_utime + ru.ru_stime - cpu0, 3)
        r.cpu_s_per_100k = round(r.cpu_s / r.load["requests"] * 1e5, 3) if r.load["requests"] else None
        r.cores_load = round(r.cpu_load_s / seconds, 4)
        r.cores_total = round(r.cpu_s / seconds, 4)
        if obs.hdrlog:
            lines = err_path.read_text(errors="replace").splitlines()
            r.summary_line = next((ln for ln in reversed(lines) if re.match(r"hdrlog: (seen|L7|\d)", ln)), None)
            r.counters = parse_summary(r.summary_line)
            r.records = count_records(out)
            out.unlink(missing_ok=True)
            if obs.http and r.load["requests"]:
                r.coverage = round(r.records["http_server"] / r.load["requests"], 4)
        return r

    def _wait_ready(self, obs: Observer, p: subprocess.Popen, err_path: Path) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while obs.ready not in err_path.read_text(errors="replace"):
            if p.poll() is not None:
                text = err_path.read_text(errors="replace")
                if obs.hdrlog and p.returncode == 2 and "usage:" in text:
                    reason = next((ln for ln in text.splitlines() if "error:" in ln), text.strip()[-200:])
                    raise Unavailable(reason.strip())
                last = next((ln for ln in reversed(text.splitlines()) if ln.strip()), "")
                raise ObserverFailed(f"{obs.name} exited ({p.returncode}) before it was ready: {last}\n{text[-2000:]}")
            if time.monotonic() > deadline:
                raise ObserverFailed(f"{obs.name} not ready after {READY_TIMEOUT} s: "
                                     f"{err_path.read_text(errors='replace')[-1000:]}")
            time.sleep(0.1)


def _wait4(pid: int, timeout: float):
    deadline = time.monotonic() + timeout
    while True:
        got, status, ru = os.wait4(pid, os.WNOHANG)
        if got:
            return got, status, ru
        if time.monotonic() > deadline:
            raise TimeoutError
        time.sleep(0.05)


# --- report ---------------------------------------------------------------------------------------


def machine() -> dict:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    mem = re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)

    def version(*cmd):
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
            return ((p.stdout + p.stderr).strip().splitlines() or [None])[0]
        except Exception:
            return None

    def deb(pkg):
        v = version("dpkg-query", "-W", "-f=${Version}", pkg)
        return f"{pkg} {v}" if v and "no packages" not in v else None

    virt = version("systemd-detect-virt")
    return {"kernel": platform.release(), "cpu": cpu, "cores": os.cpu_count(),
            "memory_gib": round(int(mem) / 2**20, 1), "virtualization": virt,
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "nginx": version("nginx", "-v"), "wrk": deb("wrk"), "h2load": deb("nghttp2-client"),
            "tcpdump": version("tcpdump", "--version"), "tshark": version("tshark", "--version"),
            "hdrlog_commit": version("git", "-C", str(ROOT), "rev-parse", "--short", "HEAD")}


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def _mmm(xs) -> dict:
    xs = [x for x in xs if x is not None]
    return {"median": med(xs), "min": min(xs, default=None), "max": max(xs, default=None)}


def summarize(runs: list[Run], names: list[str], phase: str, status: dict[str, str]) -> list[dict]:
    rows = []
    for name in names:
        base = {r.pair: r for r in runs if r.phase == phase and r.observer == name and r.role == "baseline"}
        obs = {r.pair: r for r in runs if r.phase == phase and r.observer == name and r.role == "observer"}
        pairs = [i for i in sorted(obs) if i in base]
        o = [obs[i] for i in pairs]
        b = [base[i] for i in pairs]
        bpf: dict[str, list[float]] = {}
        for r in o:
            for q in r.bpf:
                if q["ns_per_event"] is not None:
                    bpf.setdefault(q["name"], []).append(q["ns_per_event"])
        views = [counter_view(r.counters) for r in o if r.summary_line]
        drop_keys = sorted({k for v in views for k in v["drops"]})
        other_keys = sorted({k for v in views for k in v["other"]})
        missing = [r.load["requests"] - r.records["http_server"] for r in o if r.coverage is not None]
        loss = [v["l7_loss"] for v in views]
        if not any(r.coverage is not None for r in o):
            accounted = None
        elif all(m <= 0 for m in missing):
            accounted = "complete"
        elif all(m <= lo for m, lo in zip(missing, loss)):
            accounted = "missing ≤ lost events"
        else:
            accounted = "UNACCOUNTED"
        ratio = _mmm([obs[i].load["rps"] / base[i].load["rps"] for i in pairs if base[i].load["rps"]])
        p99_added = _mmm([(obs[i].load["p99_ms"] - base[i].load["p99_ms"]) * 1e3 for i in pairs])
        rows.append({
            "observer": name, "phase": phase, "status": status.get(name, "ok" if pairs else "no runs"),
            "pairs": len(pairs),
            "ratio_median": ratio["median"], "ratio_min": ratio["min"], "ratio_max": ratio["max"],
            "baseline_rps_median": med([r.load["rps"] for r in b]),
            "rps_median": med([r.load["rps"] for r in o]),
            "p50_ms": med([r.load["p50_ms"] for r in o]), "p99_ms": med([r.load["p99_ms"] for r in o]),
            "baseline_p50_ms": med([r.load["p50_ms"] for r in b]),
            "baseline_p99_ms": med([r.load["p99_ms"] for r in b]),
            "p99_added_us_median": p99_added["median"], "p99_added_us_min": p99_added["min"],
            "p99_added_us_max": p99_added["max"],
            "cpu_s_per_100k": med([r.cpu_s_per_100k for r in o]),
            "cores_load": med([r.cores_load for r in o]), "cores_total": med([r.cores_total for r in o]),
            "peak_rss_mib": max((r.peak_rss_kib / 1024 for r in o if r.peak_rss_kib is not None), default=None),
            "drain_s": med([r.drain_s for r in o]),
            "seen": med([v["seen"] for v in views]), "emitted": med([v["emitted"] for v in views]),
            "consumed": med([v["consumed"] for v in views]),
            "records_written": med([v["records_written"] for v in views]),
            "drops": {k: med([v["drops"].get(k, 0) for v in views]) for k in drop_keys},
            "other_counters": {k: med([v["other"].get(k) for v in views]) for k in other_keys},
            "coverage_median": med([r.coverage for r in o]),
            "coverage_min": min((r.coverage for r in o if r.coverage is not None), default=None),
            "coverage_accounted": accounted,
            "bpf_ns_per_event": {k: med(v) for k, v in bpf.items()},
            "load_errors": sum(r.load.get("errors", 0) + r.load.get("non_2xx", 0) for r in [*o, *b]),
        })
    return rows


def fmt(x, spec=".2f", none="–"):
    return none if x is None else format(x, spec)


def _num(x) -> str:
    return "–" if x is None else f"{x:,.0f}"


def _range(r: dict, key: str, spec: str) -> str:
    if r[f"{key}_median"] is None:
        return "–"
    return f"{fmt(r[key + '_median'], spec)} [{fmt(r[key + '_min'], spec)} – {fmt(r[key + '_max'], spec)}]"


def _counters(r: dict) -> tuple[str, str]:
    counted = r["emitted"] is not None or r["seen"] is not None
    drops = ", ".join(f"{k} {_num(v)}" for k, v in r["drops"].items() if v) or ("0" if counted else "–")
    events = f"{_num(r['seen'])} / {_num(r['emitted'])}" if r["seen"] is not None else _num(r["emitted"])
    if r["other_counters"]:
        events += "; " + ", ".join(f"{k} {_num(v)}" for k, v in r["other_counters"].items())
    return events, drops


def _coverage(r: dict) -> str:
    if r["coverage_median"] is None:
        return "–"
    return f"{r['coverage_median']:.3f} (min {r['coverage_min']:.3f}; {r['coverage_accounted']})"


def _latency(r: dict, key: str) -> str:
    return f"{fmt(r[key])} ({fmt(r['baseline_' + key])})"


# (header, cell) per column; the hdrlog columns close both tables
_HDRLOG_COLUMNS = [
    ("peak RSS MiB", lambda r: fmt(r["peak_rss_mib"], ".1f")),
    ("BPF events seen / emitted", lambda r: _counters(r)[0]),
    ("consumed", lambda r: _num(r["consumed"])),
    ("records written", lambda r: _num(r["records_written"])),
    ("drops by reason", lambda r: _counters(r)[1]),
    ("coverage", _coverage),
]
COLUMNS = {
    "saturation": [
        ("req/s ratio median [min – max]", lambda r: _range(r, "ratio", ".3f")),
        ("baseline req/s", lambda r: _num(r["baseline_rps_median"])),
        ("p50 ms (base)", lambda r: _latency(r, "p50_ms")),
        ("p99 ms (base)", lambda r: _latency(r, "p99_ms")),
        ("CPU s / 100k req", lambda r: fmt(r["cpu_s_per_100k"], ".3f")),
        ("drain s", lambda r: fmt(r["drain_s"])),
        *_HDRLOG_COLUMNS,
    ],
    "fixed": [
        ("achieved req/s (base)", lambda r: f"{_num(r['rps_median'])} ({_num(r['baseline_rps_median'])})"),
        ("p50 ms (base)", lambda r: _latency(r, "p50_ms")),
        ("p99 ms (base)", lambda r: _latency(r, "p99_ms")),
        ("p99 added µs median [min – max]", lambda r: _range(r, "p99_added_us", ".0f")),
        ("CPU cores during load", lambda r: fmt(r["cores_load"], ".3f")),
        ("CPU cores incl. drain", lambda r: fmt(r["cores_total"], ".3f")),
        ("CPU s / 100k req", lambda r: fmt(r["cpu_s_per_100k"], ".3f")),
        *_HDRLOG_COLUMNS,
    ],
}


def table(rows: list[dict], phase: str) -> list[str]:
    cols = COLUMNS[phase]
    out = ["| observer | " + " | ".join(h for h, _ in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for r in rows:
        if not r["pairs"]:  # not available / failed / no runs: the reason across the row
            out.append(f"| {r['observer']} | {r['status']} |" + " |" * (len(cols) - 1))
        else:
            out.append(f"| {r['observer']} | " + " | ".join(cell(r) for _, cell in cols) + " |")
    return out


def machine_line(m: dict) -> str:
    virt = f" ({m['virtualization']})" if m.get("virtualization") not in (None, "none") else ""
    tools = "; ".join(x for x in (m.get("nginx"), m.get("wrk"), m.get("h2load"), m.get("hey")) if x)
    return (f"Machine: {m['cpu']}, {m['cores']} cores{virt}, {m['memory_gib']} GiB, Linux {m['kernel']}; "
            f"{tools}; hdrlog {m['hdrlog_commit']}.")


SERVER_NOTE = ("HTTP rows model a server host: on a real server the client is another machine, here the load "
               "generator shares the kernel, so hdrlog-http, hdrlog-https and hdrlog-all run with `--comm nginx` "
               "(hdrlog's in-kernel process filter) and record only nginx's side; coverage = `http` records with "
               "`observer.role` server ÷ requests the load generator completed (\"complete\": none missing; "
               "\"missing ≤ lost events\": no more requests are missing than socket events were lost (L7 ring_full, "
               "tls_no_fd, read_failed, unparseable stretches), one message per event; "
               "in-flight requests at the load's stop can push it a little past 1).")


def tables(data: dict, details: bool) -> list[str]:
    """The report's body from a results JSON: header lines, the two tables, notes (and per-run details)."""
    a, m, notes = data["args"], data["machine"], data.get("notes", [])
    rows = {p: [r for r in data["rows"] if r["phase"] == p] for p in PHASES}
    out = [machine_line(m), "", SERVER_NOTE, ""]
    if rows["saturation"]:
        out += ["### Saturation", "",
                f"nginx (1 worker, 612-byte file, sendfile on) in namespace a, `wrk -t2 -c50 -d{a['seconds']:g}s` in "
                f"namespace b; {a['pairs']} baseline/observer pairs per row (A B A B …). Ratio = observer run's "
                "requests/s ÷ its baseline's; latency, CPU, events, coverage are medians over the observer runs "
                "(RSS: max). BPF events: packets seen / events put into the rings (packet records + L7 socket "
                "events); consumed = ring records hdrlog read (its `events read`, connection and exec events "
                "included).", ""]
        out += table(rows["saturation"], "saturation") + [""]
    if rows["fixed"]:
        rate = data.get("fixed_rate", a.get("rate"))
        out += ["### Fixed rate", "",
                f"`{data.get('fixed_load') or _HEY_LOAD.format(s=a['fixed_seconds'], q=rate / 50)}` (keep-alive, "
                f"{rate:,.0f} requests/s offered) against the same nginx; {a['pairs']} pairs per row. p99 added = "
                "observer run's p99 − its baseline's, median over pairs [min – max]; latencies to "
                f"{'1 µs' if data.get('fixed_load') else '100 µs (hey)'}. CPU cores = the observer tree's CPU seconds "
                "÷ load seconds, during the load and including the drain after it. Targets with HTTP records on: "
                "≤ 0.10 core, p99 added ≤ 50 µs.", ""]
        out += table(rows["fixed"], "fixed") + [""]
    if rows["fixed"]:
        rate = data.get("fixed_rate", a.get("rate"))
        short = [f"{r['observer']} {_num(r['baseline_rps_median'])}" for r in rows["fixed"]
                 if r["baseline_rps_median"] is not None and r["baseline_rps_median"] < RATE_OK * rate]
        if short:
            notes = [*notes, f"The load generator did not reach the offered {rate:,.0f} requests/s in these rows' baseline runs "
                             f"(median requests/s): {', '.join(short)}."]
    notes = [*notes, *(f"{r['phase']} {r['observer']} stopped after {r['pairs']} pairs: {r['status']}"
                       for r in data["rows"] if r["pairs"] and r["status"] != "ok")]
    for n in notes:
        out += [f"Note: {n}", ""]
    errs = [f"{r['phase']} {r['observer']} {r['load_errors']}" for r in data["rows"] if r.get("load_errors")]
    if errs:
        out += ["Load generator errors + non-2xx responses: " + ", ".join(errs), ""]
    bpf = [r for r in data["rows"] if r["bpf_ns_per_event"]]
    if bpf:
        out += ["BPF run time per program run, ns (kernel.bpf_stats_enabled; median over the observer runs):", ""]
        out += [f"- {r['phase']} {r['observer']}: " + ", ".join(f"{k} {v:.0f}" for k, v in
                                                               sorted(r["bpf_ns_per_event"].items()))
                for r in bpf] + [""]
    if data.get("micro"):
        out += ["### Micro-benchmarks", "",
                "`bench/micro.py`, after the load phases: user-space hot paths on one core, best of three.", "",
                "```", *data["micro"], "```", ""]
    if details and data.get("failures"):
        out += ["Observer failures (the row stops at the first one; stderr's last lines):", ""]
        for f in data["failures"]:
            tail = " / ".join(ln.strip() for ln in f["error"].splitlines()[-3:] if ln.strip())
            out.append(f"- {f['phase']} {f['observer']} pair {f['pair']}: {f['kind']}: `{tail[:600]}`")
        out.append("")
    if details:
        out += ["hdrlog summary lines (stderr) and records counted in its output, per observer run:", ""]
        for r in data["runs"]:
            if r["role"] == "observer" and r["observer"].startswith("hdrlog"):
                cores = f", {r['cores_load']} cores during load" if r.get("cores_load") is not None else ""
                out.append(f"- {r['phase']} {r['observer']} pair {r['pair']}: {r['load']['tool']} "
                           f"{r['load']['requests']} requests{cores}, CPU {r['cpu_s']} s incl. drain {r['drain_s']} s; "
                           f"`{r['summary_line']}`; records {r['records']}; exit {r['exit']}")
        out.append("")
    return out


def markdown(data: dict) -> str:
    m = data["machine"]
    return "\n".join([f"# hdrlog benchmark {m['date']}", "", *tables(data, details=True),
                      f"Wall time: {m.get('wall_s')} s"
                      + "".join(f", {p} {t} s" for p, t in (m.get("phase_wall_s") or {}).items()) + "."]) + "\n"


def readme_section(data: dict, json_path: Path) -> str:
    m = data["machine"]
    try:
        rel = json_path.resolve().relative_to(ROOT)
    except ValueError:
        rel = json_path
    a = data["args"]
    size = "a `--quick` smoke run" if a.get("quick") else f"{a['pairs']} pairs per row"
    return "\n".join([README_START,
                      f"<!-- generated by `bench/run.py --readme-from {rel}`; do not edit by hand -->", "",
                      f"Latest results, {m['date'][:10]} ({size}; [full report]({rel.with_suffix('.md')})):", "",
                      *[ln.replace("### ", "#### ") for ln in tables(data, details=False)], README_END])


def write_readme(json_path: Path) -> None:
    data = json.loads(json_path.read_text())
    text = README.read_text()
    if README_START not in text or README_END not in text:
        raise SystemExit(f"README.md has no {README_START} … {README_END} markers")
    head, rest = text.split(README_START, 1)
    tail = rest.split(README_END, 1)[1]
    README.write_text(head + readme_section(data, json_path) + tail)
    print(f"README.md: benchmark section from {json_path}", file=sys.stderr)


def chart(data: dict, path: Path) -> str:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "no chart: matplotlib is not installed (pip install -e '.[bench]' into the venv)"
    sat = [r for r in data["rows"] if r["phase"] == "saturation" and r["ratio_median"] is not None]
    fix = [r for r in data["rows"] if r["phase"] == "fixed" and r["p99_added_us_median"] is not None]
    panels = [p for p in (sat, fix) if p]
    if not panels:
        return "no chart: no rows with numbers"
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, sum(0.45 * len(p) + 1.3 for p in panels)), squeeze=False)
    for ax, rows in zip(axes[:, 0], panels):
        names = [r["observer"] for r in rows][::-1]
        key = "ratio" if rows is sat else "p99_added_us"
        mid = [r[f"{key}_median"] for r in rows][::-1]
        lo = [r[f"{key}_median"] - r[f"{key}_min"] for r in rows][::-1]
        hi = [r[f"{key}_max"] - r[f"{key}_median"] for r in rows][::-1]
        ax.barh(names, mid, xerr=[lo, hi], color="#4a7fb0" if rows is sat else "#b07a4a", capsize=3)
        if rows is sat:
            ax.axvline(1.0, color="grey", lw=0.8, ls="--")
            ax.set_xlabel("saturation: requests/s with observer ÷ baseline (median, min–max)")
            ax.set_xlim(0, max(1.1, max(r["ratio_max"] for r in rows) + 0.05))
        else:
            ax.axvline(0, color="grey", lw=0.8)
            ax.axvline(50, color="red", lw=0.8, ls=":")
            ax.set_xlabel(f"fixed rate ({data.get('fixed_rate', 0):,.0f} req/s): p99 added, µs (median, min–max)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return f"chart: {path}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--phase", choices=("saturation", "fixed", "both"), default="both")
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=8, help="saturation run length (default 8)")
    ap.add_argument("--fixed-seconds", type=float, default=5, help="fixed-rate run length (default 5)")
    ap.add_argument("--rate", type=float, default=10_000, help="fixed-rate requests/s (default 10000)")
    ap.add_argument("--observers", default=",".join(o.name for o in OBSERVERS))
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 pairs of 3 s")
    ap.add_argument("--readme", action="store_true", help="after the run, rewrite README.md's benchmark section")
    ap.add_argument("--micro", action="store_true", help="after the load phases, run bench/micro.py into the report")
    ap.add_argument("--readme-from", metavar="JSON", type=Path,
                    help="only rewrite README.md's benchmark section from this results JSON")
    args = ap.parse_args()
    if args.readme_from:
        write_readme(args.readme_from)
        return 0
    if args.quick:
        args.pairs, args.seconds, args.fixed_seconds = 2, 3, 3
    wanted = [w for w in args.observers.split(",") if w]
    unknown = set(wanted) - {o.name for o in OBSERVERS}
    if unknown:
        ap.error(f"unknown observers {sorted(unknown)} (known: {', '.join(o.name for o in OBSERVERS)})")
    if os.geteuid() != 0:
        ap.error("needs root (namespaces, BPF)")
    phases = PHASES if args.phase == "both" else (args.phase,)
    plan = {p: [o for o in OBSERVERS if o.name in wanted and (p == "saturation" or o.fixed)] for p in phases}
    if not any(plan.values()):
        ap.error(f"no row of {wanted} runs in phase {args.phase} (the fixed-rate phase runs only none and the hdrlog rows)")
    tools = {"nginx", "openssl", "bpftool", "ss", *(["wrk"] if plan.get("saturation") else []),
             *(["h2load"] if plan.get("fixed") else []), *(o.argv[0] for o in OBSERVERS if o.name in wanted and o.argv
                                                       and not o.hdrlog)}
    for tool in sorted(tools):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing (sudo scripts/setup.sh bench installs it)")

    def on_term(*_):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGHUP, on_term)

    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(parents=True, exist_ok=True)
    b = Bench(args)
    runs: list[Run] = []
    status: dict[str, dict[str, str]] = {p: {} for p in phases}
    notes: list[str] = []
    failures: list[dict] = []
    phase_wall: dict[str, float] = {}
    t_start = time.monotonic()
    interrupted = False
    try:
        b.setup()
        for phase in phases:
            if not plan[phase]:
                continue
            t_phase = time.monotonic()
            b.load(phase, False, 2)  # warm-up, discarded
            if any(o.tls for o in plan[phase]):
                b.load(phase, True, 2)
            if phase == "fixed" and (note := b.calibrate()):
                notes.append(note)
                print(note, file=sys.stderr)
            for obs in plan[phase]:
                if (earlier := status.get("saturation", {}).get(obs.name, "")).startswith("not available"):
                    status[phase][obs.name] = earlier
                    continue
                for i in range(args.pairs):
                    try:
                        for role in ("baseline", "observer"):
                            r = b.run(phase, obs, role, i)
                            runs.append(r)
                            extra = (f" cpu {r.cpu_s}s ({r.cores_load} cores) drain {r.drain_s}s cov {r.coverage}"
                                     if r.cpu_s is not None else "")
                            print(f"{phase:10} {obs.name:15} pair {i} {role:8} {r.load['rps']:9.0f} req/s "
                                  f"p99 {r.load['p99_ms']:.2f} ms{extra}", file=sys.stderr, flush=True)
                    except (Unavailable, ObserverFailed) as e:
                        runs[:] = [r for r in runs if not (r.phase == phase and r.observer == obs.name and r.pair == i)]
                        kind = "not available" if isinstance(e, Unavailable) else "failed"
                        status[phase][obs.name] = f"{kind}: {str(e).splitlines()[0][:200]}"
                        failures.append({"phase": phase, "observer": obs.name, "pair": i, "kind": kind,
                                         "error": str(e)})
                        print(f"{phase:10} {obs.name:15} {status[phase][obs.name]}", file=sys.stderr, flush=True)
                        break
            phase_wall[phase] = round(time.monotonic() - t_phase, 1)
    except KeyboardInterrupt:
        interrupted = True
        print("interrupted: cleaning up, writing what was measured", file=sys.stderr)
    finally:
        b.teardown()
    micro = None
    if args.micro and not interrupted:
        out = subprocess.run([sys.executable, str(ROOT / "bench" / "micro.py")], capture_output=True, text=True,
                             timeout=1800)
        micro = [ln for ln in out.stdout.splitlines() if ln.strip()]
        if out.returncode:
            notes.append(f"bench/micro.py failed ({out.returncode}): {out.stderr.strip().splitlines()[-1:]}")
    m = machine()
    m["wall_s"] = round(time.monotonic() - t_start, 1)
    m["phase_wall_s"] = phase_wall
    if interrupted:
        notes.append("interrupted: the tables hold what was measured before the interruption.")
    rows = [row for p in phases for row in summarize(runs, [o.name for o in plan[p]], p, status[p])]
    data = {"machine": m, "args": vars(args) | {"readme_from": None}, "fixed_rate": b.rate if "fixed" in phases else None,
            "fixed_load": " ".join(fixed_load_argv(args.fixed_seconds, b.rate)) if "fixed" in phases else None,
            "calibration": b.calibration, "notes": notes, "failures": failures, "rows": rows, "micro": micro,
            "runs": [asdict(r) for r in runs]}
    md = markdown(data)
    json_path = RESULTS / f"{stamp}.json"
    (RESULTS / f"{stamp}.md").write_text(md)
    json_path.write_text(json.dumps(data, indent=1) + "\n")
    print(md)
    print(chart(data, RESULTS / f"{stamp}.png"), file=sys.stderr)
    print(f"results: {RESULTS / stamp}.{{md,json,png}}", file=sys.stderr)
    if args.readme and not interrupted:
        write_readme(json_path)
    return 130 if interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
