"""hdrlog's HTTPS logging on real traffic between two namespaces: `http` records from the
plaintext OpenSSL hands to SSL_read/SSL_write (curl, nginx) and SSL_read_ex/SSL_write_ex
(Python's ssl module), and one `tls` record per handshake and side, from the hellos the
syscalls carry.

Servers (nginx with TLS, a Python ssl server, Python TCP servers that only read) run in
namespace a, clients (curl, Python) in namespace b; hdrlog runs in the host namespace with
--l7-only and --port. As in test_http.py, hdrlog takes seconds to attach and to detach, so
the tests share one traffic mix (the module-scoped `mix`) watched by two runs at once, the
default one (uprobes on) and one with --no-tls; each test finds its connection by its
Community ID. A third run, --comm nginx, probes OpenSSL in nginx's processes alone. What each record must say comes from the client's own account of the
connection: curl's -w line and -v log, the Python client's ssl socket, and the cipher
suites the openssl CLI says OpenSSL 3 offers by default.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import require_bpf, require_tool
from tests.hdrlog_proc import HdrlogRun, hdrlog_cmd
from tests.integration.test_http import (
    check_process,
    check_timing,
    cid,
    kill_runs,
    of_conn,
    start_runs,
)
from tests.netns import NetnsPair
from tests.servers import (
    PY_TLS_CLIENT,
    TLS_NAME,
    Certificate,
    CurlRun,
    cases_client,
    curl,
    curl_version,
    nginx_running,
    nginx_tls_server,
    py_client,
    python_server,
    python_tls_server,
    self_signed_certificate,
)

NGINX = 8443  # nginx with TLS, started before hdrlog
PY_TLS = 8444  # the Python ssl server
LATE = 8445  # nginx with TLS, started after hdrlog had attached
GARBAGE = 9443  # a TLS-style port whose server (Python, plain TCP) only reads: bytes that are no TLS
HANG = 9444  # a server that never answers, not watched: keeps curl alive while hdrlog reads /proc
WATCHED = f"{NGINX},{PY_TLS},{LATE},{GARBAGE}"
SECRET1, SECRET2 = "SECRET1", "SECRET2"
INDEX = b"<p>index</p>\n"
KEEPALIVE_N = 20
ABRUPT_PATHS = ["/k/1", "/k/2", "/k/3", "/k/4"]  # three exchanges, then the fourth request and os._exit
SCSV = "TLS_EMPTY_RENEGOTIATION_INFO_SCSV"  # OpenSSL appends it to every first ClientHello
HEX32 = re.compile(r"[0-9a-f]{32}")
# fields that depend on when hdrlog asked /proc, not on the connection
_ENRICHED = ("ts", "process.command_line", "process.executable.path")
_TIMES = ("event.duration", "http.response.time_to_headers")


# --- what the clients and OpenSSL say -------------------------------------------------------------


@functools.cache
def openssl_offer(version: str) -> tuple[tuple[int, str, str], ...]:
    """The cipher suites OpenSSL offers by default when TLS `version` ("1.2", "1.3") is the
    highest it may use: (code, IANA name, OpenSSL name), in the order offered, SCSV not included."""
    require_tool("openssl")
    out = subprocess.run(["openssl", "ciphers", "-V", "-s", "-stdname", f"-tls{version.replace('.', '_')}"],
                         check=True, capture_output=True, text=True, timeout=30).stdout
    suites = []
    for line in out.splitlines():
        code, _, iana, _, name = line.split()[:5]
        hi, lo = code.split(",")
        suites.append((int(hi, 16) << 8 | int(lo, 16), iana, name))
    assert suites, out
    return tuple(suites)


def iana_name(openssl_name: str) -> str:
    """The IANA name of a cipher suite OpenSSL names its own way (ECDHE-RSA-AES256-GCM-SHA384)."""
    for _code, iana, name in openssl_offer("1.2") + openssl_offer("1.3"):
        if openssl_name in (name, iana):
            return iana
    raise AssertionError(f"openssl does not know {openssl_name}")


def ja4_b(codes: list[int]) -> str:
    """JA4's second part (FoxIO technical_details/JA4.md): the first 12 hex digits of SHA-256 over
    the sorted 4-hex-digit cipher suite codes, comma-separated."""
    return hashlib.sha256(",".join(f"{c:04x}" for c in sorted(codes)).encode()).hexdigest()[:12]


@dataclass
class CurlTls:
    """What curl -v said of its TLS connection."""

    version: str  # "1.3"
    cipher: str  # IANA name
    alpn_offered: list[str]
    alpn_accepted: str | None


def curl_tls(c: CurlRun) -> CurlTls:
    using = re.search(r"^\* SSL connection using TLSv(1\.[23]) / (\S+)$", c.stderr, re.M)
    offers = re.search(r"^\* ALPN: offers (\S+)$", c.stderr, re.M)
    accepted = re.search(r"^\* ALPN: server accepted (\S+)$", c.stderr, re.M)
    assert using and offers, c.stderr
    return CurlTls(using.group(1), iana_name(using.group(2)), offers.group(1).split(","),
                   accepted.group(1) if accepted else None)


def tls_args(pair: NetnsPair, port: int) -> list[str]:
    """curl to test.example:port, resolved to a's address (so the SNI is test.example), with the
    self-signed certificate accepted."""
    return ["-k", "--resolve", f"{TLS_NAME}:{port}:{pair.a_ip}"]


@dataclass
class PyTls:
    """What the Python client printed: its port, ssl's version and cipher, and per request
    (status, body length)."""

    port: int
    version: str  # "1.3"
    cipher: str
    responses: list[tuple[int, int]]
    pid: int


def py_tls_client(pair: NetnsPair, port: int, mode: str, *paths: str) -> PyTls:
    pid, out = py_client(pair, PY_TLS_CLIENT, pair.a_ip, str(port), TLS_NAME, mode, *paths)
    first, *rest = out.splitlines()
    local_port, version, cipher = first.split()
    assert version.startswith("TLSv"), out
    responses = [tuple(map(int, line.split())) for line in rest]
    return PyTls(int(local_port), version.removeprefix("TLSv"), cipher, responses, pid)


# --- the shared traffic mix -------------------------------------------------------------------------


@dataclass
class Mix:
    pair: NetnsPair
    nginx: subprocess.Popen
    nginx_late: subprocess.Popen | None = None
    py_server: subprocess.Popen | None = None
    records: dict[str, list[dict]] = field(default_factory=dict)  # run name -> its records
    raw: dict[str, bytes] = field(default_factory=dict)  # run name -> its output file's bytes
    exit_codes: dict[str, int | None] = field(default_factory=dict)
    stderr: dict[str, list[str]] = field(default_factory=dict)
    traffic: dict[str, object] = field(default_factory=dict)


def _make_www(root: Path) -> None:
    (root / "k").mkdir(parents=True)
    (root / "index.html").write_bytes(INDEX)
    for i in range(1, KEEPALIVE_N + 1):
        (root / "k" / str(i)).write_text(f"{i}\n")


def _poll(check, timeout: float, interval: float = 0.05) -> bool:
    """check() until it is true or `timeout` seconds have passed; whether it became true."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(interval)
    return True


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _logged(run: HdrlogRun, text: str, timeout: float) -> bool:
    """A line of run's stderr holds text (already read, or within timeout)."""
    return any(text in line for line in run.stderr_lines) or run._read_stderr(text, timeout)


