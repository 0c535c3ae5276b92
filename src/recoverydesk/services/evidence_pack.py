"""The chargeback evidence pack (F11, chargeback prevention): what the desk knows about a
disputed order, put in the text fields of Stripe's dispute evidence, and the playbook step
(``evidence_pack``) that stages it on the dispute.

``assemble_evidence`` is pure: from the order 360, the order's events, the case (and its
timeline) and the merchant's policy texts it fills Stripe's evidence fields (``fields``, Stripe's
names, text only: the file fields such as ``customer_communication`` or ``receipt`` take
uploaded files, which the desk does not send), writes ``uncategorized_text`` as a short summary
of the order's story (placed, paid, shipped with tracking, carrier scans, delivered, messages
with the customer) and judges the pack against the dispute's reason (``REASON_NEEDS``):
``missing`` names the required proofs the desk could not fill, ``strength`` says how well the
pack answers the reason (strong: nothing missing; weak: more than half missing; else partial).

A required proof is a Stripe field name, or one of the proofs Stripe takes only as text inside
``uncategorized_text``: ``avs_check`` / ``cvc_check`` (the card's address and security-code
checks passed, from the payment events' data), ``delivery_date`` (a carrier's delivery scan) and
``customer_communication`` (messages with the customer on file). Fields that neither the
reason's required nor its useful proofs name are left out: the bank reads what answers the claim.

Text stays within Stripe's limits: at most ``FIELD_CHARS`` per field and ``TOTAL_CHARS`` for the
whole pack, shared fairly (short fields stay whole; long policy texts and the summary share the
rest and are clipped with an ellipsis).

The step reads the merchant's policy texts from its ``params.policies`` (else the policy's
``policies``), a person's texts for Stripe's fields from ``params.statements``, and the case's
stored timeline from a case store that reads one (``TimelineReader``: the ``CaseStore`` port has
no timeline read).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, Protocol, runtime_checkable

from recoverydesk.domain.cases import Case, Category, TimelineEntry
from recoverydesk.domain.events import CanonicalEvent, EventType
from recoverydesk.domain.orders import OrderView
from recoverydesk.services.playbook_kinds import OutsideCall, StepContext, StepOutcome

Strength = Literal["strong", "partial", "weak"]

# Stripe's Update Dispute evidence fields that take text (its file fields are not sent).
_TEXT_FIELD_NAMES = (
    "access_activity_log billing_address cancellation_policy_disclosure cancellation_rebuttal"
    " customer_email_address customer_name customer_purchase_ip duplicate_charge_explanation"
    " duplicate_charge_id product_description refund_policy_disclosure"
    " refund_refusal_explanation service_date shipping_address shipping_carrier shipping_date"
    " shipping_tracking_number uncategorized_text"
)
STRIPE_TEXT_FIELDS = frozenset(_TEXT_FIELD_NAMES.split())
FIELD_CHARS = 20_000  # Stripe's limit of one long text field
TOTAL_CHARS = 20_000  # the desk's budget for all text of one pack (Stripe's is wider)
SUMMARY = "uncategorized_text"

# Proofs Stripe has no text field for: they are told in the summary.
AVS_CHECK, CVC_CHECK = "avs_check", "cvc_check"
DELIVERY_DATE, CUSTOMER_COMMUNICATION = "delivery_date", "customer_communication"


@dataclass(frozen=True, slots=True)
class ReasonNeeds:
    """What answers one dispute reason: the proofs the bank expects, and those that help."""

    required: tuple[str, ...]
    useful: tuple[str, ...] = ()


_SHIPPING = "shipping_address shipping_carrier shipping_tracking_number shipping_date"
_IDENTITY = "customer_name customer_email_address"


def _needs(required: str, useful: str) -> ReasonNeeds:
    return ReasonNeeds(tuple(required.split()), tuple(useful.split()))


# Stripe's dispute reasons (``dispute.reason``), for physical goods; any other reason is general.
REASON_NEEDS: dict[str, ReasonNeeds] = {
    "fraudulent": _needs(
        "product_description customer_email_address shipping_address shipping_tracking_number"
        f" {AVS_CHECK} {CVC_CHECK}",
        "customer_name billing_address customer_purchase_ip shipping_carrier shipping_date"
        f" {DELIVERY_DATE} {CUSTOMER_COMMUNICATION} access_activity_log",
    ),
    "product_not_received": _needs(
        f"product_description {_SHIPPING} {DELIVERY_DATE}",
        f"{_IDENTITY} {CUSTOMER_COMMUNICATION} refund_policy_disclosure",
    ),
    "product_unacceptable": _needs(
        f"product_description refund_policy_disclosure {DELIVERY_DATE} {CUSTOMER_COMMUNICATION}",
        f"{_IDENTITY} {_SHIPPING} refund_refusal_explanation",
    ),
    "subscription_canceled": _needs(
        "product_description cancellation_policy_disclosure cancellation_rebuttal"
        f" {CUSTOMER_COMMUNICATION}",
        f"{_IDENTITY} service_date refund_policy_disclosure {_SHIPPING} {DELIVERY_DATE}",
    ),
    "duplicate": _needs(
        "product_description duplicate_charge_explanation",
        f"duplicate_charge_id {_IDENTITY} {_SHIPPING} {DELIVERY_DATE}",
    ),
    "credit_not_processed": _needs(
        "product_description refund_policy_disclosure refund_refusal_explanation",
        f"{_IDENTITY} cancellation_policy_disclosure {_SHIPPING} {DELIVERY_DATE}"
        f" {CUSTOMER_COMMUNICATION}",
    ),
    "unrecognized": _needs(
        f"product_description {_IDENTITY} shipping_address",
        f"billing_address customer_purchase_ip {_SHIPPING} {DELIVERY_DATE} {AVS_CHECK}"
        f" {CVC_CHECK} {CUSTOMER_COMMUNICATION}",
    ),
    "general": _needs(
        "product_description customer_email_address",
        f"customer_name {_SHIPPING} {DELIVERY_DATE} {CUSTOMER_COMMUNICATION}"
        " refund_policy_disclosure cancellation_policy_disclosure",
    ),
}


def needs_of(reason: str | None) -> ReasonNeeds:
    return REASON_NEEDS.get((reason or "").strip().lower(), REASON_NEEDS["general"])


@dataclass(frozen=True, slots=True)
class Dispute:
    """The dispute a chargeback case answers, from its opening event and the case's facts."""

    reason: str | None
    due_by: datetime | None
    dispute_id: str | None = None


