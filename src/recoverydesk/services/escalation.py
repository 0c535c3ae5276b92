"""Escalation: when a clock's stage comes, warn, escalate and notify — each exactly once.

An ``sla.check`` timer runs in the same unit of work that marks it done: the stage is recorded
on the case (``clock.fired``, ``escalations``, the timeline) together with the notification jobs
it causes, so a worker that dies mid-run leaves nothing half done and the rerun finds the stage
already fired. Notifications go out after commit as their own jobs, keyed by the escalation; a
resend after a crash carries the same key (email ``Message-ID``, webhook ``Idempotency-Key``).

Who hears of it: the warning (75%) goes to the case's owner, the breach (100%) to the ops lead,
the escalation (150%) to the owner of the case's category (warehouse/3PL, finance, fraud/risk).
A first-touch breach also hands an untouched case to the next member of its queue.
"""

from __future__ import annotations

from datetime import datetime

import structlog

from recoverydesk.domain.cases import Case
from recoverydesk.domain.errors import NotFound
from recoverydesk.domain.sla import ClockName, SlaClock, Stage
from recoverydesk.services.jobs import JobHandler
from recoverydesk.services.notifications import ChatSender, EmailSender, Notification
from recoverydesk.services.policy import Contact
from recoverydesk.services.ports import Job, JobRequest, Merchant, UnitOfWork
from recoverydesk.services.triage import SLA_CHECK, Triage, choose_member, triage_for

log = structlog.get_logger("recoverydesk.escalation")

NOTIFY_EMAIL = "notify.email"
NOTIFY_CHAT = "notify.chat"
SYSTEM = "sla"


def check_sla(uow: UnitOfWork, job: Job, now: datetime) -> None:
    """The timer of one clock stage: fire every stage of that clock that has come."""
    merchant = uow.merchants.by_id(job.merchant_id)
    if merchant is None:
        raise NotFound(f"merchant {job.merchant_id} of job {job.id} is gone")
    case = uow.cases.lock(merchant.id, int(job.payload["case_id"]))
    if case is None or not case.is_open:
        return
    clock = case.clocks.get(str(job.payload["clock"]))
    if clock is None:
        return
    triage = triage_for(uow, merchant)
    requests: list[JobRequest] = []
    for stage, moment in clock.due_stages(now, triage.calendar):
        requests += _fire(
            merchant, triage, case=case, clock=clock, stage=stage, moment=moment, now=now
        )
        if stage is Stage.BREACH and clock.name is ClockName.FIRST_TOUCH:
            _reassign(uow, merchant, triage, case, now)
    if case.dirty:
        uow.cases.save(merchant.id, [case])
        uow.jobs.enqueue(requests, now=now)


def _fire(
    merchant: Merchant,
    triage: Triage,
    *,
    case: Case,
    clock: SlaClock,
    stage: Stage,
    moment: datetime,
    now: datetime,
) -> list[JobRequest]:
    clock.fired[stage.value] = now
    contact = _contact(triage, case, stage)
    key = f"esc:{merchant.name}:{case.id}:{clock.name.value}:{stage.value}"
    record = {
        "key": key,
        "clock": clock.name.value,
        "stage": stage.value,
        "due_at": moment.isoformat(),
        "fired_at": now.isoformat(),
        "to": contact.name,
    }
    case.escalations.append(record)
    case.record(now, f"sla_{stage.value}", SYSTEM, record)
    log.info("sla stage fired", merchant=merchant.name, case_id=case.id, **record)
    return _notifications(merchant, triage, case, record, contact)


def escalate_to_lead(
    merchant: Merchant, triage: Triage, case: Case, record: dict[str, str]
) -> list[JobRequest]:
    """Escalate a case to the ops lead outside the SLA clocks (a stop-ship exception ...):
    on the case's escalations and timeline, and notified by email and chat."""
    contact = triage.policy.escalation.ops_lead
    record = {**record, "to": contact.name}
    case.escalations.append(record)
    case.record(datetime.fromisoformat(record["fired_at"]), "escalated", SYSTEM, record)
    log.info("case escalated", merchant=merchant.name, case_id=case.id, **record)
    return _notifications(merchant, triage, case, record, contact)