def _live_http_roles(run: HdrlogRun, community_id: str) -> set[str]:
    """observer.role of the http records already written for a connection (while hdrlog runs)."""
    if not run.output.exists():
        return set()
    roles = set()
    for line in run.output.read_text().splitlines():
        with contextlib.suppress(ValueError):
            r = json.loads(line)
            if r.get("type") == "http" and r.get("network.community_id") == community_id:
                roles.add(r.get("observer.role"))
    return roles


GARBAGE_CLIENT = cases_client(r"""{
    # no TLS record header, no HTTP
    "noise": bytes((i * 37 + 11) % 256 for i in range(4096)),
    # a handshake record holding a ClientHello whose body is one byte
    "bad_hello": b"\x16\x03\x01\x00\x05" + b"\x01\x00\x00\x01\xff",
    # a full-size handshake record of 0xff bytes (handshake type 255)
    "junk_record": b"\x16\x03\x03\x40\x00" + b"\xff" * 0x4000,
}""")


def _traffic(mix: Mix, stack: contextlib.ExitStack, tmp_path: Path, www: Path, cert: Certificate,
             default: HdrlogRun, notls: HdrlogRun, per_process: HdrlogRun) -> None:
    pair, t = mix.pair, mix.traffic
    a = pair.a_ip

    # a TLS server started after hdrlog: nginx execs now, its libssl was probed at start
    late_dir = tmp_path / "late"
    late_dir.mkdir()
    mix.nginx_late = stack.enter_context(nginx_running(late_dir, pair, {LATE: nginx_tls_server(pair, LATE, www, cert)},
                                                      master=True))
    # --comm nginx probes the master after its exec and the worker once its fork is reported:
    # wait for both before curl
    _poll(lambda: _children(mix.nginx_late.pid), 10)
    t["nginx_workers"] = _children(mix.nginx_late.pid)
    t["late_probed"] = all(_logged(per_process, f"in pid {pid} (", 10)
                           for pid in (mix.nginx_late.pid, *t["nginx_workers"]))
    t["late"] = c = curl(pair, "-v", *tls_args(pair, LATE), "--tlsv1.3", "-o", "/dev/null",
                         f"https://{TLS_NAME}:{LATE}/index.html?late=1")
    late_conn = cid(pair.b_ip, a, c.only.local_port, LATE)
    t["late_live"] = _poll(lambda: _live_http_roles(default, late_conn) == {"client", "server"}, 10)
    t["late_live_per_process"] = _poll(lambda: _live_http_roles(per_process, late_conn) == {"server"}, 10)

    # TLS 1.3 and TLS 1.2 with secrets in a header and the query; the 1.3 curl then waits on a
    # server that never answers (2 s), so hdrlog reads its command line while it is there
    t["tls13"] = curl(pair, "-v", *tls_args(pair, NGINX), "--tlsv1.3", "-H", f"Authorization: Bearer {SECRET1}",
                      "-o", "/dev/null", f"https://{TLS_NAME}:{NGINX}/index.html?token={SECRET2}&x=1",
                      "-o", "/dev/null", f"http://{a}:{HANG}/", "--max-time", "2", check=False)
    t["tls12"] = curl(pair, "-v", *tls_args(pair, NGINX), "--tlsv1.2", "--tls-max", "1.2",
                      "-H", f"Authorization: Bearer {SECRET1}",
                      "-o", "/dev/null", f"https://{TLS_NAME}:{NGINX}/index.html?token={SECRET2}&x=1")

    # Python's ssl module on both sides; the default run is stopped meanwhile (SIGSTOP), so it
    # reads the connection's events, the main thread's handshake and the handler thread's
    # exchange, in one batch whatever its timing
    default.proc.send_signal(signal.SIGSTOP)
    per_process.proc.send_signal(signal.SIGSTOP)
    try:
        t["python"] = py_tls_client(pair, PY_TLS, "close", "/index.html?lang=py")
    finally:
        default.proc.send_signal(signal.SIGCONT)
        per_process.proc.send_signal(signal.SIGCONT)

    # keep-alive: one TLS connection, KEEPALIVE_N requests
    urls = []
    for i in range(1, KEEPALIVE_N + 1):
        urls += ["-o", "/dev/null", f"https://{TLS_NAME}:{NGINX}/k/{i}"]
    t["keepalive"] = curl(pair, *tls_args(pair, NGINX), "--tlsv1.3", *urls, timeout=60)

    # bytes that are no TLS on a TLS-style port; plaintext HTTP to nginx's TLS port
    t["garbage_pid"], t["garbage_out"] = py_client(pair, GARBAGE_CLIENT, a, str(GARBAGE))
    t["plain"] = curl(pair, "-o", "/dev/null", f"http://{a}:{NGINX}/index.html?plain=1")

    # a client that dies in the middle of keep-alive, then nginx and curl carry on
    t["abrupt"] = py_tls_client(pair, NGINX, "abrupt", *ABRUPT_PATHS)
    time.sleep(0.2)  # hdrlog drains every 50 ms: let it see the exit's close
    t["alive_after_abrupt"] = {"hdrlog": default.proc.poll() is None, "hdrlog --no-tls": notls.proc.poll() is None,
                               "nginx": mix.nginx.poll() is None}
    t["after_abrupt"] = curl(pair, *tls_args(pair, NGINX), "-o", "/dev/null",
                             f"https://{TLS_NAME}:{NGINX}/index.html?after=abrupt")


