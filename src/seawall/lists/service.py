"""Lists and their entries: create, add (streaming, idempotent), retire, opinions, changes since a revision.

Every change to a list's entries bumps the list's revision by one per changed entry and writes a
``ListChange`` row at that revision, in the same transaction: "what changed since revision R" is a
range scan, which is what feeds, exchanges and the matchers' incremental indexes read.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, cast

from sqlalchemy import String, Table, func, insert, select, update
from sqlalchemy import cast as sql_cast
from sqlalchemy.orm import Session

from seawall.auth import audit
from seawall.auth.permissions import Principal
from seawall.db import utcnow
from seawall.lists.models import Entry, HashList, ListChange, Opinion
from seawall.lists.records import ENTRY_STATUSES, URL_LEVELS, EntryRecord, FormatError, ParsedLine

LIST_KINDS = ("hash", "url", "keyword")
VERDICTS = ("true_positive", "false_positive", "disputed")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,119}$")
MAX_KEYWORD_LENGTH = 500
_INFERRED_BY_LENGTH = {32: "md5", 40: "sha1"}
# Core tables for bulk inserts: executemany without the ORM's per-row work.
_ENTRY_TABLE = cast(Table, Entry.__table__)
_CHANGE_TABLE = cast(Table, ListChange.__table__)
# Free-text fields of an entry and their column widths (None: unbounded), checked before writing:
# PostgreSQL refuses a longer value or a NUL character where SQLite would store it.
_TEXT_FIELDS = {
    name: getattr(_ENTRY_TABLE.c[name].type, "length", None) for name in ("category", "source", "external_id", "note")
}


class ListError(ValueError):
    """A refused list operation, with a message for the person."""


class ListNotFound(LookupError):
    pass


class ListForbidden(ListError):
    """A change this caller may not make: it would change what every other caller gets."""


class EntryNotFound(LookupError):
    pass


class InvalidEntries(ListError):
    """An import stopped at a bad line; nothing of it was kept."""

    def __init__(self, errors: list[FormatError]) -> None:
        self.errors = errors
        super().__init__("; ".join(str(e) for e in errors[:5]))


class _Unset:
    """Marks an argument that was not given (None is a value: an allowlist scope of every list)."""


UNSET = _Unset()

# ---- lists ---------------------------------------------------------------------------------


def get_list(session: Session, name: str) -> HashList:
    hash_list = session.scalar(select(HashList).where(HashList.name == name, HashList.deleted_at.is_(None)))
    if hash_list is None:
        raise ListNotFound(f"no list named {name!r}")
    return hash_list


def list_lists(session: Session, names: Iterable[str] | None = None) -> list[HashList]:
    query = select(HashList).where(HashList.deleted_at.is_(None)).order_by(HashList.name)
    if names is not None:
        query = query.where(HashList.name.in_(list(names)))
    return list(session.scalars(query))


def feed_list(session: Session, name: str) -> HashList:
    """The list a feed follower asking for ``name`` reads: the live list of that name, else the
    newest list that had it: a deleted one (its retractions are what the follower still needs) or
    one renamed since (the follower keeps following it)."""
    try:
        return get_list(session, name)
    except ListNotFound:
        tombstone = session.scalar(
            select(HashList).where(HashList.former_name == name).order_by(HashList.id.desc()).limit(1)
        )
        if tombstone is None:
            raise
        return tombstone


def _check_power(actor: Principal, what: str) -> None:
    # Settings that change what every caller's matching does are the operator's (DESIGN.md,
    # "Who may change what"): a curator's key may fill its lists, not switch enforcement.
    if not actor.can("admin"):
        raise ListForbidden(f"only an admin may {what}: it changes matching for every caller")


def _check_thresholds(actor: Principal, thresholds: dict[str, int]) -> None:
    from seawall.signals.base import get_signal_type

    for name, value in thresholds.items():
        safe = get_signal_type(name).safe_threshold
        if value > safe:
            _check_power(actor, f"set a {name} threshold above {safe}")


def _validate_scope(session: Session, scope: Sequence[str] | None) -> list[str] | None:
    if scope is None:
        return None
    names = sorted({str(n).strip() for n in scope if str(n).strip()})
    if not names:
        raise ListError("an allowlist scope names at least one list (or is null: every list)")
    known = set(session.scalars(select(HashList.name).where(HashList.name.in_(names), HashList.deleted_at.is_(None))))
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ListError(f"allowlist scope names unknown list(s): {', '.join(unknown)}")
    return names


def create_list(
    session: Session,
    actor: Principal,
    *,
    name: str,
    kind: str,
    description: str = "",
    source: str = "",
    allowlist: bool = False,
    enabled: bool = True,
    thresholds: dict[str, int] | None = None,
    dihedral: bool = True,
    allowlist_scope: Sequence[str] | None = None,
    regions: bool = True,
    enabled_ratio: float = 1.0,
) -> HashList:
    if not _NAME.match(name):
        raise ListError("a list name is 1-120 letters, digits, '.', '_' or '-', starting with a letter or digit")
    if kind not in LIST_KINDS:
        raise ListError(f"unknown list kind {kind!r}; kinds: {', '.join(LIST_KINDS)}")
    if not actor.can_use_list(name):
        raise ListForbidden(
            f"this key may only create the lists it is limited to ({', '.join(sorted(actor.lists or ()))})"
        )
    checked = _validate_thresholds(thresholds or {})
    if allowlist:
        _check_power(actor, "create an allowlist")
    elif allowlist_scope is not None:
        raise ListError("only an allowlist has a scope")
    _check_thresholds(actor, checked)
    if not regions:
        _check_power(actor, "switch a list's region matching")
    if not 0.0 < enabled_ratio <= 1.0 or (allowlist and enabled_ratio != 1.0):
        raise ListError("a list's enabled ratio is above 0 and at most 1, and 1 for an allowlist")
    if session.scalar(select(HashList.id).where(HashList.name == name)) is not None:
        raise ListError(f"a list named {name!r} exists already")
    hash_list = HashList(
        name=name,
        kind=kind,
        description=description,
        source=source,
        allowlist=allowlist,
        allowlist_scope=_validate_scope(session, allowlist_scope) if allowlist else None,
        enabled=enabled,
        thresholds=checked,
        dihedral=dihedral,
        regions=regions,
        enabled_ratio=enabled_ratio,
        created_by=actor.name,
    )
    session.add(hash_list)
    session.flush()
    details: dict[str, Any] = {"name": name, "kind": kind, "allowlist": allowlist}
    if allowlist:
        details["allowlist_scope"] = hash_list.allowlist_scope
    if enabled_ratio != 1.0:
        details["enabled_ratio"] = enabled_ratio
    audit.record(session, actor, "list.create", "list", hash_list.id, details)
    return hash_list


def _validate_thresholds(thresholds: dict[str, int]) -> dict[str, int]:
    from seawall.signals.base import get_signal_type

    out: dict[str, int] = {}
    for name, value in thresholds.items():
        try:
            signal_type = get_signal_type(name)
        except KeyError:
            raise ListError(f"threshold for unknown signal type {name!r}") from None
        if signal_type.bits is None:
            raise ListError(f"{name} is matched exactly; it takes no threshold")
        if not isinstance(value, int) or not 0 <= value <= signal_type.bits:
            raise ListError(f"{name} threshold must be a whole number from 0 to {signal_type.bits}")
        out[name] = value
    return out


def update_list(
    session: Session,
    actor: Principal,
    hash_list: HashList,
    *,
    enabled: bool | None = None,
    description: str | None = None,
    thresholds: dict[str, int] | None = None,
    dihedral: bool | None = None,
    allowlist: bool | None = None,
    allowlist_scope: Sequence[str] | _Unset | None = UNSET,
    regions: bool | None = None,
    enabled_ratio: float | None = None,
) -> HashList:
    """Change a list's settings; each is a list-level change that matchers pick up like entry changes.

    Switching a list on or off, its dihedral search, its region matching, its allowlist flag and scope, and thresholds
    beyond the signal type's safe maximum change what every caller gets: those need ``admin``."""
    changed: dict[str, Any] = {}
    if enabled is not None and enabled != hash_list.enabled:
        _check_power(actor, "enable or disable a list")
        hash_list.enabled = changed["enabled"] = enabled
    if enabled_ratio is not None and enabled_ratio != hash_list.enabled_ratio:
        if not 0.0 < enabled_ratio <= 1.0:
            raise ListError("a list's enabled ratio is above 0 and at most 1 (0: disable the list)")
        if hash_list.allowlist:
            raise ListError("an allowlist applies to every content: it takes no enabled ratio")
        _check_power(actor, "change the share of contents a list is matched for")
        hash_list.enabled_ratio = changed["enabled_ratio"] = enabled_ratio
    if description is not None and description != hash_list.description:
        hash_list.description = changed["description"] = description
    if thresholds is not None:
        checked = _validate_thresholds(thresholds)
        _check_thresholds(actor, checked)
        merged = {**hash_list.thresholds, **checked}
        if merged != hash_list.thresholds:
            hash_list.thresholds = changed["thresholds"] = merged
    if dihedral is not None and dihedral != hash_list.dihedral:
        _check_power(actor, "switch a list's dihedral search")
        hash_list.dihedral = changed["dihedral"] = dihedral
    if regions is not None and regions != hash_list.regions:
        _check_power(actor, "switch a list's region matching")
        hash_list.regions = changed["regions"] = regions
    if allowlist is not None and allowlist != hash_list.allowlist:
        _check_power(actor, "make a list an allowlist or stop it being one")
        hash_list.allowlist = changed["allowlist"] = allowlist
        if not allowlist:
            hash_list.allowlist_scope = None
    if not isinstance(allowlist_scope, _Unset):
        if not hash_list.allowlist:
            raise ListError("only an allowlist has a scope")
        scope = _validate_scope(session, allowlist_scope)
        if scope != hash_list.allowlist_scope:
            _check_power(actor, "change an allowlist's scope")
            hash_list.allowlist_scope = changed["allowlist_scope"] = scope
    if changed:
        session.flush()
        revision = _bump_revision(session, hash_list, 1)
        session.add(ListChange(list_id=hash_list.id, revision=revision, op="list", details=changed, actor=actor.name))
        audit.record(session, actor, "list.update", "list", hash_list.id, {"name": hash_list.name, **changed})
    return hash_list


