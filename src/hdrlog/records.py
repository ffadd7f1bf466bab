"""The typed records that leave the pipeline, one Struct per record type.

Each field's JSON name is stated once, here: L2-L4 header elements use
Wireshark display-filter names, context uses OpenTelemetry / ECS names.
Absent (None) fields are left out of the JSON: a record never claims more
than was seen. docs/records.md is generated from the `doc` of each field
(tests/unit/test_docs.py keeps it in step).
"""

from __future__ import annotations

from typing import Any, Callable

import msgspec

__all__ = ["Record", "PacketRecord", "HttpRecord", "TlsRecord", "COMMON_DOCS", "field_docs", "to_builtins", "json_form",
           "FLAT_HEADERS", "Processor", "processed"]


def _f(name: str, doc: str) -> Any:
    """An optional field with its JSON name; the doc is kept for docs/records.md."""
    field = msgspec.field(default=None, name=name)
    _DOCS.setdefault("_pending", []).append((name, doc))
    return field


_DOCS: dict[str, list[tuple[str, str]]] = {}


def _collect(record_type: str) -> None:
    _DOCS[record_type] = _DOCS.pop("_pending", [])


class Record(msgspec.Struct, kw_only=True, omit_defaults=True, frozen=True):
    ts: str
    type: str


COMMON_DOCS = [
    ("ts", "when the kernel saw it: RFC 3339, nanoseconds, UTC"),
    ("type", "the record type"),
]


