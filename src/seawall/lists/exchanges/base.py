"""The exchange interface and registry.

An exchange type is one small class: a pydantic ``Config`` for its settings, ``fetch(checkpoint)``
yielding :class:`Batch` objects (records to add or update, retractions, and the checkpoint to
store once the batch is applied), and optionally ``send_feedback``. Built-ins are listed below;
plugins register through the entry-point group ``seawall.exchanges``, each entry point naming an
:class:`ExchangeType` subclass whose ``name`` equals the entry point's name::

    [project.entry-points."seawall.exchanges"]
    myhotline = "my_package.exchange:MyHotlineExchange"
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, ClassVar, Final, Generic, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, SecretStr, ValidationError

from seawall.config import Settings
from seawall.fetch import AddressRules, safe_client
from seawall.lists.records import EntryRecord
from seawall.redact import redact_url
from seawall.secrets import decrypt_secret, encrypt_secret

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP: Final = "seawall.exchanges"
MASK: Final = "********"
#: How a stored secret begins: the rest is its encryption under the instance's key (seawall.secrets).
SEALED: Final = "sealed:"


class ExchangeError(RuntimeError):
    """The source answered something we cannot use (bad status, malformed page); the sync stops."""


def json_body(response: httpx.Response, what: str) -> Any:
    """The response's JSON; ExchangeError when it is not JSON (or nests too deeply to read)."""
    try:
        return response.json()
    except (ValueError, RecursionError):
        raise ExchangeError(f"{what} answered something other than JSON") from None


def whole_number(value: Any, what: str) -> int:
    """``value`` (a JSON number or digits) as an int; ExchangeError naming ``what`` otherwise
    (``1e400`` is infinity to JSON readers, and no position or timestamp)."""
    try:
        return int(value)
    except (TypeError, ValueError, OverflowError):
        raise ExchangeError(f"{what} is not a whole number: {str(value)[:80]!r}") from None


class ExchangeConfig(BaseModel):
    """Base of every type's settings. Secrets are ``SecretStr`` fields: stored, never shown."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class Retraction:
    """An entry the source withdrew: by its external id, or by signal type and value."""

    external_id: str | None = None
    signal_type: str | None = None
    value: str | None = None


@dataclass
class Batch:
    """One unit of work, applied in one transaction together with ``checkpoint``.

    ``checkpoint`` is where the next sync starts once this batch is stored (None: unchanged).
    Full-snapshot sources (a file) set ``snapshot_begin`` on the first batch and ``snapshot_end``
    on the last: entries this exchange brought earlier that the snapshot no longer holds are then
    retracted. ``seen`` lists snapshot records already stored by an interrupted run (resuming):
    they count as present without being written again.
    """

    upserts: list[EntryRecord] = field(default_factory=list)
    retractions: list[Retraction] = field(default_factory=list)
    checkpoint: dict[str, Any] | None = None
    seen: list[EntryRecord] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # unreadable source records, counted as invalid
    snapshot_begin: bool = False
    snapshot_end: bool = False


@dataclass(frozen=True)
class FeedbackItem:
    """A local opinion on an entry this exchange brought, to be sent back to its source."""

    opinion_id: int
    verdict: str  # true_positive, false_positive, disputed
    comment: str
    signal_type: str
    value: str
    external_id: str
    category: str | None = None


#: What send_feedback reports per opinion id: "sent", or "skipped" when the source takes no such opinion.
FeedbackOutcome = dict[int, str]


ConfigT = TypeVar("ConfigT", bound=ExchangeConfig)


class ExchangeType(ABC, Generic[ConfigT]):
    """One kind of source. Instances are built per sync from the stored config."""

    name: ClassVar[str]
    description: ClassVar[str]
    Config: ClassVar[type[ExchangeConfig]]
    supports_feedback: ClassVar[bool] = False

    def __init__(
        self,
        config: ConfigT,
        *,
        exchange_name: str,
        client: httpx.Client | None = None,
        rules: AddressRules | None = None,
        max_redirects: int = 5,
    ) -> None:
        self.config: ConfigT = config
        self.exchange_name = exchange_name
        # Otherwise a client under the outgoing-request rules (public addresses only unless ``rules``
        # allow more), each redirect hop checked again; closed by close().
        self._own_client = client is None
        self.client = client or safe_client(
            rules or AddressRules(),
            timeout=httpx.Timeout(60.0, connect=10.0),
            follow_redirects=True,
            max_redirects=max_redirects,
        )

    def close(self) -> None:
        if self._own_client:
            self.client.close()

    @abstractmethod
    def fetch(self, checkpoint: dict[str, Any] | None) -> Iterator[Batch]:
        """Batches from ``checkpoint`` on (None: from the beginning)."""

    def feedback_enabled(self) -> bool:
        """Whether opinions should be sent now (a type may need an optional credential for it)."""
        return self.supports_feedback

    def send_feedback(self, items: Sequence[FeedbackItem]) -> FeedbackOutcome:
        raise NotImplementedError(f"the {self.name} exchange takes no feedback")

    # ---- config helpers -------------------------------------------------------------------

    @classmethod
    def parse_config(cls, raw: dict[str, Any]) -> ExchangeConfig:
        """The validated config; ValueError with a readable message otherwise."""
        try:
            return cls.Config.model_validate(raw)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}" for e in exc.errors())
            raise ValueError(f"invalid {cls.name} exchange config: {problems}") from None

    @classmethod
    def secret_fields(cls) -> set[str]:
        return {name for name, f in cls.Config.model_fields.items() if f.annotation in (SecretStr, SecretStr | None)}


def dump_config(config: ExchangeConfig) -> dict[str, Any]:
    """The config as JSON values, secrets in clear: :func:`seal_secrets` encrypts them before storing."""
    out: dict[str, Any] = {}
    for name in type(config).model_fields:
        value = getattr(config, name)
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        out[name] = value
    return _jsonable(out)


def _jsonable(values: dict[str, Any]) -> dict[str, Any]:
    import json

    return dict(json.loads(json.dumps(values, default=str)))


def seal_secrets(settings: Settings, exchange_type: type[ExchangeType], config: dict[str, Any]) -> dict[str, Any]:
    """The config as stored: each secret field encrypted under the instance's key."""
    secrets = exchange_type.secret_fields()
    return {
        k: SEALED + encrypt_secret(settings, v) if k in secrets and isinstance(v, str) and v else v
        for k, v in config.items()
    }


