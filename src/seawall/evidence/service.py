"""The evidence store: put, get and delete media by id, envelope-encrypted at rest.

Every object gets a random 256-bit data key; its bytes are sealed with AES-256-GCM under that key
(the object's id is authenticated with them, so a file moved onto another object's name fails to
open) and written to the backend. The data key is kept in the object's row, wrapped with AES-GCM by
the master key (``SEAWALL_EVIDENCE_KEY``, or a key file made 0600 on first use), never in plaintext;
the master key itself is never in the database. A database dump alone opens nothing; the files
alone open nothing; a changed byte in either is refused, never returned.

Writing is split so callers keep encryption and disk writes out of their write transactions:
:func:`seal` encrypts and writes the file, :func:`record` adds the row (in the caller's transaction)
and :func:`discard` removes a sealed file that was not recorded after all. :func:`put` does both.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import logging
import os
import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import event, select
from sqlalchemy.orm import Session, sessionmaker

from seawall.auth import audit
from seawall.auth.permissions import Principal
from seawall.config import Settings, _create_private_file
from seawall.db import utcnow
from seawall.evidence.models import EvidenceObject

log = logging.getLogger(__name__)

MAGIC = b"SWE1"  # format of a stored file: MAGIC, a 12-byte nonce, then ciphertext and GCM tag
NONCE_BYTES = 12
KEY_BYTES = 32
_DATA_AAD = b"seawall evidence v1\0"
_WRAP_AAD = b"seawall evidence data key v1\0"
_KEY_ID_PREFIX = b"seawall evidence key id\0"
_NEW_KEY_HINT = 'python -c "import base64, os; print(base64.b64encode(os.urandom(32)).decode())"'


class EvidenceError(Exception):
    """An object that cannot be stored or read back as it was stored; the message says why."""


# ---------------------------------------------------------------- master keys


@dataclass(frozen=True)
class MasterKey:
    id: str  # derived from the key: names it in rows and messages without revealing it
    key: bytes


def _key_id(key: bytes) -> str:
    return hashlib.sha256(_KEY_ID_PREFIX + key).hexdigest()[:16]


def _parse_key(text: str, where: str) -> MasterKey:
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise EvidenceError(f"{where} is not base64; make a key with: {_NEW_KEY_HINT}") from None
    if len(key) != KEY_BYTES:
        raise EvidenceError(f"{where} is {len(key)} bytes, not {KEY_BYTES}; make a key with: {_NEW_KEY_HINT}")
    return MasterKey(_key_id(key), key)


def key_file(settings: Settings) -> Path:
    return settings.evidence_key_file or settings.home / "evidence.key"


def master_key(settings: Settings) -> MasterKey:
    """The key new objects are sealed with: SEAWALL_EVIDENCE_KEY, else the key file (made on first use)."""
    if settings.evidence_key is not None:
        return _parse_key(settings.evidence_key.get_secret_value(), "SEAWALL_EVIDENCE_KEY")
    path = key_file(settings)
    if settings.evidence_key_file is None:
        settings.ensure_home()
    if not path.exists():
        try:
            _create_private_file(path, base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode() + "\n")
        except OSError as exc:
            raise EvidenceError(f"cannot create the evidence key file {path}: {exc.strerror or exc}") from None
    try:
        text = path.read_text()
    except OSError as exc:
        raise EvidenceError(f"cannot read the evidence key file {path}: {exc.strerror or exc}") from None
    return _parse_key(text, f"the evidence key file {path}")


def previous_keys(settings: Settings) -> list[MasterKey]:
    """The earlier master keys (SEAWALL_EVIDENCE_PREVIOUS_KEYS), read until rotation re-wraps their objects."""
    if settings.evidence_previous_keys is None:
        return []
    parts = [p for p in settings.evidence_previous_keys.get_secret_value().split(",") if p.strip()]
    return [_parse_key(p, f"key {n} of SEAWALL_EVIDENCE_PREVIOUS_KEYS") for n, p in enumerate(parts, 1)]


def keyring(settings: Settings) -> dict[str, bytes]:
    """Every master key objects may have been sealed with, by id: the current one and the previous ones."""
    current = master_key(settings)
    keys = {k.id: k.key for k in previous_keys(settings)}
    keys[current.id] = current.key
    return keys


# ---------------------------------------------------------------- backend


class LocalBackend:
    """Sealed objects as files under one folder, sharded by the first characters of their id."""

    name = "local"

    def __init__(self, root: Path) -> None:
        self.root = root

    def path(self, object_id: str) -> Path:
        return self.root / object_id[:2] / object_id[2:4] / object_id

    def write(self, object_id: str, data: bytes) -> None:
        """Write once, atomically, 0600 from creation: a reader sees the whole file or none."""
        target = self.path(object_id)
        self.root.mkdir(mode=0o700, parents=True, exist_ok=True)
        for folder in (target.parent.parent, target.parent):
            folder.mkdir(mode=0o700, exist_ok=True)
        temporary = target.with_name(f".{object_id}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.link(temporary, target)  # never replaces an existing object
        finally:
            temporary.unlink(missing_ok=True)
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def read(self, object_id: str) -> bytes:
        return self.path(object_id).read_bytes()

    def delete(self, object_id: str) -> None:
        self.path(object_id).unlink(missing_ok=True)

    def stored(self) -> Iterator[tuple[str, float]]:
        """(object id, modification time) of every stored file, unfinished writes included."""
        if not self.root.is_dir():
            return
        for path in self.root.glob("*/*/*"):
            name = path.name
            if name.startswith("."):
                name = name[1:].split(".", 1)[0]
            try:
                yield name, path.stat().st_mtime
            except FileNotFoundError:
                continue


class ObjectStoreBackend:
    """Sealed objects in an object store through fsspec (``s3://bucket/prefix`` with s3fs, or any
    fsspec URL), named like the local files. Only ciphertext ever leaves the machine."""

    name = "fsspec"

    def __init__(self, url: str, options: dict[str, Any]) -> None:
        import fsspec

        self.fs, root = fsspec.core.url_to_fs(url, **options)
        self.root = root.rstrip("/")

    def path(self, object_id: str) -> str:
        return f"{self.root}/{object_id[:2]}/{object_id[2:4]}/{object_id}"

    def write(self, object_id: str, data: bytes) -> None:
        target = self.path(object_id)
        if self.fs.exists(target):  # never replaces an existing object
            raise EvidenceError(f"evidence {object_id} exists already in the object store")
        try:
            self.fs.pipe_file(target, data)
        except OSError as exc:
            raise EvidenceError(f"cannot write evidence {object_id} to the object store: {exc}") from None

    def read(self, object_id: str) -> bytes:
        data: bytes = self.fs.cat_file(self.path(object_id))
        return data

    def delete(self, object_id: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self.path(object_id))

    def stored(self) -> Iterator[tuple[str, float]]:
        try:
            found = self.fs.find(self.root, detail=True)
        except FileNotFoundError:
            return
        for path, info in found.items():
            moment = info.get("mtime") or info.get("LastModified") or info.get("created")
            if hasattr(moment, "timestamp"):
                moment = moment.timestamp()
            yield path.rsplit("/", 1)[-1], float(moment or 0.0)


def backend(settings: Settings) -> LocalBackend | ObjectStoreBackend:
    """Where sealed objects go: the object store when ``SEAWALL_EVIDENCE_STORE_URL`` is set, else
    ``SEAWALL_HOME/evidence`` on local disk."""
    if settings.evidence_store_url:
        options: dict[str, Any] = {}
        if settings.evidence_store_options is not None:
            try:
                options = json.loads(settings.evidence_store_options.get_secret_value())
            except ValueError:
                raise EvidenceError("SEAWALL_EVIDENCE_STORE_OPTIONS is not a JSON object") from None
        return ObjectStoreBackend(settings.evidence_store_url, options)
    return LocalBackend(settings.home / "evidence")


def _object_id(text: str) -> str:
    try:
        return str(uuid.UUID(text))
    except (ValueError, AttributeError, TypeError):
        raise EvidenceError(f"no evidence object {text!r}") from None


# ---------------------------------------------------------------- sealing


@dataclass(frozen=True)
class Sealed:
    """An object encrypted and written to the backend, not yet recorded in the database."""

    id: str
    purpose: str
    subject: str
    media_type: str
    size: int
    sha256: str
    key_id: str
    wrapped_key: str
    backend: str = LocalBackend.name


def seal(settings: Settings, data: bytes, *, media_type: str, purpose: str, subject: str) -> Sealed:
    """Encrypt ``data`` under a new data key and write it; no database work (see :func:`record`)."""
    if not data:
        raise EvidenceError("an evidence object has at least one byte")
    if len(data) > settings.max_file_bytes:
        raise EvidenceError(f"{len(data)} bytes is over the {settings.max_file_bytes}-byte limit of one object")
    master = master_key(settings)
    object_id = str(uuid.uuid4())
    data_key = AESGCM.generate_key(bit_length=KEY_BYTES * 8)
    nonce = os.urandom(NONCE_BYTES)
    sealed = MAGIC + nonce + AESGCM(data_key).encrypt(nonce, data, _DATA_AAD + object_id.encode())
    wrap_nonce = os.urandom(NONCE_BYTES)
    wrapped = AESGCM(master.key).encrypt(wrap_nonce, data_key, _wrap_aad(object_id, master.id))
    store = backend(settings)
    store.write(object_id, sealed)
    return Sealed(
        id=object_id,
        purpose=purpose,
        subject=subject,
        media_type=media_type,
        size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        key_id=master.id,
        wrapped_key=base64.b64encode(wrap_nonce + wrapped).decode(),
        backend=store.name,
    )


def _wrap_aad(object_id: str, key_id: str) -> bytes:
    return _WRAP_AAD + object_id.encode() + b"\0" + key_id.encode()


def record(session: Session, sealed: Sealed) -> EvidenceObject:
    """The row of a sealed object, added to the caller's transaction."""
    row = EvidenceObject(
        id=sealed.id,
        purpose=sealed.purpose,
        subject=sealed.subject,
        media_type=sealed.media_type,
        size=sealed.size,
        sha256=sealed.sha256,
        backend=sealed.backend,
        key_id=sealed.key_id,
        wrapped_key=sealed.wrapped_key,
        created_at=utcnow(),
    )
    session.add(row)
    session.flush()
    return row


