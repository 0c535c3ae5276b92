"""The command line: one command per operator task (see the contract).

Exit status: 0 on success, 1 on a user error (one clear line on stderr), 2 on bad usage.
"""

from __future__ import annotations

import json
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, TypeVar

import typer
from sqlalchemy import inspect
from sqlalchemy.exc import OperationalError, ProgrammingError

from recoverydesk.bootstrap import Desk, bootstrap
from recoverydesk.config import Settings
from recoverydesk.domain.errors import DeskError, InvalidEvent
from recoverydesk.entrypoints.errors import EXIT_USER_ERROR
from recoverydesk.entrypoints.intake_file import ingest_file, read_events
from recoverydesk.services import merchants as merchant_admin
from recoverydesk.services.canonical import event_to_dict
from recoverydesk.telemetry import configure_logging

app = typer.Typer(
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="recoverydesk: the Order Recovery Desk.",
)
db_app = typer.Typer(no_args_is_help=True, help="The database schema.")
merchant_app = typer.Typer(no_args_is_help=True, help="Merchants (tenants) and their settings.")
token_app = typer.Typer(no_args_is_help=True, help="API tokens.")
jobs_app = typer.Typer(no_args_is_help=True, help="Durable jobs and timers.")
user_app = typer.Typer(no_args_is_help=True, help="People who log in to the web desk.")
for sub, name in (
    (user_app, "user"),
    (db_app, "db"),
    (merchant_app, "merchant"),
    (token_app, "token"),
    (jobs_app, "jobs"),
):
    app.add_typer(sub, name=name)

T = TypeVar("T")


def fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(EXIT_USER_ERROR)


def _open_desk(*, migrate: bool = False, quiet: bool = True) -> Desk:
    settings = Settings()
    level = settings.log_level if not quiet or "RECOVERYDESK_LOG_LEVEL" in os.environ else "warning"
    configure_logging(level, settings.log_format)
    desk = bootstrap(settings)
    if migrate:
        desk.upgrade()
    elif not inspect(desk.engine).has_table("alembic_version"):
        raise fail(
            f"the database {_shown(settings.database_url)} has no schema yet: "
            "run 'recoverydesk db upgrade' first"
        )
    return desk


def _shown(url: str) -> str:
    return url.rsplit("@", maxsplit=1)[-1] if "@" in url else url


