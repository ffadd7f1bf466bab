"""hdrlog's HTTP/1.x records from socket syscalls, on real traffic between two namespaces.

Servers (nginx, python3's http.server, small Python servers) run in namespace a, clients
(curl, Python) in namespace b; hdrlog runs in the host namespace with --l7-only (syscall
tracepoints see every namespace) and --port, so only the test's connections are captured.
Each record is checked against what was sent and against what the client and the server
saw: their pids, the client's port, sizes, status codes.

hdrlog takes seconds to load and to detach, so several hdrlog runs with different flags
watch the same traffic at once, and the tests on plain traffic share one set of runs (the
module-scoped `mix`); each test finds its exchanges by the connection's Community ID.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import communityid
import pytest
import requests

from tests.conftest import require_bpf
from tests.hdrlog_proc import HdrlogRun, start_hdrlog
from tests.netns import NetnsPair
from tests.servers import (
    CHUNKED,
    CurlRun,
    cases_client,
    curl,
    curl_cmd,
    curl_version,
    http_server_running,
    nginx_running,
    nginx_server,
    parse_curl,
    py_client,
    python_server,
    wait_until,
)

# --- hdrlog runs ------------------------------------------------------------------------------


def summary_line(run: HdrlogRun) -> str:
    """The summary hdrlog prints to stderr on exit ("hdrlog: L7 ...; N records written")."""
    lines = [ln for ln in run.stderr_lines if ln.startswith("hdrlog: ") and "records written" in ln]
    return lines[-1] if lines else ""


def start_runs(tmp_path: Path, *arg_lists: tuple[str, ...]) -> list[HdrlogRun]:
    """hdrlog runs (host namespace), one per argument list, started at once and all attached."""
    runs = []
    try:
        for args in arg_lists:
            runs.append(start_hdrlog(tmp_path, *args, ready=False))
        for run in runs:
            run.wait_ready(timeout=90)  # they load their BPF objects side by side
    except BaseException:
        kill_runs(runs)
        raise
    return runs


def kill_runs(runs: list[HdrlogRun]) -> None:
    for run in runs:
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait(timeout=10)


def stop_runs(runs: list[HdrlogRun]) -> None:
    """SIGINT to every run at once (detaching takes a while), then each must exit 0 with its summary."""
    try:
        for run in runs:
            if run.proc.poll() is None:
                run.proc.send_signal(signal.SIGINT)
        for run in runs:
            rc = run.wait(timeout=60)
            assert rc == 0, f"hdrlog exited {rc}: {run.stderr_lines}"
            assert summary_line(run), f"no summary line: {run.stderr_lines}"
    finally:
        kill_runs(runs)


@contextlib.contextmanager
def hdrlog_runs(tmp_path: Path, *arg_lists: tuple[str, ...]):
    """Runs attached before the body; whatever happens, none is left running."""
    runs = start_runs(tmp_path, *arg_lists)
    try:
        yield runs
    finally:
        kill_runs(runs)


def file_records(run: HdrlogRun) -> list[dict]:
    """The run's records (written to its --output file); the summary's count must match."""
    records = run.records()
    assert f"; {len(records)} records written" in summary_line(run), (summary_line(run), len(records))
    assert "undecodable" not in summary_line(run)
    return records


def http(records: list[dict]) -> list[dict]:
    assert all(r["type"] == "http" for r in records), {r["type"] for r in records}
    return records


def cut_copies(summary: str) -> int:
    m = re.search(r"(\d+) copies cut to --capture-bytes", summary)
    return int(m.group(1)) if m else 0


# --- what to expect ----------------------------------------------------------------------------

_CID = communityid.CommunityID()


def cid(client_ip: str, server_ip: str, client_port: int, server_port: int) -> str:
    """Community ID v1 of a TCP connection."""
    return _CID.calc(communityid.FlowTuple.make_tcp(client_ip, server_ip, client_port, server_port))


def of_conn(records: list[dict], community_id: str) -> list[dict]:
    return [r for r in records if r.get("network.community_id") == community_id]


def by_role(records: list[dict], community_id: str, n: int = 1) -> dict[str, list[dict]]:
    """A connection's records by observer.role; n of each role, or the assertion says what came."""
    mine = of_conn(records, community_id)
    roles = {role: [r for r in mine if r["observer.role"] == role] for role in ("client", "server")}
    assert len(mine) == 2 * n and all(len(v) == n for v in roles.values()), (
        f"expected {n} client and {n} server records for {community_id}, got {json.dumps(mine, indent=1)}"
    )
    return roles


def both(records: list[dict], community_id: str) -> tuple[dict, dict]:
    """A connection's one exchange: (client record, server record)."""
    roles = by_role(records, community_id)
    return roles["client"][0], roles["server"][0]


def header_fields(r: dict, direction: str) -> dict[str, list[str]]:
    prefix = f"http.{direction}.header."
    return {k[len(prefix):]: v for k, v in r.items() if k.startswith(prefix)}


def check_process(r: dict, pid: int, name: str, role: str) -> None:
    assert r["observer.role"] == role, r
    assert r["process.pid"] == pid, r
    assert r["process.executable.name"] == name, r


def check_timing(r: dict) -> None:
    assert r["event.duration"] > 0, r
    assert 0 < r["http.response.time_to_headers"] <= r["event.duration"], r


