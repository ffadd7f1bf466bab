"""The `hdrlog` command line as a user meets it: exit codes, messages, config files,
and what stays attached to an interface after each way a run can end.

Everything that attaches runs inside the `netns_pair` namespaces (veth a0 <-> b0);
runs that must fail before attaching get a throwaway network namespace of their own
(`unshare --net`) so that a bug there could not reach the host's interfaces.

BPF objects are identified exactly: while hdrlog runs, /proc/PID/fdinfo lists the
program and link ids it holds; afterwards those ids must be gone from the kernel, and
no program named like hdrlog's, created since the test started, may be left that no
process holds (something attached or pinned it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.conftest import REQUIRE, require_tool
from tests.hdrlog_proc import HdrlogRun, hdrlog_cmd, start_hdrlog
from tests.netns import sh as _sh

HDRLOG_PROGS = ("tc_ingress", "tc_egress", "xdp_ingress")
LEGACY_HANDLE = "0x484c"
NOBODY = 65534
TIMEOUT = 30  # seconds, for any one subprocess

SUMMARY_RE = re.compile(
    r"^hdrlog: seen (\d+), logged (\d+), dropped (\d+)(?: \(([^)]*)\))?(?:; L7 [^;]*)?(?:; (\d+) events read)?; "
    r"(\d+) records written"
)

ALL_FLAGS = (
    "-i", "--interface", "--mode", "--xdp-mode", "--tc-attach", "--proto", "--port",
    "--net", "--not-net", "--tcp-flags", "--sample", "--first-packets", "--snaplen",
    "--ring-size", "-c", "--config", "-o", "--output", "--duration", "--count",
    "--no-l7", "--l7-only", "--pid", "--comm", "--cgroup", "--headers", "--capture-bytes",
    "--unix-sockets", "--tls", "--no-tls", "--ssl-lib", "--no-redact", "--redact-mode",
    "--redact-header", "--redact-param",
)  # fmt: skip


# --------------------------------------------------------------------------- helpers


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    """A tool run to completion (ip, tc, bpftool), in bounded time."""
    return _sh(*args, check=check, timeout=TIMEOUT)


def cli(*args: str, timeout: float = TIMEOUT, **kw) -> subprocess.CompletedProcess:
    """`python -m hdrlog ARGS`; as root inside a fresh, empty network namespace."""
    cmd = [sys.executable, "-m", "hdrlog", *args]
    if os.geteuid() == 0:
        cmd = ["unshare", "--net", "--", *cmd]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)


def err_lines(p: subprocess.CompletedProcess) -> list[str]:
    return [ln for ln in p.stderr.splitlines() if ln.strip()]


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / f"hdrlog-{time.monotonic_ns()}.yaml"
    path.write_text(text)
    return path


@contextmanager
def running(tmp_path: Path, *args: str, netns: str, ready: bool = True):
    """start_hdrlog, killed in any case when the block ends."""
    run = start_hdrlog(tmp_path, *args, netns=netns, ready=ready)
    try:
        yield run
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
            try:
                run.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass


def parse_summary(line: str) -> dict:
    m = SUMMARY_RE.match(line)
    assert m, f"no summary line: {line!r}"
    seen, logged, dropped, detail, read, records = m.groups()
    drops = {}
    for part in filter(None, (detail or "").split(", ")):
        name, _, n = part.rpartition(" ")
        drops[name] = int(n)
    return {"seen": int(seen), "logged": int(logged), "dropped": int(dropped),
            "drops": drops, "read": int(read or 0), "records": int(records)}  # fmt: skip


def _fdinfo(pid: int | str) -> list[dict[str, str]]:
    out = []
    base = f"/proc/{pid}/fdinfo"
    try:
        fds = os.listdir(base)
    except OSError:
        return out
    for fd in fds:
        try:
            with open(f"{base}/{fd}") as f:
                text = f.read()
        except OSError:
            continue
        info = {}
        for line in text.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                info[key.strip()] = value.strip()
        out.append(info)
    return out


def bpf_objects(pid: int) -> tuple[set[int], dict[int, dict[str, str]]]:
    """(program ids, {link id: fdinfo}) of the BPF descriptors a process holds."""
    progs, links = set(), {}
    for info in _fdinfo(pid):
        if "link_id" in info:
            links[int(info["link_id"])] = info
        elif "prog_type" in info and "prog_id" in info:
            progs.add(int(info["prog_id"]))
    return progs, links


def held_prog_ids() -> set[int]:
    """Programs some live process holds a descriptor of (directly or through a link)."""
    held = set()
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            held.update(int(i["prog_id"]) for i in _fdinfo(pid) if "prog_id" in i)
    return held


def live_progs() -> dict[int, str]:
    """id -> name of loaded programs named like hdrlog's."""
    require_tool("bpftool")
    out = sh("bpftool", "-j", "prog", "show").stdout
    return {p["id"]: p.get("name", "") for p in json.loads(out or "[]") if p.get("name") in HDRLOG_PROGS}


