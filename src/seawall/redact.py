"""Credentials out of URLs before they are shown or logged: userinfo and secret-looking query values.

``redact_url`` keeps what a reader needs (scheme, host, port, path, parameter names) and replaces
with ``***`` the password of the userinfo, a bare userinfo of an http(s) URL (how tokens are passed
there; a database URL's bare user name is kept), and the value of every query parameter whose name
looks like a credential.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_plus

MASK = "***"

# Parameter names that carry credentials: passwords (also libpq's sslpassword), tokens, keys, signatures
# (presigned object-store URLs: X-Amz-Signature, X-Amz-Credential; Azure SAS: sig), sessions.
_SECRET_PARAM = re.compile(
    r"pass|pwd|secret|token|api[-_]?key|access[-_]?key|private[-_]?key|^key$|auth|signature|^sig$|credential|session",
    re.IGNORECASE,
)
# Userinfo as SQLAlchemy reads it: a user without ':' or '/', then an optional password up to the '@'
# (a password pasted unencoded may hold '/', and must still be masked).
_USERINFO = re.compile(r"^(?P<user>[^:/?#@]*)(?::(?P<password>[^@?#]*))?@")
_URL_IN_TEXT = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def _mask_param(pair: str) -> str:
    name, eq, _value = pair.partition("=")
    return f"{name}={MASK}" if eq and _SECRET_PARAM.search(unquote_plus(name)) else pair


def redact_url(url: str) -> str:
    """``url`` with its userinfo password and secret-looking query values masked; other text unchanged."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    userinfo = _USERINFO.match(rest)
    if userinfo:
        user = userinfo.group("user")
        if userinfo.group("password") is not None:
            masked = f"{user}:{MASK}@"
        else:
            masked = f"{MASK}@" if scheme.lower() in ("http", "https", "ws", "wss") else f"{user}@"
        rest = masked + rest[userinfo.end() :]
    before, qmark, after = rest.partition("?")
    if qmark:
        query, hash_, fragment = after.partition("#")
        rest = f"{before}?{'&'.join(_mask_param(p) for p in query.split('&'))}{hash_}{fragment}"
    return f"{scheme}://{rest}"


def redact_text(text: str) -> str:
    """``text`` (an error message, a log line) with every URL in it redacted."""
    return _URL_IN_TEXT.sub(lambda m: redact_url(m.group(0)), text)