class PacketRecord(Record, kw_only=True, omit_defaults=True, frozen=True, forbid_unknown_fields=True):
    """One packet's L2-L4 header elements. packets.PacketEncoder writes these as text, in
    this order; decoding a line into this class checks it (unknown names are errors)."""

    interface: str | None = _f("frame.interface_name", "interface the packet was seen on")
    direction: str | None = _f("network.direction", '"ingress" or "egress" at that interface')
    hook: str | None = _f("hdrlog.hook", '"tc" or "xdp": the program that saw it')
    frame_len: int | None = _f("frame.len", "frame length in bytes (before segmentation at TC egress)")
    community_id: str | None = _f("network.community_id", "Community ID v1 of the flow")
    transport: str | None = _f("network.transport", "tcp, udp, icmp, ipv6-icmp or the IP protocol number")
    truncated: bool | None = _f("packet.truncated", "headers go on past the 256 bytes hdrlog parses")
    malformed: str | None = _f("packet.malformed", "the first header that was cut off or invalid; outer layers are valid")
    # Ethernet, 802.1Q, 802.1ad
    eth_dst: str | None = _f("eth.dst", "destination MAC")
    eth_src: str | None = _f("eth.src", "source MAC")
    eth_type: int | None = _f("eth.type", "first EtherType (a TPID when tagged)")
    svlan_id: int | None = _f("ieee8021ad.id", "outer (service) tag VLAN id of a double-tagged frame")
    svlan_priority: int | None = _f("ieee8021ad.priority", "outer tag priority (PCP)")
    svlan_dei: bool | None = _f("ieee8021ad.dei", "outer tag drop eligible")
    vlan_id: int | None = _f("vlan.id", "VLAN id (the inner tag of a double-tagged frame)")
    vlan_priority: int | None = _f("vlan.priority", "priority code point")
    vlan_dei: bool | None = _f("vlan.dei", "drop eligible indicator")
    vlan_etype: int | None = _f("vlan.etype", "EtherType after the tag(s)")
    # IPv4
    ip_version: int | None = _f("ip.version", "4")
    ip_hdr_len: int | None = _f("ip.hdr_len", "IPv4 header length in bytes")
    ip_dsfield: int | None = _f("ip.dsfield", "TOS byte")
    ip_dscp: int | None = _f("ip.dsfield.dscp", "DSCP")
    ip_ecn: int | None = _f("ip.dsfield.ecn", "ECN")
    ip_len: int | None = _f("ip.len", "total length")
    ip_id: int | None = _f("ip.id", "identification")
    ip_flags: int | None = _f("ip.flags", "flags: 4 reserved, 2 DF, 1 MF")
    ip_flags_rb: bool | None = _f("ip.flags.rb", "reserved bit")
    ip_flags_df: bool | None = _f("ip.flags.df", "don't fragment")
    ip_flags_mf: bool | None = _f("ip.flags.mf", "more fragments")
    ip_frag_offset: int | None = _f("ip.frag_offset", "fragment offset in 8-byte units")
    ip_ttl: int | None = _f("ip.ttl", "time to live")
    ip_checksum: int | None = _f("ip.checksum", "header checksum")
    ip_proto: int | None = _f("ip.proto", "protocol")
    ip_src: str | None = _f("ip.src", "source address")
    ip_dst: str | None = _f("ip.dst", "destination address")
    ip_opt_type: list[int] | None = _f("ip.opt.type", "option types, in order")
    ip_options: str | None = _f("ip.options", "option bytes, hex")
    # IPv6
    ipv6_version: int | None = _f("ipv6.version", "6")
    ipv6_tclass: int | None = _f("ipv6.tclass", "traffic class")
    ipv6_dscp: int | None = _f("ipv6.tclass.dscp", "DSCP")
    ipv6_ecn: int | None = _f("ipv6.tclass.ecn", "ECN")
    ipv6_flow: int | None = _f("ipv6.flow", "flow label")
    ipv6_plen: int | None = _f("ipv6.plen", "payload length")
    ipv6_nxt: int | None = _f("ipv6.nxt", "next header of the fixed header")
    ipv6_hlim: int | None = _f("ipv6.hlim", "hop limit")
    ipv6_src: str | None = _f("ipv6.src", "source address")
    ipv6_dst: str | None = _f("ipv6.dst", "destination address")
    ipv6_ext: list[int] | None = _f("ipv6.ext_headers", "extension header types in order (hdrlog's name; up to 8 followed)")
    ipv6_frag_offset: int | None = _f("ipv6.fraghdr.offset", "fragment offset in 8-byte units")
    ipv6_frag_more: bool | None = _f("ipv6.fraghdr.more", "more fragments")
    ipv6_frag_ident: int | None = _f("ipv6.fraghdr.ident", "fragment identification")
    # TCP
    tcp_srcport: int | None = _f("tcp.srcport", "source port")
    tcp_dstport: int | None = _f("tcp.dstport", "destination port")
    tcp_seq_raw: int | None = _f("tcp.seq_raw", "sequence number")
    tcp_ack_raw: int | None = _f("tcp.ack_raw", "acknowledgment number")
    tcp_hdr_len: int | None = _f("tcp.hdr_len", "header length in bytes")
    tcp_flags: int | None = _f("tcp.flags", "flags: 0x100 AE, 0x80 CWR, 0x40 ECE, 0x20 URG, 0x10 ACK, 0x08 PSH, 0x04 RST, 0x02 SYN, 0x01 FIN")
    tcp_flags_ae: bool | None = _f("tcp.flags.ae", "accurate ECN (formerly NS)")
    tcp_flags_cwr: bool | None = _f("tcp.flags.cwr", "congestion window reduced")
    tcp_flags_ece: bool | None = _f("tcp.flags.ece", "ECN echo")
    tcp_flags_urg: bool | None = _f("tcp.flags.urg", "urgent")
    tcp_flags_ack: bool | None = _f("tcp.flags.ack", "acknowledgment")
    tcp_flags_push: bool | None = _f("tcp.flags.push", "push")
    tcp_flags_reset: bool | None = _f("tcp.flags.reset", "reset")
    tcp_flags_syn: bool | None = _f("tcp.flags.syn", "syn")
    tcp_flags_fin: bool | None = _f("tcp.flags.fin", "fin")
    tcp_window: int | None = _f("tcp.window_size_value", "window field, unscaled")
    tcp_checksum: int | None = _f("tcp.checksum", "checksum")
    tcp_urgent: int | None = _f("tcp.urgent_pointer", "urgent pointer")
    tcp_len: int | None = _f("tcp.len", "payload length in bytes")
    tcp_mss: int | None = _f("tcp.options.mss_val", "MSS option")
    tcp_wscale: int | None = _f("tcp.options.wscale.shift", "window scale option: shift count")
    tcp_wscale_mult: int | None = _f("tcp.options.wscale.multiplier", "window scale option: 2**shift")
    tcp_sack_perm: bool | None = _f("tcp.options.sack_perm", "SACK permitted option present")
    tcp_sack_le: list[int] | None = _f("tcp.options.sack_le", "SACK block left edges (absolute)")
    tcp_sack_re: list[int] | None = _f("tcp.options.sack_re", "SACK block right edges (absolute)")
    tcp_tsval: int | None = _f("tcp.options.timestamp.tsval", "timestamp option: value")
    tcp_tsecr: int | None = _f("tcp.options.timestamp.tsecr", "timestamp option: echo reply")
    tcp_options_bad: bool | None = _f("tcp.options.malformed", "an option ran past the header (hdrlog's name)")
    tcp_payload: str | None = _f("tcp.payload", "first snaplen payload bytes, hex")
    # UDP
    udp_srcport: int | None = _f("udp.srcport", "source port")
    udp_dstport: int | None = _f("udp.dstport", "destination port")
    udp_length: int | None = _f("udp.length", "length field")
    udp_checksum: int | None = _f("udp.checksum", "checksum")
    udp_payload: str | None = _f("udp.payload", "first snaplen payload bytes, hex")
    # ICMP, ICMPv6
    icmp_type: int | None = _f("icmp.type", "type")
    icmp_code: int | None = _f("icmp.code", "code")
    icmp_checksum: int | None = _f("icmp.checksum", "checksum")
    icmp_ident: int | None = _f("icmp.ident", "echo identifier")
    icmp_seq: int | None = _f("icmp.seq", "echo sequence number")
    icmpv6_type: int | None = _f("icmpv6.type", "type")
    icmpv6_code: int | None = _f("icmpv6.code", "code")
    icmpv6_checksum: int | None = _f("icmpv6.checksum", "checksum")
    icmpv6_ident: int | None = _f("icmpv6.echo.identifier", "echo identifier")
    icmpv6_seq: int | None = _f("icmpv6.echo.sequence_number", "echo sequence number")
    data: str | None = _f("data.data", "first snaplen bytes after an ICMP header, hex")


