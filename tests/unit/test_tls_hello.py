"""TLS hello parser: hellos reassembled from chunks however split; JA3, JA3S and JA4 per spec."""

from __future__ import annotations

import dataclasses
import json
import random
import time
from pathlib import Path

import pytest

from hdrlog.protocols.tls_hello import (
    CLIENT,
    HRR_RANDOM,
    MAX_HELLO_BYTES,
    MAX_RECORD,
    SERVER,
    ClientHello,
    HelloFailure,
    HelloParser,
    ServerHello,
    cipher_name,
    is_grease,
    ja3,
    ja3s,
    ja4,
    looks_like_tls,
    version_name,
)
from tests.splits import pieces

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "tls"
C, S = CLIENT, SERVER
GREASE = [0x0A0A + 0x1010 * i for i in range(16)]


# -- harness: every input runs whole, byte by byte and at seeded random splits ---------------------


def run(events, mode="whole", seed=0, parser=None, close_ts=None):
    """Feed events, (side, bytes, ts) or ("gap", side, n, ts), and return everything emitted."""
    rng = random.Random(seed)
    p = parser or HelloParser()
    out = []
    for ev in events:
        if ev[0] == "gap":
            out += p.gap(ev[1], ev[2], ev[3])
        else:
            for piece in pieces(ev[1], mode, rng):
                out += p.feed(ev[0], piece, ev[2])
        for side in (C, S):
            assert p.buffered(side) <= p._max + 7, "buffer over its bound"
    if close_ts is not None:
        out += p.close(close_ts)
    return out


def parse(events, bytewise=True, seeds=4, close_ts=None, **kw):
    """The output of feeding events whole, asserted identical byte by byte and at random splits."""
    whole = run(events, "whole", close_ts=close_ts, parser=HelloParser(**kw))
    if bytewise:
        assert run(events, "bytes", close_ts=close_ts, parser=HelloParser(**kw)) == whole, (
            "byte by byte"
        )
    for seed in range(seeds):
        assert run(events, "random", seed, close_ts=close_ts, parser=HelloParser(**kw)) == whole, (
            f"seed {seed}"
        )
    return whole


def render(rec) -> dict:
    key = {ClientHello: "client_hello", ServerHello: "server_hello", HelloFailure: "failure"}[
        type(rec)
    ]
    return {key: dataclasses.asdict(rec)}


def _decode(data: str) -> bytes:
    return bytes.fromhex(data[4:]) if data.startswith("hex:") else data.encode("latin-1")


def corpus_events(chunks) -> list:
    return [
        ("gap", c[1], c[2], c[3]) if c[0] == "gap" else (c[0], _decode(c[1]), c[2]) for c in chunks
    ]


def corpus_output(chunks) -> list[dict]:
    """A corpus file's `expected`: the records its chunks give, as JSON values."""
    return [render(r) for r in parse(corpus_events(chunks), bytewise=False, seeds=0)]


# -- building hellos -------------------------------------------------------------------------------


def u16(v: int) -> bytes:
    return v.to_bytes(2, "big")


def vec8(b: bytes) -> bytes:
    return bytes([len(b)]) + b


def vec16(b: bytes) -> bytes:
    return u16(len(b)) + b


def ext(t: int, body: bytes = b"") -> bytes:
    return u16(t) + vec16(body)


def sni_ext(name: bytes) -> bytes:
    return ext(0, vec16(b"\x00" + vec16(name)))  # RFC 6066 3: ServerNameList of one host_name


def alpn_ext(names: list[bytes]) -> bytes:
    return ext(16, vec16(b"".join(vec8(n) for n in names)))  # RFC 7301 3.1


def u16s_ext(t: int, values: list[int]) -> bytes:
    return ext(t, vec16(b"".join(u16(v) for v in values)))


def versions_ext(values: list[int]) -> bytes:
    return ext(43, vec8(b"".join(u16(v) for v in values)))  # RFC 8446 4.2.1, ClientHello form


def client_body(ciphers, exts=None, version=0x0303, session_id=b"", rnd=bytes(range(32))) -> bytes:
    """A ClientHello body (RFC 8446 4.1.2); exts=None leaves the extensions block out."""
    body = (
        u16(version)
        + rnd
        + vec8(session_id)
        + vec16(b"".join(u16(c) for c in ciphers))
        + vec8(b"\x00")
    )
    return body if exts is None else body + vec16(b"".join(exts))


def server_body(
    cipher, exts=None, version=0x0303, rnd=bytes(range(32, 64)), session_id=b"\x07" * 32
) -> bytes:
    """A ServerHello body (RFC 8446 4.1.3)."""
    body = u16(version) + rnd + vec8(session_id) + u16(cipher) + b"\x00"
    return body if exts is None else body + vec16(b"".join(exts))


def handshake(msg_type: int, body: bytes) -> bytes:
    return bytes([msg_type]) + len(body).to_bytes(3, "big") + body  # RFC 8446 4


