"""``recoverydesk user add``: the password comes from a prompt on a terminal (asked twice),
else from the first line of stdin (``--password-stdin`` forces stdin)."""

from __future__ import annotations

import getpass
import secrets
import sys

from recoverydesk.bootstrap import Desk
from recoverydesk.domain.errors import InvalidInput
from recoverydesk.persistence.user_store import SqlUserStore
from recoverydesk.services.merchants import require_merchant
from recoverydesk.services.ports import StoredUser
from recoverydesk.services.users import Argon2Passwords, add_user, set_password


def read_password(*, from_stdin: bool) -> str:
    if from_stdin or not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise InvalidInput("the two passwords differ")
    return first


def add_web_user(
    desk: Desk,
    name: str,
    role: str,
    merchants: list[str],
    *,
    password_stdin: bool,
    password: str | None = None,
    actor: str = "cli",
) -> StoredUser:
    with desk.reader() as uow:
        ids = [require_merchant(uow, merchant).id for merchant in merchants]
    secret = password if password is not None else read_password(from_stdin=password_stdin)
    with SqlUserStore(desk.engine) as users:
        user = add_user(
            users,
            name=name,
            role=role,
            merchant_ids=ids,
            password=secret,
            passwords=Argon2Passwords(),
            actor=actor,
            now=desk.clock.now(),
        )
        users.commit()
    return user


DEMO_USER = "demo"


def demo_login(desk: Desk, merchant: str) -> tuple[str, str]:
    """The demo's login: user ``demo`` (lead of the sandbox merchant) with a new random
    password each run."""
    password = secrets.token_urlsafe(12)
    with SqlUserStore(desk.engine) as users:
        exists = users.by_name(DEMO_USER) is not None
    if not exists:
        add_web_user(
            desk,
            DEMO_USER,
            "lead",
            [merchant],
            password_stdin=False,
            password=password,
            actor="demo",
        )
        return DEMO_USER, password
    with SqlUserStore(desk.engine) as users:
        set_password(
            users,
            name=DEMO_USER,
            password=password,
            passwords=Argon2Passwords(),
            actor="demo",
            now=desk.clock.now(),
        )
        users.commit()
    return DEMO_USER, password
