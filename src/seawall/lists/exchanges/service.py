"""Exchanges: create and configure them, run a sync (leased, checkpointed per batch), send feedback.

A sync applies each batch the source yields in its own transaction together with the batch's
checkpoint, so a sync killed at any point resumes from the last stored batch: nothing is lost and,
because list adds are idempotent, nothing is added twice. A lease on the exchange row keeps two
workers from running one exchange at once; a lease whose holder died is taken over.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import httpx
import numpy as np
from sqlalchemy import func, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Session, sessionmaker

from seawall.auth import audit
from seawall.auth.permissions import SYSTEM, Principal
from seawall.config import Settings
from seawall.db import transaction, utcnow
from seawall.fetch import AddressRules, FetchError
from seawall.lists import service as lists_service
from seawall.lists.exchanges.base import (
    MASK,
    Batch,
    ExchangeError,
    ExchangeType,
    FeedbackItem,
    Retraction,
    dump_config,
    get_exchange_type,
    mask_config,
    open_secrets,
    seal_secrets,
)
from seawall.lists.exchanges.models import Exchange
from seawall.lists.models import Entry, HashList, ListChange, Opinion
from seawall.lists.records import EntryRecord
from seawall.redact import redact_text, redact_url

log = logging.getLogger(__name__)

#: A lease not renewed for this long is abandoned (a batch renews it).
LEASE_SECONDS = 15 * 60
FEEDBACK_BATCH = 200


class ExchangeNotFound(LookupError):
    pass


class ExchangeBusy(RuntimeError):
    """Another worker holds the exchange's lease."""


def source_tag(name: str) -> str:
    """The ``source`` of entries an exchange brought: how retractions and feedback find them."""
    return f"exchange:{name}"


# ---- configuration -------------------------------------------------------------------------


def get_exchange(session: Session, name: str) -> Exchange:
    exchange = session.scalar(select(Exchange).where(Exchange.name == name))
    if exchange is None:
        raise ExchangeNotFound(f"no exchange named {name!r}")
    return exchange


def list_exchanges(session: Session) -> list[Exchange]:
    return list(session.scalars(select(Exchange).order_by(Exchange.name)))


def masked_config(exchange: Exchange) -> dict[str, Any]:
    try:
        return mask_config(get_exchange_type(exchange.type), exchange.config)
    except KeyError:  # plugin uninstalled: show nothing rather than risk a secret
        return {k: MASK for k in exchange.config}


