"""Structured JSON logs and Prometheus metrics."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from recoverydesk.services.intake import IngestReport
from recoverydesk.services.ports import Job

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def configure_logging(level: str = "info", fmt: str = "json") -> None:
    """JSON lines on stderr, with whatever ids are bound (merchant, order, case, request)."""
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(LEVELS[level]),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


class DatabaseGauges(Collector):
    """Figures read from the database at scrape time, so every process reports the same."""

    def __init__(self, read: Callable[[datetime], dict[str, Any]]) -> None:
        self._read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        figures = self._read(datetime.now(UTC))
        open_cases = GaugeMetricFamily(
            "recoverydesk_open_cases", "Open cases", labels=["merchant_id", "category"]
        )
        for merchant_id, category, count in figures["open_cases"]:
            open_cases.add_metric([str(merchant_id), category], count)
        jobs = GaugeMetricFamily("recoverydesk_jobs", "Jobs by status", labels=["status"])
        for status, count in figures["jobs"].items():
            jobs.add_metric([status], count)
        lag = GaugeMetricFamily(
            "recoverydesk_job_lag_seconds", "Age of the oldest due job that has not started"
        )
        lag.add_metric([], figures["job_lag"])
        yield from (open_cases, jobs, lag)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.events_in = Counter(
            "recoverydesk_events_stored",
            "Events stored, by source and type",
            ["source", "type"],
            registry=self.registry,
        )
        self.duplicates = Counter(
            "recoverydesk_events_duplicate",
            "Events acknowledged as already seen",
            registry=self.registry,
        )
        self.jobs_finished = Counter(
            "recoverydesk_jobs_finished",
            "Job runs, by kind and result",
            ["kind", "result"],
            registry=self.registry,
        )
        self.job_start_lag = Histogram(
            "recoverydesk_job_start_lag_seconds",
            "Time from a job's due time to its start",
            registry=self.registry,
            buckets=(0.1, 0.5, 1, 5, 15, 60, 300, 1800, 3600),
        )
        self.http = Counter(
            "recoverydesk_http_requests",
            "HTTP requests",
            ["method", "route", "status"],
            registry=self.registry,
        )

    def watch_database(self, read: Callable[[datetime], dict[str, Any]]) -> None:
        self.registry.register(DatabaseGauges(read))

    def observe_ingest(self, report: IngestReport) -> None:
        for (source, kind), count in report.stored_by_kind.items():
            self.events_in.labels(source, kind).inc(count)
        if report.duplicates:
            self.duplicates.inc(report.duplicates)

    def observe_job(self, job: Job, result: str, lag: float) -> None:
        self.jobs_finished.labels(job.kind, result).inc()
        self.job_start_lag.observe(max(lag, 0.0))
