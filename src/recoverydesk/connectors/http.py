"""What the HTTP connectors share: one httpx client per connector, made on first use and
shared by the worker's threads (``close`` closes only a client the connector made itself)."""

from __future__ import annotations

import threading
from typing import ClassVar

import httpx


class SharedClient:
    default_timeout: ClassVar[float] = 10.0
    trust_env: ClassVar[bool] = True  # proxies from the environment

    def __init__(self, client: httpx.Client | None = None, *, timeout: float | None = None) -> None:
        self._client = client
        self._owned = client is None
        self._timeout = self.default_timeout if timeout is None else timeout
        self._lock = threading.Lock()

    def close(self) -> None:
        with self._lock:
            if self._owned and self._client is not None:
                self._client.close()
                self._client = None

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(follow_redirects=False, trust_env=self.trust_env)
            return self._client
