"""Recall of PDQ on edited copies: the whole picture alone vs with its regions (docs/regions.md).

Generates benign pictures of three families (photograph-like colour fields, generated landscape
scenes, text-free graphics; scikit-image's sample photographs too when it is installed), lists
their PDQ hashes, applies edits — the ones PDQ survives (re-encode, resize, greyscale, blur,
noise, a 3% crop) and the ones it does not (padding and letterboxing in black, white and colour,
frames, screenshot canvases of three layouts, 1-5 degree rotations on a filled canvas) — and
hashes each copy exactly as an upload is hashed (``hash_file`` with the 8 dihedral variants, and
with regions). A copy is found when a hash is within the list threshold (31) of its own original.

Printed: per edit, recall whole vs with regions (and without the rotation step); false positives
(a copy or an unrelated picture within the threshold of another original) of each; the ratio of
total recall; the list side (a list built from padded originals, clean copies queried); and upload
hashing throughput with regions vs without, on photo-like pictures without borders, on every
family unedited, and on the edited mix.

Run: .venv/bin/python bench/recall.py [--count 30] [--distractors 300]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageOps

from seawall.media.synthetic import benign_image
from seawall.signals.hashing import hash_file
from seawall.signals.pdq import DIHEDRAL_NAMES

THRESHOLD = 31
Picture = Image.Image


# ---------------------------------------------------------------- families


def scene(seed: int, w: int, h: int) -> Picture:
    """A generated landscape: a graded sky, a sun, layered hills, a lake."""
    rng = np.random.default_rng(seed)
    top, bottom = rng.integers(40, 256, 3), rng.integers(40, 256, 3)
    t = np.linspace(0, 1, h)[:, None, None]
    sky = (top * (1 - t) + bottom * t).astype(np.float32) * np.ones((1, w, 1), np.float32)
    image = Image.fromarray(np.clip(sky, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    sx, sy, r = int(rng.integers(0, w)), int(rng.integers(0, h // 2)), int(rng.integers(h // 16, h // 6))
    draw.ellipse((sx - r, sy - r, sx + r, sy + r), fill=tuple(int(c) for c in rng.integers(180, 256, 3)))
    for layer in range(int(rng.integers(2, 5))):
        base = h * (0.45 + 0.12 * layer)
        xs = np.arange(0, w + 8, 8)
        ys = base + np.cumsum(rng.normal(0, h / 60, len(xs)))
        points = [(0, h), *zip(xs.tolist(), ys.tolist(), strict=True), (w, h)]
        draw.polygon(points, fill=tuple(int(c) for c in rng.integers(0, 200, 3)))
    if rng.random() < 0.5:
        draw.rectangle((0, int(h * 0.85), w, h), fill=tuple(int(c) for c in rng.integers(20, 160, 3)))
    rgb = np.asarray(image, dtype=np.float32) + rng.normal(0, 2, (h, w, 1))
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))


def graphic(seed: int, w: int, h: int) -> Picture:
    """Text-free graphics: stripes, checks, rings and shapes in a few flat colours."""
    rng = np.random.default_rng(seed)
    palette = [tuple(int(c) for c in rng.integers(0, 256, 3)) for _ in range(5)]
    image = Image.new("RGB", (w, h), palette[0])
    draw = ImageDraw.Draw(image)
    kind = seed % 3
    if kind == 0:
        step = int(rng.integers(10, 40))
        for i in range(-h, w, step):
            draw.polygon([(i, 0), (i + step // 2, 0), (i + step // 2 + h, h), (i + h, h)], fill=palette[1])
    elif kind == 1:
        step = int(rng.integers(16, 48))
        for y in range(0, h, step):
            for x in range(0, w, step):
                if (x // step + y // step) % 2:
                    draw.rectangle((x, y, x + step - 1, y + step - 1), fill=palette[1 + (x // step) % 3])
    else:
        cx, cy = int(rng.integers(w // 4, 3 * w // 4)), int(rng.integers(h // 4, 3 * h // 4))
        for i, r in enumerate(range(max(w, h), 0, -int(rng.integers(12, 30)))):
            draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=palette[i % 5])
    for _ in range(int(rng.integers(3, 8))):
        x0, y0 = int(rng.integers(0, w - 20)), int(rng.integers(0, h - 20))
        x1, y1 = x0 + int(rng.integers(10, w // 3)), y0 + int(rng.integers(10, h // 3))
        draw.rectangle((x0, y0, x1, y1), fill=palette[int(rng.integers(0, 5))])
    return image


def photographs() -> list[Picture]:
    """scikit-image's sample photographs, when it is installed (benign: astronaut, coffee, …)."""
    try:
        from skimage import data  # type: ignore[import-not-found]
    except ImportError:
        return []
    out = []
    for name in ("astronaut", "coffee", "chelsea", "rocket", "motorcycle_left"):
        try:
            array = getattr(data, name)()
        except Exception:  # a sample needing a download is skipped: the bench never fetches
            continue
        out.append(Image.fromarray(array[..., :3] if array.ndim == 3 else np.stack([array] * 3, -1)))
    return out


