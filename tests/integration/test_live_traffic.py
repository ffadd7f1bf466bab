"""hdrlog on a real kernel with real traffic between two throwaway namespaces.

Namespace `a` runs hdrlog on its veth end `a0` (plus nginx and, for the
cross-check, tshark); namespace `b` sends pings, a UDP datagram and HTTP
requests to `a`. Nothing leaves the veth pair.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from tests import servers
from tests.conftest import require_tool
from tests.hdrlog_proc import HdrlogRun, start_hdrlog
from tests.netns import NetnsPair
from tests.servers import stop_process, wait_until

HTTP_PORT = 8080
UDP_SPORT = 40123
UDP_DPORT = 40124
UDP_PAYLOAD = b"hdrlog-live-udp-0123456789abcdefghijklmn"  # 40 bytes: longer than --snaplen 32
SENTINEL_PORT = 40999
PING_COUNT = 3
INDEX_BODY = "hello from namespace a\n"
BIG_SIZE = 512 * 1024  # enough for GSO super-packets and a run of plain ACKs


# --- namespaces and processes -------------------------------------------------------


def link_info(pair: NetnsPair, ns: str, dev: str) -> dict:
    out = pair.run(ns, "ip", "-j", "link", "show", "dev", dev).stdout
    return json.loads(out)[0]


def macs(pair: NetnsPair) -> tuple[str, str]:
    """MAC addresses of a0 and b0, as `ip link` shows them."""
    return (
        link_info(pair, pair.a, pair.dev_a)["address"],
        link_info(pair, pair.b, pair.dev_b)["address"],
    )


@contextlib.contextmanager
def hdrlog_running(tmp_path: Path, pair: NetnsPair, *args: str):
    """hdrlog in namespace a (packets only), attached before the body runs; stopped (SIGINT) whatever happens."""
    run = start_hdrlog(tmp_path, "--no-l7", *args, netns=pair.a)
    try:
        yield run
    finally:
        if run.proc.poll() is None:
            try:
                run.stop()
            except AssertionError:
                pass  # stop() killed it; the test's own assertions say what went wrong
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait(timeout=5)


def finish(run: HdrlogRun) -> list[dict]:
    """Stop hdrlog cleanly and return its records."""
    rc = run.stop()
    assert rc == 0, f"hdrlog exited {rc}: {run.stderr_lines}"
    assert run.summary, f"no summary line: {run.stderr_lines}"
    records = run.records()
    assert f"{len(records)} records written" in run.summary
    assert "undecodable" not in run.summary
    return records


def nginx_running(tmp_path: Path, pair: NetnsPair):
    """nginx in namespace a on port 8080 of a's IPv4 and IPv6 addresses, serving tmp_path/www."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "index.html").write_text(INDEX_BODY)
    (root / "big.bin").write_bytes(bytes(i % 251 for i in range(BIG_SIZE)))
    return servers.nginx_running(tmp_path, pair, {HTTP_PORT: servers.nginx_server(pair, HTTP_PORT, root)})


@contextlib.contextmanager
def tshark_capturing(pair: NetnsPair, pcap: Path):
    """tshark writing a0's packets (namespace a) to `pcap`; ready once dumpcap has opened a0."""
    require_tool("tshark")
    proc = pair.popen(pair.a, "tshark", "-n", "-i", pair.dev_a, "-w", str(pcap))
    try:
        seen = ""
        deadline = time.monotonic() + 20
        fd = proc.stderr.fileno()
        # "Capturing on" comes first; "Capture started" once dumpcap has the interface open
        while "Capture started" not in seen:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise AssertionError(f"tshark did not start capturing: {seen!r}")
            r, _, _ = select.select([fd], [], [], 0.1)
            if r:
                chunk = os.read(fd, 65536).decode(errors="replace")
                if not chunk:
                    raise AssertionError(f"tshark closed stderr: {seen!r}")
                seen += chunk
        yield proc
    finally:
        stop_process(proc, signal.SIGINT, timeout=15)


# --- traffic from namespace b -------------------------------------------------------


def ping4(pair: NetnsPair) -> None:
    pair.run(pair.b, "ping", "-n", "-c", str(PING_COUNT), "-i", "0.2", "-W", "2", pair.a_ip)


