"""Customer decisions: the desk asks the customer to choose (substitute, split, wait, cancel ...),
by a message with links to a one-click decision page, and acts on the answer or on a default.

- ``offer_decision`` (the case action ``offer_decision``): renders the merchant's template with
  the decision's links, sends it through the outbox (an ``outbound.send`` job with the message's
  idempotency key, as every outside call), puts a ``decision.default`` timer at the end of the
  window and records the offer on the case's timeline.
- A link is a signed token (``itsdangerous``, the desk's ``RECOVERYDESK_DECISION_SECRET``)
  carrying the merchant, the case, the decision, its choices, its default and its expiry. The
  token is the capability: whoever has the link may answer, once, and only until it expires.
- ``answer_decision``: the answer is a canonical ``customer.replied`` event (``data.choice``,
  ``data.decision``) with a deterministic id, ``desk:decision:{case}:{decision}``, ingested as
  any event is: it lands on the case's timeline and moves a case waiting on the customer back
  to work. The same id makes a second answer a duplicate.
- ``apply_default`` (the timer): when the window closes without an answer, the same event is
  ingested with the default choice and ``data.defaulted = true``. Whichever of a late answer and
  the default is stored first counts; the other is a duplicate.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import structlog
from itsdangerous import BadData, URLSafeSerializer

from recoverydesk.domain.cases import Case
from recoverydesk.domain.errors import InvalidInput, NotFound
from recoverydesk.domain.events import CanonicalEvent, EventSource, EventType, OrderFacts
from recoverydesk.domain.orders import OrderView
from recoverydesk.services.canonical import event_to_dict, parse_event
from recoverydesk.services.messages_compose import (
    CHOICE_LABELS,
    Choice,
    Tone,
    choose_template,
    message_values,
    readable_time,
    readable_window,
    render_message,
)
from recoverydesk.services.ports import IncomingEvent, Job, JobRequest, Merchant, UnitOfWork

if TYPE_CHECKING:
    from recoverydesk.services.policy import Policy

log = structlog.get_logger("recoverydesk.decisions")

DEFAULT_JOB = "decision.default"
SEND = "outbound.send"  # the outbox's job kind (``services.stopship``)
SALT = "recoverydesk.decision.v1"
SHORTEST_WINDOW, LONGEST_WINDOW = timedelta(minutes=5), timedelta(days=30)
MOST_TOKEN_CHARS = 2000
DECISION_ID = r"^[a-z0-9][a-z0-9_-]{0,99}$"


@dataclass(frozen=True, slots=True)
class Decision:
    """What a customer is asked to choose, on which case, until when."""

    merchant_id: int
    case_id: int
    id: str
    choices: tuple[str, ...]
    default: str
    expires_at: datetime

    @property
    def event_id(self) -> str:
        return f"desk:decision:{self.case_id}:{self.id}"

    def is_open(self, now: datetime) -> bool:
        return now < self.expires_at


class LinkNotValid(NotFound):
    """A decision link that the desk did not sign (forged, tampered or cut short)."""

    code = "decision_link_not_valid"


class DecisionLinks:
    """Signs decision tokens and reads them back; builds the page's URLs."""

    def __init__(self, secret: str, base_url: str) -> None:
        self._serializer = URLSafeSerializer(secret, salt=SALT)
        self.base_url = base_url.rstrip("/")

    def token(self, decision: Decision) -> str:
        return self._serializer.dumps(
            {
                "m": decision.merchant_id,
                "c": decision.case_id,
                "d": decision.id,
                "ch": list(decision.choices),
                "df": decision.default,
                "exp": int(decision.expires_at.timestamp()),
            }
        )

    def page(self, decision: Decision, choice: str | None = None) -> str:
        url = f"{self.base_url}/decide/{self.token(decision)}"
        return f"{url}?choice={quote(choice)}" if choice else url

    def read(self, token: str) -> Decision:
        """The decision a token stands for, whether or not it has expired; ``LinkNotValid``
        when the desk did not sign it."""
        if len(token) > MOST_TOKEN_CHARS:
            raise LinkNotValid("this decision link is not valid")
        try:
            found = self._serializer.loads(token)
            return Decision(
                merchant_id=int(found["m"]),
                case_id=int(found["c"]),
                id=str(found["d"]),
                choices=tuple(str(choice) for choice in found["ch"]),
                default=str(found["df"]),
                expires_at=datetime.fromtimestamp(int(found["exp"]), UTC),
            )
        except (BadData, KeyError, TypeError, ValueError):
            raise LinkNotValid("this decision link is not valid") from None


