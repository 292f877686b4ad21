"""This instance's signing key pair, and the signed JSON documents hotlines exchange (referrals and
their status updates, law-enforcement packages).

A document is signed in its canonical form: UTF-8 JSON with keys sorted, no insignificant whitespace,
non-ASCII characters as they are and no floating-point numbers — so the RFC 8785 (JCS) form, which
any language can reproduce from the parsed document. The signature is Ed25519, sent in standard
base64. A public key travels as ``ed25519:<base64 of its 32 bytes>``; its fingerprint is the SHA-256
of those bytes in hex.

The private key lives in a file of its own (``SEAWALL_REFERRAL_KEY_FILE``, by default
``SEAWALL_HOME/referral-signing.key``), created 0600 on first use and never stored in the database:
a database dump cannot sign as this hotline.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import stat
import threading
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from seawall.config import Settings, _create_private_file

PUBLIC_KEY_PREFIX = "ed25519:"
KEY_FILE_NAME = "referral-signing.key"

_keys: dict[tuple[str, int], Ed25519PrivateKey] = {}
_keys_lock = threading.Lock()


class SignatureError(ValueError):
    """A signature that does not verify, or a document or key that cannot be checked; says why."""


#: Deeper documents are refused: none of ours nests beyond a few levels, and the JSON writer recurses.
MAX_DEPTH = 64


def canonical_json(document: Any) -> bytes:
    """The bytes a signature covers (see the module's docstring)."""
    _check_values(document)
    try:
        text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        return text.encode("utf-8")
    except (TypeError, ValueError):  # a value JSON has no form for, or a lone surrogate
        raise SignatureError("the document is not plain JSON text") from None


def _check_values(document: Any) -> None:
    # Numbers with a fraction print differently from one JSON library to the next: none are signed.
    # Walked with a stack, not recursion: a hostile document may nest deeper than Python recurses.
    pending: list[tuple[Any, int]] = [(document, 0)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, float):
            raise SignatureError("a signed document holds no floating-point numbers")
        if isinstance(value, dict | list) and depth >= MAX_DEPTH:
            raise SignatureError(f"a signed document nests at most {MAX_DEPTH} levels deep")
        if isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    raise SignatureError("a signed document's keys are strings")
                pending.append((item, depth + 1))
        elif isinstance(value, list):
            pending.extend((item, depth + 1) for item in value)


def key_path(settings: Settings) -> Path:
    return settings.referral_key_file or settings.ensure_home() / KEY_FILE_NAME


def signing_key(settings: Settings) -> Ed25519PrivateKey:
    """The instance's private key, made on first use; refused if others may read its file."""
    path = key_path(settings)
    if not path.exists():
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        _create_private_file(path, pem.decode("ascii"))  # a concurrent first use keeps the winner's key
    info = path.stat()
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise RuntimeError(f"{path} may be read by other users: make it private (chmod 600 {path})")
    cache_key = (str(path), info.st_mtime_ns)
    with _keys_lock:
        key = _keys.get(cache_key)
        if key is None:
            loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
            if not isinstance(loaded, Ed25519PrivateKey):
                raise RuntimeError(f"{path} holds no Ed25519 private key")
            key = _keys[cache_key] = loaded
    return key


def _raw_public(key: Ed25519PublicKey) -> bytes:
    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_key_text(settings: Settings) -> str:
    """Our public key as partners register it."""
    return PUBLIC_KEY_PREFIX + base64.b64encode(_raw_public(signing_key(settings).public_key())).decode("ascii")


def parse_public_key(text: str) -> str:
    """A partner's public key (``ed25519:…`` or a PEM block) in the ``ed25519:…`` form; ValueError otherwise."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        try:
            loaded = serialization.load_pem_public_key(text.encode("ascii"))
        except (ValueError, UnicodeEncodeError):
            raise ValueError("not a PEM public key") from None
        if not isinstance(loaded, Ed25519PublicKey):
            raise ValueError("the PEM block holds a key of another type than Ed25519")
        return PUBLIC_KEY_PREFIX + base64.b64encode(_raw_public(loaded)).decode("ascii")
    if not text.startswith(PUBLIC_KEY_PREFIX):
        raise ValueError(f"a public key is '{PUBLIC_KEY_PREFIX}<base64>' (what `seawall partners key` prints) or PEM")
    try:
        raw = base64.b64decode(text.removeprefix(PUBLIC_KEY_PREFIX), validate=True)
    except binascii.Error:
        raise ValueError("the public key is not valid base64") from None
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, this one is {len(raw)}")
    return PUBLIC_KEY_PREFIX + base64.b64encode(raw).decode("ascii")


def _public_key(text: str) -> Ed25519PublicKey:
    raw = base64.b64decode(parse_public_key(text).removeprefix(PUBLIC_KEY_PREFIX))
    return Ed25519PublicKey.from_public_bytes(raw)


def fingerprint(public_key: str) -> str:
    """The SHA-256 (hex) of a public key's 32 bytes: how documents name their sender and recipient."""
    return hashlib.sha256(base64.b64decode(parse_public_key(public_key).removeprefix(PUBLIC_KEY_PREFIX))).hexdigest()


def own_fingerprint(settings: Settings) -> str:
    return fingerprint(public_key_text(settings))


def sign(settings: Settings, document: dict[str, Any]) -> str:
    return base64.b64encode(signing_key(settings).sign(canonical_json(document))).decode("ascii")


def verify(public_key: str, document: dict[str, Any], signature: str) -> None:
    """Nothing when ``signature`` is ``public_key``'s over the document; SignatureError otherwise."""
    try:
        raw = base64.b64decode(signature, validate=True)
    except (binascii.Error, ValueError):  # ValueError: characters outside ASCII
        raise SignatureError("the signature is not valid base64") from None
    try:
        _public_key(public_key).verify(raw, canonical_json(document))
    except InvalidSignature:
        raise SignatureError("the signature does not verify") from None
