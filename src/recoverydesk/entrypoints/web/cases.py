"""The case workspace: ``GET /desk/cases/{id}`` (with a live part polled every 5 seconds),
the actions on it (``POST /desk/cases/{id}/actions``) and starting a cancellation. A case of
another merchant than the user's is a 404, whoever asks; every action is audited, refused
ones too. Roles are checked here, on the server, whatever the page showed."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from fastapi import APIRouter, Form, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import RedirectResponse, Response

from recoverydesk.bootstrap import Desk
from recoverydesk.domain.cases import Outcome
from recoverydesk.domain.errors import Busy, DeskError, Forbidden, InvalidInput, NotFound
from recoverydesk.entrypoints.api.decisions import decision_links
from recoverydesk.entrypoints.errors import http_status
from recoverydesk.entrypoints.web.auth import (
    CASE_ROLES,
    LEAD_ROLES,
    MONEY_ROLES,
    Checked,
    LoggedIn,
    WebUser,
    csrf_token,
    desk_of,
)
from recoverydesk.entrypoints.web.templates import page
from recoverydesk.entrypoints.web.workspace import (
    DECISIONS,
    find_case,
    message_preview,
    workspace,
)
from recoverydesk.persistence.user_store import SqlUserStore
from recoverydesk.services import stopship
from recoverydesk.services.casework import MONEY_ACTIONS, CaseAction, DeskAction, act_on_case
from recoverydesk.services.decisions import make_offer
from recoverydesk.services.ports import AuditEntry, Merchant, TransientConflict

router = APIRouter(prefix="/cases")
Text = Annotated[str, Form(max_length=4000)]
Short = Annotated[str, Form(max_length=100)]
DONE = {action.value: action.value.replace("_", " ") for action in DeskAction} | {
    "cancellation": "cancellation started"
}


def _located(desk: Desk, user: WebUser, case_id: int) -> tuple[Merchant, int] | None:
    with desk.reader() as uow:
        found = find_case(uow, user, case_id)
    return (found[0], case_id) if found else None


def _not_found(request: Request, user: WebUser, case_id: int) -> Response:
    context = {"user": user, "csrf": csrf_token(request), "status": 404}
    context["message"] = f"No case {case_id} among your merchants' cases."
    return page(request, "error.html", context, status=404)


def _render(
    request: Request,
    user: WebUser,
    case_id: int,
    *,
    name: str = "case.html",
    done: str | None = None,
    error: str | None = None,
    status: int = 200,
) -> Response:
    desk = desk_of(request)
    located = _located(desk, user, case_id)
    found = workspace(desk, request, user, located[0], case_id) if located else None
    if found is None:
        return _not_found(request, user, case_id)
    context: dict[str, Any] = {"user": user, "csrf": csrf_token(request), **found}
    context.update(done=DONE.get(done or ""), error=error, now=desk.clock.now())
    return page(request, name, context, status=status)


@router.get("/{case_id}")
async def case_page(
    request: Request, user: LoggedIn, case_id: int, done: str | None = None
) -> Response:
    return await run_in_threadpool(_render, request, user, case_id, done=done)


@router.get("/{case_id}/message")
async def message_page(
    request: Request,
    user: LoggedIn,
    case_id: int,
    template: Annotated[str, Query(max_length=60)] = "",
) -> Response:
    """The composer's preview: the plain message a template makes for this case's customer."""
    return await run_in_threadpool(_preview, request, user, case_id, template)


def _preview(request: Request, user: WebUser, case_id: int, template: str) -> Response:
    desk = desk_of(request)
    located = _located(desk, user, case_id)
    found = message_preview(desk, located[0], case_id, template) if located else None
    if found is None:
        return _not_found(request, user, case_id)
    return page(request, "_message_preview.html", {"preview": found})


@router.get("/{case_id}/live")
async def case_live(request: Request, user: LoggedIn, case_id: int) -> Response:
    """The workspace's live part: status, stop-ship progress and timeline."""
    return await run_in_threadpool(_render, request, user, case_id, name="_case_live.html")


def _audit(
    desk: Desk,
    user: WebUser,
    merchant: Merchant,
    *,
    action: str,
    case_id: int,
    detail: dict[str, Any],
) -> None:
    with SqlUserStore(desk.engine) as users:
        users.audit(
            AuditEntry(desk.clock.now(), user.name, action, merchant.id, f"case:{case_id}", detail)
        )
        users.commit()


def _retrying(desk: Desk, work: Any) -> Any:
    for _ in range(5):
        try:
            with desk.uow() as uow:
                result = work(uow)
                uow.commit()
            return result
        except TransientConflict:
            continue
    raise Busy("the desk is busy with this order right now; try again", code="busy")


def _permitted(user: WebUser, action: DeskAction, owner_now: str | None, owner: str) -> None:
    """The server's role check of a case action (the page only shows the same rules)."""
    if action in MONEY_ACTIONS:
        if user.role not in MONEY_ROLES:
            raise Forbidden(
                f"{action.value} is for finance, lead or admin, not {user.role.value}",
                code="role_forbidden",
            )
        return
    if user.role not in CASE_ROLES:
        raise Forbidden(f"{action.value} is not for {user.role.value}", code="role_forbidden")
    reassigning = action is DeskAction.ASSIGN and owner_now and owner_now != (owner or None)
    if reassigning and user.role not in LEAD_ROLES:
        raise Forbidden("reassigning a case is for leads and admins", code="role_forbidden")


