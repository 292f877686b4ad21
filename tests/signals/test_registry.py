"""Signal-type registry, built-in value handling, and a third-party plugin via entry points."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from seawall.signals.base import (
    ENTRY_POINT_GROUP,
    get_signal_type,
    reload_signal_types,
    signal_types,
)


@pytest.fixture()
def fresh_registry() -> Iterator[None]:
    reload_signal_types()
    yield
    reload_signal_types()


def test_builtins(fresh_registry: None) -> None:
    names = list(signal_types())
    assert names[:5] == ["md5", "sha1", "sha256", "pdq", "vpdq"]
    pdq = get_signal_type("PDQ")
    assert pdq.bits == 256 and pdq.applies_to("image") and not pdq.applies_to("video")
    assert get_signal_type("md5").applies_to("video")
    assert get_signal_type("vpdq").applies_to("video")
    with pytest.raises(KeyError, match="unknown signal type 'nope'"):
        get_signal_type("nope")


def test_validate_parse_compare() -> None:
    md5 = get_signal_type("md5")
    assert md5.validate(" D41D8CD98F00B204E9800998ECF8427E ") == "d41d8cd98f00b204e9800998ecf8427e"
    with pytest.raises(ValueError, match="md5: expected 32 hex digits, got 3"):
        md5.validate("abc")
    with pytest.raises(ValueError, match="sha1: not hexadecimal"):
        get_signal_type("sha1").validate("g" * 40)
    assert md5.compare("0" * 32, "0" * 32) == 0 and md5.compare("0" * 32, "1" * 32) == 1
    pdq = get_signal_type("pdq")
    a = "f" * 64
    b = "0" * 62 + "0f"
    assert pdq.parse(a) == b"\xff" * 32
    assert pdq.compare(a, b) == 252
    assert pdq.matches(a, "f" * 56 + "0" * 8, threshold=32)
    assert not pdq.matches(a, "f" * 56 + "0" * 8)  # default threshold 31


PLUGIN = """
from typing import Any, ClassVar
from seawall.signals.base import IMAGE, MediaItem, SignalType, validate_hex

class SizeSignal(SignalType):
    name = "filesize"
    media: ClassVar[frozenset[str]] = frozenset({IMAGE})

    def compute(self, item: MediaItem) -> dict[str, Any]:
        return {"filesize": format(item.path.stat().st_size, "08x")}

    def validate(self, value: str) -> str:
        return validate_hex(self.name, value, 4)
"""


def test_plugin_through_entry_point(tmp_path: Path, fresh_registry: None, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "seawall_filesize_plugin.py").write_text(PLUGIN)
    dist = tmp_path / "seawall_filesize_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: seawall-filesize-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        f"[{ENTRY_POINT_GROUP}]\nfilesize = seawall_filesize_plugin:SizeSignal\n"
        "md5 = seawall_filesize_plugin:SizeSignal\n"  # cannot replace a built-in
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    reload_signal_types()
    st = get_signal_type("filesize")
    assert type(st).__module__ == "seawall_filesize_plugin"
    assert type(get_signal_type("md5")).__name__ == "MD5Signal"

    from PIL import Image

    from seawall.signals.hashing import hash_file

    img = tmp_path / "a.png"
    Image.new("RGB", (8, 8), (1, 2, 3)).save(img)
    out = hash_file(img, signals="filesize,md5")
    assert out["filesize"] == format(img.stat().st_size, "08x")
    assert set(out) == {"path", "media", "filesize", "md5"}
    monkeypatch.delitem(sys.modules, "seawall_filesize_plugin", raising=False)
