"""The WooCommerce orders poller (``kind: woocommerce``): orders changed since a cursor.

The merchant's ``connectors.polling.<name>`` gives ``base_url`` (the shop), ``consumer_key`` and
the consumer secret as ``api_key`` (or ``api_key_env``), sent as HTTP basic auth; optionally
``per_page`` (1-100, default 50) and ``timeout_seconds``.

One poll reads ``GET /wp-json/wc/v3/orders?modified_after=...&dates_are_gmt=true&orderby=modified
&order=asc&per_page=N&page=P`` and turns each order into canonical events with the WooCommerce
normalizer (``order.placed`` with a stable id, the status event or ``order.updated``, refunds):
every id is deterministic, so an order read twice is stored once.

The cursor is ``<date_modified_gmt>|<id>`` of the last order taken. WooCommerce compares
``modified_after`` strictly and in whole seconds, so the poll asks from one second before the
cursor's time and skips the orders at or before ``(time, id)``: orders modified in the same
second as the cursor, on either side of a page boundary, are taken once each. When the first
page holds only orders already taken (many changes in one second), the next pages of the same
query are read (up to ``MAX_PAGES``). ``more`` says a full page was returned: poll again now.

Errors: 429, 5xx, timeouts, connection errors and garbled answers raise ``OutsideUnavailable``
(retried later, the cursor stays); 401/403 and other 4xx raise ``PollRefused`` (retried too, and
dead-lettered in the end). The secret is never logged.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from recoverydesk.connectors.normalize import normalize
from recoverydesk.domain.errors import DeskError, InvalidEvent
from recoverydesk.services.ports import OutsideUnavailable, PollPage

__all__ = ["MAX_PAGES", "PollRefused", "WooCommercePoller"]

MAX_PAGES = 20
_TOPICS = ("order.created", "order.updated")


class PollRefused(DeskError):
    code = "poll_refused"


def _moment(raw: object) -> datetime:
    moment = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _position(order: Mapping[str, Any]) -> tuple[datetime, int]:
    when = order.get("date_modified_gmt") or order.get("date_created_gmt")
    return _moment(when), int(order["id"])


def parse_cursor(cursor: str | None) -> tuple[datetime, int] | None:
    if not cursor:
        return None
    when, _, oid = cursor.rpartition("|")
    return _moment(when), int(oid or 0)


def format_cursor(position: tuple[datetime, int]) -> str:
    return f"{position[0].strftime('%Y-%m-%dT%H:%M:%S')}|{position[1]}"


def order_events(order: Mapping[str, Any], received_at: datetime) -> list[dict[str, Any]]:
    """The canonical events of one polled order (placed, then its status or update)."""
    found: dict[str, dict[str, Any]] = {}
    for topic in _TOPICS:
        for event in normalize(
            "woocommerce", order, headers={"x-wc-webhook-topic": topic}, received_at=received_at
        ).events:
            found.setdefault(str(event["id"]), event)
    return list(found.values())


class WooCommercePoller:
    """``Poller`` for WooCommerce REST v3 orders; one HTTP client, shared by threads."""

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
        key, secret = connection.get("consumer_key"), connection.get("api_key")
        if not base_url or not key or not secret:
            raise PollRefused("the woocommerce poll needs base_url, consumer_key and api_key")
        per_page = max(1, min(100, int(connection.get("per_page") or 50)))
        timeout = float(connection.get("timeout_seconds") or self._timeout)
        after = parse_cursor(cursor)
        params: dict[str, str | int] = {
            "orderby": "modified",
            "order": "asc",
            "per_page": per_page,
            "dates_are_gmt": "true",
        }
        if after is not None:
            since = after[0] - timedelta(seconds=1)
            params["modified_after"] = since.strftime("%Y-%m-%dT%H:%M:%S")
        taken: list[Mapping[str, Any]] = []
        full = False
        for page in range(1, MAX_PAGES + 1):
            orders = self._page(
                f"{base_url}/wp-json/wc/v3/orders",
                params={**params, "page": page},
                auth=(str(key), str(secret)),
                timeout=timeout,
            )
            full = len(orders) >= per_page
            taken = sorted(
                (o for o in orders if after is None or _position(o) > after), key=_position
            )
            if taken or not full:
                break
        if not taken:
            return PollPage(events=[], cursor=cursor, more=False)
        events = [event for order in taken for event in order_events(order, now)]
        return PollPage(events=events, cursor=format_cursor(_position(taken[-1])), more=full)

    def _page(
        self,
        url: str,
        *,
        params: dict[str, str | int],
        auth: tuple[str, str],
        timeout: float,
    ) -> list[Mapping[str, Any]]:
        try:
            response = self._http().get(
                url,
                params=params,
                auth=auth,
                headers={"Accept": "application/json"},
                timeout=timeout,
            )
        except httpx.HTTPError as error:
            raise _unavailable(f"woocommerce unreachable ({type(error).__name__})") from None
        if response.status_code == 429 or response.status_code >= 500:
            raise _unavailable(f"woocommerce answered {response.status_code}")
        if response.status_code >= 400:
            raise PollRefused(f"woocommerce refused the poll: {response.status_code}")
        try:
            body = response.json()
        except json.JSONDecodeError:
            raise _unavailable("woocommerce answered with something not JSON") from None
        if not isinstance(body, list) or not all(isinstance(o, dict) and "id" in o for o in body):
            raise _unavailable("woocommerce answered with something not an order list")
        try:
            for order in body:
                _position(order)
        except (ValueError, TypeError):
            raise InvalidEvent("woocommerce order without a readable date_modified_gmt") from None
        return body


def _unavailable(message: str) -> OutsideUnavailable:
    return OutsideUnavailable(message)