def _command(
    request: Request, user: WebUser, action: DeskAction, form: dict[str, Any]
) -> CaseAction:
    offer = None
    if action is DeskAction.OFFER_DECISION:
        template = form["template"]
        choices, default = DECISIONS.get(template, ((), ""))
        hours = int(form["window_hours"] or 48)
        offer = make_offer(
            template=template,
            choices=list(choices),
            default=default,
            window=timedelta(hours=hours),
            links=decision_links(request),
        )
    return CaseAction(
        action=action,
        actor=user.name,
        note=form["note"] or None,
        owner=form["owner"] or None,
        amount=_amount(form["amount"]) if action is DeskAction.REFUND else None,
        concession=form["concession"] == "yes",
        offer=offer,
        template=(form["template"] or None) if action is DeskAction.SEND_MESSAGE else None,
        outcome=Outcome(form["outcome"]) if form["outcome"] else None,
        root_cause=form["root_cause"] or None,
        step=form["step"] or None,
        checked=tuple(form["checked"]),
        links=decision_links(request) if action is DeskAction.RUN_STEP else None,
    )


def _amount(text: str) -> Decimal:
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise InvalidInput(f"amount: {text!r} is not an amount") from None
    if not amount.is_finite() or amount <= 0 or amount.as_tuple().exponent < -2:  # type: ignore[operator]
        raise InvalidInput(f"amount: {text!r} must be positive, at most 2 decimals")
    return amount


def _act(request: Request, user: WebUser, case_id: int, form: dict[str, Any]) -> Response:
    desk = desk_of(request)
    located = _located(desk, user, case_id)
    if located is None:
        return _not_found(request, user, case_id)
    merchant = located[0]
    name = str(form["action"])
    try:
        action = DeskAction(name)
        with desk.reader() as uow:
            case = uow.cases.get(merchant.id, case_id)
        _permitted(user, action, case.owner if case else None, form["owner"])
        command = _command(request, user, action, form)
        _retrying(
            desk,
            lambda uow: act_on_case(
                uow, merchant=merchant, case_id=case_id, command=command, now=desk.clock.now()
            ),
        )
    except (DeskError, ValueError) as error:
        status = http_status(error) if isinstance(error, DeskError) else 422
        message = error.message if isinstance(error, DeskError) else f"unknown action {name!r}"
        code = error.code if isinstance(error, DeskError) else "invalid_input"
        _audit(
            desk,
            user,
            merchant,
            action=f"case.{name[:30]}",
            case_id=case_id,
            detail={"refused": code},
        )
        return _render(request, user, case_id, error=message, status=status)
    _audit(desk, user, merchant, action=f"case.{name}", case_id=case_id, detail=_detail(form))
    return RedirectResponse(f"/desk/cases/{case_id}?done={name}", status_code=303)


def _detail(form: dict[str, Any]) -> dict[str, Any]:
    keys = ("step", "owner", "amount", "outcome", "root_cause", "template")
    return {key: form[key] for key in keys if form.get(key)}


@router.post("/{case_id}/actions")
async def case_action(
    request: Request,
    user: Checked,
    case_id: int,
    *,
    action: Annotated[str, Form(max_length=40)],
    step: Short = "",
    checked: Annotated[list[str] | None, Form()] = None,
    note: Text = "",
    owner: Short = "",
    amount: Short = "",
    concession: Short = "",
    outcome: Short = "",
    root_cause: Short = "",
    template: Short = "",
    window_hours: Short = "",
) -> Response:
    form = {
        "action": action, "step": step, "checked": list(checked or [])[:50], "note": note,
        "owner": owner, "amount": amount, "concession": concession, "outcome": outcome,
        "root_cause": root_cause, "template": template, "window_hours": window_hours,
    }  # fmt: skip
    return await run_in_threadpool(_act, request, user, case_id, form)


def _cancel(request: Request, user: WebUser, case_id: int, reason: str) -> Response:
    desk = desk_of(request)
    located = _located(desk, user, case_id)
    if located is None:
        return _not_found(request, user, case_id)
    merchant = located[0]
    try:
        if user.role not in CASE_ROLES:
            raise Forbidden(f"a cancellation is not for {user.role.value}", code="role_forbidden")
        with desk.reader() as uow:
            case = uow.cases.get(merchant.id, case_id)
        if case is None:
            raise NotFound(f"no case {case_id}", code="case_not_found")
        ask = stopship.CancelRequest(requested_by="customer", reason=reason or None)
        _retrying(
            desk,
            lambda uow: stopship.request_cancellation(
                uow, merchant, case.order_ref, ask, actor=user.name, now=desk.clock.now()
            ),
        )
    except DeskError as error:
        _audit(
            desk,
            user,
            merchant,
            action="case.cancellation",
            case_id=case_id,
            detail={"refused": error.code},
        )
        return _render(request, user, case_id, error=error.message, status=http_status(error))
    _audit(
        desk, user, merchant, action="case.cancellation", case_id=case_id, detail={"reason": reason}
    )
    return RedirectResponse(f"/desk/cases/{case_id}?done=cancellation", status_code=303)


@router.post("/{case_id}/cancellation")
async def start_cancellation(
    request: Request,
    user: Checked,
    case_id: int,
    reason: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    return await run_in_threadpool(_cancel, request, user, case_id, reason.strip())
