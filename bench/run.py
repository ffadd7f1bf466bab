"""Macro-benchmark: what each observer costs an nginx under saturation, in throwaway namespaces.

    sudo .venv/bin/python bench/run.py                      # 5 pairs of 10 s per observer
    sudo .venv/bin/python bench/run.py --quick              # smoke run: 2 pairs of 5 s
    sudo .venv/bin/python bench/run.py --pairs 5 --seconds 8 --observers none,hdrlog-http

Workload: nginx (bench/nginx.conf.template: one process, one worker, access_log off, sendfile
on, a 612-byte static file, plain HTTP on port 8080 and TLS 1.2/1.3 on 8443 with a
self-signed certificate made for the run) in namespace a of a tests/netns.py NetnsPair;
`wrk -t2 -c50 -d<S>s --latency` in namespace b against a's address only. Nothing touches any
other interface; the namespaces, every process started here and the temporary files are
removed at the end, also on an error or Ctrl-C, and kernel.bpf_stats_enabled is restored.

Observers (one table row each; --observers picks some, in this order):
    none            nothing (baseline vs baseline: the noise floor)
    tcpdump         tcpdump -i a0 -s 128 -w /dev/null                      (namespace a)
    tshark          tshark -i a0 -Y http.request -T fields -e http.host
                    -e http.request.uri -e http.user_agent > /dev/null     (namespace a)
    hdrlog-packets  hdrlog run -i a0 --no-l7                               (namespace a)
    hdrlog-http     hdrlog run --l7-only --port 8080                       (host namespace)
    hdrlog-https    hdrlog run --l7-only --port 8443, wrk on https://      (host namespace)
    hdrlog-all      hdrlog run -i a0 (packets and L7)                      (namespace a)
hdrlog writes its records to a file on /dev/shm (tmpfs), deleted after each run once its
records are counted.

Every observer run B is paired with a baseline run A (same workload, no observer) just
before it: A B A B ... for --pairs pairs. The ratio of a pair is B's requests/s over A's;
the table gives the median of the ratios with min and max. Per observer run: wrk's p50/p99
latency; the observer's CPU seconds (its process tree: utime+stime from /proc/PID/stat when
the load starts, and wait4()'s rusage of it and its reaped children after it exits on
SIGINT, so the drain after the load is included) per 100k requests wrk completed; peak RSS
(VmHWM summed over its process tree, read just before SIGINT); for hdrlog its stderr
summary line, its BPF programs' run_time_ns/run_cnt (bpftool prog show -j, with
kernel.bpf_stats_enabled=1, read just before SIGINT) and coverage = http records with
observer.role "server" / requests wrk completed.

Wall time on a 2-core VM: --quick 4.5 min, --seconds 8 15.5 min, the default about 18 min.
The machine is one of the results: on a small shared VM the baseline alone moves by +-15 %
between runs (the "none" row), so compare medians of runs made side by side.

Results: bench/results/<UTC timestamp>.md, .json (every run's numbers and the machine) and
.png (the ratios; needs matplotlib: pip install -e '.[bench]').
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
PORT, TLS_PORT = 8080, 8443
CLK_TCK = os.sysconf("SC_CLK_TCK")
DRAIN_TIMEOUT = 300  # seconds an observer may take to exit after SIGINT


@dataclass
class Observer:
    name: str
    ns: str  # "a" or "host"
    argv: list[str]  # {dev}/{port} filled in; hdrlog's get --output added
    ready: str  # text on its stderr once it captures
    tls: bool = False  # the workload is https://
    hdrlog: bool = False


def hdrlog_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "hdrlog", "-v", "run", *args]


OBSERVERS = [
    Observer("none", "host", [], ""),
    Observer("tcpdump", "a", ["tcpdump", "-i", "a0", "-s", "128", "-w", "/dev/null"], "listening on"),
    Observer("tshark", "a", ["tshark", "-i", "a0", "-Y", "http.request", "-T", "fields", "-e", "http.host",
                             "-e", "http.request.uri", "-e", "http.user_agent"], "Capturing on"),
    Observer("hdrlog-packets", "a", hdrlog_argv("-i", "a0", "--no-l7"), "attached to", hdrlog=True),
    Observer("hdrlog-http", "host", hdrlog_argv("--l7-only", "--port", str(PORT)), "attached to", hdrlog=True),
    Observer("hdrlog-https", "host", hdrlog_argv("--l7-only", "--port", str(TLS_PORT)), "attached to",
             tls=True, hdrlog=True),
    Observer("hdrlog-all", "a", hdrlog_argv("-i", "a0"), "attached to", hdrlog=True),
]


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


# --- wrk ------------------------------------------------------------------------------------------

_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out: str) -> dict:
    r = {"requests": int(re.search(r"(\d+) requests in", out).group(1)),
         "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))}
    for pct in ("50", "99"):
        r[f"p{pct}_ms"] = _ms(re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", out, re.M).group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    r["socket_errors"] = sum(map(int, m.groups())) if m else 0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    r["non_2xx"] = int(m.group(1)) if m else 0
    return r


# --- hdrlog output ----------------------------------------------------------------------------------


def parse_summary(line: str) -> dict:
    """hdrlog's stderr summary line as numbers (see README: seen, logged, drops by reason, L7)."""
    c: dict[str, int] = {}
    for key, pat in (("seen", r"seen (\d+)"), ("logged", r"logged (\d+)"), ("dropped", r"dropped (\d+)"),
                     ("l7_events", r"L7 (\d+) socket events"), ("http_exchanges", r"(\d+) HTTP exchanges"),
                     ("tls_handshakes", r"(\d+) TLS handshakes"), ("l7_skipped", r"skipped (\d+)"),
                     ("unparseable", r"(\d+) unparseable"), ("cut", r"(\d+) copies cut"),
                     ("records_written", r"(\d+) records written"), ("undecodable", r"(\d+) undecodable")):
        if m := re.search(pat, line):
            c[key] = int(m.group(1))
    for detail in re.findall(r"\(([^)]*)\)", line):  # drops by reason
        for m in re.finditer(r"([a-z_]+) (\d+)", detail):
            c[f"drop_{m.group(1)}"] = c.get(f"drop_{m.group(1)}", 0) + int(m.group(2))
    return c


