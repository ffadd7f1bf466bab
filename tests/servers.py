"""Servers and clients for tests on real traffic between the two namespaces of a NetnsPair:
nginx, small Python HTTP servers and curl. Every wait is bounded; every process started
here is stopped (and killed if it will not go) when its context ends."""

from __future__ import annotations

import contextlib
import functools
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import require_tool
from tests.netns import NetnsPair


def wait_until(what: str, check, timeout: float = 10, interval: float = 0.05):
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(interval)


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10) -> tuple[bytes, bytes]:
    """Signal, wait, and kill if it will not go; returns what it wrote."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate(timeout=5)


def listening(pair: NetnsPair, ns: str, port: int) -> set[str]:
    """Local addresses ("10.0.0.1:80", "[fd00::1]:80") with a TCP listener on `port` in `ns`."""
    out = pair.run(ns, "ss", "-ltnH", f"sport = :{port}").stdout
    return {line.split()[3] for line in out.splitlines() if line.split()}


def wait_listening(pair: NetnsPair, proc: subprocess.Popen, ns: str, port: int, want: set[str], what: str) -> None:
    def ready():
        if proc.poll() is not None:
            raise AssertionError(f"{what} exited {proc.returncode}: {proc.communicate(timeout=5)}")
        return want <= listening(pair, ns, port)

    wait_until(f"{what} to listen on {sorted(want)}", ready)


# --- nginx ---------------------------------------------------------------------------------

NGINX_MAIN = """\
daemon off;
master_process off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log stderr;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/nginx-body;
    proxy_temp_path {tmp}/nginx-proxy;
    fastcgi_temp_path {tmp}/nginx-fastcgi;
    uwsgi_temp_path {tmp}/nginx-uwsgi;
    scgi_temp_path {tmp}/nginx-scgi;
    types_hash_max_size 2048;
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
{servers}
}}
"""


def nginx_server(pair: NetnsPair, port: int, root: Path, settings: str = "") -> str:
    """A server block on `port` of a's IPv4 and IPv6 addresses serving `root`."""
    return (
        f"    server {{\n"
        f"        listen {pair.a_ip}:{port};\n"
        f"        listen [{pair.a_ip6}]:{port};\n"
        f"        root {root};\n"
        f"        {settings}\n"
        f"    }}\n"
    )


@contextlib.contextmanager
def nginx_running(tmp_path: Path, pair: NetnsPair, servers: dict[int, str], master: bool = False):
    """nginx 1.22 in namespace a, one process (master_process off) running as root, with the
    given server blocks (port -> block); every path it writes is under tmp_path. master: a
    master process that forks one worker (also root), as nginx is usually run."""
    require_tool("nginx")
    conf = tmp_path / "nginx.conf"
    main = NGINX_MAIN.format(tmp=tmp_path, servers="".join(servers.values()))
    if master:
        main = main.replace("master_process off;", "master_process on;\nuser root;")
    conf.write_text(main)
    proc = pair.popen(pair.a, "nginx", "-p", str(tmp_path), "-c", str(conf), "-e", "stderr")
    try:
        for port in servers:
            want = {f"{pair.a_ip}:{port}", f"[{pair.a_ip6}]:{port}"}
            wait_listening(pair, proc, pair.a, port, want, "nginx")
        yield proc
    finally:
        stop_process(proc, signal.SIGQUIT)


# --- small Python servers (Debian's python3, in namespace a) -----------------------------------

PYTHON3 = "/usr/bin/python3"  # Debian's: its process name (comm) is "python3"

# GET <path> on the "app" server: a Transfer-Encoding: chunked body of these chunks, one
# write (size line, data, CRLF) per chunk
CHUNKED = {
    "/chunked": [b"first chunk|", b"second|", b"third and longer chunk|" * 20, b"last"],
    # the middle chunk's write is longer than the default --capture-bytes (4096)
    "/chunked-big": [b"a" * 100, b"b" * 6000, b"c" * 50],
}

PY_SERVERS = r"""
import socketserver, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

CHUNKED = @CHUNKED@


class App(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_POST(self):
        # read the whole body, answer 201 with its length and the client's port
        body = self.rfile.read(int(self.headers["Content-Length"]))
        reply = b'{"received": %d, "client_port": %d}' % (len(body), self.client_address[1])
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def do_GET(self):
        chunks = CHUNKED.get(self.path)
        if chunks is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for chunk in chunks:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\n\r\n")


class Discard(socketserver.BaseRequestHandler):
    # read everything the client sends, answer nothing
    def handle(self):
        while self.request.recv(65536):
            pass


class AppServer(ThreadingHTTPServer):
    daemon_threads = True


class DiscardServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


kind, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
server = AppServer((host, port), App) if kind == "app" else DiscardServer((host, port), Discard)
server.serve_forever()
"""


