"""Region matching end to end: uploads, `seawall match`, list-side trimmed hashes, the settings."""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from fastapi.testclient import TestClient
from PIL import Image, ImageDraw, ImageOps
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from seawall.auth import service as auth_service
from seawall.auth.permissions import ROLE_SCOPES, SYSTEM, Principal, Role
from seawall.cli import app as cli_app
from seawall.config import Settings, reset_settings
from seawall.lists import service as lists_service
from seawall.lists.models import Entry
from seawall.lists.records import EntryRecord
from seawall.matching.models import MatchEvent
from seawall.media.synthetic import benign_image
from seawall.signals.hashing import hash_file

PICTURE = benign_image(21, 240, 180)
UNRELATED = benign_image(99, 240, 180)
PADDED = ImageOps.expand(PICTURE, border=(60, 24, 30, 90), fill=(255, 255, 255))  # PDQ misses this


def _screenshot() -> Image.Image:
    """A desktop-like canvas: title bar, a side panel with items, the picture."""
    canvas = Image.new("RGB", (500, 300), (230, 230, 235))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((0, 0, 500, 32), fill=(50, 70, 120))
    draw.rectangle((0, 32, 150, 300), fill=(245, 245, 245))
    for y in range(50, 280, 26):
        draw.rectangle((12, y, 130, y + 12), fill=(120, 120, 120))
    canvas.paste(PICTURE, (190, 62))
    return canvas


SCREENSHOT = _screenshot()


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _pdq(image: Image.Image, tmp: Path) -> str:
    path = tmp / "picture.png"
    image.save(path)
    return str(hash_file(path, ("pdq",))["pdq"])


@pytest.fixture
def partner(db: Session) -> dict[str, str]:
    new = auth_service.create_api_key(db, SYSTEM, name="platform", scopes=["match", "hash"])
    db.commit()
    return {"authorization": f"Bearer {new.secret}"}


def _upload(client: TestClient, image: Image.Image, key: dict[str, str]) -> dict[str, Any]:
    client.app.state.match_indexes.refresh()  # type: ignore[attr-defined]
    response = client.post("/v1/match", files={"file": ("x.png", _png(image), "image/png")}, headers=key)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_a_padded_copy_matches_by_its_trimmed_region_and_the_log_says_so(
    client: TestClient, db: Session, partner: dict[str, str], tmp_path: Path
) -> None:
    hl = lists_service.create_list(db, SYSTEM, name="known", kind="hash")
    lists_service.add_entries(db, SYSTEM, hl, [EntryRecord("pdq", _pdq(PICTURE, tmp_path), category="A")])
    db.commit()
    out = _upload(client, PADDED, partner)
    [hit] = out["matches"]
    assert hit["list"] == "known" and hit["region"] == "trimmed"
    assert hit["box"] == {"x": 60, "y": 24, "width": 240, "height": 180}
    assert hit["distance"] <= 8
    assert _upload(client, PICTURE, partner)["matches"][0]["region"] == "whole"
    [shot] = _upload(client, SCREENSHOT, partner)["matches"]
    assert (shot["region"], shot["box"]) == ("embedded", {"x": 190, "y": 62, "width": 240, "height": 180})
    assert _upload(client, UNRELATED, partner)["matches"] == []
    logged = db.scalars(select(MatchEvent).order_by(MatchEvent.id)).all()
    db.expire_all()
    assert [[m["region"] for m in e.matches] for e in logged] == [["trimmed"], ["whole"], ["embedded"]]
    assert logged[0].signals["pdq_regions"][0]["region"] == "trimmed"


def test_region_matching_off_for_a_list_and_globally(
    client: TestClient, db: Session, partner: dict[str, str], tmp_path: Path
) -> None:
    value = _pdq(PICTURE, tmp_path)
    on = lists_service.create_list(db, SYSTEM, name="with-regions", kind="hash")
    off = lists_service.create_list(db, SYSTEM, name="without", kind="hash", regions=False)
    lists_service.add_entries(db, SYSTEM, on, [EntryRecord("pdq", value)])
    lists_service.add_entries(db, SYSTEM, off, [EntryRecord("pdq", value)])
    db.commit()
    assert [m["list"] for m in _upload(client, PADDED, partner)["matches"]] == ["with-regions"]
    assert sorted(m["list"] for m in _upload(client, PICTURE, partner)["matches"]) == ["with-regions", "without"]
    # Only an admin switches it: it changes what every caller gets.
    curator = auth_service.create_api_key(db, SYSTEM, name="curator", scopes=["lists:write", "lists:read"])
    db.commit()
    refused = client.patch(
        "/v1/lists/with-regions", json={"regions": False}, headers={"authorization": f"Bearer {curator.secret}"}
    )
    assert refused.status_code == 403
    client.app.state.settings.match_regions = False  # type: ignore[attr-defined]
    assert _upload(client, PADDED, partner)["matches"] == []


