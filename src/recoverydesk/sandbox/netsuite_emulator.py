"""An emulator of the parts of NetSuite's SuiteTalk REST API that the ``netsuite`` connector
uses (``connectors.netsuite``), with its state in memory, for tests and demos.

- ``GET /services/rest/record/v1/salesOrder/{id}`` (``expandSubResources=true`` expands the
  ``item`` sublist): ``id``, ``tranId``, ``otherRefNum``, ``memo``, ``status`` and
  ``orderStatus`` (``{"id": "B", "refName": "Pending Fulfillment"}``), ``lastModifiedDate``,
  the custom body fields (``custbody_*``) and ``item.items[]`` (``line``, ``item`` {id,
  refName = the sku}, ``quantity``, ``isClosed``).
- ``PATCH`` of the same: ``orderStatus`` (``C`` cancels, only while Pending Approval; ``B``
  approves), ``memo``, ``custbody_*`` fields, and ``item.items[]`` merged by ``line``
  (``isClosed``, ``quantity``, never above the current one). When every line is closed the order
  is Closed. 204.
- ``POST .../salesOrder/{id}/!transform/returnAuthorization`` (``memo``, ``custbody_*``,
  ``item.items[]`` of ``{orderLine, quantity}``; all lines when absent): 204 with ``Location``
  of the new ``returnAuthorization``. Refused while the order is Pending Approval or Cancelled.
  ``X-NetSuite-Idempotency-Key``: a repeat is answered as the first time and creates nothing.
- ``GET /services/rest/record/v1/returnAuthorization/{id}``.
- ``POST /services/rest/query/v1/suiteql`` (``Prefer: transient``): only the connector's query
  of sales orders changed since a cursor (``connectors.netsuite.suiteql``), paged with
  ``limit``/``offset``; ``status`` is the letter, ``modified`` the time in ``time_zone``.

Every request must carry an OAuth 1.0a ``Authorization`` (token-based authentication):
HMAC-SHA256, realm = an account of the emulator, its consumer key and token, a timestamp within
five minutes and a nonce not seen before; the signature is checked with ``oauthlib``. Anything
else is 401 ``INVALID_LOGIN``. Each account has a concurrency limit: a request that would make
more than that many in flight is answered 429 ``SSS_REQUEST_LIMIT_EXCEEDED`` (counted in
``limited``). Errors have NetSuite's shape: ``{"type", "title", "status", "o:errorDetails":
[{"detail", "o:errorCode"}]}``. ``fail_next`` injects failures; ``latency`` slows every request
(while it counts as in flight).
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo

import uvicorn
from oauthlib.common import Request as OAuthRequest  # type: ignore[import-untyped]
from oauthlib.oauth1.rfc5849 import signature as oauth_signature  # type: ignore[import-untyped]
from oauthlib.oauth1.rfc5849.utils import (  # type: ignore[import-untyped]
    parse_authorization_header,
    unescape,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from recoverydesk.sandbox.serving import serve_app

__all__ = [
    "STATUS_NAMES",
    "Credentials",
    "NetSuiteEmulator",
    "RunningNetSuite",
    "serve_netsuite",
]

# The emulator's status names, NetSuite's letters and display names.
STATUS_NAMES: dict[str, tuple[str, str]] = {
    "pendingApproval": ("A", "Pending Approval"),
    "pendingFulfillment": ("B", "Pending Fulfillment"),
    "cancelled": ("C", "Cancelled"),
    "partiallyFulfilled": ("D", "Partially Fulfilled"),
    "pendingBillingPartFulfilled": ("E", "Pending Billing/Partially Fulfilled"),
    "pendingBilling": ("F", "Pending Billing"),
    "fullyBilled": ("G", "Billed"),
    "closed": ("H", "Closed"),
}
_BY_LETTER = {letter: name for name, (letter, _) in STATUS_NAMES.items()}
_NO_RETURN = frozenset({"pendingApproval", "cancelled"})
_CLOCK_SKEW = timedelta(minutes=5)
_RFC = "https://www.rfc-editor.org/rfc/rfc9110.html"
_TITLES = {
    400: ("Bad Request", "15.5.1"),
    401: ("Unauthorized", "15.5.2"),
    403: ("Forbidden", "15.5.4"),
    404: ("Not Found", "15.5.5"),
    429: ("Too Many Requests", "rfc6585#section-4"),
    500: ("Internal Server Error", "15.6.1"),
    502: ("Bad Gateway", "15.6.3"),
    503: ("Service Unavailable", "15.6.4"),
}
INVALID_LOGIN = (
    "Invalid login attempt. For more details, see the Login Audit Trail in the NetSuite UI at "
    "Setup > Users/Roles > User Management > View Login Audit Trail."
)
_LIMIT_MESSAGE = (
    "Concurrent request limit exceeded. Request blocked. Your account's concurrency limit is "
    "{limit} requests at once."
)


@dataclass(frozen=True, slots=True)
class Credentials:
    """One account's token-based authentication: the integration's and the access token's."""

    account: str = "1234567_SB1"
    consumer_key: str = "ck"
    consumer_secret: str = "cs"  # noqa: S105 - the emulator's sample credentials
    token_id: str = "tid"  # noqa: S105
    token_secret: str = "ts"  # noqa: S105

    def connection(self, base_url: str, **extra: Any) -> dict[str, Any]:
        """A ``netsuite`` connection for the connector, pointed at the emulator."""
        return {
            "kind": "netsuite",
            "base_url": base_url,
            "account": self.account,
            "consumer_key": self.consumer_key,
            "consumer_secret": self.consumer_secret,
            "token_id": self.token_id,
            "token_secret": self.token_secret,
            **extra,
        }


