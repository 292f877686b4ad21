"""Benign pictures in every format the self-report page meets, and hashing many files in one
Chromium page load (shared by the self-report tests and bench/selfreport.py)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from seawall.media.synthetic import benign_image

PICTURE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp")


def _exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


def _soft_alpha(rgb: Image.Image) -> Image.Image:
    w, h = rgb.size
    ramp = np.tile(np.linspace(0, 255, w, dtype=np.float32), (h, 1))
    ramp = (ramp * np.linspace(0.2, 1, h, dtype=np.float32)[:, None]).astype(np.uint8)
    rgba = rgb.convert("RGBA")
    rgba.putalpha(Image.fromarray(ramp))
    return rgba


def generated_images(folder: Path) -> list[Path]:
    """Write the generated conformance set: JPEG (baseline, progressive, greyscale, CMYK, EXIF
    orientations 1-8), PNG (palette, greyscale, RGBA soft alpha, greyscale+alpha, 16-bit, eXIf 6),
    WebP (lossy, lossless, alpha), GIF and BMP; some larger than 512 px (sampled), some smaller."""
    folder.mkdir(parents=True, exist_ok=True)
    big = benign_image(11, 700, 530)
    small = benign_image(12, 160, 120)
    items: list[tuple[str, Image.Image, dict[str, Any]]] = [
        ("jpeg-baseline.jpg", big, {"quality": 90}),
        ("jpeg-small.jpg", small, {"quality": 85}),
        ("jpeg-progressive.jpg", big, {"quality": 90, "progressive": True}),
        ("jpeg-greyscale.jpg", big.convert("L"), {"quality": 90}),
        ("jpeg-cmyk.jpg", big.convert("CMYK"), {"quality": 92}),
        ("png-rgb.png", big, {}),
        ("png-palette.png", big.convert("P", palette=Image.Palette.ADAPTIVE, colors=64), {}),
        ("png-greyscale.png", small.convert("L"), {}),
        ("png-rgba-soft-alpha.png", _soft_alpha(big), {}),
        ("png-greyscale-alpha.png", _soft_alpha(small).convert("LA"), {}),
        ("png-exif-6.png", small, {"exif": _exif(6)}),
        ("webp-lossy.webp", big, {"quality": 80}),
        ("webp-lossless.webp", small, {"lossless": True}),
        ("webp-alpha.webp", _soft_alpha(small), {"lossless": True}),
        ("webp-exif-8.webp", small, {"quality": 90, "exif": _exif(8)}),
        ("gif.gif", big.convert("P", palette=Image.Palette.ADAPTIVE, colors=128), {}),
        ("bmp.bmp", small, {}),
    ]
    for orientation in range(1, 9):
        items.append((f"jpeg-exif-{orientation}.jpg", big, {"quality": 88, "exif": _exif(orientation)}))
    paths = []
    for name, image, options in items:
        out = io.BytesIO()
        fmt = {"jpg": "JPEG", "png": "PNG", "webp": "WEBP", "gif": "GIF", "bmp": "BMP"}[name.rsplit(".", 1)[1]]
        image.save(out, format=fmt, **options)
        (folder / name).write_bytes(out.getvalue())
        paths.append(folder / name)
    grey16 = np.asarray(small.convert("L"), dtype=np.uint16) * 257 + np.arange(160, dtype=np.uint16)[None, :]
    path16 = folder / "png-16bit-greyscale.png"
    Image.fromarray(grey16).save(path16, format="PNG")
    paths.append(path16)
    return paths


def reference_pictures(reference: Path) -> list[Path]:
    """Every picture of the PDQ reference set, in a stable order."""
    return sorted(p for p in (reference / "pdq").rglob("*") if p.suffix.lower() in PICTURE_SUFFIXES)


HASH_ALL = """async ({selector, dihedral}) => {
  const m = await import('/static/selfreport/decode.js');
  const out = [];
  const started = performance.now();
  for (const file of document.querySelector(selector).files) {
    try { out.push(await m.hashFile(file, {dihedral})); } catch (e) { out.push({error: String(e)}); }
  }
  return {results: out, seconds: (performance.now() - started) / 1000};
}"""


def hash_in_page(page: Any, files: list[Path], *, dihedral: bool = True) -> tuple[list[dict[str, Any]], float]:
    """Hash every file in the page already open, in one go, through a test-only file input the test
    adds (the page's own input would start its flow). Returns the results and the seconds taken."""
    page.evaluate(
        """() => { const i = document.createElement('input'); i.type = 'file'; i.multiple = true;
        i.id = 'test-only-files'; i.hidden = true; document.body.append(i); }"""
    )
    page.set_input_files("#test-only-files", [str(p) for p in files])
    answer = page.evaluate(HASH_ALL, {"selector": "#test-only-files", "dihedral": dihedral})
    page.evaluate("() => document.getElementById('test-only-files').remove()")
    return answer["results"], float(answer["seconds"])
