"""The stop-ship cancellation workflow of STOPSHIP.md (F14), as a pure state machine.

A ``Cancellation`` is one workflow on one order. It never calls anything: ``advance`` looks at
the order 360, the ledger's view of the order's money and what the outside systems answered, and
returns the ``Command`` s to send next. Each command has a deterministic idempotency key and is
recorded before it is sent (``planned``), so calling ``advance`` again never plans it twice,
and a command repeated after a crash is the same call with the same key. ``answered`` records
the outside system's answer; ``observe`` records a warehouse acknowledgment or rejection event.

Stages: ``checking`` (what is the fulfilment state? ask the 3PL when unknown or stale) →
``stopping`` (hold + cancel sent to the 3PL, waiting for the acknowledgment) → ``stopped``
(ERP update, payment action, customer message, in that order) → ``done``. A shipped order goes
to ``converting`` (carrier intercept where the carrier allows it, return authorization, return
instructions) and, when money was captured, ``awaiting_return`` until the return is received
(or at once, by merchant policy) before the refund. No acknowledgment within the window, a
rejection or a refused call puts the workflow in ``exception``: it stays open, the case is
escalated, and the customer is not told anything.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from recoverydesk.domain.cases import ReasonCode
from recoverydesk.domain.errors import InvalidInput, InvalidTransition
from recoverydesk.domain.events import CanonicalEvent, EventType
from recoverydesk.domain.ledger import Balance, EntryKind, intent_key
from recoverydesk.domain.money import ZERO
from recoverydesk.domain.orders import FulfillmentStatus, OrderView

ACTOR = "stopship"
TIMESTAMPS = (
    "requested_at",
    "classified_at",
    "stop_sent_at",
    "stop_acknowledged_at",
    "stop_rejected_at",
    "erp_updated_at",
    "payment_action_at",
    "customer_notified_at",
    "final_outcome_at",
)


class Requester(StrEnum):
    CUSTOMER = "customer"
    OPS = "ops"
    AUTO = "auto"

    @classmethod
    def parse(cls, text: object) -> Requester:
        try:
            return cls(str(text))
        except ValueError:
            raise InvalidInput(
                f"requested_by must be customer, ops or auto, got {text!r}"
            ) from None


class Stage(StrEnum):
    CHECKING = "checking"
    STOPPING = "stopping"
    EXCEPTION = "exception"
    STOPPED = "stopped"
    CONVERTING = "converting"
    AWAITING_RETURN = "awaiting_return"
    DONE = "done"


class FinalOutcome(StrEnum):
    STOPPED = "stopped"
    CONVERTED_TO_RETURN = "converted_to_return"
    CANCELLED_FRAUD = "cancelled_fraud"
    NOT_STOPPED_SHIPPED = "not_stopped_shipped"
    EXCEPTION = "exception"


class Branch(StrEnum):
    """The stop-ship rule that applied, by fulfilment state (STOPSHIP.md step 4)."""

    NOT_RELEASED = "not_released"
    AT_WAREHOUSE = "at_warehouse"  # released or picking, not packed
    PACKED = "packed"
    SHIPPED = "shipped"


class CommandStatus(StrEnum):
    PLANNED = "planned"
    ACCEPTED = "accepted"
    REFUSED = "refused"


class RefundOn(StrEnum):
    RETURN_RECEIVED = "return_received"
    CONVERSION = "conversion"


@dataclass(frozen=True, slots=True)
class StopShipRules:
    """The merchant's stop-ship settings (``stopship`` in its configuration)."""

    ack_window_picking: timedelta = timedelta(hours=1)
    ack_window_packed: timedelta = timedelta(hours=2)
    state_fresh_for: timedelta = timedelta(minutes=15)
    convert_shipped: bool = True
    refund_on: RefundOn = RefundOn.RETURN_RECEIVED
    intercept_carriers: frozenset[str] = frozenset()
    # Adds working time in the merchant's business hours (the acknowledgment window).
    working_add: Callable[[datetime, timedelta], datetime] = lambda start, span: start + span


