"""The /api/v1 routes. A bearer token sees only its own merchant's data."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Annotated, Any, Literal, TypeVar

import structlog
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from recoverydesk.bootstrap import Desk
from recoverydesk.domain.cases import Outcome
from recoverydesk.domain.errors import (
    Busy,
    DeskError,
    Forbidden,
    InvalidEvent,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
)
from recoverydesk.entrypoints.api.decisions import decision_links, offer_of
from recoverydesk.persistence.case_store import CaseFilter
from recoverydesk.services import stopship
from recoverydesk.services.canonical import parse_event
from recoverydesk.services.casework import MONEY_ACTIONS, CaseAction, DeskAction, act_on_case
from recoverydesk.services.decisions import DecisionLinks
from recoverydesk.services.merchants import Role, authenticate
from recoverydesk.services.playbook_plan import plan_view
from recoverydesk.services.ports import IncomingEvent, Merchant, TransientConflict
from recoverydesk.services.views import (
    cancellation_to_dict,
    case_detail,
    case_to_dict,
    money_view,
    order_to_dict,
)

router = APIRouter(prefix="/api/v1")
bearer = HTTPBearer(auto_error=False)


class Caller(BaseModel):
    merchant_id: int
    merchant: str
    role: Role

    def as_merchant(self, desk: Desk) -> Merchant:
        with desk.reader() as uow:
            found = uow.merchants.by_id(self.merchant_id)
        if found is None:
            raise Unauthorized("the token's merchant no longer exists")
        return found


def _desk(request: Request) -> Desk:
    desk: Desk = request.app.state.desk
    return desk


def caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthorized(
            "send 'Authorization: Bearer <token>' (create one with 'recoverydesk token create')"
        )
    with _desk(request).reader() as uow:
        merchant, role = authenticate(uow, credentials.credentials)
    structlog.contextvars.bind_contextvars(merchant=merchant.name)
    return Caller(merchant_id=merchant.id, merchant=merchant.name, role=role)


Authorized = Annotated[Caller, Depends(caller)]


class IngestAnswer(BaseModel):
    received: int
    stored: int
    duplicates: int
    cases_opened: int
    cases_closed: int


@router.post(
    "/events",
    response_model=IngestAnswer,
    tags=["events"],
    summary="Post one canonical event or a JSON array of them",
)
async def post_events(request: Request, who: Authorized) -> IngestAnswer:
    desk = _desk(request)
    body = await request.body()
    if len(body) > desk.settings.max_body_bytes:
        raise PayloadTooLarge(f"request body larger than {desk.settings.max_body_bytes} bytes")
    items = _parse_batch(body, who, desk.settings.max_events_per_request)
    merchant = who.as_merchant(desk)
    report = await run_in_threadpool(desk.ingest, merchant, items)
    return IngestAnswer(
        received=report.received,
        stored=report.stored,
        duplicates=report.duplicates,
        cases_opened=report.cases_opened,
        cases_closed=report.cases_closed,
    )


def _parse_batch(body: bytes, who: Caller, most: int) -> list[IncomingEvent]:
    try:
        decoded = json.loads(body, parse_float=Decimal)
    except (ValueError, RecursionError) as error:  # JSON, Unicode and integer-size errors
        raise InvalidEvent(f"body: malformed JSON ({error})") from None
    batch = decoded if isinstance(decoded, list) else [decoded]
    if not batch:
        raise InvalidEvent("body: an empty list of events")
    if len(batch) > most:
        raise PayloadTooLarge(f"body: at most {most} events per request, got {len(batch)}")
    items = []
    for index, raw in enumerate(batch):
        where = f"events[{index}]" if isinstance(decoded, list) else "event"
        try:
            event = parse_event(raw)
        except InvalidEvent as error:
            raise InvalidEvent(f"{where}.{error.message}") from None
        if event.merchant is not None and event.merchant != who.merchant:
            raise InvalidEvent(
                f"{where}.merchant: this token is for merchant {who.merchant!r}",
                code="merchant_mismatch",
            )
        items.append(IncomingEvent(event, json.dumps(raw, default=str)))
    return items


@router.get("/cases", tags=["cases"])
def list_cases(
    request: Request,
    who: Authorized,
    *,
    status: str | None = None,
    queue: str | None = None,
    priority: str | None = None,
    category: str | None = None,
    order: str | None = None,
    owner: str | None = None,
    state: Literal["open", "all"] = "all",
    sort: Literal["priority", "opened"] = "priority",
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    offset: Annotated[int, Query(ge=0, le=10_000_000)] = 0,
) -> dict[str, Any]:
    filters = CaseFilter(
        status=status,
        queue=queue,
        priority=priority,
        category=category,
        order_ref=order,
        open_only=state == "open",
        owner=owner,
        sort=sort,
        limit=limit,
        offset=offset,
    )
    with _desk(request).reader() as uow:
        found, total = uow.cases.search(who.merchant_id, filters)
    return {
        "cases": [case_to_dict(case) for case in found],
        "total": total,
        "limit": limit,
        "offset": offset,
    }


@router.get("/cases/{case_id}", tags=["cases"])
def get_case(request: Request, who: Authorized, case_id: int) -> dict[str, Any]:
    with _desk(request).reader() as uow:
        case = uow.cases.get(who.merchant_id, case_id)
        if case is None:
            raise NotFound(f"no case {case_id}", code="case_not_found")
        timeline = uow.cases.timeline(who.merchant_id, case_id)
        body = case_detail(case, timeline)
        body.update(_stopship_of(uow, who.merchant_id, case.order_ref, case_id))
        body["playbook"] = _playbook_of(uow, request, who, case)
    return body


def _playbook_of(uow: Any, request: Request, who: Caller, case: Any) -> dict[str, Any] | None:
    """The case's playbook and the plan of its steps (state, reason, due time, mode, label)."""
    merchant = uow.merchants.by_id(who.merchant_id)
    if merchant is None:
        return None
    return plan_view(uow, merchant, case, _desk(request).clock.now())