_collect("packet")


class HttpRecord(Record, kw_only=True, omit_defaults=True, frozen=True):
    """One HTTP/1.x exchange (request and its response), from one side's socket syscalls.

    `request_headers` / `response_headers` map lower-case header names to their values
    (in order) and are written flat as `http.request.header.<name>` / `http.response.header.<name>`."""

    role: str | None = _f("observer.role", '"client" or "server": whose syscalls produced the record')
    method: str | None = _f("http.request.method", "request method")
    url_path: str | None = _f("url.path", "path of the request target")
    url_query: str | None = _f("url.query", "query string, without the ?")
    server_address: str | None = _f("server.address", "Host header host, else the server's IP address")
    server_port: int | None = _f("server.port", "Host header port, else the connection's server port")
    client_address: str | None = _f("client.address", "client IP address")
    client_port: int | None = _f("client.port", "client port")
    protocol_version: str | None = _f("network.protocol.version", '"1.0" or "1.1"')
    status_code: int | None = _f("http.response.status_code", "final response status code")
    interim_status: list[int] | None = _f("http.response.interim_status_codes", "1xx responses before the final one (hdrlog's name)")
    user_agent: str | None = _f("user_agent.original", "User-Agent header")
    request_headers: dict[str, list[str]] | None = _f("http.request.header.<name>", "chosen request headers, one field per header: a list of values")
    response_headers: dict[str, list[str]] | None = _f("http.response.header.<name>", "chosen response headers, one field per header: a list of values")
    request_body_size: int | None = _f("http.request.body.size", "request body bytes (chunked: payload bytes)")
    response_body_size: int | None = _f("http.response.body.size", "response body bytes (chunked: payload bytes)")
    duration: int | None = _f("event.duration", "first request byte to last response byte seen, nanoseconds")
    time_to_headers: int | None = _f("http.response.time_to_headers", "first request byte to the end of the response headers, nanoseconds (hdrlog's name)")
    request_truncated: bool | None = _f("http.request.truncated", "the request was not seen whole (capture cut it or a gap)")
    response_truncated: bool | None = _f("http.response.truncated", "the response was not seen whole")
    community_id: str | None = _f("network.community_id", "Community ID v1 of the connection")
    network_type: str | None = _f("network.type", '"ipv4" or "ipv6"')
    transport: str | None = _f("network.transport", '"tcp", or "unix" for a Unix socket (then no addresses)')
    tls: bool | None = _f("tls", "true when the plaintext came from a TLS library (OpenSSL)")
    tls_server_name: str | None = _f("tls.client.server_name", "TLS: the SNI the client sent")
    tls_version: str | None = _f("tls.version", 'TLS: the version the server chose, "1.3", "1.2" ...')
    tls_cipher: str | None = _f("tls.cipher", "TLS: the cipher suite the server chose")
    tls_next_protocol: str | None = _f("tls.next_protocol", "TLS: the ALPN protocol the server chose")
    pid: int | None = _f("process.pid", "process id (thread group id)")
    tid: int | None = _f("process.thread.id", "thread that made the syscall")
    executable_name: str | None = _f("process.executable.name", "process name (comm), captured in the kernel")
    executable_path: str | None = _f("process.executable.path", "path of the executable, when the process was still there to ask")
    command_line: str | None = _f("process.command_line", "command line, when the process was still there to ask")
    cgroup_id: int | None = _f("hdrlog.cgroup_id", "cgroup v2 id (hdrlog's name)")
    container_id: str | None = _f("container.id", "container id, when the cgroup path names one (docker, containerd, cri-o, podman, systemd-nspawn)")
    container_runtime: str | None = _f("container.runtime", "docker, containerd, cri-o, podman or systemd-nspawn")


