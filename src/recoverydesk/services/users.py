"""People of the web desk: adding users, checking passwords, sessions and the audit log (F21).

Passwords are hashed with argon2id (``argon2-cffi``) behind ``PasswordHashing``; a hash made
with older parameters is replaced at the next login. A session is a random token in the
browser's cookie; only its SHA-256 is stored, beside the session's CSRF token. Every login,
failed login, logout and user added is written to the audit log.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from recoverydesk.domain.errors import Conflict, InvalidInput
from recoverydesk.services.merchants import Role
from recoverydesk.services.ports import AuditEntry, StoredUser, UserStore

USER_NAME = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,59}$")
SHORTEST_PASSWORD = 10
LONGEST_PASSWORD = 1024
SESSION_LIFETIME = timedelta(hours=12)


class PasswordHashing(Protocol):
    def hash(self, password: str) -> str: ...

    def verify(self, stored: str, password: str) -> bool: ...

    def needs_rehash(self, stored: str) -> bool: ...


class Argon2Passwords:
    """argon2id with the library's current recommended parameters."""

    def __init__(self, hasher: PasswordHasher | None = None) -> None:
        self._hasher = hasher or PasswordHasher()

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def verify(self, stored: str, password: str) -> bool:
        try:
            return self._hasher.verify(stored, password)
        except (VerificationError, InvalidHashError):
            return False

    def needs_rehash(self, stored: str) -> bool:
        return self._hasher.check_needs_rehash(stored)


def check_password(password: str) -> str:
    if not SHORTEST_PASSWORD <= len(password) <= LONGEST_PASSWORD:
        raise InvalidInput(
            f"password: between {SHORTEST_PASSWORD} and {LONGEST_PASSWORD} characters"
        )
    return password


def role_of(text: str) -> Role:
    try:
        return Role(text)
    except ValueError:
        roles = ", ".join(r.value for r in Role)
        raise InvalidInput(f"unknown role {text!r}; use one of: {roles}") from None


def add_user(
    store: UserStore,
    *,
    name: str,
    role: str,
    merchant_ids: Sequence[int],
    password: str,
    passwords: PasswordHashing,
    actor: str,
    now: datetime,
) -> StoredUser:
    """A new user of these merchants (at least one); the caller commits."""
    if not USER_NAME.match(name):
        raise InvalidInput(f"user name {name!r}: lower-case letters, digits, '.', '_', '@', '-'")
    chosen = role_of(role)
    if not merchant_ids:
        raise InvalidInput("merchant: a user works at least one merchant (--merchant)")
    check_password(password)
    if store.by_name(name) is not None:
        raise Conflict(f"user {name!r} exists already", code="user_exists")
    user = store.add(
        name,
        role=chosen.value,
        password_hash=passwords.hash(password),
        merchant_ids=merchant_ids,
        now=now,
    )
    for merchant_id in user.merchants:
        store.audit(AuditEntry(now, actor, "user_add", merchant_id, name, {"role": user.role}))
    return user


# A hash to verify against when the user does not exist, so both answers take as long.
_NOBODY = Argon2Passwords().hash(secrets.token_urlsafe(16))


def authenticate_user(
    store: UserStore, *, name: str, password: str, passwords: PasswordHashing, now: datetime
) -> StoredUser | None:
    """The user whose password this is (audited as ``login``), else None (``login_failed``)."""
    user = store.by_name(name[:60])
    stored = user.password_hash if user is not None else _NOBODY
    matches = passwords.verify(stored, password[:LONGEST_PASSWORD])
    if user is None or user.disabled or not matches:
        store.audit(AuditEntry(now, name[:100] or "-", "login_failed"))
        return None
    if passwords.needs_rehash(user.password_hash):
        store.set_password_hash(user.id, passwords.hash(password))
    store.audit(AuditEntry(now, user.name, "login"))
    return user


@dataclass(frozen=True, slots=True)
class Session:
    token: str  # the cookie's value (never stored)
    csrf: str


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start_session(
    store: UserStore, user: StoredUser, *, now: datetime, lifetime: timedelta = SESSION_LIFETIME
) -> Session:
    session = Session(secrets.token_urlsafe(32), secrets.token_urlsafe(32))
    store.start_session(
        user.id,
        token_hash=_digest(session.token),
        csrf=session.csrf,
        now=now,
        expires_at=now + lifetime,
    )
    return session


def session_user(store: UserStore, token: str, *, now: datetime) -> tuple[StoredUser, str] | None:
    """The user of a live session and its CSRF token."""
    if not token or len(token) > 200:
        return None
    return store.session(_digest(token), now=now)


def end_session(store: UserStore, token: str, user: str, *, now: datetime) -> None:
    store.end_session(_digest(token), now=now)
    store.audit(AuditEntry(now, user, "logout"))


def set_password(
    store: UserStore,
    *,
    name: str,
    password: str,
    passwords: PasswordHashing,
    actor: str,
    now: datetime,
) -> StoredUser:
    """A new password for an existing user (audited as ``password_set``)."""
    user = store.by_name(name)
    if user is None:
        raise InvalidInput(f"no user {name!r}")
    store.set_password_hash(user.id, passwords.hash(check_password(password)))
    store.audit(AuditEntry(now, actor, "password_set", None, name))
    return user