def live_links() -> dict[int, int]:
    """link id -> program id of every BPF link in the kernel."""
    out = sh("bpftool", "-j", "link", "show").stdout
    return {ln["id"]: ln.get("prog_id", -1) for ln in json.loads(out or "[]")}


def leftovers(before: set[int], own_progs: set[int], own_links: set[int]) -> dict[str, object]:
    """What is still in the kernel of a finished hdrlog run (empty dict: nothing)."""
    progs, links = live_progs(), live_links()
    out: dict[str, object] = {}
    if own_progs & progs.keys():
        out["own programs"] = sorted(own_progs & progs.keys())
    if own_links & links.keys():
        out["own links"] = sorted(own_links & links.keys())
    new = set(progs) - before - own_progs
    if new:
        orphans = new - held_prog_ids()  # other processes' programs are theirs to free
        if orphans:
            out["new unheld programs"] = {i: progs[i] for i in sorted(orphans)}
    return out


def assert_released(before: set[int], own_progs: set[int] = frozenset(),
                    own_links: set[int] = frozenset(), timeout: float = 10) -> None:
    """Poll (bounded: the kernel frees programs asynchronously) until nothing is left."""
    deadline = time.monotonic() + timeout
    left = leftovers(before, set(own_progs), set(own_links))
    while left and time.monotonic() < deadline:
        time.sleep(0.1)
        left = leftovers(before, set(own_progs), set(own_links))
    assert not left, f"still in the kernel after hdrlog ended: {left}"


def ifindex_in(ns: str, dev: str) -> int:
    return json.loads(sh("ip", "-n", ns, "-j", "link", "show", dev).stdout)[0]["ifindex"]


def qdisc_kinds(ns: str, dev: str) -> list[str]:
    require_tool("tc")
    out = sh("tc", "-n", ns, "-j", "qdisc", "show", "dev", dev).stdout
    return [q["kind"] for q in json.loads(out or "[]")]


def hdrlog_filters(ns: str, dev: str, direction: str) -> list[dict]:
    """cls_bpf filters with hdrlog's handle at an interface's ingress or egress."""
    p = sh("tc", "-n", ns, "-j", "filter", "show", "dev", dev, direction, check=False)
    if p.returncode != 0:  # no clsact qdisc: no filters either
        return []
    filters = json.loads(p.stdout or "[]")
    return [f for f in filters if f.get("options", {}).get("handle") == LEGACY_HANDLE]


def bpftool_net(ns: str, dev: str) -> dict[str, list]:
    """`bpftool net show dev DEV` inside a namespace: the XDP and TC programs on DEV."""
    out = sh("ip", "netns", "exec", ns, "bpftool", "-j", "net", "show", "dev", dev).stdout
    data = json.loads(out or "[{}]")[0]
    return {"xdp": data.get("xdp", []), "tc": data.get("tc", [])}


