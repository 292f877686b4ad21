"""The regions of a picture a person would call "the picture": borders trimmed, or the largest
picture embedded in a screenshot-like canvas, optionally with a small rotation undone.

Global perceptual hashes (PDQ) move by 90-130 bits when a picture is letterboxed, padded, framed or
placed in a screenshot; hashing these regions as well finds such copies. Detection works on the
pixels PDQ already decoded (at most 512x512, see ``media/image.py``), with numpy only, and its work
is bounded by that size. It costs almost nothing on a picture without a border: four edge lines are
looked at, and when none of them is uniform there is no region and no extra hash.

- **trimmed**: uniform or near-uniform lines (JPEG noise tolerated) are peeled off each side, in
  rounds, so asymmetric padding, frames of several colours and letterboxing inside padding all go.
- **embedded**: the canvas's background colours are those common on its outer ring; the largest
  rectangle of blocks that are mostly not background is the embedded picture (title bars, side
  panels and chat bubbles are background or small), trimmed of its own margins.
- **rotated**: when the embedded picture is a slightly rotated rectangle on a filled canvas (its
  corners missing), the angle is read from its corners, undone, and the inner rectangle kept.

Boxes are ``(x0, y0, x1, y1)``, end-exclusive, in the pixels given.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

#: A line is uniform when this share of its pixels is within TOLERANCE of its median colour.
UNIFORM_SHARE: Final = 0.97
#: Largest channel difference from the line's median still counted as "the same colour" (JPEG noise).
TOLERANCE: Final = 24
#: At most this share of a side is peeled off (a picture is never mostly border).
MAX_DEPTH: Final = 0.45
#: A region smaller than this (pixels, either side) is not hashed; nor one this close to the whole.
MIN_SIDE: Final = 32
MIN_TRIM: Final = 2
#: Background colours: (quantised) colours covering at least this share of the canvas's outer ring.
RING_COLOUR_SHARE: Final = 0.05
#: The embedded search runs only when background colours cover this share of the ring.
RING_BACKGROUND_SHARE: Final = 0.6
BLOCK: Final = 16
#: An embedded picture's edge lines are at least this share of non-background pixels.
EMBEDDED_LINE_SHARE: Final = 0.75
#: An embedded picture is at least this share of its canvas (smaller: an icon, an avatar).
EMBEDDED_MIN_SHARE: Final = 0.15
#: Rotations smaller than this are left alone (PDQ survives them); larger ones are not "small".
MIN_ANGLE: Final = 0.5
MAX_ANGLE: Final = 8.0
#: Pixels left off each side of an unrotated picture (its edges were blended with the background).
ROTATED_MARGIN: Final = 2

Box = tuple[int, int, int, int]
U8 = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class Region:
    """One region to hash: ``kind`` is ``trimmed``, ``embedded`` or ``rotated``; ``box`` in the
    pixels given; ``angle`` the rotation undone (degrees, counter-clockwise), else 0."""

    kind: str
    box: Box
    angle: float = 0.0


def _far(a: npt.NDArray[np.int16], colour: npt.NDArray[Any]) -> npt.NDArray[Any]:
    """The largest channel difference of each pixel from ``colour`` (broadcast).

    Three ``np.maximum`` calls over the channel planes, not ``.max(axis=2)``: numpy reduces a
    3-long innermost axis one pixel at a time, which made this the bulk of region detection."""
    d = np.abs(a - colour)
    out: npt.NDArray[Any] = np.maximum(np.maximum(d[..., 0], d[..., 1]), d[..., 2])
    return out


def _uniform(lines: npt.NDArray[np.int16]) -> npt.NDArray[np.bool_]:
    """For a stack of lines (n, length, 3): whether each is uniform (this share near its mean)."""
    # The mean, not the median, for speed: the 3% of other pixels allowed move it by at most ~8.
    mean = lines.mean(axis=1, keepdims=True, dtype=np.float32)
    near = _far(lines, mean) <= TOLERANCE
    result: npt.NDArray[np.bool_] = near.mean(axis=1) >= UNIFORM_SHARE
    return result


def _lines(a: npt.NDArray[np.int16], box: Box, side: str, start: int, stop: int) -> npt.NDArray[np.int16]:
    """Lines ``start``..``stop`` counted inward from ``side`` of ``box``, each along that side."""
    x0, y0, x1, y1 = box
    if side == "top":
        return a[y0 + start : y0 + stop, x0:x1]
    if side == "bottom":
        return a[y1 - stop : y1 - start, x0:x1][::-1]
    if side == "left":
        return a[y0:y1, x0 + start : x0 + stop].transpose(1, 0, 2)
    return a[y0:y1, x1 - stop : x1 - start].transpose(1, 0, 2)[::-1]


def _peel(a: npt.NDArray[np.int16], box: Box, side: str, limit: int) -> tuple[int, npt.NDArray[np.int16] | None]:
    """The uniform lines of one colour on ``side`` of ``box`` (at most ``limit``): how many, and
    their colour. A band that fades into another colour line by line is a gradient (a sky, say),
    not a border: none. Looked at in chunks from the edge, so the work follows the border's depth."""
    done, chunk = 0, 8
    colour: npt.NDArray[np.int16] | None = None
    previous: npt.NDArray[np.int16] | None = None
    while done < limit:
        stop = min(limit, done + chunk)
        lines = _lines(a, box, side, done, stop)[:, ::2]  # every other pixel along a line is plenty
        # Integer means (not medians, for speed: the 3% of other pixels allowed move it by at most ~8).
        means = (lines.sum(axis=1, dtype=np.int32) // lines.shape[1]).astype(np.int16)
        uniform = (_far(lines, means[:, None, :]) <= TOLERANCE).mean(axis=1) >= UNIFORM_SHARE
        if colour is None:
            colour = means[0]
        k = int(np.argmin(uniform)) if not uniform.all() else len(means)  # first non-uniform line
        before = means[:1] if previous is None else previous[None]
        faded = np.abs(means - colour).max(axis=1) > TOLERANCE
        if faded[:k].any():
            d = int(np.argmax(faded))
            step = np.abs(means[d] - np.concatenate([before, means])[d]).max() > TOLERANCE / 3
            return (done + d, colour) if step else (0, None)  # another layer begins, or a gradient
        if k < len(means):
            return done + k, colour
        previous = means[-1]
        done, chunk = stop, chunk * 2
    return limit, colour


def has_border(rgb: U8) -> bool:
    """Whether any of the four outer lines is uniform: the cheap gate before any region work."""
    edges = [rgb[0], rgb[-1], rgb[:, 0], rgb[:, -1]]
    return any(bool(_uniform(e[None].astype(np.int16))[0]) for e in edges)


def trim_box(rgb: U8, box: Box | None = None, *, wide: npt.NDArray[np.int16] | None = None, layers: int = 3) -> Box:
    """``box`` (default: everything) with uniform bands peeled off each side, at most ``layers``
    bands of different colours a side (padding, then a frame, …), in rounds until none is left
    (a side trimmed lets the lines across it become uniform). ``wide``: the pixels as int16."""
    return _trim(rgb, box, wide, layers)[0]


def _trim(rgb: U8, box: Box | None, wide: npt.NDArray[np.int16] | None, layers: int) -> tuple[Box, bool]:
    """:func:`trim_box`, and whether a side had another layer left."""
    more = False
    h, w = rgb.shape[:2]
    a = rgb.astype(np.int16) if wide is None else wide
    x0, y0, x1, y1 = box or (0, 0, w, h)
    max_x, max_y = int((x1 - x0) * MAX_DEPTH), int((y1 - y0) * MAX_DEPTH)
    taken = dict.fromkeys(("top", "bottom", "left", "right"), 0)
    count = dict.fromkeys(taken, 0)
    colours: dict[str, npt.NDArray[np.int16] | None] = dict.fromkeys(taken)
    seen: list[npt.NDArray[np.int16]] = []  # colours of the bands peeled so far, every side

    def near(colour: npt.NDArray[np.int16], others: list[npt.NDArray[np.int16]]) -> bool:
        return any(int(np.abs(colour - other).max()) <= TOLERANCE for other in others)

    for round_ in range(2 * layers + 2):
        found: dict[str, tuple[int, npt.NDArray[np.int16]]] = {}
        for side in ("top", "bottom", "left", "right"):
            cap = max_y if side in ("top", "bottom") else max_x
            n, colour = _peel(a, (x0, y0, x1, y1), side, cap - taken[side])
            if n and colour is not None:
                found[side] = (n, colour)
        changed = False
        for side, (n, colour) in found.items():
            previous = colours[side]
            if previous is None or np.abs(colour - previous).max() > TOLERANCE:
                # A band at the edge is a border; one further in (a frame inside padding, a side
                # that became uniform once another was trimmed) only if another side has its colour
                # too: a sky or a lake inside the picture is on one side only.
                others = seen + [c for other, (_, c) in found.items() if other != side]
                if (round_ or taken[side]) and not near(colour, others):
                    continue
                if count[side] >= layers:
                    more = True
                    continue
                count[side] += 1
                colours[side] = colour
                seen.append(colour)
            changed = True
            taken[side] += n
            if side == "top":
                y0 += n
            elif side == "bottom":
                y1 -= n
            elif side == "left":
                x0 += n
            else:
                x1 -= n
        if not changed:
            break
    return (x0, y0, x1, y1), more


def _ring(a: npt.NDArray[np.int16]) -> npt.NDArray[np.int16]:
    return np.concatenate([a[0], a[-1], a[1:-1, 0], a[1:-1, -1]])


def _background_colours(a: npt.NDArray[np.int16]) -> list[npt.NDArray[np.float32]] | None:
    """The canvas's background colours (common on its outer ring); None when the ring is not
    mostly of such colours (a photograph's edge, say)."""
    ring = _ring(a)
    q = (ring // 16).astype(np.int32)
    keys = (q[:, 0] << 8) | (q[:, 1] << 4) | q[:, 2]
    values, counts = np.unique(keys, return_counts=True)
    common = counts >= RING_COLOUR_SHARE * len(keys)
    if counts[common].sum() < RING_BACKGROUND_SHARE * len(keys):
        return None
    top = values[common][np.argsort(-counts[common])][:4]
    return [np.median(ring[keys == key], axis=0).astype(np.float32) for key in top]


def _content(a: npt.NDArray[np.int16], colours: list[npt.NDArray[np.float32]]) -> npt.NDArray[np.bool_]:
    """Pixels of none of the background colours."""
    content = np.ones(a.shape[:2], dtype=bool)
    for colour in colours:
        content &= _far(a, colour) > TOLERANCE
    return content


def _largest_rectangle(grid: npt.NDArray[np.bool_]) -> Box | None:
    """The largest all-True rectangle of a boolean grid (histogram-and-stack, O(cells))."""
    rows, cols = grid.shape
    heights = np.zeros(cols, dtype=np.int64)
    best, best_box = 0, None
    for r in range(rows):
        heights = np.where(grid[r], heights + 1, 0)
        stack: list[int] = []
        hs = [*heights.tolist(), 0]
        for c in range(cols + 1):
            while stack and hs[stack[-1]] >= hs[c]:
                top = stack.pop()
                height = hs[top]
                left = stack[-1] + 1 if stack else 0
                area = height * (c - left)
                if area > best:
                    best, best_box = area, (left, r - height + 1, c, r + 1)
            stack.append(c)
    return best_box


def _canvas_left(wide: npt.NDArray[np.int16], box: Box) -> bool:
    """Whether the trimmed box's own edge is still mostly the canvas's background colours (a
    screenshot's title bar or text stopped the trimming), so an embedded picture is worth a look."""
    colours = _background_colours(wide[::4, ::4])
    if colours is None:
        return False
    x0, y0, x1, y1 = box
    inner = wide[y0:y1, x0:x1]
    if min(inner.shape[:2]) < MIN_SIDE:
        return False
    return bool(_content(_ring(inner)[None], colours).mean() < 1 - RING_BACKGROUND_SHARE / 2)


def embedded_box(rgb: U8, *, wide: npt.NDArray[np.int16] | None = None) -> Box | None:
    """The largest picture embedded in a canvas of background colours, or None.

    Blocks of BLOCK pixels (looked at on every fourth pixel) that are mostly not background make a
    grid; its largest all-content rectangle, grown by a block and trimmed of uniform lines, is the
    picture. Title bars, side panels and chat bubbles are background colours or small blocks."""
    h, w = rgb.shape[:2]
    half = rgb[::4, ::4].astype(np.int16)
    colours = _background_colours(half)
    if colours is None:
        return None
    step = BLOCK // 4
    gh, gw = half.shape[0] // step, half.shape[1] // step
    if gh < 4 or gw < 4:
        return None
    content = _content(half[: gh * step, : gw * step], colours)
    share = content.reshape(gh, step, gw, step).mean(axis=(1, 3))
    found = _largest_rectangle(share >= 0.5)
    if found is None:
        return None
    bx0, by0, bx1, by1 = found
    grown = (
        max(0, (bx0 - 1) * BLOCK),
        max(0, (by0 - 1) * BLOCK),
        min(w, (bx1 + 1) * BLOCK),
        min(h, (by1 + 1) * BLOCK),
    )
    a = rgb.astype(np.int16) if wide is None else wide
    box = _trim(rgb, grown, a, 3)[0]
    return _shrink(a, box, colours)


def _shrink(a: npt.NDArray[np.int16], box: Box, colours: list[npt.NDArray[np.float32]]) -> Box | None:
    """Pull each side of an embedded box in past lines that are mostly background colours (a row
    of text under the picture that its blocks took in); None when too little is left or the
    picture is too small a share of the canvas to be what the screenshot shows."""
    x0, y0, x1, y1 = box
    h, w = a.shape[:2]
    limit_y, limit_x = (y1 - y0) // 4, (x1 - x0) // 4
    if x1 <= x0 or y1 <= y0:
        return None
    # Which pixels are content, once for the box; each side then moves over line shares.
    content = _content(a[y0:y1, x0:x1], colours)
    oy, ox = y0, x0
    rows = content.mean(axis=1) >= EMBEDDED_LINE_SHARE
    for _ in range(limit_y):
        if y1 - y0 < MIN_SIDE or rows[y0 - oy]:
            break
        y0 += 1
    for _ in range(limit_y):
        if y1 - y0 < MIN_SIDE or rows[y1 - 1 - oy]:
            break
        y1 -= 1
    cols = content[y0 - oy : y1 - oy].mean(axis=0) >= EMBEDDED_LINE_SHARE
    for _ in range(limit_x):
        if x1 - x0 < MIN_SIDE or cols[x0 - ox]:
            break
        x0 += 1
    for _ in range(limit_x):
        if x1 - x0 < MIN_SIDE or cols[x1 - 1 - ox]:
            break
        x1 -= 1
    if (x1 - x0) * (y1 - y0) < EMBEDDED_MIN_SHARE * h * w:
        return None
    return x0, y0, x1, y1


def unrotate(rgb: U8, box: Box) -> tuple[U8, float] | None:
    """The picture in ``box`` with a small rotation undone (its inner rectangle), and the angle
    (degrees, counter-clockwise as Pillow counts); None when the box holds no rotated rectangle:
    its four corners must be of one background colour, and its top edge a straight slope."""
    from PIL import Image

    x0, y0, x1, y1 = box
    crop = rgb[y0:y1, x0:x1].astype(np.int16)
    bh, bw = crop.shape[:2]
    if bh < MIN_SIDE or bw < MIN_SIDE:
        return None
    corners = np.concatenate([c.reshape(-1, 3) for c in (crop[:2, :2], crop[:2, -2:], crop[-2:, :2], crop[-2:, -2:])])
    colour = np.median(corners, axis=0)
    if np.abs(corners - colour).max() > TOLERANCE:
        return None
    # The top edge: the first content row of each column in the middle half (away from the corner).
    depth = min(bh, max(4, int(bw * math.tan(math.radians(MAX_ANGLE))) + 4))
    strip = crop[:depth, bw // 4 : bw - bw // 4]
    content = _far(strip, colour) > TOLERANCE
    has = content.any(axis=0)
    if has.mean() < 0.9:
        return None
    first = content.argmax(axis=0)[has].astype(np.float64)
    xs = np.flatnonzero(has).astype(np.float64)
    slope, intercept = np.polyfit(xs, first, 1)
    if np.abs(first - (slope * xs + intercept)).mean() > 1.5:  # not a straight edge
        return None
    angle = math.degrees(math.atan(slope))  # the top edge falls to the right: turned clockwise
    if not MIN_ANGLE <= abs(angle) <= MAX_ANGLE:
        return None
    t = math.radians(abs(angle))
    c, s = math.cos(t), math.sin(t)
    det = c * c - s * s
    pw, ph = (bw * c - bh * s) / det, (bh * c - bw * s) / det  # the rectangle before it was turned
    if pw < MIN_SIDE or ph < MIN_SIDE:
        return None
    turned = Image.fromarray(np.ascontiguousarray(rgb[y0:y1, x0:x1])).rotate(angle, resample=Image.Resampling.BILINEAR)
    cx, cy = bw / 2, bh / 2
    iw, ih = pw - ROTATED_MARGIN * 2, ph - ROTATED_MARGIN * 2  # the turned edges are blended with the background
    inner = turned.crop((round(cx - iw / 2), round(cy - ih / 2), round(cx + iw / 2), round(cy + ih / 2)))
    return np.ascontiguousarray(np.asarray(inner.convert("RGB"))), -angle


def _worth(box: Box, whole: Box) -> bool:
    """Big enough to hash, and different enough from ``whole`` to hash differently."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    if w < MIN_SIDE or h < MIN_SIDE:
        return False
    return max(abs(a - b) for a, b in zip(box, whole, strict=True)) >= MIN_TRIM


def _same(a: Box, b: Box) -> bool:
    """Nearly the same box (the second would hash to nearly the same value)."""
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return union > 0 and inter / union >= 0.95


def find_regions(rgb: U8, *, rotation: bool = True) -> list[Region]:
    """The regions worth hashing besides the whole picture: none when it has no uniform edge;
    else at most four (the outer border trimmed, every border layer trimmed, the embedded
    picture, a rotation undone), each different enough from the whole and from each other."""
    if rgb.ndim != 3 or rgb.shape[2] != 3 or min(rgb.shape[:2]) < MIN_SIDE or not has_border(rgb):
        return []
    h, w = rgb.shape[:2]
    whole = (0, 0, w, h)
    found: list[Region] = []

    def add(kind: str, box: Box | None, angle: float = 0.0) -> None:
        if box is not None and _worth(box, whole) and not any(_same(box, r.box) for r in found):
            found.append(Region(kind, box, angle))

    wide = rgb.astype(np.int16)
    outer, more = _trim(rgb, None, wide, 1)
    add("trimmed", outer)
    deep = _trim(rgb, outer, wide, 3)[0] if more else outer
    add("trimmed", deep)
    if _canvas_left(wide, deep):
        add("embedded", embedded_box(rgb, wide=wide))
    if rotation:
        for box in (whole, deep):
            turned = unrotate(rgb, box)
            if turned is not None:
                found.append(Region("rotated", box, round(turned[1], 2)))
                break
    return found


def region_pixels(rgb: U8, region: Region) -> U8:
    """The pixels to hash for a region."""
    if region.kind == "rotated":
        turned = unrotate(rgb, region.box)
        if turned is not None:
            return turned[0]
    x0, y0, x1, y1 = region.box
    return np.ascontiguousarray(rgb[y0:y1, x0:x1])


def scale_box(box: Box, sample: tuple[int, int], size: tuple[int, int]) -> Box:
    """A box in the sampled pixels (``sample`` = width, height) in the original's (``size``)."""
    sw, sh = sample
    w, h = size
    x0, y0, x1, y1 = box
    return (x0 * w // sw, y0 * h // sh, -(-x1 * w // sw), -(-y1 * h // sh))
