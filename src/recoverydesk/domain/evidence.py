"""The chargeback evidence pack (F11, chargeback prevention): what the desk knows about a
disputed order, put in the text fields of Stripe's dispute evidence. Pure (standard library
only); the playbook step that stages it on the dispute is ``services.evidence_pack``.

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
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from recoverydesk.domain.cases import Case, Category, TimelineEntry
from recoverydesk.domain.events import CanonicalEvent, EventType
from recoverydesk.domain.evidence_story import (
    AVS_KEYS,
    CVC_KEYS,
    card_checks,
    checks_passed,
    clip,
    communication,
    order_fields,
    order_story,
)
from recoverydesk.domain.orders import OrderView

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
        due_by=as_moment(facts.get("due_by")),
        dispute_id=_text(data.get("dispute_id")),
    )


def _text(value: object) -> str | None:
    return str(value) if value not in (None, "") else None


def as_moment(value: object) -> datetime | None:
    """A stored moment (a datetime or ISO text) in aware UTC; None when there is none."""
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
    talk = communication(ordered, [*timeline, *case.pending])
    checks = card_checks(ordered)
    found = {**order_fields(order, ordered), **_policy_fields(policies)}
    found |= {k: v for k, v in (statements or {}).items() if k in STRIPE_TEXT_FIELDS and v}
    wanted = {*needs.required, *needs.useful}
    chosen = {k: v for k, v in found.items() if k in wanted and k != SUMMARY}
    story = order_story(order, ordered, checks, talk)
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
    if checks_passed(checks, AVS_KEYS):
        proofs.add(AVS_CHECK)
    if checks_passed(checks, CVC_KEYS):
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
    clipped = {name: clip(text, shares[name]) for name, text in texts.items()}
    return {name: text for name, text in clipped.items() if text}


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
