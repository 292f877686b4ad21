"""Demo data of matching: a hash list of benign generated pictures, edited copies to find, rules, a partner key."""

from __future__ import annotations

from PIL import Image
from rich.console import Console
from sqlalchemy import select
from sqlalchemy.orm import Session

from seawall.auth import service as auth_service
from seawall.auth.models import ApiKey
from seawall.auth.permissions import cli_principal
from seawall.config import get_settings
from seawall.lists import service as lists_service
from seawall.lists.models import HashList
from seawall.lists.records import EntryRecord
from seawall.matching import policies
from seawall.media.synthetic import benign_image
from seawall.signals.hashing import hash_file

KNOWN = 24  # pictures on the demo list
UNRELATED = 8  # pictures that are not
CATEGORIES = ("A", "B", "C")


def _edits(image: Image.Image) -> dict[str, Image.Image]:
    """The edits re-uploads typically carry: re-encoding, resizing, rotation, mirroring, greyscale."""
    w, h = image.size
    return {
        "reencoded": image,
        "resized": image.resize((w // 2, h // 2), Image.Resampling.LANCZOS),
        "rotated": image.transpose(Image.Transpose.ROTATE_90),
        "mirrored": image.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
        "greyscale": image.convert("L"),
    }


def seed_demo(session: Session, console: Console) -> None:
    actor = cli_principal()
    if session.scalar(select(HashList.id).where(HashList.name == "demo-known")) is not None:
        console.print("demo: list 'demo-known' exists already")
        return
    folder = get_settings().ensure_home() / "demo"
    originals = folder / "originals"
    to_scan = folder / "to-scan"
    originals.mkdir(parents=True, exist_ok=True)
    to_scan.mkdir(parents=True, exist_ok=True)
    records = []
    for i in range(KNOWN):
        path = originals / f"known-{i:02d}.png"
        image = benign_image(1000 + i, 640, 480)
        image.save(path)
        hashed = hash_file(path)
        category = CATEGORIES[i % 3]
        note = "benign generated picture standing in for known material"
        records.append(EntryRecord("pdq", hashed["pdq"], category=category, labels=("demo",), note=note))
        records.append(EntryRecord("md5", hashed["md5"], category=category, labels=("demo",), note=note))
        if i < 5:  # one edited copy of each kind among the first five
            name, edited = list(_edits(image).items())[i]
            edited.convert("RGB").save(to_scan / f"edited-{i:02d}-{name}.jpg", quality=80)
    for j in range(UNRELATED):
        benign_image(5000 + j, 640, 480).convert("RGB").save(to_scan / f"unrelated-{j:02d}.jpg", quality=85)
    known = lists_service.create_list(
        session, actor, name="demo-known", kind="hash", description="Demo: hashes of benign generated pictures."
    )
    lists_service.add_entries(session, actor, known, records, description="demo seed")
    urls = lists_service.create_list(session, actor, name="demo-urls", kind="url", description="Demo URL list.")
    lists_service.add_entries(
        session,
        actor,
        urls,
        [
            EntryRecord("url", "https://gallery.example/albums/", level="prefix", category="B"),
            EntryRecord("url", "hosting.example", level="domain", category="C"),
        ],
    )
    terms = lists_service.create_list(session, actor, name="demo-terms", kind="keyword", description="Demo terms.")
    lists_service.add_entries(
        session, actor, terms, [EntryRecord("keyword", "bluebird"), EntryRecord("keyword", "marmalade")]
    )
    policies.upsert_policy(
        session,
        actor,
        name="block-category-a",
        position=10,
        conditions={"categories": ["A"]},
        actions=[{"type": "block"}, {"type": "review", "queue": "urgent", "priority": 1}],
        stop=True,
    )
    policies.upsert_policy(
        session,
        actor,
        name="review-everything-else",
        position=20,
        conditions={},
        actions=[{"type": "review", "queue": "default", "priority": 3}],
    )
    console.print(f"demo: list 'demo-known' with {KNOWN} pictures; edited copies and unrelated pictures in {to_scan}")
    if session.scalar(select(ApiKey.id).where(ApiKey.name == "demo-platform")) is None:
        new = auth_service.create_api_key(session, actor, name="demo-platform", scopes=["match", "hash", "lists:read"])
        key_file = folder / "partner-api-key.txt"
        key_file.write_text(new.secret + "\n")
        key_file.chmod(0o600)
        console.print(f"demo: partner API key (scopes match, hash, lists:read) saved in {key_file}")