@dataclass(frozen=True, slots=True)
class EvidencePack:
    reason: str  # the dispute's reason as given ("general" when none)
    fields: dict[str, str]  # Stripe's evidence field -> text, within the limits
    missing: list[str]  # the reason's required proofs the desk could not fill
    strength: Strength
    summary: str  # = fields["uncategorized_text"]
    due_by: datetime | None
    communication: str = ""  # the messages with the customer (also in the summary)
    dispute_id: str | None = None

    @property
    def submit_by(self) -> datetime | None:
        """The desk's own target (TRIAGE.md): evidence in two days before the deadline."""
        return self.due_by - timedelta(days=2) if self.due_by else None


# -- the dispute ---------------------------------------------------------------------------------


def find_dispute(case: Case, events: Sequence[CanonicalEvent]) -> Dispute | None:
    """The case's dispute: its ``dispute.opened`` event (the latest of the order's when the case
    names none), else the facts a chargeback case kept (``due_by``); None when there is none.
    The event's facts win over the case's (a case opened by an early fraud warning keeps that
    warning's reason)."""
    opened = [e for e in events if e.type is EventType.DISPUTE_OPENED]
    mine = [e for e in opened if e.id in case.event_ids]
    event = max(mine or opened, key=lambda e: e.sort_key, default=None)
    if event is None and not (case.category == Category.CHARGEBACK and case.data.get("due_by")):
        return None
    data: Mapping[str, Any] = event.data if event is not None else {}
    facts = {**case.data, **{k: v for k, v in data.items() if v not in (None, "")}}
    return Dispute(
        reason=_text(facts.get("reason")),
        due_by=_moment(facts.get("due_by")),
        dispute_id=_text(data.get("dispute_id")),
    )


def _text(value: object) -> str | None:
    return str(value) if value not in (None, "") else None


