"""Exchange: what Apex learned about one request on its way through, for headers, logs and metrics.

One mutable record per request, created by the endpoint wrapper and filled in by the pipeline.
It names no Gateway (the pipeline finds that on the app), so it imports nothing of the server.
It holds no secrets: the key is reduced to the team id or principal label.
"""

from __future__ import annotations

import itertools
import os
import time
from typing import TYPE_CHECKING, Final

import msgspec

from apex.errors import kind_for_status
from apex.tokens import estimate_tokens
from apex.types import Dialect, Usage

if TYPE_CHECKING:
    from apex.auth import Principal
    from apex.budget import BudgetGrant
    from apex.tracing import RequestTrace

__all__ = ["Exchange", "new_request_id"]

_PREFIX: Final = f"req_{os.urandom(5).hex()}"
_COUNTER: Final = itertools.count(1)
# A chat stream's framing: its opening (role) event, and its finish and [DONE] events, which
# only a stream that reached its end carried.
STREAM_OPENING_EVENTS: Final = 1
STREAM_CLOSING_EVENTS: Final = 2


def new_request_id() -> str:
    """A process-unique request id (random prefix + counter: cheaper than a uuid)."""
    return f"{_PREFIX}{next(_COUNTER):08x}"


class Exchange:
    __slots__ = (
        "request_id", "client_request_id", "dialect", "started", "team", "model",
        "stream", "router", "rule", "routed", "channel", "tried", "attempts", "upstream_model",
        "usage", "ttft_ms", "upstream_ms", "status", "committed", "final_delivered", "stream_error", "attempt_errors",
        "error_kind", "ratelimit_headers", "notices", "cost_usd", "budget_grant", "key_fingerprint", "json_array_stream",
        # observability (apex.metrics / access log): see Gateway.finish
        "request_body", "response_body", "stream_events", "overhead_ms", "waiting_ms", "_prompt_estimate",
        "trace",  # apex.tracing.RequestTrace while tracing is on, else None
    )

    def __init__(self, request_id: str, client_request_id: str | None, dialect: Dialect) -> None:
        self.request_id = request_id
        self.client_request_id = client_request_id
        self.dialect = dialect
        self.started = time.perf_counter()
        self.team: str | None = None
        self.model: str | None = None
        self.stream = False
        self.router: str | None = None
        self.rule: str | None = None
        self.routed = False
        self.channel: str | None = None
        self.tried: list[str] = []
        self.attempts = 0
        self.upstream_model: str | None = None
        self.usage: Usage | None = None
        self.ttft_ms: float | None = None
        self.upstream_ms = 0.0
        self.status = 0
        self.committed = False
        self.final_delivered = False  # a stream's last event reached the client: a later hang-up is no 499
        self.stream_error: str | None = None
        self.attempt_errors: list[str] = []
        self.error_kind: str | None = None
        self.ratelimit_headers: list[tuple[str, str]] | None = None
        self.json_array_stream = False  # a Gemini stream without alt=sse: framed as a JSON array
        self.notices: dict[str, str] | None = None  # headers a translation added (x-apex-dropped-tools)
        self.cost_usd: float | None = None
        self.budget_grant: BudgetGrant | None = None
        self.key_fingerprint: str | None = None
        # Kept by reference (no copy) so usage can be estimated when an upstream reports none.
        self.request_body: bytes | None = None
        self._prompt_estimate: int | None = None
        self.response_body: bytes | None = None
        self.stream_events = 0  # a stream's upstream events (its usage estimate when none is reported)
        self.overhead_ms: float | None = None
        self.waiting_ms = 0.0  # waits that are nobody's work: a slow client's body, backoffs, Retry-After
        self.trace: RequestTrace | None = None

    def authenticated(self, principal: Principal) -> None:
        """Record who is calling (team and key fingerprint), for every endpoint the same way."""
        self.key_fingerprint = principal.fingerprint
        if principal.team is not None:
            self.team = principal.team.id

    def error_type(self) -> str | None:
        """The request's ``error_type`` (metrics label, access line, request log), None when it
        succeeded: one answer for all three."""
        if self.error_kind is not None:
            return self.error_kind
        if self.stream_error is not None:
            return self.stream_error
        if self.status == 499:
            return "client_closed"
        if self.status >= 400:
            return kind_for_status(self.status)
        return None

    def response_headers(self) -> dict[str, str]:
        """Headers every response of this exchange carries (set before a stream commits)."""
        h = {"x-request-id": self.request_id}
        if self.channel is not None:
            h["x-apex-channel"] = self.channel
            h["x-apex-attempts"] = str(self.attempts)
        if self.upstream_model is not None:
            h["x-apex-upstream-model"] = self.upstream_model
        if self.ratelimit_headers:
            h.update(self.ratelimit_headers)
        if self.notices:
            h.update(self.notices)
        return h

    def prompt_estimate(self) -> int:
        """Estimated prompt tokens of the request body, computed once per request (the rate
        limit, a translator's message_start and a missing-usage estimate all want it)."""
        if self._prompt_estimate is None:
            self._prompt_estimate = estimate_tokens(self.request_body) if self.request_body else 0
        return self._prompt_estimate

    def estimated_usage(self) -> Usage | None:
        """Usage Apex estimates when an answer (or the part of a stream the client got)
        reported none; marked ``estimated``. None when nothing was used: no body, or a count."""
        if self.request_body is None or self.dialect.counts_tokens:
            return None
        if self.dialect.embeds:  # vectors are no completion tokens
            completion = 0
        elif self.response_body is not None:
            completion = estimate_tokens(self.response_body)
        else:
            completion = self._content_events()
        return Usage(prompt_tokens=self.prompt_estimate(), completion_tokens=completion, estimated=True)

    def usage_so_far(self) -> Usage | None:
        """The usage to charge: what the upstream reported, else Apex's estimate. A stream
        that did not reach its end (the client left, the upstream broke) reported only its
        start (Anthropic's message_start says 1 output token; Gemini's running counts lag):
        its output is at least about one token per content event it carried."""
        usage = self.usage
        if usage is None:
            return self.estimated_usage()
        if self._cut():
            carried = self._content_events()
            if carried > usage.completion_tokens:
                usage = msgspec.structs.replace(usage, completion_tokens=carried, estimated=True)
            if not usage.prompt_tokens:  # a start that said 0 (ConverseStream counts only at its end)
                usage = msgspec.structs.replace(usage, prompt_tokens=self.prompt_estimate(), estimated=True)
        return usage

    def _cut(self) -> bool:
        """A stream that did not reach its end: the client left, or it broke or failed."""
        return self.stream and (not self.final_delivered or self.stream_error is not None)

    def _content_events(self) -> int:
        """About one token per content event a stream carried: its events less the framing it
        had. A cut stream had its opening event but not its finish and end (subtracting those
        charged a stream cut after two deltas 0 tokens)."""
        framing = STREAM_OPENING_EVENTS if self._cut() else STREAM_OPENING_EVENTS + STREAM_CLOSING_EVENTS
        return max(0, self.stream_events - framing)

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000

    def measure_overhead(self) -> float:
        """Apex's own time so far (elapsed minus upstream wait), ms; remembered for logs and metrics.

        Called when the response head is written so ``x-apex-overhead-ms``, the access line and
        ``apex_overhead_ms`` carry the same figure.
        """
        self.overhead_ms = value = max(0.0, self.elapsed_ms() - self.upstream_ms - self.waiting_ms)
        return value