def _results(result: Result) -> list[dict[str, Any]]:
    """The per-file objects `seawall match` prints (log lines aside)."""
    return [json.loads(line) for line in result.output.splitlines() if line.startswith('{"path"')]


@pytest.fixture
def cli(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Result]]:
    monkeypatch.setenv("SEAWALL_DATABASE_URL", database_url)
    monkeypatch.setenv("SEAWALL_HOME", str(tmp_path / "home"))
    reset_settings()
    runner = CliRunner()
    yield lambda *args: runner.invoke(cli_app, [str(a) for a in args])
    reset_settings()


def test_lists_add_file_stores_the_trimmed_hash_linked_and_retired_with_its_entry(
    cli: Callable[..., Result], tmp_path: Path, db: Session
) -> None:
    padded = tmp_path / "padded.png"
    PADDED.save(padded)
    clean = tmp_path / "clean.png"
    PICTURE.save(clean)
    assert cli("lists", "create", "known", "--kind", "hash").exit_code == 0
    added = cli("lists", "add", "known", "--file", padded, "--category", "A")
    assert added.exit_code == 0, added.output
    assert "2 added, 0 updated, 0 unchanged with a trimmed-picture hash" in added.output
    entry = db.scalars(select(Entry).where(Entry.signal_type == "pdq")).one()
    assert entry.trimmed_box == [60, 24, 240, 180] and entry.trimmed_value == _pdq(PICTURE, tmp_path)

    found = cli("match", clean, "--lists", "known")
    assert found.exit_code == 0, found.output
    [hit] = _results(found)[0]["matches"]
    assert (hit["entry_id"], hit["region"], hit["entry_region"], hit["distance"]) == (entry.id, "whole", "trimmed", 0)

    # Retired with its entry: neither PDQ hash matches any more (the padded file's md5 entry still does).
    retired = cli("lists", "retire", "known", entry.value, "--signal-type", "pdq")
    assert retired.exit_code == 0, retired.output
    gone = cli("match", clean, padded, "--lists", "known")
    assert [[m["signal_type"] for m in r["matches"]] for r in _results(gone)] == [[], ["md5"]]
    # The per-list switch from the command line.
    assert cli("lists", "regions", "known", "off").exit_code == 0
    assert "region matching: off" in cli("lists", "show", "known").output


def test_a_confirmed_hotline_item_lists_its_trimmed_picture_beside_its_pdq(
    db: Session, settings: Settings, tmp_path: Path
) -> None:
    from seawall.hotline import assessment, capture
    from seawall.hotline.models import Item

    path = tmp_path / "captured.png"
    PADDED.save(path)
    hashed = capture._hash_everything(path)  # what a capture keeps of a fetched picture
    trimmed = lists_service.trimmed_of(hashed)
    assert trimmed is not None and trimmed[1] == (60, 24, 240, 180)
    item = Item(
        sha256=hashed["sha256"],
        md5=hashed["md5"],
        sha1=hashed["sha1"],
        pdq=hashed["pdq"],
        pdq_quality=hashed["pdq_quality"],
        pdq_trimmed=trimmed[0],
        pdq_trimmed_box=list(trimmed[1]),
        media="image",
        mime="image/png",
        size=path.stat().st_size,
    )
    db.add(item)
    db.commit()
    analyst = Principal(kind="user", name="alice", scopes=ROLE_SCOPES[Role.analyst])
    senior = Principal(kind="user", name="sam", scopes=ROLE_SCOPES[Role.senior_analyst])
    saved = assessment.assess_item(
        db,
        settings,
        analyst,
        item.id,
        item.version,
        assessment.AssessmentIn(outcome="csam", category="C", age_band="14-15", sex="girl"),
    )
    db.commit()
    assessment.qa(db, settings, senior, saved.assessment.id, "confirm", "checked")
    db.commit()
    entry = db.scalars(select(Entry).where(Entry.signal_type == "pdq")).one()
    assert (entry.value, entry.trimmed_value, entry.trimmed_box) == (item.pdq, trimmed[0], [60, 24, 240, 180])
    assert entry.trimmed_value == _pdq(PICTURE, tmp_path)  # so a clean copy matches the listed padded capture
