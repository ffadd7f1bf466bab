"""HTTP/1.x parser: exchanges from captured chunks and gaps, the same however bytes are split."""

from __future__ import annotations

import dataclasses
import json
import random
from pathlib import Path

import msgspec
import pytest

from hdrlog.protocols.http1 import (
    CLIENT,
    SERVER,
    Http1Parser,
    HttpExchange,
    HttpRequest,
    HttpResponse,
    Limits,
    ParseFailure,
)
from tests.splits import pieces

CORPUS = Path(__file__).resolve().parents[1] / "corpus" / "http1"
C, S = CLIENT, SERVER


# -- harness: every input runs whole, byte by byte and at seeded random splits ----------------


def run(events, close_ts=None, mode="whole", seed=0, limits=None, parser=None):
    """Feed events — (side, bytes, ts) or ("gap", side, n, ts) — and return everything emitted."""
    rng = random.Random(seed)
    p = parser or (Http1Parser(limits) if limits else Http1Parser())
    out = []
    for ev in events:
        if ev[0] == "gap":
            out += p.gap(ev[1], ev[2], ev[3])
        else:
            for piece in pieces(ev[1], mode, rng):
                out += p.feed(ev[0], piece, ev[2])
            if p.buffered(C) > p.limits.max_buffer or p.buffered(S) > p.limits.max_buffer:
                raise AssertionError("buffer over limit")
    if close_ts is not None:
        out += p.close(close_ts)
    return out


def parse(events, close_ts=None, limits=None, bytewise=True, seeds=5):
    """The result of feeding events whole, asserted identical byte by byte and at random splits."""
    whole = run(events, close_ts, "whole", limits=limits)
    if bytewise:
        assert run(events, close_ts, "bytes", limits=limits) == whole, "byte by byte differs"
    for seed in range(seeds):
        assert run(events, close_ts, "random", seed, limits) == whole, (
            f"random split {seed} differs"
        )
    return whole


def req(
    target="/",
    method="GET",
    *,
    headers=(("Host", "h"),),
    body_size=0,
    chunked=False,
    truncated=False,
    ts=(1, 1, 1),
    version="1.1",
) -> HttpRequest:
    # (positional: the header fields' slot is _headers, read through .headers)
    return HttpRequest(method, target, version, list(headers), body_size, chunked, truncated, *ts)


def resp(
    status=200,
    reason="OK",
    *,
    headers=(("Content-Length", "0"),),
    body_size=0,
    chunked=False,
    truncated=False,
    interim=(),
    ts=(2, 2, 2),
    version="1.1",
) -> HttpResponse:
    return HttpResponse(status, reason, version, list(headers), body_size, chunked, truncated, list(interim), *ts)


def ex(request, response) -> HttpExchange:
    return HttpExchange(request=request, response=response)


def get(target=b"/", extra=b"") -> bytes:
    return b"GET " + target + b" HTTP/1.1\r\nHost: h\r\n" + extra + b"\r\n"


def ok(body=b"", status=b"200 OK") -> bytes:
    return b"HTTP/1.1 %s\r\nContent-Length: %d\r\n\r\n%s" % (status, len(body), body)


def failures(out):
    return [(f.side, f.reason) for f in out if isinstance(f, ParseFailure)]


def exchanges(out):
    return [x for x in out if isinstance(x, HttpExchange)]


# -- exchanges and pairing ---------------------------------------------------------------------


def test_simple_exchange_is_recorded_whole():
    """A GET and its 200 become one exchange with every field of both messages."""
    out = parse([(C, get(b"/x", b"Accept: */*\r\n"), 1), (S, ok(b"hello"), 2)])
    assert out == [
        ex(
            req("/x", headers=[("Host", "h"), ("Accept", "*/*")]),
            resp(headers=[("Content-Length", "5")], body_size=5),
        )
    ]


def test_keep_alive_exchanges_pair_in_order():
    """Many exchanges on one connection come out in order, each request with its own response."""
    events = []
    for i in range(5):
        events += [(C, get(b"/%d" % i), 10 * i), (S, ok(b"x" * i), 10 * i + 1)]
    out = parse(events)
    assert [(x.request.target, x.response.body_size) for x in out] == [
        (f"/{i}", i) for i in range(5)
    ]


def test_pipelined_responses_pair_first_in_first_out():
    """Requests sent before any response pair with the responses in the order they were sent."""
    out = parse(
        [
            (C, get(b"/1") + get(b"/2") + get(b"/3"), 1),
            (S, ok(b"a") + ok(b"bb"), 2),
            (S, ok(b"ccc"), 3),
        ]
    )
    assert [(x.request.target, x.response.body_size, x.response.ts_start) for x in out] == [
        ("/1", 1, 2),
        ("/2", 2, 2),
        ("/3", 3, 3),
    ]


def test_response_before_any_request_pairs_with_none():
    """A response with no request waiting (capture began mid-connection) pairs with None."""
    out = parse([(S, ok(b"hi"), 1), (C, get(), 2), (S, ok(), 3)])
    assert out == [
        ex(None, resp(headers=[("Content-Length", "2")], body_size=2, ts=(1, 1, 1))),
        ex(req(ts=(2, 2, 2)), resp(ts=(3, 3, 3))),
    ]


