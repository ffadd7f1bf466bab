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


# -- HTTP records: header picking from accepted heads, JSON with flattened header maps ----------


def _http_record(**kw):
    from hdrlog.records import HttpRecord

    base = dict(ts="2026-01-01T00:00:00.000000000Z", type="http", role="client", method="GET", url_path="/",
                url_query="a=1", status_code=200, pid=1, executable_name="curl", community_id="1:x=")
    base.update(kw)
    return HttpRecord(**base)


def test_json_form_is_the_flattened_to_builtins_form():
    """json_form encodes to the same bytes as the dict to_builtins gives, whatever headers there are."""
    from hdrlog.records import json_form, to_builtins

    enc = msgspec.json.Encoder()
    cases = [
        _http_record(),
        _http_record(request_headers={"host": ["h"], "x-a": ["1", "2"]}),
        _http_record(response_headers={"server": ["nginx \"q\" \u00e9"]}),
        _http_record(request_headers={"host": ["h"]}, response_headers={"set-cookie": ["a=[REDACTED]"]},
                     command_line="x"),
        _http_record(request_headers={}, response_headers={}),
        _http_record(request_headers={}, response_headers={"a": []}),
    ]
    for rec in cases:
        assert enc.encode(json_form(rec)) == enc.encode(to_builtins(rec)), rec
    packet = PacketRecord(ts="t", type="packet", ip_src="10.0.0.1")
    assert json_form(packet) is packet


def test_header_picking_from_an_accepted_head_matches_the_split_fields():
    """The recorder's chosen headers, User-Agent and Host are the same from an accepted head's
    bytes as from its split fields, for the default, a listed and the `all` selection."""
    import random

    from hdrlog.l7_records import HeaderSelection, _first, _HeadPicker
    from hdrlog.protocols.http1 import _split_fields

    rng = random.Random(5)
    names = [b"Host", b"host", b"HOST", b"User-Agent", b"user-agent", b"Accept", b"X-Custom", b"Cookie", b"x-a"]
    for spec in (None, "x-custom,HOST", "all"):
        sel = HeaderSelection.parse(spec)
        picker = _HeadPicker(sel)
        for _ in range(300):
            lines = [b"GET / HTTP/1.1"] + [
                rng.choice(names) + b":" + rng.choice([b"", b" ", b"\t"]) + rng.choice([b"v", b"v w", b"", b"x" * 300])
                + rng.choice([b"", b" \t"]) for _ in range(rng.randrange(0, 7))
            ]
            head = b"\r\n".join(lines) + b"\r\n\r\n"
            fields = _split_fields(head)
            want = (sel.pick(fields), _first(fields, "user-agent"), _first(fields, "host"))
            assert picker.pick(head) == want, head
            assert picker.pick(head) == want, head  # remembered lines give the same