def count_records(path: Path) -> dict:
    counts = {"http_server": 0, "http_client": 0, "tls": 0, "packet": 0, "other": 0}
    if not path.exists():
        return counts
    with path.open("rb") as f:
        for line in f:
            if b'"type":"http"' in line:
                counts["http_server" if b'"observer.role":"server"' in line else "http_client"] += 1
            elif b'"type":"packet"' in line:
                counts["packet"] += 1
            elif b'"type":"tls"' in line:
                counts["tls"] += 1
            elif line.strip():
                counts["other"] += 1
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
    observer: str
    role: str  # "baseline" or "observer"
    pair: int
    wrk: dict = field(default_factory=dict)
    cpu_s: float | None = None
    cpu_s_per_100k: float | None = None
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
                p.kill()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
        if self.pair:
            self.pair.destroy()
        if self.old_bpf_stats is not None:
            sh("sysctl", "-q", "-w", f"kernel.bpf_stats_enabled={self.old_bpf_stats}", check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)
        shutil.rmtree(self.shm, ignore_errors=True)

    def start(self, ns: str | None, argv: list[str], **kw) -> subprocess.Popen:
        kw.setdefault("stdout", subprocess.DEVNULL)
        kw.setdefault("stdin", subprocess.DEVNULL)
        cmd = ["ip", "netns", "exec", ns, *argv] if ns else argv  # ip netns exec execs: same pid
        p = subprocess.Popen(cmd, **kw)
        self.procs.append(p)
        return p

    # one run
    def wrk(self, tls: bool, seconds: float) -> dict:
        url = f"{'https' if tls else 'http'}://{self.pair.a_ip}:{TLS_PORT if tls else PORT}/index.html"
        out = sh("ip", "netns", "exec", self.pair.b, "wrk", "-t2", "-c50", f"-d{seconds:g}s", "--latency", url,
                 timeout=seconds + 60)
        return parse_wrk(out)

    def run(self, obs: Observer, role: str, pair_no: int) -> Run:
        r = Run(obs.name, role, pair_no)
        if role == "baseline" or obs.name == "none":
            r.wrk = self.wrk(obs.tls, self.args.seconds)
            return r
        argv = list(obs.argv)
        out = None
        if obs.hdrlog:
            out = self.shm / f"{obs.name}-{pair_no}.ndjson"
            argv += ["--output", str(out)]
        err_path = self.tmp / f"{obs.name}-{pair_no}.stderr"
        progs_before = set(bpf_progs())
        with err_path.open("wb") as err:
            p = self.start(self.pair.a if obs.ns == "a" else None, argv, stderr=err)
        deadline = time.monotonic() + 60
        while obs.ready not in err_path.read_text(errors="replace"):
            if p.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{obs.name} did not start: {err_path.read_text(errors='replace')[-2000:]}")
            time.sleep(0.1)
        time.sleep(0.5)  # let it settle (tshark's dumpcap, hdrlog's uprobes on late-found libs)
        cpu0 = tree_cpu(p.pid)
        r.wrk = self.wrk(obs.tls, self.args.seconds)
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
        t0 = time.monotonic()
        p.send_signal(signal.SIGINT)
        r.exit = "SIGINT"
        try:
            _, status, ru = _wait4(p.pid, DRAIN_TIMEOUT)
        except TimeoutError:
            p.kill()
            _, status, ru = os.wait4(p.pid, 0)
            r.exit = f"killed after {DRAIN_TIMEOUT} s"
        p.returncode = os.waitstatus_to_exitcode(status)
        r.drain_s = round(time.monotonic() - t0, 2)
        r.cpu_s = round(ru.ru_utime + ru.ru_stime - cpu0, 3)
        r.cpu_s_per_100k = round(r.cpu_s / r.wrk["requests"] * 1e5, 3) if r.wrk["requests"] else None
        if obs.hdrlog:
            lines = err_path.read_text(errors="replace").splitlines()
            r.summary_line = next((ln for ln in reversed(lines) if ln.startswith("hdrlog: ")), None)
            r.counters = parse_summary(r.summary_line or "")
            r.records = count_records(out)
            out.unlink(missing_ok=True)
            if obs.name != "hdrlog-packets" and r.wrk["requests"]:
                r.coverage = round(r.records["http_server"] / r.wrk["requests"], 4)
        return r


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
            return (p.stdout + p.stderr).strip().splitlines()[0]
        except Exception:
            return None

    return {"kernel": platform.release(), "cpu": cpu, "cores": os.cpu_count(),
            "memory_gib": round(int(mem) / 2**20, 1),
            "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "nginx": version("nginx", "-v"), "wrk": version("wrk", "-v"),
            "tcpdump": version("tcpdump", "--version"), "tshark": version("tshark", "--version"),
            "hdrlog_commit": version("git", "-C", str(ROOT), "rev-parse", "--short", "HEAD")}


