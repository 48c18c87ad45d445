"""The single Apex error tree. Every failure Apex reports is one of these.

Each class knows its HTTP ``status``, a stable ``kind`` string (what renderers map to a
wire ``type``) and whether a failed upstream attempt that raised it may be retried on
another channel. Renderers in ``apex.server.responses`` turn an instance into the
client's dialect; nothing here knows about wire formats or aiohttp.

    ApexError
    ├── ClientError                    the client's request is at fault (never retried)
    │   ├── InvalidRequest             400 invalid_request
    │   │   └── Untranslatable         400 this channel's API cannot carry the request (the plan tries the next)
    │   ├── AuthenticationFailed       401 authentication
    │   ├── PermissionDenied           403 permission
    │   ├── NotFound                   404 not_found
    │   ├── MethodNotAllowed           405 invalid_request
    │   ├── RequestTimeout             408 timeout (the client was too slow to send its request)
    │   ├── RequestTooLarge            413 request_too_large
    │   └── RateLimited                429 rate_limit
    │       └── BudgetExceeded         429 budget_exceeded (the team's spending cap)
    ├── UpstreamError                  an upstream attempt failed
    │   ├── UpstreamStatus             the upstream answered non-2xx (keeps status and body)
    │   ├── UpstreamConnectionError    502 connect refused / reset
    │   ├── UpstreamMalformed          502 not the JSON or SSE the protocol promises
    │   └── UpstreamTimeout            504 connect / first byte / request / idle timeout
    ├── NoRouteAvailable               503 every channel is cooling down
    ├── ShuttingDown                   503 the shutdown deadline stopped the request
    └── InternalError                  500 a bug in Apex (rendered by the catch-all)

    ConfigError                        a config file is invalid; outside the tree above, so
                                       no ``except ApexError`` can render it to a client

``ErrorKind`` is the closed set of kinds; the per-dialect tables in
``apex.translate.neutral.errortypes`` are typed by it, so mypy checks them. ``code`` is
finer than the kind, in OpenAI's vocabulary (``model_not_found``, ``rate_limit_exceeded``,
``insufficient_quota``, ``CONTEXT_LENGTH_EXCEEDED``): OpenAI clients get it as it is, other
dialects' renderers read it where their own wording differs.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Mapping
from urllib.parse import quote
from typing import Final, Literal

import msgspec

__all__ = [
    "ApexError",
    "CONTEXT_LENGTH_EXCEEDED",
    "ErrorKind",
    "AuthenticationFailed",
    "BudgetExceeded",
    "ClientError",
    "ConfigError",
    "InternalError",
    "StartupError",
    "json_error_line",
    "InvalidRequest",
    "NoRouteAvailable",
    "ExpectationFailed",
    "MethodNotAllowed",
    "NotFound",
    "PermissionDenied",
    "RateLimited",
    "RequestTimeout",
    "RequestTooLarge",
    "ShuttingDown",
    "UpstreamConnectionError",
    "UpstreamError",
    "UpstreamMalformed",
    "UpstreamStatus",
    "UpstreamTimeout",
    "Untranslatable",
    "REDACTED",
    "Secrets",
    "secrets_of",
]


ErrorKind = Literal[
    "invalid_request", "authentication", "permission", "not_found", "request_too_large", "rate_limit",
    "budget_exceeded", "api_error", "timeout", "overloaded",
]

# The prompt (with max_tokens, where the upstream counts it) is over the model's context
# window, whichever upstream said so: OpenAI's code, which Codex reads to tell the user and
# compact (``apex.translate.neutral.errortypes.context_overflow`` recognises the others).
CONTEXT_LENGTH_EXCEEDED: Final = "context_length_exceeded"


class ApexError(Exception):
    """Base of every error a client may see: a message plus status, kind and retryability.

    Subclasses set the three as class defaults; ``UpstreamStatus`` sets them per instance
    (they depend on what the upstream answered), which is why they are not ClassVars.
    """

    status: int = 500
    kind: ErrorKind = "api_error"
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        retry_after: float | None = None,
        code: str | None = None,
        details: Mapping[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        self.retry_after = retry_after
        self.code = code
        # Machine-readable facts a client SDK acts on, rendered as Anthropic's ``error.details``
        # (the anthropic SDK resends a threaded turn unthreaded on ``thread_unsupported_request``).
        self.details = details

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r})"


class ClientError(ApexError):
    """The client's request cannot be served as sent."""


