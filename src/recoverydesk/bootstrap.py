"""The composition root: the one place where adapters are chosen and wired to the use cases."""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import Engine

from recoverydesk.config import Settings
from recoverydesk.connectors.adyen_payments import AdyenPayments
from recoverydesk.connectors.easypost import EasyPostCarrier
from recoverydesk.connectors.messages import SmtpMessages, ZendeskMessages
from recoverydesk.connectors.netsuite import NetSuiteConnector, NetSuitePoller
from recoverydesk.connectors.notify import SmtpEmailSender, WebhookChatSender
from recoverydesk.connectors.outbound import CircuitBreaker, OutsideRouter
from recoverydesk.connectors.poll_amazon import AmazonOrdersPoller
from recoverydesk.connectors.poll_threepl import ThreePLPoller
from recoverydesk.connectors.poll_woocommerce import WooCommercePoller
from recoverydesk.connectors.shopify_admin import ShopifyAdmin
from recoverydesk.connectors.stripe_payments import StripePayments
from recoverydesk.connectors.threepl import ThreePLConnector
from recoverydesk.domain.errors import DeskError
from recoverydesk.persistence.database import make_engine
from recoverydesk.persistence.migrate import upgrade
from recoverydesk.persistence.uow import SqlUnitOfWork
from recoverydesk.sandbox.recorders import AcceptingOutside
from recoverydesk.services import playbooks, polling, stopship
from recoverydesk.services.clock import Clock, SystemClock
from recoverydesk.services.decisions import DecisionLinks
from recoverydesk.services.escalation import HANDLERS as ESCALATION
from recoverydesk.services.escalation import notification_handlers
from recoverydesk.services.group_intake import GroupIntake
from recoverydesk.services.intake import IngestReport, ingest
from recoverydesk.services.jobs import JobHandler, JobRunner
from recoverydesk.services.notifications import ChatSender, EmailSender
from recoverydesk.services.ports import IncomingEvent, Merchant, OutsideSystems, Poller
from recoverydesk.services.timers import HANDLERS as TIMERS
from recoverydesk.telemetry import Metrics

# The connectors by kind (``connectors.outbound.<system>.kind`` in a merchant's file) and the
# pollers by kind (``connectors.polling.<name>.kind``). A desk on another clock than the system's
# (replay, tests) gets its own Stripe connector reading that clock (an authorization's hours left).
CONNECTORS: dict[str, OutsideSystems] = {
    "stripe": StripePayments(),
    "adyen": AdyenPayments(),
    "wms_rest": ThreePLConnector(),
    "netsuite": NetSuiteConnector(),
    "shopify_admin": ShopifyAdmin(),
    "zendesk": ZendeskMessages(),
    "smtp": SmtpMessages(),
    "easypost": EasyPostCarrier(),
}
POLLERS: dict[str, Poller] = {
    "woocommerce": WooCommercePoller(),
    "wms_rest": ThreePLPoller(),
    "netsuite": NetSuitePoller(),
    "amazon_spapi": AmazonOrdersPoller(),
}


@dataclass
class Desk:
    settings: Settings
    engine: Engine
    clock: Clock
    metrics: Metrics = field(default_factory=Metrics)
    handlers: dict[str, JobHandler] = field(default_factory=dict)
    # What the desk made for itself and closes with it (a connector reading the desk's clock).
    on_close: list[Callable[[], None]] = field(default_factory=list)
    _grouped: GroupIntake = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._grouped = GroupIntake(self.ingest)

    def uow(self) -> SqlUnitOfWork:
        return SqlUnitOfWork(self.engine)

    def reader(self) -> SqlUnitOfWork:
        """A unit of work for reads only (does not take SQLite's write lock)."""
        return SqlUnitOfWork(self.engine, read_only=True)

    def upgrade(self) -> None:
        upgrade(self.settings.database_url)

    def ingest(self, merchant: Merchant, items: Sequence[IncomingEvent]) -> IngestReport:
        report = ingest(uow_factory=self.uow, clock=self.clock, merchant=merchant, events=items)
        self.metrics.observe_ingest(report)
        return report

    def ingest_grouped(
        self, merchant: Merchant, items: Sequence[IncomingEvent]
    ) -> Future[IngestReport]:
        """The same through one writer that commits concurrent deliveries together (webhooks);
        the future is set once this delivery's events are stored and folded."""
        return self._grouped.submit(merchant, items)

    def job_runner(self, worker: str | None = None) -> JobRunner:
        name = worker or f"{socket.gethostname()}:{os.getpid()}"
        return JobRunner(
            uow_factory=self.uow,
            clock=self.clock,
            handlers=self.handlers,
            worker=name,
            lease=timedelta(seconds=self.settings.worker_lease_seconds),
            on_finish=self.metrics.observe_job,
        )

    def database_figures(self, now: datetime) -> dict[str, Any]:
        with self.reader() as uow:
            return {
                "open_cases": uow.cases.open_counts(),
                "jobs": uow.jobs.counts(),
                "job_lag": uow.jobs.lag_seconds(now),
            }

    def close(self) -> None:
        self._grouped.close()
        for close in self.on_close:
            close()
        self.engine.dispose()


def bootstrap(
    settings: Settings | None = None,
    *,
    clock: Clock | None = None,
    email: EmailSender | None = None,
    chat: ChatSender | None = None,
    outside: OutsideSystems | None = None,
) -> Desk:
    """Wire the desk. ``email``, ``chat`` and ``outside`` replace the configured senders and
    the merchants' systems (replay records them; tests put emulators there)."""
    settings = settings or Settings()
    email = email or _smtp(settings)
    chat = chat or WebhookChatSender(
        httpx.Client(timeout=10.0), secret=settings.chat_webhook_secret
    )
    clock = clock or SystemClock()
    own_time = outside is None and not isinstance(clock, SystemClock)
    timed = StripePayments(clock=clock) if own_time else None
    if outside is None:
        chosen = CONNECTORS if timed is None else {**CONNECTORS, "stripe": timed}
        outside = OutsideRouter(chosen, AcceptingOutside(), breaker=CircuitBreaker(clock=clock))
    desk = Desk(
        settings=settings,
        engine=make_engine(settings.database_url),
        clock=clock,
        handlers={
            **TIMERS,
            **ESCALATION,
            **notification_handlers(email, chat),
            **stopship.handlers(outside),
            **polling.handlers(POLLERS),
            **playbooks.handlers(lambda: _decision_links(settings)),
        },
    )
    if timed is not None:
        desk.on_close.append(timed.close)
    desk.metrics.watch_database(desk.database_figures)
    return desk


def _decision_links(settings: Settings) -> DecisionLinks | None:
    """How a worker signs the links of a decision a playbook offers: the desk's secret and
    public address (``RECOVERYDESK_PUBLIC_URL``); None without them (the step is blocked)."""
    if settings.public_url is None:
        return None
    try:
        return DecisionLinks(settings.decision_signing_secret(), settings.public_url)
    except DeskError:
        return None


def _smtp(settings: Settings) -> EmailSender | None:
    if settings.smtp_host is None:
        return None
    return SmtpEmailSender(
        settings.smtp_host,
        settings.smtp_port,
        settings.smtp_sender,
        username=settings.smtp_username,
        password=settings.smtp_password,
        starttls=settings.smtp_starttls,
    )
