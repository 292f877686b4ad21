"""Region detection: exact boxes on constructed pictures (docs/regions.md)."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageOps

from seawall.media import regions
from seawall.media.regions import Region, embedded_box, find_regions, trim_box
from seawall.media.synthetic import benign_image
from seawall.signals.hashing import hash_file
from seawall.signals.pdq import hamming, pdq_hash_rgb

PICTURE = benign_image(11, 200, 150)


def padded(border: tuple[int, int, int, int], fill: tuple[int, int, int], picture: Image.Image = PICTURE) -> np.ndarray:
    return np.asarray(ImageOps.expand(picture, border=border, fill=fill))


@pytest.mark.parametrize("fill", [(0, 0, 0), (255, 255, 255), (200, 30, 60), (40, 120, 200)])
@pytest.mark.parametrize("width", [3, 20, 75])
def test_borders_of_each_colour_and_width_are_trimmed_exactly(fill: tuple[int, int, int], width: int) -> None:
    rgb = padded((width, width, width, width), fill)
    assert trim_box(rgb) == (width, width, width + 200, width + 150)
    assert find_regions(rgb)[0] == Region("trimmed", (width, width, width + 200, width + 150))


def test_asymmetric_padding_and_letterboxing() -> None:
    assert trim_box(padded((40, 10, 5, 60), (255, 255, 255))) == (40, 10, 240, 160)
    letterbox = padded((0, 90, 0, 90), (0, 0, 0))  # to a phone's aspect ratio: top and bottom only
    assert trim_box(letterbox) == (0, 90, 200, 240)


def test_a_frame_of_two_colours_inside_padding() -> None:
    framed = ImageOps.expand(ImageOps.expand(PICTURE, border=6, fill=(180, 140, 20)), border=25, fill=(250, 250, 250))
    assert trim_box(np.asarray(framed)) == (31, 31, 231, 181)


def test_picture_touching_the_canvas_edge() -> None:
    rgb = padded((0, 0, 50, 30), (0, 0, 0))  # padding right and bottom only
    assert trim_box(rgb) == (0, 0, 200, 150)
    assert [r.kind for r in find_regions(rgb)][:1] == ["trimmed"]


def test_noisy_jpeg_borders_are_trimmed_to_within_a_few_pixels() -> None:
    rng = np.random.default_rng(5)
    rgb = padded((30, 30, 30, 30), (20, 20, 20)).astype(np.int16)
    rgb = np.clip(rgb + rng.normal(0, 4, rgb.shape), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(rgb).save(out, "JPEG", quality=75)
    noisy = np.asarray(Image.open(io.BytesIO(out.getvalue())).convert("RGB"))
    x0, y0, x1, y1 = trim_box(noisy)
    assert abs(x0 - 30) <= 2 and abs(y0 - 30) <= 2 and abs(x1 - 230) <= 2 and abs(y1 - 180) <= 2
    value, _ = pdq_hash_rgb(np.ascontiguousarray(noisy[y0:y1, x0:x1]))
    assert hamming(value, pdq_hash_rgb(np.asarray(PICTURE))[0]) <= 31


def test_no_border_no_region_and_no_extra_hash(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # type: ignore[no-untyped-def]
    rgb = np.asarray(PICTURE)
    assert find_regions(rgb) == []
    calls: list[int] = []
    real = regions.trim_box
    monkeypatch.setattr(regions, "trim_box", lambda *a, **k: calls.append(1) or real(*a, **k))
    path = tmp_path / "plain.png"
    PICTURE.save(path)
    hashed = hash_file(path, ("pdq",), regions=True)
    assert hashed["pdq_regions"] == [] and calls == []  # nothing beyond the four edge lines looked at


def screenshot(picture: Image.Image, layout: str) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """A benign screenshot-like canvas holding ``picture``; and where the picture is."""
    pw, ph = picture.size
    if layout == "phone":
        canvas = Image.new("RGB", (pw + 40, ph + 260), (255, 255, 255))
        draw = ImageDraw.Draw(canvas)
        draw.rectangle((0, 0, pw + 40, 40), fill=(30, 30, 30))  # status bar with "icons"
        for x in range(10, 120, 22):
            draw.rectangle((x, 12, x + 12, 28), fill=(240, 240, 240))
        for y in range(ph + 130, ph + 240, 22):  # "text" lines under the picture
            for x in range(20, pw, 18):
                draw.rectangle((x, y, x + 11, y + 9), fill=(60, 60, 60))
        at = (20, 100)
    elif layout == "desktop":
        canvas = Image.new("RGB", (pw + 260, ph + 120), (230, 230, 235))
        draw = ImageDraw.Draw(canvas)
        draw.rectangle((0, 0, pw + 260, 32), fill=(50, 70, 120))  # title bar
        draw.rectangle((0, 32, 150, ph + 120), fill=(245, 245, 245))  # side panel with items
        for y in range(50, ph + 100, 26):
            draw.rectangle((12, y, 130, y + 12), fill=(120, 120, 120))
        at = (190, 62)
    else:  # chat: bubbles above and below, the picture in its own bubble
        canvas = Image.new("RGB", (pw + 160, ph + 240), (236, 229, 221))
        draw = ImageDraw.Draw(canvas)
        draw.rounded_rectangle((20, 20, 220, 70), 12, fill=(255, 255, 255))
        draw.rounded_rectangle((pw - 40, ph + 160, pw + 140, ph + 220), 12, fill=(220, 248, 198))
        draw.rounded_rectangle((96, 86, pw + 144, ph + 144), 12, fill=(220, 248, 198))
        at = (120, 110)
    canvas.paste(picture, at)
    return np.asarray(canvas), (at[0], at[1], at[0] + pw, at[1] + ph)


@pytest.mark.parametrize("layout", ["phone", "desktop", "chat"])
def test_the_picture_embedded_in_a_screenshot_is_found(layout: str) -> None:
    rgb, where = screenshot(PICTURE, layout)
    box = embedded_box(rgb)
    assert box == where
    found = {r.kind: r.box for r in find_regions(rgb)}
    assert where in found.values()


@pytest.mark.parametrize(("degrees", "fill"), [(3, (0, 0, 0)), (-2, (255, 255, 255)), (5, (40, 40, 40))])
def test_a_small_rotation_on_a_filled_canvas_is_undone(degrees: float, fill: tuple[int, int, int]) -> None:
    turned = np.asarray(PICTURE.rotate(degrees, expand=True, fillcolor=fill, resample=Image.Resampling.BILINEAR))
    whole, _ = pdq_hash_rgb(turned)
    original, _ = pdq_hash_rgb(np.asarray(PICTURE))
    assert hamming(whole, original) > 31  # PDQ alone misses it
    [rotated] = [r for r in find_regions(turned) if r.kind == "rotated"]
    assert abs(rotated.angle - degrees) <= 0.3
    value, _ = pdq_hash_rgb(regions.region_pixels(turned, rotated))
    assert hamming(value, original) <= 31


def test_an_unrotated_picture_with_plain_padding_is_not_rotated() -> None:
    assert [r.kind for r in find_regions(padded((20, 20, 20, 20), (0, 0, 0)))] == ["trimmed"]
