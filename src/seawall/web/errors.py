"""Errors that mean the request was bad, wherever deep in the code they surface.

Deeply nested JSON (RecursionError from the parser or from code walking it), huge integers in a
path, a query or a body (OverflowError when SQLite, ``datetime`` or ``int(float)`` meet them; a
DataError from PostgreSQL when a value does not fit its column) are the caller's input, not the
server's fault: they are answered 4xx with a message saying so, on every route (the app's error
handlers and the HMA routes' own shape both use ``bad_input``).
"""

from __future__ import annotations

from sqlalchemy.exc import DataError

# The class of error → (status, what the caller is told). Checked in order: the first match wins.
BAD_INPUT: list[tuple[type[Exception], int, str]] = [
    (RecursionError, 400, "the request is nested too deeply"),
    (OverflowError, 422, "a number in the request is out of range"),
    (DataError, 422, "a value in the request is out of range or too long for its field"),
]


def bad_input(exc: BaseException) -> tuple[int, str] | None:
    """(status, message) when ``exc`` means the request was bad, else None."""
    for kind, status, message in BAD_INPUT:
        if isinstance(exc, kind):
            return status, message
    return None