_collect("http")


class TlsRecord(Record, kw_only=True, omit_defaults=True, frozen=True):
    """One TLS handshake's ClientHello and ServerHello, as one side's syscalls saw them;
    written for every TLS connection, whether or not its plaintext can be seen."""

    role: str | None = _f("observer.role", '"client" or "server": whose syscalls produced the record')
    client_address: str | None = _f("client.address", "client IP address")
    client_port: int | None = _f("client.port", "client port")
    server_address: str | None = _f("server.address", "server IP address")
    server_port: int | None = _f("server.port", "server port")
    server_name: str | None = _f("tls.client.server_name", "SNI")
    alpn_offered: list[str] | None = _f("tls.client.alpn", "ALPN protocols the client offered (hdrlog's name)")
    versions_offered: list[str] | None = _f("tls.client.supported_versions", "versions the client offered (hdrlog's name)")
    ciphers_offered: list[str] | None = _f("tls.client.supported_ciphers", "cipher suites the client offered (IANA names, else hex)")
    ja3: str | None = _f("tls.client.ja3", "JA3 hash of the ClientHello")
    ja4: str | None = _f("tls.client.ja4", "JA4 fingerprint of the ClientHello")
    version: str | None = _f("tls.version", 'the version the server chose, "1.3", "1.2" ...')
    version_protocol: str | None = _f("tls.version_protocol", '"tls"')
    cipher: str | None = _f("tls.cipher", "the cipher suite the server chose")
    next_protocol: str | None = _f("tls.next_protocol", "the ALPN protocol the server chose")
    ja3s: str | None = _f("tls.server.ja3s", "JA3S hash of the ServerHello")
    established: bool | None = _f("tls.established", "a ServerHello was seen (false: only the ClientHello)")
    truncated: bool | None = _f("tls.truncated", "a hello was not seen whole (hdrlog's name)")
    community_id: str | None = _f("network.community_id", "Community ID v1 of the connection")
    network_type: str | None = _f("network.type", '"ipv4" or "ipv6"')
    transport: str | None = _f("network.transport", '"tcp"')
    pid: int | None = _f("process.pid", "process id")
    tid: int | None = _f("process.thread.id", "thread that made the syscall")
    executable_name: str | None = _f("process.executable.name", "process name (comm), captured in the kernel")
    executable_path: str | None = _f("process.executable.path", "path of the executable, when the process was still there to ask")
    command_line: str | None = _f("process.command_line", "command line, when the process was still there to ask")
    cgroup_id: int | None = _f("hdrlog.cgroup_id", "cgroup v2 id (hdrlog's name)")
    container_id: str | None = _f("container.id", "container id, when the cgroup path names one")
    container_runtime: str | None = _f("container.runtime", "docker, containerd, cri-o, podman or systemd-nspawn")


