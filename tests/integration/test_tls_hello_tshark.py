"""The TLS hello parser against tshark on live curl -> openssl s_server handshakes (needs root).

In namespace `a` of a throwaway pair, tshark captures lo while curl talks TLS to openssl
s_server on 127.0.0.1. The TCP payload of each direction, read back from the pcap, is fed to
HelloParser segment by segment; what it finds must equal tshark's TLS dissection of the same
packets: SNI, ALPN, supported versions, cipher suites, extension types, JA3 and JA3S (tshark
4.0 has no JA4 field; JA4 is checked against its specification in tests/unit/test_tls_hello.py).
"""

from __future__ import annotations

import signal
import subprocess
import time
from dataclasses import astuple
from pathlib import Path

import pytest

from hdrlog.protocols.tls_hello import CLIENT, SERVER, ClientHello, HelloParser, ServerHello
from tests.conftest import require_tool
from tests.netns import NetnsPair
from tests.servers import self_signed_certificate
from tests.tshark import tshark_fields

PORT = 4433
HOST = "tls.example"

CLIENT_FIELDS = [
    "tls.handshake.extensions_server_name",
    "tls.handshake.extensions_alpn_str",
    "tls.handshake.extensions.supported_version",
    "tls.handshake.ciphersuite",
    "tls.handshake.extension.type",
    "tls.handshake.ja3",
    "tls.handshake.ja3_full",
]
SERVER_FIELDS = [
    "tls.handshake.extensions.supported_version",
    "tls.handshake.ciphersuite",
    "tls.handshake.extensions_alpn_str",
    "tls.handshake.extension.type",
    "tls.handshake.ja3s",
    "tls.handshake.ja3s_full",
]


def _wait_for_line(p: subprocess.Popen, stream, needle: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = stream.readline()
        if needle in line:
            return
        if not line and p.poll() is not None:
            break
    raise AssertionError(f"{p.args[3]} did not print {needle!r}")


def _fields(pcap: Path, display_filter: str, fields: list[str]) -> dict[str, str]:
    found = tshark_fields(pcap, display_filter, fields)
    assert found, f"tshark found no packet for {display_filter}"
    return found


def _payloads(pcap: Path) -> list[tuple[str, bytes, int]]:
    """Every TCP segment with data, in capture order: (side, payload, frame number)."""
    out = subprocess.run(
        [
            "tshark",
            "-r",
            str(pcap),
            "-Y",
            "tcp.len > 0 && !tcp.analysis.retransmission",
            "-T",
            "fields",
            "-e",
            "frame.number",
            "-e",
            "tcp.dstport",
            "-e",
            "tcp.payload",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    segments = []
    for line in out.splitlines():
        frame, dport, payload = line.split("\t")
        side = CLIENT if int(dport) == PORT else SERVER
        segments.append((side, bytes.fromhex(payload.replace(":", "")), int(frame)))
    return segments


def _ints(s: str) -> list[int]:
    return [int(v, 0) for v in s.split(",") if v]


def _handshake(pair: NetnsPair, tmp: Path, server_args: list[str], curl_args: list[str]) -> Path:
    """Capture one curl -> s_server handshake on lo in namespace a; returns the pcap."""
    ns, pcap = pair.a, tmp / "tls.pcap"
    cert, key = astuple(self_signed_certificate(tmp, HOST, ec=True))
    tshark = pair.popen(
        ns, "tshark", "-i", "lo", "-w", str(pcap), "-f", f"tcp port {PORT}", text=True
    )
    _wait_for_line(tshark, tshark.stderr, "Capture started")
    server = pair.popen(
        ns,
        "openssl",
        "s_server",
        "-accept",
        f"127.0.0.1:{PORT}",
        "-cert",
        str(cert),
        "-key",
        str(key),
        "-www",
        *server_args,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    _wait_for_line(server, server.stdout, "ACCEPT")
    pair.run(
        ns,
        "curl",
        "-sk",
        "--max-time",
        "10",
        "-o",
        "/dev/null",
        "--resolve",
        f"{HOST}:{PORT}:127.0.0.1",
        *curl_args,
        f"https://{HOST}:{PORT}/",
        check=False,
    )
    time.sleep(0.3)  # the last segments reach the capture
    tshark.send_signal(signal.SIGINT)
    tshark.wait(20)
    server.kill()
    return pcap


@pytest.mark.parametrize(
    "server_args, curl_args, version, alpn",
    [
        ([], ["--tlsv1.3", "--http2"], 0x0304, ["h2", "http/1.1"]),
        (
            ["-alpn", "http/1.1"],
            ["--tlsv1.2", "--tls-max", "1.2", "--http1.1"],
            0x0303,
            ["http/1.1"],
        ),
        (["-alpn", "h2"], ["--tlsv1.2", "--tls-max", "1.2", "--http2"], 0x0303, ["h2", "http/1.1"]),
    ],
    ids=["tls13-h2", "tls12-http11", "tls12-h2"],
)
def test_curl_handshake_matches_tshark(netns_pair, tmp_path, server_args, curl_args, version, alpn):
    """A live curl -> openssl s_server handshake parses to exactly what tshark dissects."""
    for tool in ("tshark", "openssl", "curl"):
        require_tool(tool)
    pcap = _handshake(netns_pair, tmp_path, server_args, curl_args)

    p = HelloParser()
    out = []
    for side, payload, frame in _payloads(pcap):
        out += p.feed(side, payload, frame)
    assert p.done and [type(r) for r in out] == [ClientHello, ServerHello], out
    hello, server = out

    t = _fields(pcap, f"tls.handshake.type == 1 && tcp.dstport == {PORT}", CLIENT_FIELDS)
    assert hello.server_name == t["tls.handshake.extensions_server_name"] == HOST
    assert hello.alpn == t["tls.handshake.extensions_alpn_str"].split(",") == alpn
    assert hello.supported_versions == _ints(t["tls.handshake.extensions.supported_version"])
    assert hello.cipher_suites == _ints(t["tls.handshake.ciphersuite"])
    assert hello.extensions == _ints(t["tls.handshake.extension.type"])
    assert (hello.ja3, hello.ja3_string) == (t["tls.handshake.ja3"], t["tls.handshake.ja3_full"])
    assert not hello.truncated and hello.ja4.startswith("t13d" if version == 0x0304 else "t12d")

    t = _fields(pcap, f"tls.handshake.type == 2 && tcp.srcport == {PORT}", SERVER_FIELDS)
    assert (
        server.version
        == int(t["tls.handshake.extensions.supported_version"] or "0x0303", 0)
        == version
    )
    assert server.cipher_suite == int(t["tls.handshake.ciphersuite"], 0)
    assert server.extensions == _ints(t["tls.handshake.extension.type"])
    # TLS 1.3 sends the chosen ALPN encrypted (RFC 8446 4.3.1), TLS 1.2 in the ServerHello
    assert server.alpn == (t["tls.handshake.extensions_alpn_str"] or None)
    assert server.alpn == (None if version == 0x0304 else (server_args[1] if server_args else None))
    assert (server.ja3s, server.ja3s_string) == (
        t["tls.handshake.ja3s"],
        t["tls.handshake.ja3s_full"],
    )