def rename_list(session: Session, actor: Principal, hash_list: HashList, new_name: str) -> HashList:
    """Give a list a new name, and everything that names it the new name in the same transaction:
    API keys' list limits, policies' conditions, allowlists' scopes. Exchanges refer to the list by
    id and follow it; a partner following its feed under the old name keeps reading it there
    (``feed_list``) until another list takes that name. Changes what every caller sees: admin only."""
    from seawall.auth.models import ApiKey
    from seawall.matching.models import Policy

    old = hash_list.name
    if new_name == old:
        return hash_list
    if not _NAME.match(new_name):
        raise ListError("a list name is 1-120 letters, digits, '.', '_' or '-', starting with a letter or digit")
    _check_power(actor, "rename a list")
    if not actor.can_use_list(new_name):  # as for creating: a limited key names only its own lists
        raise ListForbidden(
            f"this key may only name the lists it is limited to ({', '.join(sorted(actor.lists or ()))})"
        )
    if session.scalar(select(HashList.id).where(HashList.name == new_name)) is not None:
        raise ListError(f"a list named {new_name!r} exists already")

    def renamed(names: Sequence[str]) -> list[str]:
        return sorted({new_name if n == old else n for n in names})

    keys = [k for k in session.scalars(select(ApiKey)) if k.lists and old in k.lists]
    for key in keys:
        key.lists = renamed(key.lists or [])
    rules = [p for p in session.scalars(select(Policy)) if old in (p.conditions or {}).get("lists", [])]
    for rule in rules:
        rule.conditions = {**rule.conditions, "lists": renamed(rule.conditions["lists"])}
    scoped = [
        h
        for h in session.scalars(select(HashList).where(HashList.allowlist.is_(True)))
        if old in (h.allowlist_scope or [])
    ]
    for allowlist in scoped:
        allowlist.allowlist_scope = renamed(allowlist.allowlist_scope or [])
    hash_list.name = new_name
    hash_list.former_name = old  # the feed under the old name follows it (see feed_list)
    session.flush()
    revision = _bump_revision(session, hash_list, 1)
    details = {"renamed_from": old, "name": new_name}
    session.add(ListChange(list_id=hash_list.id, revision=revision, op="list", details=details, actor=actor.name))
    audit.record(
        session,
        actor,
        "list.rename",
        "list",
        hash_list.id,
        {
            "from": old,
            "to": new_name,
            "api_keys": sorted(k.name for k in keys),
            "policies": sorted(p.name for p in rules),
            "allowlists": sorted(h.name for h in scoped),
        },
    )
    if keys:  # a key's cached principal still names the old list: forget it once this commits
        from sqlalchemy import event

        from seawall.auth.service import clear_key_cache

        event.listen(session, "after_commit", lambda _session: clear_key_cache(), once=True)
    return hash_list