def guarded(action: Callable[[], T]) -> T:
    """Run a command body; the desk's errors become one line on stderr and exit status 1."""
    try:
        return action()
    except DeskError as error:
        raise fail(error.message) from None
    except (OperationalError, ProgrammingError) as error:
        raise fail(f"database error: {str(error.orig).splitlines()[0]}") from None


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or migrate the schema (safe to run again)."""
    settings = Settings()
    configure_logging("warning", settings.log_format)
    guarded(lambda: bootstrap(settings).upgrade())
    typer.echo(f"schema up to date: {_shown(settings.database_url)}")


@merchant_app.command("add")
def merchant_add(
    name: str,
    config: Annotated[Path | None, typer.Option(help="a merchant configuration file")] = None,
) -> None:
    """Create a merchant; prints its id."""
    desk = _open_desk()

    def body() -> int:
        with desk.uow() as uow:
            merchant = merchant_admin.add_merchant(uow, clock=desk.clock, name=name, config=config)
            uow.commit()
        return merchant.id

    typer.echo(guarded(body))


@merchant_app.command("apply")
def merchant_apply(name: str, file: Path) -> None:
    """Validate and apply a configuration file as a new version (the old one is kept)."""
    desk = _open_desk()

    def body() -> int:
        with desk.uow() as uow:
            version = merchant_admin.apply_settings(uow, clock=desk.clock, name=name, config=file)
            uow.commit()
        return version

    typer.echo(f"merchant {name}: configuration version {guarded(body)} applied")


@token_app.command("create")
def token_create(
    merchant: Annotated[str, typer.Option(help="the merchant the token may see")],
    role: Annotated[str, typer.Option(help="agent, lead, finance, risk or admin")] = "agent",
) -> None:
    """Print a new API token (only its hash is stored: keep it safe)."""
    desk = _open_desk()

    def body() -> str:
        with desk.uow() as uow:
            token = merchant_admin.create_token(
                uow, clock=desk.clock, merchant_name=merchant, role=role
            )
            uow.commit()
        return token

    typer.echo(guarded(body))


@user_app.command("add")
def user_add(
    name: str,
    role: Annotated[str, typer.Option(help="agent, lead, finance, risk or admin")],
    merchant: Annotated[list[str], typer.Option(help="a merchant the user works (repeat)")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="read the password from stdin")
    ] = False,
) -> None:
    """Add a user of the web desk (prompts for the password on a terminal, else reads stdin)."""
    from recoverydesk.entrypoints.web.users_cli import add_web_user

    desk = _open_desk()
    guarded(lambda: add_web_user(desk, name, role, merchant, password_stdin=password_stdin))
    typer.echo(f"user {name} added ({role}; {', '.join(merchant)})")


@app.command("ingest")
def ingest(
    file: Path,
    merchant: Annotated[str, typer.Option(help="the merchant the events belong to")],
    batch: Annotated[int, typer.Option(min=1, max=10_000)] = 1000,
) -> None:
    """Import canonical events from a JSONL file (each event stored once)."""
    if file.suffix.lower() == ".csv":
        raise fail(
            "CSV exports need a column mapping; this desk imports canonical JSONL "
            "(vendor CSV profiles come with the assessment job)"
        )
    desk = _open_desk()
    result = guarded(lambda: ingest_file(desk, file, merchant_name=merchant, batch=batch))
    typer.echo(result.summary())
    if result.invalid:
        raise typer.Exit(EXIT_USER_ERROR)


@app.command("normalize")
def normalize(provider: str, file: Path) -> None:
    """Print the canonical events a payload becomes (nothing is stored).

    PROVIDER is ``canonical`` (JSONL of canonical events) or a vendor (``shopify``, ``stripe`` …)
    whose one JSON payload in FILE is translated."""
    if provider != "canonical":
        _normalize_vendor(provider, file)
        return
    bad = 0
    for where, outcome in guarded(lambda: list(read_events(file))):
        if isinstance(outcome, InvalidEvent):
            bad += 1
            typer.echo(f"{file}: {where}: {outcome.message}", err=True)
        else:
            typer.echo(json.dumps(event_to_dict(outcome.event), sort_keys=True))
    if bad:
        raise typer.Exit(EXIT_USER_ERROR)


def _normalize_vendor(provider: str, file: Path) -> None:
    from recoverydesk.connectors.normalize import PROVIDERS
    from recoverydesk.connectors.normalize import normalize as normalize_payload

    if provider not in PROVIDERS:
        known = ", ".join(["canonical", *sorted(PROVIDERS)])
        raise fail(f"unknown provider {provider!r}; this desk knows: {known}")
    try:
        payload = json.loads(file.read_text(encoding="utf-8"))
    except OSError as error:
        raise fail(f"{file}: cannot read ({error.strerror or error})") from None
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise fail(f"{file}: not a JSON payload ({error})") from None
    try:
        result = normalize_payload(provider, payload)
    except DeskError as error:
        raise fail(f"{file}: {error.message}") from None
    for item in result.events:
        typer.echo(json.dumps(item, sort_keys=True))
    if not result.events:
        typer.echo(f"not an order exception: {result.not_an_exception}")


@app.command("replay")
def replay(
    events: Path,
    out: Annotated[Path, typer.Option(help="the folder for cases.json, actions.json, kpis.json")],
    config: Annotated[Path | None, typer.Option(help="merchant configuration to replay")] = None,
    until: Annotated[str | None, typer.Option(help="ISO time to stop at")] = None,
) -> None:
    """Run the desk in simulated time over an event stream (backtesting)."""
    from recoverydesk.entrypoints.replay import run_replay

    configure_logging("warning", "json")
    summary = guarded(lambda: run_replay(events, out=out, config=config, until=until))
    typer.echo(summary)


@app.command("kpi")
def kpi(
    *,
    merchant: Annotated[str, typer.Option(help="the merchant whose figures to report")],
    week: Annotated[str | None, typer.Option(help="ISO week YYYY-Www (merchant's zone)")] = None,
    first: Annotated[str | None, typer.Option("--from", help="first day, YYYY-MM-DD")] = None,
    last: Annotated[str | None, typer.Option("--to", help="last day (included)")] = None,
    fmt: Annotated[str, typer.Option("--format", help="json, csv or html")] = "json",
    out: Annotated[Path | None, typer.Option(help="write to this file, not stdout")] = None,
) -> None:
    """The KPI report (KPIS.md) of a week or a date range from the desk's own data."""
    from recoverydesk.reports.weekly_report import ReportFormat, render, weekly_figures

    if fmt not in {f.value for f in ReportFormat}:
        raise fail(f"--format {fmt!r}: use json, csv or html")
    desk = _open_desk()

    def body() -> str:
        with desk.engine.connect() as db:
            figures = weekly_figures(db, merchant, week=week, first=first, last=last)
        return render(figures, ReportFormat(fmt))

    text = guarded(body)
    if out is None:
        typer.echo(text, nl=False)
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as error:
        raise fail(f"{out}: cannot write ({error.strerror or error})") from None
    typer.echo(f"wrote {out}")


