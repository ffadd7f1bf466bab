"""Redaction: no credential in a record survives to JSON; everything else is kept exactly."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import msgspec
import pytest

from hdrlog.records import HttpRecord, PacketRecord
from hdrlog.redact import REDACTED, SECRET_HEADERS, Redactor

SECRETS = [
    "eyJhbGciOiJIUzI1NiJ9.c2VjcmV0.sig",  # bearer token
    "dXNlcjpodW50ZXIy",  # basic credentials
    "proxypass123",
    "s3ss10nval",
    "darkmode-theme-value",
    "setcookievalue42",
    "k3y-AKIA-0001",
    "qtoken-9f8e",
    "hunter2pw",
    "csrf-abcdef",
    "redirectcode77",
    "implicitat99",
    "urlpassword5",
]


def make(**kw) -> HttpRecord:
    return HttpRecord(ts="2025-01-01T00:00:00.000000000Z", type="http", **kw)


def secret_record() -> HttpRecord:
    return make(
        method="GET",
        url_path="/search",
        url_query="token=qtoken-9f8e&password=hunter2pw&q=ok",
        user_agent="curl/8.5.0",
        request_headers={
            "authorization": ["Bearer eyJhbGciOiJIUzI1NiJ9.c2VjcmV0.sig", "Basic dXNlcjpodW50ZXIy"],
            "proxy-authorization": ["proxypass123"],
            "cookie": ["sid=s3ss10nval; theme=darkmode-theme-value"],
            "x-api-key": ["k3y-AKIA-0001"],
            "x-csrf-token": ["csrf-abcdef"],
            "referer": ["https://u:urlpassword5@app.example/cb?code=redirectcode77&state=s1"],
            "accept": ["*/*"],
            "host": ["example.com"],
        },
        response_headers={
            "set-cookie": ["sid=setcookievalue42; Path=/; HttpOnly"],
            "location": ["https://app.example/cb#access_token=implicitat99&expires_in=3600"],
            "content-type": ["text/html"],
        },
    )


def json_bytes(record: HttpRecord) -> bytes:
    return msgspec.json.encode(record)


def test_no_secret_survives_mask():
    """After masking, none of the secret strings appears anywhere in the record's JSON."""
    out = Redactor()(secret_record())
    data = json_bytes(out)
    for secret in SECRETS:
        assert secret.encode() not in data, secret


def test_mask_keeps_the_shape():
    """Schemes, cookie names, attributes, other parameters and non-secret fields are kept exactly."""
    out = Redactor()(secret_record())
    req, resp = out.request_headers, out.response_headers
    assert req["authorization"] == [f"Bearer {REDACTED}", f"Basic {REDACTED}"]
    assert req["proxy-authorization"] == [REDACTED]
    assert req["cookie"] == [f"sid={REDACTED}; theme={REDACTED}"]
    assert req["x-api-key"] == [REDACTED] and req["x-csrf-token"] == [REDACTED]
    assert req["referer"] == [f"https://u:{REDACTED}@app.example/cb?code={REDACTED}&state=s1"]
    assert req["accept"] == ["*/*"] and req["host"] == ["example.com"]
    assert resp["set-cookie"] == [f"sid={REDACTED}; Path=/; HttpOnly"]
    assert resp["location"] == [f"https://app.example/cb#access_token={REDACTED}&expires_in=3600"]
    assert resp["content-type"] == ["text/html"]
    assert out.url_query == f"token={REDACTED}&password={REDACTED}&q=ok"
    assert (out.url_path, out.user_agent, out.method) == ("/search", "curl/8.5.0", "GET")


def test_input_is_not_mutated():
    """The Redactor returns a new record and leaves the input's maps and lists as they were."""
    rec = secret_record()
    before = copy.deepcopy(msgspec.to_builtins(rec))
    out = Redactor()(rec)
    assert out is not rec
    assert msgspec.to_builtins(rec) == before


def test_record_without_secrets_is_returned_as_is():
    """A record with nothing to redact comes back unchanged (the same frozen object)."""
    rec = make(url_query="q=ok&page=2", request_headers={"accept": ["*/*"]})
    assert Redactor()(rec) is rec


def test_other_record_types_pass_through():
    """Records that are not HTTP records are not touched."""
    rec = PacketRecord(ts="t", type="packet", tcp_payload="4142")
    assert Redactor()(rec) is rec


@pytest.mark.parametrize("name", sorted(SECRET_HEADERS) + [
    "x-client-secret", "x-session-id", "x-refresh-token", "x-my-password", "x-service-apikey",
    "X-Upstream-API-Key",
])  # fmt: skip
def test_whole_value_headers(name):
    """Every listed API-key style header, and any whose name contains a secret word, is replaced whole."""
    r = Redactor()
    assert r.header(name, "Bearer topsecret") == REDACTED
    assert r.headers({name.lower(): ["topsecret"]})[name.lower()] == [REDACTED]


