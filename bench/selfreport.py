"""Self-report hashing speed: the page's JavaScript in Chromium against the server's `seawall hash`,
for the same generated 12 MP phone-size photos (4032x3024 JPEG), in the same run.

  (a) server: ``hash_file(path, "md5,sha256,pdq")``, one thread (the baseline)
  (b) browser: the self-report page's ``hashFile`` (MD5 in JS, SHA-256 by WebCrypto, decode by
      createImageBitmap, pixels through WebGL, PDQ in JS), all files in one page load

Prints pictures per second for each, the ratio (b)/(a), and whether every hash is equal.
Debian's Chromium (SEAWALL_CHROMIUM, default /usr/bin/chromium); nothing leaves 127.0.0.1.

Run: .venv/bin/python bench/selfreport.py [--pictures 6]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the shared page helpers and the loopback server

from playwright.sync_api import sync_playwright  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.responses import HTMLResponse  # noqa: E402
from starlette.routing import Mount, Route  # noqa: E402
from starlette.staticfiles import StaticFiles  # noqa: E402

from seawall.media.synthetic import benign_image  # noqa: E402
from seawall.signals.hashing import hash_file  # noqa: E402
from seawall.web.app import WEB_DIR  # noqa: E402

WIDTH, HEIGHT = 4032, 3024
KEYS = ("md5", "sha256", "pdq", "pdq_quality")


def photos(folder: Path, count: int) -> list[Path]:
    out = []
    for i in range(count):
        path = folder / f"phone-{i}.jpg"
        benign_image(100 + i, WIDTH, HEIGHT, noise=3.0).save(path, format="JPEG", quality=88)
        out.append(path)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pictures", type=int, default=6)
    args = parser.parse_args()
    from selfreport_media import hash_in_page
    from servers import serve

    with tempfile.TemporaryDirectory() as tmp:
        files = photos(Path(tmp), args.pictures)
        size = sum(p.stat().st_size for p in files) / len(files) / 1e6
        print(f"{len(files)} generated {WIDTH}x{HEIGHT} JPEG photos, {size:.1f} MB each on average")
        hash_file(files[0], "md5,sha256,pdq")  # load the compiled kernels before timing
        start = time.perf_counter()
        server = [hash_file(p, "md5,sha256,pdq") for p in files]
        server_seconds = time.perf_counter() - start

        site = Starlette(
            routes=[
                Route("/", lambda _: HTMLResponse("<!doctype html><title>bench</title>")),
                Mount("/static", StaticFiles(directory=str(WEB_DIR / "static"))),
            ]
        )
        with serve(site) as url, sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=os.environ.get("SEAWALL_CHROMIUM", "/usr/bin/chromium"),
                headless=True,
                args=["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"],
            )
            page = browser.new_page()
            page.goto(url + "/")
            hash_in_page(page, files[:1], dihedral=False)  # warm up (JIT, WebGL context)
            browser_results, browser_seconds = hash_in_page(page, files, dihedral=False)
            browser.close()

    same = sum(all(b.get(k) == s.get(k) for k in KEYS) for b, s in zip(browser_results, server, strict=True))
    server_rate = len(files) / server_seconds
    browser_rate = len(files) / browser_seconds
    each = 1000 / len(files)
    print(f"(a) server  seawall hash : {server_rate:6.2f} pictures/s  ({server_seconds * each:6.0f} ms each)")
    print(f"(b) browser self-report  : {browser_rate:6.2f} pictures/s  ({browser_seconds * each:6.0f} ms each)")
    print(f"ratio browser/server     : {browser_rate / server_rate:6.2f}")
    print(f"identical hashes         : {same} of {len(files)}")


if __name__ == "__main__":
    main()
