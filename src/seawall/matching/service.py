"""Matching: signals against every enabled list, then policy, then the match log, quarantine and webhooks."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import numpy as np
from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from seawall.auth.permissions import Principal
from seawall.config import Settings
from seawall.db import utcnow, writer_turn
from seawall.lists.models import Entry, HashList
from seawall.matching import policies, webhooks
from seawall.matching.indexes import ListIndex, MatchIndexes
from seawall.matching.models import EntryMatchBucket, EntryMatchContent, EntryQuarantine, MatchEvent
from seawall.redact import redact_url
from seawall.signals.pdq import DIHEDRAL_NAMES

MIN_PDQ_QUALITY = 50


@dataclass
class Query:
    """What is being matched: signal values by type, plus what hashing told about the content."""

    signals: dict[str, list[str]] = field(default_factory=dict)  # e.g. {"md5": [..], "pdq": [..]}
    media: str | None = None
    pdq_quality: int | None = None
    pdq_dihedral: list[str] | None = None  # the 8 variants, in DIHEDRAL_NAMES order
    vpdq: list[dict[str, Any]] | None = None  # frames: {"frame", "quality", "pdq", "timestamp"}
    url: str | None = None
    text: str | None = None
    # PDQ of the picture's regions (``pdq_regions`` of the hash object): {region, box, pdq, ...}
    regions: list[dict[str, Any]] = field(default_factory=list)
    sample_seed: str | None = None  # names the content for enabled ratios (HMA's lookup ``seed``)

    def sample_key(self) -> str:
        """What names the content for lists' enabled ratios: the caller's own content id if it gave
        one (HMA's ``seed``), else its first signal in a fixed order (a lookup by PDQ alone and one
        by the file's PDQ and MD5 name the same content), else its URL or text."""
        if self.sample_seed is not None:
            return f"seed:{self.sample_seed}"
        for name in ("pdq", "md5", "sha1", "sha256", *sorted(self.signals)):
            if self.signals.get(name):
                return f"{name}:{self.signals[name][0]}"
        if self.vpdq:
            return f"vpdq:{self.vpdq[0].get('pdq', '')}"
        return f"url:{self.url}" if self.url else f"text:{self.text or ''}"

    @classmethod
    def from_hash(cls, hashed: dict[str, Any]) -> Query:
        """From the ``seawall hash`` object of one file."""
        signals = {k: [hashed[k]] for k in ("md5", "sha1", "sha256", "pdq") if isinstance(hashed.get(k), str)}
        return cls(
            signals=signals,
            media=hashed.get("media"),
            pdq_quality=hashed.get("pdq_quality"),
            pdq_dihedral=hashed.get("pdq_dihedral"),
            vpdq=hashed.get("vpdq"),
            regions=list(hashed.get("pdq_regions") or ()),
        )

    def content_key(self) -> str:
        """What the content is, for counting distinct contents (quarantine): its signals, URL or text."""
        material = json.dumps({"s": self.signals, "u": self.url, "t": self.text}, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(material.encode("utf-8", "surrogatepass")).hexdigest()

    def public_signals(self) -> dict[str, Any]:
        """Signals for the match log: values only (vPDQ as a frame count), never content."""
        out: dict[str, Any] = {k: v for k, v in self.signals.items()}
        if self.pdq_quality is not None:
            out["pdq_quality"] = self.pdq_quality
        if self.regions:
            out["pdq_regions"] = [{k: r[k] for k in ("region", "box", "pdq") if k in r} for r in self.regions]
        if self.vpdq is not None:
            out["vpdq_frames"] = len(self.vpdq)
        if self.url:
            out["url"] = redact_url(self.url)  # the match log keeps no credentials a URL carried
        if self.text is not None:
            out["text_length"] = len(self.text)
        return out


@dataclass(frozen=True)
class Hit:
    list_id: int
    entry_id: int
    signal_type: str
    distance: int = 0
    variant: str | None = None
    extra: tuple[tuple[str, Any], ...] = ()
    region: str | None = None  # PDQ: the query's region that matched (None: the whole picture)
    box: tuple[int, int, int, int] | None = None  # that region's x, y, width, height
    entry_region: str | None = None  # "trimmed": the entry's trimmed-picture hash matched


def _pdq_codes(values: Sequence[str]) -> np.ndarray:
    return np.frombuffer(bytes.fromhex("".join(values)), dtype=np.uint8).reshape(len(values), 32)


def _search_binary(index: ListIndex, signal_type: str, values: list[str], variants: list[str] | None) -> list[Hit]:
    hamming = index.binary.get(signal_type)
    if hamming is None or not len(hamming):
        return []
    threshold = index.threshold(signal_type)
    use_variants = signal_type == "pdq" and variants is not None and index.dihedral
    queries = variants if use_variants and variants else values
    names = list(DIHEDRAL_NAMES) if use_variants else [None] * len(queries)
    best: dict[int, tuple[int, str | None]] = {}
    for name, found in zip(names, hamming.search(_pdq_codes(queries), threshold), strict=True):
        for entry_id, distance in found:
            if entry_id not in best or distance < best[entry_id][0]:
                best[int(entry_id)] = (int(distance), name)
    return [Hit(index.id, e, signal_type, d, v) for e, (d, v) in best.items()]


def _search_codes(
    hamming: Any, threshold: int, values: list[str], variants: list[str] | None
) -> dict[int, tuple[int, str | None]]:
    """Best (distance, variant) per entry id for one hash, or its 8 variants."""
    queries = variants if variants else values
    names = list(DIHEDRAL_NAMES) if variants else [None] * len(queries)
    best: dict[int, tuple[int, str | None]] = {}
    for name, found in zip(names, hamming.search(_pdq_codes(queries), threshold), strict=True):
        for entry_id, distance in found:
            if int(entry_id) not in best or distance < best[int(entry_id)][0]:
                best[int(entry_id)] = (int(distance), name)
    return best


def _box(region: dict[str, Any]) -> tuple[int, int, int, int] | None:
    box = region.get("box")
    if not isinstance(box, dict):
        return None
    return (int(box["x"]), int(box["y"]), int(box["width"]), int(box["height"]))


def _search_pdq(index: ListIndex, query: Query, pdq_ok: bool, low_ok: bool, regions: bool) -> list[Hit]:
    """PDQ hits of an image on one list: the whole picture, and (region matching on for the list
    and globally) each region of it, and the entries' trimmed-picture hashes. One hit per entry,
    the closest; on a tie the whole picture wins, then the entry's own value."""
    hamming = index.binary.get("pdq")
    threshold = index.threshold("pdq")
    # (query region, its box, its values, its variants) to search
    queries: list[tuple[str | None, tuple[int, int, int, int] | None, list[str], list[str] | None]] = []
    if pdq_ok:
        queries.append((None, None, query.signals.get("pdq", []), query.pdq_dihedral))
    if regions and index.regions:
        for region in query.regions:
            quality = region.get("pdq_quality")
            if isinstance(region.get("pdq"), str) and (low_ok or quality is None or quality >= MIN_PDQ_QUALITY):
                queries.append((str(region["region"]), _box(region), [region["pdq"]], region.get("pdq_dihedral")))
    targets: list[tuple[str | None, Any]] = [(None, hamming)]
    if regions and index.regions and index.trimmed is not None and len(index.trimmed):
        targets.append(("trimmed", index.trimmed))
    best: dict[int, tuple[tuple[int, int, int], Hit]] = {}
    for rank, (region_kind, box, values, variants) in enumerate(queries):
        if not values:
            continue
        for target_rank, (entry_region, target) in enumerate(targets):
            if target is None or not len(target):
                continue
            found = _search_codes(target, threshold, values, variants if index.dihedral else None)
            for entry_id, (distance, variant) in found.items():
                key = (distance, rank, target_rank)
                if entry_id not in best or key < best[entry_id][0]:
                    hit = Hit(index.id, entry_id, "pdq", distance, variant, (), region_kind, box, entry_region)
                    best[entry_id] = (key, hit)
    return [hit for _, hit in best.values()]


def _search_vpdq(session: Session, index: ListIndex, frames: list[dict[str, Any]], settings: Settings) -> list[Hit]:
    """vPDQ as vPDQ defines it: unique good frames, per-frame threshold, both match percentages.

    A listed video is its frames as entries sharing an external id; the index finds the frames
    within the threshold, and the percentages are counted per listed video.
    """
    hamming = index.binary.get("vpdq")
    if hamming is None or not len(hamming):
        return []
    unique = list(dict.fromkeys(f["pdq"] for f in frames if int(f["quality"]) >= MIN_PDQ_QUALITY))
    if not unique:
        return []
    found = hamming.search(_pdq_codes(unique), index.threshold("vpdq"))
    hit_ids = {int(e) for row in found for e, _ in row}
    if not hit_ids:
        return []
    video_of = dict(session.execute(select(Entry.id, Entry.external_id).where(Entry.id.in_(hit_ids))).all())
    per_video: dict[str, dict[str, Any]] = {}
    for q, row in enumerate(found):
        for entry_id, distance in row:
            video = video_of.get(int(entry_id))
            if video is None:
                continue
            state = per_video.setdefault(video, {"query": set(), "candidate": set(), "best": (999, 0)})
            state["query"].add(q)
            state["candidate"].add(int(entry_id))
            state["best"] = min(state["best"], (int(distance), int(entry_id)))
    hits = []
    for video, state in per_video.items():
        total = index.vpdq_frames.get(video, 0) or len(state["candidate"])
        candidate_pct = 100.0 * len(state["candidate"]) / total
        query_pct = 100.0 * len(state["query"]) / len(unique)
        if candidate_pct >= settings.vpdq_candidate_percent and query_pct >= settings.vpdq_query_percent:
            distance, entry_id = state["best"]
            extra = (("query_match_percent", round(query_pct, 2)), ("candidate_match_percent", round(candidate_pct, 2)))
            hits.append(Hit(index.id, entry_id, "vpdq", distance, None, extra))
    return hits


def usable_lists(
    indexes: MatchIndexes, lists: Iterable[str] | None, principal: Principal | None
) -> Iterator[ListIndex]:
    """The enabled lists a search covers: all, or only ``lists``, and only those the caller may use
    — plus every enabled allowlist: allowlists are the operator's and apply to every caller's
    matches on the lists in their scope (what the caller is not allowed to see of them is hidden
    from its answer, see ``decide_hits``)."""
    wanted = set(lists) if lists is not None else None
    for index in list(indexes.lists.values()):
        if not index.enabled:
            continue
        if index.allowlist:
            yield index
            continue
        if wanted is not None and index.name not in wanted:
            continue
        if principal is not None and not principal.can_use_list(index.name):
            continue
        yield index


def find_hits(
    session: Session | None,
    indexes: MatchIndexes,
    query: Query,
    settings: Settings,
    *,
    lists: Iterable[str] | None = None,
    principal: Principal | None = None,
    include_low_quality: bool | None = None,
    sample: bool = True,
) -> list[Hit]:
    """Every entry of every enabled list (optionally only ``lists``) within its threshold of the query.
    ``sample`` False: lists with an enabled ratio below 1 are searched for every content (an admin's
    HMA ``bypass_coinflip``)."""
    low_ok = settings.match_low_quality if include_low_quality is None else include_low_quality
    pdq_ok = low_ok or query.pdq_quality is None or query.pdq_quality >= MIN_PDQ_QUALITY
    hits: list[Hit] = []
    sample_key = query.sample_key()
    for index in usable_lists(indexes, lists, principal):
        if sample and not index.sampled(sample_key):
            continue
        if index.kind == "hash":
            if "pdq" in query.signals and "pdq" in index.binary:
                hits.extend(_search_pdq(index, query, pdq_ok, low_ok, settings.match_regions))
            for signal_type, values in query.signals.items():
                if signal_type == "pdq":
                    continue
                if signal_type in index.binary:
                    hits.extend(_search_binary(index, signal_type, values, None))
                elif signal_type in index.exact:
                    exact = index.exact[signal_type]
                    keys = [bytes.fromhex(v) for v in values]
                    if all(len(k) == exact.key_size for k in keys):
                        for found in exact.lookup(keys):
                            hits.extend(Hit(index.id, e, signal_type) for e in found)
            if query.vpdq:
                if session is None:
                    raise ValueError("vPDQ matching reads the database: give a session")
                hits.extend(_search_vpdq(session, index, query.vpdq, settings))
        elif index.kind == "url" and query.url and index.urls is not None:
            hits.extend(Hit(index.id, m.entry_id, "url", 0, m.level) for m in index.urls.match(query.url))
        elif index.kind == "keyword" and query.text and index.keyword_terms:
            for m in index.keyword_matcher().match(query.text):
                hits.append(Hit(index.id, m.entry_id, "keyword", 0, None, (("start", m.start), ("end", m.end))))
    return hits


def search_signals(
    indexes: MatchIndexes,
    items: Sequence[tuple[str, str] | None],
    *,
    lists: Iterable[str] | None = None,
    principal: Principal | None = None,
) -> list[list[Hit]]:
    """``find_hits`` for many single signals at once, in one index search per list and signal type.

    ``items`` are validated ``(signal_type, value)`` pairs (None for an item that was not valid: it
    finds nothing); the result is each item's hits, in order. The same as calling ``find_hits`` with
    ``Query(signals={signal_type: [value]})`` item by item, without paying the index's fixed cost per
    call n times (a search of n codes costs far less than n searches of one)."""
    out: list[list[Hit]] = [[] for _ in items]
    positions: dict[str, list[int]] = {}
    for i, item in enumerate(items):
        if item is not None:
            positions.setdefault(item[0], []).append(i)
    for index in usable_lists(indexes, lists, principal):
        if index.kind != "hash":
            continue
        for signal_type, where in positions.items():
            if index.enabled_ratio < 1.0:  # only the items whose content this list is matched for
                where = [i for i in where if (item := items[i]) is not None and index.sampled(f"{item[0]}:{item[1]}")]
                if not where:
                    continue
            values = [item[1] for i in where if (item := items[i]) is not None]
            if signal_type in index.binary:
                hamming = index.binary[signal_type]
                if not len(hamming):
                    continue
                found = hamming.search(_pdq_codes(values), index.threshold(signal_type))
                for i, row in zip(where, found, strict=True):
                    out[i].extend(Hit(index.id, int(e), signal_type, int(d)) for e, d in row)
            elif signal_type in index.exact:
                exact = index.exact[signal_type]
                keys = [bytes.fromhex(v) for v in values]
                fits = [(i, k) for i, k in zip(where, keys, strict=True) if len(k) == exact.key_size]
                for (i, _), ids in zip(fits, exact.lookup([k for _, k in fits]), strict=True):
                    out[i].extend(Hit(index.id, e, signal_type) for e in ids)
    return out


def _active_entries(session: Session, entry_ids: set[int]) -> dict[int, Entry]:
    if not entry_ids:
        return {}
    rows = session.scalars(select(Entry).where(Entry.id.in_(entry_ids), Entry.status == "active"))
    return {e.id: e for e in rows}


def describe_hits(session: Session, indexes: MatchIndexes, hits: list[Hit]) -> list[dict[str, Any]]:
    """Hits as the API shows them, checked against the database (an entry retired a moment ago is dropped)."""
    if not hits:
        return []
    return _describe(indexes, hits, _active_entries(session, {h.entry_id for h in hits}))


def _describe(indexes: MatchIndexes, hits: list[Hit], rows: dict[int, Entry]) -> list[dict[str, Any]]:
    out = []
    for hit in sorted(hits, key=lambda h: (h.distance, h.list_id, h.entry_id)):
        entry = rows.get(hit.entry_id)
        index = indexes.lists.get(hit.list_id)
        if entry is None or index is None:
            continue
        item: dict[str, Any] = {
            "list": index.name,
            "entry_id": entry.id,
            "value": entry.value,
            "signal_type": hit.signal_type,
            "distance": hit.distance,
            "category": entry.category,
            "labels": list(entry.labels or ()),
            "source": entry.source or None,
            "external_id": entry.external_id or None,
            "allowlist": index.allowlist,
        }
        if hit.signal_type == "pdq":
            item["variant"] = hit.variant or "original"
            item["region"] = hit.region or "whole"
            if hit.box is not None:
                item["box"] = dict(zip(("x", "y", "width", "height"), hit.box, strict=True))
            if hit.entry_region is not None:
                item["entry_region"] = hit.entry_region
        if hit.signal_type == "url":
            item["level"] = hit.variant
        if hit.signal_type == "keyword":
            item["term"] = entry.value
        item.update(dict(hit.extra))
        out.append(item)
    return out


@dataclass
class MatchOutcome:
    match_id: str
    matches: list[dict[str, Any]]
    decision: policies.Decision

    def as_dict(self) -> dict[str, Any]:
        return {
            "match_id": self.match_id,
            "matches": self.matches,
            "actions": self.decision.actions,
            "shadow_actions": self.decision.shadow_actions,
            "allowlisted": self.decision.allowlisted,
            "suppressed_lists": self.decision.suppressed_lists,
            "reasons": self.decision.reasons,
        }


def caller_key(principal: Principal) -> str:
    """How the match log and quarantine name a caller."""
    return f"{principal.kind}:{principal.name}"[:120]


def quarantined(session: Session, entry_ids: Iterable[int], principal: Principal | None = None) -> set[int]:
    """Entries whose actions are paused for this caller: quarantined because of its own matches,
    or for everyone by an admin's decision. Without a principal: every quarantined entry."""
    ids = set(entry_ids)
    if not ids:
        return set()
    rows = session.execute(
        select(EntryQuarantine.entry_id, EntryQuarantine.everyone, EntryQuarantine.callers).where(
            EntryQuarantine.entry_id.in_(ids), EntryQuarantine.released_at.is_(None)
        )
    ).all()
    who = caller_key(principal) if principal is not None else None
    return {int(e) for e, everyone, callers in rows if who is None or everyone or who in (callers or ())}


def evaluate(
    session: Session,
    indexes: MatchIndexes,
    query: Query,
    settings: Settings,
    principal: Principal,
    *,
    lists: Iterable[str] | None = None,
    include_low_quality: bool | None = None,
    hits: list[Hit] | None = None,
    sample: bool = True,
) -> MatchOutcome:
    """Match and decide by policy; reads only (recording is ``record_match``). ``hits``: what
    ``find_hits`` found for this query already (the caller searched first), to not search twice."""
    if hits is None:
        hits = find_hits(
            session,
            indexes,
            query,
            settings,
            lists=lists,
            principal=principal,
            include_low_quality=include_low_quality,
            sample=sample,
        )
    return decide_hits(session, indexes, [hits], [query.media], principal)[0]


def decide_hits(
    session: Session,
    indexes: MatchIndexes,
    hits: Sequence[list[Hit]],
    media: Sequence[str | None],
    principal: Principal | None = None,
) -> list[MatchOutcome]:
    """``evaluate`` for many queries whose hits are known: the entries, quarantines and policies are
    read once for all of them (nothing is read when nothing was hit). Matches on allowlists the
    caller may not read decide like any other, then are left out of its answer."""
    rows = _active_entries(session, {h.entry_id for found in hits for h in found})
    described = [_describe(indexes, found, rows) if found else [] for found in hits]
    outcomes = [MatchOutcome(str(uuid.uuid4()), matches, policies.Decision()) for matches in described]
    if any(described):
        paused = quarantined(session, (m["entry_id"] for matches in described for m in matches), principal)
        rules = policies.load_rules(session)
        scopes = {i.name: i.allowlist_scope for i in list(indexes.lists.values()) if i.allowlist}
        hidden = {name for name in scopes if principal is not None and not principal.can_use_list(name)}
        for outcome, kind in zip(outcomes, media, strict=True):
            if outcome.matches:
                outcome.decision = policies.decide(rules, outcome.matches, kind, paused, scopes, hidden)
                outcome.matches = [m for m in outcome.matches if m["list"] not in hidden]
    return outcomes


def match(
    session: Session,
    indexes: MatchIndexes,
    query: Query,
    settings: Settings,
    principal: Principal,
    *,
    lists: Iterable[str] | None = None,
    include_low_quality: bool | None = None,
    record: bool = True,
) -> MatchOutcome:
    """Match, decide by policy, and (when something matched) record it, count it and deliver webhooks."""
    outcome = evaluate(
        session, indexes, query, settings, principal, lists=lists, include_low_quality=include_low_quality
    )
    if record and outcome.matches:
        record_match(session, settings, principal, query, outcome)
    return outcome


def record_matches(
    factory: Callable[[], Session],
    settings: Settings,
    principal: Principal,
    matched: Sequence[tuple[Query, MatchOutcome]],
) -> None:
    """Record matches in one short write transaction of their own (``factory`` makes write sessions).

    On SQLite the match-log writers of every process on this host take turns on a file lock first:
    the database lock admits one writer, and SQLite's own wait for it sleeps and polls (1, 2, 5, 10 …
    100 ms), which under load made the slowest hits wait tens of milliseconds for a lock free for
    most of that time; ``writer_turn`` queues them on a file lock instead."""
    if not matched:
        return
    with factory() as session, writer_turn(session):
        counted: set[int] = set()  # one request counts once per entry, however often it repeats
        for query, outcome in matched:
            record_match(session, settings, principal, query, outcome, counted)
        session.commit()


def record_match(
    session: Session,
    settings: Settings,
    principal: Principal,
    query: Query,
    outcome: MatchOutcome,
    counted: set[int] | None = None,
) -> MatchEvent:
    """Log a match, count it per entry, and quarantine entries whose rate jumped. ``counted``: the
    entries this request counted already (a batch of many copies of one hash counts once)."""
    # Counted first, so a quarantine this match triggers is among the reasons the event records.
    entry_ids = sorted({m["entry_id"] for m in outcome.matches})
    session.execute(update(Entry).where(Entry.id.in_(entry_ids)).values(match_count=Entry.match_count + 1))
    fresh = [e for e in entry_ids if counted is None or e not in counted]
    if counted is not None:
        counted.update(fresh)
    newly = count_and_quarantine(session, settings, principal, {e: query.content_key() for e in fresh})
    if newly:
        outcome.decision.reasons.append(
            f"entries {', '.join(map(str, newly))} quarantined: their match rate jumped far above baseline"
        )
    event = MatchEvent(
        match_id=outcome.match_id,
        principal=caller_key(principal),
        media=query.media,
        signals=query.public_signals(),
        matches=outcome.matches,
        actions=outcome.decision.actions,
        shadow_actions=outcome.decision.shadow_actions,
        reasons=list(outcome.decision.reasons),
        allowlisted=outcome.decision.allowlisted,
    )
    session.add(event)
    for action in outcome.decision.actions:
        if action["type"] == "webhook":
            webhooks.enqueue(session, action["target"], outcome.match_id, webhook_payload(query, outcome))
    if any(action["type"] == "review" for action in outcome.decision.actions):
        from seawall.hotline import intake  # the review queue is the hotline's

        intake.escalate_match(
            session,
            settings,
            principal,
            caller=caller_key(principal),
            signals=query.signals,
            url=query.url,
            content_key=query.content_key(),
            matches=outcome.matches,
            reasons=outcome.decision.reasons,
        )
    session.flush()
    return event


def webhook_payload(query: Query, outcome: MatchOutcome) -> dict[str, Any]:
    return {
        "event": "match",
        "match_id": outcome.match_id,
        "media": query.media,
        "signals": query.public_signals(),
        **{k: v for k, v in outcome.as_dict().items() if k != "match_id"},
    }


def count_and_quarantine(
    session: Session, settings: Settings, principal: Principal, contents: dict[int, str]
) -> list[int]:
    """Count, per entry and hour, the distinct contents (per caller) that matched it, and quarantine
    entries far above their weekly baseline — for the callers whose matches made the jump.

    Requests are not what is counted: one caller sending one hash 200 times is one content, so no
    single caller can push an entry over the line by repetition, and a quarantine pauses actions only
    for the callers in the spike (an admin can extend it to everyone)."""
    if not contents:
        return []
    now = utcnow()
    hour = now.replace(minute=0, second=0, microsecond=0)
    who = caller_key(principal)
    dialect = session.get_bind().dialect.name
    insert_fn = pg_insert if dialect == "postgresql" else sqlite_insert
    entry_ids = sorted(contents)
    new_content: list[int] = []
    for entry_id in entry_ids:
        added = session.execute(
            insert_fn(EntryMatchContent)
            .values(entry_id=entry_id, hour=hour, principal=who, content=contents[entry_id][:64])
            .on_conflict_do_nothing(index_elements=["entry_id", "hour", "principal", "content"])
            .returning(EntryMatchContent.id)  # a row back only when it is new (rowcount is -1 on psycopg)
        ).scalar_one_or_none()
        if added is not None:
            new_content.append(entry_id)
    for entry_id in new_content:
        stmt = insert_fn(EntryMatchBucket).values(entry_id=entry_id, hour=hour, count=1)
        session.execute(
            stmt.on_conflict_do_update(index_elements=["entry_id", "hour"], set_={"count": EntryMatchBucket.count + 1})
        )
    if not new_content:
        return []
    entry_ids = new_content
    week_ago = hour - timedelta(days=7)
    current = dict(
        session.execute(
            select(EntryMatchBucket.entry_id, EntryMatchBucket.count).where(
                EntryMatchBucket.entry_id.in_(entry_ids), EntryMatchBucket.hour == hour
            )
        ).all()
    )
    candidates = [e for e, n in current.items() if n >= settings.quarantine_min_matches]
    if not candidates:
        return []
    baselines = dict(
        session.execute(
            select(EntryMatchBucket.entry_id, func.sum(EntryMatchBucket.count))
            .where(
                EntryMatchBucket.entry_id.in_(candidates),
                EntryMatchBucket.hour >= week_ago,
                EntryMatchBucket.hour < hour,
            )
            .group_by(EntryMatchBucket.entry_id)
        ).all()
    )
    already = quarantined(session, candidates)
    newly = []
    for entry_id in candidates:
        baseline = max(1.0, float(baselines.get(entry_id) or 0) / (7 * 24))
        rate = current[entry_id]
        if entry_id in already or rate < settings.quarantine_factor * baseline:
            continue
        callers = sorted(
            set(
                session.scalars(
                    select(EntryMatchContent.principal).where(
                        EntryMatchContent.entry_id == entry_id, EntryMatchContent.hour == hour
                    )
                )
            )
        )
        reason = (
            f"{rate} distinct contents matched this hour against a baseline of {baseline:.1f}/hour, "
            f"from {len(callers)} caller(s)"
        )
        existing = session.get(EntryQuarantine, entry_id)
        if existing is None:
            session.add(EntryQuarantine(entry_id=entry_id, since=now, reason=reason, callers=callers, everyone=False))
        else:
            existing.since, existing.reason, existing.released_at, existing.released_by = now, reason, None, None
            existing.callers, existing.everyone = callers, False
        newly.append(entry_id)  # this caller is among its callers: it added content this hour
    return newly


def list_quarantine(session: Session, principal: Principal) -> list[tuple[EntryQuarantine, str]]:
    """Open quarantines of entries in lists the caller may read, with each entry's list name."""
    rows = session.execute(
        select(EntryQuarantine, HashList.name)
        .join(Entry, Entry.id == EntryQuarantine.entry_id)
        .join(HashList, HashList.id == Entry.list_id)
        .where(EntryQuarantine.released_at.is_(None), HashList.deleted_at.is_(None))
        .order_by(EntryQuarantine.since)
    ).all()
    return [(q, name) for q, name in rows if principal.can_use_list(name)]


def _open_quarantine(session: Session, entry_id: int) -> EntryQuarantine:
    row = session.get(EntryQuarantine, entry_id)
    if row is None or row.released_at is not None:
        raise LookupError(f"entry {entry_id} is not quarantined")
    return row


def release_quarantine(session: Session, actor: Principal, entry_id: int) -> None:
    from seawall.auth import audit

    row = _open_quarantine(session, entry_id)
    row.released_at, row.released_by = utcnow(), actor.name
    audit.record(session, actor, "entry.quarantine_release", "entry", entry_id, {"reason": row.reason})


def quarantine_everyone(session: Session, actor: Principal, entry_id: int) -> None:
    """An admin's decision that a quarantine pauses the entry's actions for every caller."""
    from seawall.auth import audit

    row = _open_quarantine(session, entry_id)
    if not row.everyone:
        row.everyone = True
        audit.record(session, actor, "entry.quarantine_everyone", "entry", entry_id, {"reason": row.reason})


def overview(session: Session) -> dict[str, int]:
    """The dashboard's figures."""
    from seawall.matching.models import WebhookDelivery

    since = utcnow() - timedelta(hours=24)
    return {
        "lists": int(session.scalar(select(func.count()).where(HashList.deleted_at.is_(None))) or 0),
        "active_entries": int(session.scalar(select(func.count()).where(Entry.status == "active")) or 0),
        "matches_24h": int(session.scalar(select(func.count()).where(MatchEvent.occurred_at >= since)) or 0),
        "quarantined": int(session.scalar(select(func.count()).where(EntryQuarantine.released_at.is_(None))) or 0),
        "dead_deliveries": int(session.scalar(select(func.count()).where(WebhookDelivery.state == "dead")) or 0),
    }