def delete_list(session: Session, actor: Principal, hash_list: HashList) -> HashList:
    """Delete a list: it leaves matching at once, its name is freed, and its row stays as a
    tombstone whose change log retracts every entry, so feed followers and exchanges see the
    retractions. Retracting a large list's entries is batched in transactions of their own
    (``retract_deleted``); this marks the list and records the deletion."""
    if hash_list.deleted_at is not None:
        raise ListNotFound(f"no list named {hash_list.name!r}")
    if hash_list.allowlist:
        _check_power(actor, "delete an allowlist")
    name = hash_list.name
    counts = count_entries(session, hash_list)
    hash_list.former_name = name
    # Out of the names a list can take ('~' cannot start one), so the name is free at once.
    hash_list.name = f"~deleted-{hash_list.id}"
    hash_list.deleted_at = utcnow()
    hash_list.enabled = False
    from seawall.lists.exchanges.models import Exchange

    # Exchanges feeding it stop: they would fill a list nobody matches against.
    session.execute(update(Exchange).where(Exchange.list_id == hash_list.id).values(enabled=False))
    session.flush()
    revision = _bump_revision(session, hash_list, 1)
    session.add(
        ListChange(list_id=hash_list.id, revision=revision, op="list", details={"deleted": True}, actor=actor.name)
    )
    audit.record(session, actor, "list.delete", "list", hash_list.id, {"name": name, "entries": counts})
    return hash_list


