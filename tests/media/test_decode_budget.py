"""The decode budget of one request, the decode slots of a process, and GIF frame delays read
without decoding (issue #10: a 4000x4000, 50-frame GIF took 14 s and 968 MB)."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest
from PIL import Image

from seawall.config import Settings
from seawall.media import video
from seawall.media.budget import DecodeBudget, DecodeBusy, DecodeSlots, decode_budget, request_decode
from seawall.media.errors import MediaError
from seawall.media.synthetic import benign_image, canvas_bomb_gif
from seawall.signals.hashing import hash_file


def _canvas_gif(path: Path, side: int, frames: int, durations: list[int] | None = None) -> Path:
    """An animated GIF on a ``side``-pixel canvas whose frames differ in one pixel: a few KB that
    composite to ``side``² pixels each."""
    images = []
    for i in range(frames):
        im = Image.new("P", (side, side), 0)
        im.putpalette([0, 0, 0, 255, 255, 255] + [0, 0, 0] * 254)
        im.putpixel((i % side, i % side), 1)
        images.append(im)
    images[0].save(path, "GIF", save_all=True, append_images=images[1:], duration=durations or 40)
    return path


def _budget(pixels: int = 400_000_000, frames: int = 1000, seconds: float = 120.0) -> DecodeBudget:
    return DecodeBudget(max_pixels=pixels, max_frames=frames, max_seconds=seconds)


def test_a_canvas_bomb_is_refused_from_its_headers_before_any_frame_is_decoded(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.gif"
    bomb.write_bytes(canvas_bomb_gif(4000, 50))
    assert bomb.stat().st_size == 1170
    with decode_budget(_budget()) as budget, pytest.raises(MediaError) as caught:
        list(video.iter_frames(bomb))
    assert caught.value.reason == (
        "decoding 50 frame(s) of 4000x4000 is 800000000 pixels, over the budget of 400000000 pixels per "
        "request (decompression bomb?)"
    )
    assert budget.pixels == 0  # nothing was decoded


def test_hash_file_refuses_the_bomb_quickly_and_charges_only_the_first_frame(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.gif"
    bomb.write_bytes(canvas_bomb_gif(4000, 50))
    with decode_budget(_budget()) as budget, pytest.raises(MediaError, match="over the budget of 400000000"):
        hash_file(bomb, dihedral=True)
    assert budget.pixels == 4000 * 4000  # PDQ decoded frame 0; vPDQ refused the other 49 unseen


def test_an_animation_within_the_budget_is_hashed_and_every_frame_is_charged(tmp_path: Path) -> None:
    gif = _canvas_gif(tmp_path / "small.gif", 64, 12)
    unbounded = hash_file(gif)
    with decode_budget(_budget()) as budget:
        bounded = hash_file(gif)
    assert bounded == unbounded and len(bounded["vpdq"]) == 12
    # PDQ's first frame, then vPDQ's 12 frames.
    assert budget.pixels == 64 * 64 * 13


def test_the_animation_frame_limit(tmp_path: Path) -> None:
    gif = _canvas_gif(tmp_path / "long.gif", 16, 30)
    with decode_budget(_budget(frames=20)), pytest.raises(MediaError) as caught:
        list(video.iter_frames(gif))
    assert caught.value.reason == "animation has 30 frames, over the limit of 20"


def test_a_still_image_over_the_budget_is_refused_before_decoding(tmp_path: Path) -> None:
    path = tmp_path / "wide.png"
    benign_image(3, 2000, 1000).save(path)
    with decode_budget(_budget(pixels=1_000_000)) as budget, pytest.raises(MediaError) as caught:
        hash_file(path, ["pdq"])
    assert caught.value.reason == (
        "decoding 1 frame(s) of 2000x1000 is 2000000 pixels, over the budget of 1000000 pixels per request "
        "(decompression bomb?)"
    )
    assert budget.pixels == 0
    unbounded = hash_file(path, ["pdq"])
    with decode_budget(_budget(pixels=2_000_000)) as budget:
        assert hash_file(path, ["pdq"]) == unbounded
    assert budget.pixels == 2_000_000


def test_crypto_hashes_alone_decode_nothing(tmp_path: Path) -> None:
    path = tmp_path / "wide.png"
    benign_image(3, 2000, 1000).save(path)
    with decode_budget(_budget()) as budget:
        out = hash_file(path, ["md5", "sha256"])
    assert set(out) == {"path", "media", "md5", "sha256"} and budget.pixels == 0


def test_the_time_budget_stops_a_long_animation(tmp_path: Path) -> None:
    gif = _canvas_gif(tmp_path / "small.gif", 64, 12)
    budget = _budget(seconds=0.0)
    with decode_budget(budget), pytest.raises(MediaError) as caught:
        list(video.iter_frames(gif))
    assert caught.value.reason == "decoding took over 0 s, the limit per request"


def test_gif_delays_are_read_from_the_blocks_as_pillow_reads_them(tmp_path: Path) -> None:
    gif = _canvas_gif(tmp_path / "timed.gif", 32, 6, durations=[10, 20, 30, 40, 50, 60])
    with Image.open(gif) as img:
        expected = []
        for i in range(img.n_frames):
            img.seek(i)
            expected.append(int(img.info.get("duration") or 0))
    assert video._gif_delays(gif) == expected == [10, 20, 30, 40, 50, 60]
    # A frame without a graphic control extension has no delay (Pillow: none; then 100 ms).
    plain = io.BytesIO()
    Image.new("L", (8, 8), 3).save(plain, "GIF")
    (tmp_path / "plain.gif").write_bytes(plain.getvalue().replace(b"\x21\xf9", b"\x21\xfe"))
    assert video._gif_delays(tmp_path / "plain.gif") == [0]
    assert video._gif_delays(tmp_path / "plain.gif") is not None
    # A structure the walker does not know: None, and Pillow is asked instead.
    (tmp_path / "odd.gif").write_bytes(gif.read_bytes()[:-40])
    assert video._gif_delays(tmp_path / "odd.gif") is None


def test_decode_slots_refuse_after_the_wait_and_free_up() -> None:
    slots = DecodeSlots(1)
    slots.acquire(0)
    with pytest.raises(DecodeBusy) as caught:
        slots.acquire(0.1)
    assert caught.value.retry_after == 1 + 1
    assert str(caught.value) == "the server is busy decoding other uploads; retry in 2 s"
    released = threading.Timer(0.1, slots.release)
    released.start()
    slots.acquire(2.0)  # waits for the release
    assert slots.active == 1
    assert slots.release() == 0


def test_request_decode_holds_a_slot_and_installs_a_fresh_budget(tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, decode_concurrency=1, decode_wait_seconds=0.05, max_decode_pixels=5000)
    with request_decode(settings) as budget:
        assert budget.max_pixels == 5000 and budget.pixels == 0
        with pytest.raises(DecodeBusy), request_decode(settings):
            pass
    with request_decode(settings) as again:  # the slot was freed
        assert again is not budget


_FAULTS_PER_PICTURE = """
import resource, sys
from seawall.signals.hashing import hash_file
if sys.argv[2] == "keep":
    from seawall.media.budget import keep_freed_memory
    keep_freed_memory()
