"""The generic 3PL poller (``kind: wms_rest``): fulfilment statuses changed since a cursor.

For a warehouse whose webhooks the merchant cannot (or does not) point at the desk. The
merchant's ``connectors.polling.<name>`` gives ``base_url`` and ``api_key`` (a bearer token,
as for the ``wms_rest`` connector), optionally ``timeout_seconds``.

One poll reads ``GET /orders?changed_since=<cursor>`` (every order on the first poll): the
orders whose status, hold or cancellation changed at or after the cursor's time, oldest first,
each with ``changed_at``. Each order's current status becomes ``fulfillment.<status>`` (source
``wms``, ``occurred_at`` the change time, ``data.tracking`` when the 3PL gives one) with the id
``wms:poll:<ref>:<status>``, so a status read again, however often, is stored once. The cursor
is the latest ``changed_at`` read; the query includes it, so orders changed in that same
instant are read again (and dedupe) rather than missed. ``not_released`` says nothing.

Errors: 429, 5xx, timeouts, connection errors and garbled answers raise ``OutsideUnavailable``
(retried later, the cursor stays); other 4xx raise ``PollRefused``.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import httpx

from recoverydesk.connectors.poll_woocommerce import PollRefused
from recoverydesk.services.ports import OutsideUnavailable, PollPage

__all__ = ["ThreePLPoller", "status_event"]

_REPORTED = ("released", "picking", "packed", "shipped", "delivered")


def _iso(raw: object) -> str:
    moment = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    return moment.isoformat()


def status_event(order: Mapping[str, Any]) -> dict[str, Any] | None:
    """The canonical event of one order's current status (None when it says nothing)."""
    status = str(order.get("status") or "")
    if status not in _REPORTED:
        return None
    ref = str(order["ref"])
    data: dict[str, Any] = {"status": status}
    if status == "shipped" and order.get("tracking"):
        data["tracking"] = str(order["tracking"])
    return {
        "id": f"wms:poll:{ref}:{status}",
        "source": "wms",
        "type": f"fulfillment.{status}",
        "occurred_at": _iso(order["changed_at"]),
        "order": {"ref": ref},
        "data": data,
    }


class ThreePLPoller:
    """``Poller`` for the generic 3PL REST API; one HTTP client, shared by threads."""

    def __init__(self, client: httpx.Client | None = None, *, timeout: float = 10.0) -> None:
        self._client = client
        self._timeout = timeout
        self._lock = threading.Lock()

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(timeout=self._timeout)
            return self._client

    def poll(self, connection: Mapping[str, Any], cursor: str | None, *, now: datetime) -> PollPage:
        base_url = str(connection.get("base_url") or "").rstrip("/")
        api_key = connection.get("api_key")
        if not base_url or not api_key:
            raise PollRefused("the wms_rest poll needs base_url and api_key")
        params = {"changed_since": cursor} if cursor else {}
        try:
            response = self._http().get(
                f"{base_url}/orders",
                params=params,
                headers={"Authorization": f"Bearer {api_key}", "Accept": "application/json"},
                timeout=float(connection.get("timeout_seconds") or self._timeout),
            )
        except httpx.HTTPError as error:
            raise OutsideUnavailable(f"3PL unreachable ({type(error).__name__})") from None
        if response.status_code == 429 or response.status_code >= 500:
            raise OutsideUnavailable(f"3PL answered {response.status_code}")
        if response.status_code >= 400:
            raise PollRefused(f"3PL refused the poll: {response.status_code}")
        try:
            body = response.json()
            orders = body["orders"]
            if not isinstance(orders, list):
                raise TypeError("orders")
            changed = [datetime.fromisoformat(_iso(o["changed_at"])) for o in orders]
            events = [e for o in orders if (e := status_event(o)) is not None]
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            raise OutsideUnavailable("3PL answered with something not an order list") from None
        latest = max(changed).isoformat() if changed else cursor
        return PollPage(events=events, cursor=latest, more=False)
