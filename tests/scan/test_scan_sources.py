"""What a scan finds in its sources, without Dask or a database: archives, crawls, object stores, bombs."""

from __future__ import annotations

import gzip
import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from seawall.config import Settings
from seawall.scan.sources import Expander, Item, ScanError, plan

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 100  # looks like a picture to the expander; hashing decides


def _settings(tmp_path: Path, **overrides: object) -> Settings:
    return Settings(home=tmp_path / "home", secret_key="test-secret-key-not-for-production", **overrides)  # type: ignore[arg-type]


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def _tar_gz(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _summary(items: list[Item]) -> list[tuple[str, int, str | None]]:
    return [(i.path, i.size, i.error) for i in items]


def test_members_of_nested_archives_are_found_by_content_with_their_paths(tmp_path: Path) -> None:
    inner = _zip({"deep/c.bin": PNG, "notes.txt": b"hello"})
    outer = _tar_gz({"a.dat": PNG, "inner.anything": inner, "dir/b": b"plain"})
    source = tmp_path / "bundle.noext"
    source.write_bytes(outer)
    items = list(Expander(_settings(tmp_path)).local_file(source))
    s = str(source)
    assert _summary(items) == [
        (f"{s}!/a.dat", len(PNG), None),
        (f"{s}!/inner.anything!/deep/c.bin", len(PNG), None),
        (f"{s}!/inner.anything!/notes.txt", 5, None),
        (f"{s}!/dir/b", 5, None),
    ]
    assert items[1].data == PNG


def test_a_single_gzip_and_zstd_file_is_its_content(tmp_path: Path) -> None:
    import zstandard

    (tmp_path / "p.gz").write_bytes(gzip.compress(PNG))
    (tmp_path / "p.zst").write_bytes(zstandard.ZstdCompressor().compress(PNG))
    expander = Expander(_settings(tmp_path))
    gz = list(expander.local_file(tmp_path / "p.gz"))
    zst = list(expander.local_file(tmp_path / "p.zst"))
    assert [(i.path, i.data) for i in gz] == [(f"{tmp_path / 'p.gz'}!/p", PNG)]
    assert [(i.path, i.data) for i in zst] == [(f"{tmp_path / 'p.zst'}!/p", PNG)]


def test_nesting_deeper_than_the_limit_is_an_error_and_the_rest_is_scanned(tmp_path: Path) -> None:
    nested = _zip({"leaf.bin": PNG})
    for level in range(3):
        nested = _zip({f"level{level}.zip": nested})
    (tmp_path / "deep.zip").write_bytes(_zip({"top.bin": PNG, "n.zip": nested}))
    items = list(Expander(_settings(tmp_path, scan_max_depth=3)).local_file(tmp_path / "deep.zip"))
    top = str(tmp_path / "deep.zip")
    assert _summary(items) == [
        (f"{top}!/top.bin", len(PNG), None),
        (f"{top}!/n.zip!/level2.zip!/level1.zip!/level0.zip", 0, "archive nested more than 3 deep"),
    ]
    # One level more allowed: the leaf is reached.
    items = list(Expander(_settings(tmp_path, scan_max_depth=4)).local_file(tmp_path / "deep.zip"))
    assert items[-1].path == f"{top}!/n.zip!/level2.zip!/level1.zip!/level0.zip!/leaf.bin"
    assert items[-1].error is None


def test_an_archive_expanding_past_its_budget_stops_with_one_error(tmp_path: Path) -> None:
    # 40 members of 1 MB of zeros: 40 MB expanded from a few kB.
    bomb = _zip({f"z{i:02}.bin": bytes(1024 * 1024) for i in range(40)})
    assert len(bomb) < 100_000
    (tmp_path / "bomb.zip").write_bytes(bomb)
    settings = _settings(tmp_path, scan_max_expanded_bytes=5 * 1024 * 1024)
    items = list(Expander(settings).local_file(tmp_path / "bomb.zip"))
    top = str(tmp_path / "bomb.zip")
    assert [i.path for i in items[:5]] == [f"{top}!/z{i:02}.bin" for i in range(5)]
    assert _summary(items[5:]) == [(top, len(bomb), f"archive expands to more than {5 * 1024 * 1024} bytes")]
    members = list(Expander(_settings(tmp_path, scan_max_members=3)).local_file(tmp_path / "bomb.zip"))
    assert members[-1].error == "archive holds more than 3 members" and len(members) == 4


def test_a_corrupt_member_is_an_error_of_that_member_only(tmp_path: Path) -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        for name, data in (("a.bin", PNG), ("b.bin", b"second member, intact"), ("c.bin", PNG)):
            archive.writestr(name, data)
    broken = buffer.getvalue().replace(b"second member, intact", b"second member, CHANGE")  # its CRC no longer fits
    (tmp_path / "broken.zip").write_bytes(bytes(broken))
    items = list(Expander(_settings(tmp_path)).local_file(tmp_path / "broken.zip"))
    top = str(tmp_path / "broken.zip")
    assert [i.path for i in items] == [f"{top}!/a.bin", f"{top}!/b.bin", f"{top}!/c.bin"]
    assert items[0].error is None and items[2].error is None and items[2].data == PNG
    assert items[1].error is not None and items[1].error.startswith("corrupt member: ")


def test_a_truncated_archive_is_one_error(tmp_path: Path) -> None:
    data = _tar_gz({"a": PNG * 50})
    (tmp_path / "cut.tgz").write_bytes(data[: len(data) // 2])
    items = list(Expander(_settings(tmp_path)).local_file(tmp_path / "cut.tgz"))
    assert len(items) == 1 and items[0].path == str(tmp_path / "cut.tgz")
    assert items[0].error is not None and items[0].error.startswith("corrupt or unreadable ")


def test_a_memory_filesystem_source_is_planned_and_read(tmp_path: Path) -> None:
    import fsspec

    fs = fsspec.filesystem("memory")
    fs.pipe("/scan-test/a/one.bin", PNG)
    fs.pipe("/scan-test/b.zip", _zip({"m.bin": PNG}))
    settings = _settings(tmp_path, scan_partition_items=1)
    specs = plan(["memory://scan-test"], settings)
    assert specs == [
        {"kind": "urls", "source": "memory://scan-test", "urls": ["memory:///scan-test/a/one.bin"]},
        {"kind": "urls", "source": "memory://scan-test", "urls": ["memory:///scan-test/b.zip"]},
    ]
    items = [i for spec in specs for i in Expander(settings).partition(spec)]
    assert [(i.path, i.data) for i in items] == [
        ("memory:///scan-test/a/one.bin", PNG),
        ("memory:///scan-test/b.zip!/m.bin", PNG),
    ]
    with pytest.raises(ScanError, match="no such object"):
        plan(["memory://scan-test/missing"], settings)
    with pytest.raises(ScanError, match="no such file or folder"):
        plan([str(tmp_path / "missing")], settings)
    fs.rm("/scan-test", recursive=True)