def discard(settings: Settings, sealed: Sealed) -> None:
    """Remove the file of a sealed object that was not recorded (another process stored it first)."""
    backend(settings).delete(sealed.id)


def put(session: Session, settings: Settings, data: bytes, *, media_type: str, purpose: str, subject: str) -> str:
    """Store ``data``; its id. The file is written before the row is added: call this before the
    transaction's first write, so no write lock is held while encrypting."""
    sealed = seal(settings, data, media_type=media_type, purpose=purpose, subject=subject)
    try:
        record(session, sealed)
    except BaseException:
        discard(settings, sealed)
        raise
    return sealed.id


# ---------------------------------------------------------------- reading


def get_object(session: Session, object_id: str) -> EvidenceObject:
    row = session.get(EvidenceObject, _object_id(object_id))
    if row is None:
        raise EvidenceError(f"no evidence object {object_id!r}")
    return row


def get(session: Session, settings: Settings, object_id: str) -> bytes:
    """The plaintext of an object, after checking it is exactly what was stored."""
    row = get_object(session, object_id)
    if row.deleted_at is not None:
        raise EvidenceError(f"evidence {row.id} was deleted on {row.deleted_at:%Y-%m-%d %H:%M} UTC")
    keys = keyring(settings)
    master = keys.get(row.key_id)
    if master is None:
        configured = ", ".join(keys)
        raise EvidenceError(
            f"evidence {row.id} was sealed with master key {row.key_id}, which is not configured "
            f"(configured: {configured}); set SEAWALL_EVIDENCE_KEY or the key file to the key it was sealed with"
        )
    data_key = _unwrap(row, master)
    store = backend(settings)
    if row.backend != store.name:
        raise EvidenceError(
            f"evidence {row.id} is kept in the {row.backend} store, and this instance is configured for the "
            f"{store.name} store (SEAWALL_EVIDENCE_STORE_URL)"
        )
    try:
        stored = store.read(row.id)
    except FileNotFoundError:
        raise EvidenceError(f"evidence {row.id}: its stored file is missing") from None
    except OSError as exc:
        raise EvidenceError(f"evidence {row.id}: cannot read its stored file: {exc.strerror or exc}") from None
    if not stored.startswith(MAGIC) or len(stored) < len(MAGIC) + NONCE_BYTES + 16:
        raise EvidenceError(f"evidence {row.id} failed its integrity check: the stored file is not a sealed object")
    nonce = stored[len(MAGIC) : len(MAGIC) + NONCE_BYTES]
    try:
        data = AESGCM(data_key).decrypt(nonce, stored[len(MAGIC) + NONCE_BYTES :], _DATA_AAD + row.id.encode())
    except InvalidTag:
        raise EvidenceError(
            f"evidence {row.id} failed its integrity check: the stored file was altered or damaged"
        ) from None
    if len(data) != row.size or hashlib.sha256(data).hexdigest() != row.sha256:
        raise EvidenceError(f"evidence {row.id} failed its integrity check: its SHA-256 is not the one recorded")
    return data


