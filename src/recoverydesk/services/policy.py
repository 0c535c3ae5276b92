"""A merchant's triage policy: rules, queues, members, SLA table and escalation path.

Rules are written in CEL (the Common Expression Language, evaluated by the maintained
``common-expression-language`` package): no ``eval``, no parser of our own. Each rule has a
``name`` (it appears on the case timeline), a ``when`` condition and a ``then`` result. The
variables a condition may use are ``case``, ``order``, ``event``, ``customer`` and
``thresholds`` (see ``services.triage.rule_context``). Money in a condition is a number for
comparison only; the desk stores and computes money as ``Decimal``.

The defaults are the ones of TRIAGE.md; a merchant's file replaces any part it names.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

import cel
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from recoverydesk.domain.cases import Category, Outcome, ReasonCode
from recoverydesk.domain.events import EventType
from recoverydesk.domain.root_causes import DEFAULT_ROOT_CAUSES, RootCause
from recoverydesk.domain.stopship import RefundOn
from recoverydesk.domain.triage import LOSS_LIKELIHOOD, Classification, Priority
from recoverydesk.services.address_check import AddressRules
from recoverydesk.services.calendars import DEFAULT_CALENDAR_SPEC, CalendarSpec
from recoverydesk.services.concessions import ConcessionPolicy
from recoverydesk.services.messages_compose import (
    DEFAULT_TEMPLATES,
    Language,
    MessageTemplate,
    Tone,
)
from recoverydesk.services.playbook_config import PlaybookSpec, check_playbooks
from recoverydesk.services.playbook_defaults import DEFAULT_PLAYBOOKS

RULE_VARIABLES = frozenset({"case", "order", "event", "customer", "thresholds"})
CODE = r"^[a-z][a-z0-9_]{0,59}$"
Code = Annotated[str, Field(pattern=CODE)]


def _must_be(value: str, allowed: set[str], where: str) -> None:
    if value not in allowed:
        shown = ", ".join(sorted(allowed)) or "(none defined)"
        raise ValueError(f"{where}: {value!r} is not one of {shown}")


def _unique(named: list[tuple[str, str]], what: str) -> None:
    """Refuse a name given twice; the message starts with the path of the second one, so a
    file's error points at its line."""
    seen: set[str] = set()
    for path, name in named:
        if name in seen:
            raise ValueError(f"{path}: {what} {name!r} is defined twice")
        seen.add(name)