def _contact(triage: Triage, case: Case, stage: Stage) -> Contact:
    escalation = triage.policy.escalation
    if stage is Stage.WARNING:
        member = triage.members().get(case.owner or "")
        if member is not None:
            return Contact(name=member.name, email=member.email)
        return escalation.ops_lead
    if stage is Stage.BREACH:
        return escalation.ops_lead
    owner = escalation.category_owner.get(str(case.category))
    return escalation.owners.get(owner or "", escalation.ops_lead)


def _notifications(
    merchant: Merchant, triage: Triage, case: Case, record: dict[str, str], contact: Contact
) -> list[JobRequest]:
    stage, clock = record["stage"], record["clock"]
    subject = f"[{merchant.name}] case {case.id} {clock.replace('_', ' ')} {stage}"
    body = (
        f"Case {case.id} ({case.category!s}, {case.priority}, queue {case.queue}) "
        f"on order {case.order_ref}: the {clock.replace('_', ' ')} clock reached its {stage} "
        f"(due {record['due_at']}). Owner: {case.owner or 'nobody'}."
    )
    facts = {**record, "case_id": case.id, "order_ref": case.order_ref, "merchant": merchant.name}
    note: dict[str, object] = {
        "key": record["key"],
        "subject": subject,
        "body": body,
        "facts": facts,
    }
    now = datetime.fromisoformat(record["fired_at"])
    jobs = []
    if contact.email:
        email: dict[str, object] = {**note, "recipients": [contact.email]}
        jobs.append(_job(merchant, NOTIFY_EMAIL, "email", email, now))
    urls = {u for u in (triage.policy.escalation.chat_webhook, contact.chat_webhook) if u}
    for url in sorted(urls):
        jobs.append(_job(merchant, NOTIFY_CHAT, f"chat:{url}", {**note, "url": url}, now))
    return jobs


def _job(
    merchant: Merchant, kind: str, channel: str, payload: dict[str, object], now: datetime
) -> JobRequest:
    """A notification sent after commit, keyed by its escalation and channel."""
    key = f"notify:{channel}:{payload['key']}"
    return JobRequest(merchant_id=merchant.id, kind=kind, key=key, due_at=now, payload=payload)


def _reassign(
    uow: UnitOfWork, merchant: Merchant, triage: Triage, case: Case, now: datetime
) -> None:
    queue = triage.policy.queue(case.queue or "")
    if queue is None or not queue.reassign_after_first_touch_breach or case.first_touched_at:
        return
    load, last = uow.cases.assignment_state(merchant.id, queue.name)
    owner = choose_member(queue, triage.members(), load, last, now=now, skip=case.owner)
    if owner is not None and owner != case.owner:
        case.assign(owner, at=now, actor=SYSTEM, reason="first touch breached")


def notification_handlers(
    email: EmailSender | None, chat: ChatSender | None
) -> dict[str, JobHandler]:
    """Job handlers that send notifications after commit; a missing channel is logged, once."""

    def send_email(uow: UnitOfWork, job: Job, now: datetime) -> None:
        if email is None:
            log.warning("email is not configured; notification not sent", key=job.key)
            return
        email.send(_notification(job))

    def post_chat(uow: UnitOfWork, job: Job, now: datetime) -> None:
        if chat is None:
            log.warning("chat is not configured; notification not sent", key=job.key)
            return
        chat.post(str(job.payload["url"]), _notification(job))

    return {NOTIFY_EMAIL: send_email, NOTIFY_CHAT: post_chat}


def _notification(job: Job) -> Notification:
    payload = job.payload
    return Notification(
        key=str(payload["key"]),
        subject=str(payload["subject"]),
        body=str(payload["body"]),
        recipients=tuple(str(r) for r in payload.get("recipients", [])),
        facts=dict(payload.get("facts", {})),
    )


HANDLERS: dict[str, JobHandler] = {SLA_CHECK: check_sla}
