"""Regenerate the TLS hello corpus from real handshakes (needs root, openssl, curl, tshark).

    sudo .venv/bin/python tests/corpus/tls/capture.py

In a throwaway network namespace (`hltls-<random>`, only lo, deleted afterwards) it runs
`openssl s_server` on 127.0.0.1:4433, a recording TCP proxy on 127.0.0.1:4443 and, per case,
one client (`openssl s_client` or curl) through the proxy, with tshark capturing lo. The proxy
records what each recv() returned per direction; those chunks become the corpus file's
`chunks`, the parser's output its `expected`, and tshark's dissection of the same handshake its
`tshark` (checked against the parser by tests/unit/test_tls_hello.py). Review a diff in
`expected` before accepting it: see README.md.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import astuple
from pathlib import Path

HERE = Path(__file__).resolve().parent
# run as a script: the repository (tests/) and src/ on the path
sys.path[:0] = [str(HERE.parents[2]), str(HERE.parents[2] / "src")]

from tests.servers import self_signed_certificate  # noqa: E402
from tests.tshark import tshark_fields  # noqa: E402
SERVER_PORT, PROXY_PORT = 4433, 4443
MAX_CHUNKS = 6  # per direction: the hello and what follows it is all the parser looks at
HL_DATA_MAX = 8192  # bpf/hdrlog_abi.h: the prefix of one syscall's bytes that is copied

# a ClientHello of ~20 KiB: more than one TLS record (2^14 bytes, RFC 8446 5.1)
LONG_ALPN = ",".join(f"p{i:03d}" + "x" * 196 for i in range(100))

CASES = [
    (
        "openssl_tls13_sni_alpn",
        "openssl s_client, TLS 1.3 only, SNI example.test, ALPN h2,http/1.1 (s_server -alpn h2).",
        ["-alpn", "h2"],
        ["openssl", "s_client", "-tls1_3", "-servername", "example.test", "-alpn", "h2,http/1.1"],
    ),
    (
        "openssl_tls12_sni_alpn",
        "openssl s_client, TLS 1.2 only, SNI, ALPN http/1.1: the TLS 1.2 ServerHello carries ALPN.",
        ["-alpn", "http/1.1"],
        ["openssl", "s_client", "-tls1_2", "-servername", "example.test", "-alpn", "http/1.1"],
    ),
    (
        "openssl_tls13_no_sni_no_alpn",
        "openssl s_client with no SNI and no ALPN: JA4 'i' and '00'.",
        [],
        ["openssl", "s_client", "-noservername"],
    ),
    (
        "openssl_tls13_hello_retry",
        "The server wants P-384, the client's key share is X25519: a HelloRetryRequest.",
        ["-groups", "P-384"],
        ["openssl", "s_client", "-servername", "example.test"],
    ),
    (
        "curl_tls13_h2",
        "curl (OpenSSL 3.0) offering h2 and http/1.1 over TLS 1.3 with SNI.",
        [],
        [
            "curl",
            "-sk",
            "--http2",
            "--max-time",
            "5",
            "-o",
            "/dev/null",
            "--resolve",
            f"example.test:{PROXY_PORT}:127.0.0.1",
            f"https://example.test:{PROXY_PORT}/",
        ],
    ),
    (
        "curl_tls12_http11",
        "curl limited to TLS 1.2 and HTTP/1.1 (s_server -alpn http/1.1).",
        ["-alpn", "http/1.1"],
        [
            "curl",
            "-sk",
            "--tlsv1.2",
            "--tls-max",
            "1.2",
            "--http1.1",
            "--max-time",
            "5",
            "-o",
            "/dev/null",
            "--resolve",
            f"example.test:{PROXY_PORT}:127.0.0.1",
            f"https://example.test:{PROXY_PORT}/",
        ],
    ),
    (
        "openssl_large_clienthello",
        "A ~20 KiB ClientHello (100 long ALPN names) that spans two TLS records.",
        [],
        ["openssl", "s_client", "-servername", "example.test", "-alpn", LONG_ALPN],
    ),
]


# -- the recording proxy (runs inside the namespace) ----------------------------------------------


def proxy(out_path: str) -> None:
    lsock = socket.socket()
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind(("127.0.0.1", PROXY_PORT))
    lsock.listen(1)
    print("listening", flush=True)
    lsock.settimeout(20)
    client, _ = lsock.accept()
    upstream = socket.create_connection(("127.0.0.1", SERVER_PORT))
    t0 = time.monotonic_ns()
    chunks: list[tuple[str, bytes, int]] = []
    lock = threading.Lock()

    def pump(src: socket.socket, dst: socket.socket, side: str) -> None:
        n = 0
        try:
            while data := src.recv(65536):
                with lock:
                    if n < MAX_CHUNKS:
                        chunks.append((side, data, time.monotonic_ns() - t0))
                        n += 1
                dst.sendall(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    threads = [
        threading.Thread(target=pump, args=(client, upstream, "client")),
        threading.Thread(target=pump, args=(upstream, client, "server")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    chunks.sort(key=lambda c: c[2])
    Path(out_path).write_text(json.dumps([[s, d.hex(), ts] for s, d, ts in chunks]))


# -- driver ---------------------------------------------------------------------------------------


def sh(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, check=True, capture_output=True, text=True, **kw)


def start_tshark(ns: str, pcap: Path) -> subprocess.Popen:
    p = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            ns,
            "tshark",
            "-i",
            "lo",
            "-w",
            str(pcap),
            "-f",
            f"tcp port {PROXY_PORT}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = p.stderr.readline()
        if "Capture started" in line:
            return p
        if not line and p.poll() is not None:
            break
    p.kill()
    raise RuntimeError("tshark did not start")


CLIENT_FIELDS = [
    "tls.handshake.ja3",
    "tls.handshake.ja3_full",
    "tls.handshake.extensions_server_name",
    "tls.handshake.extensions_alpn_str",
    "tls.handshake.extensions.supported_version",
    "tls.handshake.ciphersuite",
    "tls.handshake.extension.type",
    "tls.handshake.sig_hash_alg",
]
SERVER_FIELDS = [
    "tls.handshake.ja3s",
    "tls.handshake.ja3s_full",
    "tls.handshake.extensions.supported_version",
    "tls.handshake.ciphersuite",
    "tls.handshake.extensions_alpn_str",
    "tls.handshake.extension.type",
]


def run_case(ns: str, tmp: Path, cert: Path, key: Path, case) -> dict:
    name, description, server_args, client_argv = case
    pcap, rec = tmp / f"{name}.pcap", tmp / f"{name}.json"
    tshark = start_tshark(ns, pcap)
    server = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            ns,
            "openssl",
            "s_server",
            "-accept",
            f"127.0.0.1:{SERVER_PORT}",
            "-cert",
            str(cert),
            "-key",
            str(key),
            "-www",
            *server_args,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    prox = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, __file__, "--proxy", str(rec)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert prox.stdout.readline().strip() == "listening"
        time.sleep(0.5)  # s_server binds
        argv = list(client_argv)
        if argv[0] == "openssl":
            argv += ["-connect", f"127.0.0.1:{PROXY_PORT}"]
        subprocess.run(
            ["ip", "netns", "exec", ns, *argv],
            check=False,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=20,
        )
        prox.wait(20)
        time.sleep(0.5)
    finally:
        for p in (server, prox):
            if p.poll() is None:
                p.kill()
            p.wait()
        tshark.send_signal(signal.SIGINT)
        tshark.wait(20)
    chunks = json.loads(rec.read_text())
    client = tshark_fields(
        pcap, f"tls.handshake.type == 1 && tcp.dstport == {PROXY_PORT}", CLIENT_FIELDS
    )
    server_f = tshark_fields(
        pcap, f"tls.handshake.type == 2 && tcp.srcport == {PROXY_PORT}", SERVER_FIELDS
    )
    return {
        "description": description,
        "generated_by": " ".join(a if len(a) < 60 else a[:40] + "..." for a in client_argv)
        + f" -> openssl s_server {' '.join(server_args)}".rstrip()
        + f" ({sh('openssl', 'version').stdout.strip()})",
        "chunks": [[side, "hex:" + data, ts] for side, data, ts in chunks],
        "tshark": {
            "version": sh("tshark", "--version").stdout.split("\n")[0],
            "client": client,
            "server": server_f,
        },
    }


def with_prefix_cut(case: dict, prefix: int) -> dict:
    """The same bytes as hdrlog sees them: each syscall's first `prefix` bytes, then a gap."""
    chunks = []
    for side, data, ts in case["chunks"]:
        raw = bytes.fromhex(data[4:])
        chunks.append([side, "hex:" + raw[:prefix].hex(), ts])
        if len(raw) > prefix:
            chunks.append(["gap", side, len(raw) - prefix, ts])
    return {**case, "chunks": chunks, "tshark": None}