@contextlib.contextmanager
def python_server(tmp_path: Path, pair: NetnsPair, kind: str, port: int):
    """PY_SERVERS in namespace a on a's IPv4 address: "app" (POST -> 201 after reading the
    body, with its length and the client's port; GET /chunked, /chunked-big) or "discard"
    (reads everything, never answers)."""
    script = tmp_path / "py_servers.py"
    script.write_text(PY_SERVERS.replace("@CHUNKED@", repr(CHUNKED)))
    proc = pair.popen(pair.a, PYTHON3, str(script), kind, pair.a_ip, str(port))
    try:
        wait_listening(pair, proc, pair.a, port, {f"{pair.a_ip}:{port}"}, f"python {kind} server")
        yield proc
    finally:
        stop_process(proc, signal.SIGTERM)


@contextlib.contextmanager
def http_server_running(pair: NetnsPair, root: Path, port: int):
    """`python3 -m http.server` in namespace a on a's IPv4 address, serving `root`."""
    proc = pair.popen(pair.a, PYTHON3, "-m", "http.server", str(port), "--bind", pair.a_ip,
                      "--directory", str(root))
    try:
        wait_listening(pair, proc, pair.a, port, {f"{pair.a_ip}:{port}"}, "http.server")
        yield proc
    finally:
        stop_process(proc, signal.SIGTERM)


# --- curl (in namespace b) -----------------------------------------------------------------------

_CURL_W = "\nCURL-W %{http_code} %{local_ip} %{local_port} %{num_connects} %{size_download}\n"


@dataclass
class Transfer:
    status: int
    local_ip: str
    local_port: int
    new_connections: int
    size_download: int


@dataclass
class CurlRun:
    pid: int
    returncode: int
    transfers: list[Transfer]
    stderr: str

    @property
    def only(self) -> Transfer:
        assert len(self.transfers) == 1, self.transfers
        return self.transfers[0]


@functools.cache
def curl_version() -> str:
    """curl's version, as in its User-Agent."""
    return subprocess.run(["curl", "--version"], check=True, capture_output=True, text=True).stdout.split()[1]


def curl_cmd(pair: NetnsPair, *args: str, max_time: float = 10) -> list[str]:
    return ["ip", "netns", "exec", pair.b, "curl", "-sS", "--noproxy", "*", "--max-time", str(max_time),
            "-w", _CURL_W, *args]


def parse_curl(proc: subprocess.Popen, out: bytes, err: bytes) -> CurlRun:
    transfers = []
    for line in out.decode(errors="replace").splitlines():
        if line.startswith("CURL-W "):
            code, ip, port, conns, size = line.split()[1:]
            transfers.append(Transfer(int(code), ip, int(port), int(conns), int(size)))
    return CurlRun(proc.pid, proc.returncode, transfers, err.decode(errors="replace"))