def _stop(mix: Mix, runs: dict[str, HdrlogRun]) -> None:
    """SIGINT to every run at once; their exit codes and stderr are kept for the tests."""
    for run in runs.values():
        if run.proc.poll() is None:
            run.proc.send_signal(signal.SIGINT)
    for name, run in runs.items():
        try:
            mix.exit_codes[name] = run.wait(timeout=60)
        except AssertionError:  # killed after 60 s
            mix.exit_codes[name] = None
        mix.stderr[name] = run.stderr_lines


@pytest.fixture(scope="module")
def mix(tmp_path_factory) -> Mix:
    """One namespace pair; nginx (TLS), the Python ssl server and two read-only servers; two hdrlog
    runs (default, --no-tls) attached, then a second nginx started, then every scenario once."""
    require_bpf()
    require_tool("curl")
    tmp_path = tmp_path_factory.mktemp("tls")
    www = tmp_path / "www"
    _make_www(www)
    cert = self_signed_certificate(tmp_path)
    pair = NetnsPair.create()
    try:
        with contextlib.ExitStack() as stack:
            nginx = stack.enter_context(nginx_running(tmp_path, pair, {NGINX: nginx_tls_server(pair, NGINX, www, cert)}))
            mix = Mix(pair, nginx)
            mix.py_server = stack.enter_context(python_tls_server(tmp_path, pair, PY_TLS, www, cert))
            stack.enter_context(python_server(tmp_path, pair, "discard", GARBAGE))
            stack.enter_context(python_server(tmp_path, pair, "discard", HANG))
            base = ("--l7-only", "--port", WATCHED)
            names = ("default", "notls", "per_process")
            runs = start_runs(tmp_path, base, (*base, "--no-tls"), (*base, "--comm", "nginx"))
            stack.callback(kill_runs, runs)
            by_name = dict(zip(names, runs))
            _traffic(mix, stack, tmp_path, www, cert, *runs)
            _stop(mix, by_name)
            for name, run in by_name.items():
                mix.raw[name] = run.output.read_bytes() if run.output.exists() else b""
                mix.records[name] = [json.loads(line) for line in mix.raw[name].decode().splitlines() if line]
        yield mix
    finally:
        pair.destroy()