# -- offering ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DecisionOffer:
    """The ``offer_decision`` action's arguments (``make_offer`` checks them)."""

    template: str
    choices: tuple[str, ...]
    default: str
    window: timedelta
    links: DecisionLinks = field(repr=False)
    decision_id: str | None = None


def make_offer(
    *,
    template: str | None,
    choices: list[str] | None,
    default: str | None,
    window: timedelta | None,
    links: DecisionLinks,
    decision_id: str | None = None,
) -> DecisionOffer:
    if not template:
        raise InvalidInput("template: offer_decision needs a template (e.g. stock_decision)")
    if not choices:
        known = ", ".join(c.value for c in Choice)
        raise InvalidInput(f"choices: offer_decision needs choices (from {known})")
    offered = tuple(dict.fromkeys(choices))
    for choice in offered:
        if choice not in set(Choice):
            known = ", ".join(c.value for c in Choice)
            raise InvalidInput(f"choices: unknown choice {choice!r} (use {known})")
    if default is None or default not in offered:
        raise InvalidInput(f"default: must be one of the choices ({', '.join(offered)})")
    window = window if window is not None else timedelta(hours=48)
    if not SHORTEST_WINDOW <= window <= LONGEST_WINDOW:
        raise InvalidInput("window: between 5 minutes (PT5M) and 30 days (P30D)")
    return DecisionOffer(template, offered, default, window, links, decision_id)


def offer_decision(
    uow: UnitOfWork,
    *,
    merchant: Merchant,
    case: Case,
    offer: DecisionOffer | None,
    actor: str,
    now: datetime,
) -> Decision:
    """Send the customer a decision about a (locked, open) case: the message through the
    outbox, the default's timer at the window's end, the offer on the timeline. The caller
    saves the case (``services.casework`` also moves it to waiting on the customer)."""
    from recoverydesk.services.triage import triage_for

    if offer is None:
        raise InvalidInput("offer_decision needs template, choices, default and window")
    policy = triage_for(uow, merchant).policy
    order = uow.orders.get(merchant.id, case.order_ref) or OrderView(ref=case.order_ref)
    decision = Decision(
        merchant_id=merchant.id,
        case_id=case.id or 0,
        id=_decision_id(offer, now),
        choices=offer.choices,
        default=offer.default,
        expires_at=(now + offer.window).replace(microsecond=0),
    )
    values = _decision_values(decision, offer.links, offer.window)
    system, params = compose_message(policy, merchant, order, offer.template, values)
    params["decision"] = decision.id
    key = f"decision:{merchant.name}:{decision.case_id}:{decision.id}:message"
    uow.jobs.enqueue(
        [_send(merchant, order.ref, system=system, key=key, params=params, now=now)], now=now
    )
    uow.jobs.enqueue([_default_timer(decision, order.ref)], now=now)
    case.record(
        now,
        "decision_offered",
        actor,
        {
            "decision": decision.id,
            "template": offer.template,
            "choices": list(decision.choices),
            "default": decision.default,
            "expires_at": decision.expires_at.isoformat(),
            "system": system,
            "idempotency_key": key,
        },
    )
    log.info("decision offered", merchant=merchant.name, case_id=case.id, decision=decision.id)
    return decision


def _decision_id(offer: DecisionOffer, now: datetime) -> str:
    """The caller's id, else the template and the moment (a retry in the same second is the
    same offer: the same message key, the same timer)."""
    chosen = offer.decision_id or f"{offer.template}-{now.strftime('%Y%m%dt%H%M%S')}"
    if not re.match(DECISION_ID, chosen):
        raise InvalidInput(f"decision: {chosen!r} must match {DECISION_ID}")
    return chosen


# What a template's ``decision`` is in a message that offers none (a playbook's plain message).
NO_DECISION: dict[str, Any] = {
    "id": "",
    "url": "",
    "choices": [],
    "links": {},
    "default": "",
    "default_label": "",
    "expires": "",
    "expires_at": "",
    "window": "",
}