def originals(count: int) -> list[Picture]:
    sizes = [(400, 300), (480, 320), (360, 360), (320, 420)]
    out = []
    for i in range(count):
        w, h = sizes[i % len(sizes)]
        out.append(benign_image(1000 + i, w, h))
        out.append(scene(2000 + i, w, h))
        out.append(graphic(3000 + i, w, h))
    return out + photographs()


# ---------------------------------------------------------------- edits


def jpeg(image: Picture, quality: int = 70) -> Picture:
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return Image.open(io.BytesIO(out.getvalue())).convert("RGB")


def pad(fraction: float, fill: tuple[int, int, int]) -> Callable[[Picture], Picture]:
    def edit(image: Picture) -> Picture:
        return ImageOps.expand(image, border=round(max(image.size) * fraction), fill=fill)

    return edit


def letterbox(image: Picture) -> Picture:
    """To a phone's 9:19.5, in black, then JPEG (noisy borders)."""
    w, h = image.size
    height = max(h, round(w * 19.5 / 9))
    canvas = Image.new("RGB", (w, height), (0, 0, 0))
    canvas.paste(image, (0, (height - h) // 2))
    return jpeg(canvas, 80)


def pillarbox(image: Picture) -> Picture:
    w, h = image.size
    width = max(w, round(h * 16 / 9))
    canvas = Image.new("RGB", (width, h), (0, 0, 0))
    canvas.paste(image, ((width - w) // 2, 0))
    return canvas


def asymmetric(image: Picture) -> Picture:
    return ImageOps.expand(image, border=(70, 12, 8, 110), fill=(250, 250, 250))


def frame(image: Picture) -> Picture:
    inner = ImageOps.expand(image, border=8, fill=(170, 130, 40))
    return ImageOps.expand(inner, border=30, fill=(245, 240, 230))


def screenshot(layout: str) -> Callable[[Picture], Picture]:
    def edit(image: Picture) -> Picture:
        pw, ph = image.size
        if layout == "phone":
            canvas = Image.new("RGB", (pw + 40, ph + 300), (255, 255, 255))
            draw = ImageDraw.Draw(canvas)
            draw.rectangle((0, 0, pw + 40, 40), fill=(25, 25, 25))
            for x in range(10, 140, 22):
                draw.rectangle((x, 12, x + 12, 28), fill=(235, 235, 235))
            draw.rectangle((0, 40, pw + 40, 90), fill=(245, 245, 248))
            for y in range(ph + 130, ph + 280, 22):
                for x in range(20, pw, 18):
                    draw.rectangle((x, y, x + 11, y + 9), fill=(70, 70, 70))
            canvas.paste(image, (20, 100))
        elif layout == "desktop":
            canvas = Image.new("RGB", (pw + 300, ph + 140), (228, 228, 233))
            draw = ImageDraw.Draw(canvas)
            draw.rectangle((0, 0, pw + 300, 34), fill=(45, 65, 120))
            for x in range(pw + 220, pw + 290, 24):
                draw.rectangle((x, 10, x + 14, 24), fill=(220, 220, 230))
            draw.rectangle((0, 34, 170, ph + 140), fill=(246, 246, 246))
            for y in range(54, ph + 120, 26):
                draw.rectangle((14, y, 150, y + 12), fill=(125, 125, 125))
            canvas.paste(image, (220, 70))
        else:  # chat
            canvas = Image.new("RGB", (pw + 170, ph + 260), (236, 229, 221))
            draw = ImageDraw.Draw(canvas)
            draw.rounded_rectangle((20, 20, 240, 72), 12, fill=(255, 255, 255))
            for x in range(34, 220, 16):
                draw.rectangle((x, 38, x + 10, 48), fill=(90, 90, 90))
            draw.rounded_rectangle((96, 88, pw + 150, ph + 146), 12, fill=(220, 248, 198))
            draw.rounded_rectangle((pw - 60, ph + 170, pw + 150, ph + 236), 12, fill=(220, 248, 198))
            canvas.paste(image, (120, 112))
        return jpeg(canvas, 85)

    return edit


def rotate(degrees: float, fill: tuple[int, int, int] = (0, 0, 0)) -> Callable[[Picture], Picture]:
    def edit(image: Picture) -> Picture:
        return image.rotate(degrees, expand=True, fillcolor=fill, resample=Image.Resampling.BILINEAR)

    return edit


def crop(fraction: float) -> Callable[[Picture], Picture]:
    def edit(image: Picture) -> Picture:
        w, h = image.size
        dx, dy = round(w * fraction), round(h * fraction)
        return image.crop((dx, dy, w - dx, h - dy))

    return edit


SURVIVED: dict[str, Callable[[Picture], Picture]] = {
    "jpeg q70": jpeg,
    "resize 50%": lambda im: im.resize((im.width // 2, im.height // 2), Image.Resampling.BILINEAR),
    "greyscale": lambda im: ImageOps.grayscale(im).convert("RGB"),
    "blur r1": lambda im: im.filter(ImageFilter.GaussianBlur(1)),
    "noise 5": lambda im: Image.fromarray(
        np.clip(
            np.asarray(im, np.float32) + np.random.default_rng(7).normal(0, 5, (im.height, im.width, 3)), 0, 255
        ).astype(np.uint8)
    ),
    "crop 3%": crop(0.03),
}
MISSED: dict[str, Callable[[Picture], Picture]] = {
    "pad 10% black": pad(0.10, (0, 0, 0)),
    "pad 10% white": pad(0.10, (255, 255, 255)),
    "pad 10% colour": pad(0.10, (30, 90, 200)),
    "pad 25% grey": pad(0.25, (128, 128, 128)),
    "asymmetric pad": asymmetric,
    "letterbox 9:19.5 jpeg": letterbox,
    "pillarbox 16:9": pillarbox,
    "frame 2 colours": frame,
    "screenshot phone": screenshot("phone"),
    "screenshot desktop": screenshot("desktop"),
    "screenshot chat": screenshot("chat"),
    "rotate 1°": rotate(1),
    "rotate 3°": rotate(3),
    "rotate -3° white": rotate(-3, (255, 255, 255)),
    "rotate 5°": rotate(5),
}
BORDERED = [name for name in MISSED if not name.startswith("rotate")]


# ---------------------------------------------------------------- hashing and matching


def codes(values: list[str]) -> np.ndarray:
    return np.frombuffer(bytes.fromhex("".join(values)), dtype=np.uint8).reshape(len(values), 32)


class Listed:
    """The listed originals' hashes; distances by brute force (the index is exact, so the same)."""

    def __init__(self, values: list[str]) -> None:
        self.codes = codes(values)

    def within(self, queries: list[str]) -> set[int]:
        """Indices of listed originals within the threshold of any query hash."""
        if not queries:
            return set()
        xor = codes(queries)[:, None, :] ^ self.codes[None, :, :]
        distances = np.unpackbits(xor, axis=2).sum(axis=2)
        return {int(j) for j in np.flatnonzero((distances <= THRESHOLD).any(axis=0))}


def hashes_of(hashed: dict[str, Any], kinds: set[str]) -> list[str]:
    """The query hashes: the whole picture's 8 variants, and those of each region of ``kinds``."""
    out = list(hashed.get("pdq_dihedral") or ())
    for region in hashed.get("pdq_regions") or ():
        if region["region"] in kinds and region["pdq_quality"] >= 50:
            out.extend(region["pdq_dihedral"])
    return out


def hash_picture(image: Picture, folder: Path, *, regions: bool = True) -> dict[str, Any]:
    path = folder / "query.png"
    image.save(path, compress_level=1)
    return hash_file(path, ("pdq",), dihedral=True, regions=regions)


ALL = {"trimmed", "embedded", "rotated"}
NO_ROTATION = {"trimmed", "embedded"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=30, help="pictures per family (default 30)")
    parser.add_argument("--distractors", type=int, default=300, help="unrelated pictures (default 300)")
    args = parser.parse_args()
    assert len(DIHEDRAL_NAMES) == 8
    pictures = originals(args.count)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        listed_values = [hash_picture(p, folder, regions=False)["pdq"] for p in pictures]
        listed = Listed(listed_values)
        rows: list[tuple[str, int, int, int, int]] = []
        false_whole = false_regions = 0
        region_counts: dict[str, int] = {}
        for name, edit in {**SURVIVED, **MISSED}.items():
            whole = regions = no_rotation = 0
            for i, picture in enumerate(pictures):
                hashed = hash_picture(edit(picture), folder)
                region_counts[name] = region_counts.get(name, 0) + len(hashed["pdq_regions"])
                by_whole = listed.within(hashes_of(hashed, set()))
                by_regions = listed.within(hashes_of(hashed, ALL))
                whole += i in by_whole
                regions += i in by_regions
                no_rotation += i in listed.within(hashes_of(hashed, NO_ROTATION))
                false_whole += len(by_whole - {i})
                false_regions += len(by_regions - {i})
            rows.append((name, len(pictures), whole, no_rotation, regions))

        # Distractors: unrelated pictures, plain and with the same edits (so their regions are hashed too).
        distractor_whole = distractor_regions = distractor_hashes = 0
        makers = [benign_image, scene, graphic]
        edits = [lambda im: im, *MISSED.values()]
        for k in range(args.distractors):
            w, h = [(400, 300), (480, 320), (360, 360)][k % 3]
            picture = makers[k % 3](50_000 + k, w, h)
            hashed = hash_picture(edits[k % len(edits)](picture), folder)
            distractor_hashes += 1 + len(hashed["pdq_regions"])
            distractor_whole += len(listed.within(hashes_of(hashed, set())))
            distractor_regions += len(listed.within(hashes_of(hashed, ALL)))

        # The list side: originals listed padded (with and without their trimmed hash), clean copies queried.
        padded = [pad(0.12, (0, 0, 0))(p) for p in pictures]
        padded_hashed = [hash_picture(p, folder) for p in padded]
        plain_list = Listed([h["pdq"] for h in padded_hashed])
        trimmed = [
            next((r["pdq"] for r in h["pdq_regions"] if r["region"] == "trimmed"), h["pdq"]) for h in padded_hashed
        ]
        trimmed_list = Listed(trimmed)
        side_plain = side_trimmed = 0
        for i, picture in enumerate(pictures):
            query = hashes_of(hash_picture(jpeg(picture, 80), folder, regions=False), set())
            side_plain += i in plain_list.within(query)
            side_trimmed += i in (plain_list.within(query) | trimmed_list.within(query))

        # Throughput: hashing an upload as /v1/match does, with regions vs without.
        plain_set = pictures[: min(len(pictures), 60)]
        photo_like = [benign_image(70_000 + k, *[(640, 480), (800, 600), (600, 800)][k % 3]) for k in range(30)]
        mixed_set = [edit(p) for p, edit in zip(plain_set, [*MISSED.values(), *SURVIVED.values()] * 10, strict=False)]
        speeds = {}
        sets = (
            ("photo-like pictures", photo_like),
            ("all families unedited", plain_set),
            ("the edited mix", mixed_set),
        )
        for label, images in sets:
            paths = []
            for j, image in enumerate(images):
                path = folder / f"upload-{label[:5]}-{j}.jpg"
                image.save(path, "JPEG", quality=90)
                paths.append(path)
            per = {}
            for regions_on in (False, True, False, True):
                start = time.perf_counter()
                for path in paths:
                    hash_file(path, dihedral=True, regions=regions_on)
                rate = len(paths) / (time.perf_counter() - start)
                per[regions_on] = max(per.get(regions_on, 0.0), rate)
            speeds[label] = per

    total = len(pictures)
    print(
        f"{total} listed pictures ({args.count} per family: colour fields, scenes, graphics), threshold {THRESHOLD}\n"
    )
    print(f"{'edit':<24}{'whole':>8}{'regions':>9}{'no rot.':>9}{'regions/copy':>14}")
    sums = [0, 0, 0]
    bordered = [0, 0]
    for name, n, whole, no_rotation, regions in rows:
        print(
            f"{name:<24}{100 * whole / n:>7.1f}%{100 * regions / n:>8.1f}%{100 * no_rotation / n:>8.1f}%"
            f"{region_counts[name] / n:>14.2f}"
        )
        sums[0] += whole
        sums[1] += regions
        sums[2] += no_rotation
        if name in BORDERED:
            bordered[0] += whole
            bordered[1] += regions
    copies = total * len(rows)
    print(
        f"\nall edits: whole {100 * sums[0] / copies:.1f}%, with regions {100 * sums[1] / copies:.1f}% "
        f"(without the rotation step {100 * sums[2] / copies:.1f}%)"
    )
    ratio = sums[1] / max(1, sums[0])
    print(f"total recall ratio (regions / whole): {ratio:.2f}x")
    n_b = total * len(BORDERED)
    print(
        f"bordered, letterboxed, framed, screenshot copies: whole {100 * bordered[0] / n_b:.1f}%, "
        f"with regions {100 * bordered[1] / n_b:.1f}%"
    )
    print(
        f"false positives among the copies (a copy within {THRESHOLD} of another original): "
        f"whole {false_whole}, with regions {false_regions}"
    )
    print(
        f"false positives on {args.distractors} unrelated pictures ({distractor_hashes} hashes with regions): "
        f"whole {distractor_whole}, with regions {distractor_regions}"
    )
    print(
        f"list side, clean JPEG copies of pictures listed padded: whole {100 * side_plain / total:.1f}%, "
        f"with the entries' trimmed hashes {100 * side_trimmed / total:.1f}%"
    )
    for label, per in speeds.items():
        print(
            f"upload hashing throughput, {label}: without regions {per[False]:.1f}/s, with {per[True]:.1f}/s, "
            f"ratio {per[True] / per[False]:.2f}x"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