# --- checks ----------------------------------------------------------------------------------------


def conn_records(records: list[dict], community_id: str, rtype: str) -> dict[str, list[dict]]:
    """A connection's records of one type by observer.role."""
    mine = [r for r in of_conn(records, community_id) if r["type"] == rtype]
    return {role: [r for r in mine if r["observer.role"] == role] for role in ("client", "server")}


def one_per_role(records: list[dict], community_id: str, rtype: str) -> dict[str, dict]:
    roles = conn_records(records, community_id, rtype)
    assert {role: len(v) for role, v in roles.items()} == {"client": 1, "server": 1}, (
        f"expected one {rtype} record per role for {community_id}, got {brief(of_conn(records, community_id))}")
    return {role: v[0] for role, v in roles.items()}


def brief(records: list[dict]) -> list[tuple]:
    """(type, role, process, path or SNI) of each record: enough to see what is missing."""
    return [(r["type"], r.get("observer.role"), r.get("process.executable.name"),
             r.get("url.path", r.get("tls.client.server_name"))) for r in records]


def check_tls_record(r: dict, pair: NetnsPair, port: int, server_port: int, *, version: str,
                     cipher: str, next_protocol: str | None) -> None:
    """The connection and the ServerHello's choices, as the client saw them."""
    assert r["client.address"] == pair.b_ip and r["client.port"] == port, r
    assert r["server.address"] == pair.a_ip and r["server.port"] == server_port, r
    assert r["network.community_id"] == cid(pair.b_ip, pair.a_ip, port, server_port), r
    assert (r["network.type"], r["network.transport"]) == ("ipv4", "tcp"), r
    assert r.get("tls.client.server_name") == TLS_NAME, r
    assert r["tls.established"] is True, r
    assert "tls.truncated" not in r, r
    assert r["tls.version_protocol"] == "tls", r
    assert r.get("tls.version") == version, r
    assert r.get("tls.cipher") == cipher, r
    assert r.get("tls.next_protocol") == next_protocol, r
    assert HEX32.fullmatch(r["tls.client.ja3"]), r
    assert HEX32.fullmatch(r["tls.server.ja3s"]), r


def check_curl_hello(r: dict, ct: CurlTls, max_version: str) -> None:
    """curl's ClientHello with OpenSSL's defaults for that highest version."""
    suites = openssl_offer(max_version)
    offered = [iana for _, iana, _ in suites] + [SCSV]
    assert r["tls.client.alpn"] == ct.alpn_offered == ["h2", "http/1.1"], r
    assert r["tls.client.supported_ciphers"] == offered, r
    if max_version == "1.3":
        assert r["tls.client.supported_versions"] == ["1.3"], r  # --tlsv1.3: nothing older
    else:
        # OpenSSL sends no supported_versions extension when it cannot offer 1.3
        assert "tls.client.supported_versions" not in r, r
    b = ja4_b([code for code, _, _ in suites] + [0x00FF])
    v = max_version.replace(".", "")
    assert re.fullmatch(rf"t{v}d{len(offered):02d}\d\dh2_{b}_[0-9a-f]{{12}}", r["tls.client.ja4"]), r