def _moment(value: object) -> datetime | None:
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, str) and value:
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return None
    else:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# -- the pack ------------------------------------------------------------------------------------


def assemble_evidence(
    *,
    order: OrderView,
    events: Sequence[CanonicalEvent],
    case: Case,
    policies: Mapping[str, str],
    reason: str | None,
    statements: Mapping[str, str] | None = None,
    timeline: Sequence[TimelineEntry] = (),
) -> EvidencePack:
    """The evidence pack for the case's dispute. ``policies``: the merchant's policy texts
    (``refund`` / ``cancellation``, or Stripe's ``*_policy_disclosure`` names); ``statements``:
    texts a person wrote for Stripe's fields (``cancellation_rebuttal`` ...), which win over the
    desk's; ``timeline``: the case's stored timeline (its unsaved entries are read too)."""
    ordered = sorted(events, key=lambda e: e.sort_key)
    dispute = find_dispute(case, ordered)
    needs = needs_of(reason)
    talk = _communication(ordered, [*timeline, *case.pending])
    checks = _card_checks(ordered)
    found = {**_order_fields(order, ordered), **_policy_fields(policies)}
    found |= {k: v for k, v in (statements or {}).items() if k in STRIPE_TEXT_FIELDS and v}
    wanted = {*needs.required, *needs.useful}
    chosen = {k: v for k, v in found.items() if k in wanted and k != SUMMARY}
    story = _story(order, ordered, checks, talk)
    note = (statements or {}).get(SUMMARY)
    chosen[SUMMARY] = f"{note}\n\n{story}" if note else story
    fields = _fit(chosen)
    proofs = set(fields) | _proofs(order, checks, talk)
    missing = [name for name in needs.required if name not in proofs]
    return EvidencePack(
        reason=reason or "general",
        fields=fields,
        missing=missing,
        strength=_strength(needs, missing),
        summary=fields.get(SUMMARY, ""),
        due_by=dispute.due_by if dispute else None,
        communication="\n".join(talk),
        dispute_id=dispute.dispute_id if dispute else None,
    )


def _strength(needs: ReasonNeeds, missing: Sequence[str]) -> Strength:
    if not missing:
        return "strong"
    return "weak" if len(missing) * 2 > len(needs.required) else "partial"


def _proofs(order: OrderView, checks: Mapping[str, str], talk: Sequence[str]) -> set[str]:
    proofs = set()
    if _passed(checks, _AVS_KEYS):
        proofs.add(AVS_CHECK)
    if _passed(checks, _CVC_KEYS):
        proofs.add(CVC_CHECK)
    if "delivered" in order.fulfillment_times:
        proofs.add(DELIVERY_DATE)
    if talk:
        proofs.add(CUSTOMER_COMMUNICATION)
    return proofs


def _fit(fields: Mapping[str, str]) -> dict[str, str]:
    """Each field within ``FIELD_CHARS`` and all within ``TOTAL_CHARS``, the budget shared
    fairly: short fields stay whole, the long ones share what is left (clipped with "…")."""
    texts = {name: text.strip()[:FIELD_CHARS] for name, text in fields.items() if text.strip()}
    shares: dict[str, int] = {}
    budget, left = TOTAL_CHARS, dict(texts)
    while left:
        fair = budget // len(left)
        whole = {name: text for name, text in left.items() if len(text) <= fair}
        if not whole:
            shares |= dict.fromkeys(left, fair)
            break
        for name, text in whole.items():
            shares[name], budget = len(text), budget - len(text)
            del left[name]
    clipped = {name: _clip(text, shares[name]) for name, text in texts.items()}
    return {name: text for name, text in clipped.items() if text}


def _clip(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: max(limit - 1, 0)].rstrip() + "…" if limit > 1 else ""


_POLICY_NAMES = {
    **dict.fromkeys(("refund", "refund_policy"), "refund_policy_disclosure"),
    **dict.fromkeys(("cancellation", "cancellation_policy"), "cancellation_policy_disclosure"),
    **{name: name for name in ("refund_policy_disclosure", "cancellation_policy_disclosure")},
}