def ping6(pair: NetnsPair) -> None:
    pair.run(pair.b, "ping", "-6", "-n", "-c", str(PING_COUNT), "-i", "0.2", "-W", "2", pair.a_ip6)


def send_udp(pair: NetnsPair, payload: bytes = UDP_PAYLOAD, sport: int = UDP_SPORT, dport: int = UDP_DPORT) -> None:
    code = (
        "import socket,sys\n"
        "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        f"s.bind(({pair.b_ip!r}, {sport}))\n"
        f"s.sendto(bytes.fromhex({payload.hex()!r}), ({pair.a_ip!r}, {dport}))\n"
    )
    pair.run(pair.b, sys.executable, "-c", code, timeout=10)


def curl(pair: NetnsPair, host: str, path: str = "/index.html") -> bytes:
    """GET over one fresh connection; returns the body."""
    url = f"http://{host}:{HTTP_PORT}{path}"
    out = subprocess.run(
        ["ip", "netns", "exec", pair.b, "curl", "-sS", "--noproxy", "*", "--max-time", "10",
         "-o", "-", "-w", "\n%{http_code}", url],
        check=True, capture_output=True, timeout=20,
    ).stdout
    body, _, code = out.rpartition(b"\n")
    assert code == b"200", f"{url}: HTTP {code!r}"
    return body


def wait_tcp_closed(pair: NetnsPair) -> None:
    """Until a's side of every connection to port 8080 has gone: the last ACK has passed a0."""

    def closed():
        out = pair.run(pair.a, "ss", "-tanH", f"sport = :{HTTP_PORT}").stdout
        return all(line.split()[0] == "LISTEN" for line in out.splitlines() if line.split())

    wait_until("TCP connections on port 8080 to close", closed)


# --- selecting records ----------------------------------------------------------------


def is_tcp(r: dict, port: int = HTTP_PORT) -> bool:
    return r.get("network.transport") == "tcp" and port in (r.get("tcp.srcport"), r.get("tcp.dstport"))


def from_to(r: dict, src: str, dst: str) -> bool:
    if ":" in src:
        return r.get("ipv6.src") == src and r.get("ipv6.dst") == dst
    return r.get("ip.src") == src and r.get("ip.dst") == dst


def tcp_records(records: list[dict], client: str, server: str) -> list[dict]:
    return [r for r in records if is_tcp(r) and (from_to(r, client, server) or from_to(r, server, client))]


def one(records: list[dict], what: str) -> dict:
    assert len(records) == 1, f"expected one {what}, got {len(records)}: {records}"
    return records[0]


# --- shared checks ----------------------------------------------------------------------


def check_l2(records: list[dict], pair: NetnsPair, hook: str) -> None:
    """Interface, hook and MACs of every record whose IP addresses are the pair's unicast addresses."""
    mac_a, mac_b = macs(pair)
    mine = {pair.a_ip, pair.b_ip, pair.a_ip6, pair.b_ip6}
    for r in records:
        assert r["type"] == "packet"
        assert r["frame.interface_name"] == "a0", r
        assert r["hdrlog.hook"] == hook, r
        src, dst = r.get("ip.src") or r.get("ipv6.src"), r.get("ip.dst") or r.get("ipv6.dst")
        if src in mine and dst in mine:
            if r["network.direction"] == "ingress":
                assert (r["eth.src"], r["eth.dst"]) == (mac_b, mac_a), r
            else:
                assert (r["eth.src"], r["eth.dst"]) == (mac_a, mac_b), r