def xdp_attached(ns: str, dev: str) -> bool:
    info = json.loads(sh("ip", "-n", ns, "-j", "link", "show", dev).stdout)[0]
    return "xdp" in info or " xdp " in sh("ip", "-n", ns, "link", "show", dev).stdout


def ping(pair, count: int = 3) -> None:
    """Synchronous pings a -> b; returns when they are done."""
    pair.run(pair.a, "ping", "-c", str(count), "-i", "0.1", "-W", "1", pair.b_ip, timeout=TIMEOUT)


def ping_forever(pair) -> subprocess.Popen:
    """Pings a -> b until killed (by the test or the fixture), at most 30 s."""
    return pair.popen(pair.a, "ping", "-i", "0.05", "-w", "30", pair.b_ip,
                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip


def send_udp(pair, port: int, count: int = 3) -> None:
    """`count` UDP datagrams a -> b:port, sent before this returns."""
    code = (
        "import socket, sys\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "for _ in range(int(sys.argv[3])): s.sendto(b'hdrlog', (sys.argv[1], int(sys.argv[2])))\n"
    )
    pair.run(pair.a, sys.executable, "-c", code, pair.b_ip, str(port), str(count), timeout=TIMEOUT)


def stop_and_check(run: HdrlogRun, how: str) -> dict:
    """End a run the given way; it must exit 0 with a summary line."""
    if how in ("SIGINT", "SIGTERM"):
        rc = run.stop(getattr(signal, how))
    else:
        rc = run.wait()
    assert rc == 0, f"exit {rc}: {run.stderr_lines}"
    assert run.summary, f"no summary line on stderr: {run.stderr_lines}"
    return parse_summary(run.summary)


@pytest.fixture
def nobody_home():
    """A HOME for uid 65534, and a check that it can run the venv's Python and hdrlog."""
    require_tool("setpriv")
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to an unprivileged user")
    home = tempfile.mkdtemp(prefix="hdrlog-nobody-")
    os.chown(home, NOBODY, NOBODY)
    try:
        probe = subprocess.run(
            [*setpriv(), sys.executable, "-c", "import hdrlog.cli, yaml, msgspec"],
            capture_output=True, text=True, timeout=TIMEOUT, cwd=home, env=nobody_env(home),
        )  # fmt: skip
        if probe.returncode != 0:
            msg = f"uid {NOBODY} cannot run {sys.executable} with hdrlog: {probe.stderr.strip()}"
            if REQUIRE:
                pytest.fail(msg)
            pytest.skip(msg)
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)


def setpriv() -> list[str]:
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]


def nobody_env(home: str) -> dict[str, str]:
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": home, "LANG": "C.UTF-8"}


# --------------------------------------------------------------------------- 1. basics


def test_version_prints_version_and_exits_0():
    """`hdrlog version` prints "hdrlog <package version>" on stdout and exits 0."""
    from hdrlog import __version__

    p = cli("version")
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == f"hdrlog {__version__}"


def test_no_command_prints_help_and_exits_2():
    """`hdrlog` without a command prints the usage with every command and exits 2."""
    p = cli()
    assert p.returncode == 2
    text = p.stdout + p.stderr
    assert "usage: hdrlog" in text
    for command in ("run", "doctor", "version"):
        assert command in text


def test_run_help_mentions_every_flag():
    """`hdrlog run --help` exits 0 and lists every flag of `hdrlog run`."""
    p = cli("run", "--help")
    assert p.returncode == 0, p.stderr
    words = set(re.findall(r"(?<![\w-])--?[a-z][a-z0-9-]*", p.stdout))
    missing = [f for f in ALL_FLAGS if f not in words]
    assert not missing, f"not in `hdrlog run --help`: {missing}\n{p.stdout}"


# --------------------------------------------------------------------------- 2. not root