def _policy_fields(policies: Mapping[str, str]) -> dict[str, str]:
    return {
        _POLICY_NAMES[name]: str(text)
        for name, text in policies.items()
        if name in _POLICY_NAMES and str(text or "").strip()
    }


# -- what the order tells ------------------------------------------------------------------------


def _order_fields(order: OrderView, events: Sequence[CanonicalEvent]) -> dict[str, str]:
    address = _address(order.shipping_address or {})
    shipped = order.fulfillment_times.get("shipped")
    values = {
        "product_description": _products(order),
        "customer_email_address": order.customer_email,
        "customer_name": _name(order.shipping_address or {}),
        "customer_purchase_ip": _purchase_ip(events),
        "shipping_address": address,
        "shipping_carrier": ", ".join(_carriers(order, events)),
        "shipping_tracking_number": ", ".join(order.tracking),
        "shipping_date": _day(shipped) if shipped and order.shipped else None,
    }
    return {k: v for k, v in values.items() if v}


def _products(order: OrderView) -> str | None:
    lines = [
        f"{line.qty or 1} x {line.sku}"
        + (f" at {line.price} {order.currency or ''}".rstrip() if line.price is not None else "")
        for line in order.lines.values()
        if not line.cancelled
    ]
    total = f"order {order.ref}, total {order.value} {order.currency or ''}".rstrip()
    if not lines:
        return total if order.value is not None else None
    return "; ".join(lines) + (f" ({total})" if order.value is not None else "")


_ADDRESS_PARTS = (
    ("company",),
    ("address1", "address_1", "street", "addressline1", "line1"),
    ("address2", "address_2", "addressline2", "line2"),
    ("city",),
    ("province_code", "province", "state", "region", "stateorregion"),
    ("zip", "postcode", "postalcode", "postal_code"),
    ("country_code", "country", "country_id", "countrycode"),
)


def _address(address: Mapping[str, str]) -> str | None:
    lowered = {k.lower(): str(v).strip() for k, v in address.items() if str(v).strip()}
    parts = [_name(address)] + [
        next((lowered[k] for k in keys if k in lowered), None) for keys in _ADDRESS_PARTS
    ]
    found = [part for part in parts if part]
    return ", ".join(found) if len(found) > 1 else None


def _name(address: Mapping[str, str]) -> str | None:
    lowered = {k.lower(): str(v).strip() for k, v in address.items() if str(v).strip()}
    if lowered.get("name"):
        return lowered["name"]
    first = lowered.get("first_name") or lowered.get("firstname")
    last = lowered.get("last_name") or lowered.get("lastname")
    return " ".join(p for p in (first, last) if p) or None


_CARRIER_NAMES = {"ups": "UPS", "usps": "USPS", "fedex": "FedEx", "dhl": "DHL", "dpd": "DPD"}
_CARRIER_EVENTS = frozenset(
    {EventType.FULFILLMENT_SHIPPED, EventType.FULFILLMENT_DELIVERED, EventType.DELIVERY_EXCEPTION}
)


def _carriers(order: OrderView, events: Sequence[CanonicalEvent]) -> list[str]:
    slugs = [str(e.data["carrier"]).lower() for e in events if e.data.get("carrier")]
    slugs += [order.carrier] if order.carrier else []
    return [_CARRIER_NAMES.get(s, s) for s in dict.fromkeys(slugs)]


def _purchase_ip(events: Sequence[CanonicalEvent]) -> str | None:
    for event in events:
        for key in ("customer_ip", "browser_ip", "client_ip"):
            if event.data.get(key):
                return str(event.data[key])
    return None


_PAYMENT_EVENTS = frozenset({EventType.PAYMENT_AUTHORIZED, EventType.PAYMENT_CAPTURED})
_AVS_KEYS = ("avs_check", "avs_result", "address_line1_check", "address_postal_code_check")
_CVC_KEYS = ("cvc_check", "cvc_result", "cvv_result")
_PASSED = frozenset({"pass", "passed", "match", "matched", "y", "m"})