def retract_deleted(factory: Any, actor: Principal, *, batch: int = 5000) -> int:
    """Retract the entries of deleted lists, one batch per transaction (``factory`` makes write
    sessions), until none is left: idempotent, so a crash midway is finished by the next run."""
    from seawall.db import transaction

    done = 0
    while True:
        with transaction(factory) as session:
            rows = session.scalars(
                select(Entry)
                .join(HashList, HashList.id == Entry.list_id)
                .where(HashList.deleted_at.is_not(None), Entry.status != "retracted")
                .order_by(Entry.id)
                .limit(batch)
            ).all()
            if not rows:
                return done
            done += set_status(session, actor, rows, "retracted", reason="the list was deleted", audit_event=False)


def _bump_revision(session: Session, hash_list: HashList, count: int) -> int:
    """Reserve ``count`` consecutive revisions; returns the first. The row lock serialises writers per list."""
    new = session.execute(
        update(HashList)
        .where(HashList.id == hash_list.id)
        .values(revision=HashList.revision + count)
        .returning(HashList.revision)
    ).scalar_one()
    hash_list.revision = new
    session.expire(hash_list, ["revision"])
    return int(new) - count + 1


# ---- entries -------------------------------------------------------------------------------


def _check_text(name: str, text: str | None, limit: int | None = None) -> None:
    if not text:
        return
    if "\x00" in text:
        raise ListError(f"{name} contains a NUL character")
    if limit is not None and len(text) > limit:
        raise ListError(f"{name} is longer than {limit} characters")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, e.g. from a JSON "\ud800" escape
        raise ListError(f"{name} is not valid Unicode text") from None


def normalise_record(hash_list: HashList, record: EntryRecord) -> EntryRecord:
    """The record with its value validated and normalised for this list's kind; ListError if invalid."""
    if record.status not in ENTRY_STATUSES:
        raise ListError(f"unknown status {record.status!r}; statuses: {', '.join(ENTRY_STATUSES)}")
    _check_text("value", record.value)
    for name, limit in _TEXT_FIELDS.items():
        _check_text(name, getattr(record, name), limit)
    for label in record.labels:
        _check_text("a label", label)
    labels = tuple(sorted({label.strip() for label in record.labels if label.strip()}))
    value = (record.value or "").strip()
    if not value:
        raise ListError("empty value")
    if hash_list.kind == "hash":
        from seawall.signals.base import get_signal_type

        name = (record.signal_type or "").strip().lower()
        if not name:
            name = _INFERRED_BY_LENGTH.get(len(value), "")
            if not name:
                raise ListError(
                    f"cannot tell the signal type of a {len(value)}-character value "
                    "(a SHA-256 and a PDQ hash are both 64 hex digits): give the signal type"
                )
        try:
            signal_type = get_signal_type(name)
        except KeyError:
            raise ListError(f"unknown signal type {name!r}") from None
        try:
            value = signal_type.validate(value)
            trimmed = None
            if record.trimmed_value is not None:
                if name != "pdq":
                    raise ValueError(f"a trimmed-picture hash goes with a pdq entry, not {name}")
                trimmed = signal_type.validate(record.trimmed_value)
        except ValueError as exc:
            raise ListError(str(exc)) from None
        return replace(record, signal_type=name, value=value, labels=labels, level=None, trimmed_value=trimmed)
    if hash_list.kind == "url":
        from seawall.lists.urls import normalize_entry

        level = record.level or "exact"
        if level not in URL_LEVELS:
            raise ListError(f"unknown URL level {level!r}; levels: {', '.join(URL_LEVELS)}")
        try:
            value = normalize_entry(value, level)
        except ValueError as exc:
            raise ListError(str(exc)) from None
        return replace(record, signal_type="url", value=value, labels=labels, level=level)
    if len(value) > MAX_KEYWORD_LENGTH:
        raise ListError(f"a keyword or pattern is at most {MAX_KEYWORD_LENGTH} characters")
    from seawall.lists.keywords import check_keyword

    try:
        check_keyword(value)  # with the engine that will run it: what is accepted here compiles there
    except ValueError as exc:
        raise ListError(str(exc)) from None
    return replace(record, signal_type="keyword", value=value, labels=labels, level=None)