def check_ping4(records: list[dict], pair: NetnsPair, *, replies: bool) -> None:
    """PING_COUNT echo requests b->a (ingress) and, if `replies`, their replies a->b (egress)."""
    icmp = [r for r in records if r.get("network.transport") == "icmp" and r.get("icmp.type") in (0, 8)]
    requests = [r for r in icmp if r["icmp.type"] == 8]
    assert [r["icmp.seq"] for r in requests] == list(range(1, PING_COUNT + 1)), requests
    idents = {r["icmp.ident"] for r in requests}
    assert len(idents) == 1, requests
    for r in requests:
        assert (r["ip.src"], r["ip.dst"]) == (pair.b_ip, pair.a_ip)
        assert r["network.direction"] == "ingress"
        assert r["ip.ttl"] == 64 and r["ip.version"] == 4 and r["ip.proto"] == 1
        assert r["icmp.code"] == 0
        assert r["ip.len"] == 84 and r["frame.len"] == 98  # ping's default 56 data bytes
    replies_seen = [r for r in icmp if r["icmp.type"] == 0]
    if not replies:
        assert replies_seen == []
        return
    assert [r["icmp.seq"] for r in replies_seen] == list(range(1, PING_COUNT + 1)), replies_seen
    assert {r["icmp.ident"] for r in replies_seen} == idents
    for req, rep in zip(requests, replies_seen):
        assert (rep["ip.src"], rep["ip.dst"]) == (pair.a_ip, pair.b_ip)
        assert rep["network.direction"] == "egress"
        assert rep["ip.ttl"] == 64
        assert rep["network.community_id"] == req["network.community_id"]
        assert rep.get("data.data") == req.get("data.data")  # an echo reply echoes the data


def check_ping6(records: list[dict], pair: NetnsPair, *, replies: bool) -> None:
    """PING_COUNT ICMPv6 echo requests b->a (ingress) and, if `replies`, the replies (egress)."""
    icmp6 = [r for r in records if r.get("network.transport") == "ipv6-icmp" and r.get("icmpv6.type") in (128, 129)]
    requests = [r for r in icmp6 if r["icmpv6.type"] == 128]
    assert [r["icmpv6.echo.sequence_number"] for r in requests] == list(range(1, PING_COUNT + 1)), requests
    idents = {r["icmpv6.echo.identifier"] for r in requests}
    assert len(idents) == 1
    for r in requests:
        assert (r["ipv6.src"], r["ipv6.dst"]) == (pair.b_ip6, pair.a_ip6)
        assert r["network.direction"] == "ingress"
        assert r["ipv6.hlim"] == 64 and r["ipv6.version"] == 6 and r["ipv6.nxt"] == 58
        assert r["ipv6.plen"] == 64 and r["icmpv6.code"] == 0
        assert "ip.src" not in r
    replies_seen = [r for r in icmp6 if r["icmpv6.type"] == 129]
    if not replies:
        assert replies_seen == []
        return
    assert [r["icmpv6.echo.sequence_number"] for r in replies_seen] == list(range(1, PING_COUNT + 1))
    assert {r["icmpv6.echo.identifier"] for r in replies_seen} == idents
    for req, rep in zip(requests, replies_seen):
        assert (rep["ipv6.src"], rep["ipv6.dst"]) == (pair.a_ip6, pair.b_ip6)
        assert rep["network.direction"] == "egress"
        assert rep["ipv6.hlim"] == 64
        assert rep["network.community_id"] == req["network.community_id"]


def check_udp(records: list[dict], pair: NetnsPair, snaplen: int) -> None:
    """The one datagram b:UDP_SPORT -> a:UDP_DPORT, with its length and first `snaplen` payload bytes."""
    r = one(
        [r for r in records if r.get("network.transport") == "udp" and r.get("udp.dstport") == UDP_DPORT],
        "UDP datagram",
    )
    assert (r["ip.src"], r["ip.dst"]) == (pair.b_ip, pair.a_ip)
    assert r["udp.srcport"] == UDP_SPORT
    assert r["udp.length"] == 8 + len(UDP_PAYLOAD)
    assert r["ip.len"] == 20 + 8 + len(UDP_PAYLOAD)
    assert r["ip.ttl"] == 64
    assert r["network.direction"] == "ingress"
    if snaplen:
        assert r["udp.payload"] == UDP_PAYLOAD[:snaplen].hex()
    else:
        assert "udp.payload" not in r


