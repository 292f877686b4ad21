"""The ``file`` exchange: a list file (any supported format) at a local path or an http(s) URL.

A file is a full snapshot of its source: entries this exchange brought that a new version of the
file no longer holds are retracted. The checkpoint is the file's SHA-256 (and the server's ETag), so
an unchanged file is skipped; while a new version is being applied, the checkpoint also records how
many of its records are stored, so a killed sync resumes after them.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from pydantic import SecretStr

from seawall.lists.exchanges.base import Batch, ExchangeConfig, ExchangeError, ExchangeType
from seawall.lists.formats import HEAD_BYTES, get_format, infer_format


class FileConfig(ExchangeConfig):
    location: str  # a path, or an http(s) URL
    format: str | None = None  # inferred from the file when absent
    signal_type: str | None = None  # for rows that name none
    bearer_token: SecretStr | None = None  # sent as Authorization: Bearer to a URL
    batch_size: int = 2000
    max_bytes: int = 2 * 1024**3
    allow_empty: bool = False  # an empty file retracts everything only when this is set


class FileExchange(ExchangeType[FileConfig]):
    name = "file"
    description = "A list file in any supported format, at a local path or an http(s) URL (full snapshot)."
    Config = FileConfig

    def _is_url(self) -> bool:
        return self.config.location.lower().startswith(("http://", "https://"))

    def _download(self, etag: str | None, out: IO[bytes]) -> tuple[str | None, str | None]:
        """(sha256, etag) of the file written to ``out``; (None, etag) when the server says unchanged."""
        headers = {"accept": "*/*"}
        if etag:
            headers["if-none-match"] = etag
        if self.config.bearer_token is not None:
            headers["authorization"] = f"Bearer {self.config.bearer_token.get_secret_value()}"
        digest = hashlib.sha256()
        size = 0
        with self.client.stream("GET", self.config.location, headers=headers) as response:
            if response.status_code == 304:
                return None, etag
            if response.status_code != 200:
                raise ExchangeError(f"GET {self.config.location} answered {response.status_code}")
            for block in response.iter_bytes(65536):
                size += len(block)
                if size > self.config.max_bytes:
                    raise ExchangeError(f"{self.config.location} is larger than {self.config.max_bytes} bytes")
                digest.update(block)
                out.write(block)
            return digest.hexdigest(), response.headers.get("etag")

    def fetch(self, checkpoint: dict[str, Any] | None) -> Iterator[Batch]:
        checkpoint = checkpoint or {}
        with tempfile.TemporaryFile() as spool:
            if self._is_url():
                digest, etag = self._download(checkpoint.get("etag") if "pending" not in checkpoint else None, spool)
                if digest is None:
                    return
                spool.seek(0)
                stream: IO[bytes] = spool
            else:
                path = Path(self.config.location)
                try:
                    source = path.open("rb")
                except OSError as exc:
                    raise ExchangeError(f"cannot read {path}: {exc.strerror}") from None
                with source:
                    hasher = hashlib.sha256()
                    while block := source.read(1 << 20):
                        hasher.update(block)
                    # Read the very bytes that were hashed: the file may change under us.
                    source.seek(0)
                    shutil.copyfileobj(source, spool)
                digest, etag = hasher.hexdigest(), None
                spool.seek(0)
                stream = spool
            pending = checkpoint.get("pending") or {}
            if digest == checkpoint.get("digest") and not pending:
                return  # unchanged since the last complete sync
            done = int(pending.get("records", 0)) if pending.get("digest") == digest else 0
            yield from self._batches(stream, digest, etag, checkpoint, done)

    def _batches(
        self, stream: IO[bytes], digest: str, etag: str | None, checkpoint: dict[str, Any], done: int
    ) -> Iterator[Batch]:
        head = stream.read(HEAD_BYTES)
        stream.seek(0)
        name = self.config.location.rsplit("/", 1)[-1]
        try:
            fmt = (
                get_format(self.config.format, signal_type=self.config.signal_type)
                if self.config.format
                else infer_format(head, name, signal_type=self.config.signal_type)
            )
        except ValueError as exc:
            raise ExchangeError(str(exc)) from None
        base: dict[str, Any] = {k: checkpoint[k] for k in ("digest", "etag") if k in checkpoint}
        batch = Batch(snapshot_begin=True)
        any_record = False
        for count, parsed in enumerate(fmt.read(stream), 1):  # type: ignore[arg-type]
            if parsed.record is not None:
                any_record = True
                (batch.seen if count <= done else batch.upserts).append(parsed.record)
            elif count > done:
                batch.errors.append(str(parsed.error))
            if len(batch.upserts) + len(batch.errors) + len(batch.seen) >= self.config.batch_size:
                progress = max(count, done)
                batch.checkpoint = {**base, "pending": {"digest": digest, "etag": etag, "records": progress}}
                yield batch
                batch = Batch()
        if not any_record and not self.config.allow_empty:
            raise ExchangeError(
                f"{name} holds no records; refusing to retract everything (set allow_empty to allow it)"
            )
        batch.snapshot_end = True
        batch.checkpoint = {"digest": digest, "etag": etag}
        yield batch