_collect("tls")


def field_docs() -> dict[str, list[tuple[str, str]]]:
    """JSON field name and description of every record type's fields, in order."""
    return {k: list(v) for k, v in _DOCS.items()}


# HttpRecord's header maps are written flat, one member per header: field -> member name prefix
FLAT_HEADERS = {"request_headers": "http.request.header.", "response_headers": "http.response.header."}
_HEADER_MAPS = {f.encode_name: FLAT_HEADERS[f.name] for f in msgspec.structs.fields(HttpRecord) if f.name in FLAT_HEADERS}


def to_builtins(record: Record) -> dict:
    """The record as the JSON object it is written as (header maps flattened)."""
    obj = msgspec.to_builtins(record)
    if isinstance(record, HttpRecord):
        for key, prefix in _HEADER_MAPS.items():
            headers = obj.pop(key, None)
            if headers:
                for name, values in headers.items():
                    obj[prefix + name] = values
    return obj


_ENCODER = msgspec.json.Encoder()


def json_form(record: Record):
    """What the JSON encoder is given: the record itself, or (HttpRecord) its JSON with the header
    maps flattened, as msgspec.Raw: the same bytes as encoding to_builtins(record), made without
    building that dict (the header fields are the object's last members there too)."""
    if not isinstance(record, HttpRecord):
        return record
    request, response = record.request_headers, record.response_headers
    if request is None and response is None:
        return record
    body = _ENCODER.encode(msgspec.structs.replace(record, request_headers=None, response_headers=None))
    flat = {}
    for headers, prefix in ((request, FLAT_HEADERS["request_headers"]), (response, FLAT_HEADERS["response_headers"])):
        if headers:
            for name, values in headers.items():
                flat[prefix + name] = values
    if not flat:
        return msgspec.Raw(body)
    return msgspec.Raw(body[:-1] + b"," + _ENCODER.encode(flat)[1:])  # '{...' + ',' + '...}'



# A pipeline step after the recorders (enrichment, redaction): a record in, a record (or None:
# dropped) out. http_lines relies on them being field-local (see there).
Processor = Callable[[Record], "Record | None"]


def processed(rec: Record | None, processors: list[Processor]) -> Record | None:
    """rec after each processor in turn (None once one drops it)."""
    for proc in processors:
        if rec is None:
            return None
        rec = proc(rec)
    return rec