def check_http(records: list[dict], pair: NetnsPair, client: str, server: str, *,
               both_directions: bool, snaplen: int, mtu: int) -> str:
    """One curl connection client -> server:8080: the SYN's options, the request, the handshake,
    the FINs; returns its Community ID."""
    v6 = ":" in client
    recs = tcp_records(records, client, server)
    assert recs, f"no TCP records for {client} -> {server}:{HTTP_PORT}"
    to_server = [r for r in recs if from_to(r, client, server)]
    to_client = [r for r in recs if from_to(r, server, client)]
    sports = {r["tcp.srcport"] for r in to_server}
    assert len(sports) == 1, f"one connection expected: {sports}"
    for r in to_server:
        assert r["tcp.dstport"] == HTTP_PORT
        assert r["network.direction"] == "ingress"
    for r in to_client:
        assert r["tcp.srcport"] == HTTP_PORT and {r["tcp.dstport"]} == sports
        assert r["network.direction"] == "egress"
    for r in recs:
        if v6:
            assert r["ipv6.hlim"] == 64
        else:
            assert r["ip.ttl"] == 64 and r["ip.flags.df"] is True

    syn = one([r for r in to_server if r["tcp.flags.syn"]], "SYN")
    assert syn["tcp.flags.syn"] is True and syn["tcp.flags.ack"] is False and syn["tcp.flags"] == 0x002
    assert syn["tcp.options.mss_val"] == mtu - (60 if v6 else 40)
    assert syn["tcp.options.sack_perm"] is True
    assert isinstance(syn["tcp.options.timestamp.tsval"], int)
    assert syn["tcp.options.timestamp.tsecr"] == 0
    assert isinstance(syn["tcp.options.wscale.shift"], int)
    assert syn["tcp.options.wscale.multiplier"] == 2 ** syn["tcp.options.wscale.shift"]
    assert syn["tcp.hdr_len"] == 40 and syn["tcp.len"] == 0

    get = one([r for r in to_server if r["tcp.len"] > 0], "request segment")
    assert get["tcp.flags.push"] and get["tcp.flags.ack"]
    assert get["tcp.seq_raw"] == (syn["tcp.seq_raw"] + 1) % 2**32
    host = f"[{server}]" if v6 else server
    request_start = f"GET /index.html HTTP/1.1\r\nHost: {host}:{HTTP_PORT}\r\n".encode()
    if snaplen:
        assert get["tcp.payload"] == request_start[:snaplen].hex()
        assert get["tcp.payload"].startswith(b"GET /".hex())
    else:
        assert "tcp.payload" not in get
    assert any(r["tcp.flags.fin"] for r in to_server)

    if both_directions:
        synack = one([r for r in to_client if r["tcp.flags.syn"]], "SYN-ACK")
        assert synack["tcp.flags"] == 0x012
        assert synack["tcp.ack_raw"] == (syn["tcp.seq_raw"] + 1) % 2**32
        assert synack["tcp.options.mss_val"] == mtu - (60 if v6 else 40)
        assert synack["tcp.options.sack_perm"] is True
        assert synack["tcp.options.timestamp.tsecr"] == syn["tcp.options.timestamp.tsval"]
        response = [r for r in to_client if r["tcp.len"] > 0]
        assert response, "no response segment"
        if snaplen:
            assert bytes.fromhex(response[0]["tcp.payload"]).startswith(b"HTTP/1.1 200 OK\r\n"[:snaplen])
        assert any(r["tcp.flags.fin"] for r in to_client)
    else:
        assert to_client == []

    cids = {r["network.community_id"] for r in recs}
    assert len(cids) == 1, f"one Community ID per connection, got {cids}"
    cid = cids.pop()
    assert cid.startswith("1:")
    return cid


def send_mix(pair: NetnsPair) -> None:
    """b -> a: IPv4 and IPv6 pings, the UDP datagram, one HTTP GET over each IP version."""
    ping4(pair)
    ping6(pair)
    send_udp(pair)
    assert curl(pair, pair.a_ip) == INDEX_BODY.encode()
    assert curl(pair, f"[{pair.a_ip6}]") == INDEX_BODY.encode()
    wait_tcp_closed(pair)


# --- TC ---------------------------------------------------------------------------------------