@dataclass(slots=True)
class _Line:
    line: int
    sku: str
    quantity: int
    is_closed: bool = False

    def view(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "item": {"id": self.sku, "refName": self.sku},
            "quantity": self.quantity,
            "isClosed": self.is_closed,
        }


@dataclass(slots=True)
class _SalesOrder:
    id: str
    tran_id: str
    other_ref: str | None
    status: str
    lines: list[_Line]
    modified: datetime
    memo: str | None = None
    custom: dict[str, Any] = field(default_factory=dict)
    patches: int = 0


@dataclass(frozen=True, slots=True)
class ReturnAuthorization:
    id: str
    created_from: str
    memo: str | None
    custom: dict[str, Any]
    lines: list[dict[str, Any]]
    idempotency_key: str | None


class _HttpError(Exception):
    def __init__(self, status: int, code: str, detail: str) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail

    def response(self) -> JSONResponse:
        title, section = _TITLES.get(self.status, ("Error", ""))
        kind = f"{_RFC}#section-{section}" if section and "rfc" not in section else section
        body = {
            "type": kind,
            "title": title,
            "status": self.status,
            "o:errorDetails": [{"detail": self.detail, "o:errorCode": self.code}],
        }
        return JSONResponse(body, status_code=self.status)


def _wall_clock() -> datetime:
    return datetime.now(UTC)