def main() -> None:
    from tests.unit.test_tls_hello import corpus_output  # the test's own rendering of the output

    ns = f"hltls-{secrets.token_hex(3)}"
    sh("ip", "netns", "add", ns)
    try:
        sh("ip", "-n", ns, "link", "set", "lo", "up")
        with tempfile.TemporaryDirectory() as t:
            tmp = Path(t)
            cert, key = astuple(self_signed_certificate(tmp, "example.test", ec=True))
            for case in CASES:
                out = run_case(ns, tmp, cert, key, case)
                cases = {case[0]: out}
                if case[0] == "openssl_large_clienthello":
                    cut = with_prefix_cut(out, HL_DATA_MAX)
                    cut["description"] = (
                        "The ~20 KiB ClientHello as hdrlog captures it: 8 KiB, then a gap."
                    )
                    cases["openssl_large_clienthello_cut"] = cut
                for name, c in cases.items():
                    c["expected"] = corpus_output(c["chunks"])
                    (HERE / f"{name}.json").write_text(json.dumps(c, indent=2) + "\n")
                    print("wrote", name, len(c["chunks"]), "chunks")
    finally:
        for pid in subprocess.run(
            ["ip", "netns", "pids", ns], check=False, capture_output=True, text=True
        ).stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except (ProcessLookupError, ValueError):
                pass
        subprocess.run(["ip", "netns", "delete", ns], check=False, capture_output=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--proxy":
        proxy(sys.argv[2])
    else:
        main()
