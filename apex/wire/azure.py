"""Microsoft Entra ID (Azure AD) token endpoint answers, as the azure_openai credentials read them.

What this module must not do: translate or import from apex.
"""

from __future__ import annotations

import msgspec

__all__ = ["TokenAnswer"]


class TokenAnswer(msgspec.Struct):
    """A client-credentials token answer, or its error."""

    access_token: str | None = None
    expires_in: int | str | None = None  # seconds; older endpoints send it as a string
    error: str | None = None
    error_description: str | None = None
