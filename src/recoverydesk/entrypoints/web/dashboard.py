"""The web desk's KPI dashboard: ``GET /desk/dashboard?merchant=ID&week=YYYY-Www`` (tiles with
their counts and threshold states, the weekly report's charts with a table each) and the week's
report as JSON, CSV or HTML from the session (``/desk/dashboard/report.{json,csv,html}``; the
API's ``/api/v1/kpis`` wants a bearer token). Every role reads the dashboard of its own
merchants; another merchant's id is a 404. The export upload (``/desk/assess``) is in
``dashboard_assess``; this router carries both."""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Annotated, Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import Response

from recoverydesk.bootstrap import Desk
from recoverydesk.domain.errors import DeskError
from recoverydesk.entrypoints.web import dashboard_assess
from recoverydesk.entrypoints.web.auth import LoggedIn, WebUser, csrf_token, desk_of
from recoverydesk.entrypoints.web.dashboard_tiles import hours, percent, segment_rows, tiles
from recoverydesk.entrypoints.web.templates import page
from recoverydesk.persistence.user_store import SqlUserStore
from recoverydesk.reports.kpis import merchant_named
from recoverydesk.reports.weekly_report import (
    MEDIA_TYPES,
    ReportFormat,
    charts,
    render,
    weekly_figures,
)
from recoverydesk.services.ports import AuditEntry

router = APIRouter()
router.include_router(dashboard_assess.router)
dashboard_router = router  # the name the web desk's notes used
Week = Annotated[str | None, Query(max_length=10)]
CHARTS = (  # (id, caption): the weekly report's charts, in its order
    ("cancellation", "Cancellation rate by channel and fulfilment type, against the 2.5% line"),
    ("pre_fulfillment", "Pre-fulfilment cancel rate, against the 2.5% line"),
    ("time_to_cancel", "Time to cancel: requests with a final outcome, by duration"),
    ("backlog", "Exception backlog at the end of the week, by age"),
    ("sla", "SLA attainment: first touch and resolution"),
    ("pareto", "Root causes of the week's closed cases (Pareto), with their owners"),
)
# Served as a stylesheet of its own (the desk's pages allow no inline styles).
DASHBOARD_CSS = """
.tiles { list-style: none; padding: 0; margin: 0 0 1rem; display: grid; gap: 0.75rem;
         grid-template-columns: repeat(auto-fill, minmax(13.5rem, 1fr)); }
.tile { background: var(--card, #fff); border: 1px solid var(--line, #ccc); border-left-width: 6px;
        border-radius: 0.4rem; padding: 0.6rem 0.75rem; display: grid; gap: 0.15rem; }
.tile .label { font-weight: 600; }
.tile .value { font-size: 1.5rem; font-weight: 700; font-variant-numeric: tabular-nums; }
.tile .counts { font-size: 0.85rem; color: var(--muted, #555); }
.tile .state { font-size: 0.85rem; font-weight: 600; padding: 0.05rem 0.35rem;
               border-radius: 0.25rem; justify-self: start; }
.tile[data-state=risk-breached] { border-left-color: var(--red, #a4161a); }
.tile[data-state=risk-on_track] { border-left-color: var(--green, #1b5e20); }
.tile[data-state=risk-none] { border-left-color: #bbb; }
.charts { display: grid; gap: 1rem;
          grid-template-columns: repeat(auto-fit, minmax(min(100%, 40rem), 1fr)); }
.charts figure { margin: 0; }
.charts svg { max-width: 100%; height: auto; display: block; }
.week-pick { display: flex; flex-wrap: wrap; gap: 0.5rem; align-items: center;
             margin-bottom: 0.75rem; }
.downloads { display: flex; flex-wrap: wrap; gap: 1rem; }
.runs td, .figures td { vertical-align: top; }
"""


def current_week(desk: Desk, zone: str) -> str:
    """The ISO week (``YYYY-Www``) it is now in ``zone``."""
    year, week, _ = desk.clock.now().astimezone(ZoneInfo(zone)).isocalendar()
    return f"{year}-W{week:02d}"