@pytest.mark.parametrize(
    "value,expected",
    [
        ("Bearer abc", f"Bearer {REDACTED}"),
        ("Basic dXNlcjpwYXNz", f"Basic {REDACTED}"),
        ("bearer  abc", f"bearer  {REDACTED}"),
        ('Digest username="bob", realm="r", response="6629fae4"', f"Digest {REDACTED}"),
        ("AWS4-HMAC-SHA256 Credential=AKIA/x, Signature=fe5f80f7", f"AWS4-HMAC-SHA256 {REDACTED}"),
        ("abc123", REDACTED),
        ("Bearer", REDACTED),
        ("Bearer ", REDACTED),
        ("", ""),
    ],
)
def test_authorization_keeps_scheme_only(value, expected):
    """Authorization keeps its scheme and loses the credentials; a value without a scheme is all secret."""
    assert Redactor().header("Authorization", value) == expected


@pytest.mark.parametrize(
    "value,expected",
    [
        ("sid=abc; theme=dark", f"sid={REDACTED}; theme={REDACTED}"),
        ("sid=abc;theme=dark;", f"sid={REDACTED};theme={REDACTED};"),
        ("sid=", "sid="),
        ('sid="quoted"', f"sid={REDACTED}"),
        ("justavalue", REDACTED),
        ("a=1; justavalue", f"a={REDACTED}; {REDACTED}"),
        ("a=b=c", f"a={REDACTED}"),
    ],
)
def test_cookie_keeps_names(value, expected):
    """Cookie keeps the cookie names and separators and replaces every value."""
    assert Redactor().header("cookie", value) == expected


@pytest.mark.parametrize(
    "value,expected",
    [
        ("sid=abc; Path=/; HttpOnly", f"sid={REDACTED}; Path=/; HttpOnly"),
        (
            "id=a3fWa; Expires=Wed, 21 Oct 2015 07:28:00 GMT; Secure",
            f"id={REDACTED}; Expires=Wed, 21 Oct 2015 07:28:00 GMT; Secure",
        ),
        ("a=1; Path=/, b=2; Max-Age=60", f"a={REDACTED}; Path=/, b={REDACTED}; Max-Age=60"),
        ("nameless", REDACTED),
    ],
)
def test_set_cookie_keeps_name_and_attributes(value, expected):
    """Set-Cookie keeps the name and attributes (also of a folded list) and replaces the value."""
    assert Redactor().header("Set-Cookie", value) == expected


M = REDACTED


@pytest.mark.parametrize(
    "query,expected",
    [
        ("token=abc&q=ok", f"token={M}&q=ok"),
        ("q=a+b&Password=x&q=c%20d", f"q=a+b&Password={M}&q=c%20d"),
        ("flag&token=abc&empty=&token=", f"flag&token={M}&empty=&token="),
        ("token&q=1", "token&q=1"),
        ("token=a&token=b", f"token={M}&token={M}"),
        ("access_token=a&refresh_token=b&client_secret=c", f"access_token={M}&refresh_token={M}&client_secret={M}"),
        ("X-Amz-Signature=a&X-Amz-Credential=b&X-Amz-Date=20250101", f"X-Amz-Signature={M}&X-Amz-Credential={M}&X-Amz-Date=20250101"),
        ("api_key=a&apikey=b&sig=c&code=d&zipcode=12345", f"api_key={M}&apikey={M}&sig={M}&code={M}&zipcode=12345"),
        ("%74oken=abc&my+secret=x", f"%74oken={M}&my+secret={M}"),
        ("user%5Bpassword%5D=x&a=%E2%9C%93", f"user%5Bpassword%5D={M}&a=%E2%9C%93"),
        ("a=1;sessionid=xyz", f"a=1;sessionid={M}"),
        ("&&token=a&&", f"&&token={M}&&"),
        ("q==x&auth==y", f"q==x&auth={M}"),
        ("", ""),
    ],
)
def test_query_shape_is_kept(query, expected):
    """Secret parameters' values are replaced; names, order, separators and escapes stay byte for byte."""
    assert Redactor().query(query) == expected


def test_hash_mode_is_deterministic_and_keyed():
    """In hash mode equal secrets hash equal, other keys give other hashes, and no hash is the secret."""
    a, a2, b = Redactor(mode="hash", key=b"k1"), Redactor(mode="hash", key=b"k1"), Redactor(mode="hash", key=b"k2")
    bearer = a.header("authorization", "Bearer tok-123")
    assert bearer.startswith("Bearer hmac:") and len(bearer) == len("Bearer hmac:") + 16
    assert bearer == a2.header("authorization", "Bearer tok-123")
    assert bearer != b.header("authorization", "Bearer tok-123")
    assert bearer != a.header("authorization", "Bearer tok-124")
    assert "tok-123" not in bearer
    # The same token in a header and a query parameter hashes the same: it can be followed.
    assert a.query("access_token=tok-123").split("=", 1)[1] == bearer.split(" ", 1)[1]
    assert a.header("cookie", "sid=tok-123; t=x") == f"sid={bearer.split(' ', 1)[1]}; t={a.header('x-api-key', 'x')}"
    assert a.query("token=tok%2D123") == a.query("token=tok-123")  # decoded before hashing