def compose_message(
    policy: Policy,
    merchant: Merchant,
    order: OrderView,
    template_name: str,
    decision: dict[str, Any],
) -> tuple[str, dict[str, Any]]:
    """A customer message from the merchant's template (else the desk's default): the system
    it goes through (the order's helpdesk ticket, else email) and the ``send_message`` params.
    ``no_recipient`` when the order has neither; ``no_template``, ``template_error``."""
    template = choose_template(policy.templates, template_name)
    system, recipient = _channel(order)
    tone, language = template.tone or policy.tone, template.language or policy.language
    values = message_values(
        order=order, merchant=merchant.name, decision=decision, tone=Tone(tone), language=language
    )
    message = render_message(template_name, template, values)
    params: dict[str, Any] = {
        "template": template_name,
        **recipient,
        "subject": message.subject,
        "body": message.body,
        "language": message.language,
    }
    return system, params


def _channel(order: OrderView) -> tuple[str, dict[str, str]]:
    """The helpdesk ticket when the order has one, else an email to the customer."""
    if order.tickets:
        found = {"ticket": order.tickets[0]}
        if order.customer_email:
            found["to"] = order.customer_email
        return "helpdesk", found
    if order.customer_email:
        return "email", {"to": order.customer_email}
    raise InvalidInput(
        f"order {order.ref} has no customer email and no helpdesk ticket to write to",
        code="no_recipient",
    )


def _decision_values(decision: Decision, links: DecisionLinks, window: timedelta) -> dict[str, Any]:
    choices = [
        {"choice": choice, "label": CHOICE_LABELS[choice], "url": links.page(decision, choice)}
        for choice in decision.choices
    ]
    return {
        "id": decision.id,
        "url": links.page(decision),
        "choices": choices,
        "links": {item["choice"]: item["url"] for item in choices},
        "default": decision.default,
        "default_label": CHOICE_LABELS[decision.default],
        "expires": readable_time(decision.expires_at),
        "expires_at": decision.expires_at.isoformat(),
        "window": readable_window(window),
    }


def _send(
    merchant: Merchant, ref: str, *, system: str, key: str, params: dict[str, Any], now: datetime
) -> JobRequest:
    return JobRequest(
        merchant_id=merchant.id,
        kind=SEND,
        key=f"outbound:{key}",
        due_at=now,
        payload={
            "cancellation_id": None,
            "order_ref": ref,
            "system": system,
            "action": "send_message",
            "key": key,
            "params": params,
        },
    )


def _default_timer(decision: Decision, ref: str) -> JobRequest:
    return JobRequest(
        merchant_id=decision.merchant_id,
        kind=DEFAULT_JOB,
        key=f"decision:{decision.case_id}:{decision.id}:default",
        due_at=decision.expires_at,
        payload={
            "case_id": decision.case_id,
            "decision": decision.id,
            "choices": list(decision.choices),
            "default": decision.default,
            "expires_at": decision.expires_at.isoformat(),
            "order_ref": ref,
        },
    )


# -- answering -----------------------------------------------------------------------------------


class Answered(StrEnum):
    OPEN = "open"  # nothing chosen yet, and the window is open
    RECORDED = "recorded"  # this answer counts
    ALREADY = "already"  # an answer (or the default) was stored before
    EXPIRED = "expired"  # the window closed without an answer
    NOT_OFFERED = "not_offered"  # a choice the decision did not offer
    SETTLED = "settled"  # the case closed: nothing to decide any more


@dataclass(frozen=True, slots=True)
class Answer:
    status: Answered
    choice: str | None = None
    defaulted: bool = False
    order_ref: str | None = None


def decision_state(
    uow: UnitOfWork, *, merchant: Merchant, decision: Decision, now: datetime
) -> Answer:
    """Where a decision stands, for its page: answered (and how), open, expired or settled."""
    case = _case_of(uow, merchant, decision)
    stored = _stored_answer(uow, merchant, decision, case.order_ref)
    if stored is not None:
        return stored
    if not case.is_open:
        return Answer(Answered.SETTLED, order_ref=case.order_ref)
    if not decision.is_open(now):
        return Answer(Answered.EXPIRED, decision.default, order_ref=case.order_ref)
    return Answer(Answered.OPEN, order_ref=case.order_ref)