def _paths(part: str, items: tuple[Any, ...]) -> list[tuple[str, str]]:
    return [(f"{part}.{index}.name", item.name) for index, item in enumerate(items)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Rule(Strict):
    name: Code
    when: str
    then: str

    @field_validator("when")
    @classmethod
    def _valid_cel(cls, text: str) -> str:
        return cel_condition(text)


def cel_condition(text: str) -> str:
    """A condition that compiles as CEL and uses only the variables a rule is given."""
    try:
        program = cel.compile(text)
    except ValueError as error:
        first = str(error).splitlines()[0] if str(error) else "syntax error"
        raise ValueError(f"not a valid CEL condition: {first}") from None
    unknown = set(program.variables()) - RULE_VARIABLES
    if unknown:
        known = ", ".join(sorted(RULE_VARIABLES))
        raise ValueError(f"unknown variable {sorted(unknown)[0]!r} (use {known})")
    return text


def _rule(name: str, when: str, then: str) -> Rule:
    return Rule(name=name, when=when, then=then)


_PRE = '["payment_failed", "fraud_hold", "address_invalid", "inventory_mismatch"]'

DEFAULT_PRIORITY_RULES = (
    _rule("high_value", "order.value >= thresholds.high_value", "P1"),
    _rule(
        "suspected_fraud",
        'case.category == "fraud_hold" || case.hold_type == "fraud"'
        " || (has(event.data.fraud_suspected) && event.data.fraud_suspected == true)",
        "P1",
    ),
    _rule("vip_customer", 'customer.tier == "vip"', "P1"),
    _rule(
        "shipped_but_refund_requested",
        'order.shipped && (case.category == "refund_request"'
        ' || (case.category == "change_request" && event.type == "cancel.requested"))',
        "P1",
    ),
    _rule(
        "carrier_intercept_needed",
        'order.shipped && !order.delivered && case.category == "change_request"',
        "P1",
    ),
    _rule(
        "ship_cutoff_within_2h",
        "order.has_ship_by && !order.shipped && !order.cancelled && order.hours_to_ship_by < 2.0",
        "P1",
    ),
    _rule(
        "picked_waiting_for_warehouse",
        'case.category in ["change_request", "wms_exception"]'
        ' && order.fulfillment in ["picking", "packed"]',
        "P2",
    ),
    _rule("address_fix", 'case.category == "address_invalid"', "P2"),
    _rule("split_shipment", 'case.category == "split_shipment"', "P2"),
    _rule("delivery_exception", 'case.category == "delivery_exception"', "P2"),
    _rule(
        "change_on_released_order",
        'case.category == "change_request" && order.fulfillment == "released"',
        "P2",
    ),
    _rule("chargeback_deadline", 'case.category == "chargeback"', "P2"),
    _rule("drift_between_systems", 'case.category == "drift"', "P2"),
)

DEFAULT_CLASSIFICATION_RULES = (
    _rule(
        "confirmed_fraud",
        'case.category == "fraud_hold" && has(event.data.fraud_confirmed)'
        " && event.data.fraud_confirmed == true",
        "must_cancel",
    ),
    _rule(
        "payment_not_recovered",
        'case.category == "payment_failed" && case.age_hours >= thresholds.payment_recovery_hours',
        "must_cancel",
    ),
    _rule(
        "discontinued_without_substitute",
        'case.category == "inventory_mismatch" && has(event.data.discontinued)'
        " && event.data.discontinued == true",
        "must_cancel",
    ),
    _rule(
        "options_for_the_customer",
        'case.category in ["inventory_mismatch", "split_shipment", "change_request"]',
        "needs_customer_decision",
    ),
    _rule(
        "address_needs_confirmation",
        'case.category == "address_invalid" && !has(event.data.suggestion)',
        "needs_customer_decision",
    ),
    _rule(
        "replacement_or_refund",
        'case.category == "delivery_exception"'
        ' && has(event.data.kind) && event.data.kind in ["damaged", "lost"]',
        "needs_customer_decision",
    ),
)


class Rules(Strict):
    priority: tuple[Rule, ...] = DEFAULT_PRIORITY_RULES
    priority_default: Priority = Priority.P3
    classification: tuple[Rule, ...] = DEFAULT_CLASSIFICATION_RULES
    classification_default: Classification = Classification.FIXABLE_NOW
    routing: tuple[Rule, ...] = ()  # first match wins; else the queue that lists the category
    # A merchant's own priority and classification rules come first, then the defaults (those
    # of the same name are replaced); ``include_defaults: false`` keeps only the merchant's own.
    include_defaults: bool = True

    def effective_priority(self) -> tuple[Rule, ...]:
        return self._with_defaults(self.priority, DEFAULT_PRIORITY_RULES)

    def effective_classification(self) -> tuple[Rule, ...]:
        return self._with_defaults(self.classification, DEFAULT_CLASSIFICATION_RULES)

    def _with_defaults(self, own: tuple[Rule, ...], defaults: tuple[Rule, ...]) -> tuple[Rule, ...]:
        if not self.include_defaults:
            return own
        names = {rule.name for rule in own}
        return own + tuple(rule for rule in defaults if rule.name not in names)

    @model_validator(mode="after")
    def _results(self) -> Rules:
        for index, rule in enumerate(self.priority):
            _must_be(rule.then, {p.value for p in Priority}, f"priority.{index}.then")
        for index, rule in enumerate(self.classification):
            _must_be(rule.then, {c.value for c in Classification}, f"classification.{index}.then")
        parts = ("priority", "classification", "routing")
        _unique([pair for part in parts for pair in _paths(part, getattr(self, part))], "rule")
        return self


class Opener(Strict):
    """A merchant's own way to open a case: when ``when`` holds for an event (over ``event``,
    ``order``, ``customer`` and ``thresholds``), a case of ``category`` opens; an event whose
    type is in ``closed_by`` confirms its outcome and closes it."""

    name: Code
    when: str
    category: Code
    closed_by: dict[str, Outcome] = Field(default_factory=dict)

    @field_validator("when")
    @classmethod
    def _valid_cel(cls, text: str) -> str:
        return cel_condition(text)

    @field_validator("closed_by")
    @classmethod
    def _known_types(cls, value: dict[str, Outcome]) -> dict[str, Outcome]:
        known = {t.value for t in EventType}
        for event_type in value:
            _must_be(event_type, known, f"closed_by.{event_type}")
        return value


class Assignment(StrEnum):
    ROUND_ROBIN = "round_robin"
    LOAD_BALANCED = "load_balanced"
    NONE = "none"


class Away(Strict):
    start: AwareDatetime = Field(alias="from")
    end: AwareDatetime = Field(alias="to")

    @model_validator(mode="after")
    def _ordered(self) -> Away:
        if self.end <= self.start:
            raise ValueError("'to' must be after 'from'")
        return self


class Member(Strict):
    name: Code
    email: Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")] | None = None
    away: tuple[Away, ...] = ()


class Queue(Strict):
    name: Code
    categories: tuple[Code, ...] = ()
    members: tuple[Code, ...] = ()
    assignment: Assignment = Assignment.ROUND_ROBIN
    reassign_after_first_touch_breach: bool = True


class FirstTouch(Strict):
    P1: timedelta = timedelta(hours=1)
    P2: timedelta = timedelta(hours=4)
    P3: timedelta = timedelta(hours=24)

    def target(self, priority: Priority) -> timedelta:
        value: timedelta = getattr(self, priority.value)
        return value


class Deadline(StrEnum):
    SHIP_BY = "ship_by"
    PROMISED_BY = "promised_by"
    DISPUTE_DUE = "dispute_due"


class QueueSla(Strict):
    first_touch: FirstTouch = FirstTouch()
    resolution_within: timedelta | None = None  # business time, pauses while waiting
    deadline: Deadline | None = None  # the operational clock (never pauses)
    deadline_margin: timedelta = timedelta(0)  # due this long before the deadline


def _flat(hours: int) -> FirstTouch:
    span = timedelta(hours=hours)
    return FirstTouch(P1=span, P2=span, P3=span)


DEFAULT_QUEUES = (
    Queue(
        name="pre_fulfilment",
        categories=(
            "payment_failed",
            "fraud_hold",
            "address_invalid",
            "inventory_mismatch",
            "split_shipment",
            "late_shipment_risk",
            "wms_exception",
        ),
    ),
    Queue(name="cancel_edit", categories=("change_request",)),
    Queue(name="delivery", categories=("delivery_exception",)),
    Queue(name="refunds", categories=("refund_request", "concession_request")),
    Queue(name="chargebacks", categories=("chargeback",)),
    Queue(name="drift", categories=("drift",)),
)

DEFAULT_SLA: dict[str, QueueSla] = {
    "pre_fulfilment": QueueSla(deadline=Deadline.SHIP_BY),
    "cancel_edit": QueueSla(deadline=Deadline.SHIP_BY),
    "delivery": QueueSla(first_touch=_flat(4), resolution_within=timedelta(hours=8)),
    "refunds": QueueSla(first_touch=_flat(24), resolution_within=timedelta(days=2)),
    "chargebacks": QueueSla(
        first_touch=_flat(24), deadline=Deadline.DISPUTE_DUE, deadline_margin=timedelta(days=2)
    ),
    "drift": QueueSla(first_touch=_flat(24), resolution_within=timedelta(days=1)),
}


class Contact(Strict):
    name: str
    email: Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+$")] | None = None
    chat_webhook: Annotated[str, Field(pattern=r"^https?://\S+$")] | None = None


class Escalation(Strict):
    ops_lead: Contact = Contact(name="ops_lead")
    owners: dict[Code, Contact] = Field(
        default_factory=lambda: {
            "warehouse": Contact(name="warehouse"),
            "finance": Contact(name="finance"),
            "fraud": Contact(name="fraud"),
        }
    )
    category_owner: dict[Code, Code] = Field(
        default_factory=lambda: {
            "payment_failed": "finance",
            "refund_request": "finance",
            "concession_request": "finance",
            "chargeback": "finance",
            "fraud_hold": "fraud",
            "inventory_mismatch": "warehouse",
            "split_shipment": "warehouse",
            "late_shipment_risk": "warehouse",
            "wms_exception": "warehouse",
            "change_request": "warehouse",
            "address_invalid": "warehouse",
            "delivery_exception": "warehouse",
            "drift": "finance",
        }
    )
    chat_webhook: Annotated[str, Field(pattern=r"^https?://\S+$")] | None = None

    @model_validator(mode="after")
    def _owners_exist(self) -> Escalation:
        for category, owner in self.category_owner.items():
            if owner not in self.owners:
                raise ValueError(f"category_owner.{category}: no owner named {owner!r} in owners")
        return self


class Marketplace(Strict):
    channels: tuple[str, ...] = ("amazon",)
    reply_within: timedelta = timedelta(hours=24)


class DriftLimits(Strict):
    hold_older_than: dict[str, timedelta] = Field(
        default_factory=lambda: {"default": timedelta(hours=48), "fraud": timedelta(hours=24)}
    )
    stopship_ack_within: timedelta = timedelta(hours=2)
    refund_after_cancel_within: timedelta = timedelta(hours=24)


class StopShipSettings(Strict):
    """The stop-ship workflow (STOPSHIP.md): acknowledgment windows in business hours, how old
    the desk's fulfilment state may be before the 3PL is asked, and what happens when the order
    shipped before the stop."""

    ack_window_picking: timedelta = timedelta(hours=1)
    ack_window_packed: timedelta = timedelta(hours=2)
    state_fresh_for: timedelta = timedelta(minutes=15)
    convert_shipped_to_return: bool = True
    refund_on: RefundOn = RefundOn.RETURN_RECEIVED
    intercept_carriers: tuple[str, ...] = ()

    @field_validator("ack_window_picking", "ack_window_packed", "state_fresh_for")
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be longer than zero")
        return value


class Thresholds(Strict):
    high_value: Annotated[Decimal, Field(ge=0, max_digits=18)] = Decimal("500")
    payment_recovery_hours: Annotated[int, Field(ge=1, le=24 * 60)] = 72
    # How long a card authorization holds (the playbooks' ``authorization_expires`` anchor).
    authorization_valid_for: timedelta = timedelta(days=7)


class CategorySpec(Strict):
    code: Code
    phase: Annotated[str, Field(pattern=r"^(pre-fulfilment|post-fulfilment|any)$")] = "any"
    loss_likelihood: Annotated[Decimal, Field(ge=0, le=1)] = Decimal("0.50")


class Taxonomy(Strict):
    categories: tuple[CategorySpec, ...] = ()  # new categories, or new likelihoods for known ones
    reason_codes: tuple[Code, ...] = ()

    def loss_likelihood(self) -> dict[str, Decimal]:
        table = {str(k): v for k, v in LOSS_LIKELIHOOD.items()}
        table.update({spec.code: spec.loss_likelihood for spec in self.categories})
        return table

    def category_codes(self) -> set[str]:
        return {c.value for c in Category} | {spec.code for spec in self.categories}

    def reason_code_set(self) -> set[str]:
        return {r.value for r in ReasonCode} | set(self.reason_codes)


class RootCauseSpec(Strict):
    """One entry of the root-cause list (F16, ``domain.root_causes``). The first entry whose
    ``categories``, ``reason_codes`` and ``outcomes`` all hold for a case (an empty one always
    does) is the root cause the case closes with. ``owner`` owns the upstream fix: a team or a
    person, free text or a member's name."""

    code: Code
    label: Annotated[str, Field(min_length=1, max_length=200)]
    owner: Annotated[str, Field(min_length=1, max_length=100)]
    categories: tuple[Code, ...] = ()
    reason_codes: tuple[Code, ...] = ()
    outcomes: tuple[Outcome, ...] = ()

    def as_root_cause(self) -> RootCause:
        return RootCause(
            code=self.code,
            label=self.label,
            owner=self.owner,
            categories=frozenset(self.categories),
            reason_codes=frozenset(self.reason_codes),
            outcomes=frozenset(o.value for o in self.outcomes),
        )


def _spec_of(cause: RootCause) -> RootCauseSpec:
    return RootCauseSpec(
        code=cause.code,
        label=cause.label,
        owner=cause.owner,
        categories=tuple(sorted(cause.categories)),
        reason_codes=tuple(sorted(cause.reason_codes)),
        outcomes=tuple(Outcome(o) for o in sorted(cause.outcomes)),
    )


DEFAULT_ROOT_CAUSE_SPECS = tuple(_spec_of(cause) for cause in DEFAULT_ROOT_CAUSES)


class Policy(Strict):
    """The triage part of a merchant's configuration file, with TRIAGE.md's defaults."""

    thresholds: Thresholds = Thresholds()
    taxonomy: Taxonomy = Taxonomy()
    rules: Rules = Rules()
    openers: tuple[Opener, ...] = ()
    members: tuple[Member, ...] = ()
    queues: tuple[Queue, ...] = DEFAULT_QUEUES
    sla: dict[Code, QueueSla] = Field(default_factory=lambda: dict(DEFAULT_SLA))
    calendar: CalendarSpec = DEFAULT_CALENDAR_SPEC
    escalation: Escalation = Escalation()
    marketplace: Marketplace = Marketplace()
    drift: DriftLimits = DriftLimits()
    stopship: StopShipSettings = StopShipSettings()
    # The root-cause list (F16), in matching order; a file that names one replaces the defaults.
    root_causes: tuple[RootCauseSpec, ...] = DEFAULT_ROOT_CAUSE_SPECS
    # Customer messages (``services.messages_compose``): the merchant's own templates by name
    # (each replaces the desk's default of that name), and their default tone and language.
    tone: Tone = Tone.FRIENDLY
    language: Language = "en"
    templates: dict[Code, MessageTemplate] = Field(default_factory=dict)
    # Playbooks (``services.playbook_config``): a file's entry replaces the default of its name.
    playbooks: dict[Code, PlaybookSpec] = Field(default_factory=lambda: dict(DEFAULT_PLAYBOOKS))
    # What the playbooks' own kinds read: the address check's carrier and country rules, the
    # concessions matrix with its monthly budget, and the policy texts a chargeback's evidence
    # pack quotes (refund_policy, cancellation_policy ...).
    address: AddressRules = AddressRules()
    concessions: ConcessionPolicy = ConcessionPolicy()
    policies: dict[Code, str] = Field(default_factory=dict)

    @field_validator("playbooks", mode="after")
    @classmethod
    def _with_default_playbooks(cls, own: dict[str, PlaybookSpec]) -> dict[str, PlaybookSpec]:
        return {**DEFAULT_PLAYBOOKS, **own}

    @model_validator(mode="after")
    def _playbooks_known(self) -> Policy:
        templates = {*DEFAULT_TEMPLATES, *self.templates}
        categories = self.taxonomy.category_codes()
        check_playbooks(self.playbooks, categories=categories, templates=templates)
        return self

    @model_validator(mode="before")
    @classmethod
    def _default_sla_of_own_queues(cls, data: Any) -> Any:
        """Own queues without an ``sla`` section keep the default SLA of the queues they still
        have (not an error about default entries for queues the file dropped)."""
        if not isinstance(data, dict) or "sla" in data:
            return data
        queues = data.get("queues")
        if not isinstance(queues, list | tuple):
            return data
        names = {q.get("name") if isinstance(q, dict) else getattr(q, "name", None) for q in queues}
        return {**data, "sla": {name: sla for name, sla in DEFAULT_SLA.items() if name in names}}

    @model_validator(mode="after")
    def _consistent(self) -> Policy:
        _unique(_paths("queues", self.queues), "queue")
        _unique(_paths("members", self.members), "member")
        names = {q.name for q in self.queues}
        members = {m.name for m in self.members}
        codes = self.taxonomy.category_codes()
        for queue in self.queues:
            for member in queue.members:
                _must_be(member, members, f"queues.{queue.name}.members")
            for category in queue.categories:
                _must_be(category, codes, f"queues.{queue.name}.categories")
        _unique([(f"openers.{i}.name", o.name) for i, o in enumerate(self.openers)], "opener")
        for index, opener in enumerate(self.openers):
            _must_be(opener.category, codes, f"openers.{index}.category")
        for index, rule in enumerate(self.rules.routing):
            _must_be(rule.then, names, f"rules.routing.{index}.then")
        for queue_name in self.sla:
            _must_be(queue_name, names, "sla")
        return self

    @model_validator(mode="after")
    def _root_causes_known(self) -> Policy:
        causes = self.root_causes
        _unique([(f"root_causes.{i}.code", c.code) for i, c in enumerate(causes)], "root cause")
        categories, reasons = self.taxonomy.category_codes(), self.taxonomy.reason_code_set()
        for index, cause in enumerate(causes):
            for category in cause.categories:
                _must_be(category, categories, f"root_causes.{index}.categories")
            for reason in cause.reason_codes:
                _must_be(reason, reasons, f"root_causes.{index}.reason_codes")
        return self

    def root_cause(self, code: str) -> RootCauseSpec | None:
        return next((cause for cause in self.root_causes if cause.code == code), None)

    def queue_for(self, category: str) -> str:
        for queue in self.queues:
            if category in queue.categories:
                return queue.name
        return self.queues[0].name if self.queues else "default"

    def queue(self, name: str) -> Queue | None:
        return next((q for q in self.queues if q.name == name), None)

    def sla_for(self, queue: str) -> QueueSla:
        return self.sla.get(queue) or QueueSla()


def dump(policy: Policy) -> dict[str, Any]:
    return policy.model_dump(mode="json", by_alias=True)