class InvalidRequest(ClientError):
    status = 400
    kind: ErrorKind = "invalid_request"


class Untranslatable(InvalidRequest):
    """A request valid for the client's API that one channel's API cannot carry (its
    translation refused it: ``n`` > 1 to Anthropic, ``previous_response_id`` to Chat...).
    The attempt plan moves on to the next channel; the client gets this 400 only when no
    channel of the route could serve the request."""

    @classmethod
    def of(cls, refusal: InvalidRequest) -> Untranslatable:
        """A translation's refusal as this channel's inability to carry the request."""
        if isinstance(refusal, Untranslatable):
            return refusal
        return cls(refusal.message, param=refusal.param, code=refusal.code, details=refusal.details)


class AuthenticationFailed(ClientError):
    status = 401
    kind: ErrorKind = "authentication"


class PermissionDenied(ClientError):
    status = 403
    kind: ErrorKind = "permission"


class NotFound(ClientError):
    status = 404
    kind: ErrorKind = "not_found"


class MethodNotAllowed(ClientError):
    """A known path asked with another method (the answer carries ``Allow``)."""

    status = 405
    kind: ErrorKind = "invalid_request"


class ExpectationFailed(ClientError):
    """An ``Expect`` header other than ``100-continue`` (the body's status matches: Gemini's
    error object carries it as ``code``)."""

    status = 417
    kind: ErrorKind = "invalid_request"


class RequestTimeout(ClientError):
    status = 408
    kind = "timeout"


class RequestTooLarge(ClientError):
    status = 413
    kind: ErrorKind = "request_too_large"


class RateLimited(ClientError):
    status = 429
    kind: ErrorKind = "rate_limit"


class BudgetExceeded(RateLimited):
    """The team spent its budget for the period (OpenAI ``insufficient_quota``)."""

    kind: ErrorKind = "budget_exceeded"
    remaining_usd: float | None = None  # what the store says is left


class UpstreamError(ApexError):
    """An upstream attempt failed; ``channel`` names where."""

    status = 502
    kind: ErrorKind = "api_error"
    retryable = True

    def __init__(
        self,
        message: str,
        *,
        channel: str = "none",
        param: str | None = None,
        retry_after: float | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message, param=param, retry_after=retry_after, code=code)
        self.channel = channel


class UpstreamStatus(UpstreamError):
    """The upstream answered with a non-2xx status.

    ``upstream_status`` is what the provider said; ``status`` is what the client gets
    (401/403 from upstream become 502: the client's own key was fine). ``body`` is the
    upstream's raw error body, ``upstream_type`` and ``message`` come from decoding it.
    ``retryable`` is decided by the caller from ``retry_on_status`` and set per instance.
    """

    def __init__(
        self,
        upstream_status: int,
        message: str,
        *,
        channel: str = "none",
        body: bytes = b"",
        upstream_type: str | None = None,
        upstream_dialect: str | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message, channel=channel, retry_after=retry_after, code=code)
        self.upstream_status = upstream_status
        self.body = body
        self.upstream_type = upstream_type
        self.upstream_dialect = upstream_dialect
        self.retryable = retryable
        # 401/403: the channel's key, not the client's. 3xx: Apex follows no redirects, and no
        # client SDK expects one from an API endpoint. Both are the gateway's failure.
        self.status = 502 if upstream_status in (401, 403) or 300 <= upstream_status < 400 else upstream_status
        # A native upstream's own error body, secrets scrubbed: sent to the client as it is
        # when client and upstream speak the same protocol (set by the pipeline).
        self.client_body: bytes | None = None
        self.kind = _KIND_BY_STATUS.get(self.status, "api_error")