# --- the shared traffic mix -----------------------------------------------------------------------

STATIC = 8081  # nginx, Debian's default style: sendfile on, tcp_nopush on, gzip on
NOSENDFILE = 8082  # nginx, sendfile off: bodies through writev
PYHTTP = 8090  # python3 -m http.server
APP = 8091  # the Python app server: POST -> 201, chunked GETs
MIX_PORTS = f"{STATIC},{NOSENDFILE},{PYHTTP},{APP}"
PAGE_SIZE = 100_000  # static/page.bin: many times the 4096 bytes copied per syscall
PAGE_MTIME = 1_700_000_000  # its Last-Modified: Tue, 14 Nov 2023 22:13:20 GMT
KEEPALIVE_N = 100
PIPELINED = [("/a", 200, b"A" * 10), ("/missing", 404, None), ("/b", 200, b"B" * 20)]
POST_BODY_FILLER = 6000  # the JSON body spans more than one segment and more than one copy


@dataclass
class Mix:
    pair: NetnsPair
    nginx_pid: int
    http_server_pid: int
    app_pid: int
    records: dict[str, list[dict]] = field(default_factory=dict)  # run name -> its records
    traffic: dict[str, object] = field(default_factory=dict)  # scenario -> what the client saw


def _make_www(root: Path) -> None:
    (root / "static").mkdir(parents=True)
    page = root / "static" / "page.bin"
    page.write_bytes(bytes((i * 7) % 251 for i in range(PAGE_SIZE)))
    os.utime(page, (PAGE_MTIME, PAGE_MTIME))
    (root / "index.html").write_text("<p>index</p>\n")
    (root / "k").mkdir()
    for i in range(1, KEEPALIVE_N + 1):
        (root / "k" / str(i)).write_text(f"{i}\n")
    for path, _status, body in PIPELINED:
        if body is not None:
            (root / path.lstrip("/")).write_bytes(body)


PIPELINE_CLIENT = r"""
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
paths = sys.argv[3:]
reqs = b"".join(b"GET %s HTTP/1.1\r\nHost: pipeline.test\r\n%s\r\n"
                % (p.encode(), b"Connection: close\r\n" if i == len(paths) - 1 else b"")
                for i, p in enumerate(paths))
s = socket.create_connection((host, port))
s.sendall(reqs)  # all requests in one write, before any response
data = b""
while chunk := s.recv(65536):
    data += chunk
print(s.getsockname()[1], data.count(b"HTTP/1.1 "))
"""

POST_CLIENT = r"""
import sys, requests
url = sys.argv[1]
r = requests.post(url, json={"name": "widget", "tags": ["a", "b"], "filler": "z" * int(sys.argv[2])})
print(r.status_code, len(r.request.body), r.request.headers["Content-Type"], len(r.content), r.text)
"""


def _mix_traffic(mix: Mix, default: HdrlogRun) -> None:
    pair, t = mix.pair, mix.traffic
    a = pair.a_ip
    t["static"] = curl(pair, "-o", "/dev/null", "-H", "Host: static.example",
                       f"http://{a}:{STATIC}/static/page.bin?v=1&lang=en")
    t["nosendfile"] = curl(pair, "-o", "/dev/null", f"http://{a}:{NOSENDFILE}/static/page.bin?v=2")
    t["head"] = curl(pair, "-I", "-o", "/dev/null", f"http://{a}:{PYHTTP}/static/page.bin")
    t["not_modified"] = curl(pair, "-o", "/dev/null", "-H",
                             f"If-Modified-Since: {email.utils.formatdate(PAGE_MTIME, usegmt=True)}",
                             f"http://{a}:{STATIC}/static/page.bin")
    # requests (urllib3) writes the head and the body in separate syscalls
    t["post_pid"], t["post_out"] = py_client(pair, POST_CLIENT, f"http://{a}:{APP}/items?kind=json",
                                             str(POST_BODY_FILLER), python=sys.executable)
    urls = []
    for i in range(1, KEEPALIVE_N + 1):
        urls += ["-o", "/dev/null", f"http://{a}:{NOSENDFILE}/k/{i}"]
    t["keepalive"] = curl(pair, *urls, timeout=60)
    t["pipelined_pid"], t["pipelined_out"] = py_client(pair, PIPELINE_CLIENT, a, str(NOSENDFILE),
                                                       *(path for path, _, _ in PIPELINED))
    t["chunked"] = curl(pair, "-o", "/dev/null", f"http://{a}:{APP}/chunked")
    t["chunked_big"] = curl(pair, "-o", "/dev/null", f"http://{a}:{APP}/chunked-big")
    t["ipv6"] = curl(pair, "-g", "-o", "/dev/null", f"http://[{pair.a_ip6}]:{NOSENDFILE}/index.html")
    t["custom"] = curl(pair, "-o", "/dev/null", "-H", "X-Custom: custom-value",
                       f"http://{a}:{NOSENDFILE}/index.html")
    # a client that is gone before hdrlog reads a byte of it: the default run is stopped
    # (its events wait in the ring buffer) until curl has exited and been reaped
    default.proc.send_signal(signal.SIGSTOP)
    try:
        t["exited"] = curl(pair, "-o", "/dev/null", f"http://{a}:{STATIC}/index.html?exited=1")
        t["exited_gone"] = not os.path.exists(f"/proc/{t['exited'].pid}")
    finally:
        default.proc.send_signal(signal.SIGCONT)


