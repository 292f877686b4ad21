"""Real servers for tests, on 127.0.0.1 only."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextmanager
def serve(app: Any, port: int | None = None, host: str = "127.0.0.1") -> Iterator[str]:
    """Run an ASGI ``app`` with uvicorn in a thread on loopback (``host``, another 127.x address for a
    second "machine"; on ``port``, or a free one); yields its base URL."""
    import uvicorn

    assert host.startswith("127."), "test servers listen on loopback only"
    port = port or free_port(host)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def child_environment(**settings: str) -> dict[str, str]:
    """The environment for a Seawall process a test starts: none of this process's ``SEAWALL_`` settings
    but the run's audit key file (every process checks the one audit chain with the same key), then
    ``settings``."""
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("SEAWALL_")}
    if "SEAWALL_AUDIT_KEY_FILE" in os.environ:
        env["SEAWALL_AUDIT_KEY_FILE"] = os.environ["SEAWALL_AUDIT_KEY_FILE"]
    env.update(settings)
    return env
