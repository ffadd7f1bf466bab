"""Configuration: YAML and flags into one typed Config; every error names its key."""

from __future__ import annotations

import ipaddress

import pytest

from hdrlog import config
from hdrlog.config import ConfigError, load, parse_tcp_flags


def write(tmp_path, text: str) -> str:
    p = tmp_path / "hdrlog.yaml"
    p.write_text(text)
    return str(p)


def test_defaults():
    """With nothing given: TC on every interface, no filters, no payload, stdout."""
    cfg = load()
    assert (cfg.interface, cfg.mode, cfg.snaplen, cfg.output, cfg.sample) == ([], "tc", 0, "-", 1)


def test_yaml_then_flags(tmp_path):
    """Flags override the file; keys may use dashes or underscores."""
    path = write(tmp_path, "interface: [veth0]\nport: [53, 80]\nfirst-packets: 5\nsnaplen: 64\n")
    cfg = load(path, {"snaplen": 16, "interface": None})
    assert cfg.interface == ["veth0"] and cfg.port == [53, 80]
    assert cfg.first_packets == 5 and cfg.snaplen == 16


@pytest.mark.parametrize(
    "text,key",
    [
        ("bogus: 1\n", "bogus"),
        ("snaplen: abc\n", "snaplen"),
        ("snaplen: 5000\n", "snaplen"),
        ("port: [99999]\n", "port"),
        ("sample: 0\n", "sample"),
        ("mode: ebpf\n", "mode"),
        ("proto: [nosuch]\n", "proto"),
        ("net: [300.1.1.1/8]\n", "net"),
        ("not_net: [fe80::/129]\n", "not_net"),
        ("tcp_flags: bogus\n", "tcp_flags"),
        ("ring_size: 100000\n", "ring_size"),
        ("interface: ['a/b']\n", "interface"),
    ],
)
def test_errors_name_the_key(tmp_path, text, key):
    """A wrong key or value gives a ConfigError that starts with the key."""
    with pytest.raises(ConfigError) as e:
        load(write(tmp_path, text))
    assert str(e.value).startswith((f"{key}:", f"{key}[")), str(e.value)


def test_file_errors(tmp_path):
    """A missing file, invalid YAML or a non-mapping top level are ConfigErrors naming the file."""
    for path in (str(tmp_path / "none.yaml"), write(tmp_path, "a: [\n"), write(tmp_path, "- 1\n")):
        with pytest.raises(ConfigError, match="config file"):
            load(path)


def test_protocols_networks_and_flags_are_parsed():
    """Names and numbers for protocols, CIDRs for networks, flag specs into mask and value."""
    cfg = load(None, {"proto": ["tcp", "17", "icmpv6"], "net": ["10.0.0.0/8", "2001:db8::1"]})
    assert cfg.protocols() == [6, 17, 58]
    assert cfg.networks("net") == [ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::1/128")]


def test_tcp_flag_specs():
    """'a,b' matches any; 'a/a,b' examines a and b and wants exactly a."""
    assert parse_tcp_flags("syn,rst") == (0x06, 0, True)
    assert parse_tcp_flags("SYN/syn,ack") == (0x12, 0x02, False)
    assert parse_tcp_flags("ae") == (0x100, 0, True)
    for bad in ("", "syn/", "ack/syn", "nope"):
        with pytest.raises(ConfigError, match="^tcp_flags:"):
            parse_tcp_flags(bad)


def test_protocol_table_has_the_common_names():
    """The protocol names the help text mentions are all known."""
    for name in ("tcp", "udp", "icmp", "icmpv6"):
        assert name in config.PROTOCOLS


def test_flow_settings():
    """--flows-only turns flows on and L7 off; intervals and table sizes are checked; settings that only
    select packet records are refused with --flows-only, and flows need the packet capture."""
    cfg = load(None, {"flows_only": True})
    assert (cfg.flows, cfg.l7, cfg.flow_interval, cfg.max_flows) == (True, False, 10.0, 65536)
    cfg = load(None, {"flows": True, "flow_interval": 0.5, "max_flows": 1024, "snaplen": 64})
    assert (cfg.flows, cfg.l7, cfg.flow_interval, cfg.max_flows, cfg.snaplen) == (True, True, 0.5, 1024, 64)
    bad = [
        ({"flow_interval": 0}, "flow_interval"),
        ({"flow_interval": "soon"}, "flow_interval"),
        ({"max_flows": 0}, "max_flows"),
        ({"max_flows": 1 << 30}, "max_flows"),
        ({"flow_idle_timeout": -1}, "flow_idle_timeout"),
        ({"flows_only": True, "l7_only": True}, "flows_only"),
        ({"flows": True, "l7_only": True}, "flows"),
        ({"flows_only": True, "snaplen": 64}, "snaplen"),
        ({"flows_only": True, "sample": 10}, "sample"),
        ({"flows_only": True, "first_packets": 3}, "first_packets"),
        ({"flows_only": True, "tcp_flags": "syn"}, "tcp_flags"),
    ]
    for overrides, key in bad:
        with pytest.raises(ConfigError) as e:
            load(None, overrides)
        assert str(e.value).startswith(f"{key}:"), (overrides, str(e.value))