@pytest.fixture(scope="module")
def mix(tmp_path_factory) -> Mix:
    """One namespace pair, nginx (sendfile on and off), http.server and the app server, watched
    by three hdrlog runs (default headers, --headers all, --headers x-custom) while every
    scenario's client runs once."""
    require_bpf()
    tmp_path = tmp_path_factory.mktemp("mix")
    www = tmp_path / "www"
    _make_www(www)
    pair = NetnsPair.create()
    try:
        with contextlib.ExitStack() as stack:
            nginx = stack.enter_context(nginx_running(tmp_path, pair, {
                STATIC: nginx_server(pair, STATIC, www, "sendfile on; tcp_nopush on; gzip on;"),
                NOSENDFILE: nginx_server(pair, NOSENDFILE, www, "sendfile off;"),
            }))
            pyhttp = stack.enter_context(http_server_running(pair, www, PYHTTP))
            app = stack.enter_context(python_server(tmp_path, pair, "app", APP))
            mix = Mix(pair, nginx.pid, pyhttp.pid, app.pid)
            names = ("default", "all", "x-custom")
            base = ("--l7-only", "--port", MIX_PORTS)
            arg_lists = (base, (*base, "--headers", "all"), (*base, "--headers", "x-custom"))
            with hdrlog_runs(tmp_path, *arg_lists) as runs:
                _mix_traffic(mix, runs[0])
                stop_runs(runs)
            for name, run in zip(names, runs):
                mix.records[name] = http(file_records(run))
        yield mix
    finally:
        pair.destroy()


# --- tests on the mix ---------------------------------------------------------------------------


def check_static_exchange(mix: Mix, scenario: str, port: int, *, host: str, server_address: str,
                          query: str) -> None:
    pair, c = mix.pair, mix.traffic[scenario]
    assert isinstance(c, CurlRun) and c.only.status == 200 and c.only.size_download == PAGE_SIZE
    client, server = both(mix.records["default"], cid(pair.b_ip, pair.a_ip, c.only.local_port, port))
    check_process(client, c.pid, "curl", "client")
    check_process(server, mix.nginx_pid, "nginx", "server")
    for r in (client, server):
        assert r["http.request.method"] == "GET"
        assert r["url.path"] == "/static/page.bin"
        assert r["url.query"] == query
        assert r["http.response.status_code"] == 200
        assert r["server.address"] == server_address
        assert r["server.port"] == port
        assert r["client.address"] == pair.b_ip
        assert r["client.port"] == c.only.local_port
        assert r["network.protocol.version"] == "1.1"
        assert r["network.type"] == "ipv4"
        assert r["network.transport"] == "tcp"
        assert r["user_agent.original"] == f"curl/{curl_version()}"
        assert r["http.request.header.host"] == [host]
        assert r["http.response.header.content-length"] == [str(PAGE_SIZE)]
        assert r["http.response.header.content-type"] == ["application/octet-stream"]
        assert r["http.request.body.size"] == 0
        assert r["http.response.body.size"] == PAGE_SIZE
        assert "http.request.truncated" not in r and "http.response.truncated" not in r
        check_timing(r)
    assert server["process.executable.path"] == "/usr/sbin/nginx"


def test_nginx_sendfile_static_file(mix):
    """A curl GET of a static file from nginx with sendfile on yields one client record (curl)
    and one server record (nginx) with the request line, the Host-derived server address and
    port, curl's address and port, the file's size and both processes' real pids."""
    check_static_exchange(mix, "static", STATIC, host="static.example", server_address="static.example",
                          query="v=1&lang=en")


def test_nginx_without_sendfile(mix):
    """With sendfile off (the body goes out through writev) the same exchange is logged the same
    way, server.address and server.port coming from the Host header curl sent."""
    a = mix.pair.a_ip
    check_static_exchange(mix, "nosendfile", NOSENDFILE, host=f"{a}:{NOSENDFILE}", server_address=a, query="v=2")


def test_http_server_head(mix):
    """A HEAD request to python3's http.server is logged with status 200, the file's
    Content-Length and a response body size of 0, from curl and from python3."""
    pair, c = mix.pair, mix.traffic["head"]
    assert c.only.status == 200
    client, server = both(mix.records["default"], cid(pair.b_ip, pair.a_ip, c.only.local_port, PYHTTP))
    check_process(client, c.pid, "curl", "client")
    check_process(server, mix.http_server_pid, "python3", "server")
    for r in (client, server):
        assert r["http.request.method"] == "HEAD"
        assert r["url.path"] == "/static/page.bin"
        assert "url.query" not in r
        assert r["http.response.status_code"] == 200
        assert r["network.protocol.version"] == "1.1"  # curl's request; http.server answers 1.0
        assert r["http.response.header.content-length"] == [str(PAGE_SIZE)]
        assert r["http.response.body.size"] == 0
        assert r["http.request.body.size"] == 0
        assert r["client.port"] == c.only.local_port
        assert "http.response.truncated" not in r
        check_timing(r)


