"""An emulator of a generic 3PL (warehouse) REST API, for tests and demos of the ``wms_rest``
connector (``connectors.threepl``).

The API (JSON, ``Authorization: Bearer <api key>``; errors are
``{"error": {"code": ..., "message": ...}}``):

- ``POST /orders`` ``{"ref", "status"?, "lines"?, "ack"?, "step_seconds"?}``: create an order
  (a test's set-up; a real 3PL learns orders from the merchant's release). 201.
- ``GET /orders?changed_since=<ISO 8601>``: ``{"orders": [...]}``, the orders whose status,
  hold or cancellation changed at or after that time (all without it), each as ``GET
  /orders/{ref}`` answers plus ``changed_at``, oldest change first (then by ``ref``). For
  pollers (``connectors.poll_threepl``).
- ``GET /orders/{ref}``: ``{"ref", "status", "held", "cancelled", "lines"}``; ``status`` is one
  of ``not_released|released|picking|packed|shipped|delivered``. 404 for an unknown order.
- ``POST /orders/{ref}/hold`` and ``POST /orders/{ref}/cancel`` ``{"lines"?, "reason"?}``, with
  an ``Idempotency-Key`` header (400 without one): 202 ``{"request_id", "status": "accepted"}``.
  The warehouse's answer comes later as a webhook. A repeat with the same key and the same
  request is answered exactly as the first time and does nothing; the same key with another
  request is 422. A shipped order is 409, an unknown sku 422, a read-only key 403.
- The playbooks' actions (``GET /inventory/{sku}``, ``POST /orders/{ref}/label``, ``/split``,
  ``/ship-method``, and ``POST /orders`` with ``reship_of``), each under an ``Idempotency-Key``
  as above and recorded in ``performed``: see ``sandbox.threepl_emulator_actions``.

What the warehouse answers to an accepted hold/cancel is its ``AckBehaviour`` (per order, else
the emulator's): ``ack`` (``stopship.acknowledged`` after ``delay``), ``late`` (the same after
``LATE``, past the desk's acknowledgment window), ``reject`` (``stopship.rejected`` with
``message``, "already packed" by default: the order is then packed and moves on) or ``never``.
An order created with ``step_seconds`` moves one fulfilment step every that many seconds until
delivered (``fulfillment.picking`` ... ``fulfillment.shipped`` with ``data.tracking``), paused
while a stop is waiting for its answer or after it was acknowledged.

Answers and progress are canonical events (``source`` ``wms``) posted to
``{desk_url}/webhooks/wms/{merchant}``, signed with the desk's generic 3PL scheme. Nothing is
sent while a request is served: the events wait in an outbox until ``deliver_due(now)`` (which
tests call, for determinism) or the optional pump thread of ``serve_emulator`` sends those due.
A delivery that fails stays in the outbox and is sent again, with the same delivery id.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from recoverydesk.connectors.signatures import sign
from recoverydesk.sandbox.serving import serve_app
from recoverydesk.sandbox.threepl_emulator_actions import WarehouseActions
from recoverydesk.sandbox.threepl_orders import (
    LATE,
    SHIP_METHODS,
    STATUSES,
    AckBehaviour,
    Action,
    ApiError,
    ReceivedRequest,
    Take,
    WarehouseOrder,
    json_object,
    parse_behaviour,
    parse_lines,
)

__all__ = [
    "LATE",
    "SHIP_METHODS",
    "STATUSES",
    "AckBehaviour",
    "DeliveryResult",
    "ReceivedRequest",
    "RunningEmulator",
    "ThreePLEmulator",
    "serve_emulator",
]
_SHIPPED = STATUSES.index("shipped")
_PACKED = STATUSES.index("packed")


@dataclass(frozen=True, slots=True)
class DeliveryResult:
    delivery_id: str
    event_type: str
    status_code: int | None  # None when the desk could not be reached
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass(slots=True)
class _Outgoing:
    delivery_id: str
    due_at: datetime
    event: dict[str, Any]
    attempts: int = 0


@dataclass(slots=True)
class _Answer:
    """A stop request's answer, decided when it falls due (the order may have moved by then)."""

    request: ReceivedRequest
    behaviour: AckBehaviour
    due_at: datetime