def records(payload: bytes, ctype: int = 22, version: int = 0x0301, size: int = 2**14) -> bytes:
    """payload in TLSPlaintext records of at most `size` bytes (RFC 8446 5.1)."""
    return b"".join(
        bytes([ctype]) + u16(version) + vec16(payload[i : i + size])
        for i in range(0, len(payload), size)
    )


def ch(body: bytes, **kw) -> bytes:
    return records(handshake(1, body), **kw)


def sh(body: bytes, **kw) -> bytes:
    return records(handshake(2, body), version=0x0303, **kw)


def spec_hello(
    ciphers,
    ext_types,
    sigs,
    *,
    sni=b"example.com",
    alpn=(b"h2", b"http/1.1"),
    versions=(0x0304, 0x0303),
):
    """A ClientHello offering exactly these ciphers, extension types (in order) and sig algs."""
    exts = []
    for t in ext_types:
        if t == 0:
            exts.append(sni_ext(sni))
        elif t == 16:
            exts.append(alpn_ext(list(alpn)))
        elif t == 13:
            exts.append(u16s_ext(13, sigs))
        elif t == 43:
            exts.append(versions_ext(list(versions)))
        elif t == 10:
            exts.append(u16s_ext(10, [0x001D, 0x0017, 0x0018]))
        elif t == 11:
            exts.append(ext(11, vec8(b"\x00")))
        elif t == 0x33:
            exts.append(ext(0x33, vec16(u16(0x001D) + vec16(b"\x11" * 32))))
        elif t == 0x15:
            exts.append(ext(0x15, bytes(17)))
        else:
            exts.append(ext(t))
    return client_body(ciphers, exts)


# -- JA4: the specification's published examples ---------------------------------------------------

# github.com/FoxIO-LLC/ja4 technical_details/JA4.md, "Cipher hash", "Extension hash", "Example"
# and "Raw Output" (the same values are rust/ja4/src/tls.rs's test_client_stats_into_out)
SPEC_CIPHERS = [
    0x1301,
    0x1302,
    0x1303,
    0xC02B,
    0xC02F,
    0xC02C,
    0xC030,
    0xCCA9,
    0xCCA8,
    0xC013,
    0xC014,
    0x009C,
    0x009D,
    0x002F,
    0x0035,
]
SPEC_EXTS = [
    0x001B,
    0x0000,
    0x0033,
    0x0010,
    0x4469,
    0x0017,
    0x002D,
    0x000D,
    0x0005,
    0x0023,
    0x0012,
    0x002B,
    0xFF01,
    0x000B,
    0x000A,
    0x0015,
]
SPEC_SIGS = [0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601]
SPEC_JA4 = "t13d1516h2_8daaf6152771_e5627efa2ab1"
SPEC_JA4_R = (
    "t13d1516h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_"
    "0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_"
    "0403,0804,0401,0503,0805,0501,0806,0601"
)


def test_ja4_spec_example():
    """JA4.md's worked example gives its published JA4 and JA4_r."""
    fp, raw = ja4(
        legacy_version=0x0303,
        supported_versions=[0x0304, 0x0303],
        cipher_suites=SPEC_CIPHERS,
        extensions=SPEC_EXTS,
        signature_algorithms=SPEC_SIGS,
        first_alpn=b"h2",
    )
    assert (fp, raw) == (SPEC_JA4, SPEC_JA4_R)


def test_ja4_spec_example_on_the_wire_with_grease():
    """The spec's example sent as a real ClientHello, with GREASE everywhere, gives the same JA4."""
    ciphers = [GREASE[3], *SPEC_CIPHERS]
    exts = [GREASE[1], *SPEC_EXTS, GREASE[15]]
    body = spec_hello(ciphers, exts, [GREASE[5], *SPEC_SIGS], versions=(GREASE[7], 0x0304, 0x0303))
    (hello,) = parse([(C, ch(body), 1)])
    assert hello.ja4 == SPEC_JA4 and hello.ja4_r == SPEC_JA4_R
    assert hello.cipher_suites == ciphers and hello.extensions == exts  # raw lists keep GREASE
    assert hello.supported_versions == [0x0304, 0x0303]
    assert hello.server_name == "example.com" and hello.alpn == ["h2", "http/1.1"]


def test_ja4_spec_example_without_signature_algorithms():
    """JA4.md: with no signature algorithms the c string has no underscore (= 6d807ffa2a79)."""
    fp, raw = ja4(
        legacy_version=0x0303,
        supported_versions=[0x0304],
        cipher_suites=SPEC_CIPHERS,
        extensions=SPEC_EXTS,
        signature_algorithms=[],
        first_alpn=b"h2",
    )
    assert fp == "t13d1516h2_8daaf6152771_6d807ffa2a79"
    assert raw.endswith("_0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01")


