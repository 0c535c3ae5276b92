"""The Amazon orders poller (``kind: amazon_spapi``): Selling Partner API Orders v0
``getOrders``, the orders updated since a cursor.

The merchant's ``connectors.polling.<name>`` gives ``base_url`` (the SP-API regional endpoint,
``https://sellingpartnerapi-na.amazon.com``), ``marketplace_ids`` (a list or a comma separated
string) and the Login with Amazon credentials: ``client_id``, the client secret as
``client_secret`` (or ``api_key`` / ``api_key_env``, masked in the stored configuration, or
``client_secret_env``) and ``refresh_token`` (or ``refresh_token_env``). Optionally ``lwa_url``
(the token endpoint's host: ``https://api.amazon.com`` for an Amazon ``base_url``, else
``base_url`` itself), ``per_page`` (``MaxResultsPerPage``, 1-100, default 100),
``initial_lookback_hours`` (the first poll's ``LastUpdatedAfter``, default 24) and
``timeout_seconds``.

Access: ``POST <lwa>/auth/o2/token`` (``grant_type=refresh_token``) gives an access token,
cached per credentials until a minute before it expires (by the poll's ``now``) and sent as
``x-amz-access-token``. A 403 with a cached token drops it and exchanges once more.

One poll reads one page: ``GET /orders/v0/orders?MarketplaceIds=..&LastUpdatedAfter=<cursor>
&MaxResultsPerPage=N``, or ``NextToken=..`` to go on with the query of the previous page. Each
order becomes canonical events with the Amazon normalizer (``order.placed`` and the status
event, deterministic ids): an order read twice is stored once.

The cursor is ``<LastUpdateDate>|<AmazonOrderId>`` of the last order taken (the latest one),
followed by ``|<NextToken>`` while the query has more pages (``more`` is then true: poll again
now). ``LastUpdatedAfter`` is inclusive, so a new query skips the orders at or before the
cursor's ``(time, id)`` (orders come sorted by ``LastUpdateDate``): orders updated in the
cursor's second are taken once each. A first page holding only such orders is followed by its
next pages in the same poll (up to ``MAX_PAGES``). A NextToken Amazon no longer knows (400)
starts a new query from the cursor's time.

Errors: 429 (the ``x-amzn-RateLimit-Limit`` is reported), 5xx, timeouts, connection errors and
garbled answers raise ``OutsideUnavailable`` (retried later, the cursor stays); 400/401/403 and
other 4xx, of getOrders or of the token exchange, raise ``PollRefused`` with Amazon's error code.
An order the normalizer cannot read is skipped with a warning. Secrets are never logged.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import structlog

from recoverydesk.connectors.normalize import normalize
from recoverydesk.connectors.poll_woocommerce import PollRefused
from recoverydesk.domain.errors import InvalidEvent
from recoverydesk.services.ports import OutsideUnavailable, PollPage

__all__ = ["MAX_PAGES", "AmazonOrdersPoller", "PollRefused", "format_cursor", "parse_cursor"]

log = structlog.get_logger("recoverydesk.poll_amazon")

MAX_PAGES = 20
AMAZON_LWA = "https://api.amazon.com"
_EARLY = timedelta(seconds=60)  # a cached token is renewed this long before it expires


@dataclass(frozen=True, slots=True)
class Cursor:
    when: datetime
    order_id: str
    next_token: str | None = None

    @property
    def position(self) -> tuple[datetime, str]:
        return self.when, self.order_id


def _moment(raw: object) -> datetime:
    moment = datetime.fromisoformat(str(raw).strip().replace("Z", "+00:00"))
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def parse_cursor(cursor: str | None) -> Cursor | None:
    if not cursor:
        return None
    when, _, rest = cursor.partition("|")
    order_id, _, token = rest.partition("|")
    return Cursor(_moment(when), order_id, token or None)


def format_cursor(position: tuple[datetime, str], next_token: str | None = None) -> str:
    head = f"{_stamp(position[0])}|{position[1]}"
    return f"{head}|{next_token}" if next_token else head


def _position(order: Mapping[str, Any]) -> tuple[datetime, str]:
    return _moment(order.get("LastUpdateDate") or order["PurchaseDate"]), str(
        order["AmazonOrderId"]
    )


def order_events(order: Mapping[str, Any], received_at: datetime) -> list[dict[str, Any]]:
    """The canonical events of one polled order (placed, then its status)."""
    return normalize("amazon", {"payload": {"Orders": [order]}}, received_at=received_at).events


@dataclass(frozen=True, slots=True)
class _Access:
    base_url: str
    lwa_url: str
    client_id: str
    client_secret: str
    refresh_token: str
    marketplaces: str
    per_page: int
    lookback: timedelta
    timeout: float

    @property
    def cache_key(self) -> str:
        raw = "\0".join((self.lwa_url, self.client_id, self.client_secret, self.refresh_token))
        return hashlib.sha256(raw.encode()).hexdigest()


def _secret(connection: Mapping[str, Any], *names: str) -> str:
    for name in names:
        value = connection.get(name)
        if value:
            return str(value).strip()
        env = connection.get(f"{name}_env")
        if env and os.environ.get(str(env)):
            return os.environ[str(env)].strip()
    return ""


def _access(connection: Mapping[str, Any], default_timeout: float) -> _Access:
    base_url = str(connection.get("base_url") or "").strip().rstrip("/")
    raw_ids = connection.get("marketplace_ids") or connection.get("marketplace_id") or ""
    ids = raw_ids if isinstance(raw_ids, list | tuple) else str(raw_ids).split(",")
    marketplaces = ",".join(str(m).strip() for m in ids if str(m).strip())
    values = {
        "base_url": base_url,
        "marketplace_ids": marketplaces,
        "client_id": str(connection.get("client_id") or "").strip(),
        "client_secret": _secret(connection, "client_secret", "api_key"),
        "refresh_token": _secret(connection, "refresh_token"),
    }
    missing = [name for name, value in values.items() if not value]
    if missing:
        raise PollRefused(f"the amazon_spapi poll needs {', '.join(missing)}")
    lwa = str(connection.get("lwa_url") or "").strip().rstrip("/")
    if not lwa:
        lwa = AMAZON_LWA if ".amazon.com" in base_url else base_url
    try:
        per_page = max(1, min(100, int(connection.get("per_page") or 100)))
        hours = float(connection.get("initial_lookback_hours") or 24)
        timeout = float(connection.get("timeout_seconds") or default_timeout)
    except (TypeError, ValueError):
        raise PollRefused(
            "the amazon_spapi poll: per_page, initial_lookback_hours and timeout_seconds "
            "must be numbers"
        ) from None
    return _Access(
        base_url=base_url,
        lwa_url=lwa,
        client_id=values["client_id"],
        client_secret=values["client_secret"],
        refresh_token=values["refresh_token"],
        marketplaces=marketplaces,
        per_page=per_page,
        lookback=timedelta(hours=hours),
        timeout=timeout,
    )


class _ExpiredToken(Exception):
    """getOrders answered 403 to a token: exchange a new one and try once more."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class _LostNextToken(Exception):
    """getOrders refused a NextToken (400): start a new query."""


