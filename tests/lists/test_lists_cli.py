"""`seawall lists …` end to end: create, add, show, import (idempotent, all-or-nothing), export, retire, opinion."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from seawall.cli import app as cli_app
from seawall.config import reset_settings


def md5(n: int) -> str:
    return hashlib.md5(f"benign-{n}".encode()).hexdigest()


@pytest.fixture
def cli(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("SEAWALL_DATABASE_URL", database_url)
    monkeypatch.setenv("SEAWALL_HOME", str(tmp_path / "home"))
    reset_settings()
    runner = CliRunner()
    yield lambda *args: runner.invoke(cli_app, [str(a) for a in args])
    reset_settings()


def _csv(path: Path, rows: list[str]) -> Path:
    path.write_text("signal_type,value,category,labels,source,external_id,note\n" + "".join(r + "\n" for r in rows))
    return path


def test_lists_commands_round_trip(cli: Callable[..., Result], tmp_path: Path) -> None:
    assert cli("lists", "create", "known", "--kind", "hash", "--description", "benign stand-ins").exit_code == 0
    assert cli("lists", "create", "known", "--kind", "hash").exit_code == 2
    added = cli("lists", "add", "known", md5(1), "--category", "A", "--label", "demo")
    assert added.exit_code == 0 and "added (list revision 1)" in added.output
    again = cli("lists", "add", "known", md5(1), "--category", "A", "--label", "demo")
    assert "already present, unchanged (list revision 1)" in again.output
    ambiguous = cli("lists", "add", "known", hashlib.sha256(b"x").hexdigest())
    assert ambiguous.exit_code == 2 and "give the signal type" in ambiguous.output
    assert cli("lists", "add", "known", hashlib.sha256(b"x").hexdigest(), "--signal-type", "sha256").exit_code == 0
    source = _csv(tmp_path / "in.csv", [f"md5,{md5(i)},B,a;b,hotline,x{i}," for i in range(2, 12)])
    first = cli("lists", "import", "known", source)
    assert first.exit_code == 0, first.output
    assert "in.csv (csv): 10 added, 0 updated, 0 unchanged, 0 invalid; list revision 12" in first.output
    second = cli("lists", "import", "known", source)
    assert "10 unchanged" in second.output and "list revision 12" in second.output
    out = tmp_path / "out.jsonl"
    assert cli("lists", "export", "known", "--format", "jsonl", "--output", out).exit_code == 0
    exported = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(exported) == 12
    assert exported[2]["labels"] == ["a", "b"] and exported[2]["external_id"] == "x2"
    retired = cli("lists", "retire", "known", md5(2), "--reason", "not on the source any more")
    assert retired.exit_code == 0 and "retired 1 entry" in retired.output
    for _ in range(3):
        opinion = cli("lists", "opinion", "known", md5(3), "--verdict", "false_positive", "--comment", "a meme")
    assert "entry status: disabled" in opinion.output
    shown = cli("lists", "show", "known")
    assert "entries: 10 active, 1 disabled, 1 retracted" in " ".join(shown.output.split())
    assert "known" in cli("lists", "ls").output


def test_a_bad_line_imports_nothing_unless_skipped(cli: Callable[..., Result], tmp_path: Path) -> None:
    cli("lists", "create", "known", "--kind", "hash")
    source = _csv(tmp_path / "bad.csv", [f"md5,{md5(1)},,,,,", "md5,not-a-hash,,,,,", f"md5,{md5(2)},,,,,"])
    refused = cli("lists", "import", "known", source)
    assert refused.exit_code == 2
    assert "line 3: md5: expected 32 hex digits, got 10; nothing was imported" in " ".join(refused.output.split())
    assert "entries: 0 active" in " ".join(cli("lists", "show", "known").output.split())
    skipped = cli("lists", "import", "known", source, "--skip-invalid")
    assert "2 added, 0 updated, 0 unchanged, 1 invalid" in skipped.output
    assert "skipped line 3: md5: expected 32 hex digits, got 10" in " ".join(skipped.output.split())


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_million_entry_import_runs_in_bounded_memory(database_url: str, tmp_path: Path) -> None:
    """1M lines through the real CLI in a child process; its peak memory is far below the file's weight in objects."""
    big = tmp_path / "big.csv"
    with big.open("w") as fh:
        fh.write("signal_type,value,category,labels,source,external_id,note\n")
        for i in range(1_000_000):
            fh.write(f"md5,{i:032x},B,,bulk,,\n")
    env = {**os.environ, "SEAWALL_DATABASE_URL": database_url, "SEAWALL_HOME": str(tmp_path / "home")}
    seawall = [sys.executable, "-m", "seawall"]
    subprocess.run([*seawall, "lists", "create", "bulk", "--kind", "hash"], env=env, check=True, capture_output=True)
    # The child reports its own peak from VmHWM, which starts afresh at exec (ru_maxrss would carry
    # over the forked test runner's size, and RUSAGE_CHILDREN every earlier child's).
    measured = (
        "import re, sys\n"
        "from seawall.cli import main\n"
        f"sys.argv = ['seawall', 'lists', 'import', 'bulk', {str(big)!r}]\n"
        "try:\n    main()\nexcept SystemExit as exc:\n    status = exc.code\n"
        "hwm = re.search(r'VmHWM:\\s+(\\d+) kB', open('/proc/self/status').read()).group(1)\n"
        "print('PEAK_KB', hwm, file=sys.stderr)\n"
        "sys.exit(status)\n"
    )
    done = subprocess.run([sys.executable, "-c", measured], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    peak_mb = int(done.stderr.split("PEAK_KB")[1].split()[0]) / 1024
    assert "1000000 added, 0 updated, 0 unchanged, 0 invalid; list revision 1000000" in " ".join(done.stderr.split())
    print(f"1M import peak RSS {peak_mb:.0f} MB")
    assert peak_mb < 400, f"import peaked at {peak_mb:.0f} MB"
