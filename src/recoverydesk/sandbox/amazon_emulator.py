"""A tiny emulator of Amazon's Login with Amazon token endpoint and the Selling Partner API
Orders v0 ``getOrders``, for tests and demos of the ``amazon_spapi`` poller
(``connectors.poll_amazon``).

- ``POST /auth/o2/token`` (form): ``grant_type=refresh_token`` with ``client_id``,
  ``client_secret`` and ``refresh_token`` gives ``{"access_token", "token_type": "bearer",
  "expires_in"}``. A wrong client is 401 ``invalid_client``, a wrong refresh token 400
  ``invalid_grant``, another grant 400 ``unsupported_grant_type`` (LWA's error JSON).
- ``GET /orders/v0/orders`` with the ``x-amz-access-token`` header: ``MarketplaceIds``
  (required, comma separated), ``LastUpdatedAfter`` (orders updated at or after it) or
  ``CreatedAfter``, ``MaxResultsPerPage`` (1-100, else the emulator's ``page_size``), or
  ``NextToken`` (continues the query it came from, over the result set taken then). Orders
  come sorted by ``LastUpdateDate`` then ``AmazonOrderId``, as
  ``{"payload": {"Orders": [...], "NextToken"?, "LastUpdatedBefore"}}``.
- Errors are SP-API's ``{"errors": [{"code", "message", "details"}]}``: a missing, unknown or
  expired access token is 403 ``Unauthorized``; a bad query 400 ``InvalidInput``;
  ``rate_limit`` answers the next requests 429 ``QuotaExceeded`` with the
  ``x-amzn-RateLimit-Limit`` header; ``fail_next`` answers them with another status.
"""

from __future__ import annotations

import itertools
import secrets
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from recoverydesk.sandbox.serving import serve_app

__all__ = ["AmazonEmulator", "RunningAmazon", "amz_time", "serve_amazon"]

MARKETPLACE = "ATVPDKIKX0DER"  # amazon.com
RATE_LIMIT = "0.0167"  # getOrders: one request a minute, sustained