def test_early_response_waits_for_its_request_to_end():
    """A response that ends before its request's body does is emitted when the request ends."""
    head = b"POST /up HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\n\r\nabc"
    out = parse([(C, head, 1), (S, ok(status=b"413 Too Large"), 2), (C, b"def", 3)])
    assert out == [
        ex(
            req(
                "/up",
                "POST",
                headers=[("Host", "h"), ("Content-Length", "6")],
                body_size=6,
                ts=(1, 1, 3),
            ),
            resp(413, "Too Large"),
        )
    ]


def test_close_flushes_requests_without_response():
    """At close, every request still waiting comes out with response None."""
    out = parse([(C, get(b"/1") + get(b"/2"), 1), (S, ok(), 2)], close_ts=9)
    assert [(x.request.target, x.response is None) for x in out] == [("/1", False), ("/2", True)]


# -- 1xx, upgrades, bodiless responses ---------------------------------------------------------


def test_interim_responses_are_listed_in_the_final_response():
    """100 Continue and 103 Early Hints do not answer the request; the final response lists them."""
    out = parse(
        [
            (
                C,
                b"PUT /f HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\n",
                1,
            ),
            (S, b"HTTP/1.1 100 Continue\r\n\r\n", 2),
            (C, b"ok", 3),
            (S, b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" + ok(), 4),
        ]
    )
    assert len(out) == 1
    assert (out[0].request.body_size, out[0].response.status, out[0].response.interim) == (
        2,
        200,
        [100, 103],
    )
    assert out[0].response.ts_start == 4


def test_switching_protocols_ends_http1_parsing():
    """101 emits its exchange, sets done, and everything fed afterwards is ignored."""
    events = [
        (C, get(b"/ws", b"Upgrade: websocket\r\nConnection: Upgrade\r\n"), 1),
        (S, b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x02hi", 2),
        (C, b"GET / HTTP/1.1\r\n\r\n", 3),
        (S, ok(), 4),
    ]
    out = parse(events, close_ts=5)
    assert [(x.request.target, x.response.status, x.response.body_size) for x in out] == [
        ("/ws", 101, 0)
    ]
    p = Http1Parser()
    run(events, parser=p)
    assert p.done and p.buffered(C) == p.buffered(S) == 0


def test_connect_2xx_ends_http1_parsing_but_other_statuses_do_not():
    """A 2xx to CONNECT turns the connection into a tunnel; a 407 keeps it HTTP/1."""
    connect = b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n"
    out = parse(
        [
            (C, connect, 1),
            (S, ok(status=b"407 Auth"), 2),
            (C, connect, 3),
            (S, b"HTTP/1.1 200 OK\r\n\r\n", 4),
            (C, b"\x16\x03\x01\x00\x05hello", 5),
            (S, b"\x16\x03\x03", 6),
        ],
        close_ts=7,
    )
    assert [(x.request.method, x.response.status) for x in out] == [
        ("CONNECT", 407),
        ("CONNECT", 200),
    ]
    p = Http1Parser()
    run([(C, connect, 1), (S, b"HTTP/1.1 200 OK\r\n\r\n", 2)], parser=p)
    assert p.done


def test_head_response_has_no_body_even_with_content_length():
    """RFC 9112 6.3: a response to HEAD ends at its head whatever Content-Length says."""
    out = parse(
        [
            (C, get(b"/a").replace(b"GET", b"HEAD"), 1),
            (S, b"HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n", 2),
            (C, get(b"/b"), 3),
            (S, ok(b"xy"), 4),
        ]
    )
    assert [(x.request.method, x.response.body_size) for x in out] == [("HEAD", 0), ("GET", 2)]


def test_204_and_304_have_no_body_even_with_content_length():
    """RFC 9112 6.3: 204 and 304 responses end at their head."""
    out = parse(
        [
            (C, get(b"/1") + get(b"/2") + get(b"/3"), 1),
            (
                S,
                b"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n"
                b"HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n" + ok(b"z"),
                2,
            ),
        ]
    )
    assert [(x.response.status, x.response.body_size) for x in out] == [
        (204, 0),
        (304, 0),
        (200, 1),
    ]


# -- bodies ------------------------------------------------------------------------------------


def test_request_body_with_content_length_is_counted_not_kept():
    """A Content-Length body is skipped and counted; the next request follows it."""
    post = b"POST /p HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123456789"
    out = parse([(C, post + get(b"/n"), 1), (S, ok() + ok(), 2)])
    assert [(x.request.target, x.request.body_size, x.request.chunked) for x in out] == [
        ("/p", 10, False),
        ("/n", 0, False),
    ]


def test_request_body_chunked():
    """A chunked request body's payload bytes are counted."""
    post = b"POST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    post += b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
    out = parse([(C, post + get(b"/n"), 1), (S, ok() + ok(), 2)])
    assert [(x.request.target, x.request.body_size, x.request.chunked) for x in out] == [
        ("/c", 5, True),
        ("/n", 0, False),
    ]


def test_request_without_framing_headers_has_no_body():
    """RFC 9112 6.3: a request with neither Content-Length nor Transfer-Encoding has no body."""
    out = parse([(C, b"POST /x HTTP/1.1\r\nHost: h\r\n\r\n" + get(b"/y"), 1), (S, ok() + ok(), 2)])
    assert [(x.request.target, x.request.body_size) for x in out] == [("/x", 0), ("/y", 0)]


def test_chunked_response_with_extensions_and_trailers():
    """Chunk extensions are skipped, trailer fields end the body, and the size is the payload."""
    body = b'4;a=1;b="q"\r\nWiki\r\n5 \r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n'
    body += b"0;end\r\nX-Sum: 1\r\nX-T: 2\r\n\r\n"
    out = parse(
        [
            (C, get(), 1),
            (S, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n" + body, 2),
            (C, get(), 3),
            (S, ok(), 4),
        ]
    )
    assert [(x.response.body_size, x.response.chunked, x.response.truncated) for x in out] == [
        (23, True, False),
        (0, False, False),
    ]


def test_content_length_body_with_gaps_is_counted_whole():
    """gap() inside a Content-Length body counts those bytes and the message stays whole."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n"
    out = parse(
        [
            (C, get() + get(b"/2"), 1),
            (S, head + b"x" * 100, 2),
            ("gap", S, 50000, 2),
            (S, b"y" * 10, 3),
            ("gap", S, 100000 - 50110, 4),
            (S, ok(), 5),
        ]
    )
    assert out[0].response == resp(
        headers=[("Content-Length", "100000")], body_size=100000, ts=(2, 2, 4)
    )
    assert out[1].response.ts_start == 5


def test_gap_past_the_body_end_loses_the_next_message_start():
    """A gap longer than the rest of a body ends it; the side then skips to the next message."""
    head = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"
    out = parse(
        [
            (C, get(b"/1") + get(b"/2") + get(b"/3"), 1),
            (S, head + b"12345", 2),
            ("gap", S, 5 + 30, 3),
            (S, b"tail of the lost response\r\n" + ok(b"3"), 4),
        ],
        close_ts=5,
    )
    assert [
        (x.request.target, x.response and (x.response.body_size, x.response.ts_end)) for x in out
    ] == [
        ("/1", (10, 3)),
        ("/2", (1, 4)),  # the lost response's request cannot be known: pairing moves on
        ("/3", None),
    ]
    assert failures(out) == []


def test_gap_inside_chunk_data_keeps_the_framing():
    """A gap that ends inside a chunk's data is counted; the chunk framing after it still parses."""
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    out = parse(
        [
            (C, get(), 1),
            (S, head + b"1000\r\nab", 2),
            ("gap", S, 0x1000 - 2, 2),
            (S, b"\r\n2\r\nzz\r\n0\r\n\r\n", 3),
        ]
    )
    assert out[0].response == resp(
        headers=[("Transfer-Encoding", "chunked")], body_size=0x1002, chunked=True, ts=(2, 2, 3)
    )


def test_gap_in_chunk_framing_truncates_and_resyncs():
    """A gap over a chunk-size line loses the framing: truncated, and the next response is found."""
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    out = parse(
        [
            (C, get(b"/1") + get(b"/2"), 1),
            (S, head + b"5\r\nab", 2),
            ("gap", S, 20, 2),
            (S, b"junk\r\n0\r\n\r\n" + ok(b"2"), 3),
        ]
    )
    assert out[0].response == resp(
        headers=[("Transfer-Encoding", "chunked")],
        body_size=5,
        chunked=True,
        truncated=True,
        ts=(2, 2, None),
    )
    assert (out[1].request.target, out[1].response.body_size) == ("/2", 1)
    assert failures(out) == []


def test_gap_after_chunk_size_line_truncates():
    """A gap right where chunk framing (not data) is expected truncates the message."""
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    out = parse([(C, get(), 1), (S, head + b"2\r\nab", 2), ("gap", S, 2, 2)], close_ts=3)
    assert (out[0].response.body_size, out[0].response.truncated) == (2, True)


def test_body_until_close_is_counted_at_close():
    """RFC 9112 6.3: a response without Content-Length or chunked ends when the connection does."""
    out = parse(
        [
            (C, b"GET / HTTP/1.0\r\n\r\n", 1),
            (S, b"HTTP/1.0 200 OK\r\nServer: x\r\n\r\nabc", 2),
            (S, b"defg", 3),
            ("gap", S, 10, 4),
        ],
        close_ts=9,
    )
    assert out == [
        ex(
            req(version="1.0", headers=[]),
            resp(version="1.0", headers=[("Server", "x")], body_size=17, ts=(2, 2, 4)),
        )
    ]


def test_non_chunked_transfer_encoding_response_runs_until_close():
    """RFC 9112 6.3: a response whose final transfer coding is not chunked is read until close."""
    out = parse(
        [(C, get(), 1), (S, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n\x1f\x8b", 2)],
        close_ts=3,
    )
    assert (out[0].response.body_size, out[0].response.chunked, out[0].response.truncated) == (
        2,
        False,
        False,
    )


def test_big_bodies_are_not_buffered():
    """A 1 MiB body fed in one piece leaves nothing buffered."""
    p = Http1Parser()
    p.feed(C, get(), 1)
    p.feed(S, b"HTTP/1.1 200 OK\r\nContent-Length: 1048576\r\n\r\n" + bytes(1048576 - 10), 2)
    assert p.buffered(S) == 0
    assert p.feed(S, bytes(10), 3)[0].response.body_size == 1048576


# -- heads in pieces, cut heads ----------------------------------------------------------------


def test_heads_split_anywhere_give_the_same_exchange():
    """Heads split across many feeds (the request line cut in the middle) parse as if whole."""
    out = parse(
        [
            (C, b"GET /spl", 1),
            (C, b"it HTTP/1.1\r\nHo", 2),
            (C, b"st: h\r", 3),
            (C, b"\n\r\n", 4),
            (S, b"HTTP/1.1 2", 5),
            (S, b"00 OK\r\nContent-Length: 0\r\n\r", 6),
            (S, b"\n", 7),
        ]
    )
    assert out == [ex(req("/split", ts=(1, 4, 4)), resp(ts=(5, 7, 7)))]


def test_head_cut_by_a_gap_keeps_the_fields_seen():
    """A head cut by a gap is emitted truncated with its complete fields; the side then resyncs."""
    out = parse(
        [
            (C, b"GET /cut HTTP/1.1\r\nHost: h\r\nCookie: abc", 1),
            ("gap", C, 5000, 1),
            (C, get(b"/next"), 2),
            (S, ok() + ok(), 3),
        ]
    )
    assert out == [
        ex(req("/cut", body_size=None, truncated=True, ts=(1, None, None)), resp(ts=(3, 3, 3))),
        ex(req("/next", ts=(2, 2, 2)), resp(ts=(3, 3, 3))),
    ]


def test_head_cut_inside_the_request_line_emits_nothing():
    """A request line that was not seen whole is not reported: nothing is invented."""
    out = parse(
        [(C, b"GET /very/long/pa", 1), ("gap", C, 100, 1), (C, get(b"/n"), 2), (S, ok(), 3)]
    )
    assert [(x.request.target, x.response.status) for x in out] == [("/n", 200)]


def test_response_head_cut_by_a_gap():
    """A response head cut by a gap is emitted truncated and paired with its request."""
    out = parse(
        [
            (C, get(), 1),
            (S, b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nSet-Cookie: a", 2),
            ("gap", S, 900, 2),
        ]
    )
    assert out == [
        ex(
            req(),
            resp(
                headers=[("Content-Type", "text/html")],
                body_size=None,
                truncated=True,
                ts=(2, None, None),
            ),
        )
    ]


def test_close_inside_a_request_head():
    """close() inside a request head gives the truncated request and no response."""
    out = parse([(C, b"GET /x HTTP/1.1\r\nHost: h\r\nUser-Ag", 1)], close_ts=2)
    assert out == [ex(req("/x", body_size=None, truncated=True, ts=(1, None, None)), None)]


def test_close_inside_a_response_head_and_body():
    """close() inside a response head or a body gives truncated messages."""
    out = parse([(C, get(), 1), (S, b"HTTP/1.1 200 OK\r\nA: b\r\nC:", 2)], close_ts=3)
    assert out == [
        ex(req(), resp(headers=[("A", "b")], body_size=None, truncated=True, ts=(2, None, None)))
    ]
    out = parse([(C, b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 9\r\n\r\nabc", 1)], close_ts=3)
    assert out == [
        ex(
            req(
                method="POST",
                headers=[("Host", "h"), ("Content-Length", "9")],
                body_size=3,
                truncated=True,
                ts=(1, 1, None),
            ),
            None,
        )
    ]


def test_empty_lines_before_a_request_are_ignored():
    """RFC 9112 2.2: CRLFs before a request line (e.g. after a body) are skipped."""
    post = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\n\r\nx\r\n"
    out = parse([(C, post + b"\r\n" + get(b"/2"), 1), (S, ok() + ok(), 2)])
    assert [x.request.target for x in out] == ["/", "/2"] and failures(out) == []


def test_header_values_are_latin1_and_stripped():
    """Header names keep their case and order; values are latin-1 with outer blanks removed."""
    out = parse(
        [
            (
                C,
                b"GET / HTTP/1.1\r\nX-A:   sp  \t\r\nx-b:\t\xe9t\xe9\r\nX-A: 2\r\nEmpty:\r\n\r\n",
                1,
            ),
            (S, ok(), 2),
        ]
    )
    assert out[0].request.headers == [("X-A", "sp"), ("x-b", "été"), ("X-A", "2"), ("Empty", "")]


# -- capture starting mid-connection, resync ---------------------------------------------------


def test_capture_starting_mid_connection_skips_to_a_message_start():
    """Bytes before the first request/status line at a line start are skipped without a failure."""
    out = parse(
        [
            (S, b"dy of an old response\r\nHTTP/1.1 is not at the start here\r\n" + ok(b"ab"), 1),
            (C, b"der: x\r\n\r\nGET /in-body HTTP/1.1 trailing\r\n" + get(b"/real"), 2),
            (S, ok(), 3),
        ]
    )
    assert out == [
        ex(None, resp(headers=[("Content-Length", "2")], body_size=2, ts=(1, 1, 1))),
        ex(req("/real", ts=(2, 2, 2)), resp(ts=(3, 3, 3))),
    ]


def test_a_message_may_start_right_after_a_gap():
    """The byte after a gap is a syscall boundary, so a message may start there (no newline)."""
    out = parse([(C, b"xx", 1), ("gap", C, 10, 1), (C, get(b"/g"), 2), (S, ok(), 3)])
    assert [(x.request.target, x.response.status) for x in out] == [("/g", 200)]


def test_random_garbage_fails_once_and_resyncs():
    """Binary garbage where a request should start: one failure, then a later request is found."""
    junk = bytes(random.Random(7).randrange(256) for _ in range(3000)).replace(b"\n", b"")
    out = parse([(C, get(b"/1"), 1), (S, ok(), 2), (C, junk + b"\n" + get(b"/2"), 3), (S, ok(), 4)])
    assert failures(out) == [(C, "invalid request line")]
    assert [x.request.target for x in exchanges(out)] == ["/1", "/2"]


def test_binary_after_a_method_is_not_a_request():
    """'GET ' followed by binary where a request must start is a failure, not a request."""
    out = parse(
        [
            (C, get(b"/1"), 1),
            (S, ok(), 2),
            (C, b"GET \x00\xff\xfe\x01 junk\r\n\r\n", 3),
            (C, get(b"/ok"), 4),
            (S, ok(), 5),
        ],
        close_ts=6,
    )
    assert failures(out) == [(C, "invalid request line")]
    assert [x.request.target for x in exchanges(out)] == ["/1", "/ok"]


def test_binary_at_capture_start_is_skipped_quietly():
    """At the start of a capture, bytes before a message start are skipped without a failure."""
    out = parse(
        [
            (C, b"GET \x00\xff\xfe\x01 junk\r\n\r\n" + get(b"/ok"), 1),
            (S, b"\x00\xffHTTP/1.1 200\n" + ok(), 2),
        ]
    )
    assert out == [ex(req("/ok"), resp())]


def test_garbage_where_a_response_should_start():
    """Server-side garbage gives a failure; the next status line at a line start is found."""
    out = parse([(C, get() + get(), 1), (S, ok(), 2), (S, b"<html>oops</html>\r\n" + ok(b"x"), 3)])
    assert failures(out) == [(S, "invalid status line")]
    assert [(x.response.ts_start, x.response.body_size) for x in exchanges(out)] == [(2, 0), (3, 1)]


def test_invalid_chunk_size_truncates_with_a_failure():
    """A chunk-size line that is not hex truncates the message and reports why."""
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    out = parse([(C, get(), 1), (S, head + b"3\r\nabc\r\nzz\r\nmore", 2)], close_ts=3)
    assert out == [
        ex(
            req(),
            resp(
                headers=[("Transfer-Encoding", "chunked")],
                body_size=3,
                chunked=True,
                truncated=True,
                ts=(2, 2, None),
            ),
        ),
        ParseFailure(side=S, reason="invalid chunk size line", ts=2),
    ]


def test_chunk_data_longer_than_its_size_fails():
    """Chunk data must be followed by CRLF (RFC 9112 7.1)."""
    head = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    out = parse([(C, get(), 1), (S, head + b"2\r\nabc\r\n0\r\n\r\n", 2)])
    assert failures(out) == [(S, "chunk data not followed by CRLF")]
    assert out[0].response.truncated


def test_malformed_header_field_is_rejected_by_llhttp():
    """A head llhttp rejects is emitted truncated with the fields before the fault, and fails."""
    out = parse(
        [
            (C, b"GET /m HTTP/1.1\r\nHost: h\r\nA: 1\r\nBad Name: x\r\n\r\n", 1),
            (C, get(b"/n"), 2),
            (S, ok() + ok(), 3),
        ]
    )
    assert failures(out) == [(C, "invalid head: Invalid header token")]
    xs = exchanges(out)
    assert [(x.request.target, x.request.truncated, x.request.headers) for x in xs] == [
        ("/m", True, [("Host", "h")]),
        ("/n", False, [("Host", "h")]),
    ]


def test_request_smuggling_framing_is_rejected():
    """RFC 9112 6.3: Content-Length with Transfer-Encoding, or a bad Content-Length, fails."""
    both = b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"
    out = parse([(C, both, 1)], close_ts=2)
    assert failures(out) == [
        (C, "invalid head: Transfer-Encoding can't be present with Content-Length")
    ]
    out = parse(
        [(C, get(), 1), (S, b"HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n", 2)], close_ts=3
    )
    assert failures(out) == [(S, "invalid head: Invalid character in Content-Length")]
    assert exchanges(out)[0].response.truncated


# -- limits ------------------------------------------------------------------------------------


def test_header_line_of_one_megabyte_fails_with_bounded_memory():
    """A 1 MB header line fails at the line limit and nothing near 1 MB is buffered."""
    big = b"GET /big HTTP/1.1\r\nHost: h\r\nX-Big: " + b"a" * 1_000_000 + b"\r\n\r\n"
    out = parse([(C, big, 1), (C, get(b"/after"), 2), (S, ok() + ok(), 3)], bytewise=False)
    assert failures(out) == [(C, "line over 16384 bytes")]
    assert [(x.request.target, x.request.truncated, x.request.headers) for x in exchanges(out)] == [
        ("/big", True, [("Host", "h")]),
        ("/after", False, [("Host", "h")]),
    ]


def test_ten_thousand_headers_fail_at_the_header_limit():
    """More header fields than max_headers is a failure; the fields up to the limit are kept."""
    many = b"GET /many HTTP/1.1\r\n" + b"".join(b"X-%d: v\r\n" % i for i in range(10_000)) + b"\r\n"
    out = parse([(C, many, 1)], close_ts=2)
    assert failures(out) == [(C, "more than 256 header fields")]
    assert len(exchanges(out)[0].request.headers) == 256


def test_head_over_the_size_limit_fails():
    """A head bigger than max_head fails even when every line is within max_line."""
    head = (
        b"GET /h HTTP/1.1\r\n"
        + b"".join(b"X-%03d: %s\r\n" % (i, b"v" * 1000) for i in range(100))
        + b"\r\n"
    )
    out = parse([(C, head, 1)], close_ts=2)
    assert failures(out) == [(C, "head over 65536 bytes")]


def test_small_limits_apply_byte_by_byte_too():
    """Custom limits give the same failures whole and byte by byte."""
    lim = Limits(max_head=200, max_line=60, max_headers=3, max_buffer=256)
    out = parse(
        [
            (C, get(b"/ok", b"A: 1\r\nB: 2\r\n"), 1),
            (C, get(b"/" + b"l" * 80), 2),
            (C, get(b"/four", b"A: 1\r\nB: 2\r\nC: 3\r\n"), 3),
            (S, ok() + ok(), 4),
        ],
        limits=lim,
        close_ts=5,
    )
    assert failures(out) == [(C, "line over 60 bytes"), (C, "more than 3 header fields")]
    assert [(x.request.target, x.response and x.response.status) for x in exchanges(out)] == [
        ("/ok", 200),
        ("/four", 200),
    ]


def test_pending_requests_over_the_limit_fail():
    """More unanswered requests than max_pending: the extra one fails and the side resyncs."""
    lim = Limits(max_pending=2)
    out = parse(
        [(C, get(b"/1") + get(b"/2") + get(b"/3") + get(b"/4"), 1), (S, ok() * 4, 2)], limits=lim
    )
    assert failures(out) == [(C, "over 2 pending requests"), (C, "over 2 pending requests")]
    assert [(x.request and x.request.target) for x in exchanges(out)] == ["/1", "/2", None, None]


def test_interim_responses_over_the_limit_fail():
    """Endless 1xx responses cannot grow memory: past max_interim they fail, the list restarts."""
    lim = Limits(max_interim=3)
    out = parse([(C, get(), 1), (S, b"HTTP/1.1 100 Continue\r\n\r\n" * 5 + ok(), 2)], limits=lim)
    assert failures(out) == [(S, "over 3 interim responses")]
    assert exchanges(out)[0].response.interim == [100]


def test_buffer_backstop_drops_and_fails():
    """A side that somehow holds over max_buffer bytes fails and drops them (a backstop)."""
    lim = Limits()
    object.__setattr__(lim, "max_buffer", 100)  # bypass validation to reach the backstop
    p = Http1Parser(lim)
    out = p.feed(C, b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 30, 1)
    assert [f.reason for f in out] == ["over 100 buffered bytes"] and p.buffered(C) == 0
    assert p.feed(C, get(b"/x"), 2) == [] and p.feed(S, ok(), 3)[0].request.target == "/x"


def test_limits_must_be_consistent():
    """Limits that could not hold a head in the buffer are refused at construction."""
    with pytest.raises(ValueError):
        Limits(max_head=1000, max_buffer=500)
    with pytest.raises(ValueError):
        Limits(max_pending=0)


# -- API edges, fuzz ---------------------------------------------------------------------------


def test_input_after_close_is_ignored_and_sides_are_checked():
    """After close() nothing more is emitted; an unknown side is a programming error."""
    p = Http1Parser()
    p.feed(C, get(), 1)
    assert len(p.close(2)) == 1
    assert p.feed(S, ok(), 3) == [] and p.gap(S, 5, 3) == [] and p.close(4) == []
    with pytest.raises(ValueError):
        p.feed("both", b"x", 1)
    assert Http1Parser().feed(C, memoryview(get()), 1) == [] and Http1Parser().feed(C, b"", 1) == []


_VOCAB = [
    b"GET / HTTP/1.1\r\n",
    b"HEAD /h HTTP/1.1\r\n",
    b"CONNECT a:1 HTTP/1.1\r\n",
    b"POST /p HTTP/1.0\r\n",
    b"HTTP/1.1 200 OK\r\n",
    b"HTTP/1.1 100 Continue\r\n",
    b"HTTP/1.1 101 Up\r\n",
    b"HTTP/1.0 304 NM\r\n",
    b"HTTP/1.1 204 \r\n",
    b"Content-Length: 3\r\n",
    b"Content-Length: x\r\n",
    b"Transfer-Encoding: chunked\r\n",
    b"Host: h\r\n",
    b"\r\n",
    b"\r\n\r\n",
    b"3\r\nabc\r\n",
    b"0\r\n",
    b"zz\r\n",
    b"A: b\r\n",
    b"\n",
    b"\r",
    b"GET \x00\xff",
    b"abc",
    b"HTTP/1.1 ",
    b"5;x=y\r\n",
]


def _fuzz_events(rng: random.Random, n: int):
    events, ts = [], 0
    for _ in range(n):
        ts += rng.randrange(3)
        side = rng.choice((C, S))
        r = rng.random()
        if r < 0.1:
            events.append(("gap", side, rng.randrange(1, 40), ts))
        elif r < 0.3:
            events.append(
                (side, bytes(rng.randrange(256) for _ in range(rng.randrange(1, 60))), ts)
            )
        else:
            events.append(
                (side, b"".join(rng.choice(_VOCAB) for _ in range(rng.randrange(1, 8))), ts)
            )
    return events


@pytest.mark.parametrize(
    "limits",
    [
        None,
        Limits(
            max_head=48, max_line=24, max_headers=2, max_pending=2, max_interim=2, max_buffer=48
        ),
    ],
)
def test_fuzz_never_raises_stays_bounded_and_ignores_splits(limits):
    """Random fragments, binary and gaps: nothing raises, buffers stay bounded, splits agree."""
    rng = random.Random(1234)
    for _ in range(300):
        events = _fuzz_events(rng, rng.randrange(1, 25))
        out = parse(events, close_ts=10_000, limits=limits, seeds=2)
        assert all(isinstance(x, (HttpExchange, ParseFailure)) for x in out)


def test_fuzz_valid_streams_lose_nothing():
    """Random valid keep-alive traffic in random pieces yields every exchange, unchanged."""
    rng = random.Random(99)
    events, expected = [], []
    for i in range(200):
        body = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 300)))
        events.append((C, get(b"/%d" % i), 2 * i))
        if rng.random() < 0.5:
            events.append((S, ok(body), 2 * i + 1))
        else:
            chunks = b"".join(
                b"%x\r\n%s\r\n" % (len(body[k : k + 50]), body[k : k + 50])
                for k in range(0, len(body), 50)
            )
            events.append(
                (
                    S,
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                    + chunks
                    + b"0\r\n\r\n",
                    2 * i + 1,
                )
            )
        expected.append((f"/{i}", len(body), 2 * i, 2 * i + 1))
    out = parse(events, seeds=3)
    assert [
        (x.request.target, x.response.body_size, x.request.ts_end, x.response.ts_end) for x in out
    ] == expected


# -- golden corpus -----------------------------------------------------------------------------


def _corpus_events(chunks):
    events = []
    for c in chunks:
        if c[0] == "gap":
            events.append(("gap", c[1], c[2], c[3]))
        else:
            data = bytes.fromhex(c[1][4:]) if c[1].startswith("hex:") else c[1].encode("latin-1")
            events.append((c[0], data, c[2]))
    return events


def _message_dict(msg) -> dict | None:
    if msg is None:
        return None
    d = msgspec.structs.asdict(msg)
    del d["_headers"]
    return d | {"headers": msg.headers}


def _as_json(item) -> dict:
    if isinstance(item, ParseFailure):
        return {"failure": dataclasses.asdict(item)}
    return json.loads(json.dumps({"request": _message_dict(item.request), "response": _message_dict(item.response)}))


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.json")), ids=lambda p: p.stem)
def test_corpus(path):
    """Each corpus stream, whole, byte by byte and at random splits, gives its expected records."""
    case = json.loads(path.read_text())
    out = parse(_corpus_events(case["chunks"]), case["close_ts"])
    assert [_as_json(x) for x in out] == case["expected"]


def test_corpus_is_present():
    """The corpus covers the required scenarios."""
    names = {p.stem for p in CORPUS.glob("*.json")}
    assert {
        "simple_get_200",
        "keep_alive_3",
        "pipelined_3",
        "post_content_length",
        "chunked_response_ext_trailers",
        "head_with_content_length",
        "not_modified_304",
        "continue_100_then_200",
        "upgrade_101",
        "mid_stream_start",
        "body_with_gap",
        "head_cut_by_gap",
        "http10_until_close",
        "garbage_then_request",
    } <= names


def test_gap_over_chunk_data_and_its_crlf_keeps_the_framing():
    """A chunk written with its CRLF in one syscall and cut by the capture stays in step."""
    p = Http1Parser()
    out = p.feed(CLIENT, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 1)
    out += p.feed(SERVER, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"64\r\n" + b"a" * 100 + b"\r\n", 2)
    write = b"1770\r\n" + b"b" * 6000 + b"\r\n"
    out += p.feed(SERVER, write[:4096], 3)
    out += p.gap(SERVER, len(write) - 4096, 3)
    out += p.feed(SERVER, b"32\r\n" + b"c" * 50 + b"\r\n0\r\n\r\n", 4)
    (ex,) = [x for x in out if isinstance(x, HttpExchange)]
    assert ex.response.body_size == 6150 and not ex.response.truncated


# -- fields of accepted heads: split from the bytes, as llhttp's own callbacks report them ------


_NAME_BYTES = b"aZ-_!#$%&'*+.^`|~09" + b"(),/;<=>?@[]{}\" \t\x80\xff\x00"
_VALUE_BYTES = b"aZ09 \t:;,=/\"\x7f\x80\xa0\xff\x00\x01\x0b\x0c\r\n"


def _random_head(rng: random.Random, response: bool) -> bytes:
    lines = [b"HTTP/1.1 200 OK" if response else b"GET /x?y=1 HTTP/1.1"]
    for _ in range(rng.randrange(0, 8)):
        name = bytes(rng.choice(_NAME_BYTES[:19] if rng.random() < 0.8 else _NAME_BYTES)
                     for _ in range(rng.randrange(0 if rng.random() < 0.05 else 1, 12)))
        value = bytes(rng.choice(_VALUE_BYTES[:10] if rng.random() < 0.7 else _VALUE_BYTES)
                      for _ in range(rng.randrange(0, 20)))
        sep = rng.choice([b":", b": ", b":\t ", b" :", b":"])
        lines.append(name + sep + value)
    return b"\r\n".join(lines) + b"\r\n\r\n"


class _Collect:
    def __init__(self):
        self.headers = []

    def on_header(self, name, value):
        self.headers.append((name.decode("latin-1"), value.decode("latin-1").rstrip(" \t")))


def test_fields_of_accepted_heads_are_llhttps_own():
    """Whenever llhttp accepts a head whole, the fields split from its bytes (what a message's
    headers become when first read) are exactly what llhttp's per-field callbacks report."""
    import httptools

    from hdrlog.protocols.http1 import _split_fields, accepted_head

    rng = random.Random(4242)
    accepted = 0
    for i in range(3000):
        response = bool(i % 2)
        head = _random_head(rng, response)
        got = _Collect()
        cls = httptools.HttpResponseParser if response else httptools.HttpRequestParser
        try:
            cls(got).feed_data(head)
        except httptools.HttpParserUpgrade:
            pass
        except httptools.HttpParserError:
            continue
        accepted += 1
        assert _split_fields(head) == got.headers, head
        p = Http1Parser()
        out = p.feed(C, b"GET /x HTTP/1.1\r\n\r\n", 1) if response else []
        out += p.feed(S if response else C, head, 2) + p.close(3)
        (x,) = exchanges(out)
        msg = x.response if response else x.request
        assert msg.headers == got.headers, head
        assert accepted_head(msg) is None  # split once, then kept
    assert accepted > 300, "the generator should make acceptable heads often enough"


def test_refused_head_keeps_the_fields_llhttp_reported_before_refusing():
    """A head llhttp refuses is logged truncated with the fields it reported before the error."""
    out = parse([(C, b"GET / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 1)], close_ts=5)
    (x,) = exchanges(out)
    assert x.request.truncated and x.request.headers == [("Host", "h"), ("Content-Length", "1")]
    assert failures(out) == [(C, "invalid head: Duplicate Content-Length")]


def _memo_run(events, close_ts):
    """Each event fed whole, twice over (the second time every accepted head is a repeat)."""
    out = []
    for _ in range(2):
        out.append(run(events, close_ts))
    return out


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.json")), ids=lambda p: p.stem)
def test_remembered_heads_change_nothing(path, monkeypatch):
    """A head seen before (http1.HEAD_MEMO_BYTES) skips llhttp and, fed whole, the state machine
    (Http1Parser._whole): every corpus stream and random keep-alive traffic give the same as
    with nothing remembered."""
    import hdrlog.protocols.http1 as h

    rng = random.Random(path.stem)
    case = json.loads(path.read_text())
    streams = [(_corpus_events(case["chunks"]), case["close_ts"])]
    events, ts = [], 0
    for i in range(60):  # keep-alive, HEAD, 204/304, bodies whole, cut and in later syscalls
        ts += 1
        method = rng.choice((b"GET", b"HEAD", b"POST"))
        extra = b"Content-Length: 0\r\n" if method == b"POST" else b""
        events.append((C, method + b" /%d HTTP/1.1\r\nHost: h\r\n" % (i % 3) + extra + b"\r\n", ts))
        body = b"x" * rng.randrange(0, 40)
        status = rng.choice((b"200 OK", b"204 No Content", b"304 Not Modified", b"404 Not Found"))
        resp = ok(body, status)
        cut = rng.randrange(len(resp) - len(body), len(resp) + 1)
        events.append((S, resp[:cut], ts))
        if cut < len(resp):
            events.append((S, resp[cut:], ts + 1) if rng.random() < 0.5 else ("gap", S, len(resp) - cut, ts + 1))
    streams.append((events, ts + 5))
    for events, close_ts in streams:
        h._KNOWN_HEADS.clear()
        remembered = _memo_run(events, close_ts)
        h._KNOWN_HEADS.clear()
        monkeypatch.setattr(h, "HEAD_MEMO_BYTES", 0)
        fresh = _memo_run(events, close_ts)
        monkeypatch.undo()
        assert remembered == fresh
