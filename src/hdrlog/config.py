"""One typed configuration, from a YAML file and command-line flags (flags win).

Every error names the key it is about; the CLI turns ConfigError into exit 2.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import yaml

__all__ = ["Config", "ConfigError", "load", "PROTOCOLS", "TCP_FLAG_BITS", "parse_tcp_flags"]

PROTOCOLS = {"icmp": 1, "tcp": 6, "udp": 17, "icmpv6": 58, "ipv6-icmp": 58, "sctp": 132, "gre": 47}
TCP_FLAG_BITS = {
    "fin": 0x01, "syn": 0x02, "rst": 0x04, "psh": 0x08, "ack": 0x10,
    "urg": 0x20, "ece": 0x40, "cwr": 0x80, "ae": 0x100,
}  # fmt: skip

Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
# 1 MiB of packet records fits ~4000 headers; the kernel wants a power of two.
MIN_RING, MAX_RING = 1 << 16, 1 << 30
MAX_SNAPLEN = 1024  # HL_SNAPLEN_MAX in bpf/hdrlog_abi.h
MAX_CAPTURE = 8192  # HL_DATA_MAX in bpf/hdrlog_abi.h
MIN_FLOW_INTERVAL, MAX_FLOW_INTERVAL = 0.1, 86400.0
# the kernel preallocates the flow table: max_flows x CPUs x 72 bytes, plus ~100 bytes per flow
MIN_FLOWS, MAX_FLOWS = 16, 1 << 22
# settings that select packet records, with their "off" values: meaningless with flows_only
_RECORD_SELECTORS = {"snaplen": 0, "sample": 1, "first_packets": 0, "tcp_flags": None}


class ConfigError(ValueError):
    """A setting that is unknown, of the wrong type or out of range; the message names it."""


class Config(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    interface: list[str] = []  # empty: every interface that is up
    mode: Literal["tc", "xdp"] = "tc"
    xdp_mode: Literal["auto", "native", "generic"] = "auto"
    tc_attach: Literal["auto", "tcx", "legacy"] = "auto"
    proto: list[str | int] = []
    port: list[Port] = []
    net: list[str] = []
    not_net: list[str] = []
    tcp_flags: str | None = None
    sample: Annotated[int, msgspec.Meta(ge=1)] = 1
    first_packets: Annotated[int, msgspec.Meta(ge=0)] = 0
    snaplen: Annotated[int, msgspec.Meta(ge=0, le=MAX_SNAPLEN)] = 0
    output: str = "-"
    duration: Annotated[float, msgspec.Meta(gt=0)] | None = None
    count: Annotated[int, msgspec.Meta(ge=1)] | None = None
    ring_size: Annotated[int, msgspec.Meta(ge=MIN_RING, le=MAX_RING)] = 8 << 20
    drain_interval: Annotated[float, msgspec.Meta(gt=0, le=10)] = 0.05
    # flows: per-flow totals counted in the kernel
    flows: bool = False  # also write flow records
    flows_only: bool = False  # flow records only: no packet records, no L7
    flow_interval: Annotated[float, msgspec.Meta(ge=MIN_FLOW_INTERVAL, le=MAX_FLOW_INTERVAL)] = 10.0
    max_flows: Annotated[int, msgspec.Meta(ge=MIN_FLOWS, le=MAX_FLOWS)] = 65536
    flow_idle_timeout: Annotated[float, msgspec.Meta(gt=0)] = 60.0  # a flow idle this long is done
    # L7: socket syscalls
    l7: bool = True
    l7_only: bool = False
    pid: list[Annotated[int, msgspec.Meta(ge=1)]] = []
    comm: list[Annotated[str, msgspec.Meta(min_length=1, max_length=15)]] = []
    cgroup: list[str | int] = []  # cgroup v2 directories (or ids)
    headers: str | list[str] | None = None  # None: the default set; "all"; or names
    capture_bytes: Annotated[int, msgspec.Meta(ge=1, le=MAX_CAPTURE)] = 4096
    unix_sockets: bool = False
    l7_ring_size: Annotated[int, msgspec.Meta(ge=MIN_RING, le=MAX_RING)] = 16 << 20
    tls: bool = True  # probe OpenSSL for TLS plaintext (where it is found)
    ssl_lib: list[str] = []  # more OpenSSL libraries or statically linked binaries to probe
    redact: bool = True
    redact_mode: Literal["mask", "hash"] = "mask"
    redact_key: str | None = None  # hash mode: the key; default a random key per run
    redact_headers: list[str] = []  # more header names whose values are secret
    redact_params: list[str] = []  # more query parameter names whose values are secret

    # derived, checked forms (filled by load())
    def protocols(self) -> list[int]:
        return [_proto_number(p) for p in self.proto]

    def networks(self, key: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        return [_network(key, n) for n in getattr(self, key)]

    def tcp_flag_match(self) -> tuple[int, int, bool] | None:
        return parse_tcp_flags(self.tcp_flags) if self.tcp_flags else None


def _proto_number(p: str | int) -> int:
    if isinstance(p, int) or str(p).isdigit():
        n = int(p)
        if not 0 <= n <= 255:
            raise ConfigError(f"proto: {p} is not an IP protocol number (0-255)")
        return n
    name = str(p).lower()
    if name not in PROTOCOLS:
        raise ConfigError(f"proto: unknown protocol {p!r} (use {', '.join(PROTOCOLS)} or a number)")
    return PROTOCOLS[name]


def _network(key: str, text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise ConfigError(f"{key}: {text!r} is not an address or CIDR") from None


def parse_tcp_flags(text: str) -> tuple[int, int, bool]:
    """'syn,fin' -> any of them set; 'syn/syn,ack' -> of SYN and ACK exactly SYN is set.
    Returns (mask, value, match_any)."""

    def bits(part: str) -> int:
        out = 0
        for name in filter(None, (x.strip().lower() for x in part.split(","))):
            if name not in TCP_FLAG_BITS:
                raise ConfigError(
                    f"tcp_flags: unknown flag {name!r} (use {', '.join(TCP_FLAG_BITS)})"
                )
            out |= TCP_FLAG_BITS[name]
        return out

    if "/" in text:
        value_part, mask_part = text.split("/", 1)
        value, mask = bits(value_part), bits(mask_part)
        if not mask or value & ~mask:
            raise ConfigError(f"tcp_flags: in {text!r} the set flags must be among the examined ones")
        return mask, value, False
    mask = bits(text)
    if not mask:
        raise ConfigError("tcp_flags: no flags given")
    return mask, 0, True


def _check(cfg: Config) -> Config:
    cfg.protocols()
    cfg.networks("net")
    cfg.networks("not_net")
    cfg.tcp_flag_match()
    for key in ("ring_size", "l7_ring_size"):
        size = getattr(cfg, key)
        if size & (size - 1):
            raise ConfigError(f"{key}: {size} is not a power of two")
    if cfg.l7_only and not cfg.l7:
        raise ConfigError("l7_only: cannot be combined with l7: false (--no-l7)")
    for key in ("flows_only", "flows"):
        if getattr(cfg, key) and cfg.l7_only:
            raise ConfigError(f"{key}: flows come from the packet capture, which l7_only (--l7-only) turns off")
    if cfg.flows_only:
        for key, off in _RECORD_SELECTORS.items():
            if getattr(cfg, key) != off:
                raise ConfigError(f"{key}: selects packet records, and flows_only (--flows-only) writes none")
        cfg.flows = True
        cfg.l7 = False
    if cfg.redact_mode == "hash" and cfg.redact_key is not None and len(cfg.redact_key) < 16:
        raise ConfigError("redact_key: use at least 16 characters")
    for name in cfg.interface:
        if not name or "/" in name or len(name) > 15:
            raise ConfigError(f"interface: {name!r} is not an interface name")
    cfg.interface = list(dict.fromkeys(cfg.interface))  # -i a0,a0 watches a0 once
    return cfg


def _read_file(path: str) -> dict[str, Any]:
    try:
        text = Path(path).read_text()
    except OSError as e:
        raise ConfigError(f"config file {path}: {e.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path}: not valid YAML: {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: the top level must be a mapping of settings")
    # YAML users write first-packets or first_packets alike
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def load(path: str | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Settings from a YAML file, then from flags (None means not given)."""
    data = _read_file(path) if path else {}
    for key, value in (overrides or {}).items():
        if value is not None:
            data[key] = value
    try:
        cfg = msgspec.convert(data, Config, strict=False)
    except msgspec.ValidationError as e:
        raise ConfigError(_explain(str(e))) from None
    return _check(cfg)


def _explain(msg: str) -> str:
    """msgspec says '... - at `$.snaplen`' or 'Object contains unknown field `x`'; lead with the key."""
    if " - at `$." in msg:
        text, _, where = msg.partition(" - at `$.")
        return f"{where.rstrip('`')}: {text}"
    if msg.startswith("Object contains unknown field"):
        key = msg.split("`")[1]
        return f"{key}: unknown setting"
    return msg