def answer_decision(
    uow: UnitOfWork,
    *,
    merchant: Merchant,
    decision: Decision,
    choice: str,
    now: datetime,
    defaulted: bool = False,
) -> Answer:
    """Record the customer's choice (or the default) as a ``customer.replied`` event."""
    from recoverydesk.services.intake import ingest_within

    case = _case_of(uow, merchant, decision)
    stored = _stored_answer(uow, merchant, decision, case.order_ref)
    if stored is not None:
        return stored
    if not defaulted and not decision.is_open(now):
        return Answer(Answered.EXPIRED, decision.default, order_ref=case.order_ref)
    if choice not in decision.choices:
        return Answer(Answered.NOT_OFFERED, choice, order_ref=case.order_ref)
    if not case.is_open:
        return Answer(Answered.SETTLED, order_ref=case.order_ref)
    event = _reply_event(decision, case.order_ref, choice, defaulted, now)
    raw = json.dumps(event_to_dict(event))
    report = ingest_within(uow, merchant=merchant, events=[IncomingEvent(event, raw)], now=now)
    if not report.stored:  # answered meanwhile by another request or by the timer
        return _stored_answer(uow, merchant, decision, case.order_ref) or Answer(Answered.ALREADY)
    locked = uow.cases.lock(merchant.id, decision.case_id)
    if locked is not None:
        locked.record(
            now,
            "decision_answered",
            "desk" if defaulted else "customer",
            {"decision": decision.id, "choice": choice, "defaulted": defaulted},
            event_id=decision.event_id,
        )
        uow.cases.save(merchant.id, [locked])
    log.info("decision answered", case_id=decision.case_id, choice=choice, defaulted=defaulted)
    return Answer(Answered.RECORDED, choice, defaulted, case.order_ref)


def _case_of(uow: UnitOfWork, merchant: Merchant, decision: Decision) -> Case:
    if decision.merchant_id != merchant.id:
        raise LinkNotValid("this decision link is not valid")
    case = uow.cases.get(merchant.id, decision.case_id)
    if case is None:
        raise LinkNotValid("this decision link is not valid")
    return case


def _stored_answer(
    uow: UnitOfWork, merchant: Merchant, decision: Decision, ref: str
) -> Answer | None:
    history = uow.events.history(merchant.id, [ref]).get(ref, [])
    event = next((e for e in history if e.id == decision.event_id), None)
    if event is None:
        return None
    choice = event.data.get("choice")
    return Answer(
        Answered.ALREADY,
        str(choice) if choice is not None else None,
        event.data.get("defaulted") is True,
        ref,
    )


def _reply_event(
    decision: Decision, ref: str, choice: str, defaulted: bool, now: datetime
) -> CanonicalEvent:
    data: dict[str, Any] = {"choice": choice, "decision": decision.id}
    if defaulted:
        data["defaulted"] = True
    draft = CanonicalEvent(
        id=decision.event_id,
        source=EventSource.DESK,
        type=EventType.CUSTOMER_REPLIED,
        occurred_at=decision.expires_at if defaulted else now,
        order=OrderFacts(ref=ref),
        data=data,
    )
    return parse_event(event_to_dict(draft))


# -- the default's timer -------------------------------------------------------------------------


def apply_default(uow: UnitOfWork, job: Job, now: datetime) -> None:
    """``decision.default``: the window closed; without an answer the default counts."""
    merchant = uow.merchants.by_id(job.merchant_id)
    if merchant is None:
        raise NotFound(f"merchant {job.merchant_id} of job {job.id} is gone")
    p = job.payload
    decision = Decision(
        merchant_id=merchant.id,
        case_id=int(p["case_id"]),
        id=str(p["decision"]),
        choices=tuple(str(choice) for choice in p["choices"]),
        default=str(p["default"]),
        expires_at=datetime.fromisoformat(str(p["expires_at"])),
    )
    try:
        answer_decision(
            uow,
            merchant=merchant,
            decision=decision,
            choice=decision.default,
            now=now,
            defaulted=True,
        )
    except LinkNotValid:
        log.info("decision default: the case is gone", case_id=decision.case_id)