def test_ja4_sigalg_grease_reference_capture():
    """The reference implementation's sigalg-grease capture: its hello rebuilt gives its JA4."""
    # FoxIO-LLC/ja4 python/test/testdata/sigalg-grease.pcapng.json (JA4_ro.1: the offered order) and
    # rust/ja4/src/snapshots/ja4__insta@sigalg-grease.pcapng.snap (ja4); GREASE added to sig algs
    ciphers = [
        0x1301,
        0x1302,
        0x1303,
        0xC02B,
        0xC02F,
        0xC02C,
        0xC030,
        0xCCA9,
        0xCCA8,
        0xC013,
        0xC014,
        0x009C,
        0x009D,
        0x002F,
        0x0035,
    ]
    exts = [
        0xFE0D,
        0x0010,
        0x0017,
        0x0033,
        0x44CD,
        0xFF01,
        0x000A,
        0x000D,
        0x0023,
        0x002B,
        0x000B,
        0xCA34,
        0x002D,
        0x0000,
        0x0005,
        0x001B,
        0x0012,
    ]
    sigs = [0x0904, 0x0905, 0x0906, 0x0403, 0x0804, 0x0401, 0x0503, 0x0805, 0x0501, 0x0806, 0x0601]
    body = spec_hello(
        [GREASE[2], *ciphers],
        [GREASE[9], *exts],
        [GREASE[4], *sigs],
        sni=b"optimizationguide-pa.googleapis.com",
    )
    (hello,) = parse([(C, ch(body), 1)], bytewise=False)
    assert hello.ja4 == "t13d1517h2_8daaf6152771_cb7bf5808d99"
    assert hello.ja4_r == (
        "t13d1517h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_"
        "0005,000a,000b,000d,0012,0017,001b,0023,002b,002d,0033,44cd,ca34,fe0d,ff01_"
        "0904,0905,0906,0403,0804,0401,0503,0805,0501,0806,0601"
    )


@pytest.mark.parametrize(
    "alpn, part",
    [
        # JA4.md "ALPN Extension Value", its examples first
        ([b"h2"], "h2"),
        ([b"http/1.1", b"h2"], "h1"),
        ([b"\xab"], "ab"),
        ([b"\xab\xcd"], "ad"),
        ([b"\x30\xab"], "3b"),
        ([b"\x30\x31\xab\xcd"], "3d"),
        ([b"\x30\xab\xcd\x31"], "01"),
        ([b"h"], "hh"),  # "a single character ... is treated as both the first and last character"
        ([b""], "00"),  # the first ALPN value is empty
        ([], "00"),  # an ALPN extension with no values
        (None, "00"),  # no ALPN extension
    ],
)
def test_ja4_alpn_characters(alpn, part):
    """The ALPN characters of JA4_a follow JA4.md's rules and examples."""
    exts = [sni_ext(b"a.example"), u16s_ext(13, [0x0403])]
    if alpn is not None:
        exts.append(ext(16, vec16(b"".join(vec8(n) for n in alpn))))
    (hello,) = parse([(C, ch(client_body([0x1301], exts)), 1)], bytewise=False)
    assert hello.ja4[8:10] == part
    assert hello.ja4.startswith(f"t12d01{len(exts):02d}")


def test_ja4_version_and_counts():
    """JA4_a: highest supported_versions entry else legacy_version, SNI flag, counts up to 99."""

    def a(**kw):
        args = {
            "legacy_version": 0x0303,
            "supported_versions": [],
            "cipher_suites": [0x1301],
            "extensions": [],
            "signature_algorithms": [],
            "first_alpn": None,
        }
        return ja4(**(args | kw))[0][:10]

    assert a(supported_versions=[0x0303, 0x0304], extensions=[43]) == "t13i010100"
    assert a(supported_versions=[0x0304], extensions=[]) == "t12i010000"  # no extension: legacy
    assert a(supported_versions=[GREASE[0]], extensions=[43]) == "t12i010100"  # GREASE only
    assert a(legacy_version=0x0300) == "ts3i010000"
    assert a(legacy_version=0x0002) == "ts2i010000"
    assert a(legacy_version=0x7F1C) == "t00i010000"
    assert a(cipher_suites=list(range(1, 150)), extensions=list(range(1, 120))) == "t12i999900"
    assert a(cipher_suites=[*GREASE, 0x1301], extensions=[0, *GREASE]) == "t12d010100"


def test_ja4_empty_parts_are_zeros():
    """JA4.md: no ciphers or no extensions (after SNI and ALPN) gives 000000000000."""
    fp, raw = ja4(
        legacy_version=0x0303,
        supported_versions=[],
        cipher_suites=[GREASE[0]],
        extensions=[0, 16],
        signature_algorithms=[],
        first_alpn=b"h2",
    )
    assert fp == "t12d0002h2_000000000000_000000000000"
    assert raw == "t12d0002h2__"


# -- JA3 / JA3S: salesforce/ja3 README examples ----------------------------------------------------


