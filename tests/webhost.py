"""A test web host on 127.0.0.1 and the benign media it serves: generated pictures and a short video."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import av
from PIL import Image

from seawall.media.synthetic import benign_image

# ---------------------------------------------------------------- benign media


def encode(image: Image.Image, fmt: str, **options: Any) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def png(seed: int, w: int = 120, h: int = 90) -> bytes:
    return encode(benign_image(seed, w, h), "PNG")


def jpeg(seed: int, w: int = 120, h: int = 90, quality: int = 90) -> bytes:
    return encode(benign_image(seed, w, h), "JPEG", quality=quality)


def mp4(seed: int) -> bytes:
    """Two seconds of benign scenes, a key frame every 0.5 s (four scenes, four key frames)."""
    out = io.BytesIO()
    with av.open(out, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        stream.options = {"g": "5", "keyint_min": "5", "sc_threshold": "0"}
        for i in range(20):
            frame = av.VideoFrame.from_image(benign_image(seed * 10 + i // 5, 160, 120))
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    return out.getvalue()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ---------------------------------------------------------------- the test host


class Host:
    """A tiny ASGI web host: path (with query) -> (status, headers, body); change it mid-test."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.url = ""

    def page(self, path: str, html: str, **headers: str) -> None:
        self.routes[path] = (200, {"content-type": "text/html; charset=utf-8", **headers}, html.encode())

    def file(self, path: str, body: bytes, content_type: str = "application/octet-stream") -> None:
        self.routes[path] = (200, {"content-type": content_type}, body)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        query = scope.get("query_string", b"").decode()
        path = scope["path"] + (f"?{query}" if query else "")
        self.requests.append((path, {k.decode(): v.decode() for k, v in scope["headers"]}))
        status, headers, body = self.routes.get(path, (404, {"content-type": "text/html"}, b"<h1>Not found</h1>"))
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(k.encode(), v.encode()) for k, v in headers.items()],
            }
        )
        await send({"type": "http.response.body", "body": body})


@contextmanager
def served_host(address: str = "127.0.0.1") -> Iterator[Host]:
    """A :class:`Host` served on a loopback ``address`` (another 127.x address for a second "machine")."""
    from servers import serve

    host = Host()
    with serve(host, host=address) as url:
        host.url = url
        yield host
