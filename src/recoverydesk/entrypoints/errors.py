"""The one place where the desk's errors become HTTP statuses and CLI exit codes."""

from __future__ import annotations

from recoverydesk.domain.errors import (
    Busy,
    Conflict,
    DeskError,
    Forbidden,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    Unauthorized,
)

_HTTP: list[tuple[type[DeskError], int]] = [
    (PayloadTooLarge, 413),
    (InvalidInput, 422),
    (NotFound, 404),
    (Unauthorized, 401),
    (Forbidden, 403),
    (Conflict, 409),
    (Busy, 503),
]

EXIT_OK, EXIT_USER_ERROR, EXIT_USAGE = 0, 1, 2


def http_status(error: DeskError) -> int:
    for kind, status in _HTTP:
        if isinstance(error, kind):
            return status
    return 500


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    return {"error": {"code": code, "message": message}}
