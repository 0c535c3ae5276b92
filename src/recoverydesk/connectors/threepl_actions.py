"""The playbook actions of the generic 3PL REST connector (``kind: wms_rest``, system ``wms``),
and how the connector reads the warehouse's answers.

The order is named as for the other warehouse commands: ``order_ids["wms"]``, else the order's
ref. Every write goes with the command's key as ``Idempotency-Key``: the warehouse answers a
repeat exactly as the first time and does nothing again.

- ``inventory_lookup`` (``sku``; ``qty`` optional): ``GET /inventory/{sku}``. Facts: ``sku``,
  ``locations`` (location -> available quantity), ``total``, ``in_stock`` and, with ``qty``,
  ``enough``. An unknown sku is the warehouse's 404: refused, ``code: sku_not_found``.
- ``label_reprint`` (``reason`` optional): ``POST /orders/{ref}/label``. Facts ``label_id``,
  ``tracking``, ``carrier``; the reference is the label id.
- ``split_shipment`` (``lines`` to ship now, ``[{sku, qty}]``): ``POST /orders/{ref}/split``;
  the rest of the order ships later. Facts ``shipment_ids`` (the new shipments, the one shipping
  now first) and ``shipments`` (each ``id``, ``status``, ``lines``); the reference is the first.
- ``ship_method_update`` (``method``): ``POST /orders/{ref}/ship-method``. Facts
  ``ship_method`` and ``previous_method``.
- ``reship`` (``lines``, ``reason``; ``ship_method`` optional): ``POST /orders`` with
  ``reship_of`` = the order, a new warehouse order sending those lines again. Facts
  ``reshipment_id`` (the new order's ref, also the reference), ``status`` and ``picked_from``
  (sku -> location -> quantity) when the warehouse says.

Refusals are the warehouse's own (message and ``code``): 404 an unknown order or sku, 409 an
order already shipped or cancelled (split, ship method), already split, or stock too short for
a reshipment, 422 a request it cannot take (an unknown method, lines the order does not have).
A command missing what it needs is refused before any call (``code: missing_param``).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from recoverydesk.services.ports import OutsideAnswer, OutsideCommand, OutsideUnavailable

__all__ = ["ACTIONS", "WarehouseCall", "json_object", "refusal", "warehouse_message"]


class WarehouseCall(Protocol):
    """One request to the merchant's warehouse (auth and timeouts set); 429, 5xx and transport
    errors raise ``OutsideUnavailable``, other statuses are returned."""

    def __call__(
        self,
        method: str,
        path: str,
        *,
        action: str,
        body: dict[str, Any] | None = None,
        key: str | None = None,
    ) -> httpx.Response: ...


# -- the warehouse's answers ----------------------------------------------------------------------


def json_object(response: httpx.Response) -> dict[str, Any] | None:
    try:
        value = response.json()
    except (ValueError, json.JSONDecodeError):
        return None
    return value if isinstance(value, dict) else None


def _error_of(response: httpx.Response) -> dict[str, Any]:
    found = json_object(response) or {}
    error = found.get("error")
    if isinstance(error, dict):
        return error
    return found


def warehouse_message(response: httpx.Response) -> str:
    """The warehouse's own words: ``error.message`` (or ``message``, ``detail``, the text)."""
    error = _error_of(response)
    for name in ("message", "detail", "error"):
        value = error.get(name)
        if isinstance(value, str) and value.strip():
            return value.strip()[:500]
    text = response.text.strip()
    return text[:500] if text else f"HTTP {response.status_code} {response.reason_phrase}"


def refusal(response: httpx.Response) -> OutsideAnswer:
    error = _error_of(response)
    facts: dict[str, Any] = {"http_status": response.status_code}
    if error.get("code"):
        facts["code"] = str(error["code"])
    return OutsideAnswer(accepted=False, message=warehouse_message(response), facts=facts)


def _answered(response: httpx.Response, action: str) -> dict[str, Any]:
    found = json_object(response)
    if found is None:
        raise OutsideUnavailable(f"3PL {action}: the answer is not a JSON object")
    return found


class _Missing(Exception):
    """A command without a parameter its action needs: refused before any call."""


def _missing(message: str) -> OutsideAnswer:
    return OutsideAnswer(accepted=False, message=message, facts={"code": "missing_param"})


def _order_path(command: OutsideCommand) -> str:
    ref = command.order_ids.get("wms") or command.order_ref
    if not ref:
        raise _Missing(f"{command.action}: no order to name")
    return f"/orders/{quote(str(ref), safe='')}"


def _lines(command: OutsideCommand) -> list[Any]:
    lines = command.params.get("lines")
    if not isinstance(lines, list) or not lines:
        raise _Missing(f"{command.action} needs lines ([{{sku, qty}}], params.lines)")
    return lines


def _text(command: OutsideCommand, name: str) -> str:
    value = command.params.get(name)
    if not isinstance(value, str) or not value.strip():
        raise _Missing(f"{command.action} needs {name} (params.{name})")
    return value.strip()