@dataclass(frozen=True, slots=True)
class Command:
    name: str  # unique within one attempt of the workflow
    system: str  # wms | erp | payments | carrier | helpdesk | email
    action: str  # as actions.json names it
    key: str
    params: dict[str, Any]

    @property
    def is_payment(self) -> bool:
        return self.action in {kind.value for kind in EntryKind}


@dataclass(slots=True)
class Sent:
    """A command of the workflow and what came of it."""

    command: Command
    planned_at: datetime
    status: CommandStatus = CommandStatus.PLANNED
    answered_at: datetime | None = None
    answer: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Note:
    """A line for the case timeline."""

    at: datetime
    kind: str
    detail: dict[str, Any]


STOP_COMMANDS = ("wms_hold", "wms_cancel")
REPLAN = frozenset({"payment_captured", "refunded_elsewhere"})
STOP_FAILURES = frozenset({"no_acknowledgment", "stop_rejected", "stop_refused"})
PAYMENT = "payment"
FRAUD_VOID = "fraud_void"
PRECAUTION = "precaution_hold"


@dataclass(slots=True)
class Cancellation:
    order_ref: str
    requested_at: datetime
    requested_by: Requester
    reason: str
    source: str
    request_event: str
    id: int | None = None
    case_id: int | None = None
    merchant_id: int = 0
    lines: dict[str, int] | None = None  # sku -> quantity; None cancels the whole order
    fraud: bool = False
    stage: Stage = Stage.CHECKING
    branch: Branch | None = None
    state_used: str | None = None  # the fulfilment state the decision used, and where from
    state_from: str | None = None
    hold_first: bool = False  # not released, unconfirmed: hold at the warehouse before the ERP
    attempt: int = 1
    retried_at: datetime | None = None
    ack_due_at: datetime | None = None
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    rejected_by: str | None = None
    replans: int = 0  # payments planned again after the money moved under them
    rejected_at: datetime | None = None
    rejection: str | None = None
    exception_reason: str | None = None
    outcome: FinalOutcome | None = None
    times: dict[str, datetime] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    commands: dict[str, Sent] = field(default_factory=dict)
    notes: list[Note] = field(default_factory=list)
    version: int = 0

    @classmethod
    def request(
        cls, event: CanonicalEvent, order: OrderView, *, merchant_id: int, now: datetime
    ) -> Cancellation:
        """Steps 1 and 2: a cancel request, normalised and classified."""
        requester = Requester.parse(event.data.get("requested_by") or "customer")
        reason = str(event.data.get("reason") or _default_reason(requester))
        fraud = requester is not Requester.CUSTOMER and (
            ReasonCode.parse(reason) is ReasonCode.FRAUD or bool(event.data.get("fraud"))
        )
        cancellation = cls(
            order_ref=order.ref,
            requested_at=event.occurred_at,
            requested_by=requester,
            reason=reason,
            source=event.source.value,
            request_event=event.id,
            merchant_id=merchant_id,
            lines=requested_lines(event),
            fraud=fraud,
            requests=[event.id],
        )
        cancellation.times["requested_at"] = event.occurred_at
        cancellation.times["classified_at"] = now
        cancellation._note(
            now,
            "cancel_requested",
            {
                "requested_by": requester.value,
                "reason": reason,
                "source": event.source.value,
                "lines": cancellation.lines,
                "fraud": fraud,
            },
        )
        return cancellation

    @property
    def is_open(self) -> bool:
        return self.stage is not Stage.DONE

    @property
    def reason_code(self) -> ReasonCode:
        if self.fraud:
            return ReasonCode.FRAUD
        parsed = ReasonCode.parse(self.reason)
        if parsed is ReasonCode.OTHER and self.requested_by is Requester.CUSTOMER:
            return ReasonCode.CUSTOMER_REQUEST
        return parsed

    # -- what the outside said -------------------------------------------------------------

    def join(self, event: CanonicalEvent, now: datetime) -> None:
        """Step 1: a second request for the same order joins this workflow. A wider request
        widens it while nothing but the status query has gone out; after that, the warehouse,
        the ERP or the payment provider were told about the narrower cancel, and the rest is
        left for a new cancellation (``deferred`` on the timeline)."""
        if event.id in self.requests:
            return
        self.requests.append(event.id)
        wider = _union(self.lines, requested_lines(event))
        widened = wider != self.lines and set(self.commands) <= {"wms_status"}
        detail: dict[str, Any] = {"event": event.id, "source": event.source.value}
        if widened:
            self.lines = wider
        elif wider != self.lines:
            detail["deferred"] = {"lines": wider}
        self._note(now, "cancel_request_joined", {**detail, "widened": widened})

    def observe(self, event: CanonicalEvent, now: datetime) -> bool:
        """A warehouse answer (``stopship.acknowledged`` / ``stopship.rejected``) for this
        request. The earliest of each is kept, so arrival order does not matter."""
        if event.occurred_at < self.requested_at:
            return False
        given_up = self.retried_at is not None and event.occurred_at < self.retried_at
        if event.type is EventType.STOPSHIP_REJECTED and given_up:
            return False  # the answer to an attempt the desk has already given up on
        first_ack = self.acknowledged_at is None or event.occurred_at < self.acknowledged_at
        if event.type is EventType.STOPSHIP_ACKNOWLEDGED and first_ack:
            self.acknowledged_at, self.acknowledged_by = event.occurred_at, event.id
            self._note(now, "stop_acknowledged", {"event": event.id})
            return True
        first_reject = self.rejected_at is None or event.occurred_at < self.rejected_at
        if event.type is EventType.STOPSHIP_REJECTED and first_reject:
            self.rejected_at, self.rejected_by = event.occurred_at, event.id
            self.rejection = str(event.data.get("message") or "rejected by the warehouse")
            self._note(now, "stop_rejected", {"event": event.id, "message": self.rejection})
            return True
        return False

    def answered(self, key: str, *, accepted: bool, answer: dict[str, Any], at: datetime) -> None:
        """The outside system answered the command with this idempotency key."""
        sent = next((s for s in self.commands.values() if s.command.key == key), None)
        if sent is None or sent.status is not CommandStatus.PLANNED:
            return
        sent.status = CommandStatus.ACCEPTED if accepted else CommandStatus.REFUSED
        sent.answered_at, sent.answer = at, dict(answer)
        command = sent.command
        detail = {"action": command.action, "system": command.system, "key": command.key}
        detail.update({k: v for k, v in command.params.items() if k in _SHOWN})
        detail.update({"result": sent.status.value, **_plain(answer)})
        self._note(at, "command_answered", detail)
        if accepted:
            self._stamp(command, at)

    def _stamp(self, command: Command, at: datetime) -> None:
        stamp = {
            "wms_hold": "stop_sent_at",
            "wms_cancel": "stop_sent_at",
            "erp_update": "erp_updated_at",
            "return_authorize": "erp_updated_at",
            "send_message": "customer_notified_at",
        }.get(command.action)
        if command.is_payment:
            stamp = "payment_action_at"
        if stamp is not None:
            self.times.setdefault(stamp, at)

    # -- operator actions ------------------------------------------------------------------

    def retry(self, now: datetime, actor: str) -> None:
        """Send the failed step again: a new attempt, new idempotency keys for what is resent."""
        if self.stage is not Stage.EXCEPTION:
            raise InvalidTransition(
                f"the workflow is {self.stage.value}: only a workflow in exception has a step to "
                "retry",
                code="nothing_to_retry",
            )
        self.attempt, self.retried_at = self.attempt + 1, now
        for name in [n for n, s in self.commands.items() if s.status is CommandStatus.REFUSED]:
            del self.commands[name]
        if self.exception_reason in STOP_FAILURES:
            for name in STOP_COMMANDS:
                self.commands.pop(name, None)
            self.rejected_at, self.rejection, self.ack_due_at = None, None, None
            self.times.pop("stop_rejected_at", None)
            self.times.pop("stop_sent_at", None)
            self.stage = Stage.STOPPING
        elif "final_outcome_at" in self.times:
            self.stage = Stage.AWAITING_RETURN
        else:
            self.stage = Stage.STOPPED if self.branch is not Branch.SHIPPED else Stage.CONVERTING
        self.exception_reason = None
        if "final_outcome_at" not in self.times:
            self.outcome = None
        self._note(now, "step_retried", {"attempt": self.attempt, "by": actor})

    def mark_converted(self, now: datetime, actor: str) -> None:
        """A human decided the order goes the return way (it shipped, or the customer agreed)."""
        if self.stage not in (Stage.STOPPING, Stage.EXCEPTION, Stage.CHECKING):
            raise InvalidTransition(
                f"the workflow is {self.stage.value}: only a cancellation not yet stopped can be "
                "converted to a return",
                code="cannot_convert",
            )
        self.branch, self.stage = Branch.SHIPPED, Stage.CONVERTING
        self.exception_reason, self.outcome = None, None
        self._note(now, "marked_converted", {"by": actor})

    # -- the workflow ----------------------------------------------------------------------

    def advance(
        self, order: OrderView, money: Balance, rules: StopShipRules, now: datetime
    ) -> list[Command]:
        """Move as far as the facts allow; return the commands to send now."""
        planned: list[Command] = []
        if self.fraud and money.voidable and FRAUD_VOID not in self.commands:
            void = self._money_command(EntryKind.VOID, money.authorized, order, FRAUD_VOID)
            self.commands[FRAUD_VOID] = Sent(void, now)
            planned.append(void)
        for _ in range(12):  # each pass moves one stage; a bound instead of `while True`
            before = self.stage
            planned += _STAGES[self.stage](self, order, money, rules, now)
            if self.stage is before:
                break
        return planned

    def _checking(
        self, order: OrderView, money: Balance, rules: StopShipRules, now: datetime
    ) -> list[Command]:
        """Step 3: the fulfilment state, from the warehouse when the desk's is unknown or old.
        When the warehouse does not say, the desk's own (stale) state decides."""
        state, origin = known_state(order, now, rules)
        if state is None:
            asked = self.commands.get("wms_status")
            if asked is None:
                return [self._plan("wms_status", "wms", "wms_status", now)]
            if asked.status is CommandStatus.PLANNED:
                return []
            answer = str(asked.answer.get("status") or "")
            state, origin = (
                (FulfillmentStatus(answer), "wms")
                if answer in _STATES
                else (
                    order.fulfillment,
                    "desk_unconfirmed",
                )
            )
        self._decide(state, origin or "desk", now)
        return []

    def _decide(self, state: FulfillmentStatus, origin: str, now: datetime) -> None:
        """Step 4: the stop-ship rule by state. A not-released order that the warehouse did
        not confirm gets a hold first, in case a release is queued."""
        self.state_used, self.state_from = state.value, origin
        if state.rank >= FulfillmentStatus.SHIPPED.rank:
            self.branch, self.stage = Branch.SHIPPED, Stage.CONVERTING
        elif state is FulfillmentStatus.NOT_RELEASED:
            self.branch, self.stage = Branch.NOT_RELEASED, Stage.STOPPED
            self.hold_first = origin != "wms"
            if not self.hold_first:
                self.times.setdefault("stop_acknowledged_at", now)
        elif state is FulfillmentStatus.PACKED:
            self.branch, self.stage = Branch.PACKED, Stage.STOPPING
        else:
            self.branch, self.stage = Branch.AT_WAREHOUSE, Stage.STOPPING
        self._note(now, "stop_rule", {"state": state.value, "from": origin, "branch": self.branch})

    def _stopping(
        self, order: OrderView, money: Balance, rules: StopShipRules, now: datetime
    ) -> list[Command]:
        """Step 5: hold + cancel at the 3PL, then wait for the acknowledgment."""
        if order.shipped:
            self._note(now, "shipped_before_stop", {"state": order.fulfillment.value})
            self.branch, self.stage = Branch.SHIPPED, Stage.CONVERTING
            return []
        if self.acknowledged_at is not None:
            self.times.setdefault("stop_acknowledged_at", self.acknowledged_at)
            self.stage = Stage.STOPPED
            return []
        planned = [
            self._plan(name, "wms", name, now, lines=self._lines_param())
            for name in STOP_COMMANDS
            if name not in self.commands
        ]
        if any(self.commands[name].status is CommandStatus.REFUSED for name in STOP_COMMANDS):
            self._to_exception("stop_refused", now)
        elif self.rejected_at is not None:
            self.times.setdefault("stop_rejected_at", self.rejected_at)
            self._to_exception("stop_rejected", now)
        elif self.ack_due_at is None and "stop_sent_at" in self.times:
            window = (
                rules.ack_window_packed
                if self.branch is Branch.PACKED
                else rules.ack_window_picking
            )
            self.ack_due_at = rules.working_add(self.times["stop_sent_at"], window)
            self._note(now, "acknowledgment_due", {"due_at": self.ack_due_at.isoformat()})
        if self.ack_due_at is not None and now >= self.ack_due_at and self.stage is Stage.STOPPING:
            self._to_exception("no_acknowledgment", now)
        return planned

    def _to_exception(self, reason: str, now: datetime) -> None:
        self.stage, self.exception_reason = Stage.EXCEPTION, reason
        if "final_outcome_at" not in self.times:  # a converted order keeps its outcome
            self.outcome = FinalOutcome.EXCEPTION
        self._note(now, "stopship_exception", {"reason": reason, "message": self.rejection})

    def _exception(
        self, order: OrderView, money: Balance, rules: StopShipRules, now: datetime
    ) -> list[Command]:
        """Open and escalated. When the stop itself failed, a late acknowledgment or the
        shipment moves it on; a refused ERP update, payment or message waits for a retry."""
        if self.exception_reason not in STOP_FAILURES:
            return []
        if order.shipped:
            self._note(now, "shipped_before_stop", {"state": order.fulfillment.value})
            self.branch, self.stage = Branch.SHIPPED, Stage.CONVERTING
            self.outcome, self.exception_reason = None, None
        elif self.acknowledged_at is not None:
            self.times.setdefault("stop_acknowledged_at", self.acknowledged_at)
            self.stage, self.outcome, self.exception_reason = Stage.STOPPED, None, None
            self._note(now, "late_acknowledgment", {"at": self.acknowledged_at.isoformat()})
        return []

    def _stopped(
        self, order: OrderView, money: Balance, rules: StopShipRules, now: datetime
    ) -> list[Command]:
        """Steps 6 to 8, one after another: ERP, payment, customer message, outcome."""
        waiting = self._before_payment(order, now)
        if waiting is not None:
            return waiting
        pay = self._step(PAYMENT, now, lambda: self._payment(order, money, now))
        if pay is not None:
            return pay
        template = "partial_cancellation_confirmed" if self.lines else "cancellation_confirmed"
        told = self._step("notify", now, lambda: self._message(order, template, "notify"))
        if told is not None:
            return told
        outcome = FinalOutcome.CANCELLED_FRAUD if self.fraud else FinalOutcome.STOPPED
        self._finish(outcome, now)
        return []

    def _before_payment(self, order: OrderView, now: datetime) -> list[Command] | None:
        """The precautionary hold (then the stop counts as confirmed), a fraud void still in
        flight, the ERP update, and the price of a partial cancel's lines: None when done."""
        if self.hold_first:
            held = self._step(PRECAUTION, now, lambda: self._hold(now))
            if held is not None:
                return held
            self.times.setdefault("stop_acknowledged_at", now)
        void = self.commands.get(FRAUD_VOID)
        if void is not None and void.status is CommandStatus.PLANNED:
            return []  # the fraud void is the payment action: wait for its answer
        erp = self._step("erp_update", now, lambda: self._erp_update(order, now))
        if erp is not None:
            return erp
        return None if self._priced(order, now) else []

    def _converting(
        self, order: OrderView, money: Balance, rules: StopShipRules, now: datetime
    ) -> list[Command]:
        """Shipped: never cancel; intercept where the carrier allows, else the return way."""
        if not rules.convert_shipped:
            told = self._step(
                "notify_shipped",
                now,
                lambda: self._message(order, "order_already_shipped", "notify_shipped"),
            )
            if told is None:
                self._finish(FinalOutcome.NOT_STOPPED_SHIPPED, now)
            return told or []
        carrier = order.carrier
        planned: list[Command] = []
        if carrier in rules.intercept_carriers and "carrier_intercept" not in self.commands:
            planned.append(
                self._plan(
                    "carrier_intercept",
                    "carrier",
                    "carrier_intercept",
                    now,
                    carrier=carrier,
                    tracking=list(order.tracking),
                )
            )
        ra = self._step("return_authorize", now, lambda: self._return_authorize(now))
        if ra is not None:
            return planned + ra
        told = self._step(
            "notify_return",
            now,
            lambda: self._message(order, "return_instructions", "notify_return"),
        )
        if told is not None:
            return planned + told
        if self.outcome is not FinalOutcome.CONVERTED_TO_RETURN:
            self.outcome = FinalOutcome.CONVERTED_TO_RETURN
            self.times["final_outcome_at"] = now
            self._note(now, "outcome", {"outcome": self.outcome.value})
        self.stage = Stage.AWAITING_RETURN
        return planned

    def _awaiting_return(
        self, order: OrderView, money: Balance, rules: StopShipRules, now: datetime
    ) -> list[Command]:
        """The refund of a converted cancellation: on ``return.received`` or by policy."""
        returned = order.evidence.returned_by is not None
        if not returned and rules.refund_on is RefundOn.RETURN_RECEIVED:
            return []
        if not self._priced(order, now):
            return []
        pay = self._step(PAYMENT, now, lambda: self._payment(order, money, now))
        if pay is not None:
            return pay
        sent = self.commands[PAYMENT].command if PAYMENT in self.commands else None
        if sent is not None and sent.action == EntryKind.REFUND.value:
            told = self._step(
                "notify_refund", now, lambda: self._message(order, "refund_issued", "notify_refund")
            )
            if told is not None:
                return told
        self.stage = Stage.DONE
        self._note(now, "closed", {"outcome": FinalOutcome.CONVERTED_TO_RETURN.value})
        return []

    def _done(
        self, order: OrderView, money: Balance, rules: StopShipRules, now: datetime
    ) -> list[Command]:
        return []

    def _finish(self, outcome: FinalOutcome, now: datetime) -> None:
        self.outcome, self.stage = outcome, Stage.DONE
        self.times["final_outcome_at"] = now
        self._note(now, "outcome", {"outcome": outcome.value})

    # -- the commands ----------------------------------------------------------------------

    def _step(
        self, name: str, now: datetime, plan: Callable[[], Command | None]
    ) -> list[Command] | None:
        """None when step ``name`` is done; else the commands to send (maybe none: waiting).
        A step whose ``plan`` gives no command is done at once (recorded as not needed)."""
        sent = self.commands.get(name)
        if sent is None:
            command = plan()
            if command is None:
                self._skip(name, now)
                return None
            self.commands[name] = Sent(command, now)
            return [command]
        if sent.status is CommandStatus.PLANNED:
            return []
        if sent.status is CommandStatus.REFUSED and sent.answer.get("code") in REPLAN:
            # the money moved between planning and sending (captured, refunded elsewhere):
            # plan the payment again from the balance as it is now, under a new intent
            self.replans += 1
            self._note(now, "payment_replanned", {"why": sent.answer.get("code")})
            del self.commands[name]
            return self._step(name, now, plan)
        if sent.status is CommandStatus.REFUSED:
            reason = (
                "payment_refused" if sent.command.is_payment else f"{sent.command.action}_refused"
            )
            self._to_exception(reason, now)
            return []
        return None

    def _skip(self, name: str, now: datetime) -> None:
        command = Command(name, "desk", "none", self._key(name), {})
        self.commands[name] = Sent(command, now, CommandStatus.ACCEPTED, now, {"skipped": True})
        self._note(now, "step_not_needed", {"step": name})

    def _plan(self, name: str, system: str, action: str, now: datetime, **params: Any) -> Command:
        params = {k: _param(v) for k, v in params.items() if v is not None}
        command = Command(name, system, action, self._key(name), params)
        self.commands[name] = Sent(command, now)
        return command

    def _key(self, name: str) -> str:
        return f"stopship:{self.merchant_id}:{self.id}:{name}:{self.attempt}"

    def _lines_param(self) -> list[dict[str, Any]] | None:
        if self.lines is None:
            return None
        return [{"sku": sku, "qty": qty} for sku, qty in sorted(self.lines.items())]

    def _hold(self, now: datetime) -> Command:
        params = _clean(lines=self._lines_param(), reason="release may be queued")
        return Command(PRECAUTION, "wms", "wms_hold", self._key(PRECAUTION), params)

    def _erp_update(self, order: OrderView, now: datetime) -> Command:
        """Step 6, with NetSuite's semantics: cancel only while Pending Approval, else close
        (the lines cancelled, for a partial cancel)."""
        status_action = "cancel" if order.erp_status == "pending_approval" else "close"
        if self.lines is not None:
            status_action = "close_lines"
        return Command(
            "erp_update",
            "erp",
            "erp_update",
            self._key("erp_update"),
            _clean(
                status_action=status_action,
                erp_status=order.erp_status,
                reason_code=self.reason_code.value,
                note=f"Cancelled by the desk: {self.requested_by.value} request ({self.reason})",
                case_id=self.case_id,
                ticket=order.tickets[0] if order.tickets else None,
                erp_id=order.system_ids.get("netsuite"),
                lines=self._lines_param(),
            ),
        )

    def _return_authorize(self, now: datetime) -> Command:
        return Command(
            "return_authorize",
            "erp",
            "return_authorize",
            self._key("return_authorize"),
            _clean(
                reason_code=self.reason_code.value,
                case_id=self.case_id,
                note="Shipped before the stop: converted to a return",
                lines=self._lines_param(),
            ),
        )

    def _priced(self, order: OrderView, now: datetime) -> bool:
        """A partial cancel needs the price of each line it cancels; without one the amount is
        unknown, and the workflow waits in ``exception`` (retry once the order has prices)."""
        try:
            self.lines_value(order)
        except InvalidInput as missing:
            self._to_exception("lines_not_priced", now)
            self._note(now, "lines_not_priced", {"message": missing.message})
            return False
        return True

    def _payment(self, order: OrderView, money: Balance, now: datetime) -> Command | None:
        """Step 7: void what was only authorized, refund what was captured; partial amounts for
        partial cancels; nothing refunded elsewhere is refunded again."""
        wanted = self.lines_value(order)
        void = self.commands.get(FRAUD_VOID)
        if void is not None and void.status is CommandStatus.ACCEPTED and money.captured == ZERO:
            return None  # voided at once, as a fraud cancel is
        if money.captured > ZERO:
            amount = money.refundable if wanted is None else min(wanted, money.refundable)
            if amount <= ZERO:
                self._note(
                    now,
                    "nothing_left_to_refund",
                    {"refunded_elsewhere": str(money.refunded_elsewhere)},
                )
                return None
            return self._money_command(EntryKind.REFUND, amount, order)
        if not money.voidable:
            return None
        if wanted is None:
            return self._money_command(EntryKind.VOID, money.authorized, order)
        return self._money_command(EntryKind.REDUCE_AUTHORIZATION, wanted, order)

    def _money_command(
        self, kind: EntryKind, amount: Decimal, order: OrderView, name: str = PAYMENT
    ) -> Command:
        """The key is the ledger's intent key: this cancellation (and attempt), action, amount."""
        scope = f"cancellation-{self.id}:{self.attempt}"
        if name != PAYMENT:
            scope = f"{scope}:{name}"
        if self.replans:
            scope = f"{scope}:r{self.replans}"
        key = intent_key(str(self.merchant_id), scope, kind, amount)
        params = {"amount": str(amount), "currency": order.currency or "USD"}
        return Command(name, "payments", kind.value, key, params)

    def _message(self, order: OrderView, template: str, name: str) -> Command:
        channel = "helpdesk" if order.tickets else "email"
        return Command(
            name,
            channel,
            "send_message",
            self._key(name),
            _clean(
                template=template,
                to=order.customer_email,
                ticket=order.tickets[0] if order.tickets else None,
                lines=self._lines_param(),
            ),
        )

    def lines_value(self, order: OrderView) -> Decimal | None:
        """What the cancelled lines are worth (None for a whole-order cancel)."""
        if self.lines is None:
            return None
        total = ZERO
        for sku, qty in self.lines.items():
            line = order.lines.get(sku)
            if line is None or line.price is None:
                raise InvalidInput(f"order {order.ref}: no price for line {sku!r} to cancel")
            total += line.price * qty
        return total

    def _note(self, at: datetime, kind: str, detail: dict[str, Any]) -> None:
        self.notes.append(Note(at, kind, detail))