def test_tc_logs_both_directions_of_ping_udp_and_http(netns_pair, tmp_path):
    """At TC on a0 hdrlog logs ingress and egress of pings, a UDP datagram and HTTP over IPv4 and
    IPv6 with the exact header values (addresses, MACs, ICMP ids, TCP SYN options, payload prefix)."""
    pair = netns_pair
    mtu = link_info(pair, pair.a, pair.dev_a)["mtu"]
    snaplen = 32
    with nginx_running(tmp_path, pair):
        with hdrlog_running(tmp_path, pair, "-i", pair.dev_a, "--snaplen", str(snaplen)) as run:
            send_mix(pair)
            records = finish(run)

    assert {r["network.direction"] for r in records} == {"ingress", "egress"}
    check_l2(records, pair, "tc")
    check_ping4(records, pair, replies=True)
    check_ping6(records, pair, replies=True)
    check_udp(records, pair, snaplen)
    cid4 = check_http(records, pair, pair.b_ip, pair.a_ip, both_directions=True, snaplen=snaplen, mtu=mtu)
    cid6 = check_http(records, pair, pair.b_ip6, pair.a_ip6, both_directions=True, snaplen=snaplen, mtu=mtu)
    assert cid4 != cid6
    assert "dropped 0" in run.summary


# --- XDP --------------------------------------------------------------------------------------


@pytest.mark.parametrize("xdp_mode", ["generic", "native"])
def test_xdp_logs_ingress_only(netns_pair, tmp_path, xdp_mode):
    """With --mode xdp hdrlog logs only what arrives on a0 (pings, UDP, HTTP requests), hook "xdp",
    with the same header values as at TC."""
    pair = netns_pair
    mtu = link_info(pair, pair.a, pair.dev_a)["mtu"]
    snaplen = 32
    with nginx_running(tmp_path, pair):
        with hdrlog_running(
            tmp_path, pair, "-i", pair.dev_a, "--mode", "xdp", "--xdp-mode", xdp_mode, "--snaplen", str(snaplen)
        ) as run:
            # iproute2's XDP attach modes: 1 driver (native), 2 generic (skb)
            assert link_info(pair, pair.a, pair.dev_a)["xdp"]["mode"] == {"native": 1, "generic": 2}[xdp_mode]
            send_mix(pair)
            records = finish(run)

    assert records
    assert {r["network.direction"] for r in records} == {"ingress"}
    check_l2(records, pair, "xdp")
    check_ping4(records, pair, replies=False)
    check_ping6(records, pair, replies=False)
    check_udp(records, pair, snaplen)
    cid4 = check_http(records, pair, pair.b_ip, pair.a_ip, both_directions=False, snaplen=snaplen, mtu=mtu)
    cid6 = check_http(records, pair, pair.b_ip6, pair.a_ip6, both_directions=False, snaplen=snaplen, mtu=mtu)
    assert cid4 != cid6
    assert "dropped 0" in run.summary


# --- cross-check against tshark ------------------------------------------------------------

# hdrlog JSON name -> tshark field (same name: Wireshark display-filter names)
COMPARED = [
    "frame.len",
    "eth.src", "eth.dst", "eth.type",
    "ip.src", "ip.dst", "ip.ttl", "ip.id", "ip.flags", "ip.flags.df", "ip.flags.mf", "ip.frag_offset",
    "ip.len", "ip.hdr_len", "ip.dsfield", "ip.dsfield.dscp", "ip.dsfield.ecn", "ip.proto", "ip.checksum",
    "ipv6.src", "ipv6.dst", "ipv6.hlim", "ipv6.flow", "ipv6.plen", "ipv6.nxt",
    "ipv6.tclass", "ipv6.tclass.dscp", "ipv6.tclass.ecn",
    "tcp.srcport", "tcp.dstport", "tcp.seq_raw", "tcp.ack_raw", "tcp.flags", "tcp.window_size_value",
    "tcp.hdr_len", "tcp.len", "tcp.checksum", "tcp.urgent_pointer",
    "tcp.options.mss_val", "tcp.options.wscale.shift", "tcp.options.wscale.multiplier",
    "tcp.options.timestamp.tsval", "tcp.options.timestamp.tsecr",
    "udp.srcport", "udp.dstport", "udp.length", "udp.checksum",
    "icmp.type", "icmp.code", "icmp.checksum", "icmp.ident", "icmp.seq",
    "icmpv6.type", "icmpv6.code", "icmpv6.checksum", "icmpv6.echo.identifier", "icmpv6.echo.sequence_number",
    "network.community_id",
    "tcp.payload", "udp.payload", "data.data",
]  # fmt: skip
# where Wireshark's name differs from hdrlog's (its Community ID post-dissector is off by default)
TSHARK_NAME = {"network.community_id": "communityid"}
TEXT_FIELDS = {"eth.src", "eth.dst", "ip.src", "ip.dst", "ipv6.src", "ipv6.dst", "network.community_id"}
BOOL_FIELDS = {"ip.flags.df", "ip.flags.mf"}
PAYLOAD_FIELDS = {"tcp.payload", "udp.payload", "data.data"}  # hex; hdrlog keeps the first --snaplen bytes
CROSS_SNAPLEN = 48
# tshark fields that identify a packet (with its direction); the rest is compared
KEY_FIELDS = (
    "ip.src", "ip.dst", "ipv6.src", "ipv6.dst", "ip.proto", "ipv6.nxt", "ip.id",
    "tcp.srcport", "tcp.dstport", "tcp.seq_raw", "tcp.ack_raw", "tcp.flags",
    "udp.srcport", "udp.dstport", "icmp.type", "icmp.seq", "icmpv6.type", "icmpv6.echo.sequence_number",
)  # fmt: skip
# only the header fields of the packet's own transport; tshark also reports those quoted in ICMP errors
TRANSPORT_PREFIX = {6: "tcp.", 17: "udp.", 1: "icmp.", 58: "icmpv6."}


