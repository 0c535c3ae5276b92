"""The playbooks' actions of the 3PL emulator (``sandbox.threepl_emulator``): inventory, labels,
splits, ship methods and reshipments, and the stock they read and take. ``ThreePLEmulator``
takes them in as ``WarehouseActions``, its base class.

Each write is under an ``Idempotency-Key``, as the emulator's holds and cancels are (recorded
in ``performed``):
  ``GET /inventory/{sku}``: ``{"sku", "locations": [{"location", "available"}],
  "total_available"}`` from the stock ``set_stock(sku, {location: qty})`` keeps; 404 an
  unknown sku. ``POST /orders/{ref}/label`` ``{"reason"?}``: 201 ``{"label_id", "tracking",
  "carrier", "order"}`` (409 cancelled or delivered). ``POST /orders/{ref}/split``
  ``{"lines"}``: the lines to ship now and the rest, 201 ``{"order", "shipments": [{"id",
  "lines", "status": released|backordered}]}`` (409 shipped, cancelled or already split; 422
  lines the order does not have, or all of them). ``POST /orders/{ref}/ship-method``
  ``{"method"}`` (one of ``SHIP_METHODS``): ``{"order", "ship_method", "previous"}`` (409
  shipped or cancelled). ``POST /orders`` ``{"reship_of", "lines", "reason", "ship_method"?}``:
  a new order ``{reship_of}-R{n}`` sending those lines again, taken from the locations with most
  stock (``picked_from``; 409 ``insufficient_stock``; skus whose stock is not kept are not
  counted), 201 with the new order's view.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

from recoverydesk.sandbox.threepl_orders import (
    SHIP_METHODS,
    STATUSES,
    Action,
    ApiError,
    ReceivedRequest,
    Take,
    WarehouseOrder,
    json_object,
    line_list,
    parse_lines,
)

_DELIVERED = STATUSES.index("delivered")


class WarehouseActions:
    """The playbooks' endpoints and the stock model of ``ThreePLEmulator``, which provides the
    state and the API's guard, idempotent write and order lookups declared here."""

    _lock: threading.RLock
    _clock: Callable[[], datetime]
    _orders: dict[str, WarehouseOrder]
    _stock: dict[str, dict[str, int]]  # sku -> location -> available
    performed: list[ReceivedRequest]  # labels, splits, ship methods, reships

    async def _guard(self, request: Request, *, write: bool) -> None:
        raise NotImplementedError

    async def _once(self, request: Request, action: Action, take: Take) -> JSONResponse:
        raise NotImplementedError

    async def _create(self, request: Request) -> JSONResponse:
        raise NotImplementedError

    def _known(self, ref: str) -> WarehouseOrder:
        raise NotImplementedError

    def _unshipped(self, ref: str) -> WarehouseOrder:
        raise NotImplementedError

    # -- the stock -----------------------------------------------------------------------------

    def set_stock(self, sku: str, locations: Mapping[str, int]) -> None:
        """What is available of ``sku`` at each location (replacing what was known)."""
        if any(qty < 0 for qty in locations.values()):
            raise ValueError("stock cannot be negative")
        with self._lock:
            self._stock[sku] = dict(locations)

    def stock(self, sku: str) -> dict[str, int] | None:
        with self._lock:
            found = self._stock.get(sku)
            return dict(found) if found is not None else None

    def _take_stock(self, lines: Mapping[str, int]) -> dict[str, dict[str, int]]:
        """Take the lines from the locations with most available (409 when short); a sku whose
        stock is not kept here is not counted."""
        for sku, qty in lines.items():
            have = sum(self._stock.get(sku, {}).values())
            if sku in self._stock and have < qty:
                raise ApiError(409, "insufficient_stock", f"{have} of {sku} available, {qty} asked")
        taken: dict[str, dict[str, int]] = {}
        for sku, qty in lines.items():
            places, left = self._stock.get(sku, {}), qty
            for location in sorted(places, key=lambda loc: (-places[loc], loc)):
                step = min(left, places[location])
                if step > 0:
                    places[location] -= step
                    taken.setdefault(sku, {})[location] = step
                    left -= step
        return taken

    def _performed(self, action: Action, ref: str, key: str, body: dict[str, Any]) -> str:
        request_id = f"{action}-{ref}-{len(self.performed) + 1}"
        self.performed.append(
            ReceivedRequest(request_id, action, ref, key, dict(body), self._clock())
        )
        return request_id

    # -- playbook actions: inventory, labels, splits, ship methods, reshipments ------------------

    async def _inventory(self, request: Request) -> JSONResponse:
        try:
            await self._guard(request, write=False)
            sku = str(request.path_params["sku"])
            found = self.stock(sku)
            if found is None:
                raise ApiError(404, "sku_not_found", f"sku {sku} is not stocked here")
        except ApiError as error:
            return error.response()
        locations = [{"location": loc, "available": qty} for loc, qty in sorted(found.items())]
        total = sum(found.values())
        return JSONResponse({"sku": sku, "locations": locations, "total_available": total})

    async def _label(self, request: Request) -> JSONResponse:
        return await self._once(request, "label", self._print_label)

    def _print_label(self, ref: str, key: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        order = self._known(ref)
        if order.cancelled:
            raise ApiError(409, "already_cancelled", f"order {ref} is cancelled: no label")
        if STATUSES.index(order.status) >= _DELIVERED:
            raise ApiError(409, "already_delivered", f"order {ref} was delivered")
        order.labels += 1
        request_id = self._performed("label", ref, key, body)
        label = {"label_id": f"lbl-{ref}-{order.labels}", "tracking": f"EMU-{ref}"}
        return 201, {**label, "carrier": "EMU", "order": ref, "request_id": request_id}

    async def _split(self, request: Request) -> JSONResponse:
        return await self._once(request, "split", self._split_order)

    def _split_order(self, ref: str, key: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """Ship ``lines`` now, the rest later: two shipments of the order."""
        order = self._unshipped(ref)
        if order.shipments:
            raise ApiError(409, "already_split", f"order {ref} is already split")
        now_lines = parse_lines(body.get("lines"))
        if not now_lines:
            raise ApiError(422, "lines_required", "lines: the lines to ship now")
        for sku, qty in now_lines.items():
            if qty > order.lines.get(sku, 0):
                code = "unknown_sku" if sku not in order.lines else "too_many"
                raise ApiError(422, code, f"order {ref} has not {qty} of {sku}")
        later = {
            s: q - now_lines.get(s, 0) for s, q in order.lines.items() if q > now_lines.get(s, 0)
        }
        if not later:
            raise ApiError(422, "nothing_to_split", "every line would ship now: nothing to split")
        order.shipments = [
            {"id": f"{ref}-S1", "lines": line_list(now_lines), "status": "released"},
            {"id": f"{ref}-S2", "lines": line_list(later), "status": "backordered"},
        ]
        order.changed_at = self._clock()
        request_id = self._performed("split", ref, key, body)
        return 201, {
            "order": ref,
            "shipments": [dict(s) for s in order.shipments],
            "request_id": request_id,
        }

    async def _ship_method(self, request: Request) -> JSONResponse:
        return await self._once(request, "ship_method", self._change_ship_method)

    def _change_ship_method(
        self, ref: str, key: str, body: dict[str, Any]
    ) -> tuple[int, dict[str, Any]]:
        order = self._unshipped(ref)
        method = body.get("method")
        if method not in SHIP_METHODS:
            raise ApiError(422, "unknown_method", f"method: one of {', '.join(SHIP_METHODS)}")
        previous, order.ship_method = order.ship_method, str(method)
        request_id = self._performed("ship_method", ref, key, body)
        return 200, {
            "order": ref,
            "ship_method": method,
            "previous": previous,
            "request_id": request_id,
        }

    async def _create_or_reship(self, request: Request) -> JSONResponse:
        """``POST /orders``: a reshipment when the body names ``reship_of``, else a new order."""
        try:
            body = await json_object(request)
        except ApiError as error:
            return error.response()
        if body.get("reship_of") is not None:
            return await self._once(request, "reship", self._reship)
        return await self._create(request)

    def _reship(self, ref: str, key: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """A new order sending ``lines`` of order ``reship_of`` again, taken from stock."""
        original = self._known(ref)
        lines = parse_lines(body.get("lines"))
        if not lines:
            raise ApiError(422, "lines_required", "lines: the lines to send again")
        if not isinstance(body.get("reason"), str) or not body["reason"].strip():
            raise ApiError(422, "reason_required", "reason: why the order is sent again")
        for sku in lines:
            if original.lines and sku not in original.lines:
                raise ApiError(422, "unknown_sku", f"order {ref} has no line {sku}")
        method = body.get("ship_method") or original.ship_method
        if method not in SHIP_METHODS:
            raise ApiError(422, "unknown_method", f"ship_method: one of {', '.join(SHIP_METHODS)}")
        taken = self._take_stock(lines)
        count = sum(1 for o in self._orders.values() if o.reship_of == ref) + 1
        now = self._clock()
        order = WarehouseOrder(
            ref=f"{ref}-R{count}",
            status="released",
            lines=lines,
            ack=None,
            step_every=None,
            next_step_at=None,
            changed_at=now,
            ship_method=str(method),
            reship_of=ref,
        )
        self._orders[order.ref] = order
        request_id = self._performed("reship", ref, key, body)
        return 201, {
            **order.view(),
            "reason": body["reason"],
            "picked_from": taken,
            "request_id": request_id,
        }