def _card_checks(events: Sequence[CanonicalEvent]) -> dict[str, str]:
    """The card checks the payment events reported (in ``data`` or ``data.checks``, as
    Stripe's ``payment_method_details.card.checks`` has them): check -> result, latest wins."""
    found: dict[str, str] = {}
    for event in events:
        if event.type not in _PAYMENT_EVENTS:
            continue
        nested = event.data.get("checks")
        for source in (event.data, nested if isinstance(nested, Mapping) else {}):
            for key in (*_AVS_KEYS, *_CVC_KEYS):
                if source.get(key) not in (None, ""):
                    found[key] = str(source[key])
    return found


def _passed(checks: Mapping[str, str], keys: Sequence[str]) -> bool:
    results = [checks[k].strip().lower() for k in keys if k in checks]
    return bool(results) and all(r in _PASSED for r in results)


# -- the story -----------------------------------------------------------------------------------


def _story(
    order: OrderView,
    events: Sequence[CanonicalEvent],
    checks: Mapping[str, str],
    talk: Sequence[str],
) -> str:
    """The summary a bank reads: the order's timeline in plain sentences."""
    lines = [_placed(order), *_paid(order, events, checks)]
    lines += _shipped(order, _carriers(order, events))
    scans = [_scan(e) for e in events if e.type in _CARRIER_EVENTS]
    if scans:
        lines += ["Carrier scans:", *(f"- {s}" for s in scans)]
    if talk:
        lines += ["Communication with the customer:", *(f"- {t}" for t in talk)]
    return "\n".join(line for line in lines if line)


def _placed(order: OrderView) -> str:
    when = f" on {_at(order.placed_at)}" if order.placed_at else ""
    value = f" for {_money(order.value, order.currency)}" if order.value is not None else ""
    who = f" by {order.customer_email}" if order.customer_email else ""
    return f"Order {order.ref} was placed{when}{value}{who}."


_PAID = ((EventType.PAYMENT_AUTHORIZED, "authorized"), (EventType.PAYMENT_CAPTURED, "captured"))


def _paid(
    order: OrderView, events: Sequence[CanonicalEvent], checks: Mapping[str, str]
) -> list[str]:
    said = []
    for kind, verb in _PAID:
        first = next((e for e in events if e.type is kind), None)
        if first is not None:
            said.append(f"Payment {verb} on {_at(first.occurred_at)}.")
    if checks:
        said.append("Card checks: " + ", ".join(f"{k}: {v}" for k, v in checks.items()) + ".")
    if order.payment.refunded:
        said.append(f"Refunded so far: {_money(order.payment.refunded, order.currency)}.")
    return said


def _shipped(order: OrderView, carriers: Sequence[str]) -> list[str]:
    times = order.fulfillment_times
    if order.cancelled:
        when = f" on {_at(order.cancelled_at)}" if order.cancelled_at else ""
        return [f"The order was cancelled{when}."]
    if not order.shipped:
        return ["The order has not shipped."]
    when = f" on {_at(times['shipped'])}" if "shipped" in times else ""
    by = f" by {', '.join(carriers)}" if carriers else ""
    tracking = f", tracking {', '.join(order.tracking)}" if order.tracking else ""
    where = _address(order.shipping_address or {})
    said = [f"Shipped{when}{by}{tracking}" + (f" to {where}" if where else "") + "."]
    if "delivered" in times:
        said.append(f"Delivered on {_at(times['delivered'])}.")
    return said


def _money(amount: object, currency: str | None) -> str:
    return f"{amount} {currency}" if currency else str(amount)


_SCAN_WORDS = {
    EventType.FULFILLMENT_SHIPPED: "in transit",
    EventType.FULFILLMENT_DELIVERED: "delivered",
    EventType.DELIVERY_EXCEPTION: "delivery exception",
}


def _scan(event: CanonicalEvent) -> str:
    what = _SCAN_WORDS[event.type]
    if event.type is EventType.DELIVERY_EXCEPTION and event.data.get("kind"):
        what += f" ({event.data['kind']})"
    detail = event.data.get("message") or event.data.get("status_detail")
    tracking = f" [{event.data['tracking']}]" if event.data.get("tracking") else ""
    return f"{_at(event.occurred_at)}: {what}{tracking}" + (f": {detail}" if detail else "")


_MESSAGE_KINDS = frozenset({"decision_offered", "message_sent"})


