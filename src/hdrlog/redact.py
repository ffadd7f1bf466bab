"""Redaction of credentials in HTTP records, before any sink sees them.

What is secret is decided by name, never by a flag on a value: the header and
query parameter names below are the policy, and each header name maps to one
rule that keeps the shape (scheme, cookie names, attributes, other parameters)
and replaces the secret part. Mode "mask" writes REDACTED; mode "hash" writes
"hmac:" and the first 16 hex digits of HMAC-SHA256(key, secret), so equal
secrets can be matched across records without being recoverable. Without a
key, each run draws its own, and hashes do not match across runs.
An empty value has nothing to hide and stays empty.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar
from urllib.parse import unquote_plus

import msgspec

from hdrlog.records import HttpRecord, Record, TlsRecord

__all__ = [
    "Redactor",
    "REDACTED",
    "SCHEME_HEADERS",
    "SECRET_HEADERS",
    "SECRET_HEADER_WORDS",
    "URL_HEADERS",
    "SECRET_PARAM_NAMES",
    "SECRET_PARAM_WORDS",
]

REDACTED = "[REDACTED]"
HASH_PREFIX = "hmac:"
HASH_HEX_DIGITS = 16  # 64 bits: enough to tell secrets apart, too short to be worth attacking

# "<scheme> <credentials>": the scheme says how a client authenticates, the rest is the secret.
SCHEME_HEADERS = frozenset({"authorization", "proxy-authorization"})
# Headers whose whole value is a credential.
SECRET_HEADERS = frozenset({
    "x-api-key", "api-key", "x-auth-token", "x-access-token", "x-csrf-token", "x-xsrf-token",
    "x-amz-security-token", "x-goog-api-key", "private-token", "x-vault-token",
})  # fmt: skip
# Vendors invent credential headers faster than a list can follow; these words give them away.
SECRET_HEADER_WORDS = ("secret", "token", "password", "api-key", "apikey", "session")
# Headers holding a URL, whose query and fragment carry the same parameters as url.query
# (an OAuth redirect's Location has ?code=, an implicit grant's #access_token=).
URL_HEADERS = frozenset({"referer", "location", "content-location"})

# A parameter is secret when its name (decoded, lower case) contains one of these words:
# access_token, refresh_token, client_secret, api_key, apikey, X-Amz-Signature,
# X-Amz-Credential, oauth_token, passwd all do.
SECRET_PARAM_WORDS = (
    "token", "password", "passwd", "pwd", "secret", "key", "signature", "auth", "session",
    "credential",
)  # fmt: skip
# Short names that would match half the web as substrings (zipcode, design): exact only.
SECRET_PARAM_NAMES = frozenset({"sig", "code"})

_SCHEME = re.compile(r"(\s*[!#$%&'*+.^_`|~0-9A-Za-z-]+)(\s+)(\S.*)", re.DOTALL)
_PARAM_SEP = re.compile(r"([&;])")  # ';' too: some servers split on it, so a secret may follow one
# A comma before "name=" starts the next cookie of a folded Set-Cookie list
# (Expires=Wed, 21 Oct ... has a comma too, but no '=' after it).
_COOKIE_FOLD = re.compile(r"(,\s*)(?=[^;,=\s]+=)")
_USERINFO = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^/?#@:]*:)([^/?#@]*)(@)")
# Command lines carry secrets too: --password=x, --token x, curl -H 'Authorization: Bearer x',
# URLs with user:password@ or ?token=, and mysql -px.
_CMD_OPTION = re.compile(
    r"(?i)(--?[\w.-]*(?:password|passwd|pwd|token|secret|api-?key|auth)[\w.-]*)(=|\s+)(\S+)"
)
_CMD_SCHEME = re.compile(r"(?i)((?:proxy-)?authorization:\s*[!#$%&'*+.^_`|~0-9A-Za-z-]+\s+)(\S+)")
_CMD_URL_QUERY = re.compile(r"(\?)([^\s#]+)")
_MYSQL_CLIENTS = frozenset({"mysql", "mariadb", "mysqldump", "mysqladmin", "mariadb-dump", "mariadb-admin"})
_MYSQL_P = re.compile(r"(\s-p)(\S+)")
# curl -H 'Name: value': the value runs to the next option or URL (the command line is
# argv joined with spaces, so that is where the argument ended)
_CMD_HEADER = re.compile(r"(?<![\w-])([A-Za-z0-9-]+):[ \t]*(.+?)(?=\s+-{1,2}[A-Za-z]|\s+[A-Za-z][A-Za-z0-9+.-]*://|$)")
_NAME_CACHE_MAX = 1024  # names come off the wire; do not remember unboundedly many
# every record of a process carries its command line: redact each distinct one once
# (at most MAX_CMDLINE_BYTES each, so this holds a few MiB at worst)
_COMMAND_CACHE_MAX = 1024
_UNSEEN = object()

Hide = Callable[[str], str]
R = TypeVar("R", bound=Record)


class Redactor:
    """Callable that returns a record with its credentials replaced; the input is not changed."""

    def __init__(
        self,
        *,
        enabled: bool = True,
        mode: str = "mask",
        key: bytes | str | None = None,
        extra_headers: Iterable[str] = (),
        extra_params: Iterable[str] = (),
    ) -> None:
        if mode not in ("mask", "hash"):
            raise ValueError(f"redact.mode: {mode!r} is not 'mask' or 'hash'")
        self.enabled = enabled
        self.mode = mode
        if isinstance(key, str):
            key = key.encode()
        self._key = key or os.urandom(32)
        self._hide: Hide = self._hmac if mode == "hash" else _mask
        self._extra_headers = frozenset(h.lower() for h in extra_headers)
        self._extra_params = frozenset(p.lower() for p in extra_params)
        self._rules: dict[str, Callable[[str], str] | None] = {}
        self._params: dict[str, bool] = {}
        self._commands: dict[str, str] = {}

    @classmethod
    def from_config(cls, cfg: Any) -> Redactor:
        """From hdrlog's Config: redact, redact_mode, redact_key, redact_headers, redact_params."""
        return cls(
            enabled=cfg.redact,
            mode=cfg.redact_mode,
            key=cfg.redact_key,
            extra_headers=cfg.redact_headers or (),
            extra_params=cfg.redact_params or (),
        )

    def __call__(self, record: R) -> R:
        if not self.enabled or not isinstance(record, (HttpRecord, TlsRecord)):
            return record
        changes: dict[str, Any] = {}
        text = record.command_line
        if text:
            cmd = self._commands.get(text)
            if cmd is None:
                if len(self._commands) >= _COMMAND_CACHE_MAX:
                    self._commands.clear()
                cmd = self._commands[text] = self.command_line(text)
            if cmd != text:
                changes["command_line"] = cmd
        if isinstance(record, TlsRecord):
            return msgspec.structs.replace(record, **changes) if changes else record  # type: ignore[return-value]
        headers = record.request_headers
        if headers:
            redacted = self.headers(headers)
            if redacted is not headers:
                changes["request_headers"] = redacted
        headers = record.response_headers
        if headers:
            redacted = self.headers(headers)
            if redacted is not headers:
                changes["response_headers"] = redacted
        if record.url_query:
            query = self.query(record.url_query)
            if query != record.url_query:
                changes["url_query"] = query
        if not changes:
            return record
        return msgspec.structs.replace(record, **changes)  # type: ignore[return-value]

    def command_line(self, text: str) -> str:
        """A process's command line with option values, credentials and URL secrets replaced."""
        hide = self._hide
        text = _USERINFO.sub(lambda m: m.group(1) + hide(m.group(2)) + m.group(3), text)
        text = _CMD_HEADER.sub(self._cmd_header, text)
        text = _CMD_SCHEME.sub(lambda m: m.group(1) + hide(m.group(2)), text)
        text = _CMD_OPTION.sub(lambda m: m.group(1) + m.group(2) + hide(m.group(3)), text)
        text = _CMD_URL_QUERY.sub(lambda m: m.group(1) + self.query(m.group(2)), text)
        argv0 = text.split(" ", 1)[0].rsplit("/", 1)[-1]
        if argv0 in _MYSQL_CLIENTS:
            text = _MYSQL_P.sub(lambda m: m.group(1) + hide(m.group(2)), text)
        return text

    def _cmd_header(self, m: re.Match) -> str:
        rule = self._rule(m.group(1).lower())
        if rule is None or "://" in m.group(1):
            return m.group(0)
        return f"{m.group(1)}: {rule(m.group(2))}"

    def headers(self, headers: dict[str, list[str]]) -> dict[str, list[str]]:
        """A new map with secret values replaced, or the same map when none is secret."""
        known = self._rules
        for name in headers:
            rule = known.get(name, _UNSEEN)
            if rule is _UNSEEN:
                rule = self._rule(name)
            if rule is not None:
                break
        else:
            return headers
        out = {}
        for name, values in headers.items():
            rule = self._rule(name)
            out[name] = [rule(v) for v in values] if rule else values
        return out

    def header(self, name: str, value: str) -> str:
        """One header value, redacted as its (any case) name demands."""
        rule = self._rule(name.lower())
        return rule(value) if rule else value

    def query(self, text: str) -> str:
        """The query string with secret parameters' values replaced, otherwise byte for byte."""
        if "=" not in text:
            return text
        parts = _PARAM_SEP.split(text)
        for i in range(0, len(parts), 2):
            name, eq, value = parts[i].partition("=")
            if value and self._secret_param(name):
                parts[i] = name + eq + self._hide(unquote_plus(value))
        return "".join(parts)

    def _secret_param(self, raw: str) -> bool:
        try:
            return self._params[raw]
        except KeyError:
            pass
        name = unquote_plus(raw).lower()
        secret = (
            name in SECRET_PARAM_NAMES
            or name in self._extra_params
            or any(word in name for word in SECRET_PARAM_WORDS)
        )
        if len(self._params) >= _NAME_CACHE_MAX:
            self._params.clear()
        self._params[raw] = secret
        return secret

    def _rule(self, name: str) -> Callable[[str], str] | None:
        try:
            return self._rules[name]
        except KeyError:
            pass
        if len(self._rules) >= _NAME_CACHE_MAX:
            self._rules.clear()
        rule = self._rules[name] = self._choose(name)
        return rule

    def _choose(self, name: str) -> Callable[[str], str] | None:
        """The rule for a lower-case header name; None: not secret."""
        if name in self._extra_headers:  # asked for explicitly: the whole value, scheme and all
            return self._hide
        if name in SCHEME_HEADERS:
            return self._scheme
        if name == "cookie":
            return self._cookie
        if name == "set-cookie":
            return self._set_cookie
        if name in URL_HEADERS:
            return self._url
        if name in SECRET_HEADERS or any(word in name for word in SECRET_HEADER_WORDS):
            return self._hide
        return None

    def _hmac(self, secret: str) -> str:
        if not secret:
            return secret
        mac = hmac.new(self._key, secret.encode("utf-8", "surrogatepass"), hashlib.sha256)
        return HASH_PREFIX + mac.hexdigest()[:HASH_HEX_DIGITS]

    def _scheme(self, value: str) -> str:
        """'Bearer abc' -> 'Bearer [REDACTED]'; a lone word may be the credential itself."""
        m = _SCHEME.fullmatch(value)
        if m is None:
            return self._hide(value)
        return m.group(1) + m.group(2) + self._hide(m.group(3))

    def _cookie(self, value: str) -> str:
        """'a=1; b=2' -> 'a=[REDACTED]; b=[REDACTED]'."""
        return ";".join(self._pair(part) for part in value.split(";"))

    def _set_cookie(self, value: str) -> str:
        """'a=1; Path=/' -> 'a=[REDACTED]; Path=/': the attributes are the server's, not secret."""
        pieces = _COOKIE_FOLD.split(value)
        for i in range(0, len(pieces), 2):
            first, sep, attributes = pieces[i].partition(";")
            pieces[i] = self._pair(first) + sep + attributes
        return "".join(pieces)

    def _pair(self, part: str) -> str:
        name, eq, value = part.partition("=")
        if eq:
            return name + eq + self._hide(value)
        stripped = part.lstrip()
        # No '=': browsers take the whole as a nameless cookie's value.
        return part[: len(part) - len(stripped)] + self._hide(stripped) if stripped else part

    def _url(self, value: str) -> str:
        """A URL's password, and its query and fragment parameters, as for url.query."""
        value = _USERINFO.sub(lambda m: m.group(1) + self._hide(m.group(2)) + m.group(3), value, 1)
        rest, hash_sep, fragment = value.partition("#")
        base, query_sep, query = rest.partition("?")
        return base + query_sep + self.query(query) + hash_sep + self.query(fragment)


def _mask(secret: str) -> str:
    return REDACTED if secret else secret
