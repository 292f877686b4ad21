"""The ``stopncii`` exchange: StopNCII.org's hash exchange (JSON over HTTPS, Azure API keys).

``GET {base}/FetchHashes?startTimestamp=…&pageSize=…[&nextPageToken=…]`` answers
``{count, nextPageToken, nextSetTimestamp, hasMoreRecords, hashRecords: [{lastModtimestamp,
signalType, hashValue, hashStatus, caseNumbers, CSPFeedbacks}]}``; every request carries the
``Ocp-Apim-Subscription-Key`` header and the endpoint's ``x-functions-key``. A record is the hash's
current state: ``Withdrawn`` or ``Deleted`` retracts it. The checkpoint is the start timestamp plus
the page token within it; when a range is exhausted ``nextSetTimestamp`` becomes the new start.
Feedback: ``POST {base}/SubmitFeedback`` with ``{count, hashFeedbacks: [{hashValue, feedbackValue,
tags}]}`` (``Blocked`` for a true positive, ``NotBlocked`` for a false one).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from pydantic import SecretStr

from seawall.lists.exchanges.base import (
    Batch,
    ExchangeConfig,
    ExchangeError,
    ExchangeType,
    FeedbackItem,
    FeedbackOutcome,
    Retraction,
    json_body,
    whole_number,
)
from seawall.lists.records import EntryRecord

#: StopNCII signal types Seawall can match; the others (VideoTMK, Text, URL) are skipped.
SIGNAL_TYPES = {"ImagePDQ": "pdq", "VideoMD5": "md5"}
WITHDRAWN = {"Withdrawn", "Deleted"}
VERDICTS = {"true_positive": "Blocked", "false_positive": "NotBlocked"}


class StopNCIIConfig(ExchangeConfig):
    base_url: str = "https://api.stopncii.org/v1"
    subscription_key: SecretStr
    fetch_function_key: SecretStr
    feedback_function_key: SecretStr | None = None  # without it no feedback is sent
    page_size: int = 800
    start_timestamp: int = 10


class StopNCIIExchange(ExchangeType[StopNCIIConfig]):
    name = "stopncii"
    description = "StopNCII.org hash exchange: PDQ and MD5 hashes submitted by people, with CSP feedback."
    Config = StopNCIIConfig
    supports_feedback = True

    def feedback_enabled(self) -> bool:
        return self.config.feedback_function_key is not None

    def _headers(self, function_key: SecretStr) -> dict[str, str]:
        return {
            "Ocp-Apim-Subscription-Key": self.config.subscription_key.get_secret_value(),
            "x-functions-key": function_key.get_secret_value(),
        }

    def fetch(self, checkpoint: dict[str, Any] | None) -> Iterator[Batch]:
        cp = checkpoint or {}
        start = int(cp.get("start", self.config.start_timestamp))
        token = str(cp.get("next_page") or "")
        url = f"{self.config.base_url.rstrip('/')}/FetchHashes"
        while True:
            params: dict[str, Any] = {"startTimestamp": start, "pageSize": self.config.page_size}
            if token:
                params["nextPageToken"] = token
            response = self.client.get(url, params=params, headers=self._headers(self.config.fetch_function_key))
            if response.status_code != 200:
                raise ExchangeError(f"FetchHashes answered {response.status_code}")
            page = json_body(response, "FetchHashes")
            try:
                batch = Batch()
                for record in page["hashRecords"]:
                    self._record(record, batch)
                more = bool(page["hasMoreRecords"])
                token = str(page.get("nextPageToken") or "")
                next_start = whole_number(page["nextSetTimestamp"], "FetchHashes' nextSetTimestamp")
            except (KeyError, TypeError, ValueError, AttributeError) as exc:
                raise ExchangeError(f"malformed FetchHashes page: {exc!r}") from None
            if more and not token:
                raise ExchangeError("FetchHashes says there is more but gives no page token")
            batch.checkpoint = {"start": start, "next_page": token} if more else {"start": next_start, "next_page": ""}
            yield batch
            if not more:
                return

    @staticmethod
    def _record(record: dict[str, Any], batch: Batch) -> None:
        if not isinstance(record, dict):
            raise TypeError(f"a hash record is an object, not {type(record).__name__}")
        signal_type = SIGNAL_TYPES.get(str(record["signalType"]))
        value = str(record["hashValue"])
        if signal_type is None:
            return
        if str(record.get("hashStatus")) in WITHDRAWN:
            batch.retractions.append(Retraction(signal_type=signal_type, value=value))
            return
        batch.upserts.append(EntryRecord(signal_type=signal_type, value=value, labels=("stopncii",)))

    def send_feedback(self, items: Sequence[FeedbackItem]) -> FeedbackOutcome:
        key = self.config.feedback_function_key
        if key is None:
            return {}
        outcome: FeedbackOutcome = {i.opinion_id: "skipped" for i in items if i.verdict not in VERDICTS}
        wanted = [i for i in items if i.verdict in VERDICTS]
        if wanted:
            payload = {
                "count": len(wanted),
                "hashFeedbacks": [
                    {"hashValue": i.value, "feedbackValue": VERDICTS[i.verdict], "tags": []} for i in wanted
                ],
            }
            url = f"{self.config.base_url.rstrip('/')}/SubmitFeedback"
            response = self.client.post(url, json=payload, headers=self._headers(key))
            if response.status_code not in (200, 201, 204):
                raise ExchangeError(f"SubmitFeedback answered {response.status_code}")
            outcome.update({i.opinion_id: "sent" for i in wanted})
        return outcome
