"""An HTTP/1 exchange on a connection -> HttpRecord (OpenTelemetry names, chosen headers)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from hdrlog.clock import Clock
from hdrlog.records import HttpRecord
from hdrlog.stitch.flows import community_id
from hdrlog.stitch.streams import Connection

__all__ = ["HttpRecorder", "HeaderSelection", "DEFAULT_HEADERS"]

# The header elements logged by default (more with --headers all or a list).
DEFAULT_HEADERS = (
    "host", "user-agent", "content-type", "content-length", "accept", "accept-language", "referer",
    "authorization", "cookie", "set-cookie", "x-forwarded-for", "x-request-id", "x-real-ip",
    "location", "server", "cache-control", "content-encoding",
)  # fmt: skip
_TCP = 6
_AF_UNIX = 1


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


class HttpRecorder:
    def __init__(self, clock: Clock, headers: HeaderSelection | None = None):
        self.clock = clock
        self.headers = headers or HeaderSelection()
        self._addrs: dict[bytes, str] = {}

    def _addr(self, raw: bytes) -> str:
        s = self._addrs.get(raw)
        if s is None:
            if len(self._addrs) > 65536:
                self._addrs.clear()
            s = self._addrs[raw] = str(ipaddress.ip_address(raw))
        return s

    def record(self, conn: Connection, ex) -> HttpRecord:
        req, resp = ex.request, ex.response
        first = req if req is not None else resp
        sid = conn.id
        f: dict = {
            "ts": self.clock.rfc3339(first.ts_start),
            "type": "http",
            "role": conn.role,
            "pid": sid.tgid,
            "tid": sid.tid,
            "executable_name": sid.command,
            "cgroup_id": sid.cgroup_id,
            "protocol_version": first.version,
        }
        if sid.family == _AF_UNIX:
            f["transport"] = "unix"  # no addresses, ports or flow id to give
        else:
            client_ip, server_ip = conn.client_ip, conn.server_ip
            f.update(
                client_address=self._addr(client_ip),
                client_port=conn.client_port,
                server_address=self._addr(server_ip),
                server_port=conn.server_port,
                network_type="ipv4" if len(server_ip) == 4 else "ipv6",
                transport="tcp",
                community_id=community_id(_TCP, client_ip, server_ip, conn.client_port, conn.server_port),
            )
        if req is not None:
            path, query = _split_target(req.target)
            f.update(method=req.method, url_path=path, url_query=query, request_body_size=req.body_size)
            f["request_headers"] = self.headers.pick(req.headers)
            f["user_agent"] = _first(req.headers, "user-agent")
            host = _first(req.headers, "host")
            if host:
                name, port = _host_port(host)
                f["server_address"] = name
                if port is not None:
                    f["server_port"] = port
            if req.truncated:
                f["request_truncated"] = True
        if resp is not None:
            f.update(status_code=resp.status, response_body_size=resp.body_size)
            f["response_headers"] = self.headers.pick(resp.headers)
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