def test_not_modified(mix):
    """A conditional GET with the file's Last-Modified as If-Modified-Since gets a 304 from nginx,
    logged on both sides with a response body size of 0."""
    pair, c = mix.pair, mix.traffic["not_modified"]
    assert c.only.status == 304
    client, server = both(mix.records["default"], cid(pair.b_ip, pair.a_ip, c.only.local_port, STATIC))
    check_process(client, c.pid, "curl", "client")
    check_process(server, mix.nginx_pid, "nginx", "server")
    for r in (client, server):
        assert r["http.request.method"] == "GET"
        assert r["url.path"] == "/static/page.bin"
        assert r["http.response.status_code"] == 304
        assert r["http.response.body.size"] == 0
        assert "http.response.truncated" not in r
        check_timing(r)


def test_requests_post_json(mix):
    """A POST with a JSON body from Python requests (head and body in separate writes) to a
    server that reads the body is logged with the body's size, its Content-Type and status 201."""
    pair = mix.pair
    status, body_len, ctype, reply_len, reply = mix.traffic["post_out"].split(" ", 4)
    assert (status, ctype) == ("201", "application/json")
    body_len, reply = int(body_len), json.loads(reply)
    assert body_len > POST_BODY_FILLER and reply["received"] == body_len
    client, server = both(mix.records["default"], cid(pair.b_ip, pair.a_ip, reply["client_port"], APP))
    check_process(client, mix.traffic["post_pid"], Path(sys.executable).name[:15], "client")
    check_process(server, mix.app_pid, "python3", "server")
    for r in (client, server):
        assert r["url.path"] == "/items"
        assert r["url.query"] == "kind=json"
        assert r["http.request.body.size"] == body_len
        assert r["http.request.header.content-type"] == ["application/json"]
        assert r["http.request.header.content-length"] == [str(body_len)]
        assert r["user_agent.original"] == f"python-requests/{requests.__version__}"
        assert r["http.response.status_code"] == 201
        assert r["http.response.body.size"] == int(reply_len)
        assert "http.request.truncated" not in r and "http.response.truncated" not in r
        check_timing(r)


def test_keep_alive_hundred_requests(mix):
    """100 requests curl sends over one keep-alive connection give exactly 100 records per role,
    in order, each with its own path and body size and all with the same client port."""
    pair, c = mix.pair, mix.traffic["keepalive"]
    assert len(c.transfers) == KEEPALIVE_N
    assert [t.new_connections for t in c.transfers] == [1] + [0] * (KEEPALIVE_N - 1)
    port = c.transfers[0].local_port
    assert {t.local_port for t in c.transfers} == {port}
    roles = by_role(mix.records["default"], cid(pair.b_ip, pair.a_ip, port, NOSENDFILE), KEEPALIVE_N)
    for role, recs in roles.items():
        assert [r["url.path"] for r in recs] == [f"/k/{i}" for i in range(1, KEEPALIVE_N + 1)], role
        assert [r["http.response.body.size"] for r in recs] == [len(f"{i}\n") for i in range(1, KEEPALIVE_N + 1)]
        assert {r["http.response.status_code"] for r in recs} == {200}
        assert {r["client.port"] for r in recs} == {port}
        assert {r["process.pid"] for r in recs} == {c.pid if role == "client" else mix.nginx_pid}
        assert not any("http.request.truncated" in r or "http.response.truncated" in r for r in recs)


def test_pipelined_requests(mix):
    """Three requests written in one syscall before any response are logged as three exchanges,
    each response paired with its own request (/a 200, /missing 404, /b 200)."""
    pair = mix.pair
    port, responses = map(int, mix.traffic["pipelined_out"].split())
    assert responses == len(PIPELINED)
    roles = by_role(mix.records["default"], cid(pair.b_ip, pair.a_ip, port, NOSENDFILE), len(PIPELINED))
    check_process(roles["client"][0], mix.traffic["pipelined_pid"], "python3", "client")
    for role, recs in roles.items():
        assert [(r["url.path"], r["http.response.status_code"]) for r in recs] == [(p, s) for p, s, _ in PIPELINED]
        for r, (_path, _status, body) in zip(recs, PIPELINED):
            assert r["http.response.body.size"] == int(r["http.response.header.content-length"][0])
            if body is not None:
                assert r["http.response.body.size"] == len(body)
            assert r["server.address"] == "pipeline.test"
            assert "http.request.truncated" not in r and "http.response.truncated" not in r


def test_chunked_response(mix):
    """A chunked response is logged with the sum of the chunk payloads as its body size, and
    its Transfer-Encoding header with --headers all (not in the default set)."""
    pair, c = mix.pair, mix.traffic["chunked"]
    payload = sum(len(x) for x in CHUNKED["/chunked"])
    assert c.only.status == 200 and c.only.size_download == payload
    conn = cid(pair.b_ip, pair.a_ip, c.only.local_port, APP)
    for run in ("default", "all"):
        client, server = both(mix.records[run], conn)
        check_process(client, c.pid, "curl", "client")
        check_process(server, mix.app_pid, "python3", "server")
        for r in (client, server):
            assert r["url.path"] == "/chunked"
            assert r["http.response.status_code"] == 200
            assert r["http.response.body.size"] == payload
            assert "http.response.truncated" not in r
            check_timing(r)
            if run == "all":
                assert r["http.response.header.transfer-encoding"] == ["chunked"]
            else:
                assert "http.response.header.transfer-encoding" not in r


