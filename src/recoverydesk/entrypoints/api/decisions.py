"""The one-click decision page a customer reaches from a message: ``GET /decide/{token}``
shows the choices, ``POST /decide/{token}`` (form field ``choice``) records one.

No login: the signed token is the capability, and an answer counts once. The page is plain
HTML (no script, no outside assets, one form per choice), so it works in any browser and with a
screen reader; a GET never records anything (mail scanners open links). Answers:

- 200: the choices; after a POST, the choice recorded (or "you already chose X");
- 404: a link the desk did not sign (forged, tampered, cut short) or whose case is gone;
- 409: a second answer different from the first ("you already chose X");
- 410: the window closed (the default applies), or the case was settled meanwhile;
- 422: a choice the decision did not offer.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import structlog
from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

from recoverydesk.bootstrap import Desk
from recoverydesk.domain.errors import Busy, DeskError
from recoverydesk.services.decisions import (
    Answer,
    Answered,
    Decision,
    DecisionLinks,
    DecisionOffer,
    LinkNotValid,
    answer_decision,
    decision_state,
    make_offer,
)
from recoverydesk.services.messages_compose import CHOICE_LABELS
from recoverydesk.services.ports import Merchant, TransientConflict

log = structlog.get_logger("recoverydesk.api.decisions")

router = APIRouter(tags=["decisions"])
_PAGES = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(["html"]),
    trim_blocks=True,
    lstrip_blocks=True,
)
_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}
MOST_FORM_BYTES = 4096


def _desk(request: Request) -> Desk:
    desk: Desk = request.app.state.desk
    return desk


def decision_links(request: Request) -> DecisionLinks:
    """How the desk signs links: its secret, and its public address (``RECOVERYDESK_PUBLIC_URL``,
    else the address this request came to)."""
    settings = _desk(request).settings
    base = settings.public_url or str(request.base_url)
    return DecisionLinks(settings.decision_signing_secret(), base)


def offer_of(request: Request, body: Any) -> DecisionOffer:
    """The ``offer_decision`` action's arguments from the case action's body."""
    return make_offer(
        template=body.template,
        choices=body.choices,
        default=body.default,
        window=body.window,
        decision_id=body.decision,
        links=decision_links(request),
    )


@router.get("/decide/{token}", response_class=HTMLResponse, summary="A customer's decision page")
def decision_page(request: Request, token: str, choice: str | None = None) -> HTMLResponse:
    desk = _desk(request)
    found = _read(request, token)
    if found is None:
        return _page("not_valid", 404)
    merchant, decision = found
    try:
        with desk.reader() as uow:
            state = decision_state(uow, merchant=merchant, decision=decision, now=desk.clock.now())
    except LinkNotValid:
        return _page("not_valid", 404)
    picked = choice if choice in decision.choices else None
    return _answer_page(merchant, decision, state, picked=picked, asked=None)


@router.post("/decide/{token}", response_class=HTMLResponse, summary="Record a customer's choice")
async def decide(request: Request, token: str) -> HTMLResponse:
    desk = _desk(request)
    body = await request.body()
    try:
        form = parse_qs(body[:MOST_FORM_BYTES].decode("utf-8", "replace"), max_num_fields=10)
    except ValueError:  # more fields than any page of ours sends
        form = {}
    choice = (form.get("choice") or [""])[0].strip()
    found = _read(request, token)
    if found is None:
        return _page("not_valid", 404)
    merchant, decision = found
    try:
        answer = await run_in_threadpool(_answer, desk, merchant, decision, choice)
    except LinkNotValid:
        return _page("not_valid", 404)
    return _answer_page(merchant, decision, answer, picked=None, asked=choice)


def _read(request: Request, token: str) -> tuple[Merchant, Decision] | None:
    desk = _desk(request)
    try:
        decision = decision_links(request).read(token)
    except LinkNotValid:
        return None
    except DeskError as error:  # no secret configured: nothing this desk signed can be read
        log.error("decision page without a signing secret", error=error.message)
        return None
    with desk.reader() as uow:
        merchant = uow.merchants.by_id(decision.merchant_id)
    return (merchant, decision) if merchant is not None else None


def _answer(desk: Desk, merchant: Merchant, decision: Decision, choice: str) -> Answer:
    for _ in range(5):
        try:
            with desk.uow() as uow:
                answer = answer_decision(
                    uow, merchant=merchant, decision=decision, choice=choice, now=desk.clock.now()
                )
                uow.commit()
            return answer
        except TransientConflict:
            continue
    raise Busy("the desk is busy right now; try again", code="busy")


def _answer_page(
    merchant: Merchant,
    decision: Decision,
    answer: Answer,
    *,
    picked: str | None,
    asked: str | None,
) -> HTMLResponse:
    context = {
        "merchant": merchant.name,
        "order_ref": answer.order_ref,
        "choices": [{"choice": c, "label": _label(c)} for c in decision.choices],
        "picked": picked,
        "chosen": _label(answer.choice) if answer.choice else None,
        "default_label": _label(decision.default),
        "expires_at": decision.expires_at,
    }
    state, status = _STATES[answer.status]
    if answer.status is Answered.ALREADY and answer.defaulted:
        state, status = "defaulted", 410
    elif answer.status is Answered.ALREADY and asked is not None and asked != answer.choice:
        status = 409  # a second, different answer: the first one stands
    return _page(state, status, context)


_STATES: dict[Answered, tuple[str, int]] = {
    Answered.OPEN: ("open", 200),
    Answered.RECORDED: ("recorded", 200),
    Answered.ALREADY: ("already", 200),
    Answered.NOT_OFFERED: ("not_offered", 422),
    Answered.EXPIRED: ("expired", 410),
    Answered.SETTLED: ("settled", 410),
}


def _label(choice: str) -> str:
    return CHOICE_LABELS.get(choice, choice)


def _page(state: str, status: int, context: dict[str, Any] | None = None) -> HTMLResponse:
    html = _PAGES.get_template("decision.html").render(state=state, **(context or {}))
    return HTMLResponse(html, status_code=status, headers=_HEADERS)
