"""PDQ hashing speed: python-threatexchange's path vs Seawall's exact and --fast paths.

Generates benign 1-12 MP JPEGs (gradients, checks and noise) in a temporary folder, adds Meta's
benign reference images when present, and measures images per second with 2 worker processes
for, in the same run:

  (a) python-threatexchange's PDQ path: Pillow at full resolution, convert("RGB"), pdqhash.compute
  (b) Seawall's exact path (reference-exact; checked against the C++ reference CSV)
  (c) Seawall --fast (reduced-size JPEG decoding), with its deviation from (b) in bits

Run: .venv/bin/python bench/hash.py [--images N] [--workers 2]
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import tempfile
import time
from collections.abc import Callable
from multiprocessing import get_context
from pathlib import Path

import numpy as np
from PIL import Image

from seawall.media.synthetic import benign_image

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get("SEAWALL_REFERENCE_DATA", ROOT.parent / "shared" / "data"))


def threatexchange_pdq(path: str) -> str:
    """As python-threatexchange's pdq_hasher.pdq_from_file does it."""
    import pdqhash

    img = Image.open(path).convert("RGB")
    vector, _quality = pdqhash.compute(np.asarray(img))
    bits = "".join(str(int(b)) for b in vector)
    return f"{int(bits, 2):064x}"


def seawall_pdq(path: str) -> str:
    from seawall.media.image import open_image, pdq_pixels
    from seawall.signals.pdq import pdq_hash_rgb

    value, _quality = pdq_hash_rgb(pdq_pixels(open_image(path), name=path))
    return value.hex()


def seawall_pdq_fast(path: str) -> str:
    from seawall.media.image import open_image, pdq_pixels
    from seawall.signals.pdq import pdq_hash_rgb

    value, _quality = pdq_hash_rgb(pdq_pixels(open_image(path), name=path, fast=True))
    return value.hex()


def _warm() -> None:
    # Compile/load numba kernels and Pillow plugins before timing.
    import pdqhash

    from seawall.signals.pdq import pdq_hash_rgb

    pdq_hash_rgb(np.zeros((64, 64, 3), np.uint8))
    pdqhash.compute(np.zeros((64, 64, 3), np.uint8))


def make_images(folder: Path, count: int) -> list[str]:
    paths = []
    for i in range(count):
        mp = 1 + (11 * i) // max(count - 1, 1)  # 1 .. 12 megapixels
        w = int((mp * 1_000_000 * 4 / 3) ** 0.5)
        h = int(w * 3 / 4)
        path = folder / f"bench-{i:02d}-{w}x{h}.jpg"
        benign_image(42 + i, w, h).save(path, quality=90)
        paths.append(str(path))
    return paths


def run(fn: Callable[[str], str], paths: list[str], workers: int, repeat: int) -> tuple[float, list[str]]:
    with get_context("spawn").Pool(workers, initializer=_warm) as pool:
        pool.map(_noop, range(workers * 4))  # all workers up before timing
        best = float("inf")
        out: list[str] = []
        for _ in range(repeat):
            t0 = time.perf_counter()
            out = pool.map(fn, paths, chunksize=1)
            best = min(best, time.perf_counter() - t0)
    return len(paths) / best, out


def _noop(_: int) -> None:
    time.sleep(0.05)


def reference_check() -> tuple[int, int, list[str]]:
    csv_path = REFERENCE / "pdq/expected/cpp-reference-generated-here.csv"
    if not csv_path.exists():
        return 0, 0, []
    with open(csv_path) as fh:
        rows = list(csv.DictReader(fh))
    paths = [str(REFERENCE / "pdq" / r["path"]) for r in rows]
    got = [seawall_pdq(p) for p in paths]
    misses = [r["path"] for r, h in zip(rows, got, strict=True) if h != r["hash"]]
    return len(rows) - len(misses), len(rows), misses


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--images", type=int, default=12)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=2)
    args = ap.parse_args()

    ok, total, misses = reference_check()
    if total:
        print(f"reference exactness: {ok}/{total} exact (misses: {', '.join(misses) or 'none'})")
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_images(Path(tmp), args.images)
        if (REFERENCE / "pdq").is_dir():
            paths += sorted(str(p) for p in (REFERENCE / "pdq/pdq/data/reg-test-input/exif-rotn").glob("*.jpg"))
        sizes = [Image.open(p).size for p in paths]
        mp = sum(w * h for w, h in sizes) / len(sizes) / 1e6
        print(f"{len(paths)} JPEGs, mean {mp:.1f} MP, {args.workers} worker processes")
        base_rate, _ = run(threatexchange_pdq, paths, args.workers, args.repeat)
        exact_rate, exact = run(seawall_pdq, paths, args.workers, args.repeat)
        fast_rate, fast = run(seawall_pdq_fast, paths, args.workers, args.repeat)
    dev = [(int(a, 16) ^ int(b, 16)).bit_count() for a, b in zip(exact, fast, strict=True)]
    n_gen = args.images
    print(f"(a) threatexchange path : {base_rate:7.2f} images/s")
    print(f"(b) seawall exact       : {exact_rate:7.2f} images/s  = {exact_rate / base_rate:.2f}x (a)")
    print(
        f"(c) seawall --fast      : {fast_rate:7.2f} images/s  = {fast_rate / base_rate:.2f}x (a), "
        f"{fast_rate / exact_rate:.2f}x (b); deviation from exact: mean {np.mean(dev):.1f} bits, "
        f"max {max(dev)} bits"
    )
    photos = dev[n_gen:]
    if photos:
        print(
            f"    --fast deviation on generated images: mean {np.mean(dev[:n_gen]):.1f}, max "
            f"{max(dev[:n_gen])}; on the {len(photos)} reference photos: mean "
            f"{np.mean(photos):.1f}, max {max(photos)} bits"
        )


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "bench"))
    main()
