"""Capture: fetch a case's page with the SSRF-safe fetcher, find the media it shows, and keep each
as an item — hashed with every signal type, matched against every enabled list, stored encrypted in
the evidence store with a blurred greyscale thumbnail, inheriting an earlier assessment of the same
content when there is one.

Every step can run again: an item is one row per SHA-256 (inserted if absent, else reused), a case
links an item once, and an item's evidence and thumbnail are recorded once (a second writer's copy
is discarded). A capture that crashed is simply run again. Fetching, hashing, rendering and
encrypting happen outside write transactions; each write transaction is short.

``run_capture(purpose="recheck")`` is the notice re-check: the page and its media fetched again and
compared with the case's items, nothing new kept.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import unquote_to_bytes, urlsplit

from sqlalchemy import event, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from seawall.auth import audit
from seawall.auth.permissions import SYSTEM, Principal
from seawall.config import Settings
from seawall.db import make_sessionmaker, utcnow
from seawall.evidence import service as evidence
from seawall.fetch import Fetched, FetchError, FetchRefused, FetchUnreachable, SafeFetcher
from seawall.hotline import assessment, pages, tracing
from seawall.hotline.models import Capture, Case, CaseItem, Item
from seawall.lists import service as lists_service
from seawall.matching.indexes import MatchIndexes
from seawall.media.errors import MediaError
from seawall.redact import redact_url

log = logging.getLogger(__name__)

#: Page answers that mean the content is gone (451: withheld for legal reasons, i.e. taken down).
GONE_STATUSES = frozenset({404, 410, 451})
MIN_PDQ_QUALITY = 50  # below it a PDQ says little (flat images): never a basis for inheriting
MAX_HEADERS = 64
MAX_HEADER_VALUE = 1024
MAX_SKIPPED = 200
# A running capture younger than this is live: another one of the same case waits its turn.
LEASE_MARGIN_SECONDS = 300.0


class CaptureError(Exception):
    """A case that cannot be captured (no such case, no URL); the message says why."""


# ---------------------------------------------------------------- scheduling


def queue_capture(case_id: int) -> None:
    """Hand a case to the task queue (tests replace ``scheduler`` to run captures themselves)."""
    from seawall.hotline.tasks import capture_case

    capture_case(case_id)


scheduler: Callable[[int], None] = queue_capture


def schedule_after_commit(session: Session, case_id: int) -> None:
    """Capture the case once this transaction commits (before, a worker could not see it)."""
    event.listen(session, "after_commit", lambda _s: scheduler(case_id), once=True)


# ---------------------------------------------------------------- results


@dataclass
class CaptureResult:
    """What one capture found. For a re-check, ``present_items`` are the case's items fetched again
    (by SHA-256, or PDQ within the threshold) and :meth:`content_gone` answers "is it gone?"."""

    case_id: int
    purpose: str
    state: str  # done, gone, failed, or busy (another capture of the case is running)
    capture_id: int | None = None
    http_status: int | None = None
    final_url: str | None = None
    error: str = ""
    items: list[int] = field(default_factory=list)  # the items this capture fetched (initial)
    new_items: list[int] = field(default_factory=list)
    inherited: list[int] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    media_sha256: list[str] = field(default_factory=list)
    case_items: list[int] = field(default_factory=list)  # every item of the case (re-check)
    present_items: list[int] = field(default_factory=list)

    @property
    def page_gone(self) -> bool:
        return self.state == "gone"

    def content_gone(self, item_ids: Iterable[int] | None = None) -> bool:
        """The page is gone, or it answered and none of ``item_ids`` (default: all the case's items)
        is on it any more. A failed fetch proves nothing (False); so does a case without items."""
        if self.state == "gone":
            return True
        if self.state != "done":
            return False
        wanted = set(self.case_items if item_ids is None else item_ids)
        return bool(wanted) and not (wanted & set(self.present_items))


# ---------------------------------------------------------------- fetching within limits


class _Budget:
    """One capture's limits: media count, bytes in all, and time."""

    def __init__(self, settings: Settings, verify: Any) -> None:
        self.settings = settings
        self.verify = verify
        self.deadline = time.monotonic() + settings.capture_timeout_seconds
        self.bytes_left = settings.capture_max_bytes
        self.media_left = settings.capture_max_media

    def fetch(self, url: str, referer: str | None = None) -> Fetched:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise FetchError(f"the capture's time limit ({self.settings.capture_timeout_seconds:g} s) was reached")
        if self.bytes_left <= 0:
            raise FetchError(f"the capture's byte limit ({self.settings.capture_max_bytes}) was reached")
        fetcher = SafeFetcher(
            allow_networks=self.settings.fetch_allow_networks,
            max_bytes=min(self.settings.capture_max_media_bytes, self.bytes_left),
            timeout=min(self.settings.fetch_timeout_seconds, remaining),
            max_redirects=self.settings.fetch_max_redirects,
            user_agent=self.settings.capture_user_agent,
            verify=self.verify,
        )
        fetched = fetcher.fetch(url, headers={"referer": referer} if referer else None)
        self.bytes_left -= len(fetched.body)
        return fetched


def _data_url(url: str, limit: int) -> bytes:
    """The bytes of a ``data:`` URL (inline media: nothing to fetch)."""
    header, comma, payload = url[5:].partition(",")
    if not comma:
        raise FetchError("a data: URL without data")
    if len(payload) > limit * 4 // 3 + 4:
        raise FetchRefused(f"refused: the data: URL is over the {limit}-byte limit")
    try:
        if header.lower().endswith(";base64"):
            return base64.b64decode(unquote_to_bytes(payload), validate=False)
        return unquote_to_bytes(payload)
    except ValueError as exc:
        raise FetchError(f"a data: URL that does not decode: {exc}") from None


def _shown_url(url: str, size: int | None = None) -> str:
    """How a media URL is recorded: credentials masked, inline data summarised, within the column."""
    if url.startswith("data:"):
        kind = url[5:].split(",", 1)[0][:60]
        return f"data:{kind},…" + (f" ({size} bytes)" if size is not None else "")
    return redact_url(url)[:2048]


def _headers(pairs: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Response headers to keep: no cookies, each value and their number capped."""
    kept: dict[str, str] = {}
    for name, value in pairs:
        key = name.lower()[:100]
        if key in ("set-cookie", "set-cookie2"):
            continue
        if key not in kept and len(kept) >= MAX_HEADERS:
            continue
        joined = f"{kept[key]}, {value}" if key in kept else value
        kept[key] = joined if len(joined) <= MAX_HEADER_VALUE else joined[: MAX_HEADER_VALUE - 1] + "…"
    return kept


# ---------------------------------------------------------------- examining media


@dataclass
class Media:
    """One fetched file that is media: its hashes, what it is, and its thumbnail."""

    url: str
    found_as: str
    data: bytes
    hashed: dict[str, Any]
    media: str  # image, video
    mime: str
    thumbnail: bytes | None

    @property
    def sha256(self) -> str:
        return str(self.hashed["sha256"])


def _hash_everything(path: Any) -> dict[str, Any]:
    """Every signal type's value: the built-ins must succeed; a plugin that cannot hash this file is
    logged and left out (the item is kept all the same)."""
    from seawall.signals.base import signal_types
    from seawall.signals.hashing import DEFAULT_SIGNALS, hash_file

    hashed = hash_file(path, DEFAULT_SIGNALS, dihedral=True, regions=True)
    for name in signal_types():
        if name not in DEFAULT_SIGNALS:
            try:
                hashed.update({k: v for k, v in hash_file(path, [name]).items() if k not in ("path", "media")})
            except MediaError as exc:
                log.warning("signal %s could not hash a captured file: %s", name, exc.reason)
    hashed.pop("path", None)
    return hashed


def examine(settings: Settings, data: bytes, url: str, found_as: str, *, thumbnail: bool = True) -> Media:
    """Hash and render a fetched file; MediaError when it is not media Seawall keeps (the reason says
    why: not an image or video, too small to assess, over a limit, corrupt)."""
    from PIL import Image

    from seawall.media import video
    from seawall.media.image import open_image
    from seawall.media.memfile import memory_file
    from seawall.media.render import blurred_thumbnail
    from seawall.signals.hashing import detect_media

    label = _shown_url(url)
    with memory_file(data, fallback_dir=settings.home / "tmp") as path:
        try:
            media = detect_media(path)
        except MediaError as exc:
            raise MediaError(label, exc.reason) from None
        if media == "image":
            with open_image(path, name=label) as img:
                width, height = img.size
                mime = Image.MIME.get(img.format or "", "image/" + (img.format or "unknown").lower())
            if min(width, height) < settings.capture_min_image_side:
                raise MediaError(label, f"too small to assess ({width}x{height} pixels)")
        else:
            mime = video.MIME_TYPES.get(video.container_of(path) or "", "video/unknown")
        try:
            hashed = _hash_everything(path)
        except MediaError as exc:
            raise MediaError(label, exc.reason) from None
        rendered = None
        if thumbnail:
            try:
                rendered = blurred_thumbnail(
                    path, media, size=settings.thumbnail_size, blur=settings.thumbnail_blur, name=label
                )
            except MediaError as exc:  # kept without a thumbnail: the console shows a placeholder
                log.warning("no thumbnail for %s: %s", label, exc.reason)
    return Media(url, found_as, data, hashed, media, mime, rendered)


# ---------------------------------------------------------------- matching


_indexes: dict[str, MatchIndexes] = {}
_indexes_lock = threading.Lock()


def read_sessions(factory: sessionmaker[Session]) -> sessionmaker[Session]:
    """Sessions for reading only on the same database (on SQLite, without taking the write lock)."""
    bind = factory.kw["bind"]
    return make_sessionmaker(bind.execution_options(sqlite_immediate=False), writes=False)


def match_indexes(factory: sessionmaker[Session], settings: Settings) -> MatchIndexes:
    """This process's list indexes for the database (built once, then kept current by refreshes)."""
    key = factory.kw["bind"].url.render_as_string(hide_password=False)
    with _indexes_lock:
        indexes = _indexes.get(key)
        if indexes is None:
            indexes = _indexes[key] = MatchIndexes(read_sessions(factory), folder=settings.home / "index")
    indexes.refresh(max_age=0.0)  # list changes committed before this capture are seen by it
    return indexes


def close_indexes() -> None:
    """Stop and forget this process's indexes (tests; a worker keeps them while it lives)."""
    with _indexes_lock:
        for indexes in _indexes.values():
            indexes.stop()
        _indexes.clear()


def _matches(session: Session, indexes: Any, settings: Settings, hashed: dict[str, Any]) -> list[dict[str, Any]]:
    from seawall.matching import service

    query = service.Query.from_hash(hashed)
    hits = service.find_hits(session, indexes, query, settings)
    return service.decide_hits(session, indexes, [hits], [query.media])[0].matches


# ---------------------------------------------------------------- inheriting assessments


def _insert(session: Session) -> Any:
    return pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert


# ---------------------------------------------------------------- keeping items


@dataclass
class _Kept:
    item_id: int
    new: bool
    inherited: bool


def _keep_item(
    factory: sessionmaker[Session],
    settings: Settings,
    media: Media,
    matches: list[dict[str, Any]],
    case_id: int,
    capture_id: int,
    indexes: MatchIndexes | None,
) -> _Kept:
    """The item of this content (made if new), its evidence and thumbnail (stored once), and the
    case's link to it (made once); a new item inherits a known assessment (never queued for an
    analyst again). Each write transaction is short; encryption happens between them."""
    hashed = media.hashed
    trimmed = lists_service.trimmed_of(hashed)
    with factory() as session:
        values = {
            "sha256": media.sha256,
            "md5": hashed["md5"],
            "sha1": hashed["sha1"],
            "pdq": hashed.get("pdq"),
            "pdq_quality": hashed.get("pdq_quality"),
            "pdq_trimmed": trimmed[0] if trimmed else None,
            "pdq_trimmed_box": list(trimmed[1]) if trimmed else None,
            "media": media.media,
            "mime": media.mime[:100],
            "size": len(media.data),
            "state": "to_grade",
            "matches": matches,
            "first_seen_at": utcnow(),
        }
        created = session.execute(
            _insert(session)(Item).values(**values).on_conflict_do_nothing(index_elements=["sha256"]).returning(Item.id)
        ).scalar_one_or_none()
        item = session.scalars(select(Item).where(Item.sha256 == media.sha256)).one()
        item_id, need_original = item.id, item.evidence_id is None
        need_thumbnail = item.thumbnail_id is None and media.thumbnail is not None
        session.commit()
    subject = f"item:{item_id}"
    original = (
        evidence.seal(settings, media.data, media_type=media.mime, purpose="capture", subject=subject)
        if need_original
        else None
    )
    thumbnail = (
        evidence.seal(settings, media.thumbnail, media_type="image/jpeg", purpose="thumbnail", subject=subject)
        if need_thumbnail and media.thumbnail is not None
        else None
    )
    unused = []
    with factory() as session:
        locked = session.get(Item, item_id, with_for_update=True)
        assert locked is not None  # items are never deleted while cases point at them
        if original is not None:
            if locked.evidence_id is None:
                locked.evidence_id = evidence.record(session, original).id
            else:
                unused.append(original)
        if thumbnail is not None:
            if locked.thumbnail_id is None:
                locked.thumbnail_id = evidence.record(session, thumbnail).id
            else:
                unused.append(thumbnail)
        session.execute(
            _insert(session)(CaseItem)
            .values(
                case_id=case_id,
                item_id=item_id,
                capture_id=capture_id,
                media_url=_shown_url(media.url, len(media.data)),
                found_as=media.found_as,
                added_at=utcnow(),
            )
            .on_conflict_do_nothing(index_elements=["case_id", "item_id"])
        )
        # Once linked to its case (inheriting recomputes the case's assessment): the rules of
        # inheritance are the assessment domain's, one place for capture and confirmation alike.
        inherited = created is not None and (
            assessment.inherit_if_known(session, settings, SYSTEM, locked, indexes=indexes) is not None
        )
        session.commit()
    for sealed in unused:  # another capture stored this content a moment ago: ours is not needed
        evidence.discard(settings, sealed)
    return _Kept(item_id, created is not None, inherited)


# ---------------------------------------------------------------- the capture


def _start(
    factory: sessionmaker[Session], settings: Settings, case_id: int, purpose: str, notice_id: int | None
) -> tuple[Capture | None, str]:
    """A new running Capture of the case (None if an initial capture of it is running already)."""
    with factory() as session:
        case = session.get(Case, case_id, with_for_update=True)
        if case is None:
            raise CaptureError(f"no case {case_id}")
        if case.kind != "url" or not case.url:
            raise CaptureError(f"case {case.reference} has no URL to capture")
        now = utcnow()
        if purpose == "initial":
            lease = timedelta(seconds=settings.capture_timeout_seconds + LEASE_MARGIN_SECONDS)
            running = session.scalars(
                select(Capture).where(
                    Capture.case_id == case_id, Capture.purpose == "initial", Capture.state == "running"
                )
            ).all()
            for other in running:
                if other.started_at > now - lease:
                    return None, case.url
                other.state, other.finished_at = "failed", now
                other.error = other.error or "interrupted: the capture stopped before it finished"
        capture = Capture(case_id=case_id, purpose=purpose, notice_id=notice_id, state="running", started_at=now)
        session.add(capture)
        session.commit()
        return capture, case.url


def _record_page(factory: sessionmaker[Session], capture_id: int, fetched: Fetched, fetched_at: Any) -> None:
    with factory() as session:
        capture = session.get(Capture, capture_id)
        assert capture is not None
        capture.final_url = fetched.url[:2048]
        capture.redirects = [r[:2048] for r in fetched.redirects]
        capture.http_status = fetched.status
        capture.headers = _headers(fetched.headers)
        capture.address = fetched.address
        capture.tls = fetched.tls
        capture.fetched_at = fetched_at
        session.commit()


def _fail(factory: sessionmaker[Session], capture_id: int, error: str) -> None:
    try:
        with factory() as session:
            capture = session.get(Capture, capture_id)
            if capture is not None and capture.state == "running":
                capture.state, capture.error, capture.finished_at = "failed", error[:2000], utcnow()
                session.commit()
    except Exception:  # the database may be what failed: the stale lease covers this capture then
        log.exception("could not record capture %s as failed", capture_id)


def _candidates(page: Fetched) -> Iterator[tuple[pages.Candidate, bytes | None]]:
    """The page itself when its bytes are media, else what its HTML shows and links."""
    from seawall.media import video
    from seawall.media.image import open_image

    media = video.is_video(page.body)
    if not media:
        try:
            open_image(page.body).close()
            media = True
        except MediaError as exc:  # an image refused for its size is still media: examine() says why
            media = exc.reason not in ("not a supported image format", "empty file (0 bytes)")
    if media:
        yield pages.Candidate(page.url, "direct"), page.body
        return
    html = pages.decode_html(page.body, page.content_type)
    for candidate in pages.find_media(html, page.url):
        yield candidate, None


def _fetch_media(
    candidates: Iterator[tuple[pages.Candidate, bytes | None]],
    budget: _Budget,
    page_url: str,
    skipped: list[dict[str, str]],
) -> Iterator[tuple[pages.Candidate, bytes]]:
    """Each candidate's bytes, within the limits; what could not be had is noted in ``skipped``."""
    over = 0
    for candidate, body in candidates:
        if body is not None:
            yield candidate, body
            continue
        if budget.media_left <= 0:
            over += 1
            continue
        budget.media_left -= 1
        try:
            if candidate.url.startswith("data:"):
                inline = _data_url(candidate.url, min(budget.settings.capture_max_media_bytes, budget.bytes_left))
                budget.bytes_left -= len(inline)
                yield candidate, inline
                continue
            fetched = budget.fetch(candidate.url, referer=page_url)
        except FetchError as exc:
            _skip(skipped, candidate, str(exc))
            continue
        if not 200 <= fetched.status < 300:
            _skip(skipped, candidate, f"HTTP {fetched.status}")
            continue
        yield candidate, fetched.body
    if over:
        limit = budget.settings.capture_max_media
        skipped.append({"url": "", "found_as": "", "reason": f"{over} more not fetched: over the limit of {limit}"})


def _skip(skipped: list[dict[str, str]], candidate: pages.Candidate, reason: str) -> None:
    if len(skipped) < MAX_SKIPPED:
        skipped.append({"url": _shown_url(candidate.url), "found_as": candidate.found_as, "reason": reason[:500]})


def run_capture(
    factory: sessionmaker[Session],
    settings: Settings,
    case_id: int,
    *,
    purpose: str = "initial",
    notice_id: int | None = None,
    actor: Principal = SYSTEM,
    verify: Any = True,
) -> CaptureResult:
    """Capture a case's page (``purpose="initial"``) or re-check it (``"recheck"``, for a notice).

    ``factory`` makes write sessions. ``verify``: the TLS trust for https (tests pass their own CA).
    An exception midway marks the capture failed and propagates; running it again is safe."""
    if purpose not in ("initial", "recheck"):
        raise ValueError(f"purpose is initial or recheck, not {purpose!r}")
    capture, url = _start(factory, settings, case_id, purpose, notice_id)
    if capture is None:
        return CaptureResult(case_id, purpose, "busy", error="another capture of this case is running")
    result = CaptureResult(case_id, purpose, "running", capture_id=capture.id)
    try:
        _run(factory, settings, url, capture.id, result, verify)
        _finish(factory, settings, capture.id, result, actor)
    except BaseException as exc:
        _fail(factory, capture.id, f"{type(exc).__name__}: {exc}")
        raise
    return result


def _run(
    factory: sessionmaker[Session], settings: Settings, url: str, capture_id: int, result: CaptureResult, verify: Any
) -> None:
    budget = _Budget(settings, verify)
    try:
        page = budget.fetch(url)
    except FetchUnreachable as exc:
        result.state, result.error = "gone", str(exc)
        return
    except FetchError as exc:
        result.state, result.error = "failed", str(exc)
        return
    _record_page(factory, capture_id, page, utcnow())
    result.http_status, result.final_url = page.status, page.url
    if page.status in GONE_STATUSES:
        result.state = "gone"
        return
    if not 200 <= page.status < 300:
        result.state, result.error = "failed", f"the page answered HTTP {page.status}"
        return
    recheck = result.purpose == "recheck"
    indexes = None if recheck else match_indexes(factory, settings)
    reader = read_sessions(factory)
    seen: list[Media] = []
    for candidate, body in _fetch_media(_candidates(page), budget, page.url, result.skipped):
        try:
            media = examine(settings, body, candidate.url, candidate.found_as, thumbnail=not recheck)
        except MediaError as exc:
            _skip(result.skipped, candidate, exc.reason)
            continue
        if media.sha256 not in result.media_sha256:
            result.media_sha256.append(media.sha256)
        if recheck:
            seen.append(media)
            continue
        with reader() as session:
            matches = _matches(session, indexes, settings, media.hashed)
        kept = _keep_item(factory, settings, media, matches, result.case_id, capture_id, indexes)
        if kept.item_id not in result.items:
            result.items.append(kept.item_id)
        if kept.new:
            result.new_items.append(kept.item_id)
        if kept.inherited:
            result.inherited.append(kept.item_id)
    if recheck:
        with reader() as session:
            _compare(session, result, seen)
    result.state = "done"


def _compare(session: Session, result: CaptureResult, seen: list[Media]) -> None:
    """Which of the case's items the re-check found again: the same SHA-256, or for images a PDQ
    within the threshold (a re-encoded copy is the same picture)."""
    from seawall.signals.base import get_signal_type

    pdq = get_signal_type("pdq")
    items = session.execute(
        select(Item.id, Item.sha256, Item.pdq, Item.pdq_quality)
        .join(CaseItem, CaseItem.item_id == Item.id)
        .where(CaseItem.case_id == result.case_id)
        .order_by(Item.id)
    ).all()
    result.case_items = [row.id for row in items]
    shas = {m.sha256 for m in seen}
    pdqs = [m.hashed["pdq"] for m in seen if m.hashed.get("pdq") and m.hashed.get("pdq_quality", 0) >= MIN_PDQ_QUALITY]
    for row in items:
        near = (
            row.pdq is not None
            and (row.pdq_quality or 0) >= MIN_PDQ_QUALITY
            and any(pdq.matches(row.pdq, other) for other in pdqs)
        )
        if row.sha256 in shas or near:
            result.present_items.append(row.id)


def _finish(
    factory: sessionmaker[Session], settings: Settings, capture_id: int, result: CaptureResult, actor: Principal
) -> None:
    trace = None
    address = None
    with read_sessions(factory)() as session:
        capture = session.get(Capture, capture_id)
        address = capture.address if capture is not None else None
    if result.purpose == "initial" and address:
        try:
            trace = tracing.trace_address(settings, address)  # may look things up: outside any transaction
        except Exception:
            log.exception("tracing %s failed", address)
    with factory() as session:
        capture = session.get(Capture, capture_id)
        case = session.get(Case, result.case_id, with_for_update=True)
        assert capture is not None and case is not None
        capture.state = result.state
        capture.error = result.error[:2000]
        capture.finished_at = utcnow()
        capture.media_found = len(result.items) if result.purpose == "initial" else len(result.media_sha256)
        capture.media_sha256 = list(result.media_sha256)
        capture.skipped = list(result.skipped)
        if result.purpose == "initial" and result.state in ("done", "gone"):
            if case.state == "open":
                case.state = "captured"
            if trace is not None:
                domain = urlsplit(capture.final_url or case.url or "").hostname
                host = tracing.host_for(session, trace.asn, domain)
                case.hosting_ip = trace.address
                case.hosting_asn = trace.asn
                case.hosting_as_name = trace.as_name
                case.hosting_country = trace.country
                case.hosting_behind_cdn = trace.behind_cdn
                case.host_id = host.id if host is not None else None
            case.version += 1
            case.updated_at = utcnow()
        audit.record(
            session,
            actor,
            "case.capture" if result.purpose == "initial" else "case.recheck",
            "case",
            case.id,
            {
                "capture": capture_id,
                "state": result.state,
                "http_status": result.http_status,
                "items": result.items,
                "new_items": result.new_items,
                "inherited": result.inherited,
                "present_items": result.present_items,
                "skipped": len(result.skipped),
            },
        )
        session.commit()
