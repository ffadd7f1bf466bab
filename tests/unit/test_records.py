"""Records: JSON names, absent fields, and the field reference kept in step with the code."""

from __future__ import annotations

from pathlib import Path

import msgspec

from hdrlog.records import PacketRecord, markdown_reference

DOCS = Path(__file__).resolve().parents[2] / "docs" / "records.md"


def test_packet_record_uses_wireshark_names_and_omits_absent_fields():
    """Only the fields that were set are written, under their display-filter names."""
    rec = PacketRecord(ts="2026-01-01T00:00:00.000000001Z", type="packet", ip_src="10.0.0.1", tcp_flags_syn=False)
    assert msgspec.json.decode(msgspec.json.encode(rec)) == {
        "ts": "2026-01-01T00:00:00.000000001Z",
        "type": "packet",
        "ip.src": "10.0.0.1",
        "tcp.flags.syn": False,
    }


def test_every_json_name_is_unique():
    """No two fields of a record share a JSON name."""
    names = [f.encode_name for f in msgspec.structs.fields(PacketRecord)]
    assert len(names) == len(set(names))


def test_field_reference_is_current():
    """docs/records.md is what `python -m hdrlog.records` generates now."""
    assert DOCS.read_text() == markdown_reference(), "regenerate: python -m hdrlog.records > docs/records.md"


def test_field_reference_documents_every_field():
    """Every JSON field of a packet record appears in the reference."""
    text = DOCS.read_text()
    for f in msgspec.structs.fields(PacketRecord):
        assert f"`{f.encode_name}`" in text, f.encode_name
