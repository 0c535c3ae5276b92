"""A tiny emulator of the WooCommerce REST v3 orders list, for tests and demos of the
``woocommerce`` poller (``connectors.poll_woocommerce``).

``GET /wp-json/wc/v3/orders`` with HTTP basic auth (consumer key and secret): the orders,
filtered by ``modified_after`` (strictly after, whole seconds, GMT with ``dates_are_gmt``),
sorted by ``orderby=modified|id|date`` (ties by id) and ``order=asc|desc``, paged by
``per_page`` (at most 100) and ``page``, with the ``X-WP-Total`` and ``X-WP-TotalPages``
headers. Orders are REST order bodies (``id``, ``number``, ``status``, ``line_items``,
``date_created_gmt``, ``date_modified_gmt`` ...). A wrong key is 401
(``woocommerce_rest_cannot_view``); ``fail_next`` answers the next requests with an error.
"""

from __future__ import annotations

import base64
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from recoverydesk.sandbox.serving import serve_app

__all__ = ["RunningWooCommerce", "WooCommerceEmulator", "gmt", "serve_woocommerce"]


def gmt(moment: datetime) -> str:
    """WooCommerce's ``*_gmt`` form: no zone, whole seconds."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")


def _parse(raw: str) -> datetime:
    moment = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message, "data": {"status": status}}, status)


class WooCommerceEmulator:
    """One shop's orders. Every public method is safe to call while the app serves requests."""

    def __init__(
        self,
        *,
        consumer_key: str = "ck_test",
        consumer_secret: str = "cs_test",  # noqa: S107 - the emulator's test credentials
    ) -> None:
        self._credentials = (consumer_key, consumer_secret)
        self._lock = threading.Lock()
        self._orders: dict[int, dict[str, Any]] = {}
        self._failures: list[int] = []
        self.requests: list[dict[str, str]] = []  # the query of every list request served
        self.app = Starlette(routes=[Route("/wp-json/wc/v3/orders", self._list, methods=["GET"])])

    def put_order(
        self,
        order_id: int,
        *,
        modified: datetime,
        status: str = "processing",
        created: datetime | None = None,
        total: str = "50.00",
        sku: str = "MUG",
    ) -> dict[str, Any]:
        """Add or change an order (its ``date_modified_gmt`` becomes ``modified``)."""
        with self._lock:
            known = self._orders.get(order_id)
            order = (
                dict(known)
                if known
                else {
                    "id": order_id,
                    "number": str(order_id),
                    "currency": "USD",
                    "total": total,
                    "customer_id": 0,
                    "billing": {"email": f"buyer{order_id}@example.com"},
                    "shipping": {},
                    "line_items": [{"sku": sku, "quantity": 1, "price": total}],
                    "refunds": [],
                    "date_created_gmt": gmt(created or modified),
                }
            )
            order["status"] = status
            order["date_modified_gmt"] = gmt(modified)
            self._orders[order_id] = order
            return dict(order)

    def fail_next(self, status: int, *, count: int = 1) -> None:
        with self._lock:
            self._failures += [status] * count

    async def _list(self, request: Request) -> JSONResponse:
        auth = request.headers.get("authorization", "")
        scheme, _, encoded = auth.partition(" ")
        try:
            given = base64.b64decode(encoded).decode() if scheme.lower() == "basic" else ""
        except ValueError:
            given = ""
        if tuple(given.split(":", 1)) != self._credentials:
            return _error(401, "woocommerce_rest_cannot_view", "Sorry, you cannot list resources.")
        query = dict(request.query_params)
        with self._lock:
            self.requests.append(query)
            if self._failures:
                status = self._failures.pop(0)
                return _error(status, "internal_server_error", "the shop is having trouble")
            orders = list(self._orders.values())
        try:
            per_page = max(1, min(100, int(query.get("per_page", "10"))))
            page = max(1, int(query.get("page", "1")))
            after = _parse(query["modified_after"]) if query.get("modified_after") else None
        except ValueError as error:
            return _error(400, "rest_invalid_param", str(error))
        if after is not None:
            after = after.replace(microsecond=0)
            orders = [o for o in orders if _parse(o["date_modified_gmt"]) > after]
        field = {"modified": "date_modified_gmt", "date": "date_created_gmt"}.get(
            query.get("orderby", "date"), "id"
        )
        orders.sort(key=lambda o: (o[field] if field != "id" else "", o["id"]))
        if query.get("order", "desc") == "desc":
            orders.reverse()
        total = len(orders)
        chosen = orders[(page - 1) * per_page : page * per_page]
        pages = max(1, -(-total // per_page))
        headers = {"X-WP-Total": str(total), "X-WP-TotalPages": str(pages)}
        return JSONResponse(chosen, headers=headers)


@dataclass
class RunningWooCommerce:
    emulator: WooCommerceEmulator
    base_url: str
    server: uvicorn.Server
    thread: threading.Thread


@contextmanager
def serve_woocommerce(emulator: WooCommerceEmulator) -> Iterator[RunningWooCommerce]:
    """Serve the emulator with uvicorn on a free loopback port, in a daemon thread."""
    with serve_app(emulator.app, "the WooCommerce emulator") as served:
        yield RunningWooCommerce(emulator, served.base_url, served.server, served.thread)