@dataclass
class ImportResult:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    invalid: int = 0
    errors: list[FormatError] = field(default_factory=list)  # the first few, when skipping
    revision: int = 0

    MAX_ERRORS = 20

    def as_dict(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "invalid": self.invalid,
            "errors": [str(e) for e in self.errors],
            "revision": self.revision,
        }


_TRACKED_FIELDS = ("category", "labels", "source", "note", "status", "level")


def _entry_fields(record: EntryRecord) -> dict[str, Any]:
    return {
        "category": record.category or None,
        "labels": list(record.labels),
        "source": record.source or "",
        "note": record.note or "",
        "status": record.status,
        "level": record.level,
    }


def _trimmed_fields(record: EntryRecord) -> dict[str, Any]:
    """The trimmed-picture hash when the record brings one (a record without one keeps the entry's)."""
    if record.trimmed_value is None or record.signal_type != "pdq":
        return {}
    return {
        "trimmed_value": record.trimmed_value.strip().lower(),
        "trimmed_box": list(record.trimmed_box) if record.trimmed_box is not None else None,
    }


def trimmed_of(hashed: dict[str, Any]) -> tuple[str, tuple[int, int, int, int]] | None:
    """The trimmed picture's PDQ and box from a hash object made with regions, if it had borders."""
    for region in hashed.get("pdq_regions") or ():
        if region.get("region") == "trimmed" and isinstance(region.get("pdq"), str):
            box = region["box"]
            return region["pdq"], (int(box["x"]), int(box["y"]), int(box["width"]), int(box["height"]))
    return None


def records_from_media(path: str | os.PathLike[str], record: EntryRecord) -> list[EntryRecord]:
    """Entries for a picture (or any file): its md5, and for an image its PDQ with the trimmed
    picture's PDQ beside it when it has borders, so clean copies of a padded original match too.
    ``record`` gives the other fields. MediaError when the file cannot be hashed."""
    from seawall.signals.hashing import hash_file

    hashed = hash_file(path, ("md5", "pdq"), regions=True)
    out = [replace(record, signal_type="md5", value=hashed["md5"])]
    if isinstance(hashed.get("pdq"), str):
        trimmed = trimmed_of(hashed)
        out.append(
            replace(
                record,
                signal_type="pdq",
                value=hashed["pdq"],
                trimmed_value=trimmed[0] if trimmed else None,
                trimmed_box=trimmed[1] if trimmed else None,
            )
        )
    return out


