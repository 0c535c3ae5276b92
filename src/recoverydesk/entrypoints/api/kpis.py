"""``GET /api/v1/kpis``: the KPI figures of the token's merchant for a week or a date range,
as JSON (default), CSV or the self-contained HTML report."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from recoverydesk.bootstrap import Desk
from recoverydesk.entrypoints.api.routes import Authorized
from recoverydesk.reports.weekly_report import MEDIA_TYPES, ReportFormat, render, weekly_figures

router = APIRouter(prefix="/api/v1")


@router.get(
    "/kpis",
    tags=["reports"],
    summary="KPI figures for an ISO week (week=YYYY-Www) or a date range (from, to)",
)
def get_kpis(
    request: Request,
    who: Authorized,
    *,
    week: Annotated[str | None, Query(max_length=10, examples=["2026-W48"])] = None,
    first: Annotated[str | None, Query(alias="from", max_length=10)] = None,
    last: Annotated[str | None, Query(alias="to", max_length=10)] = None,
    format: ReportFormat = ReportFormat.JSON,
) -> Response:
    desk: Desk = request.app.state.desk
    with desk.engine.connect() as db:
        figures = weekly_figures(db, who.merchant, week=week, first=first, last=last)
    return Response(render(figures, format), media_type=MEDIA_TYPES[format.value])
