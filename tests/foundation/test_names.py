"""User and API key names that look like another's, or hide what they are, are refused: one
validator in auth, reached from the service, the CLI and the API."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from seawall.auth import service as auth_service
from seawall.auth.models import ApiKey, User
from seawall.auth.names import check_name
from seawall.auth.permissions import SYSTEM
from seawall.cli import app as cli_app
from seawall.config import reset_settings

INVISIBLE = "may not contain invisible characters"
BIDI = "may not contain bidirectional controls"
SPACE = "may not contain spaces other than the plain space"
MIXED = "may not mix scripts"
IMITATE = ": letters of different alphabets can imitate another name"

# (name, what is wrong with it; None when it is fine)
CASES: list[tuple[str, str | None]] = [
    ("alice", None),
    ("Zoë Müller", None),  # one script, accents: fine
    ("zoe\u0308", None),  # a combining mark belongs to the letter it follows
    ("platform-a_2.prod", None),  # digits and punctuation belong to no script
    ("Дмитрий", None),  # Cyrillic alone
    ("山田たろう", None),  # Han with Hiragana: Japanese (UTS #39 highly restrictive)
    ("김민준 Kim", None),  # Hangul with Latin: Korean
    ("ali\u200bce", f"{INVISIBLE}: U+200B ZERO WIDTH SPACE"),
    ("ali\u200dce", f"{INVISIBLE}: U+200D ZERO WIDTH JOINER"),
    ("ali\u200cce", f"{INVISIBLE}: U+200C ZERO WIDTH NON-JOINER"),
    ("ali\u00adce", f"{INVISIBLE}: U+00AD SOFT HYPHEN"),
    ("ali\u2060ce", f"{INVISIBLE}: U+2060 WORD JOINER"),
    ("\ufeffalice", f"{INVISIBLE}: U+FEFF ZERO WIDTH NO-BREAK SPACE"),
    ("ali\x00ce", f"{INVISIBLE}: U+0000 (a control character)"),
    ("ali\tce", f"{INVISIBLE}: U+0009 (a control character)"),
    ("ali\u2028ce", f"{INVISIBLE}: U+2028 LINE SEPARATOR"),
    ("ali\u2029ce", f"{INVISIBLE}: U+2029 PARAGRAPH SEPARATOR"),
    ("ali\ue000ce", f"{INVISIBLE}: U+E000 (a private-use character)"),
    ("ali\u0378ce", f"{INVISIBLE}: U+0378 (an unassigned code point)"),
    ("admin\u202egpj.exe", f"{BIDI}: U+202E RIGHT-TO-LEFT OVERRIDE"),
    ("\u202aalice", f"{BIDI}: U+202A LEFT-TO-RIGHT EMBEDDING"),
    ("alice\u2066", f"{BIDI}: U+2066 LEFT-TO-RIGHT ISOLATE"),
    ("alice\u2069", f"{BIDI}: U+2069 POP DIRECTIONAL ISOLATE"),
    ("alice\u200e", f"{BIDI}: U+200E LEFT-TO-RIGHT MARK"),
    ("alice\u200f", f"{BIDI}: U+200F RIGHT-TO-LEFT MARK"),
    ("alice\u061c", f"{BIDI}: U+061C ARABIC LETTER MARK"),
    ("ali\u00a0ce", f"{SPACE}: U+00A0 NO-BREAK SPACE"),
    ("ali\u3000ce", f"{SPACE}: U+3000 IDEOGRAPHIC SPACE"),
    ("\u0430dmin", f"{MIXED} (CYRILLIC, LATIN){IMITATE}"),  # Cyrillic a (U+0430), then Latin
    ("p\u0430yp\u0430l-key", f"{MIXED} (CYRILLIC, LATIN){IMITATE}"),
    ("\u03bfps", f"{MIXED} (GREEK, LATIN){IMITATE}"),  # Greek omicron
    ("alice\u13aa", f"{MIXED} (CHEROKEE, LATIN){IMITATE}"),
]


@pytest.mark.parametrize(("name", "problem"), CASES, ids=[ascii(n) for n, _ in CASES])
def test_name_rules(name: str, problem: str | None) -> None:
    if problem is None:
        assert check_name(name, "username") == name
    else:
        with pytest.raises(ValueError) as refused:
            check_name(name, "username")
        assert str(refused.value) == f"a username {problem}"


def test_service_cli_and_api_refuse_the_same_names(
    client: TestClient, db: Session, database_url: str, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    spoof = "\u0430dmin"
    with pytest.raises(ValueError, match=r"^a username may not mix scripts \(CYRILLIC, LATIN\)"):
        auth_service.create_user(db, SYSTEM, username=spoof, role="admin", password="long enough pw")
    with pytest.raises(ValueError, match=r"^a key name may not contain bidirectional controls: U\+202E"):
        auth_service.create_api_key(db, SYSTEM, name="ops\u202eyek", scopes=["match"])
    with pytest.raises(ValueError, match=r"^a display name may not contain invisible characters: U\+200B"):
        auth_service.create_user(db, SYSTEM, username="bob", role="analyst", display_name="B\u200bob")
    db.rollback()
    admin = auth_service.create_api_key(db, SYSTEM, name="ops", scopes=["admin"]).secret
    db.commit()
    headers = {"authorization": f"Bearer {admin}"}
    user = client.post("/v1/admin/users", json={"username": spoof, "role": "admin"}, headers=headers)
    assert user.status_code == 422
    assert user.json()["detail"].startswith("a username may not mix scripts (CYRILLIC, LATIN)")
    key = client.post("/v1/admin/keys", json={"name": "ops\u200d", "scopes": ["match"]}, headers=headers)
    assert (key.status_code, key.json()) == (
        422,
        {"detail": "a key name may not contain invisible characters: U+200D ZERO WIDTH JOINER"},
    )
    monkeypatch.setenv("SEAWALL_DATABASE_URL", database_url)
    monkeypatch.setenv("SEAWALL_HOME", str(tmp_path / "home"))
    reset_settings()
    try:
        runner = CliRunner()
        refused = runner.invoke(cli_app, ["users", "create", spoof, "--role", "admin"])
        assert refused.exit_code == 2 and "a username may not mix scripts (CYRILLIC, LATIN)" in refused.output
        refused = runner.invoke(cli_app, ["keys", "create", "feed\u00ad", "--scope", "match"])
        assert refused.exit_code == 2 and "a key name may not contain invisible characters: U+00AD" in refused.output
    finally:
        reset_settings()
    db.rollback()
    assert db.scalar(select(func.count()).select_from(User)) == 0
    assert db.scalars(select(ApiKey.name)).all() == ["ops"]