def _links_or_none(request: Request) -> DecisionLinks | None:
    try:
        return decision_links(request)
    except DeskError:  # no signing secret: a decision step says so when it runs
        return None


def _stopship_of(uow: Any, merchant_id: int, ref: str, case_id: int | None) -> dict[str, Any]:
    """The stop-ship workflow of a case (its progress and timestamps) and the order's ledger."""
    workflows = uow.cancellations.for_case(merchant_id, case_id) if case_id else []
    if not workflows and case_id is None:
        workflows = uow.cancellations.for_order(merchant_id, ref)
    order = uow.orders.get(merchant_id, ref)
    return {
        "cancellation": cancellation_to_dict(workflows[-1]) if workflows else None,
        "cancellations": [cancellation_to_dict(w) for w in workflows],
        "ledger": money_view(order, uow.ledger.for_order(merchant_id, ref)) if order else None,
    }


T = TypeVar("T")
ATTEMPTS = 5


def _in_one_transaction(desk: Desk, work: Callable[[Any], T]) -> T:
    """Run ``work`` in a unit of work and commit; a transaction the database chose as a
    deadlock victim (or found busy) is run again, then the caller is told to retry (503)."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            with desk.uow() as uow:
                result = work(uow)
                uow.commit()
            return result
        except TransientConflict:
            time.sleep(0.02 * attempt)
    raise Busy("the desk is busy with this order right now; try again", code="busy")


MONEY_ROLES = frozenset({Role.FINANCE, Role.LEAD, Role.ADMIN})


class ActionBody(BaseModel):
    """A desk action on a case. ``assign`` takes ``owner`` (null to unassign); ``refund`` takes
    ``amount`` (a decimal string) and ``concession`` (a refund on an order that still ships);
    ``void``, ``retry_step`` and ``mark_converted`` take nothing more. ``close`` takes the
    ``outcome`` and a ``root_cause`` from the merchant's list; ``set_root_cause`` the
    ``root_cause`` of a closed case. ``send_message`` takes a plain message's ``template``."""

    model_config = ConfigDict(extra="forbid")
    action: DeskAction
    note: Annotated[str, Field(max_length=4000)] | None = None
    owner: Annotated[str, Field(max_length=60)] | None = None
    actor: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    amount: Annotated[str, Field(max_length=24)] | None = None
    concession: bool = False
    # offer_decision: a template, the choices, the default and the window (ISO 8601, PT48H)
    template: Annotated[str, Field(max_length=60)] | None = None
    choices: Annotated[list[Annotated[str, Field(max_length=40)]], Field(max_length=10)] | None = (
        None
    )
    default: Annotated[str, Field(max_length=40)] | None = None
    window: timedelta | None = None
    decision: Annotated[str, Field(max_length=60)] | None = None
    # close / set_root_cause
    outcome: Outcome | None = None
    root_cause: Annotated[str, Field(max_length=60)] | None = None
    # run_step: the step of the case's playbook, and the checklist items ticked
    step: Annotated[str, Field(max_length=60)] | None = None
    checked: Annotated[list[Annotated[str, Field(max_length=200)]], Field(max_length=50)] = []