def amz_time(moment: datetime) -> str:
    """SP-API's ISO 8601 form: UTC, whole seconds, ``Z``."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _parse(raw: str) -> datetime:
    moment = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _errors(
    status: int, code: str, message: str, details: str = "", headers: dict[str, str] | None = None
) -> JSONResponse:
    body = {"errors": [{"code": code, "message": message, "details": details}]}
    return JSONResponse(
        body, status, headers={"x-amzn-RequestId": secrets.token_hex(8), **(headers or {})}
    )


@dataclass
class _Query:
    orders: list[dict[str, Any]]
    offset: int
    size: int
    before: str


class AmazonEmulator:
    """One seller's orders. Every public method is safe to call while the app serves."""

    def __init__(
        self,
        *,
        client_id: str = "amzn1.application-oa2-client.test",
        client_secret: str = "lwa-secret",  # noqa: S107 - the emulator's test credentials
        refresh_token: str = "Atzr|test-refresh",  # noqa: S107
        page_size: int = 100,
        token_ttl: int = 3600,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._client = (client_id, client_secret)
        self._refresh_token = refresh_token
        self.page_size = page_size
        self.token_ttl = token_ttl
        self._clock = clock or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        self._orders: dict[str, dict[str, Any]] = {}
        self._tokens: dict[str, datetime] = {}  # access token -> expiry
        self._queries: dict[str, _Query] = {}  # NextToken -> the query it continues
        self._failures: list[int] = []
        self._counter = itertools.count(1)
        self.token_requests = 0
        self.requests: list[dict[str, str]] = []  # query (and token) of every getOrders served
        self.app = Starlette(
            routes=[
                Route("/auth/o2/token", self._token, methods=["POST"]),
                Route("/orders/v0/orders", self._orders_list, methods=["GET"]),
            ]
        )

    # -- control --------------------------------------------------------------------------

    def put_order(
        self,
        order_id: str,
        *,
        updated: datetime,
        status: str = "Unshipped",
        purchased: datetime | None = None,
        total: str = "11.01",
        marketplace: str = MARKETPLACE,
        channel: str = "MFN",
    ) -> dict[str, Any]:
        """Add or change an order (its ``LastUpdateDate`` becomes ``updated``)."""
        with self._lock:
            known = self._orders.get(order_id)
            order = (
                dict(known)
                if known
                else {
                    "AmazonOrderId": order_id,
                    "PurchaseDate": amz_time(purchased or updated),
                    "OrderTotal": {"CurrencyCode": "USD", "Amount": total},
                    "FulfillmentChannel": channel,
                    "SalesChannel": "Amazon.com",
                    "MarketplaceId": marketplace,
                    "OrderType": "StandardOrder",
                    "NumberOfItemsShipped": 0,
                    "NumberOfItemsUnshipped": 1,
                    "LatestShipDate": amz_time((purchased or updated) + timedelta(days=2)),
                    "BuyerInfo": {"BuyerEmail": f"{order_id}@marketplace.amazon.com"},
                }
            )
            order["OrderStatus"] = status
            order["LastUpdateDate"] = amz_time(updated)
            self._orders[order_id] = order
            return dict(order)

    def rate_limit(self, *, count: int = 1) -> None:
        """Answer the next ``count`` getOrders requests 429 (QuotaExceeded)."""
        self.fail_next(429, count=count)

    def fail_next(self, status: int, *, count: int = 1) -> None:
        with self._lock:
            self._failures += [status] * count

    def expire_tokens(self) -> None:
        """Every access token issued so far is expired from now on."""
        with self._lock:
            self._tokens = dict.fromkeys(self._tokens, datetime.min.replace(tzinfo=UTC))

    # -- Login with Amazon ----------------------------------------------------------------

    async def _token(self, request: Request) -> JSONResponse:
        body = (await request.body()).decode("utf-8", "replace")
        form = {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}
        with self._lock:
            self.token_requests += 1
        if form.get("grant_type") != "refresh_token":
            return _lwa_error(400, "unsupported_grant_type", "the grant type is not supported")
        if (form.get("client_id"), form.get("client_secret")) != self._client:
            return _lwa_error(401, "invalid_client", "Client authentication failed")
        if form.get("refresh_token") != self._refresh_token:
            return _lwa_error(400, "invalid_grant", "The request has an invalid grant parameter")
        token = f"Atza|{next(self._counter)}-{secrets.token_urlsafe(12)}"
        with self._lock:
            self._tokens[token] = self._clock() + timedelta(seconds=self.token_ttl)
        return JSONResponse(
            {
                "access_token": token,
                "refresh_token": self._refresh_token,
                "token_type": "bearer",
                "expires_in": self.token_ttl,
            }
        )

    # -- getOrders ------------------------------------------------------------------------

    async def _orders_list(self, request: Request) -> JSONResponse:
        token = request.headers.get("x-amz-access-token", "")
        query = dict(request.query_params)
        with self._lock:
            self.requests.append({**query, "token": token})
            expiry = self._tokens.get(token)
            if expiry is None or expiry <= self._clock():
                return _errors(
                    403,
                    "Unauthorized",
                    "Access to requested resource is denied.",
                    "The access token you provided has expired."
                    if expiry is not None
                    else "The access token you provided is revoked, malformed or invalid.",
                )
            if self._failures:
                status = self._failures.pop(0)
                if status == 429:
                    return _errors(
                        429,
                        "QuotaExceeded",
                        "You exceeded your quota for the requested resource.",
                        headers={"x-amzn-RateLimit-Limit": RATE_LIMIT},
                    )
                if status < 500:
                    return _errors(status, "InvalidInput", "Invalid input.")
                return _errors(status, "InternalFailure", "We encountered an internal error.")
            return self._answer(query)

    def _answer(self, query: dict[str, str]) -> JSONResponse:
        marketplaces = [m for m in query.get("MarketplaceIds", "").split(",") if m]
        if not marketplaces:
            return _errors(400, "InvalidInput", "MarketplaceIds is required.")
        if query.get("NextToken"):
            found = self._queries.pop(query["NextToken"], None)
            if found is None:
                return _errors(400, "InvalidInput", "Invalid NextToken.")
            return self._page(found)
        return self._new_query(query, marketplaces)

    def _new_query(self, query: dict[str, str], marketplaces: list[str]) -> JSONResponse:
        try:
            size = int(query.get("MaxResultsPerPage") or self.page_size)
            updated = _parse(query["LastUpdatedAfter"]) if query.get("LastUpdatedAfter") else None
            created = _parse(query["CreatedAfter"]) if query.get("CreatedAfter") else None
        except ValueError as error:
            return _errors(400, "InvalidInput", f"Invalid input: {error}")
        if not 1 <= size <= 100:
            return _errors(400, "InvalidInput", "MaxResultsPerPage must be between 1 and 100.")
        if (updated is None) == (created is None):
            return _errors(
                400, "InvalidInput", "Exactly one of CreatedAfter and LastUpdatedAfter is required."
            )
        orders = [o for o in self._orders.values() if o["MarketplaceId"] in marketplaces]
        if updated is not None:
            orders = [o for o in orders if _parse(o["LastUpdateDate"]) >= updated]
        if created is not None:
            orders = [o for o in orders if _parse(o["PurchaseDate"]) >= created]
        orders.sort(key=lambda o: (_parse(o["LastUpdateDate"]), o["AmazonOrderId"]))
        before = amz_time(self._clock() - timedelta(minutes=2))
        return self._page(_Query([dict(o) for o in orders], 0, size, before))

    def _page(self, query: _Query) -> JSONResponse:
        chosen = query.orders[query.offset : query.offset + query.size]
        payload: dict[str, Any] = {"Orders": chosen, "LastUpdatedBefore": query.before}
        rest = query.offset + query.size
        if rest < len(query.orders):
            token = secrets.token_urlsafe(24)
            self._queries[token] = _Query(query.orders, rest, query.size, query.before)
            payload["NextToken"] = token
        return JSONResponse({"payload": payload})


def _lwa_error(status: int, code: str, description: str) -> JSONResponse:
    return JSONResponse({"error": code, "error_description": description}, status)


@dataclass
class RunningAmazon:
    emulator: AmazonEmulator
    base_url: str
    server: uvicorn.Server
    thread: threading.Thread


@contextmanager
def serve_amazon(emulator: AmazonEmulator) -> Iterator[RunningAmazon]:
    """Serve the emulator with uvicorn on a free loopback port, in a daemon thread."""
    with serve_app(emulator.app, "the Amazon emulator") as served:
        yield RunningAmazon(emulator, served.base_url, served.server, served.thread)
