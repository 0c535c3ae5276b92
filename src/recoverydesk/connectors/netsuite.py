"""The NetSuite connector (``kind: netsuite``): ERP commands over the SuiteTalk REST API, and a
poller of the sales orders changed since a cursor.

The merchant's connection (``connectors.outbound.erp``, or ``connectors.polling.<name>``) gives
``account`` (the account id, e.g. ``1234567_SB1``: the OAuth realm), token-based authentication
credentials ``consumer_key``, ``consumer_secret``, ``token_id``, ``token_secret``, and optionally
``base_url`` (else ``https://<account>.suitetalk.api.netsuite.com``), ``concurrency`` (the
account's concurrency limit, 5 by default), ``timeout_seconds``, and the names of the custom body
fields the desk writes: ``reason_field`` (``custbody_rd_cancel_reason``), ``case_field``
(``custbody_rd_case``) and ``key_field`` (``custbody_rd_command_key``); ``case_url`` is a
template with ``{case_id}`` for the case link (else the case id). Every request is signed with
OAuth 1.0a HMAC-SHA256 (``oauthlib``), realm = the account id.

The sales order is ``order_ids["netsuite"]`` (else ``params["erp_id"]``), its internal id.

- ``erp_update``: ``GET /services/rest/record/v1/salesOrder/{id}?expandSubResources=true``
  first, then one ``PATCH`` of the same record. ``status_action`` ``cancel`` or ``close`` stop
  the whole order: cancelled (``orderStatus`` C) while the record is Pending Approval, else
  closed (every open line of the ``item`` sublist ``isClosed``). ``close_lines`` closes the
  lines of ``params["lines"]`` (``[{sku, qty}]``; a line is closed when the quantity covers it,
  else its quantity is reduced). The PATCH also sets ``memo`` (the note, with the ticket), the
  reason field, the case field and the key field (the command's key). The read makes a repeat
  harmless: a record that already carries the command's key, or an order already cancelled or
  closed, is answered as done without a second PATCH.
- ``return_authorize``: ``POST .../salesOrder/{id}/!transform/returnAuthorization`` with the
  memo, reason, case and (for a partial) the lines; ``X-NetSuite-Idempotency-Key`` is the
  command's key, so a retry does not create a second one. The reference is the new record's id
  (from ``Location``).

Limits: requests to one account go through a limiter shared by every connector and poller of
the process (a semaphore per account, sized by ``concurrency``), so the desk never runs more
requests at once than the account allows. If NetSuite still answers 429 or
``SSS_REQUEST_LIMIT_EXCEEDED`` (other integrations share the limit), the request is retried a
few times with exponential backoff and full jitter, then ``OutsideUnavailable`` is raised.

Errors: 5xx, timeouts, connection errors, redirects and garbled answers raise
``OutsideUnavailable``; 4xx (400, 401, 403, 404 ...) are refusals carrying NetSuite's own words
(``o:errorDetails[].detail``) and code (``o:errorCode``). Secrets are never logged.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
import structlog
from oauthlib.oauth1 import (  # type: ignore[import-untyped]
    SIGNATURE_HMAC_SHA256,
    Client,
)

from recoverydesk.services.ports import (
    OutsideAnswer,
    OutsideCommand,
    OutsideUnavailable,
    PollPage,
)

__all__ = [
    "DEFAULT_CASE_FIELD",
    "DEFAULT_KEY_FIELD",
    "DEFAULT_REASON_FIELD",
    "SHARED_LIMITER",
    "AccountLimiter",
    "NetSuiteConnector",
    "NetSuitePoller",
    "erp_status",
]

log = structlog.get_logger("recoverydesk.connectors.netsuite")

RECORD = "/services/rest/record/v1"
SUITEQL = "/services/rest/query/v1/suiteql"
DEFAULT_REASON_FIELD = "custbody_rd_cancel_reason"
DEFAULT_CASE_FIELD = "custbody_rd_case"
DEFAULT_KEY_FIELD = "custbody_rd_command_key"
DEFAULT_CONCURRENCY = 5
IDEMPOTENCY_HEADER = "X-NetSuite-Idempotency-Key"
LIMIT_CODE = "SSS_REQUEST_LIMIT_EXCEEDED"
_MEMO_MAX = 999

# Sales order statuses: NetSuite's letter, its name, and the desk's ``erp_status``.
_STATUSES: dict[str, tuple[str, str]] = {
    "A": ("Pending Approval", "pending_approval"),
    "B": ("Pending Fulfillment", "pending_fulfillment"),
    "C": ("Cancelled", "cancelled"),
    "D": ("Partially Fulfilled", "partially_fulfilled"),
    "E": ("Pending Billing/Partially Fulfilled", "pending_billing_partially_fulfilled"),
    "F": ("Pending Billing", "pending_billing"),
    "G": ("Billed", "billed"),
    "H": ("Closed", "closed"),
}
_BY_WORDS = {re.sub(r"[^a-z]", "", name.lower()): desk for name, desk in _STATUSES.values()}
_BY_WORDS |= {re.sub(r"[^a-z]", "", desk): desk for _, desk in _STATUSES.values()}
_BY_WORDS |= {"fullybilled": "billed", "pendingbillingpartfulfilled": _STATUSES["E"][1]}
STOPPED = frozenset({"cancelled", "closed"})


def erp_status(value: object) -> str | None:
    """The desk's ``erp_status`` of a NetSuite status in any of its spellings: a letter (``B``,
    ``SalesOrd:B``), a name (``Pending Fulfillment``, ``pendingFulfillment``) or a REST field
    (``{"id": "B", "refName": "Pending Fulfillment"}``)."""
    if isinstance(value, Mapping):
        return erp_status(value.get("id")) or erp_status(value.get("refName"))
    if not isinstance(value, str) or not value.strip():
        return None
    text = value.strip()
    if ":" in text:
        text = text.rsplit(":", 1)[1].strip()
    if text.upper() in _STATUSES and len(text) == 1:
        return _STATUSES[text.upper()][1]
    return _BY_WORDS.get(re.sub(r"[^a-z]", "", text.lower()))


# -- the shared limiter --------------------------------------------------------------------------


class AccountLimiter:
    """At most ``size`` requests at once per NetSuite account, across every thread that uses
    this limiter. A new size for an account (its configuration changed) takes effect for the
    requests that start after it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._slots: dict[str, tuple[int, threading.BoundedSemaphore]] = {}

    def _semaphore(self, account: str, size: int) -> threading.BoundedSemaphore:
        with self._lock:
            found = self._slots.get(account)
            if found is None or found[0] != size:
                found = (size, threading.BoundedSemaphore(size))
                self._slots[account] = found
            return found[1]

    @contextmanager
    def slot(self, account: str, size: int, *, wait: float) -> Iterator[None]:
        semaphore = self._semaphore(account, max(1, size))
        if not semaphore.acquire(timeout=wait):
            raise OutsideUnavailable(
                f"NetSuite {account}: no free request slot within {wait:g}s (concurrency {size})",
                code="netsuite_busy",
            )
        try:
            yield
        finally:
            semaphore.release()