@router.post("/cases/{case_id}/actions", tags=["cases"], summary="Act on a case")
def post_case_action(
    request: Request, who: Authorized, case_id: int, body: ActionBody
) -> dict[str, Any]:
    desk = _desk(request)
    merchant = who.as_merchant(desk)
    if body.action in MONEY_ACTIONS and who.role not in MONEY_ROLES:
        raise Forbidden(
            f"{body.action.value} is for finance, lead or admin tokens, not {who.role.value}",
            code="role_forbidden",
        )
    command = CaseAction(
        action=body.action,
        actor=body.actor or f"{who.role.value}@{who.merchant}",
        note=body.note,
        owner=body.owner,
        amount=_amount(body.amount) if body.amount is not None else None,
        concession=body.concession,
        offer=offer_of(request, body) if body.action is DeskAction.OFFER_DECISION else None,
        template=body.template if body.action is DeskAction.SEND_MESSAGE else None,
        outcome=body.outcome,
        root_cause=body.root_cause,
        step=body.step,
        checked=tuple(body.checked),
        links=_links_or_none(request) if body.action is DeskAction.RUN_STEP else None,
    )

    def act(uow: Any) -> None:
        act_on_case(uow, merchant=merchant, case_id=case_id, command=command, now=desk.clock.now())

    _in_one_transaction(desk, act)
    with desk.reader() as uow:
        case = uow.cases.get(who.merchant_id, case_id)
        assert case is not None
        timeline = uow.cases.timeline(who.merchant_id, case_id)
        answer = case_detail(case, timeline)
        answer.update(_stopship_of(uow, who.merchant_id, case.order_ref, case_id))
        answer["playbook"] = _playbook_of(uow, request, who, case)
    return answer


MOST = Decimal("1000000000")


def _amount(text: str) -> Decimal:
    """A money amount from the caller: positive, at most 2 decimals, below a billion."""
    try:
        amount = Decimal(text)
    except ArithmeticError:
        raise InvalidInput(f"amount: {text!r} is not a decimal amount") from None
    exponent = amount.as_tuple().exponent
    if not amount.is_finite() or not 0 < amount < MOST or not isinstance(exponent, int):
        raise InvalidInput(f"amount: {text!r} must be positive and below {MOST}")
    if exponent < -2:
        raise InvalidInput(f"amount: {text!r} has more than 2 decimals")
    return amount


class LineBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    sku: Annotated[str, Field(min_length=1, max_length=200)]
    qty: Annotated[int, Field(ge=1, le=100_000)] = 1


class CancellationBody(BaseModel):
    """Start the stop-ship workflow. Without ``lines`` the whole order is cancelled.
    ``request_id`` makes a retried request harmless: the same id is the same request."""

    model_config = ConfigDict(extra="forbid")
    requested_by: Literal["customer", "ops", "auto"] = "customer"
    reason: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    lines: Annotated[list[LineBody], Field(min_length=1, max_length=500)] | None = None
    request_id: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    actor: Annotated[str, Field(min_length=1, max_length=100)] | None = None


@router.post(
    "/orders/{ref}/cancellations",
    tags=["orders"],
    status_code=201,
    summary="Start the stop-ship workflow (a second request joins the open one)",
)
def post_cancellation(
    request: Request, response: Response, who: Authorized, ref: str, body: CancellationBody
) -> dict[str, Any]:
    desk = _desk(request)
    merchant = who.as_merchant(desk)
    ask = stopship.CancelRequest(
        requested_by=body.requested_by,
        reason=body.reason,
        lines=tuple((line.sku, line.qty) for line in body.lines) if body.lines else None,
        request_id=body.request_id,
    )
    actor = body.actor or f"{who.role.value}@{who.merchant}"
    workflow, new = _in_one_transaction(
        desk,
        lambda uow: stopship.request_cancellation(
            uow, merchant, ref, ask, actor=actor, now=desk.clock.now()
        ),
    )
    if not new:
        response.status_code = 200
    with desk.reader() as uow:
        found = uow.cancellations.lock(who.merchant_id, workflow.id or 0) or workflow
        answer = {"joined": not new, **cancellation_to_dict(found)}
    return answer


@router.get("/orders/{ref}", tags=["orders"], summary="The order 360")
def get_order(request: Request, who: Authorized, ref: str) -> dict[str, Any]:
    with _desk(request).reader() as uow:
        order = uow.orders.get(who.merchant_id, ref)
        if order is None:
            raise NotFound(f"no order {ref!r}", code="order_not_found")
        cases = uow.cases.for_orders(who.merchant_id, [ref], open_only=False).get(ref, [])
        history = uow.events.raw_for_order(who.merchant_id, ref)
        stopship_part = _stopship_of(uow, who.merchant_id, ref, None)
        calls = uow.outbound.for_order(who.merchant_id, ref)
    body = order_to_dict(order)
    body["cases"] = [case_to_dict(case) for case in cases]
    body["events"] = [_jsonable(row) for row in history]
    body["cancellations"] = stopship_part["cancellations"]
    body["ledger"] = stopship_part["ledger"]
    body["outbound_calls"] = calls
    return body


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    return {
        key: value.isoformat() if hasattr(value, "isoformat") else value
        for key, value in row.items()
    }