def _validated(
    settings: Settings, type_name: str, raw: dict[str, Any], previous: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The config to store: ``raw`` over ``previous``, validated, its secrets sealed."""
    try:
        exchange_type = get_exchange_type(type_name)
    except KeyError as exc:
        raise lists_service.ListError(str(exc.args[0])) from None
    merged = open_secrets(settings, exchange_type, previous or {})
    for key, value in raw.items():
        # What the display shows, sent back unchanged, keeps the stored value: a secret's mask, or a
        # URL whose credentials were masked.
        if value == MASK and key in exchange_type.secret_fields() and key in merged:
            continue
        stored = merged.get(key)
        if isinstance(stored, str) and value != stored and value == redact_url(stored):
            continue
        merged[key] = value
    try:
        return seal_secrets(settings, exchange_type, dump_config(exchange_type.parse_config(merged)))
    except ValueError as exc:
        raise lists_service.ListError(str(exc)) from None


def create_exchange(
    session: Session,
    settings: Settings,
    actor: Principal,
    *,
    name: str,
    type: str,
    list_name: str,
    config: dict[str, Any] | None = None,
    interval_minutes: int = 60,
    enabled: bool = True,
) -> Exchange:
    if not lists_service._NAME.match(name):
        raise lists_service.ListError(
            "an exchange name is 1-120 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    if session.scalar(select(Exchange.id).where(Exchange.name == name)) is not None:
        raise lists_service.ListError(f"an exchange named {name!r} exists already")
    if interval_minutes < 1:
        raise lists_service.ListError("the interval is at least 1 minute")
    hash_list = lists_service.get_list(session, list_name)
    stored = _validated(settings, type, config or {})
    exchange = Exchange(
        name=name,
        type=type.strip().lower(),
        list_id=hash_list.id,
        config=stored,
        enabled=enabled,
        interval_minutes=interval_minutes,
        created_by=actor.name,
    )
    session.add(exchange)
    session.flush()
    audit.record(
        session,
        actor,
        "exchange.create",
        "exchange",
        exchange.id,
        {"name": name, "type": exchange.type, "list": list_name, "config": masked_config(exchange)},
    )
    return exchange


def update_exchange(
    session: Session,
    settings: Settings,
    actor: Principal,
    exchange: Exchange,
    *,
    config: dict[str, Any] | None = None,
    interval_minutes: int | None = None,
    enabled: bool | None = None,
    reset_checkpoint: bool = False,
) -> Exchange:
    changed: dict[str, Any] = {}
    if config:
        exchange.config = _validated(settings, exchange.type, config, exchange.config)
        changed["config"] = masked_config(exchange)
    if interval_minutes is not None and interval_minutes != exchange.interval_minutes:
        if interval_minutes < 1:
            raise lists_service.ListError("the interval is at least 1 minute")
        exchange.interval_minutes = changed["interval_minutes"] = interval_minutes
    if enabled is not None and enabled != exchange.enabled:
        exchange.enabled = changed["enabled"] = enabled
    if reset_checkpoint and exchange.checkpoint is not None:
        exchange.checkpoint = None
        changed["checkpoint"] = None
    if changed:
        session.flush()
        audit.record(session, actor, "exchange.update", "exchange", exchange.id, {"name": exchange.name, **changed})
    return exchange


def delete_exchange(session: Session, actor: Principal, exchange: Exchange) -> None:
    """Remove an exchange's configuration. The entries it brought stay in its list (their source
    names it, so provenance is kept); delete the list too to retract them. Refused while it syncs."""
    if not lease_free(exchange):
        raise ExchangeBusy(f"exchange {exchange.name!r} is syncing; try again when it is done")
    details = {"name": exchange.name, "type": exchange.type, "list": exchange.hash_list.name}
    exchange_id = exchange.id
    session.delete(exchange)
    session.flush()
    audit.record(session, actor, "exchange.delete", "exchange", exchange_id, details)


# ---- scheduling and the lease --------------------------------------------------------------


def _lease_token() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _holder_dead(owner: str) -> bool:
    """True when the lease holder was a process on this machine that no longer exists."""
    host, _, rest = owner.partition(":")
    pid_text = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_text.isdigit():
        return False
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def lease_free(exchange: Exchange, now: datetime | None = None) -> bool:
    now = now or utcnow()
    if exchange.running_since is None:
        return True
    if exchange.running_since < now - timedelta(seconds=LEASE_SECONDS):
        return True
    return _holder_dead(exchange.lease_owner)


def _acquire(session: Session, exchange: Exchange, owner: str) -> None:
    now = utcnow()
    if not lease_free(exchange, now):
        raise ExchangeBusy(f"exchange {exchange.name!r} is running already (since {exchange.running_since:%H:%M:%S})")
    # Compare-and-set on the values just read: of two racing workers only one matches.
    taken: CursorResult[Any] = session.execute(  # type: ignore[assignment]
        update(Exchange)
        .where(
            Exchange.id == exchange.id,
            Exchange.lease_owner == exchange.lease_owner,
            (
                Exchange.running_since.is_(None)
                if exchange.running_since is None
                else Exchange.running_since == exchange.running_since
            ),
        )
        .values(running_since=now, lease_owner=owner)
        .execution_options(synchronize_session=False)
    )
    if taken.rowcount != 1:
        raise ExchangeBusy(f"exchange {exchange.name!r} was taken by another worker")


def is_due(exchange: Exchange, now: datetime | None = None) -> bool:
    now = now or utcnow()
    if not exchange.enabled or not lease_free(exchange, now):
        return False
    return exchange.last_run_at is None or exchange.last_run_at + timedelta(minutes=exchange.interval_minutes) <= now


def due_exchanges(session: Session, now: datetime | None = None) -> list[Exchange]:
    return [e for e in list_exchanges(session) if is_due(e, now)]


# ---- running a sync ------------------------------------------------------------------------


@dataclass
class SyncReport:
    exchange: str
    added: int = 0
    updated: int = 0
    retired: int = 0
    invalid: int = 0
    batches: int = 0
    skipped_unchanged: bool = False
    error: str | None = None
    feedback_sent: int = 0
    feedback_skipped: int = 0
    invalid_examples: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None

    def as_dict(self) -> dict[str, Any]:
        return {
            "exchange": self.exchange,
            "ok": self.ok,
            "added": self.added,
            "updated": self.updated,
            "retired": self.retired,
            "invalid": self.invalid,
            "batches": self.batches,
            "error": self.error,
            "feedback_sent": self.feedback_sent,
            "feedback_skipped": self.feedback_skipped,
        }


def build(exchange: Exchange, settings: Settings) -> ExchangeType:
    """The exchange, ready to run: its secrets decrypted (only here), its requests under the rules."""
    exchange_type = get_exchange_type(exchange.type)
    return exchange_type(
        exchange_type.parse_config(open_secrets(settings, exchange_type, exchange.config)),
        exchange_name=exchange.name,
        rules=AddressRules.from_settings(settings),
        max_redirects=settings.fetch_max_redirects,
    )


def _key_digest(signal_type: str, value: str, external_id: str) -> int:
    digest = hashlib.blake2b(f"{signal_type}\x00{value}\x00{external_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


class _Snapshot:
    """The identities a full-snapshot source holds, as 8-byte digests (80 MB for 10M entries)."""

    def __init__(self) -> None:
        self._chunks: list[np.ndarray] = []
        self._pending: list[int] = []

    def add(self, hash_list: HashList, records: Iterable[EntryRecord]) -> None:
        for record in records:
            try:
                r = lists_service.normalise_record(hash_list, record)
            except lists_service.ListError:
                continue  # invalid records are counted where they are applied
            self._pending.append(_key_digest(r.signal_type, r.value, r.external_id or ""))
        if len(self._pending) >= 100_000:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._chunks.append(np.asarray(self._pending, dtype=np.int64))
            self._pending = []

    def keys(self) -> np.ndarray:
        self._flush()
        return np.unique(np.concatenate(self._chunks)) if self._chunks else np.empty(0, dtype=np.int64)


def _retract(session: Session, actor: Principal, exchange: Exchange, retractions: Sequence[Retraction]) -> None:
    tag = source_tag(exchange.name)
    hash_list = exchange.hash_list
    targets: dict[int, Entry] = {}
    for r in retractions:
        if r.external_id:
            query = select(Entry).where(Entry.list_id == hash_list.id, Entry.external_id == r.external_id)
            found = list(session.scalars(query))
        elif r.value:
            try:
                found = lists_service.find_entries(session, hash_list, r.value, r.signal_type)
            except lists_service.ListError:
                continue
        else:
            continue
        for entry in found:
            if entry.source == tag and entry.status != "retracted":
                targets[entry.id] = entry
    if targets:
        lists_service.set_status(
            session, actor, list(targets.values()), "retracted", reason=f"retracted by exchange {exchange.name}"
        )


def _sweep(session: Session, actor: Principal, exchange: Exchange, present: np.ndarray) -> None:
    """Retract this exchange's live entries that the new snapshot no longer holds."""
    tag = source_tag(exchange.name)
    gone: list[Entry] = []
    query = (
        select(Entry)
        .where(Entry.list_id == exchange.list_id, Entry.source == tag, Entry.status != "retracted")
        .order_by(Entry.id)
    )
    for entry in session.scalars(query.execution_options(yield_per=5000)):
        digest = _key_digest(entry.signal_type, entry.value, entry.external_id)
        i = int(np.searchsorted(present, digest))
        if i >= len(present) or present[i] != digest:
            gone.append(entry)
    for start in range(0, len(gone), 2000):
        lists_service.set_status(
            session,
            actor,
            gone[start : start + 2000],
            "retracted",
            reason=f"absent from the latest snapshot of exchange {exchange.name}",
        )