class NetSuiteEmulator:
    """One or more NetSuite accounts with their sales orders and return authorizations.

    ``clock`` stamps ``lastModifiedDate``; the OAuth timestamp is checked on the wall clock.
    Every public method is safe to call from a test while the app serves requests."""

    def __init__(
        self,
        credentials: Credentials | None = None,
        *,
        concurrency: int = 5,
        time_zone: str = "UTC",
        clock: Callable[[], datetime] = _wall_clock,
    ) -> None:
        self._lock = threading.RLock()
        self._accounts: dict[str, Credentials] = {}
        self._limits: dict[str, int] = {}
        self._in_flight: dict[str, int] = {}
        self._nonces: set[tuple[str, str]] = set()
        self._orders: dict[str, _SalesOrder] = {}
        self._returns: dict[str, ReturnAuthorization] = {}
        self._idempotent: dict[str, str] = {}
        self._failures: list[tuple[int, str]] = []
        self._next_id = 1000
        self.zone = ZoneInfo(time_zone)
        self.clock = clock
        self.latency = 0.0
        self.limited = 0  # requests answered 429 for the concurrency limit
        self.max_in_flight: dict[str, int] = {}
        self.unauthorized = 0
        self.requests: list[tuple[str, str]] = []  # (method, path) of authenticated requests
        self.add_account(credentials or Credentials(), concurrency=concurrency)
        base = "/services/rest/record/v1"
        self.app = Starlette(
            routes=[
                Route(f"{base}/salesOrder/{{id}}", self._get_order, methods=["GET"]),
                Route(f"{base}/salesOrder/{{id}}", self._patch_order, methods=["PATCH"]),
                Route(
                    f"{base}/salesOrder/{{id}}/!transform/returnAuthorization",
                    self._transform,
                    methods=["POST"],
                ),
                Route(f"{base}/returnAuthorization/{{id}}", self._get_return, methods=["GET"]),
                Route("/services/rest/query/v1/suiteql", self._suiteql, methods=["POST"]),
            ]
        )

    # -- set-up and inspection (for tests) -------------------------------------------------------

    def add_account(self, credentials: Credentials, *, concurrency: int = 5) -> None:
        with self._lock:
            self._accounts[credentials.account] = credentials
            self._limits[credentials.account] = concurrency

    def set_concurrency(self, account: str, limit: int) -> None:
        with self._lock:
            self._limits[account] = limit

    def add_order(
        self,
        so_id: str,
        *,
        status: str = "pendingFulfillment",
        lines: Mapping[str, int] | None = None,
        tran_id: str | None = None,
        other_ref: str | None = None,
        modified: datetime | None = None,
    ) -> None:
        if status not in STATUS_NAMES:
            raise ValueError(f"status: one of {', '.join(STATUS_NAMES)}")
        found = [_Line(n, sku, qty) for n, (sku, qty) in enumerate((lines or {}).items(), 1)]
        with self._lock:
            self._orders[so_id] = _SalesOrder(
                id=so_id,
                tran_id=tran_id or f"SO{so_id}",
                other_ref=other_ref,
                status=status,
                lines=found,
                modified=_second(modified or self.clock()),
            )

    def set_status(self, so_id: str, status: str, *, at: datetime | None = None) -> None:
        if status not in STATUS_NAMES:
            raise ValueError(f"status: one of {', '.join(STATUS_NAMES)}")
        with self._lock:
            order = self._orders[so_id]
            order.status = status
            order.modified = _second(at or self.clock())

    def order(self, so_id: str) -> dict[str, Any] | None:
        with self._lock:
            order = self._orders.get(so_id)
            return self._view(order, expand=True) if order is not None else None

    def patches(self, so_id: str) -> int:
        with self._lock:
            return self._orders[so_id].patches

    def returns(self) -> list[ReturnAuthorization]:
        with self._lock:
            return list(self._returns.values())

    def fail_next(self, status: int, *, message: str = "An unexpected error occurred.") -> None:
        """The next authenticated request is answered ``status`` with ``message``."""
        with self._lock:
            self._failures.append((status, message))

    # -- authentication and limits ---------------------------------------------------------------

    def _authenticate(self, request: Request, body: bytes) -> str:
        """The account of a correctly signed request; raises 401 otherwise."""
        header = request.headers.get("authorization", "")
        try:
            params = {k: unescape(v) for k, v in parse_authorization_header(header)}
        except ValueError:
            raise self._refused() from None
        with self._lock:
            account = self._accounts.get(str(params.get("realm", "")))
        if account is None:
            raise self._refused()
        checks = (
            params.get("oauth_signature_method") == "HMAC-SHA256",
            params.get("oauth_consumer_key") == account.consumer_key,
            params.get("oauth_token") == account.token_id,
            params.get("oauth_version", "1.0") == "1.0",
        )
        if not all(checks) or not params.get("oauth_nonce"):
            raise self._refused()
        try:
            stamp = datetime.fromtimestamp(int(str(params.get("oauth_timestamp"))), UTC)
        except (TypeError, ValueError, OverflowError):
            raise self._refused() from None
        if abs(_wall_clock() - stamp) > _CLOCK_SKEW:
            raise self._refused()
        uri = str(request.url)
        oauth = OAuthRequest(uri, http_method=request.method, body=None, headers={})
        oauth.params = oauth_signature.collect_parameters(
            uri_query=urlsplit(uri).query,
            headers={"Authorization": header},
            exclude_oauth_signature=True,
        )
        oauth.signature = params.get("oauth_signature", "")
        if not oauth_signature.verify_hmac_sha256(
            oauth, account.consumer_secret, account.token_secret
        ):
            raise self._refused()
        nonce = (account.account, str(params["oauth_nonce"]))
        with self._lock:
            if nonce in self._nonces:
                raise self._refused()
            self._nonces.add(nonce)
        return account.account

    def _refused(self) -> _HttpError:
        with self._lock:
            self.unauthorized += 1
        return _HttpError(401, "INVALID_LOGIN", INVALID_LOGIN)

    @contextmanager
    def _slot(self, account: str) -> Iterator[None]:
        with self._lock:
            limit = self._limits[account]
            busy = self._in_flight.get(account, 0)
            if busy >= limit:
                self.limited += 1
                raise _HttpError(
                    429, "SSS_REQUEST_LIMIT_EXCEEDED", _LIMIT_MESSAGE.format(limit=limit)
                )
            self._in_flight[account] = busy + 1
            self.max_in_flight[account] = max(self.max_in_flight.get(account, 0), busy + 1)
        try:
            yield
        finally:
            with self._lock:
                self._in_flight[account] -= 1

    async def _serve(
        self, request: Request, handle: Callable[[Request, bytes], Response]
    ) -> Response:
        try:
            body = await request.body()
            account = self._authenticate(request, body)
            with self._slot(account):
                with self._lock:
                    self.requests.append((request.method, request.url.path))
                if self.latency:
                    await asyncio.sleep(self.latency)
                with self._lock:
                    failure = self._failures.pop(0) if self._failures else None
                if failure is not None:
                    raise _HttpError(failure[0], "UNEXPECTED_ERROR", failure[1])
                with self._lock:
                    return handle(request, body)
        except _HttpError as error:
            return error.response()

    # -- the endpoints ---------------------------------------------------------------------------

    async def _get_order(self, request: Request) -> Response:
        return await self._serve(request, self._read_order)

    async def _patch_order(self, request: Request) -> Response:
        return await self._serve(request, self._update_order)

    async def _transform(self, request: Request) -> Response:
        return await self._serve(request, self._create_return)

    async def _get_return(self, request: Request) -> Response:
        return await self._serve(request, self._read_return)

    async def _suiteql(self, request: Request) -> Response:
        return await self._serve(request, self._query)

    def _find(self, request: Request) -> _SalesOrder:
        so_id = str(request.path_params["id"])
        order = self._orders.get(so_id)
        if order is None:
            raise _HttpError(
                404,
                "NONEXISTENT_ID",
                "The record instance does not exist. Provide a valid record instance ID.",
            )
        return order

    def _read_order(self, request: Request, body: bytes) -> Response:
        order = self._find(request)
        expand = request.query_params.get("expandSubResources", "").lower() == "true"
        return JSONResponse(self._view(order, expand=expand))

    def _view(self, order: _SalesOrder, *, expand: bool) -> dict[str, Any]:
        letter, name = STATUS_NAMES[order.status]
        href = f"/services/rest/record/v1/salesOrder/{order.id}"
        sublist: dict[str, Any] = {"links": [{"rel": "self", "href": f"{href}/item"}]}
        if expand:
            items = [line.view() for line in order.lines]
            sublist |= {
                "items": items,
                "count": len(items),
                "hasMore": False,
                "offset": 0,
                "totalResults": len(items),
            }
        view: dict[str, Any] = {
            "links": [{"rel": "self", "href": href}],
            "id": order.id,
            "tranId": order.tran_id,
            "status": {"id": letter, "refName": name},
            "orderStatus": {"id": letter, "refName": name},
            "lastModifiedDate": order.modified.isoformat().replace("+00:00", "Z"),
            "item": sublist,
        }
        if order.other_ref is not None:
            view["otherRefNum"] = order.other_ref
        if order.memo is not None:
            view["memo"] = order.memo
        return view | order.custom

    def _update_order(self, request: Request, raw: bytes) -> Response:
        order = self._find(request)
        body = _json_object(raw)
        status = order.status
        changes: dict[int, Mapping[str, Any]] = {}
        for key, value in body.items():
            if key == "orderStatus":
                status = _new_status(order, value)
            elif key == "item":
                changes = self._line_changes(order, value)
            elif key != "memo" and not key.startswith("custbody"):
                raise _HttpError(
                    400, "INVALID_KEY_OR_REF", f"Invalid field {key}: it cannot be set."
                )
        if order.status in ("cancelled", "closed") and changes:
            raise _HttpError(400, "USER_ERROR", "The sales order is cancelled or closed.")
        for line in order.lines:
            change = changes.get(line.line)
            if change is None:
                continue
            if "quantity" in change:
                line.quantity = int(change["quantity"])
            if change.get("isClosed") is not None:
                line.is_closed = bool(change["isClosed"])
        order.status = status
        closed = order.lines and all(line.is_closed for line in order.lines)
        if closed and order.status != "cancelled":
            order.status = "closed"
        if "memo" in body:
            order.memo = None if body["memo"] is None else str(body["memo"])
        order.custom |= {k: v for k, v in body.items() if k.startswith("custbody")}
        order.modified = _second(self.clock())
        order.patches += 1
        return Response(status_code=204)

    @staticmethod
    def _line_changes(order: _SalesOrder, value: object) -> dict[int, Mapping[str, Any]]:
        items = value.get("items") if isinstance(value, Mapping) else None
        if not isinstance(items, list):
            raise _HttpError(400, "INVALID_KEY_OR_REF", "item: an object with items.")
        lines = {line.line: line for line in order.lines}
        found: dict[int, Mapping[str, Any]] = {}
        for item in items:
            number = item.get("line") if isinstance(item, Mapping) else None
            if not isinstance(number, int) or number not in lines:
                raise _HttpError(400, "INVALID_KEY_OR_REF", f"Invalid line reference key {number}.")
            assert isinstance(item, Mapping)
            quantity = item.get("quantity")
            if quantity is not None and (
                not isinstance(quantity, int) or not 0 < quantity <= lines[number].quantity
            ):
                raise _HttpError(
                    400, "INVALID_FLD_VALUE", f"Invalid quantity {quantity} on line {number}."
                )
            found[number] = item
        return found

    def _create_return(self, request: Request, raw: bytes) -> Response:
        order = self._find(request)
        key = request.headers.get("x-netsuite-idempotency-key", "").strip() or None
        if key is not None and key in self._idempotent:
            return self._created(self._idempotent[key])
        if order.status in _NO_RETURN:
            name = STATUS_NAMES[order.status][1]
            raise _HttpError(
                400,
                "INVALID_INITIALIZE_REF",
                f"You cannot create a return authorization from a sales order that is {name}.",
            )
        body = _json_object(raw)
        lines = {line.line: line for line in order.lines}
        wanted = body.get("item", {}).get("items") if isinstance(body.get("item"), dict) else None
        returned: list[dict[str, Any]] = []
        if wanted is None:
            returned = [{"sku": line.sku, "quantity": line.quantity} for line in order.lines]
        else:
            for item in wanted:
                number = item.get("orderLine") if isinstance(item, dict) else None
                if number not in lines:
                    raise _HttpError(
                        400, "INVALID_KEY_OR_REF", f"Invalid orderLine reference key {number}."
                    )
                qty = item.get("quantity") or lines[number].quantity
                returned.append({"sku": lines[number].sku, "quantity": qty})
        self._next_id += 1
        ra = ReturnAuthorization(
            id=str(self._next_id),
            created_from=order.id,
            memo=str(body["memo"]) if body.get("memo") is not None else None,
            custom={k: v for k, v in body.items() if k.startswith("custbody")},
            lines=returned,
            idempotency_key=key,
        )
        self._returns[ra.id] = ra
        if key is not None:
            self._idempotent[key] = ra.id
        return self._created(ra.id)

    @staticmethod
    def _created(ra_id: str) -> Response:
        location = f"/services/rest/record/v1/returnAuthorization/{ra_id}"
        return Response(status_code=204, headers={"Location": location})

    def _read_return(self, request: Request, body: bytes) -> Response:
        ra = self._returns.get(str(request.path_params["id"]))
        if ra is None:
            raise _HttpError(
                404,
                "NONEXISTENT_ID",
                "The record instance does not exist. Provide a valid record instance ID.",
            )
        view = {
            "id": ra.id,
            "createdFrom": {"id": ra.created_from},
            "memo": ra.memo,
            "item": {"items": ra.lines},
        }
        return JSONResponse(view | ra.custom)

    def _query(self, request: Request, raw: bytes) -> Response:
        if request.headers.get("prefer", "").lower() != "transient":
            raise _HttpError(400, "INVALID_PARAMETER", "The Prefer: transient header is needed.")
        query = _json_object(raw).get("q")
        matched = _QUERY.fullmatch(str(query or "").strip())
        if matched is None:
            raise _HttpError(
                400, "INVALID_PARAMETER", "Invalid search query. The emulator knows one query."
            )
        if matched.group("ts") != matched.group("ts2"):
            raise _HttpError(400, "INVALID_PARAMETER", "Invalid search query: two cursors.")
        since = datetime.strptime(matched.group("ts"), "%Y-%m-%d %H:%M:%S").replace(
            tzinfo=self.zone
        )
        after = (since, int(matched.group("id")))
        try:
            limit = int(request.query_params.get("limit", "1000"))
            offset = int(request.query_params.get("offset", "0"))
        except ValueError:
            raise _HttpError(400, "INVALID_PARAMETER", "limit and offset: integers.") from None
        rows = sorted(
            (o for o in self._orders.values() if (o.modified, int(o.id)) > after),
            key=lambda o: (o.modified, int(o.id)),
        )
        page = rows[offset : offset + limit]
        items: list[dict[str, Any]] = [
            {
                "links": [],
                "id": order.id,
                "tranid": order.tran_id,
                "otherrefnum": order.other_ref,
                "status": STATUS_NAMES[order.status][0],
                "modified": order.modified.astimezone(self.zone).strftime("%Y-%m-%d %H:%M:%S"),
            }
            for order in page
        ]
        return JSONResponse(
            {
                "links": [],
                "count": len(items),
                "hasMore": offset + len(items) < len(rows),
                "items": items,
                "offset": offset,
                "totalResults": len(rows),
            }
        )


