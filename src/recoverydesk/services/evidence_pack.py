"""The playbook step ``evidence_pack`` (F11, chargeback prevention): the chargeback evidence pack
(``domain.evidence``, re-exported here) staged on the case's dispute.

The step reads the merchant's policy texts from its ``params.policies`` (else the policy's
``policies``), a person's texts for Stripe's fields from ``params.statements``, and the case's
stored timeline from a case store that reads one (``TimelineReader``: the ``CaseStore`` port has
no timeline read).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from recoverydesk.domain.cases import TimelineEntry
from recoverydesk.domain.evidence import (
    FIELD_CHARS,
    REASON_NEEDS,
    STRIPE_TEXT_FIELDS,
    TOTAL_CHARS,
    Dispute,
    EvidencePack,
    ReasonNeeds,
    Strength,
    as_moment,
    assemble_evidence,
    find_dispute,
    needs_of,
)
from recoverydesk.services.playbook_kinds import OutsideCall, StepContext, StepOutcome

__all__ = [
    "FIELD_CHARS",
    "REASON_NEEDS",
    "STRIPE_TEXT_FIELDS",
    "TOTAL_CHARS",
    "Dispute",
    "EvidencePack",
    "ReasonNeeds",
    "Strength",
    "TimelineReader",
    "assemble_evidence",
    "evidence_step",
    "find_dispute",
    "needs_of",
]


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
            at=as_moment(row.get("at")) or ctx.case.opened_at,
            kind=str(row.get("kind") or ""),
            actor=str(row.get("actor") or ""),
            detail=dict(row.get("detail") or {}),
            event_id=row.get("event_id"),
        )
        for row in store.timeline(ctx.merchant.id, ctx.case.id)
    ]