def _count_changes(session: Session, list_id: int, after: int) -> tuple[int, int, int]:
    added = updated = retired = 0
    rows = session.execute(
        select(ListChange.op, ListChange.status, func.count())
        .where(ListChange.list_id == list_id, ListChange.revision > after)
        .group_by(ListChange.op, ListChange.status)
    ).all()
    for op, status, n in rows:
        if op == "add":
            added += n
        elif op == "status" and status == "retracted":
            retired += n
        elif op in ("update", "status"):
            updated += n
    return added, updated, retired


def _apply(
    session: Session,
    actor: Principal,
    exchange: Exchange,
    batch: Batch,
    snapshot: _Snapshot | None,
    report: SyncReport,
) -> None:
    hash_list = exchange.hash_list
    before = int(session.scalar(select(HashList.revision).where(HashList.id == hash_list.id)) or 0)
    tag = source_tag(exchange.name)
    records = [replace(r, source=tag) for r in batch.upserts]
    if records:
        result = lists_service.add_entries(
            session, actor, hash_list, records, skip_invalid=True, description=f"exchange {exchange.name}"
        )
        report.invalid += result.invalid
        room = 5 - len(report.invalid_examples)
        report.invalid_examples.extend(str(e) for e in result.errors[: max(room, 0)])
    report.invalid += len(batch.errors)
    report.invalid_examples.extend(batch.errors[: max(5 - len(report.invalid_examples), 0)])
    if batch.retractions:
        _retract(session, actor, exchange, batch.retractions)
    if snapshot is not None:
        snapshot.add(hash_list, batch.seen)
        snapshot.add(hash_list, batch.upserts)
        if batch.snapshot_end:
            _sweep(session, actor, exchange, snapshot.keys())
    added, updated, retired = _count_changes(session, hash_list.id, before)
    report.added += added
    report.updated += updated
    report.retired += retired