_STAMP = r"TO_TIMESTAMP\('(?P<{name}>\d{{4}}-\d\d-\d\d \d\d:\d\d:\d\d)', 'YYYY-MM-DD HH24:MI:SS'\)"
_QUERY = re.compile(  # a pattern to match, not a query to run
    " ".join(
        (
            r"SELECT id, tranid, otherrefnum, status,",
            r"TO_CHAR\(lastmodifieddate, 'YYYY-MM-DD HH24:MI:SS'\) AS modified",
            r"FROM transaction WHERE type = 'SalesOrd'",
            rf"AND \(lastmodifieddate > {_STAMP.format(name='ts')}",
            rf"OR \(lastmodifieddate = {_STAMP.format(name='ts2')} AND id > (?P<id>\d+)\)\)",
            r"ORDER BY lastmodifieddate, id",
        )
    ),
    re.IGNORECASE,
)


def _new_status(order: _SalesOrder, value: object) -> str:
    """What a PATCH of ``orderStatus`` makes of the order: approved or cancelled, only from
    Pending Approval."""
    letter = value.get("id") if isinstance(value, Mapping) else value
    wanted = _BY_LETTER.get(str(letter))
    if wanted not in ("cancelled", "pendingFulfillment"):
        raise _HttpError(400, "INVALID_FLD_VALUE", f"Invalid orderStatus reference key {letter}.")
    if order.status != "pendingApproval":
        if wanted == "cancelled":
            raise _HttpError(
                400,
                "INVALID_FLD_VALUE",
                "You can only cancel a sales order that is Pending Approval.",
            )
        raise _HttpError(400, "INVALID_FLD_VALUE", "The order is approved already.")
    return wanted


def _second(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("a time with a time zone is needed")
    return moment.astimezone(UTC).replace(microsecond=0)


def _json_object(raw: bytes) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        raise _HttpError(400, "INVALID_CONTENT", "The request body is not valid JSON.") from None
    if not isinstance(value, dict):
        raise _HttpError(400, "INVALID_CONTENT", "The request body must be a JSON object.")
    return value


# -- running it ----------------------------------------------------------------------------------


@dataclass
class RunningNetSuite:
    emulator: NetSuiteEmulator
    base_url: str
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


@contextmanager
def serve_netsuite(emulator: NetSuiteEmulator) -> Iterator[RunningNetSuite]:
    """Serve the emulator with uvicorn on a free loopback port, in a daemon thread."""
    with serve_app(emulator.app, "the NetSuite emulator") as served:
        yield RunningNetSuite(emulator, served.base_url, served.server, served.thread)