def test_run_as_unprivileged_user_exits_1_naming_capabilities(netns_pair, nobody_home):
    """Unprivileged, `hdrlog run -i lo --count 1` exits 1 with one stderr line naming the
    missing capabilities, and attaches nothing."""
    pair = netns_pair
    before = set(live_progs())
    p = subprocess.run(
        ["ip", "netns", "exec", pair.a, *setpriv(),
         sys.executable, "-m", "hdrlog", "run", "-i", "lo", "--count", "1"],
        capture_output=True, text=True, timeout=TIMEOUT, cwd=nobody_home, env=nobody_env(nobody_home),
    )  # fmt: skip
    assert p.returncode == 1, (p.returncode, p.stderr)
    lines = err_lines(p)
    assert len(lines) == 1, lines
    assert lines[0].startswith("hdrlog: ")
    for cap in ("CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN"):
        assert cap in lines[0]
    assert p.stdout == ""
    assert "clsact" not in qdisc_kinds(pair.a, "lo")
    assert not xdp_attached(pair.a, "lo")
    assert_released(before)


def test_doctor_as_unprivileged_user_fails_privileges(nobody_home):
    """Unprivileged, `hdrlog doctor` exits 1 with a "FAIL privileges" line naming CAP_BPF."""
    p = subprocess.run(
        [*setpriv(), sys.executable, "-m", "hdrlog", "doctor"],
        capture_output=True, text=True, timeout=TIMEOUT, cwd=nobody_home, env=nobody_env(nobody_home),
    )  # fmt: skip
    assert p.returncode == 1, (p.stdout, p.stderr)
    fail = [ln for ln in p.stdout.splitlines() if ln.startswith("FAIL privileges")]
    assert len(fail) == 1, p.stdout
    assert "CAP_BPF" in fail[0]


# --------------------------------------------------------------------------- 3. usage errors


def test_unknown_interface_exits_2_naming_it(bpf_required):
    """As root, `hdrlog run -i nosuch0` exits 2 with a message naming nosuch0, loading nothing."""
    before = set(live_progs())
    p = cli("run", "-i", "nosuch0", "--count", "1")
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert "nosuch0" in p.stderr
    assert not [ln for ln in err_lines(p) if "Traceback" in ln]
    assert_released(before)


def test_unknown_config_key_exits_2_naming_it(tmp_path):
    """A config file with an unknown key makes `hdrlog run` exit 2 with one line naming the key."""
    cfg = write_config(tmp_path, "interface: [lo]\ncolour: red\n")
    p = cli("run", "-c", str(cfg))
    assert p.returncode == 2, (p.returncode, p.stderr)
    lines = err_lines(p)
    assert len(lines) == 1, lines
    assert lines[0].startswith("hdrlog: colour"), lines


@pytest.mark.parametrize(
    "key, yaml_text",
    [
        ("snaplen", "snaplen: abc"),
        ("snaplen", "snaplen: 5000"),
        ("port", "port: [99999]"),
        ("port", "port: [http]"),
        ("sample", "sample: 0"),
        ("count", "count: 0"),
        ("duration", "duration: -1"),
        ("mode", "mode: ebpf"),
        ("ring_size", "ring_size: 100000"),
        ("interface", "interface: [a/b]"),
        ("tcp_flags", "tcp_flags: bogus"),
        ("net", "net: [300.1.1.1/8]"),
        ("proto", "proto: [nosuch]"),
    ],
)
def test_config_value_of_wrong_type_exits_2_naming_key(tmp_path, key, yaml_text):
    """A config value of the wrong type or out of range makes `hdrlog run` exit 2 with one
    line that starts with the key."""
    cfg = write_config(tmp_path, f"{yaml_text}\n")
    p = cli("run", "-c", str(cfg), *([] if key == "interface" else ["-i", "lo"]))
    assert p.returncode == 2, (p.returncode, p.stderr)
    lines = err_lines(p)
    assert len(lines) == 1, lines
    assert re.match(rf"hdrlog: {key}\b", lines[0]), lines