def _communication(
    events: Sequence[CanonicalEvent], timeline: Sequence[TimelineEntry]
) -> list[str]:
    """The messages between the merchant and the customer, oldest first: tickets, the
    customer's replies and the messages the desk sent (internal notes are left out)."""
    said = [(e.occurred_at, _said(e)) for e in events if e.type in _TALK_EVENTS]
    for entry in timeline:
        template = entry.detail.get("template")
        if entry.kind in _MESSAGE_KINDS or (template and entry.kind != "note"):
            said.append((entry.at, f"merchant sent the message {template or entry.kind!r}"))
    return [f"{_at(at)} {text}" for at, text in sorted(said, key=lambda pair: pair[0])]


_TALK_EVENTS = frozenset({EventType.TICKET_CREATED, EventType.CUSTOMER_REPLIED})


def _said(event: CanonicalEvent) -> str:
    data = event.data
    if event.type is EventType.TICKET_CREATED:
        ticket = f" {data['ticket_id']}" if data.get("ticket_id") else ""
        return f"ticket{ticket} opened" + (f": {data['subject']}" if data.get("subject") else "")
    if data.get("message"):
        return f"customer wrote: {_clip(str(data['message']), 1000)}"
    return f"customer chose {data['choice']}" if data.get("choice") else "customer replied"


def _at(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _day(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d")


# -- the playbook step ---------------------------------------------------------------------------


@runtime_checkable
class TimelineReader(Protocol):
    """A case store that reads a case's stored timeline (the SQL one does)."""

    def timeline(self, merchant_id: int, case_id: int) -> list[dict[str, Any]]: ...


def evidence_step(ctx: StepContext) -> StepOutcome:
    """The ``evidence_pack`` step: the pack staged on the dispute (``payments.dispute_evidence``,
    sent to the card network only when the step's ``submit`` is true). Blocked when the case has
    no dispute, or its response deadline has passed."""
    ref = ctx.order.ref
    events = ctx.uow.events.history(ctx.merchant.id, [ref]).get(ref, [])
    dispute = find_dispute(ctx.case, events)
    if dispute is None:
        return StepOutcome(blocked="no dispute on this case")
    if dispute.due_by is not None and ctx.now > dispute.due_by:
        late = {"due_by": dispute.due_by.isoformat()}
        return StepOutcome(facts=late, blocked="past the response deadline")
    pack = assemble_evidence(
        order=ctx.order,
        events=events,
        case=ctx.case,
        policies=_texts(ctx.params.get("policies") or getattr(ctx.policy, "policies", None)),
        reason=dispute.reason,
        statements=_texts(ctx.params.get("statements")),
        timeline=_stored_timeline(ctx),
    )
    submit = ctx.params.get("submit", False) is True
    params: dict[str, Any] = {"evidence": dict(pack.fields), "submit": submit}
    if pack.dispute_id:
        params["dispute"] = pack.dispute_id
    return StepOutcome(
        calls=(OutsideCall("payments", "dispute_evidence", params, key_suffix=":evidence"),),
        facts=_facts(pack, submit),
    )


def _facts(pack: EvidencePack, submit: bool) -> dict[str, Any]:
    return {
        "reason": pack.reason,
        "strength": pack.strength,
        "missing": list(pack.missing),
        "due_by": pack.due_by.isoformat() if pack.due_by else None,
        "submit_by": pack.submit_by.isoformat() if pack.submit_by else None,
        "fields": sorted(pack.fields),
        "submit": submit,
        "dispute": pack.dispute_id,
    }


def _texts(value: object) -> dict[str, str]:
    if not isinstance(value, Mapping):
        return {}
    return {str(k): str(v) for k, v in value.items() if isinstance(v, str) and v.strip()}


def _stored_timeline(ctx: StepContext) -> list[TimelineEntry]:
    store = ctx.uow.cases
    if ctx.case.id is None or not isinstance(store, TimelineReader):
        return []
    return [
        TimelineEntry(
            at=_moment(row.get("at")) or ctx.case.opened_at,
            kind=str(row.get("kind") or ""),
            actor=str(row.get("actor") or ""),
            detail=dict(row.get("detail") or {}),
            event_id=row.get("event_id"),
        )
        for row in store.timeline(ctx.merchant.id, ctx.case.id)
    ]