def tshark_packets(pcap: Path) -> list[dict]:
    """Every packet of the capture as {field: value} with hdrlog's types (absent fields left out)."""
    cmd = ["tshark", "-n", "-r", str(pcap), "-o", "tcp.relative_sequence_numbers:FALSE",
           "--enable-protocol", "communityid",
           "-T", "fields", "-E", "separator=/t", "-E", "occurrence=f", "-E", "header=n"]
    for f in COMPARED:
        cmd += ["-e", TSHARK_NAME.get(f, f)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=60).stdout
    packets = []
    for line in out.splitlines():
        values = line.split("\t")
        assert len(values) == len(COMPARED), line
        p = {}
        for name, v in zip(COMPARED, values):
            if v == "":
                continue
            if name in TEXT_FIELDS:
                p[name] = v
            elif name in PAYLOAD_FIELDS:
                p[name] = v.replace(":", "").lower()[: 2 * CROSS_SNAPLEN]
            elif name in BOOL_FIELDS:
                p[name] = v in ("1", "True")
            else:
                p[name] = int(v, 0)
        packets.append(p)
    return packets


def own_transport_only(p: dict) -> dict:
    proto = p.get("ip.proto", p.get("ipv6.nxt"))
    keep = TRANSPORT_PREFIX.get(proto)
    return {k: v for k, v in p.items() if not any(k.startswith(t) for t in TRANSPORT_PREFIX.values()) or
            (keep and k.startswith(keep))}


def is_test_traffic(p: dict) -> bool:
    """Echo requests/replies, the UDP datagram and TCP on port 8080: what this test sends."""
    if p.get("icmp.type") in (0, 8) or p.get("icmpv6.type") in (128, 129):
        return True
    if p.get("udp.dstport") == UDP_DPORT:
        return True
    return HTTP_PORT in (p.get("tcp.srcport"), p.get("tcp.dstport"))


def by_key(packets: list[dict], mac_a: str) -> dict[tuple, list[dict]]:
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for p in packets:
        direction = "egress" if p["eth.src"] == mac_a else "ingress"
        groups[(direction, *(p.get(k) for k in KEY_FIELDS))].append(p)
    return groups


def pcap_has(pcap: Path, marker: bytes) -> bool:
    return pcap.exists() and marker in pcap.read_bytes()