def test_ja3_spec_examples():
    """salesforce/ja3 README: its two example strings and their MD5 hashes."""
    s, h = ja3(
        769,
        [47, 53, 5, 10, 49161, 49162, 49171, 49172, 50, 56, 19, 4],
        [0, 10, 11],
        [23, 24, 25],
        [0],
    )
    assert (s, h) == (
        "769,47-53-5-10-49161-49162-49171-49172-50-56-19-4,0-10-11,23-24-25,0",
        "ada70206e40642a3e4461f35503241d5",
    )
    s, h = ja3(769, [4, 5, 10, 9, 100, 98, 3, 6, 19, 18, 99], [], [], [])
    assert (s, h) == ("769,4-5-10-9-100-98-3-6-19-18-99,,,", "de350869b8c85de67a350c8d186f11e6")


def test_ja3_spec_examples_on_the_wire():
    """The README's examples sent as ClientHellos (one with GREASE added) give the same JA3."""
    body = client_body(
        [GREASE[0], 47, 53, 5, 10, 49161, 49162, 49171, 49172, 50, 56, 19, 4],
        [
            sni_ext(b"x.example"),
            ext(GREASE[2]),
            u16s_ext(10, [GREASE[4], 23, 24, 25]),
            ext(11, vec8(b"\x00")),
        ],
        version=0x0301,
    )
    (hello,) = parse([(C, ch(body), 1)])
    assert hello.ja3 == "ada70206e40642a3e4461f35503241d5"
    assert hello.supported_groups == [GREASE[4], 23, 24, 25]  # as offered
    body = client_body(
        [4, 5, 10, 9, 100, 98, 3, 6, 19, 18, 99], None, version=0x0301
    )  # no extensions
    (hello,) = parse([(C, ch(body, version=0x0300), 1)])
    assert hello.ja3_string == "769,4-5-10-9-100-98-3-6-19-18-99,,," and hello.extensions == []
    assert hello.ja3 == "de350869b8c85de67a350c8d186f11e6" and hello.record_version == 0x0300


def test_ja3s():
    """JA3S is SSLVersion,Cipher,SSLExtension in decimal (README "JA3S"), GREASE left out."""
    assert ja3s(771, 49199, [65281, 0, 11, GREASE[0], 35, 16]) == (
        "771,49199,65281-0-11-35-16",
        __import__("hashlib").md5(b"771,49199,65281-0-11-35-16").hexdigest(),
    )
    (hello,) = parse([(S, sh(server_body(0xC02F, [ext(0xFF01, b"\x00"), ext(0)])), 5)])
    assert hello.ja3s_string == "771,49199,65281-0"


# -- the corpus: real handshakes (tests/corpus/tls/README.md) --------------------------------------

CORPUS_FILES = sorted(CORPUS.glob("*.json"))