@pytest.mark.parametrize(
    "key, flags",
    [
        ("tcp_flags", ["--tcp-flags", "bogus"]),
        ("tcp_flags", ["--tcp-flags", "ack/syn"]),
        ("net", ["--net", "300.1.1.1/8"]),
        ("not_net", ["--not-net", "10.0.0.0/99"]),
        ("proto", ["--proto", "nosuch"]),
        ("proto", ["--proto", "300"]),
        ("port", ["--port", "99999"]),
        ("sample", ["--sample", "0"]),
        ("snaplen", ["--snaplen", "2000"]),
        ("ring_size", ["--ring-size", "100000"]),
        ("count", ["--count", "0"]),
    ],
)
def test_bad_flag_value_exits_2_naming_setting(key, flags):
    """A flag value hdrlog cannot use makes `hdrlog run` exit 2 with one line naming the setting."""
    p = cli("run", "-i", "lo", *flags)
    assert p.returncode == 2, (p.returncode, p.stderr)
    lines = err_lines(p)
    assert len(lines) == 1, lines
    assert re.match(rf"hdrlog: {key}\b", lines[0]), lines


@pytest.mark.parametrize("flags", [["--snaplen", "abc"], ["--mode", "ebpf"], ["--tc-attach", "x"]])
def test_unparseable_flag_exits_2_naming_flag(flags):
    """A flag argparse rejects makes `hdrlog run` exit 2 with a usage error naming the flag."""
    p = cli("run", "-i", "lo", *flags)
    assert p.returncode == 2, (p.returncode, p.stderr)
    assert flags[0] in p.stderr


def test_missing_config_file_exits_2(tmp_path):
    """`hdrlog run -c` with a file that does not exist exits 2 with one line naming the file."""
    missing = tmp_path / "nope.yaml"
    p = cli("run", "-i", "lo", "-c", str(missing))
    assert p.returncode == 2, (p.returncode, p.stderr)
    lines = err_lines(p)
    assert len(lines) == 1 and str(missing) in lines[0], lines


@pytest.mark.parametrize("text", ["port: [9\n", "- port\n- count\n"])
def test_config_file_not_a_mapping_exits_2(tmp_path, text):
    """A config file that is not valid YAML, or not a mapping, makes `hdrlog run` exit 2 in one line."""
    cfg = write_config(tmp_path, text)
    p = cli("run", "-i", "lo", "-c", str(cfg))
    assert p.returncode == 2, (p.returncode, p.stderr)
    lines = err_lines(p)
    assert lines and lines[0].startswith(f"hdrlog: config file {cfg}"), lines
    assert "Traceback" not in p.stderr


def test_config_file_settings_take_effect(netns_pair, tmp_path):
    """The settings of a YAML config file apply: its interface, port filter and count are used."""
    pair = netns_pair
    cfg = write_config(tmp_path, "interface: [a0]\nport: [9]\ncount: 2\n")
    with running(tmp_path, "-c", str(cfg), netns=pair.a) as run:
        ping(pair, 2)  # filtered by the port setting
        send_udp(pair, 7, 3)  # filtered too
        send_udp(pair, 9, 5)  # the first two end the run by the count setting
        s = stop_and_check(run, "count")
    records = run.records()
    assert len(records) == 2 and s["records"] == 2
    for r in records:
        assert r["frame.interface_name"] == "a0"
        assert 9 in (r.get("udp.srcport"), r.get("udp.dstport")), r
    assert s["drops"].get("filtered_port", 0) >= 2 + 3


def test_flags_override_config_file(netns_pair, tmp_path):
    """A flag wins over the same setting in the config file (--port 7 over port: [9],
    --count 2 over count: 1000)."""
    pair = netns_pair
    cfg = write_config(tmp_path, "interface: [a0]\nport: [9]\ncount: 1000\n")
    with running(tmp_path, "-c", str(cfg), "--port", "7", "--count", "2", netns=pair.a) as run:
        send_udp(pair, 9, 3)  # sent first: a kept port 9 would be the first records
        send_udp(pair, 7, 5)
        s = stop_and_check(run, "count")
    records = run.records()
    assert len(records) == 2 and s["records"] == 2
    for r in records:
        assert r.get("udp.dstport") == 7 or r.get("udp.srcport") == 7, r


