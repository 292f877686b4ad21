"""The ``ncmec`` exchange: NCMEC's Hash Sharing API v2 (XML over HTTPS, HTTP basic auth).

``GET {base}/v2/entries?from=…&to=…`` answers ``<queryResult>`` with ``<images>``/``<videos>``
holding ``<image>``/``<video>`` entries (id, member, classification, fingerprints md5/sha1/pdna/pdq)
and ``<deletedImage>``/``<deletedVideo>`` for withdrawn ones, and ``<paging><next>`` naming the
next page. NCMEC does not order entries by time within a range, so the checkpoint is the range
being read plus the next page's path; only when a range is read to its end does ``from`` move on.
Feedback: ``PUT {base}/v2/entries/{id}/fingerprints/{type}/feedback`` with a ``<feedbackSubmission>``
(affirmative, or negative with reason GUIDs from ``GET {base}/v2/feedback/reasons``).
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import defusedxml.ElementTree as SafeET
from pydantic import SecretStr

from seawall.lists.exchanges.base import (
    Batch,
    ExchangeConfig,
    ExchangeError,
    ExchangeType,
    FeedbackItem,
    FeedbackOutcome,
    Retraction,
)
from seawall.lists.records import EntryRecord

NAMESPACE = "https://hashsharing.ncmec.org/hashsharing/v2"
_DATE = "%Y-%m-%dT%H:%M:%SZ"
#: NCMEC fingerprint element -> Seawall signal type (PhotoDNA only when a plugin provides it).
FINGERPRINTS = {"md5": "md5", "sha1": "sha1", "pdq": "pdq", "pdna": "photodna"}


class NCMECConfig(ExchangeConfig):
    base_url: str = "https://report.cybertip.org/hashsharing"  # the environment (industry, NGO, test…)
    username: str
    password: SecretStr
    start_timestamp: int = 0  # the first sync reads entries changed since then (Unix seconds)
    negative_reason_id: str | None = None  # GUID for false-positive feedback; else the first offered


def _date(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime(_DATE)


def _strip(element: ET.Element) -> ET.Element:
    for node in element.iter():
        node.tag = node.tag.rpartition("}")[2]
    return element


class NCMECExchange(ExchangeType[NCMECConfig]):
    name = "ncmec"
    description = "NCMEC Hash Sharing API v2: entries by time range, deletions, and feedback."
    Config = NCMECConfig
    supports_feedback = True

    def _auth(self) -> tuple[str, str]:
        return (self.config.username, self.config.password.get_secret_value())

    def _get_xml(self, url: str, params: dict[str, str] | None = None) -> ET.Element:
        response = self.client.get(url, params=params, auth=self._auth())
        if response.status_code != 200:
            raise ExchangeError(f"GET {url.split('?')[0]} answered {response.status_code}")
        try:
            return _strip(SafeET.fromstring(response.content))
        except (ET.ParseError, ValueError, LookupError) as exc:  # LookupError: an unknown declared encoding
            raise ExchangeError(f"NCMEC answered malformed XML: {exc}") from None

    def fetch(self, checkpoint: dict[str, Any] | None) -> Iterator[Batch]:
        from seawall.signals.base import signal_types

        known = signal_types()
        cp = checkpoint or {}
        start = int(cp.get("from", self.config.start_timestamp))
        end = int(cp.get("to") or time.time())
        next_path = str(cp.get("next") or "")
        base = self.config.base_url.rstrip("/")
        while True:
            if next_path:
                if not next_path.startswith("/"):
                    raise ExchangeError(f"unexpected paging link {next_path[:80]!r}")
                root = self._get_xml(base + next_path)
            else:
                root = self._get_xml(f"{base}/v2/entries", {"from": _date(start), "to": _date(end)})
            if root.tag != "queryResult":
                raise ExchangeError(f"expected <queryResult>, got <{root.tag}>")
            batch = Batch()
            for group in (root.find("images"), root.find("videos")):
                for node in group if group is not None else ():
                    self._entry(node, known, batch)
            next_path = (root.findtext("paging/next") or "").strip()
            if next_path:
                batch.checkpoint = {"from": start, "to": end, "next": next_path}
            else:
                batch.checkpoint = {"from": end, "to": None, "next": ""}
            yield batch
            if not next_path:
                return

    @staticmethod
    def _entry(node: ET.Element, known: dict[str, Any], batch: Batch) -> None:
        entry_id = (node.findtext("id") or "").strip()
        if not entry_id:
            batch.errors.append(f"<{node.tag}> without an id")
            return
        if node.tag.startswith("deleted"):
            batch.retractions.append(Retraction(external_id=entry_id))
            return
        kind = node.tag  # image or video
        member = node.find("member")
        labels = [f"ncmec:{kind}"]
        if member is not None and member.get("id"):
            labels.append(f"ncmec-member:{member.get('id')}")
        classification = (node.findtext("classification") or "").strip() or None
        for fingerprint in node.find("fingerprints") or ():
            signal_type = FINGERPRINTS.get(fingerprint.tag.lower())
            value = (fingerprint.text or "").strip()
            if not value or signal_type is None or signal_type not in known:
                continue  # a link to a large fingerprint, or a type this install cannot match
            batch.upserts.append(
                EntryRecord(
                    signal_type=signal_type,
                    value=value,
                    category=classification,
                    labels=tuple(labels),
                    external_id=entry_id,
                )
            )

    # ---- feedback -------------------------------------------------------------------------

    def _negative_reason(self) -> str:
        if self.config.negative_reason_id:
            return self.config.negative_reason_id
        root = self._get_xml(f"{self.config.base_url.rstrip('/')}/v2/feedback/reasons")
        for reason in root.iter("reason"):
            if reason.get("guid"):
                return str(reason.get("guid"))
        raise ExchangeError("NCMEC offers no feedback reasons; set negative_reason_id")

    def send_feedback(self, items: Sequence[FeedbackItem]) -> FeedbackOutcome:
        outcome: FeedbackOutcome = {}
        reverse = {v: k for k, v in FINGERPRINTS.items()}
        negative_reason: str | None = None
        for item in items:
            fingerprint = reverse.get(item.signal_type)
            if item.verdict not in ("true_positive", "false_positive") or fingerprint is None or not item.external_id:
                outcome[item.opinion_id] = "skipped"  # NCMEC takes up- and down-votes on its own entries only
                continue
            root = ET.Element("feedbackSubmission", xmlns=NAMESPACE)
            if item.verdict == "true_positive":
                ET.SubElement(root, "affirmative")
            else:
                negative_reason = negative_reason or self._negative_reason()
                ids = ET.SubElement(ET.SubElement(root, "negative"), "reasonIds")
                ET.SubElement(ids, "guid").text = negative_reason
            body = b'<?xml version="1.0" encoding="UTF-8"?>' + ET.tostring(root)
            url = (
                f"{self.config.base_url.rstrip('/')}/v2/entries/{item.external_id}/fingerprints/{fingerprint}/feedback"
            )
            response = self.client.put(
                url, content=body, headers={"content-type": "application/xml"}, auth=self._auth()
            )
            if response.status_code not in (200, 201, 204):
                if outcome:
                    return outcome
                raise ExchangeError(f"PUT feedback for {item.external_id} answered {response.status_code}")
            outcome[item.opinion_id] = "sent"
        return outcome