SHARED_LIMITER = AccountLimiter()


# -- the connection and the HTTP calls -----------------------------------------------------------


class _Incomplete(Exception):
    pass


@dataclass(frozen=True, slots=True)
class _Connection:
    account: str
    base_url: str
    consumer_key: str
    consumer_secret: str
    token_id: str
    token_secret: str
    concurrency: int
    timeout: httpx.Timeout

    @classmethod
    def of(cls, connection: Mapping[str, Any], default_timeout: float) -> _Connection:
        names = ("account", "consumer_key", "consumer_secret", "token_id", "token_secret")
        values = {name: str(connection.get(name) or "").strip() for name in names}
        missing = [name for name, value in values.items() if not value]
        if missing:
            raise _Incomplete(f"the netsuite connection needs {', '.join(missing)}")
        account = values["account"]
        base_url = str(connection.get("base_url") or "").strip().rstrip("/")
        if not base_url:
            host = account.lower().replace("_", "-")
            base_url = f"https://{host}.suitetalk.api.netsuite.com"
        return cls(
            account=account,
            base_url=base_url,
            consumer_key=values["consumer_key"],
            consumer_secret=values["consumer_secret"],
            token_id=values["token_id"],
            token_secret=values["token_secret"],
            concurrency=_positive_int(connection.get("concurrency"), DEFAULT_CONCURRENCY),
            timeout=_timeout(connection.get("timeout_seconds"), default_timeout),
        )

    def authorization(self, method: str, url: str) -> str:
        """The OAuth 1.0a header of one request (a fresh nonce and timestamp each time)."""
        client = Client(
            self.consumer_key,
            client_secret=self.consumer_secret,
            resource_owner_key=self.token_id,
            resource_owner_secret=self.token_secret,
            signature_method=SIGNATURE_HMAC_SHA256,
            realm=self.account,
        )
        _, headers, _ = client.sign(url, http_method=method)
        return str(headers["Authorization"])