def test_chunked_response_with_chunk_longer_than_the_copy(mix):
    """A chunk written in one syscall longer than --capture-bytes (the copy ends inside the chunk
    data, the uncopied rest is that data and its CRLF) still ends the server's record cleanly:
    body size = sum of the chunk payloads, not truncated."""
    pair, c = mix.pair, mix.traffic["chunked_big"]
    payload = sum(len(x) for x in CHUNKED["/chunked-big"])
    assert c.only.status == 200 and c.only.size_download == payload
    _client, server = both(mix.records["default"], cid(pair.b_ip, pair.a_ip, c.only.local_port, APP))
    # the server's writes are known (one per chunk); what curl's reads hold is up to the kernel
    assert server["url.path"] == "/chunked-big"
    assert server["http.response.status_code"] == 200
    assert server["http.response.body.size"] == payload, server
    assert "http.response.truncated" not in server, server
    check_timing(server)


def test_ipv6(mix):
    """curl -g to nginx's IPv6 address is logged with b's IPv6 address as client.address,
    a's (from the bracketed Host header) as server.address and network.type "ipv6"."""
    pair, c = mix.pair, mix.traffic["ipv6"]
    assert c.only.status == 200 and c.only.local_ip == pair.b_ip6
    client, server = both(mix.records["default"], cid(pair.b_ip6, pair.a_ip6, c.only.local_port, NOSENDFILE))
    check_process(client, c.pid, "curl", "client")
    check_process(server, mix.nginx_pid, "nginx", "server")
    for r in (client, server):
        assert r["client.address"] == pair.b_ip6
        assert r["client.port"] == c.only.local_port
        assert r["server.address"] == pair.a_ip6
        assert r["server.port"] == NOSENDFILE
        assert r["network.type"] == "ipv6"
        assert r["http.request.header.host"] == [f"[{pair.a_ip6}]:{NOSENDFILE}"]
        assert r["url.path"] == "/index.html"
        assert r["http.response.status_code"] == 200
        check_timing(r)


def test_header_selection(mix):
    """By default host, user-agent and accept are logged but not X-Custom; --headers all logs
    x-custom too; --headers x-custom logs x-custom and no other header."""
    pair, c = mix.pair, mix.traffic["custom"]
    conn = cid(pair.b_ip, pair.a_ip, c.only.local_port, NOSENDFILE)
    for r in both(mix.records["default"], conn):
        assert header_fields(r, "request") == {
            "host": [f"{pair.a_ip}:{NOSENDFILE}"], "user-agent": [f"curl/{curl_version()}"], "accept": ["*/*"],
        }
        assert set(header_fields(r, "response")) == {"server", "content-type", "content-length"}
    for r in both(mix.records["all"], conn):
        assert header_fields(r, "request") == {
            "host": [f"{pair.a_ip}:{NOSENDFILE}"], "user-agent": [f"curl/{curl_version()}"], "accept": ["*/*"],
            "x-custom": ["custom-value"],
        }
        assert {"server", "date", "content-type", "content-length", "last-modified", "connection", "etag",
                "accept-ranges"} == set(header_fields(r, "response"))
    for r in both(mix.records["x-custom"], conn):
        assert header_fields(r, "request") == {"x-custom": ["custom-value"]}
        assert header_fields(r, "response") == {}
        assert [k for k in r if ".header." in k] == ["http.request.header.x-custom"]


def test_exited_client_keeps_its_process_context(mix):
    """A curl that has exited before hdrlog reads any of its events still has its pid and name
    (captured in the kernel) in its record, and no command line (it was not there to ask)."""
    pair, c = mix.pair, mix.traffic["exited"]
    assert mix.traffic["exited_gone"], "curl was still there"
    client, server = both(mix.records["default"], cid(pair.b_ip, pair.a_ip, c.only.local_port, STATIC))
    check_process(client, c.pid, "curl", "client")
    assert "process.command_line" not in client and "process.executable.path" not in client
    assert client["url.query"] == "exited=1"
    check_process(server, mix.nginx_pid, "nginx", "server")
    assert server["process.command_line"].startswith("nginx -p ")


# --- tests with their own runs -------------------------------------------------------------------

WEB = 8093


@pytest.fixture
def www(tmp_path) -> Path:
    root = tmp_path / "www"
    root.mkdir()
    (root / "index.html").write_text("<p>index</p>\n")
    return root