def _unwrap(row: EvidenceObject, master: bytes) -> bytes:
    try:
        wrapped = base64.b64decode(row.wrapped_key, validate=True)
        return AESGCM(master).decrypt(wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:], _wrap_aad(row.id, row.key_id))
    except (InvalidTag, binascii.Error, ValueError):
        raise EvidenceError(
            f"evidence {row.id}: its data key does not open with master key {row.key_id} (the stored row was altered)"
        ) from None


@dataclass
class Rotation:
    rewrapped: int = 0
    current: str = ""
    missing_keys: dict[str, int] = field(default_factory=dict)  # key id -> objects it alone opens


def rotate(factory: sessionmaker[Session], settings: Settings, actor: Principal, *, batch: int = 500) -> Rotation:
    """Re-wrap every live object's data key under the current master key; the stored files are not
    touched (their data keys do not change). One transaction per batch, so a large store rotates in
    bounded steps and an interrupted rotation simply runs again. Objects whose key is not configured
    are counted, never changed."""
    current = master_key(settings)
    keys = keyring(settings)
    done = Rotation(current=current.id)
    skipped: set[str] = set()
    while True:
        with factory() as session, session.begin():
            rows = list(
                session.scalars(
                    select(EvidenceObject)
                    .where(
                        EvidenceObject.key_id != current.id,
                        EvidenceObject.deleted_at.is_(None),
                        EvidenceObject.id.not_in(skipped) if skipped else EvidenceObject.id.is_not(None),
                    )
                    .order_by(EvidenceObject.id)
                    .limit(batch)
                    .with_for_update()
                )
            )
            if not rows:
                break
            moved = 0
            for row in rows:
                old = keys.get(row.key_id)
                if old is None:
                    done.missing_keys[row.key_id] = done.missing_keys.get(row.key_id, 0) + 1
                    skipped.add(row.id)
                    continue
                data_key = _unwrap(row, old)
                nonce = os.urandom(NONCE_BYTES)
                sealed = AESGCM(current.key).encrypt(nonce, data_key, _wrap_aad(row.id, current.id))
                row.key_id, row.wrapped_key = current.id, base64.b64encode(nonce + sealed).decode()
                moved += 1
            if moved:
                audit.record(
                    session, actor, "evidence.rotate", "evidence", "", {"rewrapped": moved, "key_id": current.id}
                )
            done.rewrapped += moved
    return done


