"""Benign generated pictures: the stand-ins for "known" material in demos, tests and benchmarks.

Smooth random colour fields at several scales (a broad spectrum, as photographs have) with a few
flat shapes: landscapes-and-patterns, never anything else, and fully determined by the seed.
"""

from __future__ import annotations

import struct

import numpy as np
from PIL import Image, ImageDraw


def benign_image(seed: int, width: int = 640, height: int = 480, *, noise: float = 2.0) -> Image.Image:
    rng = np.random.default_rng(seed)
    rgb = np.zeros((height, width, 3), np.float32)
    for cells, weight in ((6, 0.5), (24, 0.3), (96, 0.2)):
        small = rng.integers(0, 256, (max(cells * 3 // 4, 2), cells, 3), dtype=np.uint8)
        big = Image.fromarray(small).resize((width, height), Image.Resampling.BICUBIC)
        rgb += weight * np.asarray(big, dtype=np.float32)
    if noise:
        rgb += rng.normal(0, noise, (height, width, 1)).astype(np.float32)
    image = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(2, 6))):
        x0, y0 = int(rng.integers(0, width - 2)), int(rng.integers(0, height - 2))
        x1 = min(width - 1, x0 + int(rng.integers(width // 10, width // 3)))
        y1 = min(height - 1, y0 + int(rng.integers(height // 10, height // 3)))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.ellipse((x0, y0, x1, y1), fill=colour)
        else:
            draw.rectangle((x0, y0, x1, y1), fill=colour)
    return image


def canvas_bomb_gif(side: int, frames: int, delay_ms: int = 40) -> bytes:
    """A tiny animated GIF (about 23 bytes a frame) on a ``side`` x ``side`` canvas: each frame is
    one white pixel, but a decoder composites it on the whole canvas. For tests of decode budgets."""
    if not 1 <= side <= 0xFFFF or frames < 1:
        raise ValueError(f"side must be 1-65535 and frames at least 1, got {side} and {frames}")
    out = bytearray(b"GIF89a" + struct.pack("<HHBBB", side, side, 0x80, 0, 0) + b"\x00\x00\x00\xff\xff\xff")
    for i in range(frames):
        out += b"\x21\xf9\x04\x00" + struct.pack("<H", delay_ms // 10) + b"\x00\x00"  # graphic control
        out += b"\x2c" + struct.pack("<HHHHB", i % side, i % side, 1, 1, 0)  # a 1x1 image at (i, i)
        out += b"\x02\x02\x4c\x01\x00"  # LZW, 2-bit codes: clear, colour 1, end
    return bytes(out + b"\x3b")