def test_hash_mode_leaks_nothing():
    """Hash mode, like mask mode, leaves none of the secret strings in the JSON."""
    out = Redactor(mode="hash", key="a key")(secret_record())
    data = json_bytes(out)
    for secret in SECRETS:
        assert secret.encode() not in data, secret
    assert b"q=ok" in data and b"Bearer hmac:" in data and b"Path=/; HttpOnly" in data


def test_hash_mode_without_key_uses_a_random_one():
    """Without a key each Redactor draws its own: hashes match within a run, not across runs."""
    one, two = Redactor(mode="hash"), Redactor(mode="hash")
    assert one.header("x-api-key", "k") == one.header("x-api-key", "k")
    assert one.header("x-api-key", "k") != two.header("x-api-key", "k")


def test_extra_names():
    """Configured extra header and parameter names are redacted whole, in any case."""
    r = Redactor(extra_headers=["X-Customer-Ref", "Authorization"], extra_params=["Email", "q"])
    rec = make(
        url_query="email=bob%40example.com&q=private&page=2",
        request_headers={"x-customer-ref": ["cust-8812"], "authorization": ["Bearer zzz"]},
    )
    out = r(rec)
    assert out.url_query == f"email={M}&q={M}&page=2"
    assert out.request_headers == {"x-customer-ref": [M], "authorization": [M]}
    assert Redactor().header("x-customer-ref", "cust-8812") == "cust-8812"


def test_disabled_is_identity():
    """A disabled Redactor returns the very record it was given."""
    rec = secret_record()
    assert Redactor(enabled=False)(rec) is rec


def test_from_config():
    """from_config takes hdrlog's redact_* settings; an unknown mode is a ValueError naming it."""
    cfg = SimpleNamespace(
        redact=True, redact_mode="hash", redact_key="k" * 16, redact_headers=["x-one"], redact_params=[]
    )
    r = Redactor.from_config(cfg)
    assert r.header("x-one", "v") == Redactor(mode="hash", key=b"k" * 16).header("x-api-key", "v")
    assert Redactor.from_config(SimpleNamespace(**{**vars(cfg), "redact": False})).enabled is False
    with pytest.raises(ValueError, match="redact.mode"):
        Redactor(mode="scramble")


@pytest.mark.parametrize(
    "cmd,secret,kept",
    [
        ("curl -H Authorization: Bearer sekrit123 http://x/", "sekrit123", "Authorization: Bearer [REDACTED]"),
        ("app --password=sekrit123 --port 80", "sekrit123", "--password=[REDACTED] --port 80"),
        ("app --api-key sekrit123 -v", "sekrit123", "--api-key [REDACTED] -v"),
        ("wget https://bob:sekrit123@example.com/x", "sekrit123", "https://bob:[REDACTED]@example.com/x"),
        ("curl http://x/cb?token=sekrit123&page=2", "sekrit123", "?token=[REDACTED]&page=2"),
        ("/usr/bin/mysql -u root -psekrit123 db", "sekrit123", "-u root -p[REDACTED] db"),
        ("curl -H Cookie: sid=sekrit123; theme=dark -H X-Api-Key: k2 http://x/", "sekrit123", "Cookie: sid=[REDACTED]; theme=[REDACTED] -H X-Api-Key: [REDACTED] http://x/"),
    ],
)
def test_command_line_secrets_are_redacted(cmd, secret, kept):
    """Secrets in a process's command line (options, credentials, URLs, mysql -p) never reach the record."""
    rec = HttpRecord(ts="t", type="http", command_line=cmd)
    out = Redactor()(rec)
    assert secret not in msgspec.json.encode(out).decode()
    assert kept in out.command_line


def test_command_line_without_secrets_is_unchanged():
    """An ordinary command line (ports, paths, -p for another tool) is left as it is."""
    cmd = "nginx -g daemon off; -p /tmp/prefix"
    rec = HttpRecord(ts="t", type="http", command_line=cmd)
    assert Redactor()(rec) is rec


def test_command_lines_are_redacted_once_each_and_alike():
    """A process's command line is redacted the same way on every record (it is worked out once)."""
    r = Redactor()
    cmd = "app --password=sekrit123 --port 80"
    outs = [r(HttpRecord(ts="t", type="http", command_line=cmd)).command_line for _ in range(3)]
    assert outs == ["app --password=[REDACTED] --port 80"] * 3
    assert r(HttpRecord(ts="t", type="http", command_line="app --port 80")).command_line == "app --port 80"


def test_headers_without_secrets_are_the_same_map():
    """Header maps with no secret name come back as the very same object; with one, a new map."""
    r = Redactor()
    plain = {"host": ["h"], "accept": ["*/*"]}
    assert r.headers(plain) is plain
    secret = {"host": ["h"], "authorization": ["Bearer abc"], "x-api-key": ["k"]}
    assert r.headers(secret) == {"host": ["h"], "authorization": [f"Bearer {REDACTED}"], "x-api-key": [REDACTED]}
    assert secret["authorization"] == ["Bearer abc"]