def test_redaction(netns_pair, tmp_path, www):
    """Authorization, Cookie, X-Api-Key, a token query parameter and Set-Cookie are redacted
    everywhere in the output (file or stdout) keeping scheme, cookie names and other
    parameters; hash mode gives the same hash on both sides; --no-redact shows them all."""
    pair = netns_pair
    s = {i: f"S{i}secret{secrets.token_hex(6)}" for i in range(1, 6)}
    discard = 9009
    with contextlib.ExitStack() as stack:
        nginx = stack.enter_context(nginx_running(tmp_path, pair, {
            WEB: nginx_server(pair, WEB, www, f'add_header Set-Cookie "sid={s[5]}; Path=/";')}))
        stack.enter_context(python_server(tmp_path, pair, "discard", discard))
        base = ("--l7-only", "--port", str(WEB), "--headers", "all")
        mask, hashed, plain = stack.enter_context(hdrlog_runs(
            tmp_path, base, (*base, "--redact-mode", "hash", "--output", "-"), (*base, "--no-redact")))
        # the secrets are on curl's command line too; a second transfer to a server that never
        # answers keeps curl there while hdrlog reads its /proc entry
        cmd = curl_cmd(pair,
                       "-o", "/dev/null", "-H", f"Authorization: Bearer {s[1]}",
                       "-H", f"Cookie: sid={s[2]}; theme=dark", "-H", f"X-Api-Key: {s[3]}",
                       f"http://{pair.a_ip}:{WEB}/index.html?token={s[4]}&page=2",
                       "-o", "/dev/null", f"http://{pair.a_ip}:{discard}/", max_time=3)
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            wait_until("the client record", lambda: proc.poll() is not None or (
                mask.output.exists() and mask.output.read_bytes().count(b"\n") >= 2), 10)
            client_alive = proc.poll() is None
            out, err = proc.communicate(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=5)
        c = parse_curl(proc, out, err)
        stop_runs([mask, hashed, plain])
    assert client_alive, "curl left before hdrlog wrote its record"
    assert c.returncode == 28 and c.transfers[0].status == 200  # the second transfer timed out
    conn = cid(pair.b_ip, pair.a_ip, c.transfers[0].local_port, WEB)

    # mask (a file): the shape stays, the secrets go
    assert os.stat(mask.output).st_mode & 0o777 == 0o600
    masked = http(file_records(mask))
    client, server = both(masked, conn)
    check_process(client, c.pid, "curl", "client")
    check_process(server, nginx.pid, "nginx", "server")
    for r in (client, server):
        assert r["http.request.header.authorization"] == ["Bearer [REDACTED]"]
        assert r["http.request.header.cookie"] == ["sid=[REDACTED]; theme=[REDACTED]"]
        assert r["http.request.header.x-api-key"] == ["[REDACTED]"]
        assert r["url.query"] == "token=[REDACTED]&page=2"
        assert r["http.response.header.set-cookie"] == ["sid=[REDACTED]; Path=/"]

    # hash (stdout): equal secrets give equal hashes, in the client's and the server's record
    assert not hashed.output.exists()
    stdout = hashed.proc.stdout.read()
    hrecs = [json.loads(line) for line in stdout.decode().splitlines()]
    assert f"; {len(hrecs)} records written" in summary_line(hashed)
    hclient, hserver = both(hrecs, conn)
    h = r"hmac:[0-9a-f]{16}"
    patterns = {
        "http.request.header.authorization": [rf"Bearer {h}"],
        "http.request.header.cookie": [rf"sid={h}; theme={h}"],
        "http.request.header.x-api-key": [h],
        "url.query": rf"token={h}&page=2",
        "http.response.header.set-cookie": [rf"sid={h}; Path=/"],
    }
    for name, pattern in patterns.items():
        value = hclient[name]
        if isinstance(pattern, list):
            assert len(value) == 1 and re.fullmatch(pattern[0], value[0]), (name, value)
        else:
            assert re.fullmatch(pattern, value), (name, value)
        assert value == hserver[name], name
    sid, theme = hclient["http.request.header.cookie"][0].split("; ")
    assert sid.split("=")[1] != theme.split("=")[1]  # different secrets, different hashes

    # --no-redact: the same traffic with every secret in plain sight, so the checks below can see one
    plain_bytes = plain.output.read_bytes()
    assert [k for k, v in s.items() if v.encode() not in plain_bytes] == []
    pclient, _ = both(http(file_records(plain)), conn)
    assert pclient["http.request.header.authorization"] == [f"Bearer {s[1]}"]
    assert pclient["url.query"] == f"token={s[4]}&page=2"

    # not one secret anywhere in the redacted outputs' bytes
    leaks = []
    for where, raw, recs in (("file", mask.output.read_bytes(), masked), ("stdout", stdout, hrecs)):
        leaks += [f"{where}: S{k} in the {r['observer.role']} record's {name}" for k, v in s.items()
                  for r in recs for name, value in r.items() if v in json.dumps(value)]
        leaks += [f"{where}: S{k} in the bytes" for k, v in s.items() if v.encode() in raw]
    assert not leaks, "; ".join(leaks)


def _cgroup2_mount() -> str:
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        pre, _, post = line.partition(" - ")
        if post.split()[:1] == ["cgroup2"]:
            return pre.split()[4]
    pytest.skip("no cgroup2 file system mounted")


def _rmdir_when_empty(path: Path) -> None:
    deadline = time.monotonic() + 10
    while path.exists():
        try:
            path.rmdir()
        except OSError:  # EBUSY until the last process has left the cgroup
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


OTHER_CLIENT = """
import socket
s = socket.create_connection(({host!r}, {port}))
s.sendall(b"GET /index.html HTTP/1.1\\r\\nHost: other\\r\\nConnection: close\\r\\n\\r\\n")
while s.recv(65536):
    pass
print(s.getsockname()[1])
"""