def med(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def summarize(runs: list[Run], names: list[str]) -> list[dict]:
    rows = []
    for name in names:
        base = {r.pair: r for r in runs if r.observer == name and r.role == "baseline"}
        obs = {r.pair: r for r in runs if r.observer == name and r.role == "observer"}
        ratios = [obs[i].wrk["rps"] / base[i].wrk["rps"] for i in sorted(obs) if i in base]
        o = list(obs.values())
        bpf: dict[str, list[float]] = {}
        for r in o:
            for q in r.bpf:
                if q["ns_per_event"] is not None:
                    bpf.setdefault(q["name"], []).append(q["ns_per_event"])
        rows.append({
            "observer": name, "pairs": len(ratios),
            "ratio_median": med(ratios), "ratio_min": min(ratios, default=None), "ratio_max": max(ratios, default=None),
            "baseline_rps_median": med([r.wrk["rps"] for r in base.values()]),
            "rps_median": med([r.wrk["rps"] for r in o]),
            "p50_ms": med([r.wrk["p50_ms"] for r in o]), "p99_ms": med([r.wrk["p99_ms"] for r in o]),
            "baseline_p50_ms": med([r.wrk["p50_ms"] for r in base.values()]),
            "baseline_p99_ms": med([r.wrk["p99_ms"] for r in base.values()]),
            "cpu_s_per_100k": med([r.cpu_s_per_100k for r in o]),
            "peak_rss_mib": (max(r.peak_rss_kib for r in o) / 1024) if o and o[0].peak_rss_kib is not None else None,
            "drain_s": med([r.drain_s for r in o]),
            "coverage_median": med([r.coverage for r in o]),
            "coverage_min": min((r.coverage for r in o if r.coverage is not None), default=None),
            "bpf_ns_per_event": {k: med(v) for k, v in bpf.items()},
            "wrk_errors": sum(r.wrk.get("socket_errors", 0) + r.wrk.get("non_2xx", 0) for r in [*o, *base.values()]),
        })
    return rows


def fmt(x, spec=".2f", none="–"):
    return none if x is None else format(x, spec)


def markdown(rows: list[dict], runs: list[Run], m: dict, args) -> str:
    out = [f"# hdrlog benchmark {m['date']}", "",
           f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, Linux {m['kernel']}; "
           f"{m['nginx']}; {m['wrk']}; hdrlog {m['hdrlog_commit']}.", "",
           f"nginx (1 worker, 612-byte file) in namespace a, `wrk -t2 -c50 -d{args.seconds:g}s` in namespace b; "
           f"{args.pairs} baseline/observer pairs per row. Ratio = observer run's requests/s ÷ its baseline's "
           "(median [min–max]); latency, CPU, RSS, coverage are medians over the observer runs (RSS: max).", "",
           "| observer | req/s ratio | baseline req/s | p50 ms (base) | p99 ms (base) | CPU s / 100k req "
           "| peak RSS MiB | drain s | coverage | BPF ns/event |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        bpf = ", ".join(f"{k} {v:.0f}" for k, v in sorted(r["bpf_ns_per_event"].items())) or "–"
        cov = "–" if r["coverage_median"] is None else f"{r['coverage_median']:.3f} (min {r['coverage_min']:.3f})"
        out.append(f"| {r['observer']} | {fmt(r['ratio_median'], '.3f')} [{fmt(r['ratio_min'], '.3f')}–"
                   f"{fmt(r['ratio_max'], '.3f')}] | {fmt(r['baseline_rps_median'], '.0f')} "
                   f"| {fmt(r['p50_ms'])} ({fmt(r['baseline_p50_ms'])}) | {fmt(r['p99_ms'])} ({fmt(r['baseline_p99_ms'])}) "
                   f"| {fmt(r['cpu_s_per_100k'], '.3f')} | {fmt(r['peak_rss_mib'], '.1f')} | {fmt(r['drain_s'])} "
                   f"| {cov} | {bpf} |")
    if any(r["wrk_errors"] for r in rows):
        out += ["", "wrk socket errors + non-2xx responses: "
                + ", ".join(f"{r['observer']} {r['wrk_errors']}" for r in rows if r["wrk_errors"])]
    out += ["", "hdrlog summary lines (stderr) and records counted in its output, per observer run:", ""]
    for r in runs:
        if r.summary_line is not None or (r.role == "observer" and r.observer.startswith("hdrlog")):
            out.append(f"- {r.observer} pair {r.pair}: wrk {r.wrk['requests']} requests; `{r.summary_line}`; "
                       f"records {r.records}; exit {r.exit}")
    return "\n".join(out) + "\n"


def chart(rows: list[dict], path: Path) -> str:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "no chart: matplotlib is not installed (pip install -e '.[bench]' into the venv)"
    rows = [r for r in rows if r["ratio_median"] is not None]
    fig, ax = plt.subplots(figsize=(7, 0.5 * len(rows) + 1.2))
    names = [r["observer"] for r in rows][::-1]
    medians = [r["ratio_median"] for r in rows][::-1]
    lo = [r["ratio_median"] - r["ratio_min"] for r in rows][::-1]
    hi = [r["ratio_max"] - r["ratio_median"] for r in rows][::-1]
    ax.barh(names, medians, xerr=[lo, hi], color="#4a7fb0", capsize=3)
    ax.axvline(1.0, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("requests/s with observer ÷ baseline (median, min–max)")
    ax.set_xlim(0, max(1.1, max(r["ratio_max"] for r in rows) + 0.05))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    return f"chart: {path}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pairs", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--observers", default=",".join(o.name for o in OBSERVERS))
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 pairs of 5 s")
    args = ap.parse_args()
    if args.quick:
        args.pairs, args.seconds = 2, 5
    wanted = args.observers.split(",")
    unknown = set(wanted) - {o.name for o in OBSERVERS}
    if unknown:
        ap.error(f"unknown observers {sorted(unknown)}")
    if os.geteuid() != 0:
        ap.error("needs root (namespaces, BPF)")
    for tool in ("nginx", "wrk", "openssl", "bpftool", "ss",
                 *(["tcpdump"] if "tcpdump" in wanted else []), *(["tshark"] if "tshark" in wanted else [])):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing (apt-get install {tool})")
    observers = [o for o in OBSERVERS if o.name in wanted]

    def on_term(*_):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)

    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    RESULTS.mkdir(parents=True, exist_ok=True)
    b = Bench(args)
    runs: list[Run] = []
    t_start = time.monotonic()
    try:
        b.setup()
        b.wrk(False, 2)  # warm-up, discarded
        b.wrk(True, 2)
        for obs in observers:
            for i in range(args.pairs):
                for role in ("baseline", "observer"):
                    r = b.run(obs, role, i)
                    runs.append(r)
                    extra = f" cpu {r.cpu_s}s drain {r.drain_s}s cov {r.coverage}" if r.cpu_s is not None else ""
                    print(f"{obs.name:15} pair {i} {role:8} {r.wrk['rps']:9.0f} req/s "
                          f"p99 {r.wrk['p99_ms']:.2f} ms{extra}", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        print("interrupted: cleaning up, writing what was measured", file=sys.stderr)
    finally:
        b.teardown()
    m = machine()
    m["wall_s"] = round(time.monotonic() - t_start, 1)
    rows = summarize(runs, [o.name for o in observers])
    md = markdown(rows, runs, m, args) + f"\nWall time: {m['wall_s']} s.\n"
    (RESULTS / f"{stamp}.md").write_text(md)
    (RESULTS / f"{stamp}.json").write_text(json.dumps(
        {"machine": m, "args": vars(args), "rows": rows, "runs": [asdict(r) for r in runs]}, indent=1) + "\n")
    print(md)
    print(chart(rows, RESULTS / f"{stamp}.png"), file=sys.stderr)
    print(f"results: {RESULTS / stamp}.{{md,json}}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