class AmazonOrdersPoller:
    """``Poller`` for SP-API Orders v0; one HTTP client and one token cache, shared by threads."""

    def __init__(self, client: httpx.Client | None = None, *, timeout: float = 10.0) -> None:
        self._client = client
        self._timeout = timeout
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[str, datetime]] = {}  # credentials -> (token, expiry)
        self.exchanges = 0  # token exchanges made (for tests and metrics)

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(timeout=self._timeout)
            return self._client

    # -- the poll ---------------------------------------------------------------------------

    def poll(self, connection: Mapping[str, Any], cursor: str | None, *, now: datetime) -> PollPage:
        access = _access(connection, self._timeout)
        after = parse_cursor(cursor)
        token = after.next_token if after is not None else None
        since = after.when if after is not None else now - access.lookback
        taken: list[Mapping[str, Any]] = []
        # a query started here repeats the orders at the cursor's time (LastUpdatedAfter is
        # inclusive): skip them, on every page of that query
        skipping = token is None and after is not None
        for _ in range(MAX_PAGES):
            try:
                orders, token_next = self._orders(access, since, token, now)
            except _LostNextToken:
                if token is None:
                    raise
                log.warning("amazon NextToken refused: a new query from the cursor")
                token, skipping = None, True
                continue
            token = token_next
            taken = [
                o
                for o in orders
                if not (skipping and after is not None and _position(o) <= after.position)
            ]
            if taken or token is None:
                break
        position = after.position if after is not None else None
        events: list[dict[str, Any]] = []
        for order in taken:
            found = _position(order)
            position = found if position is None or found > position else position
            try:
                events += order_events(order, now)
            except InvalidEvent as error:  # one unreadable order must not stop the poll
                log.warning(
                    "amazon order skipped",
                    order=str(order.get("AmazonOrderId")),
                    error=error.message,
                )
        if position is None:
            return PollPage(events=[], cursor=None, more=False)
        return PollPage(
            events=events, cursor=format_cursor(position, token), more=token is not None
        )

    def _orders(
        self, access: _Access, since: datetime, next_token: str | None, now: datetime
    ) -> tuple[list[Mapping[str, Any]], str | None]:
        params: dict[str, str | int] = {"MarketplaceIds": access.marketplaces}
        if next_token:
            params["NextToken"] = next_token
        else:
            params["LastUpdatedAfter"] = _stamp(since)
            params["MaxResultsPerPage"] = access.per_page
        try:
            body = self._get(access, params, self._token(access, now))
        except _ExpiredToken:
            self._forget(access)
            try:
                body = self._get(access, params, self._token(access, now))
            except _ExpiredToken as again:
                raise PollRefused(again.message) from None
        payload = body.get("payload") if isinstance(body, Mapping) else None
        orders = payload.get("Orders") if isinstance(payload, Mapping) else None
        if not isinstance(payload, Mapping) or not isinstance(orders, list):
            raise OutsideUnavailable("amazon answered with something not a getOrders payload")
        if not all(isinstance(o, Mapping) and o.get("AmazonOrderId") for o in orders):
            raise OutsideUnavailable("amazon answered with an order without AmazonOrderId")
        try:
            for order in orders:
                _position(order)
        except (KeyError, ValueError, TypeError):
            raise InvalidEvent("amazon order without a readable LastUpdateDate") from None
        token = payload.get("NextToken")
        return orders, (str(token) if token else None)

    def _get(self, access: _Access, params: dict[str, str | int], token: str) -> Any:
        try:
            response = self._http().get(
                f"{access.base_url}/orders/v0/orders",
                params=params,
                headers={"x-amz-access-token": token, "Accept": "application/json"},
                timeout=access.timeout,
            )
        except httpx.HTTPError as error:
            raise OutsideUnavailable(f"amazon unreachable ({type(error).__name__})") from None
        status = response.status_code
        if status == 429:
            limit = response.headers.get("x-amzn-RateLimit-Limit")
            raise OutsideUnavailable(
                "amazon answered 429 (QuotaExceeded)"
                + (f", rate limit {limit} requests a second" if limit else "")
            )
        if status >= 500:
            raise OutsideUnavailable(f"amazon answered {status}")
        if status == 403:
            raise _ExpiredToken(f"amazon refused the poll: 403 {_sp_error(response)}")
        if status == 400 and "NextToken" in params:
            raise _LostNextToken
        if status >= 400:
            raise PollRefused(f"amazon refused the poll: {status} {_sp_error(response)}")
        try:
            return response.json()
        except json.JSONDecodeError:
            raise OutsideUnavailable("amazon answered with something not JSON") from None

    # -- Login with Amazon --------------------------------------------------------------------

    def _forget(self, access: _Access) -> None:
        with self._lock:
            self._tokens.pop(access.cache_key, None)

    def _token(self, access: _Access, now: datetime) -> str:
        with self._lock:
            cached = self._tokens.get(access.cache_key)
        if cached is not None and now < cached[1]:
            return cached[0]
        try:
            response = self._http().post(
                f"{access.lwa_url}/auth/o2/token",
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": access.refresh_token,
                    "client_id": access.client_id,
                    "client_secret": access.client_secret,
                },
                headers={"Accept": "application/json"},
                timeout=access.timeout,
            )
        except httpx.HTTPError as error:
            raise OutsideUnavailable(
                f"login with amazon unreachable ({type(error).__name__})"
            ) from None
        if response.status_code == 429 or response.status_code >= 500:
            raise OutsideUnavailable(f"login with amazon answered {response.status_code}")
        if response.status_code >= 400:
            raise PollRefused(
                f"login with amazon refused the token exchange: {response.status_code} "
                f"{_lwa_error(response)}"
            )
        try:
            body = response.json()
            token = str(body["access_token"])
            lifetime = timedelta(seconds=int(body.get("expires_in") or 3600))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            raise OutsideUnavailable("login with amazon answered without an access token") from None
        with self._lock:
            self.exchanges += 1
            self._tokens[access.cache_key] = (token, now + max(lifetime - _EARLY, timedelta(0)))
        return token


def _sp_error(response: httpx.Response) -> str:
    """``code: message`` of SP-API's ``{"errors": [...]}``, if the answer has one."""
    try:
        first = response.json()["errors"][0]
        return f"{first.get('code')}: {first.get('message')}"
    except (json.JSONDecodeError, KeyError, IndexError, TypeError, AttributeError):
        return ""


def _lwa_error(response: httpx.Response) -> str:
    try:
        body = response.json()
        return f"{body.get('error')}: {body.get('error_description')}"
    except (json.JSONDecodeError, AttributeError):
        return ""