class UpstreamConnectionError(UpstreamError):
    status = 502
    kind: ErrorKind = "api_error"


class UpstreamMalformed(UpstreamError):
    status = 502
    kind: ErrorKind = "api_error"


class UpstreamTimeout(UpstreamError):
    status = 504
    kind: ErrorKind = "timeout"


class ChannelBusy(UpstreamError):
    """Every connection the channel's ``max_connections`` allows stayed busy for the connect
    timeout. Apex's own cap, so no verdict on the channel's health: another channel may
    serve, and the client is told to come back shortly (503 + Retry-After)."""

    status = 503
    kind: ErrorKind = "overloaded"


class NoRouteAvailable(ApexError):
    status = 503
    kind: ErrorKind = "overloaded"


class ShuttingDown(ApexError):
    """A request still waiting on its upstream when the shutdown grace ran out: answered
    rather than cut, so the client can retry (on another instance) at once."""

    status = 503
    kind: ErrorKind = "overloaded"


class InternalError(ApexError):
    status = 500
    kind: ErrorKind = "api_error"


class ConfigError(Exception):
    """The config is invalid. ``path`` is the JSON path of the offending key ('' for the file).

    Not an ApexError: it is raised while loading a config (start, reload, CLI), never while
    serving a request, and must never be rendered to a client."""

    def __init__(self, message: str, *, path: str = "") -> None:
        super().__init__(f"{path}: {message}" if path else message)
        self.message = f"{path}: {message}" if path else message
        self.path = path
        self.detail = message


def json_error_line(message: str, exit_code: int, path: str | None = None) -> str:
    """The one JSON object a command run with ``--json`` writes on stderr when it fails:
    ``{"error": {"message", "exit_code", "path"?}}`` (the CLI and the gateway process both)."""
    error: dict[str, object] = {"message": message, "exit_code": exit_code}
    if path:
        error["path"] = path
    return json.dumps({"error": error}, ensure_ascii=False)