# --------------------------------------------------------------------------- 4./5. tcx cleanup


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM", "count", "duration"])
def test_tcx_links_gone_after_exit(netns_pair, tmp_path, how):
    """With tcx, hdrlog holds a tcx link at a0's ingress and egress while it runs, and after it
    ends (SIGINT, SIGTERM, --count, --duration) with exit 0 and a summary, no link or program
    of it remains and no qdisc was added."""
    pair = netns_pair
    idx = ifindex_in(pair.a, "a0")
    before = set(live_progs())
    extra = {"count": ["--count", "3", "--proto", "icmp"], "duration": ["--duration", "2"]}.get(how, [])
    with running(tmp_path, "-i", "a0", "--tc-attach", "tcx", *extra, netns=pair.a) as run:
        progs, links = bpf_objects(run.proc.pid)
        if run.proc.poll() is None:  # (a --duration run could in theory be over already)
            tcx = {(int(i["ifindex"]), i["attach_type"].rsplit("(", 1)[-1].rstrip(")"))
                   for i in links.values() if i.get("link_type") == "tcx"}  # fmt: skip
            assert tcx == {(idx, "ingress"), (idx, "egress")}, links
            kernel = live_links()
            names = live_progs()
            for link_id, info in links.items():
                assert kernel.get(link_id) == int(info["prog_id"]), (link_id, kernel)
                if info.get("link_type") == "tcx":  # the others are the L7 tracepoints and uprobes
                    assert names.get(int(info["prog_id"])) in ("tc_ingress", "tc_egress")
            assert "clsact" not in qdisc_kinds(pair.a, "a0")
            assert not hdrlog_filters(pair.a, "a0", "ingress")
        if how == "count":
            ping_forever(pair)
        s = stop_and_check(run, how)
    if how == "count":
        assert len(run.records()) == 3
    assert s["seen"] == s["logged"] + s["dropped"]
    assert_released(before, progs, set(links))
    assert "clsact" not in qdisc_kinds(pair.a, "a0")
    assert bpftool_net(pair.a, "a0") == {"xdp": [], "tc": []}


def test_tcx_nothing_left_after_sigkill(netns_pair, tmp_path):
    """With tcx, `kill -9` leaves nothing: hdrlog's links and programs leave the kernel
    (within a bounded wait) and no qdisc remains."""
    pair = netns_pair
    before = set(live_progs())
    with running(tmp_path, "-i", "a0", "--tc-attach", "tcx", netns=pair.a) as run:
        progs, links = bpf_objects(run.proc.pid)
        assert len([i for i in links.values() if i.get("link_type") == "tcx"]) == 2, links
        run.proc.kill()
        # the exiting process closes its ~30 tracepoint and uprobe links one RCU grace period
        # after another: seconds when the machine is busy
        run.proc.wait(timeout=TIMEOUT)
    assert run.proc.returncode == -signal.SIGKILL
    assert_released(before, progs, set(links))
    assert "clsact" not in qdisc_kinds(pair.a, "a0")
    assert bpftool_net(pair.a, "a0") == {"xdp": [], "tc": []}


# --------------------------------------------------------------------------- 6. legacy TC


