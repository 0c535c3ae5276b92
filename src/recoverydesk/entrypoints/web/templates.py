"""The web desk's Jinja templates (autoescaped), their filters, and the page response with the
desk's security headers."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, FileSystemLoader, select_autoescape

HERE = Path(__file__).parent
_environment = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(["html"], default=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
templates = Jinja2Templates(env=_environment)

PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
}


def span(delta: timedelta) -> str:
    """A duration as a person reads it: ``2d 3h``, ``4h 05m``, ``12m``."""
    seconds = int(abs(delta.total_seconds()))
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3_600)
    minutes = rest // 60
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m"


def moment(value: Any) -> str:
    """A timestamp (aware datetime or ISO text) as ``2026-12-16 09:30 UTC``; blank for None."""
    if value is None or value == "":
        return ""
    when = datetime.fromisoformat(value) if isinstance(value, str) else value
    return str(when.strftime("%Y-%m-%d %H:%M:%S UTC"))


def words(value: Any) -> str:
    """A code as words: ``waiting_customer`` -> ``waiting customer``."""
    return str(value or "").replace("_", " ")


_environment.filters["span"] = span
_environment.filters["moment"] = moment
_environment.filters["words"] = words


def page(
    request: Request, name: str, context: dict[str, Any], *, status: int = 200
) -> HTMLResponse:
    """A rendered page (or fragment) with the desk's headers; ``context`` gets ``request``."""
    response = templates.TemplateResponse(request, name, context, status_code=status)
    response.headers.update(PAGE_HEADERS)
    return response