def _load(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.parametrize("path", CORPUS_FILES, ids=[p.stem for p in CORPUS_FILES])
def test_corpus(path):
    """A captured handshake gives its expected hellos whole, byte by byte and at random splits."""
    case = _load(path)
    out = parse(corpus_events(case["chunks"]), bytewise=len(case["chunks"]) < 40)
    assert [render(r) for r in out] == case["expected"]


def test_corpus_is_there():
    """The corpus holds the captured TLS 1.2 and 1.3, curl and openssl handshakes."""
    names = {p.stem for p in CORPUS_FILES}
    assert {
        "openssl_tls13_sni_alpn",
        "openssl_tls12_sni_alpn",
        "curl_tls13_h2",
        "curl_tls12_http11",
        "openssl_tls13_hello_retry",
        "openssl_large_clienthello_cut",
    } <= names


def _ints(s: str) -> list[int]:
    return [int(v, 0) for v in s.split(",") if v]


TSHARK_CASES = [p for p in CORPUS_FILES if _load(p).get("tshark")]


@pytest.mark.parametrize("path", TSHARK_CASES, ids=[p.stem for p in TSHARK_CASES])
def test_corpus_agrees_with_tshark(path):
    """What tshark dissected from the same handshake at capture time equals the parser's fields."""
    case = _load(path)
    out = run(corpus_events(case["chunks"]))
    hello = next(r for r in out if isinstance(r, ClientHello))
    t = case["tshark"]["client"]
    assert hello.ja3 == t["tls.handshake.ja3"]
    assert hello.ja3_string == t["tls.handshake.ja3_full"]
    assert hello.server_name == (t["tls.handshake.extensions_server_name"] or None)
    assert ",".join(hello.alpn) == t["tls.handshake.extensions_alpn_str"]
    assert hello.supported_versions == _ints(t["tls.handshake.extensions.supported_version"])
    assert hello.cipher_suites == _ints(t["tls.handshake.ciphersuite"])
    assert hello.extensions == _ints(t["tls.handshake.extension.type"])
    assert hello.signature_algorithms == _ints(t["tls.handshake.sig_hash_alg"])
    server = next(r for r in out if isinstance(r, ServerHello))
    t = case["tshark"]["server"]
    assert (
        server.ja3s == t["tls.handshake.ja3s"]
        and server.ja3s_string == t["tls.handshake.ja3s_full"]
    )
    assert server.cipher_suite == int(t["tls.handshake.ciphersuite"], 0)
    assert server.extensions == _ints(t["tls.handshake.extension.type"])
    assert server.version == int(t["tls.handshake.extensions.supported_version"] or "0x0303", 0)
    assert server.alpn == (t["tls.handshake.extensions_alpn_str"] or None)


def test_large_hello_cut_to_the_capture_prefix():
    """A 20 KiB ClientHello cut at hdrlog's 8 KiB prefix keeps the fields that were seen in full."""
    full = _load(CORPUS / "openssl_large_clienthello.json")["expected"][0]["client_hello"]
    cut = _load(CORPUS / "openssl_large_clienthello_cut.json")["expected"][0]["client_hello"]
    assert full["truncated"] is False and cut["truncated"] is True
    assert cut["ja3"] is cut["ja4"] is cut["ja4_r"] is cut["ja3_string"] is None
    assert cut["cipher_suites"] == full["cipher_suites"] and cut["server_name"] == "example.test"
    assert cut["alpn"] == [] and 16 not in cut["extensions"]  # the ALPN extension was cut
    assert cut["extensions"] == full["extensions"][: len(cut["extensions"])]
    assert len(full["alpn"]) == 100


# -- reassembly ------------------------------------------------------------------------------------


def _basic():
    return client_body(
        [0x1301, 0x1302], [sni_ext(b"a.example"), alpn_ext([b"h2"]), versions_ext([0x0304])]
    )


def test_hello_over_many_records_and_feeds():
    """A ClientHello in 7-byte records, fed in pieces across several feeds, is reassembled."""
    wire = ch(_basic(), size=7)
    events = [(C, wire[i : i + 11], 100 + i) for i in range(0, len(wire), 11)]
    (hello,) = parse(events)
    assert (
        hello.server_name == "a.example" and hello.ts_start == 100 and hello.ts_end == events[-1][2]
    )
    assert hello.ja4.startswith("t13d0203h2_") and not hello.truncated


def test_records_after_the_hello_are_ignored():
    """Bytes after each hello (CCS, encrypted records, garbage) in the same feed are ignored."""
    tail = records(b"\x01", ctype=20) + records(b"\x99" * 40, ctype=23) + b"garbage"
    server = sh(server_body(0x1301, [ext(43, u16(0x0304))])) + tail
    out = parse([(C, ch(_basic()) + tail, 1), (S, server, 2), (C, b"more", 3), (S, b"more", 4)])
    assert [type(r) for r in out] == [ClientHello, ServerHello]
    assert (
        out[1].version == 0x0304
        and out[1].cipher_suite == 0x1301
        and out[1].legacy_version == 0x0303
    )


def test_server_flight_in_one_record():
    """A TLS 1.2 ServerHello sharing its record with Certificate and ServerHelloDone is parsed."""
    flight = (
        handshake(2, server_body(0xC02F, [alpn_ext([b"http/1.1"])]))
        + handshake(11, b"\x00" * 30)
        + handshake(14, b"")
    )
    (hello,) = parse([(S, records(flight, version=0x0303), 7)])
    assert hello.alpn == "http/1.1" and hello.version == 0x0303 and hello.extensions == [16]
    assert cipher_name(hello.cipher_suite) == "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"


def test_done_after_both_hellos():
    """The parser is done once both hellos are seen, and ignores further input."""
    p = HelloParser()
    assert p.feed(C, ch(_basic()), 1) and not p.done
    assert p.feed(S, sh(server_body(0x1301)), 2) and p.done
    assert p.feed(C, ch(_basic()), 3) == [] and p.gap(S, 10, 4) == [] and p.close(5) == []


def test_hello_retry_request():
    """A ServerHello whose random is RFC 8446 4.1.3's constant is flagged as a HelloRetryRequest."""
    assert HRR_RANDOM.hex() == "cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c"
    (hello,) = parse([(S, sh(server_body(0x1302, [ext(43, u16(0x0304))], rnd=HRR_RANDOM)), 1)])
    assert hello.hello_retry_request and hello.version == 0x0304
    (hello,) = parse([(S, sh(server_body(0x1302)), 1)])
    assert not hello.hello_retry_request


# -- failures --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "first, data, reason",
    [
        (C, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "not a TLS record (first byte 0x47)"),
        (S, b"220 smtp.example ESMTP\r\n", "not a TLS record (first byte 0x32)"),
        (C, b"\x16\x02\x00\x00\x10", "not a TLS record (version major 2)"),
        (C, b"\x16\x03\x05\x00\x10", "not a TLS record (version 3.5)"),
        (C, b"\x80\x2e\x01\x00\x02", "not a TLS record (first byte 0x80)"),  # SSL 2.0 CLIENT-HELLO
        (C, b"\x17\x03\x03\x00\x10" + bytes(16), "application_data record before the ClientHello"),
        (C, b"\x16\x03\x01\x00\x00", "empty TLS record"),
        (C, b"\x16\x03\x01\xff\xff", "TLS record of 65535 bytes (more than 2^14 + 2048)"),
    ],
)
def test_not_tls_is_one_failure_and_done(first, data, reason):
    """Bytes that are not a TLS record where the first should be: one failure, parser done."""
    other = S if first == C else C
    p = HelloParser()
    out = run([(first, data, 9), (other, ch(_basic()), 10)], parser=p)
    assert out == [HelloFailure(side=first, reason=reason, ts=9)] and p.done
    assert parse([(first, data, 9), (other, ch(_basic()), 10)]) == out