def test_legacy_creates_clsact_and_removes_it(netns_pair, tmp_path):
    """With --tc-attach legacy, hdrlog adds a clsact qdisc with its cls_bpf filters
    (handle 0x484c) on a0 and removes qdisc, filters and programs on SIGINT."""
    pair = netns_pair
    assert "clsact" not in qdisc_kinds(pair.a, "a0")
    before = set(live_progs())
    with running(tmp_path, "-i", "a0", "--tc-attach", "legacy", netns=pair.a) as run:
        progs, _ = bpf_objects(run.proc.pid)
        assert "clsact" in qdisc_kinds(pair.a, "a0")
        for direction, name in (("ingress", "tc_ingress"), ("egress", "tc_egress")):
            filters = hdrlog_filters(pair.a, "a0", direction)
            assert len(filters) == 1, filters
            assert filters[0]["pref"] == 0x484C
            assert filters[0]["options"]["prog"]["name"] == name
            assert filters[0]["options"]["prog"]["id"] in progs
        stop_and_check(run, "SIGINT")
    assert "clsact" not in qdisc_kinds(pair.a, "a0")
    assert_released(before, progs)


def test_legacy_leaves_existing_clsact(netns_pair, tmp_path):
    """With --tc-attach legacy and a clsact qdisc already on a0, hdrlog leaves that qdisc in
    place on SIGINT and removes only its own filters."""
    pair = netns_pair
    sh("tc", "-n", pair.a, "qdisc", "add", "dev", "a0", "clsact")
    before = set(live_progs())
    with running(tmp_path, "-i", "a0", "--tc-attach", "legacy", netns=pair.a) as run:
        progs, _ = bpf_objects(run.proc.pid)
        assert len(hdrlog_filters(pair.a, "a0", "ingress")) == 1
        assert len(hdrlog_filters(pair.a, "a0", "egress")) == 1
        stop_and_check(run, "SIGINT")
    assert "clsact" in qdisc_kinds(pair.a, "a0")
    assert not hdrlog_filters(pair.a, "a0", "ingress")
    assert not hdrlog_filters(pair.a, "a0", "egress")
    assert bpftool_net(pair.a, "a0")["tc"] == []
    assert_released(before, progs)


@pytest.mark.parametrize("next_mode", ["legacy", "auto"])
def test_legacy_stale_filter_after_sigkill_removed_by_next_run(netns_pair, tmp_path, next_mode):
    """After `kill -9` in legacy mode hdrlog's filters stay on a0 (the documented limit); the
    next run on a0 (--tc-attach legacy or auto) removes them at start, and after it exits
    no filter with handle 0x484c and no program of either run remains."""
    pair = netns_pair
    before = set(live_progs())
    with running(tmp_path, "-i", "a0", "--tc-attach", "legacy", netns=pair.a) as first:
        progs1, _ = bpf_objects(first.proc.pid)
        first.proc.kill()
        first.proc.wait(timeout=TIMEOUT)  # (see test_tcx_nothing_left_after_sigkill)
    stale = hdrlog_filters(pair.a, "a0", "ingress") + hdrlog_filters(pair.a, "a0", "egress")
    assert len(stale) == 2, stale
    assert {f["options"]["prog"]["id"] for f in stale} <= progs1

    with running(tmp_path, "-i", "a0", "--tc-attach", next_mode, netns=pair.a) as second:
        progs2, links2 = bpf_objects(second.proc.pid)
        now = hdrlog_filters(pair.a, "a0", "ingress") + hdrlog_filters(pair.a, "a0", "egress")
        # the killed run's filters are gone; legacy mode has put its own in their place
        assert not {f["options"]["prog"]["id"] for f in now} & progs1, now
        assert len(now) == (2 if next_mode == "legacy" else 0), now
        stop_and_check(second, "SIGINT")
    assert not hdrlog_filters(pair.a, "a0", "ingress")
    assert not hdrlog_filters(pair.a, "a0", "egress")
    assert_released(before, progs1 | progs2, set(links2))


# --------------------------------------------------------------------------- 7. XDP