@dataclass(frozen=True, slots=True)
class _Failure:
    status: int
    message: str


def _wall_clock() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


class ThreePLEmulator(WarehouseActions):
    """One warehouse: its orders, its API keys and where it posts its webhooks.

    ``clock`` is the warehouse's time (when answers and steps fall due, and their
    ``occurred_at``); the signature is always made on the wall clock, as the desk checks it.
    Every public method is safe to call from a test while the app serves requests."""

    def __init__(
        self,
        *,
        api_key: str = "k",
        read_only_keys: Sequence[str] = (),
        desk_url: str | None = None,
        merchant: str | None = None,
        secret: str | None = None,
        ack: AckBehaviour = AckBehaviour(),
        clock: Callable[[], datetime] = _wall_clock,
        http: httpx.Client | None = None,
    ) -> None:
        self._keys = {api_key: "write"} | dict.fromkeys(read_only_keys, "read")
        self.desk_url, self.merchant, self.secret = desk_url, merchant, secret
        self.ack = ack
        self._clock = clock
        self._http = http
        self._lock = threading.RLock()
        self._orders: dict[str, WarehouseOrder] = {}
        self._idempotent: dict[str, tuple[str, int, dict[str, Any]]] = {}
        self._answers: list[_Answer] = []
        self._outbox: list[_Outgoing] = []
        self._failures: list[_Failure] = []
        self._sent: list[dict[str, Any]] = []
        self._stock: dict[str, dict[str, int]] = {}  # sku -> location -> available
        self.received: list[ReceivedRequest] = []  # holds and cancels
        self.performed: list[ReceivedRequest] = []  # labels, splits, ship methods, reships
        self.latency = 0.0  # seconds each API request waits before answering
        self.app = Starlette(
            routes=[
                Route("/orders", self._create_or_reship, methods=["POST"]),
                Route("/orders", self._changed, methods=["GET"]),
                Route("/orders/{ref}", self._status, methods=["GET"]),
                Route("/orders/{ref}/hold", self._hold, methods=["POST"]),
                Route("/orders/{ref}/cancel", self._cancel, methods=["POST"]),
                Route("/orders/{ref}/label", self._label, methods=["POST"]),
                Route("/orders/{ref}/split", self._split, methods=["POST"]),
                Route("/orders/{ref}/ship-method", self._ship_method, methods=["POST"]),
                Route("/inventory/{sku}", self._inventory, methods=["GET"]),
            ]
        )

    # -- set-up and inspection (tests) ---------------------------------------------------------

    def configure_desk(self, desk_url: str, merchant: str, secret: str) -> None:
        with self._lock:
            self.desk_url, self.merchant, self.secret = desk_url.rstrip("/"), merchant, secret

    def add_order(
        self,
        ref: str,
        *,
        status: str = "released",
        lines: Mapping[str, int] | None = None,
        ack: AckBehaviour | None = None,
        step_every: timedelta | None = None,
    ) -> dict[str, Any]:
        if status not in STATUSES:
            raise ValueError(f"status must be one of {', '.join(STATUSES)}, got {status!r}")
        with self._lock:
            now = self._clock()
            order = WarehouseOrder(
                ref=ref,
                status=status,
                lines=dict(lines or {}),
                ack=ack,
                step_every=step_every,
                next_step_at=now + step_every if step_every else None,
                changed_at=now,
            )
            self._orders[ref] = order
            return order.view()

    def order(self, ref: str) -> dict[str, Any] | None:
        with self._lock:
            found = self._orders.get(ref)
            return found.view() if found else None

    def set_status(self, ref: str, status: str) -> None:
        """Move an order to ``status`` now, with the progress webhook of that step."""
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        with self._lock:
            order = self._orders[ref]
            self._step_to(order, status, self._clock())

    def fail_next(self, status: int, *, count: int = 1, message: str = "warehouse trouble") -> None:
        """The next ``count`` API requests are answered ``status`` (a 5xx, a 429 ...)."""
        with self._lock:
            self._failures += [_Failure(status, message)] * count

    def pending_deliveries(self) -> list[dict[str, Any]]:
        """The events waiting in the outbox (due or not), and the answers not decided yet."""
        with self._lock:
            waiting = [dict(o.event, due_at=_iso(o.due_at)) for o in self._outbox]
            undecided = [
                {"request_id": a.request.request_id, "due_at": _iso(a.due_at)}
                for a in self._answers
            ]
            return waiting + undecided

    @property
    def delivered(self) -> list[dict[str, Any]]:
        """Every event the desk took (2xx), in order."""
        with self._lock:
            return list(self._sent)

    # -- the passing of time -------------------------------------------------------------------

    def deliver_due(self, now: datetime | None = None) -> list[DeliveryResult]:
        """Decide the answers and steps due at ``now`` (the emulator's clock by default) and
        post every due event to the desk, oldest first. Failed deliveries stay for next time."""
        with self._lock:
            moment = now or self._clock()
            self._decide_answers(moment)
            self._progress(moment)
            due = sorted(
                (o for o in self._outbox if o.due_at <= moment),
                key=lambda o: (o.due_at, o.delivery_id),
            )
            target = self._target()
        results: list[DeliveryResult] = []
        for outgoing in due:
            result = self._post(outgoing, target)
            results.append(result)
            with self._lock:
                outgoing.attempts += 1
                if result.ok and outgoing in self._outbox:
                    self._outbox.remove(outgoing)
                    self._sent.append(outgoing.event)
        return results

    def _decide_answers(self, now: datetime) -> None:
        for answer in sorted(self._answers, key=lambda a: a.due_at):
            if answer.due_at > now:
                continue
            self._answers.remove(answer)
            request, behaviour = answer.request, answer.behaviour
            order = self._orders[request.ref]
            order.waiting = max(0, order.waiting - 1)
            data: dict[str, Any] = {"request_id": request.request_id, "action": request.action}
            if request.body.get("lines"):
                data["lines"] = request.body["lines"]
            if behaviour.mode == "reject":
                if STATUSES.index(order.status) < _PACKED:
                    self._step_to(order, "packed", answer.due_at)
                data["message"] = behaviour.message
                kind = "stopship.rejected"
            else:
                if request.action == "hold":
                    order.held = True
                else:
                    order.cancelled = True
                order.changed_at = answer.due_at
                kind = "stopship.acknowledged"
            verdict = kind.split(".")[1]
            self._queue(f"{request.request_id}:{verdict}", kind, order, answer.due_at, data)

    def _progress(self, now: datetime) -> None:
        for order in self._orders.values():
            while (
                order.step_every is not None
                and order.next_step_at is not None
                and order.next_step_at <= now
                and not order.paused
                and order.status != STATUSES[-1]
            ):
                at = order.next_step_at
                self._step_to(order, STATUSES[STATUSES.index(order.status) + 1], at)
                order.next_step_at = at + order.step_every

    def _step_to(self, order: WarehouseOrder, status: str, at: datetime) -> None:
        order.status = status
        order.steps += 1
        order.changed_at = at
        data = {"tracking": f"EMU-{order.ref}"} if status == "shipped" else {}
        if status != "not_released":
            self._queue(f"{order.ref}:step{order.steps}", f"fulfillment.{status}", order, at, data)

    def _queue(
        self, suffix: str, kind: str, order: WarehouseOrder, at: datetime, data: dict[str, Any]
    ) -> None:
        event = {
            "id": f"wms:{suffix}",
            "source": "wms",
            "type": kind,
            "occurred_at": _iso(at),
            "order": {"ref": order.ref},
            "data": data,
        }
        self._outbox.append(_Outgoing(f"emu-{suffix}", at, event))

    def _target(self) -> tuple[str, str] | None:
        if not (self.desk_url and self.merchant and self.secret):
            return None
        return f"{self.desk_url.rstrip('/')}/webhooks/wms/{self.merchant}", self.secret

    def _post(self, outgoing: _Outgoing, target: tuple[str, str] | None) -> DeliveryResult:
        kind = str(outgoing.event["type"])
        if target is None:
            return DeliveryResult(outgoing.delivery_id, kind, None, "no desk configured")
        url, secret = target
        body = json.dumps(outgoing.event, separators=(",", ":")).encode()
        headers = sign(
            "wms", body=body, secret=secret, now=_wall_clock(), delivery_id=outgoing.delivery_id
        )
        headers["Content-Type"] = "application/json"
        try:
            if self._http is not None:
                answer = self._http.post(url, content=body, headers=headers)
            else:
                with httpx.Client(timeout=10.0) as client:
                    answer = client.post(url, content=body, headers=headers)
        except httpx.HTTPError as error:
            return DeliveryResult(outgoing.delivery_id, kind, None, f"{type(error).__name__}")
        text = None if answer.is_success else answer.text[:500]
        return DeliveryResult(outgoing.delivery_id, kind, answer.status_code, text)

    # -- the API -------------------------------------------------------------------------------

    async def _guard(self, request: Request, *, write: bool) -> None:
        if self.latency:
            await asyncio.sleep(self.latency)
        header = request.headers.get("authorization", "")
        scheme, _, key = header.partition(" ")
        role = self._keys.get(key.strip()) if scheme.lower() == "bearer" else None
        if role is None:
            raise ApiError(401, "unauthorized", "invalid or missing API key")
        if write and role != "write":
            raise ApiError(403, "forbidden", "this API key is read-only")
        with self._lock:
            failure = self._failures.pop(0) if self._failures else None
        if failure is not None:
            raise ApiError(failure.status, "injected_failure", failure.message)

    async def _create(self, request: Request) -> JSONResponse:
        try:
            await self._guard(request, write=True)
            body = await json_object(request)
            ref = body.get("ref")
            if not isinstance(ref, str) or not ref:
                raise ApiError(422, "invalid_request", "ref: a non-empty string is required")
            ack = parse_behaviour(body.get("ack"))
            step = body.get("step_seconds")
            view = self.add_order(
                ref,
                status=str(body.get("status") or "released"),
                lines=parse_lines(body.get("lines")),
                ack=ack,
                step_every=timedelta(seconds=float(step)) if step else None,
            )
        except ApiError as error:
            return error.response()
        except (ValueError, TypeError) as error:
            return ApiError(422, "invalid_request", str(error)).response()
        return JSONResponse(view, status_code=201)

    async def _changed(self, request: Request) -> JSONResponse:
        try:
            await self._guard(request, write=False)
            raw = request.query_params.get("changed_since")
            try:
                since = datetime.fromisoformat(raw.replace("Z", "+00:00")) if raw else None
            except ValueError:
                raise ApiError(422, "invalid_request", "changed_since: an ISO 8601 time") from None
            if since is not None and since.tzinfo is None:
                since = since.replace(tzinfo=UTC)
            with self._lock:
                found = sorted(
                    (o for o in self._orders.values() if o.changed_at is not None),
                    key=lambda o: (o.changed_at, o.ref),
                )
                views = [
                    {**o.view(), "changed_at": _iso(o.changed_at or since or self._clock())}
                    for o in found
                    if since is None or (o.changed_at or since) >= since
                ]
        except ApiError as error:
            return error.response()
        return JSONResponse({"orders": views})

    async def _status(self, request: Request) -> JSONResponse:
        try:
            await self._guard(request, write=False)
            view = self.order(request.path_params["ref"])
            if view is None:
                ref = request.path_params["ref"]
                raise ApiError(404, "order_not_found", f"order {ref} is not known here")
        except ApiError as error:
            return error.response()
        return JSONResponse(view)

    async def _hold(self, request: Request) -> JSONResponse:
        return await self._stop(request, "hold")

    async def _cancel(self, request: Request) -> JSONResponse:
        return await self._stop(request, "cancel")

    async def _stop(self, request: Request, action: Literal["hold", "cancel"]) -> JSONResponse:
        return await self._once(
            request, action, lambda ref, key, body: self._take(action, ref, key, body)
        )

    async def _once(self, request: Request, action: Action, take: Take) -> JSONResponse:
        """A write under an ``Idempotency-Key`` (400 without one): a repeat with the same key and
        request gets the first answer and does nothing; the same key with another request is
        422. ``take`` runs under the lock; its refusals raise and are not remembered."""
        try:
            await self._guard(request, write=True)
            key = request.headers.get("idempotency-key", "").strip()
            if not key:
                raise ApiError(400, "idempotency_key_required", "send an Idempotency-Key")
            body = await json_object(request)
            ref = str(request.path_params.get("ref") or body.get("reship_of") or "")
            fingerprint = hashlib.sha256(
                json.dumps([action, ref, body], sort_keys=True, default=str).encode()
            ).hexdigest()
            with self._lock:
                seen = self._idempotent.get(key)
                if seen is not None:
                    if seen[0] != fingerprint:
                        raise ApiError(
                            422,
                            "idempotency_key_reused",
                            f"Idempotency-Key {key} was used for another request",
                        )
                    return JSONResponse(seen[2], status_code=seen[1])
                status, answer = take(ref, key, body)
                self._idempotent[key] = (fingerprint, status, answer)
        except ApiError as error:
            return error.response()
        return JSONResponse(answer, status_code=status)

    def _take(
        self, action: Literal["hold", "cancel"], ref: str, key: str, body: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        """Accept a stop request (under the lock) and plan its answer. Refusals raise, and are
        not remembered under the key: a refused request may be sent again once fixed."""
        order = self._unshipped(ref)
        for sku in parse_lines(body.get("lines")):
            if order.lines and sku not in order.lines:
                raise ApiError(422, "unknown_sku", f"order {ref} has no line {sku}")
        now = self._clock()
        request_id = f"{action}-{ref}-{len(self.received) + 1}"
        taken = ReceivedRequest(request_id, action, ref, key, dict(body), now)
        self.received.append(taken)
        behaviour = order.ack or self.ack
        if behaviour.mode != "never":
            order.waiting += 1
            self._answers.append(_Answer(taken, behaviour, now + behaviour.answer_after))
        return 202, {"request_id": request_id, "status": "accepted", "order": order.ref}

    def _known(self, ref: str) -> WarehouseOrder:
        order = self._orders.get(ref)
        if order is None:
            raise ApiError(404, "order_not_found", f"order {ref} is not known here")
        return order

    def _unshipped(self, ref: str) -> WarehouseOrder:
        """The order, while it can still be changed: 409 once shipped or cancelled."""
        order = self._known(ref)
        if STATUSES.index(order.status) >= _SHIPPED:
            raise ApiError(409, "already_shipped", f"order {ref} has already shipped")
        if order.cancelled:
            raise ApiError(409, "already_cancelled", f"order {ref} is already cancelled")
        return order


# -- running it ----------------------------------------------------------------------------------


@dataclass
class RunningEmulator:
    emulator: ThreePLEmulator
    base_url: str
    server: uvicorn.Server
    thread: threading.Thread
    pump: threading.Thread | None = None
    _stop: threading.Event = field(default_factory=threading.Event)

    def stop(self) -> None:
        self._stop.set()
        if self.pump is not None:
            self.pump.join(timeout=10)
        self.server.should_exit = True
        self.thread.join(timeout=10)


@contextmanager
def serve_emulator(
    emulator: ThreePLEmulator, *, pump_every: float | None = None
) -> Iterator[RunningEmulator]:
    """Serve the emulator with uvicorn on a free loopback port, in a daemon thread. With
    ``pump_every`` (seconds), a second thread calls ``deliver_due()`` that often (a demo);
    tests leave it off and call ``deliver_due`` themselves."""
    with serve_app(emulator.app, "the 3PL emulator") as served:
        running = RunningEmulator(emulator, served.base_url, served.server, served.thread)
        if pump_every is not None:

            def pump() -> None:
                while not running._stop.wait(pump_every):
                    emulator.deliver_due()

            running.pump = threading.Thread(target=pump, daemon=True)
            running.pump.start()
        try:
            yield running
        finally:
            running.stop()