# -- the actions ----------------------------------------------------------------------------------


def inventory_lookup(call: WarehouseCall, command: OutsideCommand) -> OutsideAnswer:
    sku = _text(command, "sku")
    response = call("GET", f"/inventory/{quote(sku, safe='')}", action="inventory")
    if response.status_code >= 400:
        return refusal(response)
    found = _answered(response, "inventory")
    places = found.get("locations")
    if not isinstance(places, list) or not all(isinstance(p, dict) for p in places):
        raise OutsideUnavailable("3PL inventory: the answer has no locations")
    locations = {str(p.get("location")): _quantity(p.get("available")) for p in places}
    total = sum(locations.values())
    facts: dict[str, Any] = {"sku": sku, "locations": locations, "total": total}
    facts["in_stock"] = total > 0
    wanted = command.params.get("qty")
    if isinstance(wanted, int) and not isinstance(wanted, bool):
        facts["enough"] = total >= wanted
    return OutsideAnswer(accepted=True, facts=facts)


def _quantity(raw: object) -> int:
    if isinstance(raw, int) and not isinstance(raw, bool):
        return raw
    raise OutsideUnavailable(f"3PL inventory: {raw!r} is not a quantity")


def label_reprint(call: WarehouseCall, command: OutsideCommand) -> OutsideAnswer:
    body = {"reason": command.params["reason"]} if command.params.get("reason") else {}
    response = call(
        "POST", f"{_order_path(command)}/label", action="label", body=body, key=command.key
    )
    if response.status_code >= 400:
        return refusal(response)
    found = _answered(response, "label")
    facts = {name: found.get(name) for name in ("label_id", "tracking", "carrier")}
    label = found.get("label_id")
    return OutsideAnswer(accepted=True, reference=str(label) if label else None, facts=facts)


def split_shipment(call: WarehouseCall, command: OutsideCommand) -> OutsideAnswer:
    body = {"lines": _lines(command)}
    response = call(
        "POST", f"{_order_path(command)}/split", action="split", body=body, key=command.key
    )
    if response.status_code >= 400:
        return refusal(response)
    shipments = _answered(response, "split").get("shipments")
    if not isinstance(shipments, list) or not shipments:
        raise OutsideUnavailable("3PL split: the answer has no shipments")
    shown = [
        {"id": str(s.get("id")), "status": s.get("status"), "lines": s.get("lines")}
        for s in shipments
        if isinstance(s, dict)
    ]
    ids = [s["id"] for s in shown]
    facts = {"shipment_ids": ids, "shipments": shown}
    return OutsideAnswer(accepted=True, reference=ids[0] if ids else None, facts=facts)


def ship_method_update(call: WarehouseCall, command: OutsideCommand) -> OutsideAnswer:
    body = {"method": _text(command, "method")}
    response = call(
        "POST",
        f"{_order_path(command)}/ship-method",
        action="ship-method",
        body=body,
        key=command.key,
    )
    if response.status_code >= 400:
        return refusal(response)
    found = _answered(response, "ship-method")
    facts = {"ship_method": found.get("ship_method"), "previous_method": found.get("previous")}
    return OutsideAnswer(accepted=True, facts=facts)


def reship(call: WarehouseCall, command: OutsideCommand) -> OutsideAnswer:
    ref = command.order_ids.get("wms") or command.order_ref
    if not ref:
        raise _Missing("reship: no order to name")
    body: dict[str, Any] = {
        "reship_of": ref,
        "lines": _lines(command),
        "reason": _text(command, "reason"),
    }
    if command.params.get("ship_method"):
        body["ship_method"] = command.params["ship_method"]
    response = call("POST", "/orders", action="reship", body=body, key=command.key)
    if response.status_code >= 400:
        return refusal(response)
    found = _answered(response, "reship")
    new_ref = found.get("ref") or found.get("id")
    if not new_ref:
        raise OutsideUnavailable("3PL reship: the answer names no new order")
    facts: dict[str, Any] = {"reshipment_id": str(new_ref), "status": found.get("status")}
    if isinstance(found.get("picked_from"), dict):
        facts["picked_from"] = found["picked_from"]
    return OutsideAnswer(accepted=True, reference=str(new_ref), facts=facts)


def _refusing_missing(
    action: Callable[[WarehouseCall, OutsideCommand], OutsideAnswer],
) -> Callable[[WarehouseCall, OutsideCommand], OutsideAnswer]:
    def run(call: WarehouseCall, command: OutsideCommand) -> OutsideAnswer:
        try:
            return action(call, command)
        except _Missing as missing:
            return _missing(str(missing))

    return run


ACTIONS: Mapping[str, Callable[[WarehouseCall, OutsideCommand], OutsideAnswer]] = {
    name: _refusing_missing(action)
    for name, action in {
        "inventory_lookup": inventory_lookup,
        "label_reprint": label_reprint,
        "split_shipment": split_shipment,
        "ship_method_update": ship_method_update,
        "reship": reship,
    }.items()
}