def test_xdp_detached_after_sigint(netns_pair, tmp_path):
    """With --mode xdp, an XDP program is on a0 while hdrlog runs and none after SIGINT."""
    pair = netns_pair
    before = set(live_progs())
    with running(tmp_path, "-i", "a0", "--mode", "xdp", netns=pair.a) as run:
        progs, links = bpf_objects(run.proc.pid)
        assert xdp_attached(pair.a, "a0")
        assert [i for i in links.values() if i.get("link_type") == "xdp"], links
        stop_and_check(run, "SIGINT")
    assert not xdp_attached(pair.a, "a0"), sh("ip", "-n", pair.a, "link", "show", "a0").stdout
    assert bpftool_net(pair.a, "a0")["xdp"] == []
    assert_released(before, progs, set(links))


# --------------------------------------------------------------------------- 8. summary


def test_summary_counts_add_up_with_port_filter(netns_pair, tmp_path):
    """With --port 9, the summary's seen equals logged plus the drops it lists, the pings
    count as filtered_port, and records written equal logged and the file's lines."""
    pair = netns_pair
    with running(tmp_path, "-i", "a0", "--port", "9", netns=pair.a) as run:
        ping(pair, 3)
        send_udp(pair, 9, 4)
        s = stop_and_check(run, "SIGINT")
    assert s["seen"] == s["logged"] + s["dropped"], s
    assert s["dropped"] == sum(s["drops"].values()), s
    assert s["drops"].get("filtered_port", 0) >= 6, s  # 3 requests + 3 replies at least
    assert s["logged"] >= 4, s  # the datagrams to port 9, at egress
    assert s["records"] == s["logged"] == len(run.records()), s
    assert s["read"] >= s["logged"], s  # every logged packet read back (plus L7 connection/exec events)


def test_summary_counts_add_up_with_only_pings(netns_pair, tmp_path):
    """With --port 9 and only pings (and the namespaces' own ARP/ND), every packet seen is
    dropped as filtered_port: seen == dropped == filtered_port, nothing logged or written."""
    pair = netns_pair
    with running(tmp_path, "-i", "a0", "--port", "9", netns=pair.a) as run:
        ping(pair, 3)
        s = stop_and_check(run, "SIGINT")
    assert s["seen"] >= 6, s  # 3 requests + 3 replies at least
    assert s["seen"] == s["logged"] + s["dropped"], s
    assert s["logged"] == 0 and s["records"] == 0, s
    assert s["drops"] == {"filtered_port": s["seen"]}, s
    assert run.records() == []


# --------------------------------------------------------------------------- 9. ending early


def test_count_ends_run_with_exact_records(netns_pair, tmp_path):
    """`hdrlog run -i a0 --count 3` exits 0 by itself while traffic flows, with exactly 3 records."""
    pair = netns_pair
    with running(tmp_path, "-i", "a0", "--count", "3", netns=pair.a) as run:
        ping_forever(pair)
        s = stop_and_check(run, "count")
    records = run.records()
    assert len(records) == 3 and s["records"] == 3, (records, s)
    assert all(r["type"] == "packet" and r["frame.interface_name"] == "a0" for r in records)


def test_duration_ends_run(netns_pair, tmp_path):
    """`hdrlog run -i a0 --duration 1` exits 0 by itself with a summary line."""
    with running(tmp_path, "-i", "a0", "--duration", "1", netns=netns_pair.a) as run:
        s = stop_and_check(run, "duration")
    assert s["records"] == len(run.records())


def test_output_file_created_0600(netns_pair, tmp_path):
    """`--output FILE` creates FILE with mode 0600 (whatever the umask), holding the records."""
    pair = netns_pair
    out = tmp_path / "out.ndjson"
    args = ("run", "-i", "a0", "--count", "2", "--proto", "icmp", "--output", str(out))
    cmd = ["ip", "netns", "exec", pair.a, "sh", "-c", 'umask 0; exec "$@"', "sh", *hdrlog_cmd(*args)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    run = HdrlogRun(proc, out)
    try:
        run.wait_ready()
        ping_forever(pair)
        stop_and_check(run, "count")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert out.exists()
    assert out.stat().st_mode & 0o777 == 0o600, oct(out.stat().st_mode)
    assert len(run.records()) == 2