def _chunks(items: Iterable[ParsedLine], size: int) -> Iterator[list[ParsedLine]]:
    batch: list[ParsedLine] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def add_entries(
    session: Session,
    actor: Principal,
    hash_list: HashList,
    lines: Iterable[ParsedLine | EntryRecord],
    *,
    skip_invalid: bool = False,
    batch_size: int = 2000,
    description: str = "",
) -> ImportResult:
    """Add or update entries from a stream, in batches, without holding the stream in memory.

    Idempotent on (signal type, value, external id): the same record again changes nothing. A bad
    record raises InvalidEntries (the caller rolls back, so nothing is imported) unless
    ``skip_invalid``, which counts it and keeps the first errors.
    """
    result = ImportResult()
    numbered = (
        item if isinstance(item, ParsedLine) else ParsedLine(line=i, record=item) for i, item in enumerate(lines, 1)
    )
    for batch in _chunks(numbered, batch_size):
        valid: dict[tuple[str, str, str], EntryRecord] = {}
        for parsed in batch:
            error = parsed.error
            record: EntryRecord | None = None
            if error is None and parsed.record is not None:
                try:
                    record = normalise_record(hash_list, parsed.record)
                except ListError as exc:
                    error = FormatError(parsed.line, str(exc))
            if error is not None or record is None:
                error = error or FormatError(parsed.line, "no record")
                if not skip_invalid:
                    raise InvalidEntries([error])
                result.invalid += 1
                if len(result.errors) < ImportResult.MAX_ERRORS:
                    result.errors.append(error)
                continue
            valid[(record.signal_type, record.value, record.external_id or "")] = record
        if valid:
            _write_batch(session, actor, hash_list, valid, result)
    if result.added or result.updated:
        audit.record(
            session,
            actor,
            "list.entries",
            "list",
            hash_list.id,
            {"name": hash_list.name, "description": description, **result.as_dict(), "errors": len(result.errors)},
        )
    session.flush()
    result.revision = int(session.scalar(select(HashList.revision).where(HashList.id == hash_list.id)) or 0)
    return result


def _write_batch(
    session: Session,
    actor: Principal,
    hash_list: HashList,
    records: dict[tuple[str, str, str], EntryRecord],
    result: ImportResult,
) -> None:
    existing = {
        (row.signal_type, row.value, row.external_id): row
        for row in session.execute(
            select(
                Entry.id,
                Entry.signal_type,
                Entry.value,
                Entry.external_id,
                *(getattr(Entry, f) for f in _TRACKED_FIELDS),
                Entry.trimmed_value,
                Entry.trimmed_box,
            ).where(
                Entry.list_id == hash_list.id,
                Entry.signal_type.in_({key[0] for key in records}),
                Entry.value.in_({key[1] for key in records}),
            )
        )
    }
    new: list[tuple[tuple[str, str, str], EntryRecord]] = []
    changed: list[tuple[int, dict[str, Any]]] = []
    for key, record in records.items():
        row = existing.get(key)
        fields = _entry_fields(record)
        if row is None:
            new.append((key, record))
            continue
        diff = {f: fields[f] for f in _TRACKED_FIELDS if getattr(row, f) != fields[f]}
        diff.update({f: v for f, v in _trimmed_fields(record).items() if getattr(row, f) != v})
        if diff:
            changed.append((row.id, diff))
        else:
            result.unchanged += 1
    count = len(new) + len(changed)
    if not count:
        return
    first = _bump_revision(session, hash_list, count)
    now = utcnow()
    changes: list[dict[str, Any]] = []
    if new:
        rows = [
            {
                "list_id": hash_list.id,
                "signal_type": key[0],
                "value": key[1],
                "external_id": key[2],
                "added_at": now,
                "added_by": actor.name,
                "match_count": 0,
                "disabled_until": None,
                "revision": first + i,
                **_entry_fields(record),
            }
            for i, (key, record) in enumerate(new)
        ]
        # Trimmed-picture hashes come with entries added from media, a few at a time: a bulk
        # import's rows stay as they were (one executemany needs the same columns in every row).
        if any(record.trimmed_value is not None for _, record in new):
            for fields, (_, record) in zip(rows, new, strict=True):
                fields.update({"trimmed_value": None, "trimmed_box": None, **_trimmed_fields(record)})
        # executemany without RETURNING is one fast C loop on both backends; the ids come back in one query.
        session.execute(insert(_ENTRY_TABLE), rows)
        ids = {
            (row.signal_type, row.value, row.external_id): row.id
            for row in session.execute(
                select(Entry.id, Entry.signal_type, Entry.value, Entry.external_id).where(
                    Entry.list_id == hash_list.id,
                    Entry.signal_type.in_({key[0] for key, _ in new}),
                    Entry.value.in_({key[1] for key, _ in new}),
                )
            )
        }
        for i, (key, _) in enumerate(new):
            changes.append(
                {
                    "list_id": hash_list.id,
                    "revision": first + i,
                    "entry_id": ids[key],
                    "op": "add",
                    "status": rows[i]["status"],
                    "details": {},
                    "changed_at": now,
                    "actor": actor.name,
                }
            )
        result.added += len(new)
    for j, (entry_id, diff) in enumerate(changed, start=len(new)):
        session.execute(update(Entry).where(Entry.id == entry_id).values(**diff, revision=first + j))
        changes.append(
            {
                "list_id": hash_list.id,
                "revision": first + j,
                "entry_id": entry_id,
                "op": "status" if set(diff) == {"status"} else "update",
                "status": diff.get("status"),
                "details": diff,
                "changed_at": now,
                "actor": actor.name,
            }
        )
    result.updated += len(changed)
    session.execute(insert(_CHANGE_TABLE), changes)