def run_sync(
    factory: sessionmaker[Session],
    settings: Settings,
    name: str,
    *,
    actor: Principal = SYSTEM,
    feedback: bool = True,
) -> SyncReport:
    """Pull everything new from the exchange's source into its list, then send pending feedback.

    Raises ExchangeNotFound or ExchangeBusy before starting; any failure of the source itself is
    recorded on the exchange (``last_error``) and returned in the report, the checkpoint staying at
    the last batch that was fully stored."""
    owner = _lease_token()
    with transaction(factory) as session:
        exchange = get_exchange(session, name)
        exchange_id = exchange.id
        _acquire(session, exchange, owner)
    report = SyncReport(exchange=name)
    impl: ExchangeType | None = None
    try:
        with factory() as session:
            exchange = session.get_one(Exchange, exchange_id)
            impl = build(exchange, settings)
            checkpoint = exchange.checkpoint
        snapshot: _Snapshot | None = None
        for batch in impl.fetch(checkpoint):
            if batch.snapshot_begin:
                snapshot = _Snapshot()
            with transaction(factory) as session:
                exchange = session.get_one(Exchange, exchange_id)
                if exchange.lease_owner != owner:
                    raise ExchangeBusy(f"exchange {name!r} lost its lease to {exchange.lease_owner}")
                _apply(session, actor, exchange, batch, snapshot, report)
                if batch.checkpoint is not None:
                    exchange.checkpoint = batch.checkpoint
                exchange.running_since = utcnow()
            report.batches += 1
            if batch.snapshot_end:
                snapshot = None
    except Exception as exc:  # the worker boundary: every failure is recorded, none is fatal
        # Error texts may name URLs with credentials in them: masked before they are stored or logged.
        report.error = redact_text(f"{type(exc).__name__}: {exc}")
        log.warning("exchange %s sync failed: %s", name, report.error, exc_info=not isinstance(exc, _EXPECTED))
    if report.ok and feedback and impl is not None and impl.feedback_enabled():
        try:
            _send_feedback(factory, exchange_id, impl, report)
        except Exception as exc:
            report.error = redact_text(f"feedback: {type(exc).__name__}: {exc}")
            log.warning("exchange %s %s", name, report.error)
    if impl is not None:
        impl.close()
    _finish(factory, exchange_id, owner, actor, report)
    return report


