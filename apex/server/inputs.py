"""Checks on what a client sends before any of it is used: header values and the model name.

Hostile bytes must end in a precise 4xx in the client's protocol, never a 500 or a dropped
connection: a key with non-ASCII bytes cannot be hashed as sent, a router name with them
cannot be echoed, a model name with CR/LF cannot go into a response header, and an
unbounded one would become an unbounded header. Each check is a C-level string test.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from apex.errors import AuthenticationFailed, InvalidRequest

__all__ = ["MAX_MODEL_LEN", "MAX_REQUEST_ID_LEN", "check_model", "check_request_headers", "client_request_id"]

MAX_MODEL_LEN: Final = 256  # the longest real model ids are ~100 characters
MAX_REQUEST_ID_LEN: Final = 128


def _printable_ascii(value: str) -> bool:
    # Non-UTF-8 header bytes arrive as lone surrogates: neither ASCII nor printable.
    return value.isascii() and value.isprintable()


def check_request_headers(headers: Mapping[str, str]) -> None:
    """AuthenticationFailed for a key header no key could match, InvalidRequest for a bad router name."""
    for name in ("Authorization", "x-api-key"):
        value = headers.get(name)
        if value is not None and not _printable_ascii(value):
            raise AuthenticationFailed(f"the {name} header holds bytes no API key has (keys are printable ASCII)")
    router = headers.get("x-apex-router")
    if router is not None and (len(router) > MAX_MODEL_LEN or not _printable_ascii(router)):
        raise InvalidRequest("the x-apex-router header must be a router name of printable ASCII characters")


def client_request_id(headers: Mapping[str, str]) -> str | None:
    """The client's ``x-request-id`` when it is safe to echo and forward, else None."""
    rid = headers.get("x-request-id")
    if rid is None or not rid or len(rid) > MAX_REQUEST_ID_LEN or not _printable_ascii(rid):
        return None
    return rid


def check_model(model: str) -> None:
    """InvalidRequest unless ``model`` is a plausible model name (it ends up in headers and URLs)."""
    if len(model) > MAX_MODEL_LEN:
        raise InvalidRequest(f"'model' is longer than {MAX_MODEL_LEN} characters", param="model")
    if not model.isprintable():
        raise InvalidRequest("'model' holds control or non-printable characters", param="model")
