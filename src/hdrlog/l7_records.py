"""What the L7 parsers found on a connection -> records: an HTTP/1 exchange -> HttpRecord
(OpenTelemetry names, chosen headers), a TLS handshake -> TlsRecord (ECS names, JA3/JA4)."""

from __future__ import annotations

from dataclasses import dataclass

from hdrlog.clock import Clock
from hdrlog.protocols.http1 import accepted_head
from hdrlog.records import HttpRecord, TlsRecord
from hdrlog.stitch.flows import address_text, community_id
from hdrlog.stitch.streams import Connection, TlsHandshake

__all__ = ["HttpRecorder", "TlsRecorder", "HeaderSelection", "DEFAULT_HEADERS"]

# The header elements logged by default (more with --headers all or a list).
DEFAULT_HEADERS = (
    "host", "user-agent", "content-type", "content-length", "accept", "accept-language", "referer",
    "authorization", "cookie", "set-cookie", "x-forwarded-for", "x-request-id", "x-real-ip",
    "location", "server", "cache-control", "content-encoding",
)  # fmt: skip
_TCP = 6
_AF_UNIX = 1
_CACHE_MAX = 4096  # connection contexts, header lines, hosts remembered (then all forgotten at once)


@dataclass(frozen=True)
class HeaderSelection:
    everything: bool = False
    names: frozenset[str] = frozenset(DEFAULT_HEADERS)

    @classmethod
    def parse(cls, spec: str | list[str] | None) -> "HeaderSelection":
        """'all', a comma list, or a list of names; None: the defaults."""
        if spec is None:
            return cls()
        items = spec.split(",") if isinstance(spec, str) else spec
        names = [n.strip().lower() for n in items if n.strip()]
        if names == ["all"]:
            return cls(everything=True)
        return cls(names=frozenset(names))

    def pick(self, headers: list[tuple[str, str]]) -> dict[str, list[str]] | None:
        out: dict[str, list[str]] = {}
        for name, value in headers:
            key = name.lower()
            if self.everything or key in self.names:
                out.setdefault(key, []).append(value)
        return out or None


def _split_target(target: str) -> tuple[str | None, str | None]:
    """origin-form '/p?q' and absolute-form 'http://h/p?q' -> (path, query); authority-form -> (None, None)."""
    if "://" in target:
        rest = target.split("://", 1)[1]
        slash = rest.find("/")
        target = rest[slash:] if slash >= 0 else "/"
    elif not target.startswith("/"):
        return (None, None) if target != "*" else ("*", None)
    path, sep, query = target.partition("?")
    return path, (query if sep else None)


def _host_port(host: str) -> tuple[str, int | None]:
    """Host header -> (host, port); '[::1]:8080' and 'example.com:80' alike (RFC 9110 7.2)."""
    host = host.strip()
    if host.startswith("["):
        end = host.find("]")
        if end > 0:
            port = host[end + 2 :] if host[end + 1 : end + 2] == ":" else ""
            return host[1:end], int(port) if port.isdigit() else None
    name, sep, port = host.rpartition(":")
    if sep and port.isdigit() and ":" not in name:
        return name, int(port)
    return host, None


def _first(headers: list[tuple[str, str]], name: str) -> str | None:
    for k, v in headers:
        if k.lower() == name:
            return v
    return None


_FIRSTS = frozenset({"host", "user-agent"})  # read whether chosen or not
_IGNORED = ()  # a line neither chosen nor one of _FIRSTS


