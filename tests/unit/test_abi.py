"""The event ABI: the Python decoder's layouts equal the C structs in the built object's BTF,
and the enums the decoder names equal those in bpf/hdrlog_abi.h."""

from __future__ import annotations

import re
import struct
from pathlib import Path

import pytest

from hdrlog import decode as D
from hdrlog.bpf import ObjectSpec
from hdrlog.capture import packets as P

ABI_H = Path(__file__).resolve().parents[2] / "bpf" / "hdrlog_abi.h"


@pytest.fixture(scope="module")
def spec():
    try:
        path = P.object_path(P.PacketCapture.OBJECT)
    except P.ObjectMissingError as e:
        pytest.fail(str(e))  # the README's commands build it before the tests
    with ObjectSpec.open(path) as s:
        yield s


def _python_layout(fields) -> list[tuple[str, int, int]]:
    out, off = [], 0
    for name, fmt in fields:
        size = struct.calcsize("<" + fmt)
        out.append((name, off, size))
        off += size
    return out


def test_packet_event_layout_matches_btf(spec):
    """Every member of struct hl_packet has the decoder's name, offset and size."""
    btf = [(m.name, m.offset, m.size) for m in spec.struct_members("hl_packet")]
    assert _python_layout(D.PACKET_FIELDS) == btf
    assert D.PACKET_SIZE == spec.struct_size("hl_packet")


def test_settings_layout_matches_btf(spec):
    """struct hl_settings as packed by user space has the kernel's size and member offsets."""
    members = spec.struct_members("hl_settings")
    assert [m.name for m in members] == [
        "flags", "sample_every", "first_packets", "tcp_flags_mask", "tcp_flags_value", "protos", "wake_bytes", "_pad0",
    ]
    fmts = ["I", "I", "I", "H", "H", "32s", "I", "I"]
    assert _python_layout(zip([m.name for m in members], fmts)) == [(m.name, m.offset, m.size) for m in members]
    assert P._SETTINGS.size == spec.struct_size("hl_settings")


def _enum(name: str) -> list[str]:
    text = ABI_H.read_text()
    body = re.search(r"enum %s \{(.*?)\};" % name, text, re.S).group(1)
    return [m.group(1) for m in re.finditer(r"^\s*(HL_\w+)", body, re.M)]


def test_counter_names_follow_the_c_enum():
    """The decoder's counter names are the C enum hl_counter, in order."""
    names = [n for n in _enum("hl_counter") if n != "HL_CNT__MAX"]
    assert len(names) == len(D.COUNTERS)
    expected = {"HL_CNT_FIRST_N": "first_packets"}
    for c_name, py_name in zip(names, D.COUNTERS):
        assert expected.get(c_name, c_name.removeprefix("HL_CNT_").lower()) == py_name


def test_malformed_reasons_cover_the_c_enum():
    """Every malformed reason in C has a name in the decoder."""
    assert len(_enum("hl_malformed")) == len(D.MALFORMED)


def test_decode_rejects_short_and_foreign_events():
    """An event shorter than its layout, or with another type tag, is a DecodeError."""
    with pytest.raises(D.DecodeError):
        D.decode_packet(b"\x01" * 10)
    with pytest.raises(D.DecodeError):
        D.decode_packet(b"\x07" + b"\0" * (D.PACKET_SIZE - 1))
    claims_payload = bytearray(D.PACKET_SIZE)
    claims_payload[0] = D.EV_PACKET
    captured = next(off for name, off, _ in _python_layout(D.PACKET_FIELDS) if name == "captured")
    struct.pack_into("<H", claims_payload, captured, 100)  # captured = 100, nothing follows
    with pytest.raises(D.DecodeError):
        D.decode_packet(bytes(claims_payload))


@pytest.fixture(scope="module")
def sock_spec():
    from hdrlog.capture.sockets import SocketCapture

    try:
        path = P.object_path(SocketCapture.OBJECT)
    except P.ObjectMissingError as e:
        pytest.fail(str(e))
    with ObjectSpec.open(path) as s:
        yield s


@pytest.mark.parametrize(
    "struct_name,fields",
    [("hl_sock_id", D.SOCK_ID_FIELDS), ("hl_sock_data", D.SOCK_DATA_FIELDS), ("hl_sock_conn", D.SOCK_CONN_FIELDS)],
)
def test_socket_event_layouts_match_btf(sock_spec, struct_name, fields):
    """struct hl_sock_id, hl_sock_data and hl_sock_conn have the decoder's names, offsets and sizes."""
    btf = [(m.name, m.offset, m.size) for m in sock_spec.struct_members(struct_name)]
    assert _python_layout(fields) == btf
    assert sum(struct.calcsize("<" + f) for _, f in fields) == sock_spec.struct_size(struct_name)


def test_socket_settings_and_counters_follow_the_header(sock_spec):
    """struct hl_sock_settings has the packed size user space writes; counter names follow enum hl_sock_counter."""
    from hdrlog.capture import sockets as S

    assert S._SETTINGS.size == sock_spec.struct_size("hl_sock_settings")
    names = [n for n in _enum("hl_sock_counter") if n != "HL_SC__MAX"]
    assert [n.removeprefix("HL_SC_").lower() for n in names] == list(D.SOCK_COUNTERS)
    assert S.DATA_MAX == int(re.search(r"#define HL_DATA_MAX (\d+)", ABI_H.read_text()).group(1))


@pytest.mark.parametrize("struct_name,fields", [("hl_flow_id", "FLOW_ID_FIELDS"), ("hl_flow_stats", "FLOW_STATS_FIELDS")])
def test_flow_layouts_match_btf(spec, struct_name, fields):
    """struct hl_flow_id (the flow map's key) and hl_flow_stats (its per-CPU value) as flows.py reads them."""
    from hdrlog import flows as F

    btf = [(m.name, m.offset, m.size) for m in spec.struct_members(struct_name)]
    assert _python_layout(getattr(F, fields)) == btf
    assert sum(s for _, _, s in btf) == spec.struct_size(struct_name)


def test_flow_counter_names_follow_the_c_enum():
    """flows.FLOW_COUNTERS are enum hl_flow_counter, in order."""
    from hdrlog import flows as F

    names = [n for n in _enum("hl_flow_counter") if n != "HL_FC__MAX"]
    assert [n.removeprefix("HL_FC_").lower() for n in names] == list(F.FLOW_COUNTERS)
