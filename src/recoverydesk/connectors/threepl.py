"""The generic 3PL REST connector (``kind: wms_rest``): warehouse commands over HTTP.

The merchant's connection (``connectors.outbound.wms``) gives ``base_url`` and ``api_key``
(sent as a bearer token), and optionally ``timeout_seconds``. The order is named by its id at
the warehouse (``order_ids["wms"]``) when the desk knows it, else by the order's ref.

- ``wms_status``: ``GET /orders/{ref}``; the answer's facts carry ``status`` (and ``held``,
  ``cancelled`` when the warehouse says).
- ``wms_hold`` / ``wms_cancel``: ``POST /orders/{ref}/hold`` / ``/cancel`` with ``lines`` and
  ``reason`` when the command has them, and the command's key as ``Idempotency-Key``, so a
  retry is the same request. Accepted means the warehouse took it; its acknowledgment or
  rejection comes later as a signed webhook (``stopship.acknowledged`` / ``stopship.rejected``).
- The playbooks' actions (``connectors.threepl_actions``): ``inventory_lookup``,
  ``label_reprint``, ``split_shipment``, ``ship_method_update`` and ``reship``.

Errors: 429, 5xx, timeouts, connection errors and garbled 2xx answers raise
``OutsideUnavailable`` (the job is retried later); 401, 403, 404, 409, 422 and any other 4xx
are a refusal carrying the warehouse's own message. The API key is never logged.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import structlog

from recoverydesk.connectors.http import SharedClient
from recoverydesk.connectors.threepl_actions import (
    ACTIONS,
    WarehouseCall,
    json_object,
    refusal,
    warehouse_message,
)
from recoverydesk.services.ports import OutsideAnswer, OutsideCommand, OutsideUnavailable

__all__ = ["ThreePLConnector"]

log = structlog.get_logger("recoverydesk.connectors.threepl")

_POSTS = {"wms_hold": "hold", "wms_cancel": "cancel"}
_BODY_PARAMS = ("lines", "reason")


class ThreePLConnector(SharedClient):
    """``OutsideSystems`` for a generic 3PL REST API; one HTTP client, shared by threads."""

    def send(self, command: OutsideCommand) -> OutsideAnswer:
        connection = command.connection
        base_url = str(connection.get("base_url") or "").rstrip("/")
        api_key = connection.get("api_key")
        if not base_url or not api_key:
            return OutsideAnswer(
                accepted=False,
                message="the wms_rest connection needs base_url and api_key",
                facts={"code": "connection_incomplete"},
            )
        timeout = _timeout(connection.get("timeout_seconds"), self._timeout)

        def call(
            method: str,
            path: str,
            *,
            action: str,
            body: dict[str, Any] | None = None,
            key: str | None = None,
        ) -> httpx.Response:
            headers = {"Authorization": f"Bearer {api_key}", "Accept": "application/json"}
            if key is not None:
                headers["Idempotency-Key"] = key
            return self._call(
                method, base_url + path, headers=headers, timeout=timeout, action=action, body=body
            )

        playbook_action = ACTIONS.get(command.action)
        if playbook_action is not None:
            return playbook_action(call, command)
        return _stop_or_status(call, command)

    def _call(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str],
        timeout: httpx.Timeout,
        action: str,
        body: dict[str, Any] | None = None,
    ) -> httpx.Response:
        try:
            response = self._http().request(
                method, url, headers=headers, json=body, timeout=timeout
            )
        except httpx.TimeoutException as error:
            raise OutsideUnavailable(f"3PL {action}: timed out ({type(error).__name__})") from None
        except httpx.HTTPError as error:
            raise OutsideUnavailable(f"3PL {action}: {type(error).__name__}: {error}") from None
        status = response.status_code
        if status == 429 or status >= 500:
            raise OutsideUnavailable(f"3PL {action}: HTTP {status}: {warehouse_message(response)}")
        if 300 <= status < 400:
            raise OutsideUnavailable(f"3PL {action}: unexpected redirect (HTTP {status})")
        if status >= 400:
            log.info("3PL refused", action=action, status=status)
        return response


def _stop_or_status(call: WarehouseCall, command: OutsideCommand) -> OutsideAnswer:
    ref = command.order_ids.get("wms") or command.order_ref
    if not ref:
        return OutsideAnswer(accepted=False, message=f"{command.action}: no order to name")
    path = f"/orders/{quote(str(ref), safe='')}"
    if command.action == "wms_status":
        return _status_answer(call("GET", path, action="status"))
    verb = _POSTS.get(command.action)
    if verb is None:
        return OutsideAnswer(
            accepted=False,
            message=f"the wms_rest connector does not do {command.action!r}",
            facts={"code": "unsupported_action"},
        )
    body = {k: command.params[k] for k in _BODY_PARAMS if command.params.get(k) is not None}
    response = call("POST", f"{path}/{verb}", action=verb, body=body, key=command.key)
    return _stop_answer(response)


def _timeout(configured: object, default: float) -> httpx.Timeout:
    seconds = default
    if isinstance(configured, int | float) and not isinstance(configured, bool) and configured > 0:
        seconds = float(configured)
    return httpx.Timeout(seconds, connect=min(seconds, 5.0))


def _status_answer(response: httpx.Response) -> OutsideAnswer:
    if response.status_code >= 400:
        return refusal(response)
    found = json_object(response)
    status = found.get("status") if found is not None else None
    if not isinstance(status, str) or not status:
        raise OutsideUnavailable("3PL status: the answer has no status")
    facts: dict[str, Any] = {"status": status}
    assert found is not None
    for flag in ("held", "cancelled"):
        if isinstance(found.get(flag), bool):
            facts[flag] = found[flag]
    return OutsideAnswer(accepted=True, facts=facts)


def _stop_answer(response: httpx.Response) -> OutsideAnswer:
    if response.status_code >= 400:
        return refusal(response)
    found = json_object(response)
    if found is None:
        raise OutsideUnavailable("3PL: the answer is not a JSON object")
    reference = found.get("request_id") or found.get("id")
    facts = {"warehouse_status": str(found["status"])} if found.get("status") else {}
    return OutsideAnswer(
        accepted=True, reference=str(reference) if reference else None, facts=facts
    )