def week_beside(label: str, weeks: int) -> str | None:
    """The ISO week ``weeks`` before (negative) or after ``label``."""
    found = re.match(r"^(\d{4})-W(\d{2})$", label)
    if found is None:
        return None
    monday = date.fromisocalendar(int(found[1]), int(found[2]), 1) + timedelta(weeks=weeks)
    year, week, _ = monday.isocalendar()
    return f"{year}-W{week:02d}"


def _merchant_of(user: WebUser, merchant: int | None) -> int | None:
    """The merchant asked for, if the user works it (the first of theirs when none asked)."""
    if merchant is None:
        return next(iter(user.merchants), None)
    return merchant if merchant in user.merchants else None


def _not_found(request: Request, user: WebUser, merchant: int | None) -> Response:
    message = (
        f"No merchant {merchant} among yours."
        if merchant is not None
        else "You work no merchant yet: ask an admin."
    )
    context = {"user": user, "csrf": csrf_token(request), "status": 404, "message": message}
    return page(request, "error.html", context, status=404)


def _figures(desk: Desk, name: str, week: str | None) -> dict[str, Any]:
    with desk.engine.connect() as db:
        _, zone = merchant_named(db, name)
        return weekly_figures(db, name, week=week or current_week(desk, zone))


def _dashboard(request: Request, user: WebUser, merchant: int | None, week: str | None) -> Response:
    chosen = _merchant_of(user, merchant)
    if chosen is None:
        return _not_found(request, user, merchant)
    desk = desk_of(request)
    context: dict[str, Any] = {
        "user": user,
        "csrf": csrf_token(request),
        "merchant_id": chosen,
        "merchant_name": user.merchants[chosen],
        "week": week or "",
        "may_assess": user.may(dashboard_assess.ASSESS_ROLES),
    }
    try:
        figures = _figures(desk, user.merchants[chosen], week)
    except DeskError as error:
        context["error"] = error.message
        return page(request, "dashboard.html", context, status=422)
    label = figures["period"].get("label", week or "")
    context.update(
        f=figures,
        week=label,
        before=week_beside(label, -1),
        after=week_beside(label, 1),
        tiles=tiles(figures),
        charts=charts(figures),
        captions=dict(CHARTS),
        segments=segment_rows(figures),
        percent=percent,
        hours=hours,
        query=f"merchant={chosen}&week={label}",
    )
    return page(request, "dashboard.html", context)


@router.get("/dashboard")
async def dashboard(
    request: Request, user: LoggedIn, merchant: int | None = None, week: Week = None
) -> Response:
    return await run_in_threadpool(_dashboard, request, user, merchant, week)


@router.get("/dashboard/dashboard.css")
def dashboard_css() -> Response:
    return Response(
        DASHBOARD_CSS,
        media_type="text/css",
        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )


# The downloaded HTML report is self-contained: its own inline CSS, no script, nothing fetched.
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; sandbox"


def _report(
    request: Request, user: WebUser, fmt: ReportFormat, merchant: int | None, week: str | None
) -> Response:
    chosen = _merchant_of(user, merchant)
    if chosen is None:
        return _not_found(request, user, merchant)
    desk = desk_of(request)
    name = user.merchants[chosen]
    try:
        figures = _figures(desk, name, week)
    except DeskError as error:
        context = {"user": user, "csrf": csrf_token(request), "status": 422}
        return page(request, "error.html", context | {"message": error.message}, status=422)
    label = figures["period"].get("label", "week")
    with SqlUserStore(desk.engine) as users:
        detail = {"week": label, "format": fmt.value}
        users.audit(AuditEntry(desk.clock.now(), user.name, "kpi.export", chosen, None, detail))
        users.commit()
    safe = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-") or "merchant"
    headers = {
        "Content-Disposition": f'attachment; filename="kpis-{safe}-{label}.{fmt.value}"',
        "Cache-Control": "no-store",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": REPORT_CSP,
    }
    return Response(render(figures, fmt), media_type=MEDIA_TYPES[fmt.value], headers=headers)


@router.get("/dashboard/report.{fmt}")
async def dashboard_report(
    request: Request,
    user: LoggedIn,
    fmt: ReportFormat,
    merchant: int | None = None,
    week: Week = None,
) -> Response:
    """The week's KPI report (JSON, CSV or HTML) as a download, for the session's user."""
    return await run_in_threadpool(_report, request, user, fmt, merchant, week)