class _HeadPicker:
    """HeaderSelection.pick, _first(User-Agent) and _first(Host) of a head llhttp accepted
    (http1.accepted_head), without splitting every field of every message: header lines repeat
    from message to message (the same clients and servers), so each distinct short line is cut
    into (lower-case name, value) once. The same result as picking from http1's split fields."""

    _LINE_MAX = 256  # longer lines (cookies, tokens) are rarely repeated: not remembered

    def __init__(self, selection: HeaderSelection) -> None:
        self._everything = selection.everything
        self._names = selection.names
        self._lines: dict[bytes, tuple | None] = {}  # line -> (key, value, chosen) or _IGNORED

    def _cut(self, line: bytes) -> tuple[str, str, bool]:
        name, _, value = line.partition(b":")
        key = name.decode("latin-1").lower()
        return key, value.strip(b" \t").decode("latin-1"), self._everything or key in self._names

    def pick(self, head: bytes) -> tuple[dict[str, list[str]] | None, str | None, str | None]:
        """(chosen fields, first User-Agent, first Host)."""
        out: dict[str, list[str]] = {}
        agent = host = None
        lines = self._lines
        for line in head.split(b"\r\n")[1:-2]:  # the field lines (see http1._split_fields)
            hit = lines.get(line)
            if hit is None:
                key, value, chosen = self._cut(line)
                if len(line) <= self._LINE_MAX:
                    if len(lines) >= _CACHE_MAX:
                        lines.clear()
                    lines[line] = (key, value, chosen) if chosen or key in _FIRSTS else _IGNORED
            elif hit is _IGNORED:
                continue
            else:
                key, value, chosen = hit
            if chosen:
                if key in out:
                    out[key].append(value)
                else:
                    out[key] = [value]
            if key == "host":
                if host is None:
                    host = value
            elif key == "user-agent" and agent is None:
                agent = value
        return out or None, agent, host


class _Context:
    """The fields every record of a connection carries: endpoints, flow, process."""

    def __init__(self, clock: Clock):
        self.clock = clock
        self._known: dict[tuple, dict] = {}

    def fields(self, conn: Connection, rtype: str, ts: int) -> dict:
        """A new dict of the record's context fields; what a connection's records share is
        worked out once per distinct identity (process, cgroup, endpoints)."""
        sid = conn.id
        key = (rtype, conn.role, sid.tgid, sid.cgroup_id, sid.family, sid.laddr, sid.raddr, sid.lport,
               sid.rport, sid.comm)
        known = self._known.get(key)
        if known is None:
            if len(self._known) >= _CACHE_MAX:
                self._known.clear()
            known = self._known[key] = self._shared(conn, rtype)
        f = known.copy()
        f["ts"] = self.clock.rfc3339(ts)
        f["tid"] = sid.tid
        return f

    def _shared(self, conn: Connection, rtype: str) -> dict:
        sid = conn.id
        f: dict = {
            "type": rtype,
            "role": conn.role,
            "pid": sid.tgid,
            "executable_name": sid.command,
            "cgroup_id": sid.cgroup_id,
        }
        if sid.family == _AF_UNIX:
            f["transport"] = "unix"  # no addresses, ports or flow id to give
        else:
            client_ip, server_ip = conn.client_ip, conn.server_ip
            f.update(
                client_address=address_text(client_ip),
                client_port=conn.client_port,
                server_address=address_text(server_ip),
                server_port=conn.server_port,
                network_type="ipv4" if len(server_ip) == 4 else "ipv6",
                transport="tcp",
                community_id=community_id(_TCP, client_ip, server_ip, conn.client_port, conn.server_port),
            )
        return f


def _tls_names(conn: Connection) -> dict:
    """What an HTTP record over TLS says of its connection's handshake."""
    from hdrlog.protocols.tls_hello import cipher_name, version_name

    f: dict = {"tls": True}
    ch, sh = conn.client_hello, conn.server_hello
    if ch is not None and ch.server_name:
        f["tls_server_name"] = ch.server_name
    if sh is not None:
        f["tls_version"] = version_name(sh.version)
        f["tls_cipher"] = cipher_name(sh.cipher_suite) or f"0x{sh.cipher_suite:04x}"
        if sh.alpn:
            f["tls_next_protocol"] = sh.alpn
    return f


