"""The ``seawall`` exchange: follow another Seawall instance's list feed (hotlines and platforms federating).

The checkpoint is the source list's revision and identity (``list_uid``). Each feed page becomes
one batch: adds, updates and status changes (retractions included) are mirrored as the entry stands
at the source. A deleted source list's feed ends with the retraction of every entry. When the name
comes to mean another list (the old one deleted, a new one created), the new list is read from its
start as a snapshot, so whatever the old one brought and the new one lacks is retracted. Opinions
on mirrored entries go back to the source's opinions endpoint, the entry found by value and
external id.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import quote

import httpx
from pydantic import SecretStr

from seawall.lists.exchanges.base import (
    Batch,
    ExchangeConfig,
    ExchangeError,
    ExchangeType,
    FeedbackItem,
    FeedbackOutcome,
    json_body,
    whole_number,
)
from seawall.lists.records import EntryRecord


class SeawallFeedConfig(ExchangeConfig):
    base_url: str  # e.g. https://hotline.example.org
    list: str  # the list's name at the source
    api_key: SecretStr  # a key with lists:read on that list (lists:write too, to send opinions)
    page_size: int = 1000


def _detail(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    return str(body.get("detail", body)) if isinstance(body, dict) else str(body)[:200]


def _text(entry: dict[str, Any], key: str, default: str | None = None) -> str | None:
    value = entry.get(key, default)
    if value is not None and not isinstance(value, str):
        raise TypeError(f"entry {key} is {type(value).__name__}, not text")
    return value


def _record(entry: Any) -> EntryRecord:
    """A feed entry as a record; TypeError/KeyError for an entry of another shape (a feed page is
    Seawall's own JSON: anything else means the source is not what it should be)."""
    if not isinstance(entry, dict):
        raise TypeError(f"an entry is an object, not {type(entry).__name__}")
    labels = entry.get("labels") or []
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
        raise TypeError("entry labels are a list of text")
    signal_type, value = _text(entry, "signal_type"), _text(entry, "value")
    if signal_type is None or value is None:
        raise KeyError("signal_type" if signal_type is None else "value")
    return EntryRecord(
        signal_type=signal_type,
        value=value,
        category=_text(entry, "category"),
        labels=tuple(labels),
        external_id=_text(entry, "external_id") or None,
        note=_text(entry, "note") or None,
        status=_text(entry, "status", "active") or "active",
        level=_text(entry, "level"),
    )


class SeawallFeedExchange(ExchangeType[SeawallFeedConfig]):
    name = "seawall"
    description = "Another Seawall instance's list feed (/v1/lists/{name}/feed), with opinions sent back."
    Config = SeawallFeedConfig
    supports_feedback = True

    def _url(self, path: str) -> str:
        return f"{self.config.base_url.rstrip('/')}/v1/lists/{quote(self.config.list, safe='')}{path}"

    def _headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.config.api_key.get_secret_value()}", "accept": "application/json"}

    def _get(self, path: str, params: dict[str, Any]) -> dict[str, Any]:
        response = self.client.get(self._url(path), params=params, headers=self._headers())
        if response.status_code != 200:
            raise ExchangeError(f"GET {path} answered {response.status_code}: {_detail(response)}")
        body = json_body(response, f"GET {path}")
        if not isinstance(body, dict):
            raise ExchangeError(f"GET {path} answered an unexpected shape")
        return body

    def fetch(self, checkpoint: dict[str, Any] | None) -> Iterator[Batch]:
        since = int((checkpoint or {}).get("revision", 0))
        known_uid = (checkpoint or {}).get("list_uid")
        snapshot = False
        first = True
        while True:
            page = self._get("/feed", {"since": since, "limit": self.config.page_size})
            uid = page.get("list_uid")
            if first and known_uid and uid and uid != known_uid and since:
                # Another list under the same name: read it whole, as a snapshot of what to keep.
                since, snapshot = 0, True
                page = self._get("/feed", {"since": 0, "limit": self.config.page_size})
            try:
                changes = page["changes"]
                next_since = whole_number(page["next_since"], "the feed's next_since")
                more = bool(page["more"])
                records = {}
                for change in changes:
                    if not isinstance(change, dict):
                        raise TypeError(f"a change is an object, not {type(change).__name__}")
                    entry = change.get("entry")
                    if change.get("op") == "list" or not entry:
                        continue
                    record = _record(entry)
                    # The feed shows each entry as it stands now: the last change of an entry wins.
                    records[(record.signal_type, record.value, record.external_id)] = record
            except (KeyError, TypeError, ValueError) as exc:
                raise ExchangeError(f"malformed feed page after revision {since}: {exc!r}") from None
            if next_since < since:
                raise ExchangeError(f"the feed went backwards ({next_since} after {since})")
            last = not more or not changes
            # Mid-snapshot the old identity is kept: a sync killed now starts the snapshot again.
            identity = known_uid if snapshot and not last else uid
            yield Batch(
                upserts=list(records.values()),
                checkpoint={"revision": next_since, **({"list_uid": identity} if identity else {})},
                snapshot_begin=snapshot and first,
                snapshot_end=snapshot and last,
            )
            first = False
            since = next_since
            if last:
                return

    def _find_remote(self, item: FeedbackItem) -> int | None:
        page = self._get("/entries", {"value_prefix": item.value, "signal_type": item.signal_type, "limit": 1000})
        for entry in page.get("entries", []):
            if entry.get("value") == item.value and (entry.get("external_id") or "") == item.external_id:
                return int(entry["id"])
        return None

    def send_feedback(self, items: Sequence[FeedbackItem]) -> FeedbackOutcome:
        outcome: FeedbackOutcome = {}
        for item in items:
            remote_id = self._find_remote(item)
            if remote_id is None:
                outcome[item.opinion_id] = "skipped"  # gone at the source: nobody to tell
                continue
            response = self.client.post(
                self._url(f"/entries/{remote_id}/opinions"),
                json={"verdict": item.verdict, "comment": item.comment},
                headers=self._headers(),
            )
            if response.status_code not in (200, 201):
                # Stop here: what was sent so far is reported, the rest stays pending.
                if outcome:
                    return outcome
                raise ExchangeError(f"POST opinion answered {response.status_code}: {_detail(response)}")
            outcome[item.opinion_id] = "sent"
        return outcome
