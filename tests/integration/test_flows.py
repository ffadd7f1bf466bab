"""Flow records on a real kernel with real traffic: hdrlog in namespace a on a0, nginx there, curl and
ping from namespace b. The flows' packet and byte counts are checked against tshark on the same
interface, and against the packet records of the same run."""

from __future__ import annotations

import collections
import os
import subprocess
from pathlib import Path

from tests.conftest import require_tool
from tests.hdrlog_proc import start_hdrlog
from tests.integration import test_live_traffic as live
from tests import servers
from tests.netns import NetnsPair
from tests.servers import wait_until

PORT = live.HTTP_PORT


def flow_runs(tmp_path: Path, pair: NetnsPair, *args: str):
    return live.hdrlog_running(tmp_path, pair, "-i", pair.dev_a, *args)


def nginx_paced(tmp_path: Path, pair: NetnsPair):
    """nginx as live.nginx_running serves it, sending at most 512 KiB/s per connection: the 512 KiB
    download takes a second, several flow intervals."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "index.html").write_text(live.INDEX_BODY)
    (root / "big.bin").write_bytes(bytes(i % 251 for i in range(live.BIG_SIZE)))
    return servers.nginx_running(tmp_path, pair, {PORT: servers.nginx_server(pair, PORT, root, "limit_rate 512k;")})


def tshark_connections(pcap: Path) -> dict[tuple[str, int], dict[str, list[int]]]:
    """Per TCP connection to PORT, (client address, client port) -> frame lengths each way as tshark saw them on a0."""
    out = subprocess.run(
        ["tshark", "-n", "-r", str(pcap), "-Y", f"tcp.port == {PORT}", "-T", "fields", "-E", "separator=/t",
         "-e", "ip.src", "-e", "ipv6.src", "-e", "tcp.srcport", "-e", "ip.dst", "-e", "ipv6.dst", "-e", "tcp.dstport",
         "-e", "frame.len"],
        check=True, capture_output=True, text=True, timeout=60).stdout
    conns: dict = collections.defaultdict(lambda: {"c2s": [], "s2c": []})
    for line in out.splitlines():
        src4, src6, sport, dst4, dst6, dport, flen = line.split("\t")
        src, dst = src4 or src6, dst4 or dst6
        if int(dport) == PORT:
            conns[(src, int(sport))]["c2s"].append(int(flen))
        else:
            conns[(dst, int(dport))]["s2c"].append(int(flen))
    return dict(conns)


def summed(flows: list[dict]) -> dict[tuple[str, int], dict]:
    """Flow records of TCP flows to PORT, summed over intervals, by (source address, source port)."""
    out: dict = {}
    for r in flows:
        if r.get("network.transport") != "tcp" or r.get("destination.port") != PORT:
            continue
        k = (r["source.address"], r["source.port"])
        s = out.setdefault(k, {"records": [], "source.packets": 0, "source.bytes": 0, "destination.packets": 0,
                               "destination.bytes": 0, "hdrlog.tcp.syn_packets": 0, "hdrlog.tcp.fin_packets": 0})
        s["records"].append(r)
        for f in ("source.packets", "source.bytes", "destination.packets", "destination.bytes",
                  "hdrlog.tcp.syn_packets", "hdrlog.tcp.fin_packets"):
            s[f] += r[f]
    return out


def test_flows_only_counts_match_tshark(netns_pair, tmp_path):
    """--flows-only: one flow per connection (IPv4 and IPv6, paced downloads across several intervals),
    client as source; per-direction packets and bytes summed over the intervals equal
    tshark's count of frames and frame lengths on a0; nothing but flow records is written."""
    require_tool("tshark")
    pair = netns_pair
    pcap = tmp_path / "a0.pcapng"
    sentinel = b"hdrlog-sentinel-" + os.urandom(8).hex().encode()
    with nginx_paced(tmp_path, pair):
        with flow_runs(tmp_path, pair, "--flows-only", "--flow-interval", "0.2") as run:
            with live.tshark_capturing(pair, pcap):
                live.curl(pair, pair.a_ip)
                live.curl(pair, f"[{pair.a_ip6}]")
                assert len(live.curl(pair, pair.a_ip, "/big.bin")) == live.BIG_SIZE
                assert len(live.curl(pair, f"[{pair.a_ip6}]", "/big.bin")) == live.BIG_SIZE
                live.wait_tcp_closed(pair)
                live.send_udp(pair, sentinel, sport=live.SENTINEL_PORT, dport=live.SENTINEL_PORT)
                wait_until("tshark to write the sentinel datagram", lambda: live.pcap_has(pcap, sentinel), 20, 0.1)
            records = live.finish(run)

    assert records and {r["type"] for r in records} == {"flow"}
    assert "flows:" in run.summary and "logged" not in run.summary, run.summary
    theirs = tshark_connections(pcap)
    ours = summed(records)
    assert len(theirs) == 4 and set(ours) == set(theirs), (sorted(ours), sorted(theirs))
    for (client, cport), f in ours.items():
        t = theirs[(client, cport)]
        assert (f["source.packets"], f["source.bytes"]) == (len(t["c2s"]), sum(t["c2s"])), (client, cport)
        assert (f["destination.packets"], f["destination.bytes"]) == (len(t["s2c"]), sum(t["s2c"])), (client, cport)
        assert (f["hdrlog.tcp.syn_packets"], f["hdrlog.tcp.fin_packets"]) == (2, 2)
        last = f["records"][-1]
        assert client in (pair.b_ip, pair.b_ip6) and last["destination.address"] in (pair.a_ip, pair.a_ip6)
        assert last["hdrlog.flow.source_by"] == "syn" and last["frame.interface_name"] == pair.dev_a
        assert {"syn", "ack", "fin"} <= set(last["source.tcp.flags"]) and {"syn", "ack"} <= set(last["destination.tcp.flags"])
        assert len({r["network.community_id"] for r in f["records"]}) == 1
    # the paced downloads were reported in several intervals that follow one another
    for slow in sorted((f["records"] for f in ours.values()), key=len)[-2:]:
        assert len(slow) >= 3, [r["network.packets"] for r in slow]
        for a, b in zip(slow, slow[1:]):
            assert a["hdrlog.interval.end"] == b["hdrlog.interval.start"]
            assert a["event.start"] == b["event.start"] and a["event.end"] < b["event.end"]