@dataclass(frozen=True, slots=True)
class _Failure:
    status: int
    code: str | None
    message: str


class _Http:
    """Signed requests to NetSuite through the account limiter, with backoff on 429."""

    def __init__(
        self,
        client: httpx.Client | None,
        *,
        limiter: AccountLimiter,
        retries: int,
        backoff: float,
        max_backoff: float,
        slot_wait: float,
        sleep: Callable[[float], None],
    ) -> None:
        self._client = client
        self._owned = client is None
        self._lock = threading.Lock()
        self._limiter = limiter
        self._retries, self._backoff, self._max_backoff = retries, backoff, max_backoff
        self._slot_wait = slot_wait
        self._sleep = sleep

    def close(self) -> None:
        with self._lock:
            if self._owned and self._client is not None:
                self._client.close()
                self._client = None

    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                self._client = httpx.Client(follow_redirects=False)
            return self._client

    def request(
        self,
        conn: _Connection,
        method: str,
        path: str,
        *,
        what: str,
        query: Mapping[str, str] | None = None,
        body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """The answer (2xx or a 4xx refusal); raises ``OutsideUnavailable`` for the rest."""
        url = f"{conn.base_url}{path}"
        if query:
            url = f"{url}?{urlencode(dict(query), quote_via=quote)}"
        url = str(httpx.URL(url))  # exactly what goes on the wire is what is signed
        content = json.dumps(body).encode() if body is not None else None
        attempt = 0
        while True:
            sent = {"Accept": "application/json", **(headers or {})}
            if content is not None:
                sent["Content-Type"] = "application/json"
            sent["Authorization"] = conn.authorization(method, url)
            with self._limiter.slot(conn.account, conn.concurrency, wait=self._slot_wait):
                response = self._send(
                    method, url=url, headers=sent, content=content, timeout=conn.timeout, what=what
                )
            if not _limited(response):
                break
            if attempt >= self._retries:
                raise OutsideUnavailable(
                    f"NetSuite {what}: HTTP {response.status_code}: {_failure(response).message}",
                    code="netsuite_rate_limited",
                )
            delay = self._delay(attempt, response)
            attempt += 1
            log.info("NetSuite limit reached, backing off", what=what, delay=round(delay, 3))
            self._sleep(delay)
        status = response.status_code
        if status >= 500:
            raise OutsideUnavailable(
                f"NetSuite {what}: HTTP {status}: {_failure(response).message}"
            )
        if 300 <= status < 400:
            raise OutsideUnavailable(f"NetSuite {what}: unexpected redirect (HTTP {status})")
        if status >= 400:
            log.info("NetSuite refused", what=what, status=status)
        return response

    def _send(
        self,
        method: str,
        *,
        url: str,
        headers: dict[str, str],
        content: bytes | None,
        timeout: httpx.Timeout,
        what: str,
    ) -> httpx.Response:
        try:
            return self._http().request(
                method, url, headers=headers, content=content, timeout=timeout
            )
        except httpx.TimeoutException as error:
            raise OutsideUnavailable(
                f"NetSuite {what}: timed out ({type(error).__name__})"
            ) from None
        except httpx.HTTPError as error:
            raise OutsideUnavailable(f"NetSuite {what}: {type(error).__name__}: {error}") from None

    def _delay(self, attempt: int, response: httpx.Response) -> float:
        ceiling = min(self._max_backoff, self._backoff * (2**attempt))
        delay = random.uniform(0, ceiling)  # noqa: S311 - jitter, not a secret
        after = response.headers.get("retry-after", "").strip()
        if after.isdigit():
            delay = max(delay, min(float(after), self._max_backoff))
        return delay


def _limited(response: httpx.Response) -> bool:
    if response.status_code == 429:
        return True
    if response.status_code < 400:
        return False
    return _failure(response).code == LIMIT_CODE


# -- the connector -------------------------------------------------------------------------------


class NetSuiteConnector:
    """``OutsideSystems`` for NetSuite's REST record API; one HTTP client, shared by threads."""

    def __init__(
        self,
        client: httpx.Client | None = None,
        *,
        timeout: float = 15.0,
        limiter: AccountLimiter | None = None,
        retries: int = 4,
        backoff: float = 0.25,
        max_backoff: float = 5.0,
        slot_wait: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._timeout = timeout
        self._http = _Http(
            client,
            limiter=limiter or SHARED_LIMITER,
            retries=retries,
            backoff=backoff,
            max_backoff=max_backoff,
            slot_wait=slot_wait,
            sleep=sleep,
        )

    def close(self) -> None:
        self._http.close()

    def send(self, command: OutsideCommand) -> OutsideAnswer:
        try:
            conn = _Connection.of(command.connection, self._timeout)
        except _Incomplete as missing:
            return OutsideAnswer(
                accepted=False, message=str(missing), facts={"code": "connection_incomplete"}
            )
        so_id = command.order_ids.get("netsuite") or command.params.get("erp_id")
        if not so_id:
            return OutsideAnswer(
                accepted=False,
                message=f"{command.action}: the order has no NetSuite sales order id",
                facts={"code": "no_erp_id"},
            )
        fields = _Fields.of(command.connection)
        if command.action == "erp_update":
            return self._update(conn, fields, str(so_id), command)
        if command.action == "return_authorize":
            return self._return(conn, fields, str(so_id), command)
        return OutsideAnswer(
            accepted=False,
            message=f"the netsuite connector does not do {command.action!r}",
            facts={"code": "unsupported_action"},
        )

    def _read(self, conn: _Connection, so_id: str) -> dict[str, Any] | OutsideAnswer:
        response = self._http.request(
            conn,
            "GET",
            f"{RECORD}/salesOrder/{quote(so_id, safe='')}",
            what="read sales order",
            query={"expandSubResources": "true"},
        )
        if response.status_code >= 400:
            return _refusal(response)
        record = _object(response)
        if record is None:
            raise OutsideUnavailable("NetSuite read sales order: the answer is not a JSON object")
        return record

    def _update(
        self, conn: _Connection, fields: _Fields, so_id: str, command: OutsideCommand
    ) -> OutsideAnswer:
        params = command.params
        wanted = str(params.get("status_action") or "")
        if wanted not in ("cancel", "close", "close_lines"):
            return OutsideAnswer(
                accepted=False,
                message=f"erp_update: unknown status_action {wanted!r}",
                facts={"code": "invalid_params"},
            )
        record = self._read(conn, so_id)
        if isinstance(record, OutsideAnswer):
            return record
        planned = _plan_update(record, wanted, command, fields, so_id)
        if isinstance(planned, OutsideAnswer):
            return planned
        body, done, after = planned
        body |= fields.body(command)
        response = self._http.request(
            conn,
            "PATCH",
            f"{RECORD}/salesOrder/{quote(so_id, safe='')}",
            what=f"{done} sales order",
            body=body,
            headers={IDEMPOTENCY_HEADER: command.key},
        )
        if response.status_code >= 400:
            return _refusal(response)
        return OutsideAnswer(
            accepted=True, reference=so_id, facts={"erp_action": done, "erp_status": after}
        )

    def _return(
        self, conn: _Connection, fields: _Fields, so_id: str, command: OutsideCommand
    ) -> OutsideAnswer:
        body = fields.body(command)
        if command.params.get("lines"):
            record = self._read(conn, so_id)
            if isinstance(record, OutsideAnswer):
                return record
            planned = _return_lines(_lines_of(record), command.params["lines"])
            if isinstance(planned, str):
                return OutsideAnswer(
                    accepted=False, message=planned, facts={"code": "unknown_line"}
                )
            body["item"] = {"items": planned}
        response = self._http.request(
            conn,
            "POST",
            f"{RECORD}/salesOrder/{quote(so_id, safe='')}/!transform/returnAuthorization",
            what="create return authorization",
            body=body,
            headers={IDEMPOTENCY_HEADER: command.key},
        )
        if response.status_code >= 400:
            return _refusal(response)
        location = response.headers.get("location", "")
        created = location.rstrip("/").rsplit("/", 1)[-1] if location else ""
        if not created:
            found = _object(response) or {}
            created = str(found.get("id") or "")
        if not created:
            raise OutsideUnavailable("NetSuite create return authorization: no record id")
        return OutsideAnswer(
            accepted=True, reference=created, facts={"return_authorization": created}
        )


def _plan_update(
    record: Mapping[str, Any], wanted: str, command: OutsideCommand, fields: _Fields, so_id: str
) -> OutsideAnswer | tuple[dict[str, Any], str, str | None]:
    """The PATCH body of an ``erp_update`` (with what it does and the status after it), or the
    answer without one: done already, or refused."""
    status = erp_status(record.get("status")) or erp_status(record.get("orderStatus"))
    facts: dict[str, Any] = {"erp_status": status}
    if record.get(fields.key) == command.key:
        return OutsideAnswer(accepted=True, reference=so_id, facts=facts | {"repeat": True})
    if status in STOPPED:
        return OutsideAnswer(
            accepted=True, reference=so_id, facts=facts | {"already_stopped": True}
        )
    lines = _lines_of(record)
    if wanted == "close_lines":
        planned = _close_lines(lines, command.params.get("lines"))
        if isinstance(planned, str):
            return OutsideAnswer(accepted=False, message=planned, facts={"code": "unknown_line"})
        return {"item": {"items": planned}}, "close_lines", status
    if status == "pending_approval":
        return {"orderStatus": {"id": "C"}}, "cancel", "cancelled"
    items = [{"line": line["line"], "isClosed": True} for line in lines if _open(line)]
    return {"item": {"items": items}}, "close", "closed"


@dataclass(frozen=True, slots=True)
class _Fields:
    reason: str
    case: str
    key: str
    case_url: str | None

    @classmethod
    def of(cls, connection: Mapping[str, Any]) -> _Fields:
        def name(key: str, default: str) -> str:
            return str(connection.get(key) or default).strip() or default

        case_url = connection.get("case_url")
        return cls(
            reason=name("reason_field", DEFAULT_REASON_FIELD),
            case=name("case_field", DEFAULT_CASE_FIELD),
            key=name("key_field", DEFAULT_KEY_FIELD),
            case_url=str(case_url) if case_url else None,
        )

    def body(self, command: OutsideCommand) -> dict[str, Any]:
        params = command.params
        body: dict[str, Any] = {self.key: command.key}
        note = str(params.get("note") or "").strip()
        ticket = params.get("ticket")
        if ticket:
            note = f"{note} (ticket {ticket})".strip()
        if note:
            body["memo"] = note[:_MEMO_MAX]
        if params.get("reason_code"):
            body[self.reason] = str(params["reason_code"])
        case_id = params.get("case_id")
        if case_id is not None:
            link = self.case_url.replace("{case_id}", str(case_id)) if self.case_url else None
            body[self.case] = link or str(case_id)
        return body


def _lines_of(record: Mapping[str, Any]) -> list[dict[str, Any]]:
    sublist = record.get("item")
    items = sublist.get("items") if isinstance(sublist, Mapping) else None
    if not isinstance(items, list):
        return []
    return [line for line in items if isinstance(line, dict) and line.get("line") is not None]


def _sku(line: Mapping[str, Any]) -> str | None:
    item = line.get("item")
    if isinstance(item, Mapping):
        name = item.get("refName") or item.get("id")
        return str(name) if name is not None else None
    return str(item) if item is not None else None


def _open(line: Mapping[str, Any]) -> bool:
    return not line.get("isClosed")


def _qty(value: object) -> int:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value)
    return 0


def _wanted(raw: object) -> list[tuple[str, int | None]] | str:
    if not isinstance(raw, list) or not raw:
        return "the lines to close are missing"
    found: list[tuple[str, int | None]] = []
    for entry in raw:
        if not isinstance(entry, Mapping) or not entry.get("sku"):
            return "each line needs a sku"
        qty = entry.get("qty")
        found.append((str(entry["sku"]), _qty(qty) if qty is not None else None))
    return found


def _close_lines(lines: list[dict[str, Any]], raw: object) -> list[dict[str, Any]] | str:
    """The sublist changes that cancel ``raw`` ([{sku, qty}]): lines closed, or reduced."""
    wanted = _wanted(raw)
    if isinstance(wanted, str):
        return wanted
    changes: dict[Any, dict[str, Any]] = {}
    remaining = {id(line): _qty(line.get("quantity")) for line in lines}
    for sku, qty in wanted:
        matching = [line for line in lines if _sku(line) == sku and _open(line)]
        if not matching:
            return f"the sales order has no open line for {sku}"
        left = qty
        for line in matching:
            have = remaining[id(line)]
            if have <= 0:
                continue
            if left is None or left >= have:
                changes[line["line"]] = {"line": line["line"], "isClosed": True}
                remaining[id(line)] = 0
                left = None if left is None else left - have
            else:
                remaining[id(line)] = have - left
                changes[line["line"]] = {"line": line["line"], "quantity": have - left}
                left = 0
            if left == 0:
                break
    return list(changes.values())


def _return_lines(lines: list[dict[str, Any]], raw: object) -> list[dict[str, Any]] | str:
    wanted = _wanted(raw)
    if isinstance(wanted, str):
        return wanted
    planned: list[dict[str, Any]] = []
    for sku, qty in wanted:
        matching = [line for line in lines if _sku(line) == sku]
        if not matching:
            return f"the sales order has no line for {sku}"
        line = matching[0]
        planned.append(
            {"orderLine": line["line"], "quantity": qty or _qty(line.get("quantity")) or 1}
        )
    return planned


# -- the poller ----------------------------------------------------------------------------------

_CURSOR = re.compile(r"^(\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2})\|(\d+)$")
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


class NetSuitePoller:
    """``Poller`` of the sales orders changed since a cursor, with SuiteQL.

    The cursor is ``"<lastmodifieddate as YYYY-MM-DD HH24:MI:SS>|<id>"`` of the last order
    read, in the account's time (``time_zone`` of the connection, UTC by default): the query
    reads the orders after it, ``ORDER BY lastmodifieddate, id``, so orders modified in the same
    second are neither skipped nor read twice across pages. With no cursor it starts
    ``initial_lookback_hours`` (24 by default) before ``now``. Each order becomes
    ``order.updated`` with ``data.erp_status``, and also ``order.cancelled`` when NetSuite says
    cancelled or closed; the order's ref is ``otherrefnum`` (the web order number) when set,
    else ``tranid`` (configurable with ``ref_field``), and ``order.ids.netsuite`` its id."""

    def __init__(
        self,
        client: httpx.Client | None = None,
        *,
        page_size: int = 100,
        timeout: float = 30.0,
        limiter: AccountLimiter | None = None,
        retries: int = 4,
        backoff: float = 0.25,
        max_backoff: float = 5.0,
        slot_wait: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._page_size = page_size
        self._timeout = timeout
        self._http = _Http(
            client,
            limiter=limiter or SHARED_LIMITER,
            retries=retries,
            backoff=backoff,
            max_backoff=max_backoff,
            slot_wait=slot_wait,
            sleep=sleep,
        )

    def close(self) -> None:
        self._http.close()

    def poll(self, connection: Mapping[str, Any], cursor: str | None, *, now: datetime) -> PollPage:
        try:
            conn = _Connection.of(connection, self._timeout)
        except _Incomplete as missing:
            raise OutsideUnavailable(str(missing), code="connection_incomplete") from None
        zone = _zone(connection.get("time_zone"))
        since, after_id = self._start(connection, cursor, now, zone)
        page_size = _positive_int(connection.get("page_size"), self._page_size)
        response = self._http.request(
            conn,
            "POST",
            SUITEQL,
            what="poll sales orders",
            query={"limit": str(page_size), "offset": "0"},
            body={"q": suiteql(since, after_id)},
            headers={"Prefer": "transient"},
        )
        if response.status_code >= 400:
            failure = _failure(response)
            raise OutsideUnavailable(
                f"NetSuite poll sales orders: HTTP {response.status_code}: {failure.message}",
                code="netsuite_refused",
            )
        found = _object(response)
        items = found.get("items") if found is not None else None
        if found is None or not isinstance(items, list):
            raise OutsideUnavailable("NetSuite poll sales orders: the answer has no items")
        ref_field = str(connection.get("ref_field") or "").lower() or None
        events: list[dict[str, Any]] = []
        last: tuple[str, str] | None = None
        for row in items:
            if not isinstance(row, Mapping) or row.get("id") is None or not row.get("modified"):
                raise OutsideUnavailable("NetSuite poll sales orders: a row without id or date")
            events.extend(_events(row, zone, ref_field))
            last = (str(row["modified"]), str(row["id"]))
        next_cursor = f"{last[0]}|{last[1]}" if last is not None else cursor
        return PollPage(events=events, cursor=next_cursor, more=bool(found.get("hasMore")))

    @staticmethod
    def _start(
        connection: Mapping[str, Any], cursor: str | None, now: datetime, zone: ZoneInfo
    ) -> tuple[str, int]:
        if cursor:
            matched = _CURSOR.match(cursor)
            if matched is None:
                raise OutsideUnavailable(f"NetSuite poll: a cursor not understood: {cursor!r}")
            return matched.group(1), int(matched.group(2))
        hours = _positive_int(connection.get("initial_lookback_hours"), 24)
        start = (now - timedelta(hours=hours)).astimezone(zone)
        return start.strftime(_TIME_FORMAT), 0


def suiteql(since: str, after_id: int) -> str:
    """The SuiteQL query of the sales orders modified after (``since``, ``after_id``)."""
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}", since):
        raise ValueError(f"not a NetSuite time: {since!r}")
    # The values are checked: a time and an integer.
    stamp = f"TO_TIMESTAMP('{since}', 'YYYY-MM-DD HH24:MI:SS')"
    return " ".join(
        (
            "SELECT id, tranid, otherrefnum, status,",
            "TO_CHAR(lastmodifieddate, 'YYYY-MM-DD HH24:MI:SS') AS modified",
            "FROM transaction WHERE type = 'SalesOrd'",
            f"AND (lastmodifieddate > {stamp}",
            f"OR (lastmodifieddate = {stamp} AND id > {int(after_id)}))",
            "ORDER BY lastmodifieddate, id",
        )
    )


def _events(row: Mapping[str, Any], zone: ZoneInfo, ref_field: str | None) -> list[dict[str, Any]]:
    so_id = str(row["id"])
    modified = str(row["modified"])
    try:
        local = datetime.strptime(modified, _TIME_FORMAT).replace(tzinfo=zone)
    except ValueError:
        raise OutsideUnavailable(f"NetSuite poll: a date not understood: {modified!r}") from None
    occurred = local.astimezone(UTC).isoformat().replace("+00:00", "Z")
    status = erp_status(row.get("status"))
    if status is None:
        raise OutsideUnavailable(f"NetSuite poll: a status not understood: {row.get('status')!r}")
    ref = None
    if ref_field:
        ref = row.get(ref_field)
    ref = ref or row.get("otherrefnum") or row.get("tranid") or so_id
    order = {"ref": str(ref), "ids": {"netsuite": so_id}}
    stamp = occurred.replace(":", "").replace("-", "")
    base = f"netsuite:salesorder:{so_id}:{stamp}:{status}"
    found: list[dict[str, Any]] = [
        {
            "id": f"{base}:updated",
            "source": "netsuite",
            "type": "order.updated",
            "occurred_at": occurred,
            "order": order,
            "data": {"erp_status": status},
        }
    ]
    if status in STOPPED:
        found.append(
            {
                "id": f"{base}:cancelled",
                "source": "netsuite",
                "type": "order.cancelled",
                "occurred_at": occurred,
                "order": order,
                "data": {"erp_status": status},
            }
        )
    return found


# -- answers -------------------------------------------------------------------------------------


def _object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        value = response.json()
    except (ValueError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _failure(response: httpx.Response) -> _Failure:
    """NetSuite's words: ``o:errorDetails[].detail`` and the first ``o:errorCode``."""
    found = _object(response) or {}
    details = found.get("o:errorDetails")
    messages: list[str] = []
    code: str | None = None
    if isinstance(details, list):
        for detail in details:
            if not isinstance(detail, Mapping):
                continue
            if isinstance(detail.get("detail"), str) and detail["detail"].strip():
                messages.append(detail["detail"].strip())
            if code is None and isinstance(detail.get("o:errorCode"), str):
                code = detail["o:errorCode"]
    if not messages and isinstance(found.get("title"), str):
        messages.append(found["title"])
    if not messages:
        text = response.text.strip()
        messages.append(text or f"HTTP {response.status_code} {response.reason_phrase}")
    return _Failure(response.status_code, code, "; ".join(messages)[:500])


def _refusal(response: httpx.Response) -> OutsideAnswer:
    failure = _failure(response)
    facts: dict[str, Any] = {"http_status": failure.status}
    if failure.code:
        facts["code"] = failure.code
    return OutsideAnswer(accepted=False, message=failure.message, facts=facts)


def _positive_int(value: object, default: int) -> int:
    if isinstance(value, bool):
        return default
    if isinstance(value, int) and value > 0:
        return value
    if isinstance(value, str) and value.strip().isdigit() and int(value) > 0:
        return int(value)
    return default


def _timeout(configured: object, default: float) -> httpx.Timeout:
    seconds = default
    if isinstance(configured, int | float) and not isinstance(configured, bool) and configured > 0:
        seconds = float(configured)
    return httpx.Timeout(seconds, connect=min(seconds, 5.0))


def _zone(name: object) -> ZoneInfo:
    try:
        return ZoneInfo(str(name)) if name else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise OutsideUnavailable(f"NetSuite poll: unknown time_zone {name!r}") from None