_STAGES: dict[
    Stage, Callable[[Cancellation, OrderView, Balance, StopShipRules, datetime], list[Command]]
] = {
    Stage.CHECKING: Cancellation._checking,
    Stage.STOPPING: Cancellation._stopping,
    Stage.EXCEPTION: Cancellation._exception,
    Stage.STOPPED: Cancellation._stopped,
    Stage.CONVERTING: Cancellation._converting,
    Stage.AWAITING_RETURN: Cancellation._awaiting_return,
    Stage.DONE: Cancellation._done,
}
_STATES = {status.value for status in FulfillmentStatus}
_SHOWN = ("amount", "currency", "template", "status_action", "reason_code", "lines")


def known_state(
    order: OrderView, now: datetime, rules: StopShipRules
) -> tuple[FulfillmentStatus | None, str | None]:
    """The fulfilment state when the desk's own is good enough: shipped or delivered (it never
    moves back), or reported by the warehouse within ``state_fresh_for``."""
    if order.shipped:
        return order.fulfillment, "order"
    last = order.fulfillment_times.get(order.fulfillment.value)
    if last is not None and now - last <= rules.state_fresh_for:
        return order.fulfillment, "order"
    return None, None


def requested_lines(event: CanonicalEvent) -> dict[str, int] | None:
    raw = event.data.get("lines")
    if not raw:
        return None
    lines: dict[str, int] = {}
    for line in raw:
        qty = 1 if line.get("qty") is None else int(line["qty"])
        if qty < 1:
            raise InvalidInput(f"cancel.requested: line {line.get('sku')!r} has qty {qty}")
        lines[str(line["sku"])] = lines.get(str(line["sku"]), 0) + qty
    return lines


def _union(one: dict[str, int] | None, other: dict[str, int] | None) -> dict[str, int] | None:
    if one is None or other is None:
        return None
    return {sku: max(one.get(sku, 0), other.get(sku, 0)) for sku in sorted({*one, *other})}


def _default_reason(requester: Requester) -> str:
    return {
        Requester.CUSTOMER: ReasonCode.CUSTOMER_REQUEST.value,
        Requester.OPS: ReasonCode.OTHER.value,
        Requester.AUTO: ReasonCode.PAYMENT_TIMEOUT.value,
    }[requester]


def _param(value: Any) -> Any:
    return str(value) if isinstance(value, Decimal) else value


def _clean(**params: Any) -> dict[str, Any]:
    return {k: _param(v) for k, v in params.items() if v is not None}


def _plain(answer: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in answer.items() if isinstance(v, str | int | float | bool)}