def check_same_hellos(client: dict, server: dict) -> None:
    """Both sides saw the same hellos, so every hello field is the same."""
    hello = [k for k in set(client) | set(server) if k.startswith("tls.")]
    assert {k: client.get(k) for k in hello} == {k: server.get(k) for k in hello}


def check_http_tls(r: dict, *, version: str, cipher: str, next_protocol: str | None) -> None:
    """An http record's TLS fields: what its connection's handshake said (absent: None)."""
    want = {"tls": True, "tls.client.server_name": TLS_NAME, "tls.version": version, "tls.cipher": cipher,
            "tls.next_protocol": next_protocol}
    got = {k: r.get(k) for k in want}
    assert got == want, f"TLS fields of the {r['observer.role']} ({r['process.executable.name']}) http record: {got}"


def without_enrichment(r: dict) -> dict:
    return {k: v for k, v in r.items() if k not in _ENRICHED}


# --- 1. curl and nginx -----------------------------------------------------------------------------


@pytest.mark.parametrize("scenario,max_version", [("tls13", "1.3"), ("tls12", "1.2")])
def test_curl_nginx(mix, scenario, max_version):
    """curl to nginx over TLS (1.3, then 1.2 at most) gives an http record per role (curl's, nginx's)
    with tls true, the request and status, the SNI, the version and cipher curl negotiated and the
    secrets redacted as for plaintext, and a tls record per role with curl's ClientHello (SNI, ALPN,
    versions, OpenSSL's default suites, JA3, JA4) and nginx's choices, all under one Community ID."""
    pair, c = mix.pair, mix.traffic[scenario]
    assert c.transfers[0].status == 200 and c.transfers[0].size_download == len(INDEX), c
    if scenario == "tls13":
        assert c.returncode == 28, c  # the second transfer, to the server that never answers
    ct = curl_tls(c)
    assert ct.version == max_version
    port = c.transfers[0].local_port
    conn = cid(pair.b_ip, pair.a_ip, port, NGINX)
    next_protocol = ct.alpn_accepted if max_version == "1.2" else None  # 1.3 encrypts the server's ALPN
    if max_version == "1.2":
        assert next_protocol == "http/1.1"

    http = one_per_role(mix.records["default"], conn, "http")
    check_process(http["client"], c.pid, "curl", "client")
    check_process(http["server"], mix.nginx.pid, "nginx", "server")
    for role, r in http.items():
        assert r["http.request.method"] == "GET", r
        assert r["url.path"] == "/index.html", r
        assert r["url.query"] == "token=[REDACTED]&x=1", r
        assert r["http.response.status_code"] == 200, r
        assert r["network.protocol.version"] == "1.1", r
        assert (r["server.address"], r["server.port"]) == (TLS_NAME, NGINX), r
        assert (r["client.address"], r["client.port"]) == (pair.b_ip, port), r
        assert r["user_agent.original"] == f"curl/{curl_version()}", r
        assert r["http.request.header.host"] == [f"{TLS_NAME}:{NGINX}"], r
        assert r["http.request.header.authorization"] == ["Bearer [REDACTED]"], r
        assert r["http.request.body.size"] == 0 and r["http.response.body.size"] == len(INDEX), r
        assert r["http.response.header.content-length"] == [str(len(INDEX))], r
        assert "http.request.truncated" not in r and "http.response.truncated" not in r, r
        check_timing(r)
        check_http_tls(r, version=max_version, cipher=ct.cipher, next_protocol=next_protocol)

    tls = one_per_role(mix.records["default"], conn, "tls")
    check_process(tls["client"], c.pid, "curl", "client")
    check_process(tls["server"], mix.nginx.pid, "nginx", "server")
    for r in tls.values():
        check_tls_record(r, pair, port, NGINX, version=max_version, cipher=ct.cipher, next_protocol=next_protocol)
        check_curl_hello(r, ct, max_version)
    check_same_hellos(tls["client"], tls["server"])

    # redaction, as for plaintext: not one secret in the output's bytes, in either run
    for name, raw in mix.raw.items():
        assert SECRET1.encode() not in raw and SECRET2.encode() not in raw, name
    assert b'"Bearer [REDACTED]"' in mix.raw["default"]
    if scenario == "tls13":
        # curl was still there when hdrlog asked /proc: its command line, redacted
        cmd = http["client"]["process.command_line"]
        assert "Authorization: Bearer [REDACTED]" in cmd and "token=[REDACTED]&x=1" in cmd, cmd


# --- 2. Python's ssl module on both sides ----------------------------------------------------------


