"""Who is at the web desk: the session cookie, the user's role and merchants, and CSRF.

The session cookie (``rd_session``) holds a random token; the database keeps its hash, the
user and the session's CSRF token (``services.users``). The cookie is HttpOnly, SameSite=Lax,
scoped to ``/desk``, and Secure when the desk is reached over https. Every POST carries the
session's CSRF token (the ``csrf_token`` form field or the ``X-CSRF-Token`` header htmx sends);
the login form, before any session, uses a double-submit cookie instead.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Annotated
from urllib.parse import quote

from fastapi import Depends, HTTPException, Request

from recoverydesk.bootstrap import Desk
from recoverydesk.persistence.user_store import SqlUserStore
from recoverydesk.services.merchants import Role
from recoverydesk.services.users import session_user

SESSION_COOKIE = "rd_session"
LOGIN_CSRF_COOKIE = "rd_login_csrf"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
MONEY_ROLES = frozenset({Role.FINANCE, Role.LEAD, Role.ADMIN})
CASE_ROLES = frozenset({Role.AGENT, Role.LEAD, Role.RISK, Role.ADMIN})
LEAD_ROLES = frozenset({Role.LEAD, Role.ADMIN})


@dataclass(frozen=True)
class WebUser:
    name: str
    role: Role
    merchants: dict[int, str] = field(default_factory=dict)  # id -> name

    def may(self, roles: frozenset[Role]) -> bool:
        return self.role in roles


def desk_of(request: Request) -> Desk:
    desk: Desk = request.app.state.desk
    return desk


def login_url(request: Request) -> str:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.headers.get("hx-request"):  # a fragment: come back to the page that asked
        current = request.headers.get("hx-current-url", "")
        target = current.split("://", 1)[-1].split("/", 1)[-1] if current else "desk/board"
        target = "/" + target.lstrip("/")
    return f"/desk/login?next={quote(target, safe='')}"


def current_user(request: Request) -> WebUser:
    """The logged-in user; a browser without a live session goes to the login page (htmx
    polling is told the same with ``HX-Redirect``)."""
    token = request.cookies.get(SESSION_COOKIE, "")
    desk = desk_of(request)
    found = None
    if token:
        with SqlUserStore(desk.engine) as users:
            found = session_user(users, token, now=desk.clock.now())
    if found is None:
        where = login_url(request)
        if request.headers.get("hx-request"):
            raise HTTPException(401, "log in again", headers={"HX-Redirect": where})
        raise HTTPException(303, "log in first", headers={"Location": where})
    stored, csrf = found
    user = WebUser(stored.name, Role(stored.role), dict(stored.merchants))
    request.state.user = user
    request.state.csrf = csrf
    request.state.session_token = token
    return user


LoggedIn = Annotated[WebUser, Depends(current_user)]


def require_roles(*roles: Role) -> Callable[[WebUser], WebUser]:
    """A dependency: the logged-in user, refused (403) unless one of ``roles``."""
    allowed = frozenset(roles)

    def check(user: LoggedIn) -> WebUser:
        if user.role not in allowed:
            names = ", ".join(sorted(r.value for r in allowed))
            raise HTTPException(403, f"for {names} only, not {user.role.value}")
        return user

    return check


def csrf_token(request: Request) -> str:
    """The session's CSRF token (for forms: ``<input type=hidden name=csrf_token>``)."""
    token: str = getattr(request.state, "csrf", "")
    return token


async def check_csrf(request: Request, user: LoggedIn) -> WebUser:
    """For every POST: the session's CSRF token must come back, else 403."""
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        form = await request.form()
        value = form.get(CSRF_FIELD)
        sent = value if isinstance(value, str) else ""
    expected = csrf_token(request)
    if not expected or not secrets.compare_digest(sent.encode(), expected.encode()):
        raise HTTPException(403, "the form expired or did not come from the desk (CSRF)")
    return user


Checked = Annotated[WebUser, Depends(check_csrf)]


def secure_cookie(request: Request) -> bool:
    return request.url.scheme == "https"