def markdown_reference() -> str:
    """docs/records.md: every record type's fields (regenerate with `python -m hdrlog.records`)."""
    lines = [
        "# Record fields",
        "",
        "Generated from `src/hdrlog/records.py` by `python -m hdrlog.records > docs/records.md`.",
        "One JSON object per line; a field that was not seen is absent, never guessed.",
        "L2-L4 names are Wireshark display-filter names (check them with tshark);",
        "context names follow OpenTelemetry and ECS.",
        "",
        "Every record has:",
        "",
        "| field | meaning |",
        "|---|---|",
    ]
    lines += [f"| `{n}` | {d} |" for n, d in COMMON_DOCS]
    for rtype, fields in field_docs().items():
        lines += ["", f"## `{rtype}`", "", "| field | meaning |", "|---|---|"]
        lines += [f"| `{n}` | {d} |" for n, d in fields]
    return "\n".join(lines) + "\n"


class FlowRecord(Record, kw_only=True, omit_defaults=True, frozen=True):
    """One flow's traffic over one interval (`--flows`, `--flows-only`), counted in the kernel.
    A flow is a 5-tuple on one interface, both directions; `ts` is its last packet so far.
    The counts cover the packets since the flow's previous record."""

    interface: str | None = _f("frame.interface_name", "interface the flow was seen on")
    hook: str | None = _f("hdrlog.hook", '"tc" (ingress and egress) or "xdp" (ingress only): the program that counted it')
    community_id: str | None = _f("network.community_id", "Community ID v1 of the flow")
    network_type: str | None = _f("network.type", '"ipv4" or "ipv6"')
    transport: str | None = _f("network.transport", "tcp, udp, icmp, ipv6-icmp or the IP protocol number")
    source_address: str | None = _f("source.address", "the initiator: the sender of a SYN without ACK when one was seen, else of the flow's first packet")
    source_port: int | None = _f("source.port", "its port (TCP and UDP)")
    destination_address: str | None = _f("destination.address", "the other endpoint")
    destination_port: int | None = _f("destination.port", "its port (TCP and UDP)")
    source_packets: int | None = _f("source.packets", "packets from source to destination in the interval")
    source_bytes: int | None = _f("source.bytes", "their bytes: frame lengths, as `frame.len` (a TSO/GSO packet counts once, whole)")
    destination_packets: int | None = _f("destination.packets", "packets from destination to source in the interval")
    destination_bytes: int | None = _f("destination.bytes", "their bytes")
    network_packets: int | None = _f("network.packets", "packets both ways in the interval")
    network_bytes: int | None = _f("network.bytes", "bytes both ways in the interval")
    source_tcp_flags: list[str] | None = _f("source.tcp.flags", "TCP flags the source has sent since the flow began, named as for --tcp-flags (hdrlog's name)")
    destination_tcp_flags: list[str] | None = _f("destination.tcp.flags", "TCP flags the destination has sent since the flow began (hdrlog's name)")
    syn_packets: int | None = _f("hdrlog.tcp.syn_packets", "packets with SYN set in the interval, both ways (hdrlog's name)")
    fin_packets: int | None = _f("hdrlog.tcp.fin_packets", "packets with FIN set in the interval (hdrlog's name)")
    rst_packets: int | None = _f("hdrlog.tcp.rst_packets", "packets with RST set in the interval (hdrlog's name)")
    start: str | None = _f("event.start", "the flow's first packet (RFC 3339)")
    end: str | None = _f("event.end", "its last packet so far (RFC 3339)")
    duration: int | None = _f("event.duration", "end - start, nanoseconds")
    interval_start: str | None = _f("hdrlog.interval.start", "the interval the counts cover begins: the previous read of the flow table, or hdrlog's start (hdrlog's name)")
    interval_end: str | None = _f("hdrlog.interval.end", "and ends: the read that produced this record (hdrlog's name)")
    source_by: str | None = _f("hdrlog.flow.source_by", "\"syn\" or \"first_packet\": how the source was told (hdrlog's name)")


_collect("flow")


if __name__ == "__main__":
    print(markdown_reference(), end="")