else:  # as Dask's nanny starts its workers: MALLOC_TRIM_THRESHOLD_=65536
    import ctypes
    ctypes.CDLL(None).mallopt(-1, 65536)
for _ in range(3):
    hash_file(sys.argv[1], dihedral=True, regions=True)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    hash_file(sys.argv[1], dihedral=True, regions=True)
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) // 5)
"""


@pytest.mark.skipif(not hasattr(__import__("ctypes").CDLL(None), "mallopt"), reason="glibc's allocator only")
def test_a_process_hashing_file_after_file_reuses_the_freed_pixel_buffers(tmp_path: Path) -> None:
    """``keep_freed_memory`` (seawall match, scan workers): the next picture is decoded into the
    memory the last one freed, not into fresh pages the kernel faults in and zeroes one by one."""
    import subprocess
    import sys

    picture = tmp_path / "p.jpg"
    benign_image(7, 800, 600).save(picture, format="JPEG", quality=88)

    def faults(mode: str) -> int:
        done = subprocess.run(
            [sys.executable, "-c", _FAULTS_PER_PICTURE, str(picture), mode], capture_output=True, text=True, check=True
        )
        return int(done.stdout.strip())

    # An 800x600 picture's buffers are megabytes: trimmed each time, they are ~1 000 page faults a picture.
    assert faults("trim") > 500
    assert faults("keep") < 50