def find(session: Session, *, purpose: str, subject: str) -> EvidenceObject | None:
    """The live object kept for ``subject`` with this purpose (the oldest, if there are several)."""
    return session.scalar(
        select(EvidenceObject)
        .where(
            EvidenceObject.subject == subject,
            EvidenceObject.purpose == purpose,
            EvidenceObject.deleted_at.is_(None),
        )
        .order_by(EvidenceObject.created_at, EvidenceObject.id)
        .limit(1)
    )


# ---------------------------------------------------------------- deleting


def delete(session: Session, settings: Settings, object_id: str, *, actor: Principal, reason: str) -> None:
    """Destroy an object's bytes; its row stays, marked deleted, as the record that it existed.
    The file goes once the caller's transaction commits (a rollback keeps it)."""
    row = get_object(session, object_id)
    if row.deleted_at is not None:
        return
    row.deleted_at = utcnow()
    audit.record(
        session,
        actor,
        "evidence.delete",
        "evidence",
        row.id,
        {"purpose": row.purpose, "subject": row.subject, "sha256": row.sha256, "reason": reason},
    )
    session.flush()
    store, gone = backend(settings), row.id
    event.listen(session, "after_commit", lambda _s: store.delete(gone), once=True)


def sweep(session: Session, settings: Settings, *, older_than_seconds: float = 3600.0) -> int:
    """Remove stored files no live row accounts for (a crash between writing a file and committing
    its row, or after a delete committed); files younger than ``older_than_seconds`` may belong to
    a write still in progress and are left. Returns how many were removed."""
    store = backend(settings)
    cutoff = time.time() - older_than_seconds
    candidates = [object_id for object_id, mtime in store.stored() if mtime < cutoff]
    removed = 0
    for start in range(0, len(candidates), 500):
        chunk = candidates[start : start + 500]
        live = set(
            session.scalars(
                select(EvidenceObject.id).where(EvidenceObject.id.in_(chunk), EvidenceObject.deleted_at.is_(None))
            )
        )
        for object_id in chunk:
            if object_id in live:
                continue
            if isinstance(store, LocalBackend):
                for path in store.path(object_id).parent.glob(f"*{object_id}*"):
                    path.unlink(missing_ok=True)
                    removed += 1
            else:
                store.delete(object_id)
                removed += 1
    if removed:
        log.info("evidence sweep removed %d unreferenced file(s)", removed)
    return removed