def test_python_ssl_client_and_server(mix):
    """A Python http.client HTTPSConnection to an ssl-wrapped http.server (both through
    SSL_read_ex/SSL_write_ex) gives an http record per role with tls true, the request, status
    and sizes, and the SNI, version and cipher Python's ssl reported; and a tls record per role,
    the server's naming the thread that made the handshake's syscalls."""
    pair, p = mix.pair, mix.traffic["python"]
    assert p.responses == [(200, len(INDEX))]
    conn = cid(pair.b_ip, pair.a_ip, p.port, PY_TLS)
    http = one_per_role(mix.records["default"], conn, "http")
    check_process(http["client"], p.pid, "python3", "client")
    check_process(http["server"], mix.py_server.pid, "python3", "server")
    for r in http.values():
        assert r["http.request.method"] == "GET", r
        assert r["url.path"] == "/index.html" and r["url.query"] == "lang=py", r
        assert r["http.response.status_code"] == 200, r
        assert r["network.protocol.version"] == "1.1", r
        assert (r["server.address"], r["server.port"]) == (TLS_NAME, PY_TLS), r
        assert (r["client.address"], r["client.port"]) == (pair.b_ip, p.port), r
        assert r["user_agent.original"] == "tls-test/1.0", r
        assert r["http.request.header.host"] == [f"{TLS_NAME}:{PY_TLS}"], r
        assert r["http.response.header.content-length"] == [str(len(INDEX))], r
        assert r["http.request.body.size"] == 0 and r["http.response.body.size"] == len(INDEX), r
        assert "http.request.truncated" not in r and "http.response.truncated" not in r, r
        check_timing(r)
        check_http_tls(r, version=p.version, cipher=iana_name(p.cipher), next_protocol=None)

    tls = one_per_role(mix.records["default"], conn, "tls")
    for r in tls.values():
        check_tls_record(r, pair, p.port, PY_TLS, version=p.version, cipher=iana_name(p.cipher), next_protocol=None)
        assert "tls.client.alpn" not in r, r  # the client offered none
    check_same_hellos(tls["client"], tls["server"])
    check_process(tls["client"], p.pid, "python3", "client")
    check_process(tls["server"], mix.py_server.pid, "python3", "server")
    # the server's main thread accepts and handshakes (SSLSocket.accept), then hands the socket
    # to a new thread: the hellos crossed the main thread's syscalls, the request a handler's
    assert tls["server"]["process.thread.id"] == mix.py_server.pid, tls["server"]
    assert http["server"]["process.thread.id"] != mix.py_server.pid, http["server"]


# --- 3. keep-alive ---------------------------------------------------------------------------------


def test_keep_alive_over_tls(mix):
    """20 requests curl sends on one TLS connection give exactly 20 http records per role, in order,
    each with its path, body size and tls true, and one tls record per role for the connection."""
    pair, c = mix.pair, mix.traffic["keepalive"]
    assert len(c.transfers) == KEEPALIVE_N
    assert [t.new_connections for t in c.transfers] == [1] + [0] * (KEEPALIVE_N - 1)
    port = c.transfers[0].local_port
    assert {t.local_port for t in c.transfers} == {port}
    conn = cid(pair.b_ip, pair.a_ip, port, NGINX)
    roles = conn_records(mix.records["default"], conn, "http")
    assert {role: len(v) for role, v in roles.items()} == {"client": KEEPALIVE_N, "server": KEEPALIVE_N}, roles
    for role, recs in roles.items():
        assert [r["url.path"] for r in recs] == [f"/k/{i}" for i in range(1, KEEPALIVE_N + 1)], role
        assert [r["http.response.body.size"] for r in recs] == [len(f"{i}\n") for i in range(1, KEEPALIVE_N + 1)]
        assert {r["http.response.status_code"] for r in recs} == {200}
        assert {r["process.pid"] for r in recs} == {c.pid if role == "client" else mix.nginx.pid}
        assert all(r["tls"] is True for r in recs)
        assert not any("http.request.truncated" in r or "http.response.truncated" in r for r in recs)
    tls = one_per_role(mix.records["default"], conn, "tls")
    for r in tls.values():
        assert r["tls.version"] == "1.3" and r["tls.established"] is True, r


# --- 4. a TLS server started after hdrlog ----------------------------------------------------------


