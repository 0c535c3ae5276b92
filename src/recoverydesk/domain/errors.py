"""The desk's one error tree.

Each error has a stable code; entrypoints map them to HTTP statuses and exit codes.
"""

from __future__ import annotations

from typing import ClassVar


class DeskError(Exception):
    """Base of every error the desk raises on purpose."""

    code: ClassVar[str] = "desk_error"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code  # type: ignore[misc]


class InvalidInput(DeskError):
    """The caller sent something the desk cannot accept (bad event, bad config, bad argument)."""

    code = "invalid_input"


class InvalidEvent(InvalidInput):
    code = "invalid_event"


class InvalidConfig(InvalidInput):
    code = "invalid_config"


class NotFound(DeskError):
    code = "not_found"


class Unauthorized(DeskError):
    code = "unauthorized"


class Forbidden(DeskError):
    code = "forbidden"


class Conflict(DeskError):
    """The request is well formed but the current state forbids it."""

    code = "conflict"


class InvalidTransition(Conflict):
    code = "invalid_transition"


class Busy(DeskError):
    """The desk could not do it now (the database kept choosing this request as a deadlock
    victim); the same request later will work."""

    code = "busy"


class PayloadTooLarge(InvalidInput):
    code = "payload_too_large"
