"""A live desk over real HTTP: uvicorn on a free port, in a thread, on a real database."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import httpx
import pytest
import uvicorn

from recoverydesk.bootstrap import Desk, bootstrap
from recoverydesk.config import Settings
from recoverydesk.entrypoints.api.app import create_app
from recoverydesk.services import merchants as admin


@dataclass
class LiveDesk:
    desk: Desk
    base_url: str
    clients: list[httpx.Client] = field(default_factory=list)

    def token(self, merchant: str, role: str = "agent") -> str:
        with self.desk.uow() as uow:
            if uow.merchants.by_name(merchant) is None:
                admin.add_merchant(uow, clock=self.desk.clock, name=merchant)
            token = admin.create_token(
                uow, clock=self.desk.clock, merchant_name=merchant, role=role
            )
            uow.commit()
        return token

    def client(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        client = httpx.Client(base_url=self.base_url, headers=headers, timeout=30)
        self.clients.append(client)
        return client


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def live(db_url: str) -> Iterator[LiveDesk]:
    desk = bootstrap(
        Settings(database_url=db_url, max_body_bytes=64 * 1024, max_events_per_request=200)
    )
    desk.upgrade()
    port = _free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(desk), host="127.0.0.1", port=port, log_level="warning", lifespan="on"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("the API did not start")
        time.sleep(0.02)
    live_desk = LiveDesk(desk, f"http://127.0.0.1:{port}")
    try:
        yield live_desk
    finally:
        for client in live_desk.clients:
            client.close()
        server.should_exit = True
        thread.join(timeout=10)
        desk.close()