def test_server_started_after_hdrlog(mix):
    """nginx started after hdrlog had attached is covered at once: curl's request to it is written
    as an http record per role (tls true, the pid of nginx's worker) while hdrlog runs, and a tls record per role."""
    pair, c = mix.pair, mix.traffic["late"]
    assert c.only.status == 200
    ct = curl_tls(c)
    conn = cid(pair.b_ip, pair.a_ip, c.only.local_port, LATE)
    assert mix.traffic["late_live"], "no http record of both roles within 10 s"
    http = one_per_role(mix.records["default"], conn, "http")
    check_process(http["client"], c.pid, "curl", "client")
    check_process(http["server"], mix.traffic["nginx_workers"][0], "nginx", "server")
    for r in http.values():
        assert (r["url.path"], r["url.query"], r["http.response.status_code"]) == ("/index.html", "late=1", 200), r
        check_http_tls(r, version="1.3", cipher=ct.cipher, next_protocol=None)
    tls = one_per_role(mix.records["default"], conn, "tls")
    check_process(tls["server"], mix.traffic["nginx_workers"][0], "nginx", "server")
    for r in tls.values():
        check_tls_record(r, pair, c.only.local_port, LATE, version="1.3", cipher=ct.cipher, next_protocol=None)


def test_process_filter_probes_only_its_processes(mix):
    """With --comm nginx OpenSSL is probed in nginx's processes alone (the nginx running at start,
    and the one started later, through its exec and its worker's fork; not curl or Python): the
    run writes exactly the default run's nginx records."""
    assert mix.exit_codes["per_process"] == 0, mix.stderr["per_process"]
    assert mix.traffic["late_probed"], "the later nginx's worker was not probed within 10 s"
    assert mix.traffic["late_live_per_process"], "no http record of the later nginx within 10 s"
    def seen(r: dict) -> str:  # (each run's programs take their own timestamps)
        return json.dumps({k: v for k, v in without_enrichment(r).items() if k not in _TIMES}, sort_keys=True)

    want = sorted(seen(r) for r in mix.records["default"] if r.get("process.executable.name") == "nginx")
    got = sorted(seen(r) for r in mix.records["per_process"])
    assert got == want
    assert any(r["type"] == "http" and r.get("tls") for r in mix.records["per_process"])
    probed = {int(pid) for line in mix.stderr["per_process"] for pid in re.findall(r"TLS: probing .* in pid (\d+) ", line)}
    nginx = {mix.nginx.pid, mix.nginx_late.pid, *mix.traffic["nginx_workers"]}
    assert probed == nginx, (probed, nginx)


# --- 5. --no-tls -----------------------------------------------------------------------------------


def test_no_tls(mix):
    """With --no-tls the TLS connections give the same tls records as with uprobes (the hellos come
    from syscalls) and no http record at all; hdrlog probes no library."""
    # (process.thread.id is left out of the comparison: which thread handshook is checked in
    # test_python_ssl_client_and_server)
    pair, t = mix.pair, mix.traffic
    notls, default = mix.records["notls"], mix.records["default"]
    assert not any("probing" in ln for ln in mix.stderr["notls"]), mix.stderr["notls"]
    conns = {
        "tls13": cid(pair.b_ip, pair.a_ip, t["tls13"].transfers[0].local_port, NGINX),
        "tls12": cid(pair.b_ip, pair.a_ip, t["tls12"].only.local_port, NGINX),
        "keepalive": cid(pair.b_ip, pair.a_ip, t["keepalive"].transfers[0].local_port, NGINX),
        "python": cid(pair.b_ip, pair.a_ip, t["python"].port, PY_TLS),
    }
    for name, conn in conns.items():
        assert conn_records(notls, conn, "http") == {"client": [], "server": []}, name
        got = one_per_role(notls, conn, "tls")
        want = one_per_role(default, conn, "tls")
        for role in ("client", "server"):
            got_r, want_r = (without_enrichment(x[role]) for x in (got, want))
            got_r.pop("process.thread.id"), want_r.pop("process.thread.id")
            assert got_r == want_r, (name, role)
    assert not any(r.get("tls") for r in notls), "an http record with tls true"


# --- 6. bytes that are no TLS ------------------------------------------------------------------------