def find_entries(session: Session, hash_list: HashList, value: str, signal_type: str | None = None) -> list[Entry]:
    """Entries of a list with this value (normalised as the list would store it)."""
    probe = normalise_record(hash_list, EntryRecord(signal_type=signal_type or "", value=value))
    query = select(Entry).where(Entry.list_id == hash_list.id, Entry.value == probe.value)
    if hash_list.kind == "hash":
        query = query.where(Entry.signal_type == probe.signal_type)
    return list(session.scalars(query.order_by(Entry.id)))


def get_entry(session: Session, hash_list: HashList, entry_id: int) -> Entry:
    entry = session.get(Entry, entry_id)
    if entry is None or entry.list_id != hash_list.id:
        raise EntryNotFound(f"no entry {entry_id} in list {hash_list.name!r}")
    return entry


def set_status(
    session: Session,
    actor: Principal,
    entries: Sequence[Entry],
    status: str,
    *,
    reason: str = "",
    disabled_until: datetime | None = None,
    audit_event: bool = True,
) -> int:
    """Move entries to a status (retire = ``retracted``); returns how many changed. ``audit_event``
    False: the caller's own event covers it (a list deletion retracting its entries)."""
    if status not in ENTRY_STATUSES:
        raise ListError(f"unknown status {status!r}; statuses: {', '.join(ENTRY_STATUSES)}")
    todo = [e for e in entries if e.status != status or e.disabled_until != disabled_until]
    if not todo:
        return 0
    by_list: dict[int, list[Entry]] = {}
    for entry in todo:
        by_list.setdefault(entry.list_id, []).append(entry)
    now = utcnow()
    for entries_of_list in by_list.values():
        hash_list = entries_of_list[0].hash_list
        first = _bump_revision(session, hash_list, len(entries_of_list))
        for i, entry in enumerate(entries_of_list):
            entry.status = status
            entry.disabled_until = disabled_until
            entry.revision = first + i
            session.add(
                ListChange(
                    list_id=hash_list.id,
                    revision=first + i,
                    entry_id=entry.id,
                    op="status",
                    status=status,
                    details={"reason": reason} if reason else {},
                    changed_at=now,
                    actor=actor.name,
                )
            )
        if audit_event:
            audit.record(
                session,
                actor,
                f"entry.{status}",
                "list",
                hash_list.id,
                {"name": hash_list.name, "entries": [e.id for e in entries_of_list], "reason": reason},
            )
    session.flush()
    return len(todo)


def set_note(session: Session, actor: Principal, entries: Sequence[Entry], note: str) -> int:
    """Give entries a new note (``""`` clears it), each a change feed followers see, with one audit
    event per list; returns how many changed."""
    todo = [e for e in entries if (e.note or "") != note]
    by_list: dict[int, list[Entry]] = {}
    for entry in todo:
        by_list.setdefault(entry.list_id, []).append(entry)
    now = utcnow()
    for entries_of_list in by_list.values():
        hash_list = entries_of_list[0].hash_list
        first = _bump_revision(session, hash_list, len(entries_of_list))
        for i, entry in enumerate(entries_of_list):
            entry.note = note
            entry.revision = first + i
            session.add(
                ListChange(
                    list_id=hash_list.id,
                    revision=first + i,
                    entry_id=entry.id,
                    op="update",
                    details={"note": note},
                    changed_at=now,
                    actor=actor.name,
                )
            )
        audit.record(
            session,
            actor,
            "entry.note",
            "list",
            hash_list.id,
            {"name": hash_list.name, "entries": [e.id for e in entries_of_list]},
        )
    session.flush()
    return len(todo)


def reenable_expired(session: Session, actor: Principal, *, now: datetime | None = None, batch: int = 5000) -> int:
    """Entries disabled *until* a moment that has passed become active again (HMA's
    ``disable_until_ts``); entries disabled without an end stay disabled. Returns how many."""
    moment = now or utcnow()
    done = 0
    while True:
        due = session.scalars(
            select(Entry)
            .where(Entry.status == "disabled", Entry.disabled_until.is_not(None), Entry.disabled_until <= moment)
            .order_by(Entry.id)
            .limit(batch)
        ).all()
        if not due:
            return done
        done += set_status(session, actor, due, "active", reason="the time it was disabled until has passed")