def test_non_tls_fails_on_its_first_byte():
    """Non-TLS bytes are reported as soon as one byte has arrived."""
    p = HelloParser()
    assert p.feed(C, b"G", 1) == [
        HelloFailure(side=C, reason="not a TLS record (first byte 0x47)", ts=1)
    ]


def test_alert_instead_of_server_hello():
    """A server that answers with an alert gives a failure naming it; the ClientHello stands."""
    out = parse([(C, ch(_basic()), 1), (S, b"\x15\x03\x03\x00\x02\x02\x28", 2)])
    assert isinstance(out[0], ClientHello)
    assert out[1] == HelloFailure(
        side=S, reason="alert 40 (handshake_failure, level 2) before the ServerHello", ts=2
    )


@pytest.mark.parametrize(
    "side, wire, reason",
    [
        (
            S,
            records(handshake(11, b"\x00" * 8), version=0x0303),
            "handshake message type 11 where the ServerHello should be",
        ),
        (
            C,
            records(handshake(2, server_body(0x1301))),
            "handshake message type 2 where the ClientHello should be",
        ),
        (
            C,
            records(b"\x01" + (MAX_HELLO_BYTES + 1).to_bytes(3, "big")),
            f"ClientHello of {MAX_HELLO_BYTES + 1} bytes (limit {MAX_HELLO_BYTES})",
        ),
        # an odd cipher_suites length (RFC 8446 4.1.2: CipherSuite is 2 bytes)
        (
            C,
            ch(u16(0x0303) + bytes(32) + b"\x00" + b"\x00\x03\x13\x01\x00" + b"\x01\x00"),
            "malformed ClientHello (cipher suites)",
        ),
        # an extension longer than the extensions block, and a block longer than the hello
        (
            C,
            ch(client_body([0x1301]) + b"\x00\x04\x00\x00\x00\x09"),
            "malformed ClientHello (extensions)",
        ),
        (
            C,
            ch(client_body([0x1301]) + b"\x00\x09\x00\x00\x00\x00"),
            "malformed ClientHello (extensions)",
        ),
        (C, ch(b"\x03\x03" + bytes(10)), "malformed ClientHello (random)"),
        (S, sh(server_body(0x1301) + b"\x00\x10\x00\x2b"), "malformed ServerHello (extensions)"),
        (
            S,
            sh(u16(0x0303) + bytes(32) + b"\x21" + bytes(40)),
            "malformed ServerHello (session id)",
        ),
        (C, records(b"\x01\x00\x00\x00"), "malformed ClientHello (version)"),
    ],
)
def test_failures(side, wire, reason):
    """Wrong message types, a hello over the limit and malformed hellos fail with a reason."""
    assert parse([(side, wire, 3)]) == [HelloFailure(side=side, reason=reason, ts=3)]


def test_failure_on_one_side_leaves_the_other():
    """A malformed ClientHello does not stop the ServerHello from being parsed."""
    out = parse([(C, records(handshake(1, b"\x03\x03")), 1), (S, sh(server_body(0x1301)), 2)])
    assert isinstance(out[0], HelloFailure) and isinstance(out[1], ServerHello)


def test_hello_limit_is_configurable():
    """max_hello_bytes bounds the hello; a hello just under it is parsed."""
    body = _basic()
    assert parse([(C, ch(body), 1)], max_hello_bytes=len(body))[0].server_name == "a.example"
    (fail,) = parse([(C, ch(body), 1)], max_hello_bytes=len(body) - 1)
    assert fail.reason == f"ClientHello of {len(body)} bytes (limit {len(body) - 1})"
    with pytest.raises(ValueError):
        HelloParser(max_hello_bytes=0)


def test_hello_at_the_default_limit():
    """A ClientHello of exactly MAX_HELLO_BYTES (over several records) is parsed."""
    pad = MAX_HELLO_BYTES - len(client_body([0x1301], [sni_ext(b"big.example"), ext(0x15)]))
    body = client_body([0x1301], [sni_ext(b"big.example"), ext(0x15, bytes(pad))])
    assert len(body) == MAX_HELLO_BYTES
    (hello,) = parse([(C, ch(body), 1)], bytewise=False)
    assert hello.server_name == "big.example" and hello.extensions == [0, 0x15]