def test_fields_match_tshark(netns_pair, tmp_path):
    """Every header value hdrlog logs at TC for pings, UDP and HTTP (small pages and a 512 KiB
    download with GSO segments and plain ACKs) equals what tshark decodes from the same packets on a0."""
    require_tool("tshark")
    pair = netns_pair
    mac_a, mac_b = macs(pair)
    pcap = tmp_path / "a0.pcapng"
    sentinel = b"hdrlog-sentinel-" + os.urandom(8).hex().encode()
    with nginx_running(tmp_path, pair):
        with hdrlog_running(tmp_path, pair, "-i", pair.dev_a, "--snaplen", str(CROSS_SNAPLEN)) as run:
            with tshark_capturing(pair, pcap) as ts:
                ping4(pair)
                ping6(pair)
                # DSCP EF + ECT(1), IPv4 record-route options, an IPv6 traffic class and flow label
                pair.run(pair.b, "ping", "-n", "-c", "1", "-W", "2", "-Q", "0xb9", pair.a_ip)
                pair.run(pair.b, "ping", "-n", "-c", "1", "-W", "2", "-R", pair.a_ip)
                pair.run(pair.b, "ping", "-6", "-n", "-c", "1", "-W", "2", "-Q", "0xb9", "-F", str(0xABCDE), pair.a_ip6)
                send_udp(pair)
                curl(pair, pair.a_ip)
                curl(pair, f"[{pair.a_ip6}]")
                assert len(curl(pair, pair.a_ip, "/big.bin")) == BIG_SIZE
                wait_tcp_closed(pair)
                # dumpcap hands packets over in blocks: once a datagram sent after all the test
                # traffic is in the file, everything before it is too
                send_udp(pair, sentinel, sport=SENTINEL_PORT, dport=SENTINEL_PORT)
                wait_until("tshark to write the sentinel datagram", lambda: pcap_has(pcap, sentinel), 20, 0.1)
            assert ts.returncode == 0, ts.returncode
            records = finish(run)

    theirs = [own_transport_only(p) for p in tshark_packets(pcap)]
    theirs = [p for p in theirs if ("ip.src" in p or "ipv6.src" in p) and is_test_traffic(p)]
    ours = [r for r in records if is_test_traffic(r)]
    assert ours and theirs

    # enough of each kind to make the comparison mean something
    tcp4 = [r for r in ours if r.get("ip.src") and "tcp.seq_raw" in r]
    plain_acks = [r for r in tcp4 if r["tcp.flags"] == 0x010 and r["tcp.len"] == 0 and "tcp.options.sack_le" not in r]
    assert len(plain_acks) >= 5, f"only {len(plain_acks)} plain ACKs"
    assert any(r.get("tcp.len", 0) > 1448 for r in ours), "no GSO skb bigger than the MSS (veth TSO off?)"

    mine = {k: [{f: r.get(f) for f in COMPARED} for r in v] for k, v in by_key(ours, mac_a).items()}
    ref = {k: [{f: p.get(f) for f in COMPARED} for p in v] for k, v in by_key(theirs, mac_a).items()}
    missing = set(ref) - set(mine)
    extra = set(mine) - set(ref)
    assert not missing and not extra, f"only tshark: {sorted(map(str, missing))[:5]}, only hdrlog: {sorted(map(str, extra))[:5]}"
    mismatches = []
    for key in ref:
        if len(mine[key]) != len(ref[key]):
            mismatches.append((key, f"{len(mine[key])} hdrlog vs {len(ref[key])} tshark"))
            continue
        for ours_p, theirs_p in zip(mine[key], ref[key]):
            # data.data is hdrlog's name for ICMP data only; Wireshark also uses it for UDP/TCP data
            # it has no dissector for, and shows the start of ping's ICMPv4 data as icmp.data_time
            skip = set() if theirs_p["icmpv6.type"] is not None else {"data.data"}
            diff = {f: (ours_p[f], theirs_p[f]) for f in COMPARED if f not in skip and ours_p[f] != theirs_p[f]}
            if diff:
                mismatches.append((key, diff))
    assert not mismatches, f"{len(mismatches)} packets differ (hdrlog, tshark): {mismatches[:5]}"
    assert {k[0] for k in ref} == {"ingress", "egress"}
    # the comparison covered the unusual headers too
    compared = [p for v in ref.values() for p in v]
    assert any(p["ip.hdr_len"] == 60 and p["icmp.type"] == 8 for p in compared), "no record-route ping"
    assert any(p["ip.dsfield"] == 0xB9 and p["ip.dsfield.dscp"] == 46 for p in compared), "no DSCP ping"
    assert any(p["ipv6.tclass"] == 0xB9 and p["ipv6.flow"] == 0xABCDE for p in compared), "no tclass/flow label"
    for field in ("tcp.payload", "udp.payload", "data.data", "tcp.options.mss_val"):
        assert any(p[field] is not None for p in compared), f"no {field} compared"
    assert {p["eth.src"] for p in compared} == {mac_a, mac_b}
    assert len(ours) == len(compared)