def test_process_filters(netns_pair, tmp_path, www):
    """--comm curl keeps only curl's (client) records, --pid <nginx> only nginx's (server)
    records, --cgroup <dir> only those of the process in that cgroup, with the container id and
    runtime its docker-<id>.scope name gives."""
    pair = netns_pair
    top = Path(_cgroup2_mount()) / f"hdrlog-test-{secrets.token_hex(4)}"
    container = secrets.token_hex(32)
    scope = top / f"docker-{container}.scope"
    url = f"http://{pair.a_ip}:{WEB}/index.html"
    try:
        scope.mkdir(parents=True)
        cgroup_id = os.stat(scope).st_ino  # the cgroup v2 id is its directory's inode number
        with nginx_running(tmp_path, pair, {WEB: nginx_server(pair, WEB, www)}) as nginx:
            base = ("--l7-only", "--port", str(WEB))
            with hdrlog_runs(tmp_path, (*base, "--comm", "curl"), (*base, "--pid", str(nginx.pid)),
                             (*base, "--cgroup", str(scope))) as runs:
                # curl, moved into the container's cgroup before it execs
                c = curl(pair, "-o", "/dev/null", url,
                         prefix=["sh", "-c", 'echo $$ > "$0" && exec "$@"', str(scope / "cgroup.procs")])
                # another client, neither curl nor in that cgroup
                _, out = py_client(pair, OTHER_CLIENT.format(host=pair.a_ip, port=WEB))
                stop_runs(runs)
            by_comm, by_pid, by_cgroup = (http(file_records(run)) for run in runs)
    finally:
        for d in (scope, top):
            _rmdir_when_empty(d)
    curl_conn = cid(pair.b_ip, pair.a_ip, c.only.local_port, WEB)
    other_conn = cid(pair.b_ip, pair.a_ip, int(out), WEB)

    assert len(by_comm) == 1, by_comm
    check_process(by_comm[0], c.pid, "curl", "client")
    assert by_comm[0]["network.community_id"] == curl_conn

    assert sorted((r["network.community_id"], r["observer.role"]) for r in by_pid) == sorted(
        [(curl_conn, "server"), (other_conn, "server")]), by_pid
    for r in by_pid:
        check_process(r, nginx.pid, "nginx", "server")
        assert "container.id" not in r

    assert len(by_cgroup) == 1, by_cgroup
    r = by_cgroup[0]
    check_process(r, c.pid, "curl", "client")
    assert r["network.community_id"] == curl_conn
    assert r["hdrlog.cgroup_id"] == cgroup_id
    assert r["container.id"] == container
    assert r["container.runtime"] == "docker"
    assert r["http.response.status_code"] == 200


BAD_CLIENT = cases_client(r"""{
    "garbage": bytes(range(256)) * 64,
    "binary": b"GET \x00\xff\xfe\x01" + bytes(range(255, -1, -1)) * 16,
    "long_line": b"GET /long HTTP/1.1\r\nHost: bad\r\nX-Long: " + b"a" * (1 << 20) + b"\r\n\r\n",
    "many_headers": b"GET /many HTTP/1.1\r\nHost: bad\r\n"
                    + b"".join(b"X-H%d: v\r\n" % i for i in range(10_000)) + b"\r\n",
    "bad_chunk": b"POST /chunk HTTP/1.1\r\nHost: bad\r\nTransfer-Encoding: chunked\r\n\r\n"
                 b"zz\r\nhello\r\n0\r\n\r\n",
    "mid_header": b"GET /mid HTTP/1.1\r\nHost: bad\r\nX-Partial: abc",
}""")


