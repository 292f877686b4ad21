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
    _seed_operator_pages(session, known, records)
    console.print(f"demo: list 'demo-known' with {KNOWN} pictures; edited copies and unrelated pictures in {to_scan}")
    if session.scalar(select(ApiKey.id).where(ApiKey.name == "demo-platform")) is None:
        new = auth_service.create_api_key(session, actor, name="demo-platform", scopes=["match", "hash", "lists:read"])
        key_file = folder / "partner-api-key.txt"
        key_file.write_text(new.secret + "\n")
        key_file.chmod(0o600)
        console.print(f"demo: partner API key (scopes match, hash, lists:read) saved in {key_file}")


def _seed_operator_pages(session: Session, known: HashList, records: list[EntryRecord]) -> None:
    """What the operator pages show: a shadow rule and what it would have done, a webhook with a
    delivered and a dead delivery, a quarantined entry, and an exchange from a local file."""
    import uuid
    from datetime import timedelta

    from seawall.db import utcnow
    from seawall.lists.exchanges import service as exchanges
    from seawall.matching import webhooks
    from seawall.matching.models import EntryQuarantine, MatchEvent, WebhookDelivery

    actor = cli_principal()
    settings = get_settings()
    policies.upsert_policy(
        session,
        actor,
        name="shadow-report-category-b",
        position=30,
        conditions={"categories": ["B"]},
        actions=[{"type": "report", "authority": "ncmec"}],
        shadow=True,
        description="Trying out: would report category B matches to NCMEC.",
    )
    # records: pdq then md5 of each picture; picture 1 is category B, picture 2 category C.
    entry = lists_service.find_entries(session, known, records[2].value, "pdq")[0]
    spiked = lists_service.find_entries(session, known, records[4].value, "pdq")[0]
    now = utcnow()
    for i in range(6):
        session.add(
            MatchEvent(
                match_id=str(uuid.uuid4()),
                occurred_at=now - timedelta(hours=3 * i + 1),
                principal="key:demo-platform",
                media="image",
                signals={"pdq": [entry.value]},
                matches=[{"list": known.name, "entry_id": entry.id, "signal_type": "pdq", "distance": i % 4}],
                actions=[{"type": "review", "queue": "default", "priority": 3, "rule": "review-everything-else"}],
                shadow_actions=[{"type": "report", "authority": "ncmec", "rule": "shadow-report-category-b"}],
                reasons=["demo"],
            )
        )
    hook, _secret = webhooks.create_webhook(
        session, settings, actor, name="demo-receiver", url="https://hooks.example/seawall"
    )
    for state, status, error in (("delivered", 204, ""), ("dead", 503, "HTTP 503 from the receiver after 8 attempts")):
        session.add(
            WebhookDelivery(
                webhook_id=hook.id,
                match_id=None,
                payload={"demo": True},
                state=state,
                attempts=1 if state == "delivered" else 8,
                last_status=status,
                last_error=error,
                delivered_at=now if state == "delivered" else None,
            )
        )
    session.add(
        EntryQuarantine(
            entry_id=spiked.id,
            reason="demo: 40 distinct pictures matched in an hour against a baseline of 2",
            callers=["key:demo-platform"],
        )
    )
    feed = settings.ensure_home() / "demo" / "partner-feed.csv"
    feed.write_text("signal_type,value,category\n" + "".join(f"md5,{uuid.uuid4().hex},B\n" for _ in range(3)))
    partner = lists_service.create_list(
        session, actor, name="demo-partner", kind="hash", description="Demo: a partner's list, pulled from a file."
    )
    exchanges.create_exchange(
        session,
        settings,
        actor,
        name="demo-partner-feed",
        type="file",
        list_name=partner.name,
        config={"location": str(feed)},
        interval_minutes=60,
    )