class TlsRecorder:
    def __init__(self, clock: Clock):
        self._ctx = _Context(clock)

    def record(self, conn: Connection, hs: TlsHandshake) -> TlsRecord:
        from hdrlog.protocols.tls_hello import cipher_name, version_name

        ch, sh = hs.client, hs.server
        f = self._ctx.fields(conn, "tls", hs.ts)
        f["version_protocol"] = "tls"
        f["established"] = sh is not None
        if ch is not None:
            f.update(
                server_name=ch.server_name,
                alpn_offered=list(ch.alpn) or None,
                versions_offered=[version_name(v) for v in ch.supported_versions] or None,
                ciphers_offered=[cipher_name(c) or f"0x{c:04x}" for c in ch.cipher_suites] or None,
                ja3=ch.ja3,
                ja4=ch.ja4,
            )
            if ch.truncated:
                f["truncated"] = True
        if sh is not None:
            f.update(
                version=version_name(sh.version),
                cipher=cipher_name(sh.cipher_suite) or f"0x{sh.cipher_suite:04x}",
                next_protocol=sh.alpn,
                ja3s=sh.ja3s,
            )
        return TlsRecord(**f)


class HttpRecorder:
    def __init__(self, clock: Clock, headers: HeaderSelection | None = None):
        self.clock = clock
        self.headers = headers or HeaderSelection()
        self._ctx = _Context(clock)
        self._picker = _HeadPicker(self.headers)
        self._hosts: dict[str, tuple[str, int | None]] = {}

    def _request_fields(self, req) -> tuple[dict[str, list[str]] | None, str | None, str | None]:
        head = accepted_head(req)
        if head is not None:
            return self._picker.pick(head)
        headers = req.headers
        return self.headers.pick(headers), _first(headers, "user-agent"), _first(headers, "host")

    def _response_fields(self, resp) -> dict[str, list[str]] | None:
        head = accepted_head(resp)
        if head is not None:
            return self._picker.pick(head)[0]
        return self.headers.pick(resp.headers)

    def context(self, conn: Connection, ts: int) -> dict:
        """The fields a connection gives each of its records: endpoints, flow, process, TLS."""
        f = self._ctx.fields(conn, "http", ts)
        if conn.tls:
            f.update(_tls_names(conn))
        return f

    def request(self, req) -> dict:
        """The fields a request's head gives its record (what its start line and fields say)."""
        return self.request_line(req) | self.request_fields(req)

    def request_line(self, req) -> dict:
        """The fields a request line gives: method, target, version."""
        f: dict = {"protocol_version": req.version, "method": req.method}
        f["url_path"], f["url_query"] = _split_target(req.target)
        return f

    def request_fields(self, req) -> dict:
        """The fields a request's header fields give: the chosen ones, User-Agent, Host."""
        f: dict = {}
        f["request_headers"], f["user_agent"], host = self._request_fields(req)
        if host:
            hosts = self._hosts
            hp = hosts.get(host)
            if hp is None:
                if len(hosts) >= _CACHE_MAX:
                    hosts.clear()
                hp = hosts[host] = _host_port(host)
            f["server_address"] = hp[0]
            if hp[1] is not None:
                f["server_port"] = hp[1]
        return f

    def response(self, resp) -> dict:
        """The fields a final response's head gives its record."""
        return {"status_code": resp.status, "response_headers": self._response_fields(resp)}

    def record(self, conn: Connection, ex) -> HttpRecord:
        req, resp = ex.request, ex.response
        first = req if req is not None else resp
        f = self.context(conn, first.ts_start)
        if req is not None:
            f.update(self.request(req))  # (the Host header's server address over the socket's)
            f["request_body_size"] = req.body_size
            if req.truncated:
                f["request_truncated"] = True
        else:
            f["protocol_version"] = resp.version
        if resp is not None:
            f.update(self.response(resp))
            f["response_body_size"] = resp.body_size
            if resp.interim:
                f["interim_status"] = list(resp.interim)
            if resp.truncated:
                f["response_truncated"] = True
            if req is not None:
                if resp.ts_end is not None:
                    f["duration"] = resp.ts_end - req.ts_start
                if resp.ts_head_end is not None:
                    f["time_to_headers"] = resp.ts_head_end - req.ts_start
        return HttpRecord(**f)
