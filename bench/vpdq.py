"""vPDQ hashing speed and fidelity: Seawall against the plain Python loop, in the same run.

  (a) baseline: PyAV decode, ``frame.to_ndarray(format="rgb24")``, ``pdqhash.compute``, one thread
  (b) Seawall ``vpdq_hash_file(threads=1)``  (reference conversion, reference-exact PDQ)
  (c) Seawall ``vpdq_hash_file(threads=2)``  (frames hashed on 2 threads while decoding)

For each video: frames per second, the ratio to (a), and (for Meta's sample videos) the mean/max
Hamming distance to the reference hash file. Default videos: three of the samples in
$SEAWALL_REFERENCE_DATA or ../shared/data.

Run: .venv/bin/python bench/vpdq.py [VIDEO ...]
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import av
import numpy as np
import pdqhash

from seawall.signals.vpdq import VpdqFeature, loads, vpdq_hash_file

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = Path(os.environ.get("SEAWALL_REFERENCE_DATA", ROOT.parent / "shared" / "data"))
DEFAULT = ("pattern-sd-grey-bar", "chair-orig-22-sd-bar", "pattern-hd-no-bar")


def baseline(path: Path) -> list[bytes]:
    """The obvious Python loop over frames."""
    out = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            bits, _quality = pdqhash.compute(frame.to_ndarray(format="rgb24"))
            out.append(np.packbits(bits.astype(np.uint8)).tobytes())
    return out


def fidelity(got: list[bytes], expected: list[VpdqFeature] | None) -> str:
    if expected is None:
        return ""
    d = [
        (int.from_bytes(g, "big") ^ int.from_bytes(e.pdq, "big")).bit_count()
        for g, e in zip(got, expected, strict=True)
    ]
    return f"mean {np.mean(d):5.2f}, max {max(d):2d} bits from the reference file"


def main() -> None:
    paths = [Path(p) for p in sys.argv[1:]] or [REFERENCE / f"vpdq/tmk/sample-videos/{n}.mp4" for n in DEFAULT]
    vpdq_hash_file(paths[0], every_n_frames=1000)  # load the compiled PDQ kernels outside the timings
    totals = [0.0, 0.0, 0.0]
    for path in paths:
        ref = REFERENCE / f"vpdq/vpdq/sample-hashes/{path.stem}.txt"
        expected = loads(ref.read_text()) if ref.exists() else None
        start = time.perf_counter()
        hashes = baseline(path)
        runs = [("baseline (PyAV+pdqhash)", time.perf_counter() - start, hashes)]
        for threads in (1, 2):
            start = time.perf_counter()
            hashes = [f.pdq for f in vpdq_hash_file(path, threads=threads)]
            runs.append((f"seawall threads={threads}", time.perf_counter() - start, hashes))
        assert runs[1][2] == runs[2][2], "threads changed the result"
        n = len(runs[1][2])
        print(f"{path.name}: {n} frames")
        for i, (label, seconds, hashes) in enumerate(runs):
            totals[i] += seconds
            print(
                f"  {label:24s} {n / seconds:7.1f} frames/s  x{runs[0][1] / seconds:4.2f}  {fidelity(hashes, expected)}"
            )
    print(
        f"overall: seawall threads=1 x{totals[0] / totals[1]:.2f}, threads=2 x{totals[0] / totals[2]:.2f} the baseline"
    )


if __name__ == "__main__":
    main()