def open_secrets(settings: Settings, exchange_type: type[ExchangeType], stored: dict[str, Any]) -> dict[str, Any]:
    """The stored config with its secrets decrypted: only to build the exchange that uses them.

    A secret without the sealed prefix is taken as it is: one stored before secrets were encrypted
    that the migration could not recognise (a plugin's, the plugin absent); saving the config seals it."""
    secrets = exchange_type.secret_fields()
    return {
        k: decrypt_secret(settings, v.removeprefix(SEALED))
        if k in secrets and isinstance(v, str) and v.startswith(SEALED)
        else v
        for k, v in stored.items()
    }


def mask_config(exchange_type: type[ExchangeType], stored: dict[str, Any]) -> dict[str, Any]:
    """The stored config for display: every secret replaced by a fixed mask (or empty if unset), and
    credentials in URL values (userinfo, ?token=…) masked."""
    secrets = exchange_type.secret_fields()
    return {k: (MASK if v else "") if k in secrets else _redacted(v) for k, v in stored.items()}


def _redacted(value: Any) -> Any:
    return redact_url(value) if isinstance(value, str) and "://" in value else value


# ---------------------------------------------------------------- registry

_BUILTIN: Final = (
    ("file", "seawall.lists.exchanges.file:FileExchange"),
    ("seawall", "seawall.lists.exchanges.seawall_feed:SeawallFeedExchange"),
    ("ncmec", "seawall.lists.exchanges.ncmec:NCMECExchange"),
    ("stopncii", "seawall.lists.exchanges.stopncii:StopNCIIExchange"),
    ("sample", "seawall.lists.exchanges.sample:SampleExchange"),
)


@lru_cache(maxsize=1)
def exchange_types() -> dict[str, type[ExchangeType]]:
    """All exchange types by name: built-ins, then plugins."""
    from seawall.plugins import discover

    return discover(_BUILTIN, ENTRY_POINT_GROUP, ExchangeType, "exchange")


def get_exchange_type(name: str) -> type[ExchangeType]:
    types = exchange_types()
    try:
        return types[name.strip().lower()]
    except KeyError:
        raise KeyError(f"unknown exchange type {name!r} (known: {', '.join(types)})") from None


def reload_exchange_types() -> None:
    """Forget the registry (after installing a plugin at runtime, or in tests)."""
    exchange_types.cache_clear()
