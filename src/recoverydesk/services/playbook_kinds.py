"""What a playbook step of a given kind does: the interface between the playbook engine
(``services.playbooks``) and the kinds of step it runs.

A step's kind (``do:`` in a playbook) names a function ``StepKind``: it reads the case, the order
and the step's ``params`` and answers what to do (``StepOutcome``). It never calls an outside
system itself: each ``OutsideCall`` becomes an ``outbound.send`` job of the outbox under the
step's idempotency key (``StepContext.key`` plus the call's ``key_suffix``), sent after commit
with retries. A kind may act through the desk's own services in the same unit of work (the
refund ledger's ``stopship.pay_by_hand``, ``stopship.request_cancellation``): those keep their
own guards and keys. ``facts`` land on the step's timeline entry and in
``case.data["steps"][<step name>]``, where later steps' conditions read them
(``case.data.steps.validate_address.po_box``). ``blocked`` says why the step cannot run now:
nothing is done and the step stays open to a person, with that reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from recoverydesk.domain.cases import Case
from recoverydesk.domain.orders import OrderView
from recoverydesk.services.decisions import DecisionLinks
from recoverydesk.services.policy import Policy
from recoverydesk.services.ports import Merchant, UnitOfWork


@dataclass(frozen=True, slots=True)
class StepContext:
    uow: UnitOfWork
    merchant: Merchant
    policy: Policy
    case: Case  # locked and open
    order: OrderView
    step: str  # the step's name in its playbook
    params: Mapping[str, Any]  # the step's ``params`` from the playbook
    key: str  # this attempt's idempotency key: playbook:{merchant}:{case}:{step}:{attempt}
    actor: str  # "playbook:{name}@{version}" for an automatic step, else the person
    now: datetime
    # How decision links are signed (a ``decision`` step needs them); None where unknown.
    links: DecisionLinks | None = None
    checked: tuple[str, ...] = ()  # the checklist items a person ticked (a ``check`` step)


@dataclass(frozen=True, slots=True)
class OutsideCall:
    system: str  # payments | storefront | wms | erp | helpdesk | email | carrier
    action: str  # the connector's action: retry_payment, release_hold, dispute_evidence ...
    params: dict[str, Any] = field(default_factory=dict)
    key_suffix: str = ""  # when one step makes several calls: ":evidence", ":message" ...


@dataclass(frozen=True, slots=True)
class StepOutcome:
    calls: tuple[OutsideCall, ...] = ()
    facts: dict[str, Any] = field(default_factory=dict)  # JSON-able
    blocked: str | None = None


StepKind = Callable[[StepContext], StepOutcome]
