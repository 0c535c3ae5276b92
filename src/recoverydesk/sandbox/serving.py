"""Serving an emulator (any ASGI app) with uvicorn on a free loopback port, in a daemon thread.

The socket is bound before the server starts, so no other process can take the port between
choosing it and serving on it.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn


@dataclass
class Served:
    base_url: str
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@contextmanager
def serve_app(app: Any, name: str) -> Iterator[Served]:
    """Serve ``app`` until the block ends; ``name`` says what did not start, if it does not."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port: int = sock.getsockname()[1]
    server = uvicorn.Server(
        uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
    )
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            sock.close()
            raise RuntimeError(f"{name} did not start")
        time.sleep(0.02)
    served = Served(f"http://127.0.0.1:{port}", server, thread)
    try:
        yield served
    finally:
        served.stop()
        sock.close()


def free_port() -> int:
    """A loopback port nothing listens on right now (to prove a connector's behaviour when
    nothing answers)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port