def add_opinion(
    session: Session,
    actor: Principal,
    entry: Entry,
    verdict: str,
    comment: str = "",
    *,
    false_positive_threshold: int = 3,
) -> Opinion:
    """Record a verdict; enough false positives disable an active entry pending review."""
    if verdict not in VERDICTS:
        raise ListError(f"unknown verdict {verdict!r}; verdicts: {', '.join(VERDICTS)}")
    opinion = Opinion(entry_id=entry.id, verdict=verdict, actor=actor.name, comment=comment)
    session.add(opinion)
    session.flush()
    audit.record(session, actor, "entry.opinion", "entry", entry.id, {"list": entry.hash_list.name, "verdict": verdict})
    if verdict == "false_positive" and entry.status == "active":
        false_positives = session.scalar(
            select(func.count()).where(Opinion.entry_id == entry.id, Opinion.verdict == "false_positive")
        )
        if (false_positives or 0) >= false_positive_threshold:
            set_status(
                session,
                actor,
                [entry],
                "disabled",
                reason=f"{false_positives} false-positive opinions; pending review",
            )
    return opinion


def opinions(session: Session, entry: Entry) -> list[Opinion]:
    return list(session.scalars(select(Opinion).where(Opinion.entry_id == entry.id).order_by(Opinion.id)))


# ---- reading -------------------------------------------------------------------------------


@dataclass(frozen=True)
class EntryFilter:
    status: str | None = None
    signal_type: str | None = None
    category: str | None = None
    label: str | None = None
    value_prefix: str | None = None


def iter_entries(
    session: Session,
    hash_list: HashList,
    entry_filter: EntryFilter | None = None,
    *,
    after_id: int = 0,
    limit: int | None = None,
    batch: int = 5000,
) -> Iterator[Entry]:
    """Entries in id order (keyset pages, so a 10-million-entry export streams)."""
    f = entry_filter or EntryFilter()
    query = select(Entry).where(Entry.list_id == hash_list.id)
    if f.status:
        query = query.where(Entry.status == f.status)
    if f.signal_type:
        query = query.where(Entry.signal_type == f.signal_type)
    if f.category:
        query = query.where(Entry.category == f.category)
    if f.label:
        # Labels are a JSON list of strings; the quoted label is a portable containment test.
        query = query.where(sql_cast(Entry.labels, String).contains(f'"{f.label}"'))
    if f.value_prefix:
        query = query.where(Entry.value.startswith(f.value_prefix.strip().lower(), autoescape=True))
    remaining = limit
    last = after_id
    while remaining is None or remaining > 0:
        size = batch if remaining is None else min(batch, remaining)
        rows = session.scalars(query.where(Entry.id > last).order_by(Entry.id).limit(size)).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].id
        if remaining is not None:
            remaining -= len(rows)
        if len(rows) < size:
            return


def entry_record(entry: Entry) -> EntryRecord:
    return EntryRecord(
        signal_type=entry.signal_type,
        value=entry.value,
        category=entry.category,
        labels=tuple(entry.labels or ()),
        source=entry.source or None,
        external_id=entry.external_id or None,
        note=entry.note or None,
        status=entry.status,
        level=entry.level,
    )


def count_entries(session: Session, hash_list: HashList) -> dict[str, int]:
    rows = session.execute(
        select(Entry.status, func.count()).where(Entry.list_id == hash_list.id).group_by(Entry.status)
    ).all()
    counts = {status: 0 for status in ENTRY_STATUSES}
    counts.update({status: int(n) for status, n in rows})
    return counts


@dataclass(frozen=True)
class Change:
    revision: int
    op: str
    changed_at: datetime
    entry: Entry | None
    status: str | None
    details: dict[str, Any]


def changes_since(session: Session, hash_list: HashList, since: int, limit: int = 1000) -> list[Change]:
    """The changes after revision ``since``, oldest first, with each entry's current state."""
    rows = session.execute(
        select(ListChange, Entry)
        .outerjoin(Entry, Entry.id == ListChange.entry_id)
        .where(ListChange.list_id == hash_list.id, ListChange.revision > since)
        .order_by(ListChange.revision)
        .limit(limit)
    ).all()
    return [
        Change(
            revision=change.revision,
            op=change.op,
            changed_at=change.changed_at,
            entry=entry,
            status=change.status,
            details=change.details,
        )
        for change, entry in rows
    ]