#: Failures of the source or the network: logged without a traceback.
_EXPECTED = (httpx.HTTPError, FetchError, ExchangeError)


def _finish(factory: sessionmaker[Session], exchange_id: int, owner: str, actor: Principal, report: SyncReport) -> None:
    now = utcnow()
    with transaction(factory) as session:
        exchange = session.get_one(Exchange, exchange_id)
        exchange.last_run_at = now
        exchange.last_added, exchange.last_updated, exchange.last_retired = report.added, report.updated, report.retired
        if report.ok:
            exchange.last_success_at = now
            exchange.last_error = (
                f"{report.invalid} invalid record(s) skipped: " + "; ".join(report.invalid_examples)
                if report.invalid
                else ""
            )
        else:
            exchange.last_failure_at = now
            exchange.last_error = report.error or ""
        if exchange.lease_owner == owner:
            exchange.running_since = None
            exchange.lease_owner = ""
        audit.record(
            session, actor, "exchange.sync", "exchange", exchange.id, {"name": exchange.name, **report.as_dict()}
        )


# ---- feedback ------------------------------------------------------------------------------


def pending_feedback(session: Session, exchange: Exchange, limit: int = FEEDBACK_BATCH) -> list[FeedbackItem]:
    rows = session.execute(
        select(Opinion, Entry)
        .join(Entry, Entry.id == Opinion.entry_id)
        .where(
            Entry.list_id == exchange.list_id,
            Entry.source == source_tag(exchange.name),
            Opinion.sent_at.is_(None),
        )
        .order_by(Opinion.id)
        .limit(limit)
    ).all()
    return [
        FeedbackItem(
            opinion_id=o.id,
            verdict=o.verdict,
            comment=o.comment,
            signal_type=e.signal_type,
            value=e.value,
            external_id=e.external_id,
            category=e.category,
        )
        for o, e in rows
    ]


def _send_feedback(factory: sessionmaker[Session], exchange_id: int, impl: ExchangeType, report: SyncReport) -> None:
    """Send pending opinions in small batches, marking each batch sent as soon as the source took it,
    so an opinion is sent once (at worst a batch is resent after a crash between the two)."""
    while True:
        with factory() as session:
            items = pending_feedback(session, session.get_one(Exchange, exchange_id))
        if not items:
            return
        outcome = impl.send_feedback(items)
        handled = [i.opinion_id for i in items if i.opinion_id in outcome]
        if not handled:
            raise RuntimeError("the exchange handled none of the pending opinions")
        with transaction(factory) as session:
            session.execute(update(Opinion).where(Opinion.id.in_(handled)).values(sent_at=utcnow()))
        report.feedback_sent += sum(1 for v in outcome.values() if v == "sent")
        report.feedback_skipped += sum(1 for v in outcome.values() if v != "sent")


def status(exchange: Exchange) -> dict[str, Any]:
    """What `show` and the API print: settings (secrets masked), checkpoint and the last run."""
    return {
        "name": exchange.name,
        "type": exchange.type,
        "list": exchange.hash_list.name,
        "enabled": exchange.enabled,
        "interval_minutes": exchange.interval_minutes,
        "config": masked_config(exchange),
        "checkpoint": exchange.checkpoint,
        "running": not lease_free(exchange),
        "last_run_at": exchange.last_run_at,
        "last_success_at": exchange.last_success_at,
        "last_failure_at": exchange.last_failure_at,
        "last_error": exchange.last_error,
        "last_added": exchange.last_added,
        "last_updated": exchange.last_updated,
        "last_retired": exchange.last_retired,
        "due": is_due(exchange),
    }