def test_malformed_extension_content_is_ignored():
    """An extension whose inner lengths disagree counts as offered but yields no values."""
    exts = [
        ext(0, b"\x00\x09\x00\x00\x01a"),
        ext(16, b"\x00\x01"),
        ext(13, b"\x00\x03\x04\x03\x05"),
        versions_ext([0x0304]),
    ]
    (hello,) = parse([(C, ch(client_body([0x1301], exts)), 1)])
    assert hello.server_name is None and hello.alpn == [] and hello.signature_algorithms == []
    assert hello.extensions == [0, 16, 13, 43] and hello.ja4.startswith("t13d0104")


def test_sni_is_ascii_with_other_bytes_escaped():
    """A host name with non-ASCII bytes is kept visible as backslash escapes."""
    (hello,) = parse([(C, ch(client_body([0x1301], [sni_ext(b"caf\xc3\xa9.example")])), 1)])
    assert hello.server_name == "caf\\xc3\\xa9.example"


# -- gaps and close --------------------------------------------------------------------------------


def test_gap_inside_the_hello_truncates_it():
    """A gap inside the extensions emits the hello truncated, with the fields seen in full only."""
    body = client_body(
        [0x1301, 0xC02F], [sni_ext(b"seen.example"), u16s_ext(10, [0x1D]), alpn_ext([b"h2"] * 50)]
    )
    wire = ch(body)
    cut = len(wire) - 20  # inside the ALPN extension
    (hello,) = parse([(C, wire[:cut], 5), ("gap", C, 20, 5)])
    assert hello.truncated and hello.ts_end == 5
    assert hello.server_name == "seen.example" and hello.supported_groups == [0x1D]
    assert (
        hello.extensions == [0, 10] and hello.alpn == [] and hello.cipher_suites == [0x1301, 0xC02F]
    )
    assert (
        hello.ja3 is None and hello.ja4 is None and hello.ja4_r is None and hello.ja3_string is None
    )


def test_gap_inside_the_cipher_list():
    """A gap inside the cipher suites leaves the list (and all after it) out."""
    wire = ch(client_body(list(range(1, 60)), [sni_ext(b"late.example")]))
    (hello,) = parse([(C, wire[:60], 1), ("gap", C, len(wire) - 60, 1)])
    assert hello.truncated and hello.cipher_suites == [] and hello.server_name is None
    assert hello.legacy_version == 0x0303 and hello.record_version == 0x0301


def test_gap_cases_that_fail():
    """A gap before the hello, in its header or before its version is a failure, not a hello."""
    assert parse([("gap", C, 100, 1)]) == [
        HelloFailure(side=C, reason="a gap before the ClientHello", ts=1)
    ]
    wire = ch(_basic())
    assert parse([(C, wire[:7], 1), ("gap", C, 50, 2)]) == [
        HelloFailure(side=C, reason="a gap at the start of the ClientHello", ts=2)
    ]
    assert parse([(C, wire[:10], 1), ("gap", C, 50, 2)]) == [
        HelloFailure(side=C, reason="a gap cut the ClientHello before its version", ts=2)
    ]
    srv = sh(server_body(0x1301))
    assert parse([(S, srv[:30], 1), ("gap", S, 50, 2)]) == [
        HelloFailure(side=S, reason="a gap cut the ServerHello before its cipher suite", ts=2)
    ]


def test_gap_after_the_hello_is_ignored():
    """A gap after a complete hello (the rest of a big write) changes nothing."""
    (hello,) = parse([(C, ch(_basic()), 1), ("gap", C, 5000, 1), (C, b"\x17\x03\x03", 2)])
    assert not hello.truncated
    assert parse([(C, ch(_basic()), 1), ("gap", C, 0, 1)]) == parse([(C, ch(_basic()), 1)])
    with pytest.raises(ValueError):
        HelloParser().gap(C, -1, 1)


def test_truncated_server_hello_version():
    """A ServerHello cut before its extensions has no selected version (TLS 1.3 puts it there)."""
    srv = sh(server_body(0x1301, [ext(0x33, bytes(36)), ext(43, u16(0x0304))]))
    (hello,) = parse([(S, srv[:-3], 1), ("gap", S, 3, 2)])
    assert hello.truncated and hello.version is None and hello.cipher_suite == 0x1301
    assert hello.ja3s is None and hello.extensions == [0x33]
    (hello,) = parse(
        [
            (S, sh(server_body(0x1301, [ext(43, u16(0x0304)), ext(0x33, bytes(36))]))[:-8], 1),
            ("gap", S, 8, 2),
        ]
    )
    assert hello.version == 0x0304


def test_close_flushes_a_partial_hello():
    """close() emits a hello in progress as truncated and ends the parser."""
    wire = ch(_basic())
    out = parse([(C, wire[:-3], 1)], close_ts=9)
    assert (
        len(out) == 1
        and out[0].truncated
        and out[0].ts_end == 9
        and out[0].server_name == "a.example"
    )
    p = HelloParser()
    assert p.close(1) == [] and p.done and p.feed(C, wire, 2) == []


# -- robustness: random input never raises and does not depend on how it is split ------------------