def test_no_tls_bytes_on_tls_ports(mix):
    """Garbage (noise, a one-byte ClientHello, a record of junk) sent to a TLS-style port gives no
    record of any kind, plaintext HTTP to nginx's TLS port is logged as plaintext (status 400, no
    tls field, no tls record), and both runs exit 0 with their summary line on SIGINT."""
    pair, t = mix.pair, mix.traffic
    for name in ("default", "notls"):
        assert mix.exit_codes[name] == 0, (name, mix.exit_codes[name], mix.stderr[name])
        summary = next((ln for ln in reversed(mix.stderr[name])
                        if ln.startswith("hdrlog: ") and "records written" in ln), "")
        assert f"; {len(mix.records[name])} records written" in summary, (name, mix.stderr[name])
        assert "undecodable" not in summary, summary
        assert re.search(r"not_l7 \d+", summary), summary
        assert not any("Traceback" in ln for ln in mix.stderr[name]), mix.stderr[name]
    ports = {name: int(port) for name, port in (line.split() for line in t["garbage_out"].splitlines())}
    assert set(ports) == {"noise", "bad_hello", "junk_record"}
    for name, port in ports.items():
        for run in ("default", "notls"):
            assert of_conn(mix.records[run], cid(pair.b_ip, pair.a_ip, port, GARBAGE)) == [], (name, run)

    c = t["plain"]
    assert c.only.status == 400
    conn = cid(pair.b_ip, pair.a_ip, c.only.local_port, NGINX)
    for run in ("default", "notls"):
        assert conn_records(mix.records[run], conn, "tls") == {"client": [], "server": []}, run
        http = one_per_role(mix.records[run], conn, "http")
        check_process(http["client"], c.pid, "curl", "client")
        check_process(http["server"], mix.nginx.pid, "nginx", "server")
        for r in http.values():
            assert (r["http.request.method"], r["url.path"], r["url.query"]) == ("GET", "/index.html", "plain=1"), r
            assert r["http.response.status_code"] == 400, r
            assert not any(k == "tls" or k.startswith("tls.") for k in r), r


# --- 7. a client that exits while probed ----------------------------------------------------------


def test_client_exits_mid_keep_alive(mix):
    """A Python TLS client that ends with os._exit after three exchanges, its fourth request sent,
    leaves hdrlog and nginx running: the three exchanges are logged per role in order, a record of
    the fourth (if any) claims no response the client never read, and the next curl and nginx's
    own exit succeed."""
    pair, p = mix.pair, mix.traffic["abrupt"]
    assert p.responses == [(200, 2), (200, 2), (200, 2)]
    assert mix.traffic["alive_after_abrupt"] == {"hdrlog": True, "hdrlog --no-tls": True, "nginx": True}
    conn = cid(pair.b_ip, pair.a_ip, p.port, NGINX)
    roles = conn_records(mix.records["default"], conn, "http")
    for role, recs in roles.items():
        assert [(r["url.path"], r.get("http.response.status_code")) for r in recs[:3]] == [
            ("/k/1", 200), ("/k/2", 200), ("/k/3", 200)], (role, recs)
        assert all(r["tls"] is True for r in recs), recs
        assert {r["process.pid"] for r in recs} == {p.pid if role == "client" else mix.nginx.pid}
        fourth = recs[3:]
        assert len(fourth) <= 1 and all(r["url.path"] == "/k/4" for r in fourth), (role, recs)
        if role == "client":
            assert not any("http.response.status_code" in r for r in fourth), fourth
    assert len(roles["client"]) >= 3 and len(roles["server"]) >= 3
    after = mix.traffic["after_abrupt"]
    assert after.returncode == 0 and after.only.status == 200
    http = one_per_role(mix.records["default"], cid(pair.b_ip, pair.a_ip, after.only.local_port, NGINX), "http")
    assert all(r["url.query"] == "after=abrupt" and r["tls"] is True for r in http.values())
    assert mix.nginx.returncode == 0 and mix.nginx_late.returncode == 0, (mix.nginx.returncode,
                                                                          mix.nginx_late.returncode)


# --- 8. doctor -------------------------------------------------------------------------------------


def test_doctor_lists_system_libssl(bpf_required):
    """`hdrlog doctor` lists the system's libssl.so.3 (the file ldconfig knows), with its six
    probed functions, on its OpenSSL line."""
    ldconfig = subprocess.run(["ldconfig", "-p"], check=True, capture_output=True, text=True, timeout=30).stdout
    system = [line.split("=>")[1].strip() for line in ldconfig.splitlines()
              if line.strip().startswith("libssl.so.3 ") and "x86-64" in line]
    assert system, ldconfig
    proc = subprocess.run(hdrlog_cmd("doctor"), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [ln for ln in proc.stdout.splitlines() if re.match(r"\S+\s+OpenSSL: ", ln)]
    assert len(lines) == 1, proc.stdout
    assert lines[0].startswith("ok "), lines[0]
    listed = re.findall(r"(/\S+) \((shared|static): ([^)]*)\)", lines[0])
    assert any(os.path.samefile(path, system[0]) and kind == "shared"
               and funcs == "SSL_read, SSL_write, SSL_read_ex, SSL_write_ex, SSL_set_fd, SSL_free"
               for path, kind, funcs in listed), (lines[0], system)
