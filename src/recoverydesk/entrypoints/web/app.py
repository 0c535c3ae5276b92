"""The web desk's routes under ``/desk``: login and logout, the queue board (live by htmx
polling) and the vendored static files. The case workspace is in ``cases``."""

from __future__ import annotations

import secrets
from typing import Annotated

from fastapi import APIRouter, Depends, Form, HTTPException, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, RedirectResponse, Response

from recoverydesk.entrypoints.web import cases, dashboard
from recoverydesk.entrypoints.web.auth import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    Checked,
    LoggedIn,
    WebUser,
    csrf_token,
    desk_of,
    secure_cookie,
)
from recoverydesk.entrypoints.web.board_query import (
    BoardFilter,
    filter_choices,
    page_groups,
    queue_counts,
    top_cases,
)
from recoverydesk.entrypoints.web.templates import HERE, page
from recoverydesk.persistence.user_store import SqlUserStore
from recoverydesk.services.users import (
    SESSION_LIFETIME,
    Argon2Passwords,
    authenticate_user,
    end_session,
    start_session,
)

web_router = APIRouter(prefix="/desk", include_in_schema=False)
web_router.include_router(cases.router)
web_router.include_router(dashboard.router)
PASSWORDS = Argon2Passwords()
STATIC = {
    "htmx.min.js": "text/javascript",
    "desk.css": "text/css",
}


@web_router.get("/static/{name}")
def static_file(name: str) -> FileResponse:
    """Only the desk's own files, by name (no paths)."""
    if name not in STATIC:
        raise HTTPException(404, f"no static file {name!r}")
    return FileResponse(
        HERE / "static" / name,
        media_type=STATIC[name],
        headers={"Cache-Control": "public, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )


@web_router.get("")
@web_router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/desk/board", status_code=303)


def _safe_next(target: str | None) -> str:
    """Only a path of the desk itself (no other site, no scheme-relative URL)."""
    if target and target.startswith("/desk") and not target.startswith("//"):
        return target
    return "/desk/board"


@web_router.get("/login")
def login_page(request: Request, next: str | None = None, failed: bool = False) -> Response:
    token = request.cookies.get(LOGIN_CSRF_COOKIE) or secrets.token_urlsafe(32)
    context = {"next": _safe_next(next), "login_csrf": token, "failed": failed, "user": None}
    response = page(request, "login.html", context, status=401 if failed else 200)
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=secure_cookie(request),
        path="/desk/login",
    )
    return response


@web_router.post("/login")
def login(
    request: Request,
    name: Annotated[str, Form(max_length=100)],
    password: Annotated[str, Form(max_length=1024)],
    csrf_token: Annotated[str, Form(max_length=100)] = "",
    next: Annotated[str, Form(max_length=500)] = "/desk/board",
) -> Response:
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if not expected or not secrets.compare_digest(csrf_token.encode(), expected.encode()):
        raise HTTPException(403, "the login form expired: open it again (CSRF)")
    desk = desk_of(request)
    now = desk.clock.now()
    with SqlUserStore(desk.engine) as users:
        user = authenticate_user(
            users, name=name.strip(), password=password, passwords=PASSWORDS, now=now
        )
        session = start_session(users, user, now=now) if user is not None else None
        users.commit()
    if session is None:
        return login_page(request, next=next, failed=True)
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        session.token,
        max_age=int(SESSION_LIFETIME.total_seconds()),
        httponly=True,
        samesite="lax",
        secure=secure_cookie(request),
        path="/desk",
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/desk/login")
    return response


@web_router.post("/logout")
def logout(request: Request, user: Checked) -> Response:
    desk = desk_of(request)
    with SqlUserStore(desk.engine) as users:
        end_session(users, request.state.session_token, user.name, now=desk.clock.now())
        users.commit()
    response = RedirectResponse("/desk/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/desk")
    return response


def _merchant_of(user: WebUser, merchant: int | None) -> int:
    if merchant is None:
        if not user.merchants:
            raise HTTPException(404, "you work no merchant yet: ask an admin")
        return next(iter(user.merchants))
    if merchant not in user.merchants:
        raise HTTPException(404, f"no merchant {merchant}")
    return merchant


Filters = Annotated[str | None, Query(max_length=60)]


def _board(
    request: Request,
    user: WebUser,
    merchant: int | None,
    wanted: BoardFilter,
    name: str,
) -> Response:
    desk = desk_of(request)
    merchant_id = _merchant_of(user, merchant)
    now = desk.clock.now()
    with desk.engine.connect() as db:
        counts = queue_counts(db, merchant_id, wanted, now=now)
        rows = top_cases(db, merchant_id, wanted, now=now, groups=page_groups(counts))
        choices = filter_choices(db, merchant_id) if name == "board.html" else {}
    context = {
        "user": user,
        "csrf": csrf_token(request),
        "merchant_id": merchant_id,
        "merchant_name": user.merchants[merchant_id],
        "wanted": wanted,
        "counts": counts,
        "rows": rows,
        "choices": choices,
        "now": now,
        "query": wanted.query_string(merchant=str(merchant_id)),
    }
    return page(request, name, context)


def board_filter(
    *,
    queue: Filters = None,
    category: Filters = None,
    priority: Filters = None,
    channel: Filters = None,
    fulfillment_type: Filters = None,
    owner: Filters = None,
) -> BoardFilter:
    """The board's filters, from the query string."""
    return BoardFilter(queue, category, priority, channel, fulfillment_type, owner)


Wanted = Annotated[BoardFilter, Depends(board_filter)]


@web_router.get("/board")
async def board(
    request: Request, user: LoggedIn, wanted: Wanted, merchant: int | None = None
) -> Response:
    return await run_in_threadpool(_board, request, user, merchant, wanted, "board.html")


@web_router.get("/board/live")
async def board_live(
    request: Request, user: LoggedIn, wanted: Wanted, merchant: int | None = None
) -> Response:
    """The board's live part (counts and the top of the queue), polled every 5 seconds."""
    return await run_in_threadpool(_board, request, user, merchant, wanted, "_board_live.html")