def _mutations(rng: random.Random, base: bytes) -> bytes:
    b = bytearray(base)
    for _ in range(rng.randint(1, 4)):
        op = rng.random()
        i = rng.randrange(len(b)) if b else 0
        if op < 0.5 and b:
            b[i] = rng.randrange(256)
        elif op < 0.7:
            del b[i : i + rng.randint(1, 8)]
        elif op < 0.9:
            b[i:i] = rng.randbytes(rng.randint(1, 8))
        else:
            b = b[: rng.randint(0, len(b))]
    return bytes(b)


def test_fuzz_random_bytes():
    """Random bytes never raise and give the same output whole, byte by byte and split."""
    rng = random.Random(1234)
    for _ in range(300):
        data = rng.randbytes(rng.randint(0, 80))
        if rng.random() < 0.5:  # make it get past the first checks often
            data = b"\x16\x03" + bytes([rng.randrange(5)]) + data
        events = [(rng.choice((C, S)), data, 1)]
        if rng.random() < 0.3:
            events.append(("gap", events[0][0], rng.randint(0, 9), 2))
        parse(events, seeds=2, close_ts=3)


def test_fuzz_mutated_hellos():
    """Mutated real hellos never raise, and give the same output however they are split."""
    rng = random.Random(99)
    bases = [
        ch(_basic()),
        sh(server_body(0x1301, [ext(43, u16(0x0304))])),
        ch(spec_hello(SPEC_CIPHERS, SPEC_EXTS, SPEC_SIGS), size=100),
    ]
    bases += [
        _decode(c[1]) for p in CORPUS_FILES[:3] for c in _load(p)["chunks"][:2] if c[0] != "gap"
    ]
    for k in range(400):
        base = bases[k % len(bases)]
        side = C if base[5:6] == b"\x01" else S
        events = [(side, _mutations(rng, base), 1)]
        if rng.random() < 0.2:
            events.append(("gap", side, 3, 2))
        out = parse(events, bytewise=k % 8 == 0, seeds=2, close_ts=4)
        assert len(out) <= 1


# -- helpers ---------------------------------------------------------------------------------------


def test_looks_like_tls():
    """looks_like_tls accepts handshake record headers (and a hello inside) only."""
    assert looks_like_tls(ch(_basic())) and looks_like_tls(sh(server_body(0x1301)))
    assert looks_like_tls(b"\x16\x03\x01\x02\x00") and looks_like_tls(b"\x16\x03\x04\x00\x05\x02")
    for bad in (
        b"",
        b"\x16\x03\x01",
        b"GET / HTTP/1.1\r\n",
        b"\x17\x03\x03\x00\x10\x01",
        b"\x16\x03\x05\x00\x10\x01",
        b"\x16\x03\x01\x00\x00\x01",
        b"\x16\x03\x01\xff\xff\x01",
        b"\x16\x03\x01\x00\x10\x0b",
        b"\x16\x02\x00\x00\x10\x01",
    ):
        assert not looks_like_tls(bad), bad
    assert looks_like_tls(bytes([0x16, 3, 1]) + u16(MAX_RECORD) + b"\x01")


def test_grease_values():
    """is_grease matches exactly RFC 8701's sixteen values: {0x?A, 0x?A}, both bytes equal."""
    rfc = [v for v in range(0x10000) if v >> 8 == v & 0xFF and v & 0x0F == 0x0A]
    assert [v for v in range(0x10000) if is_grease(v)] == rfc == GREASE


def test_names():
    """cipher_name and version_name give IANA names and "1.3"-style versions."""
    from scapy.layers.tls.crypto.suites import _tls_cipher_suites  # the IANA names, independently

    from hdrlog.protocols import tls_hello

    for code, name in tls_hello._CIPHERS.items():
        assert name == _tls_cipher_suites[code], hex(code)
    assert cipher_name(0x1301) == "TLS_AES_128_GCM_SHA256" and cipher_name(0x1234) is None
    assert [version_name(v) for v in (0x0304, 0x0303, 0x0302, 0x0301, 0x0300, 0x7F1C)] == [
        "1.3",
        "1.2",
        "1.1",
        "1.0",
        "3.0",
        "0x7f1c",
    ]


def test_bad_side_is_a_programming_error():
    """A side other than "client" or "server" raises ValueError."""
    with pytest.raises(ValueError):
        HelloParser().feed("both", b"\x16", 1)


def test_large_hello_byte_by_byte_is_linear():
    """Feeding a 64 KiB hello one byte at a time stays fast (no quadratic buffering)."""
    body = client_body([0x1301], [ext(0x15, bytes(MAX_HELLO_BYTES - 100))])
    wire = ch(body)
    p = HelloParser()
    t0 = time.perf_counter()
    out = [r for i in range(len(wire)) for r in p.feed(C, wire[i : i + 1], 1)]
    assert len(out) == 1 and not out[0].truncated
    assert time.perf_counter() - t0 < 5  # ~0.1 s; quadratic copying would take minutes