@app.command("assess")
def assess(
    files: Annotated[list[Path], typer.Argument(help="order export CSV file(s)")],
    out: Annotated[Path, typer.Option(help="the folder for report.html, summary.json, cases.csv")],
    mapping: Annotated[Path | None, typer.Option(help="a column mapping (YAML or JSON)")] = None,
    profile: Annotated[str | None, typer.Option(help="a built-in profile, e.g. amazon")] = None,
) -> None:
    """The assessment job: an order export in, recovery figures and a starter config out."""
    from recoverydesk.reports.assess import run_assessment
    from recoverydesk.reports.assess.stages import assess_progress

    with assess_progress() as progress:
        result = guarded(
            lambda: run_assessment(
                files, out=out, mapping=mapping, profile=profile, progress=progress
            )
        )
    figures = result.summary["figures"]
    typer.echo(
        f"{figures['orders']} orders, cancellation rate "
        f"{figures['cancellation_rate']['value']}, {figures['cases']} cases: "
        f"{out / 'report.html'}"
    )


@app.command("serve")
def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    worker: Annotated[bool, typer.Option(help="run a job worker in this process")] = True,
) -> None:
    """API (and job worker) in one process."""
    import uvicorn

    from recoverydesk.entrypoints.api.app import create_app

    desk = _open_desk(migrate=True, quiet=False)
    uvicorn.run(create_app(desk, run_worker=worker), host=host, port=port, log_level="warning")


@app.command("worker")
def worker(
    once: Annotated[bool, typer.Option(help="one pass over due jobs, then exit")] = False,
    name: Annotated[str | None, typer.Option(help="worker name in the attempt history")] = None,
) -> None:
    """A job worker alone; any number may run against PostgreSQL."""
    from recoverydesk.entrypoints.worker import run_worker, stop_on_signals

    desk = _open_desk(quiet=False)
    stop = threading.Event()
    stop_on_signals(stop)
    run_worker(desk, stop=stop, name=name, once=once)


@app.command("demo")
def demo(
    host: str = "127.0.0.1",
    port: int = 8000,
    orders: Annotated[int, typer.Option(min=1, max=100_000)] = 300,
) -> None:
    """Sandbox merchant with live simulated traffic, served on localhost."""
    from recoverydesk.entrypoints.demo import run_demo

    desk = _open_desk(migrate=True, quiet=False)
    guarded(lambda: run_demo(desk, host=host, port=port, orders=orders))


@jobs_app.command("list")
def jobs_list(status: str | None = None, limit: int = 50) -> None:
    """Jobs with their attempts and last error."""
    desk = _open_desk()
    with desk.reader() as uow:
        for row in uow.jobs.listing(status=status, limit=limit):
            typer.echo(json.dumps(row, default=str, sort_keys=True))


@jobs_app.command("show")
def jobs_show(job_id: int) -> None:
    """Every attempt of one job."""
    desk = _open_desk()
    with desk.reader() as uow:
        attempts = uow.jobs.attempts(job_id)
    if not attempts:
        raise fail(f"no job {job_id} with attempts")
    for row in attempts:
        typer.echo(json.dumps(row, default=str, sort_keys=True))


@jobs_app.command("retry")
def jobs_retry(job_id: int) -> None:
    """Put a dead-lettered job back in the queue."""
    desk = _open_desk()
    with desk.uow() as uow:
        retried = uow.jobs.retry(job_id, now=desk.clock.now())
        uow.commit()
    if not retried:
        raise fail(f"job {job_id} is not in the dead letters")
    typer.echo(f"job {job_id} queued again")


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
