"""The 3PL emulator's orders and the shapes of its API (``sandbox.threepl_emulator``): the
fulfilment statuses and ship methods, how the warehouse answers a stop (``AckBehaviour``), the
requests it took, an order's record, the API's error and how request bodies are read."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import JSONResponse

STATUSES = ("not_released", "released", "picking", "packed", "shipped", "delivered")
SHIP_METHODS = ("standard", "economy", "expedited", "two_day", "overnight")
LATE = timedelta(hours=3)
AckMode = Literal["ack", "late", "reject", "never"]
Action = Literal["hold", "cancel", "label", "split", "ship_method", "reship"]
_MODES = ("ack", "late", "reject", "never")


@dataclass(frozen=True, slots=True)
class AckBehaviour:
    """How the warehouse answers an accepted hold or cancel."""

    mode: AckMode = "ack"
    delay: timedelta = timedelta(0)
    message: str = "already packed"

    @property
    def answer_after(self) -> timedelta:
        return LATE + self.delay if self.mode == "late" else self.delay


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    """A request the warehouse took (a repeat of an idempotent request is not one)."""

    request_id: str
    action: Action
    ref: str
    key: str
    body: dict[str, Any]
    at: datetime


Take = Callable[[str, str, dict[str, Any]], tuple[int, dict[str, Any]]]


@dataclass(slots=True)
class WarehouseOrder:
    ref: str
    status: str
    lines: dict[str, int]
    ack: AckBehaviour | None
    step_every: timedelta | None
    next_step_at: datetime | None
    held: bool = False
    cancelled: bool = False
    waiting: int = 0  # stops accepted and not answered yet (progress pauses meanwhile)
    steps: int = 0
    changed_at: datetime | None = None  # the last change of status, hold or cancellation
    ship_method: str = "standard"
    shipments: list[dict[str, Any]] = field(default_factory=list)  # after a split
    labels: int = 0  # labels printed again
    reship_of: str | None = None

    def view(self) -> dict[str, Any]:
        found = {
            "ref": self.ref,
            "status": self.status,
            "held": self.held,
            "cancelled": self.cancelled,
            "lines": line_list(self.lines),
            "ship_method": self.ship_method,
            "shipments": [dict(s) for s in self.shipments],
        }
        return found | ({"reship_of": self.reship_of} if self.reship_of else {})

    @property
    def paused(self) -> bool:
        return self.waiting > 0 or self.held or self.cancelled


class ApiError(Exception):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def response(self) -> JSONResponse:
        body = {"error": {"code": self.code, "message": self.message}}
        return JSONResponse(body, status_code=self.status)


async def json_object(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        raise ApiError(400, "invalid_json", "the body is not JSON") from None
    if not isinstance(value, dict):
        raise ApiError(422, "invalid_request", "the body must be a JSON object")
    return value


def line_list(lines: Mapping[str, int]) -> list[dict[str, Any]]:
    return [{"sku": sku, "qty": qty} for sku, qty in sorted(lines.items())]


def parse_lines(raw: object) -> dict[str, int]:
    if raw is None:
        return {}
    if not isinstance(raw, list):
        raise ApiError(422, "invalid_request", "lines: a list of {sku, qty}")
    found: dict[str, int] = {}
    for line in raw:
        if not isinstance(line, dict) or not isinstance(line.get("sku"), str):
            raise ApiError(422, "invalid_request", "lines: each line needs a sku")
        qty = line.get("qty", 1)
        if not isinstance(qty, int) or isinstance(qty, bool) or qty < 1:
            raise ApiError(422, "invalid_request", f"lines: bad qty for {line['sku']}")
        found[line["sku"]] = found.get(line["sku"], 0) + qty
    return found


def parse_behaviour(raw: object) -> AckBehaviour | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        raw = {"mode": raw}
    if not isinstance(raw, dict) or raw.get("mode") not in _MODES:
        raise ApiError(422, "invalid_request", f"ack.mode: one of {', '.join(_MODES)}")
    found = AckBehaviour(mode=raw["mode"])
    if raw.get("delay_seconds") is not None:
        found = replace(found, delay=timedelta(seconds=float(raw["delay_seconds"])))
    if raw.get("message") is not None:
        found = replace(found, message=str(raw["message"]))
    return found
