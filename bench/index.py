"""Benchmark: Seawall's HammingIndex against FAISS IndexBinaryFlat and IndexBinaryMultiHash.

    .venv/bin/python bench/index.py              # N = 1e5, 1e6 (a few minutes)
    .venv/bin/python bench/index.py --full       # adds N = 1e7 (needs ~4 GB free, ~15 min)
    .venv/bin/python bench/index.py --sizes 2e5 --datasets clustered

Each (engine, N, dataset) runs in its own subprocess so resident-memory figures are separable.
Data are generated from a fixed seed, so every engine sees the same codes and queries:
1000 queries planted at distances 0..31 from entries (spread evenly) and 1000 unrelated ones.
Every engine's batched result set is asserted equal to FAISS IndexBinaryFlat (exact brute
force) and, for a sample of queries, to a numpy brute force. Figures are printed with the
ratios against the FAISS engines measured in the same run; no absolute target is asserted.
"""

from __future__ import annotations

import argparse
import gc
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

BITS = 256
THRESHOLD = 31
ENGINES = ("seawall", "faiss-flat", "faiss-mih")


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def flip_bits(codes: np.ndarray, counts: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Flip exactly counts[i] distinct random bits of codes[i] (vectorised)."""
    bits = np.unpackbits(codes, axis=1)
    keys = rng.random(bits.shape)
    ranks = np.argsort(keys, axis=1)  # random permutation of bit positions per row
    mask = np.zeros(bits.shape, dtype=bool)
    cols = np.arange(bits.shape[1])[None, :] < counts[:, None]
    np.put_along_axis(mask, ranks, cols, axis=1)
    return np.packbits(bits ^ mask, axis=1)


def _jpeg(image: Any, quality: int) -> Any:
    from PIL import Image

    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue()))


# Near-duplicate edits (PDQ survives these; crops, rotations and borders it does not, so they are
# left out). The listed copies of a picture and the copies that come back as queries differ.
def _listed_edits(im: Any) -> list[Any]:
    from PIL import ImageEnhance, ImageFilter, ImageOps

    return [
        im,
        _jpeg(im, 60),
        _jpeg(im, 30),
        im.resize((im.width // 2, im.height // 2)),
        ImageEnhance.Brightness(im).enhance(1.2),
        ImageEnhance.Contrast(im).enhance(0.8),
        ImageOps.grayscale(im),
        im.filter(ImageFilter.GaussianBlur(1.5)),
        _jpeg(im.resize((im.width * 3 // 4, im.height * 3 // 4)), 70),
    ]


def _query_edits(im: Any) -> list[Any]:
    from PIL import ImageEnhance, ImageFilter, ImageOps

    return [
        _jpeg(ImageEnhance.Brightness(im).enhance(0.85), 50),
        im.resize((im.width * 3 // 5, im.height * 3 // 5)),
        ImageOps.grayscale(im.filter(ImageFilter.GaussianBlur(1))),
        _jpeg(ImageEnhance.Contrast(im).enhance(1.2), 80),
    ]


def _pdq(image: Any) -> np.ndarray:
    from seawall.signals.pdq import pdq_hash_rgb

    return np.frombuffer(pdq_hash_rgb(np.asarray(image.convert("RGB")))[0], dtype=np.uint8)


def _picture_family(seed: int) -> tuple[np.ndarray, np.ndarray]:
    from seawall.media.synthetic import benign_image

    im = benign_image(seed, 384, 288)
    return np.stack([_pdq(e) for e in _listed_edits(im)]), np.stack([_pdq(e) for e in _query_edits(im)])


PICTURES = 300  # listed pictures (9 copies each) and 1000 unlisted ones
UNLISTED_SEED = 1_000_000


def _unlisted(seed: int) -> np.ndarray:
    from seawall.media.synthetic import benign_image

    return _pdq(benign_image(seed, 384, 288))


def picture_codes() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Real PDQ codes of generated benign pictures: (listed (PICTURES, 9, 32) — each picture and
    8 near-duplicate edits, near queries (PICTURES, 4, 32) — other edits of the same pictures,
    far queries (1000, 32) — pictures not listed). Hashed once (~10 s) and cached in the temp
    folder, since every engine's process needs the same codes."""
    from concurrent.futures import ProcessPoolExecutor

    cache = Path(tempfile.gettempdir()) / f"seawall-bench-pictures-{PICTURES}-v1.npz"
    if cache.exists():
        with np.load(cache) as saved:
            return saved["listed"], saved["near"], saved["far"]
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        families = list(pool.map(_picture_family, range(PICTURES), chunksize=10))
        far = np.stack(list(pool.map(_unlisted, range(UNLISTED_SEED, UNLISTED_SEED + 1000), chunksize=50)))
    listed = np.stack([f[0] for f in families])
    near = np.stack([f[1] for f in families])
    partial = cache.with_suffix(".partial.npz")
    np.savez(partial, listed=listed, near=near, far=far)
    partial.replace(cache)
    return listed, near, far


def balanced_codes(n: int, rng: np.random.Generator) -> np.ndarray:
    """Random codes with exactly 128 of 256 bits set, as PDQ's median threshold makes them."""
    keys = rng.random((n, BITS), dtype=np.float32)
    bits = keys < np.partition(keys, BITS // 2, axis=1)[:, BITS // 2 : BITS // 2 + 1]
    return np.packbits(bits, axis=1)


def make_data(n: int, dataset: str, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """(codes, queries).

    ``uniform``: random codes; queries are 1000 entries with 0..31 bits flipped (evenly spread)
    and 1000 random codes.

    ``clustered``: real lists hold clusters — a picture and its re-encodes, resizes, filters.
    The set holds real PDQ codes of PICTURES generated pictures with 8 edits each; the queries
    are 1000 other edits of those pictures (each hits a whole cluster) and 1000 codes of
    pictures not listed. The rest of the N entries are clusters of 9 around balanced random
    centres, each member as far from its centre as a real edit is from its picture (sampled
    from the distances measured on the real ones), so buckets are as uneven as real lists'.
    """
    rng = _rng(seed)
    if dataset == "uniform":
        codes = rng.integers(0, 256, size=(n, BITS // 8), dtype=np.uint8)
        qrng = _rng(seed + 1)
        near = codes[qrng.integers(0, n, 1000)]
        near = flip_bits(near, np.arange(1000) % (THRESHOLD + 1), qrng)
        far = qrng.integers(0, 256, size=(1000, BITS // 8), dtype=np.uint8)
        return codes, np.concatenate([near, far])
    listed, near_real, far_real = picture_codes()
    real = listed.reshape(-1, BITS // 8)
    originals = np.repeat(listed[:, :1], listed.shape[1] - 1, axis=1).reshape(-1, BITS // 8)
    edit_distances = np.unpackbits(originals ^ listed[:, 1:].reshape(-1, BITS // 8), axis=1).sum(axis=1)
    size = listed.shape[1]
    codes = np.empty((n, BITS // 8), dtype=np.uint8)
    synthetic = n - real.shape[0]
    chunk = 99_999  # a multiple of the cluster size; flip_bits needs ~30 bytes per bit of the chunk
    for start in range(0, synthetic, chunk):
        stop = min(synthetic, start + chunk)
        centres = balanced_codes((stop - start + size - 1) // size, rng)
        members = np.repeat(centres, size, axis=0)[: stop - start]
        flips = rng.choice(edit_distances, size=stop - start)
        flips[::size] = 0  # the centre itself, as the unedited picture
        codes[start:stop] = flip_bits(members, flips, rng)
    codes[synthetic:] = real  # (where they sit does not matter: ids are only labels)
    near = near_real.reshape(-1, BITS // 8)[:1000]
    return codes, np.concatenate([near, far_real])


def rss_mb() -> float:
    import psutil

    return float(psutil.Process().memory_info().rss) / 2**20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Engine:
    def __init__(self, name: str) -> None:
        self.name = name
        self.index: Any = None

    def build(self, codes: np.ndarray) -> None:
        if self.name == "seawall":
            from seawall.index import HammingIndex

            self.index = HammingIndex(BITS, background_compaction=False)
            self.index.add(np.arange(len(codes), dtype=np.int64), codes)
            return
        import faiss

        if self.name == "faiss-flat":
            self.index = faiss.IndexBinaryFlat(BITS)
        else:
            self.index = faiss.IndexBinaryMultiHash(BITS, 16, 16)
            self.index.nflip = 1
        self.index.add(codes)

    def search(self, queries: np.ndarray) -> list[list[tuple[int, int]]]:
        if self.name == "seawall":
            result: list[list[tuple[int, int]]] = self.index.search(queries, THRESHOLD)
            return result
        lims, dist, labels = self.index.range_search(queries, THRESHOLD + 1)  # strict <
        out = []
        for i in range(len(queries)):
            a, b = int(lims[i]), int(lims[i + 1])
            pairs = zip(labels[a:b].tolist(), dist[a:b].astype(np.int64).tolist(), strict=True)
            out.append(sorted(pairs, key=lambda m: (m[1], m[0])))
        return out


def worker(engine_name: str, n: int, dataset: str, out_path: Path) -> None:
    """One engine, one size, in a fresh process: build, measure, write results + figures."""
    if engine_name.startswith("faiss"):
        # only in FAISS's own processes, so Seawall's RSS does not include FAISS's libraries
        import faiss

        faiss.omp_set_num_threads(os.cpu_count() or 1)
    codes, queries = make_data(n, dataset)
    base = rss_mb()
    engine = Engine(engine_name)
    # warm-up on a tiny index so JIT/compile and library init stay out of the timings
    warm = Engine(engine_name)
    warm.build(codes[:20_000])
    warm.search(queries[:50])
    del warm
    gc.collect()
    base = rss_mb()
    t0 = time.perf_counter()
    engine.build(codes)
    build_s = time.perf_counter() - t0
    data_mb = codes.nbytes / 2**20
    del codes
    gc.collect()
    index_rss = rss_mb()

    t0 = time.perf_counter()
    batched = engine.search(queries)
    batch_qps = len(queries) / (time.perf_counter() - t0)

    # single queries: a sample for the slow brute force, all 2000 otherwise
    sample = queries if engine_name != "faiss-flat" else queries[:: max(1, n // 50_000)]
    t0 = time.perf_counter()
    for i in range(len(sample)):
        engine.search(sample[i : i + 1])
    single_qps = len(sample) / (time.perf_counter() - t0)

    # the same single queries issued from one client thread per core (Seawall releases the GIL)
    threads_qps = None
    if engine_name == "seawall":
        cores = os.cpu_count() or 1
        parts = np.array_split(np.arange(len(sample)), cores)

        def client(rows: np.ndarray) -> None:
            for i in rows:
                engine.search(sample[i : i + 1])

        ths = [threading.Thread(target=client, args=(p,)) for p in parts]
        t0 = time.perf_counter()
        for th in ths:
            th.start()
        for th in ths:
            th.join()
        threads_qps = len(sample) / (time.perf_counter() - t0)

    flat = np.array([(q, i, d) for q, hits in enumerate(batched) for i, d in hits], dtype=np.int64).reshape(-1, 3)
    np.save(out_path.with_suffix(".npy"), flat)
    out_path.write_text(json.dumps({
        "engine": engine_name, "n": n, "dataset": dataset, "build_s": build_s,
        "batch_qps": batch_qps, "single_qps": single_qps, "threads_qps": threads_qps,
        "rss_mb": index_rss, "index_mb": index_rss - base + data_mb, "peak_mb": peak_mb(),
        "matches": int(flat.shape[0]),
    }))  # fmt: skip


def numpy_check(n: int, dataset: str, flat: np.ndarray, sample: int = 40) -> None:
    """Independent brute force for a few queries (numpy popcount over the whole set)."""
    codes, queries = make_data(n, dataset)
    words = codes.view("<u8")
    for q in np.linspace(0, len(queries) - 1, sample).astype(int):
        qw = queries[q : q + 1].view("<u8")
        d = np.bitwise_count(words ^ qw).sum(axis=1)
        hit = np.flatnonzero(d <= THRESHOLD)
        want = sorted(zip(hit.tolist(), d[hit].tolist(), strict=True))
        got = sorted((int(i), int(dd)) for qq, i, dd in flat if qq == q)
        assert got == want, f"query {q}: {got[:5]} != {want[:5]}"


def run(sizes: list[int], datasets: list[str], engines: list[str]) -> None:
    root = Path(__file__).resolve().parents[1]
    cores = os.cpu_count()
    print(f"threshold {THRESHOLD}, {cores} cores, 2000 queries (1000 planted 0..31, 1000 unrelated)")
    for dataset in datasets:
        for n in sizes:
            results: dict[str, dict[str, Any]] = {}
            flats: dict[str, np.ndarray] = {}
            with tempfile.TemporaryDirectory() as tmp:
                for name in engines:
                    out = Path(tmp) / f"{name}.json"
                    subprocess.run(
                        [sys.executable, __file__, "--worker", name, "--n", str(n),
                         "--dataset", dataset, "--out", str(out)],
                        check=True, cwd=root,
                    )  # fmt: skip
                    results[name] = json.loads(out.read_text())
                    flats[name] = np.load(out.with_suffix(".npy"))
            reference = flats.get("faiss-flat")
            if reference is not None:
                for name, flat in flats.items():
                    assert np.array_equal(flat, reference), f"{name} differs from brute force"
            numpy_check(n, dataset, flats[engines[0]])
            print(f"\n== {dataset}, N = {n:,}: every result set equals brute force "
                  f"({results[engines[0]]['matches']} matches) ==")  # fmt: skip
            print(f"{'engine':<12}{'build s':>9}{'RSS MB':>9}{'index MB':>10}{'peak MB':>9}"
                  f"{'single q/s':>12}{'2-thread q/s':>14}{'batch q/s':>11}")  # fmt: skip
            for name, r in results.items():
                tq = f"{r['threads_qps']:.0f}" if r["threads_qps"] else "-"
                print(f"{name:<12}{r['build_s']:>9.2f}{r['rss_mb']:>9.0f}{r['index_mb']:>10.0f}"
                      f"{r['peak_mb']:>9.0f}{r['single_qps']:>12.1f}{tq:>14}"
                      f"{r['batch_qps']:>11.1f}")  # fmt: skip
            sw = results.get("seawall")
            for other in ("faiss-flat", "faiss-mih"):
                if sw and other in results:
                    o = results[other]
                    print(f"seawall / {other}: single {sw['single_qps'] / o['single_qps']:.1f}x, "
                          f"batch {sw['batch_qps'] / o['batch_qps']:.1f}x, "
                          f"build time {sw['build_s'] / max(o['build_s'], 1e-3):.2f}x, "
                          f"RSS {sw['rss_mb'] / o['rss_mb']:.2f}x")  # fmt: skip
            if sw and n >= 10_000_000 and "faiss-flat" in results:
                single = max(sw["single_qps"], sw["threads_qps"] or 0)
                checks = {
                    ">= 10,000 single q/s": single >= 10_000,
                    ">= 50x FAISS Flat": sw["single_qps"] / results["faiss-flat"]["single_qps"] >= 50,
                    "< 2 GB resident": sw["rss_mb"] < 2048,
                }
                print("goal at 1e7: " + ", ".join(f"{k} {'met' if ok else 'NOT met'}" for k, ok in checks.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1e5,1e6")
    parser.add_argument("--full", action="store_true", help="also N = 1e7")
    parser.add_argument("--datasets", default="uniform,clustered")
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--worker")
    parser.add_argument("--n", type=int)
    parser.add_argument("--dataset")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.n, args.dataset, Path(args.out))
        return
    sizes = [int(float(s)) for s in args.sizes.split(",")]
    if args.full and 10_000_000 not in sizes:
        sizes.append(10_000_000)
    run(sizes, args.datasets.split(","), args.engines.split(","))


if __name__ == "__main__":
    main()