def _memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (resident now) and VmHWM (the most it has been resident) of a process, in KiB."""
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    fields = dict(line.split(":", 1) for line in status if ":" in line)
    return {k: int(fields[k].split()[0]) for k in ("VmRSS", "VmHWM")}


def test_bad_input(netns_pair, tmp_path, www):
    """Garbage, binary after a method, a 1 MB header line, 10,000 headers, an invalid chunk size
    and a head cut by close neither crash hdrlog nor grow it: cut heads are logged as truncated
    requests with only the fields seen, the rest counted, and nginx traffic in the same run is
    logged as usual."""
    pair = netns_pair
    sink = 9000
    with contextlib.ExitStack() as stack:
        nginx = stack.enter_context(nginx_running(tmp_path, pair, {WEB: nginx_server(pair, WEB, www)}))
        sink_proc = stack.enter_context(python_server(tmp_path, pair, "discard", sink))
        (run,) = stack.enter_context(hdrlog_runs(tmp_path, ("--l7-only", "--port", f"{sink},{WEB}")))
        client_pid, out = py_client(pair, BAD_CLIENT, pair.a_ip, str(sink))
        c = curl(pair, "-o", "/dev/null", f"http://{pair.a_ip}:{WEB}/index.html?after=bad")
        time.sleep(0.3)  # hdrlog drains every 50 ms
        assert run.proc.poll() is None, run.stderr_lines
        memory = _memory_kib(run.proc.pid)
        stop_runs([run])
    assert max(memory.values()) < 300 * 1024, f"hdrlog's memory in KiB: {memory}"
    records = http(file_records(run))
    summary = summary_line(run)
    ports = {name: int(port) for name, port in (line.split() for line in out.splitlines())}

    # the normal request on nginx is logged as usual
    client, server = both(records, cid(pair.b_ip, pair.a_ip, c.only.local_port, WEB))
    check_process(client, c.pid, "curl", "client")
    check_process(server, nginx.pid, "nginx", "server")
    for r in (client, server):
        assert (r["url.path"], r["url.query"], r["http.response.status_code"]) == ("/index.html", "after=bad", 200)
        assert r["http.response.body.size"] == len("<p>index</p>\n")

    # nothing is made up for bytes that are no HTTP
    for name in ("garbage", "binary"):
        assert of_conn(records, cid(pair.b_ip, pair.a_ip, ports[name], sink)) == [], name
    assert re.search(r"not_l7 \d+", summary), summary
    assert re.search(r"\d+ unparseable stretches", summary), summary

    # cut or invalid heads: the request line and the complete fields before the cut, marked truncated
    for name, method, path in (("long_line", "GET", "/long"), ("many_headers", "GET", "/many"),
                               ("bad_chunk", "POST", "/chunk"), ("mid_header", "GET", "/mid")):
        client, server = both(records, cid(pair.b_ip, pair.a_ip, ports[name], sink))
        check_process(client, client_pid, "python3", "client")
        check_process(server, sink_proc.pid, "python3", "server")
        for r in (client, server):
            assert (r["http.request.method"], r["url.path"]) == (method, path), name
            assert r["http.request.truncated"] is True, (name, r)
            assert r["http.request.header.host"] == ["bad"], (name, r)
            assert "http.response.status_code" not in r, (name, r)
            assert r["server.address"] == "bad"


def test_no_l7_and_l7_only(netns_pair, tmp_path, www):
    """--no-l7 (at TC on a0) logs the request's packets and no http record; --l7-only logs its
    http records and no packet record."""
    pair = netns_pair
    with nginx_running(tmp_path, pair, {WEB: nginx_server(pair, WEB, www)}):
        no_l7 = start_hdrlog(tmp_path, "--no-l7", "-i", pair.dev_a, "--port", str(WEB), netns=pair.a, ready=False)
        runs = [no_l7]
        try:
            runs += start_runs(tmp_path, ("--l7-only", "--port", str(WEB)))
            no_l7.wait_ready(timeout=90)
            c = curl(pair, "-o", "/dev/null", f"http://{pair.a_ip}:{WEB}/index.html")
            stop_runs(runs)
        finally:
            kill_runs(runs)
    packets = file_records(no_l7)
    assert packets and {r["type"] for r in packets} == {"packet"}
    assert any(r.get("tcp.srcport") == c.only.local_port and r.get("tcp.dstport") == WEB and r["tcp.len"] > 0
               for r in packets), "no request segment"
    l7 = file_records(runs[1])
    assert {r["type"] for r in l7} == {"http"}
    both(l7, cid(pair.b_ip, pair.a_ip, c.only.local_port, WEB))


CUT_REQUEST = (
    b"GET /index.html?cut=1 HTTP/1.1\r\n"  # 32 bytes
    b"Host: cut.example\r\n"  # 19: 51
    b"X-First: 1\r\n"  # 12: 63
    b"User-Agent: raw-client/1.0\r\n"  # starts inside the first 64 bytes, ends after them
    b"Accept: */*\r\n"
    b"Connection: close\r\n\r\n"
)


def _fields_within(message: bytes, limit: int) -> dict[str, list[str]]:
    """The header fields whose lines end within the first `limit` bytes of a message."""
    head = message[:limit]
    lines = head[: head.rfind(b"\r\n") + 2].split(b"\r\n")[1:-1]
    out: dict[str, list[str]] = {}
    for line in lines:
        name, _, value = line.decode().partition(":")
        out.setdefault(name.lower(), []).append(value.strip())
    return out


def test_capture_bytes(netns_pair, tmp_path, www):
    """With --capture-bytes 64 a request whose head is longer is logged as truncated with only
    the header fields that fit whole in the 64 bytes (no User-Agent it did not see), and the
    summary counts the cut copies."""
    pair = netns_pair
    limit = 64
    code = ("import socket, sys\n"
            f"s = socket.create_connection(({pair.a_ip!r}, {WEB}))\n"
            f"s.sendall({CUT_REQUEST!r})\n"
            "data = b''\n"
            "while chunk := s.recv(65536):\n"
            "    data += chunk\n"
            "print(s.getsockname()[1], data.hex())\n")
    with nginx_running(tmp_path, pair, {WEB: nginx_server(pair, WEB, www, "sendfile off;")}) as nginx:
        (run,) = start_runs(tmp_path, ("--l7-only", "--port", str(WEB), "--capture-bytes", str(limit),
                                       "--headers", "all"))
        try:
            pid, out = py_client(pair, code)
            stop_runs([run])
        finally:
            kill_runs([run])
    port, response = out.split()
    response = bytes.fromhex(response)
    assert response.startswith(b"HTTP/1.1 200 OK\r\n") and len(response) > limit
    assert len(CUT_REQUEST) > limit
    client, server = both(http(file_records(run)), cid(pair.b_ip, pair.a_ip, int(port), WEB))
    check_process(client, pid, "python3", "client")
    check_process(server, nginx.pid, "nginx", "server")
    want_request = _fields_within(CUT_REQUEST, limit)
    assert want_request == {"host": ["cut.example"], "x-first": ["1"]}
    want_response = _fields_within(response, limit)
    for r in (client, server):
        assert (r["http.request.method"], r["url.path"], r["url.query"]) == ("GET", "/index.html", "cut=1")
        assert r["http.request.truncated"] is True
        assert header_fields(r, "request") == want_request
        assert "user_agent.original" not in r
        assert r["http.response.status_code"] == 200
        assert r["http.response.truncated"] is True
        assert header_fields(r, "response") == want_response
    # the client's write and read, nginx's read and write: each copy cut at 64 bytes
    assert cut_copies(summary_line(run)) >= 4, summary_line(run)