class StartupError(Exception):
    """The gateway cannot start for a reason outside the config's content (a busy port, say).
    The message is one line naming the cause and the fix; the CLI prints it and exits 1.
    Not an ApexError: no client ever sees it."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


_KIND_BY_STATUS: Final[dict[int, ErrorKind]] = {
    400: "invalid_request",
    401: "authentication",
    402: "invalid_request",
    403: "permission",
    404: "not_found",
    408: "timeout",
    409: "invalid_request",
    413: "request_too_large",
    422: "invalid_request",
    429: "rate_limit",
    500: "api_error",
    502: "api_error",
    503: "api_error",
    504: "timeout",
    529: "overloaded",
}


def kind_for_status(status: int) -> ErrorKind:
    """The stable kind string Apex uses for an HTTP status it did not make itself."""
    if status in _KIND_BY_STATUS:
        return _KIND_BY_STATUS[status]
    return "invalid_request" if 400 <= status < 500 else "api_error"


# --- secret scrubbing ---------------------------------------------------------------------

REDACTED: Final = "[redacted]"
_REDACTED_B: Final = REDACTED.encode()
_LOWER_ESCAPE: Final = re.compile(r"%[0-9A-F]{2}")
MIN_SECRET_LEN: Final = 8  # shorter header values ("true", "v1") are not secrets and are everywhere


class Secrets:
    """The credentials one channel sends upstream, to scrub from whatever the upstream says.

    Built once per channel at config load. An upstream may quote the key it was given in an
    error message (OpenAI-compatible servers echo it whole), in a JSON body where ``/`` may be
    escaped (``\\/``), or percent-encoded as it went in a URL (``?key=``, a proxy's
    ``user:pass@``): every spelling is scrubbed, longest first. The spellings differ only for
    keys holding characters such as ``/ + = @``, so most keys cost one substring search.

    Two tiers: ``credentials`` (keys, tokens, secret-named headers) are scrubbed from
    everything the upstream sends, answers included (``credentials_data``); ``others`` (the
    values of the channel's other headers: an organization id, an app's URL) only from its
    errors (``data``, ``text``): an answer quoting the site named in HTTP-Referer is no leak.
    """

    __slots__ = ("_b", "_credentials_b", "_others", "_s", "_values")

    def __init__(self, values: Iterable[str], others: Iterable[str] = ()) -> None:
        self._values: set[str] = set()
        self._others = {v for v in others if len(v) >= MIN_SECRET_LEN}
        self._s: tuple[str, ...] = ()
        self._b: tuple[bytes, ...] = ()
        self._credentials_b: tuple[bytes, ...] = ()
        self.add(values)

    def add(self, values: Iterable[str]) -> None:
        """Scrub ``values`` too, as credentials: ones a channel only learns at run time (keys
        from the AWS chain, OAuth tokens), added when they are fetched."""
        self._values.update(v for v in _with_bare_credentials(values) if len(v) >= MIN_SECRET_LEN)
        credentials = _spellings(self._values)
        every = sorted(set(credentials) | set(_spellings(self._others)), key=len, reverse=True)
        self._s = tuple(every)
        self._b = tuple(v.encode() for v in every)
        self._credentials_b = tuple(v.encode() for v in credentials)

    @property
    def has_credentials(self) -> bool:
        return bool(self._credentials_b)

    def credentials_data(self, data: bytes) -> bytes:
        """``data`` without the credentials (not the other header values): for answers."""
        for secret in self._credentials_b:
            if data.find(secret) >= 0:
                data = data.replace(secret, _REDACTED_B)
        return data

    def __bool__(self) -> bool:
        return bool(self._s)

    def text(self, text: str) -> str:
        for secret in self._s:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text

    def data(self, data: bytes) -> bytes:
        for secret in self._b:
            if data.find(secret) >= 0:  # find, not in: ``bytes in bytes`` raises and drops a TypeError first on 3.11
                data = data.replace(secret, _REDACTED_B)
        return data

    def error(self, err: ApexError) -> ApexError:
        """Scrub ``err`` in place (its message, and an upstream's raw body); returns it."""
        if not self._s:
            return err
        message = self.text(err.message)
        if message != err.message:
            err.message = message
            err.args = (message,)
        if isinstance(err, UpstreamStatus) and err.body:
            err.body = self.data(err.body)
        return err


def secrets_of(values: Iterable[str | None], others: Iterable[str | None] = ()) -> Secrets:
    return Secrets((v for v in values if v), (v for v in others if v))


_AUTH_SCHEME: Final = re.compile(r"(?i)(bearer|basic|token|key|apikey|api-key)\s+(\S+)\s*")


def _with_bare_credentials(values: Iterable[str]) -> list[str]:
    """``values`` and, for one written as an Authorization value (``Bearer TOKEN``, ``Basic
    b64``), the credential alone: upstreams quote the token without its scheme ("Incorrect API
    key provided: TOKEN"). A Basic credential's decoded ``user:pass`` and password too."""
    out: list[str] = []
    for v in values:
        out.append(v)
        m = _AUTH_SCHEME.fullmatch(v)
        if m is None:
            continue
        scheme, credential = m.group(1).lower(), m.group(2)
        out.append(credential)
        if scheme == "basic":
            try:
                decoded = base64.b64decode(credential, validate=True).decode()
            except (ValueError, UnicodeDecodeError):
                continue
            out.append(decoded)
            out.append(decoded.partition(":")[2])
    return out


def _spellings(values: Iterable[str]) -> list[str]:
    """Every spelling of ``values`` an upstream may quote, longest first."""
    out: set[str] = set()
    for v in values:
        out.add(v)
        in_json = msgspec.json.encode(v).decode()[1:-1]  # as it appears inside a JSON string
        out.add(in_json)
        out.add(in_json.replace("/", "\\/"))  # with / escaped, as PHP and some Java encoders write it
        for encoded in (quote(v, safe=""), quote(v)):  # as it went into a URL (``/`` kept or not)
            out.add(encoded)
            out.add(_LOWER_ESCAPE.sub(lambda m: m.group().lower(), encoded))  # %2f as well as %2F
    return sorted(out, key=len, reverse=True)