def test_flows_with_packet_records_and_final_flush(netns_pair, tmp_path):
    """--flows beside packet records, in a run ended by --duration before the first interval is up:
    the final read still writes the flows, and each flow's counts equal the packet records with its
    Community ID (TCP both ways, and ICMP echo request and reply as one flow)."""
    pair = netns_pair
    with live.nginx_running(tmp_path, pair):
        run = start_hdrlog(tmp_path, "--no-l7", "-i", pair.dev_a, "--flows", "--flow-interval", "3600",
                           "--duration", "5", netns=pair.a)
        try:
            live.ping4(pair)
            live.curl(pair, pair.a_ip)
            live.curl(pair, f"[{pair.a_ip6}]")
            live.wait_tcp_closed(pair)
            assert run.wait(timeout=30) == 0, run.stderr_lines
        finally:
            if run.proc.poll() is None:
                run.proc.kill()
                run.proc.wait(timeout=5)
    records = run.records()
    assert f"{len(records)} records written" in run.summary and "logged" in run.summary and "flows:" in run.summary
    packets = [r for r in records if r["type"] == "packet"]
    flows = [r for r in records if r["type"] == "flow"]
    by_cid = collections.Counter(r["network.community_id"] for r in packets if "network.community_id" in r)
    bytes_by_cid = collections.Counter()
    for r in packets:
        if "network.community_id" in r:
            bytes_by_cid[r["network.community_id"]] += r["frame.len"]
    tested = collections.Counter()
    for f in flows:
        assert f["frame.interface_name"] == pair.dev_a and f["hdrlog.hook"] == "tc"
        assert f["hdrlog.interval.start"] < f["hdrlog.interval.end"]
        if f["source.address"] not in (pair.b_ip, pair.b_ip6):
            continue  # neighbour discovery, MLD: more than one ICMP type per address pair
        cid = f["network.community_id"]
        assert f["network.packets"] == by_cid[cid], f
        assert f["network.bytes"] == bytes_by_cid[cid], f
        tested[f["network.transport"]] += 1
    assert (tested["tcp"], tested["icmp"]) == (2, 1), tested  # (and neighbour discovery from b's IPv6 address)
    icmp = next(f for f in flows if f["network.transport"] == "icmp" and f["source.address"] == pair.b_ip)
    assert (icmp["source.packets"], icmp["destination.packets"]) == (live.PING_COUNT, live.PING_COUNT)