def curl(pair: NetnsPair, *args: str, timeout: float = 20, check: bool = True,
         prefix: list[str] | None = None) -> CurlRun:
    """Run curl in namespace b (`ip netns exec` execs it: the pid is curl's); bodies go where
    the arguments say (-o), one CURL-W line per transfer is parsed."""
    require_tool("curl")
    proc = subprocess.Popen([*(prefix or []), *curl_cmd(pair, *args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=5)
    run = parse_curl(proc, out, err)
    if check:
        assert run.returncode == 0, f"curl {args} exited {run.returncode}: {run.stderr}"
    return run


def py_client(pair: NetnsPair, code: str, *args: str, python: str = PYTHON3,
              timeout: float = 30) -> tuple[int, str]:
    """Run a Python snippet (sys.argv[1:] = args) in namespace b; returns its pid and stdout."""
    proc = subprocess.Popen(["ip", "netns", "exec", pair.b, python, "-c", code, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=5)
    assert proc.returncode == 0, f"python client exited {proc.returncode}: {err.decode(errors='replace')}"
    return proc.pid, out.decode()


def cases_client(cases: str) -> str:
    """A py_client script (argv: host port) that, for each entry of `cases` (the Python source of
    a dict name -> bytes), opens a connection, sends the bytes, prints the name and its local port,
    half-closes and waits for the server to close."""
    return f"""
import socket, sys
host, port = sys.argv[1], int(sys.argv[2])
cases = {cases}
for name, data in cases.items():
    s = socket.create_connection((host, port))
    s.sendall(data)
    print(name, s.getsockname()[1], flush=True)
    s.shutdown(socket.SHUT_WR)
    s.settimeout(5)
    s.recv(1)  # the server closes once it has read everything
    s.close()
"""


# --- TLS: a self-signed certificate, nginx with ssl, a Python ssl server and client --------------

TLS_NAME = "test.example"  # the certificate's CN and the SNI the clients send


@dataclass
class Certificate:
    cert: Path
    key: Path


def self_signed_certificate(tmp_path: Path, cn: str = TLS_NAME, ec: bool = False) -> Certificate:
    """A certificate for `cn` (RSA 2048, or with `ec` P-256), valid one day, and its unencrypted key."""
    require_tool("openssl")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    newkey = ["ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if ec else ["rsa:2048"]
    subprocess.run(["openssl", "req", "-x509", "-newkey", *newkey, "-nodes", "-subj", f"/CN={cn}",
                    "-days", "1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return Certificate(cert, key)


def nginx_tls_server(pair: NetnsPair, port: int, root: Path, cert: Certificate, settings: str = "") -> str:
    """A server block with TLS 1.2 and 1.3 (nginx 1.22's default lacks 1.3) on `port` of a's
    IPv4 and IPv6 addresses serving `root`."""
    return (
        f"    server {{\n"
        f"        listen {pair.a_ip}:{port} ssl;\n"
        f"        listen [{pair.a_ip6}]:{port} ssl;\n"
        f"        ssl_certificate {cert.cert};\n"
        f"        ssl_certificate_key {cert.key};\n"
        f"        ssl_protocols TLSv1.2 TLSv1.3;\n"
        f"        root {root};\n"
        f"        {settings}\n"
        f"    }}\n"
    )


PY_TLS_SERVER = r"""
import functools, ssl, sys
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

host, port, root, cert, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]


class Handler(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True


ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
server = Server((host, port), functools.partial(Handler, directory=root))
server.socket = ctx.wrap_socket(server.socket, server_side=True)
server.serve_forever()
"""


@contextlib.contextmanager
def python_tls_server(tmp_path: Path, pair: NetnsPair, port: int, root: Path, cert: Certificate):
    """Debian's python3 in namespace a on a's IPv4 address: http.server's SimpleHTTPRequestHandler
    (HTTP/1.1, keep-alive) serving `root` over TLS through the ssl module (SSL_read_ex/SSL_write_ex)."""
    script = tmp_path / "py_tls_server.py"
    script.write_text(PY_TLS_SERVER)
    proc = pair.popen(pair.a, PYTHON3, str(script), pair.a_ip, str(port), str(root), str(cert.cert), str(cert.key))
    try:
        wait_listening(pair, proc, pair.a, port, {f"{pair.a_ip}:{port}"}, "python TLS server")
        yield proc
    finally:
        stop_process(proc, signal.SIGTERM)


# sys.argv[1:]: server IP, port, SNI (also the Host header's name), "close" or "abrupt", paths.
# Connects to the IP with that SNI, certificate not verified; prints "port version cipher",
# then "status body-length" per request, all on one keep-alive connection. "close": every path
# is requested and the connection closed. "abrupt": the last path's request is sent and the
# process ends at once with os._exit (no close_notify, no SSL_free, its response never read).
PY_TLS_CLIENT = r"""
import http.client, os, socket, ssl, sys

ip, port, sni, mode, paths = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5:]


class Conn(http.client.HTTPSConnection):
    def connect(self):
        raw = socket.create_connection((ip, self.port), timeout=10)
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)


ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
conn = Conn(sni, port, context=ctx)
conn.connect()
print(conn.sock.getsockname()[1], conn.sock.version(), conn.sock.cipher()[0], flush=True)
headers = {"User-Agent": "tls-test/1.0"}
complete = paths[:-1] if mode == "abrupt" else paths
for path in complete:
    conn.request("GET", path, headers=headers)
    resp = conn.getresponse()
    body = resp.read()
    print(resp.status, len(body), flush=True)
if mode == "abrupt":
    conn.request("GET", paths[-1], headers=headers)
    sys.stdout.flush()
    os._exit(0)
conn.close()
"""
