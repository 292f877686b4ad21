"""hash_file and the ``seawall hash`` command."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from seawall.signals.cli import register
from seawall.signals.hashing import hash_file, parse_signal_names


def _picture(path: Path, size: tuple[int, int] = (640, 480), fmt: str | None = None) -> Path:
    w, h = size
    y, x = np.mgrid[0:h, 0:w]
    rgb = np.stack([x * 255 // w, y * 255 // h, ((x // 16 + y // 16) % 2) * 200], -1)
    Image.fromarray(rgb.astype(np.uint8)).save(path, format=fmt)
    return path


def _app() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.callback()
    def root() -> None:
        """Root (so ``hash`` stays a sub-command)."""

    return app


def test_crypto_hashes_equal_hashlib(tmp_path: Path) -> None:
    path = _picture(tmp_path / "a.png")
    data = path.read_bytes()
    out = hash_file(path)
    assert out["media"] == "image"
    assert out["md5"] == hashlib.md5(data).hexdigest()
    assert out["sha1"] == hashlib.sha1(data).hexdigest()
    assert out["sha256"] == hashlib.sha256(data).hexdigest()
    assert len(out["pdq"]) == 64 and out["pdq"] == out["pdq"].lower()
    assert list(out) == ["path", "media", "md5", "sha1", "sha256", "pdq", "pdq_quality"]


def test_signal_selection(tmp_path: Path) -> None:
    path = _picture(tmp_path / "a.png")
    assert set(hash_file(path, signals="sha256")) == {"path", "media", "sha256"}
    assert parse_signal_names(" MD5, pdq ,md5") == ("md5", "pdq")
    with pytest.raises(KeyError, match="unknown signal type 'crc'"):
        parse_signal_names("md5,crc")


def test_content_decides_not_extension(tmp_path: Path) -> None:
    png = _picture(tmp_path / "a.png")
    disguised = tmp_path / "a.jpg"
    disguised.write_bytes(png.read_bytes())
    assert hash_file(disguised, signals="pdq")["pdq"] == hash_file(png, signals="pdq")["pdq"]


def test_cli_lines_errors_and_exit_status(tmp_path: Path, reference_data: Path) -> None:
    good = reference_data / "pdq/pdq/data/reg-test-input/dih/bridge-1-original.jpg"
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    result = CliRunner().invoke(_app(), ["hash", str(good), str(bad), "--signals", "md5,pdq"])
    assert result.exit_code == 1
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines == [
        {
            "path": str(good),
            "media": "image",
            "md5": hashlib.md5(good.read_bytes()).hexdigest(),
            "pdq": "d8f8f0cee0f4a84f0637022a078f67f0b36e2ed596621e1d33e6339c4e9c9b22",
            "pdq_quality": 100,
        },
        {"path": str(bad), "error": "not a supported image or video format"},
    ]


def test_cli_dihedral_recursive_and_success(tmp_path: Path, reference_data: Path) -> None:
    src = reference_data / "pdq/pdq/data/reg-test-input/dih/bridge-1-original.jpg"
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.jpg").write_bytes(src.read_bytes())
    _picture(tmp_path / "a.png", (64, 64))
    runner = CliRunner()
    result = runner.invoke(_app(), ["hash", str(tmp_path), "-r", "--signals", "pdq", "--dihedral"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [Path(x["path"]).name for x in lines] == ["a.png", "b.jpg"]
    across = reference_data / "pdq/expected/cpp-reference-generated-here-pdqdih-across.txt"
    expected = across.read_text().splitlines()[0].split(",")[:8]
    assert lines[1]["pdq_dihedral"] == expected
    # A folder without --recursive is an error line, not a crash.
    result = runner.invoke(_app(), ["hash", str(tmp_path)])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"].startswith("is a folder")
    result = runner.invoke(_app(), ["hash", str(tmp_path), "--signals", "bogus"])
    assert result.exit_code == 2 and "unknown signal type" in result.output


def test_fast_mode_is_close(tmp_path: Path) -> None:
    path = tmp_path / "big.jpg"
    _picture(path, (2400, 1800), "JPEG")
    exact = int(hash_file(path, signals="pdq")["pdq"], 16)
    fast = int(hash_file(path, signals="pdq", fast=True)["pdq"], 16)
    assert (exact ^ fast).bit_count() <= 24


def test_video_gets_crypto_and_vpdq_not_pdq(reference_data: Path) -> None:
    video = reference_data / "vpdq/tmk/sample-videos/test-padded-dimensions.mp4"
    out = hash_file(video, signals="md5,pdq,vpdq", every_n_frames=30)
    assert out["media"] == "video"
    assert out["md5"] == hashlib.md5(video.read_bytes()).hexdigest()
    assert "pdq" not in out
    frames = out["vpdq"]
    assert [f["frame"] for f in frames[:3]] == [0, 30, 60]
    assert frames[0]["pdq"] == "e6cf059c4c6696362cc9d6663cd9c263714169d98327399993363d9c3d9cc666"
    assert frames[0]["quality"] == 100 and frames[0]["timestamp"] == 0.0


def test_animated_gif_gets_pdq_of_its_first_frame_and_vpdq_of_every_frame(tmp_path: Path) -> None:
    from PIL import Image

    from seawall.media.synthetic import benign_image
    from seawall.signals.pdq import pdq_hash_rgb

    frames = [benign_image(300 + i, 160, 120, noise=0) for i in range(3)]
    path = tmp_path / "anim.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    still = tmp_path / "still.gif"
    frames[0].save(still)
    out = hash_file(path)
    assert out["media"] == "image"
    assert out["pdq"] == hash_file(still)["pdq"]
    assert [f["frame"] for f in out["vpdq"]] == [0, 1, 2]
    with Image.open(path) as gif:
        gif.seek(1)
        second = np.asarray(gif.convert("RGB"))
    assert out["vpdq"][1]["pdq"] == pdq_hash_rgb(second)[0].hex()
    assert "vpdq" not in hash_file(still)
