"""Which of Anthropic's beta flags the clouds' Claude takes.

Claude Code and the Anthropic SDKs name first-party betas in ``anthropic-beta``
(``claude-code-20250219``, ``prompt-caching-scope-2026-01-05``, ``effort-2025-11-24``...).
Vertex refuses a whole request whose header names a beta it does not know ("Unexpected
value(s) ... for the anthropic-beta header"); Bedrock's InvokeModel takes betas in the body
as ``anthropic_beta`` and refuses unknown ones ("invalid beta flag"). So towards each cloud
Apex passes on only the betas it takes and drops the rest (a field the client sent for a
dropped beta still goes, and the cloud answers for it). Tool search is resolved by Apex for
these upstreams (``apex.translate.neutral.deferred``), so its betas are never passed on.

The tables are the betas the clouds document for Claude as of December 2026 (AWS's
"Anthropic Claude Messages API" request parameters, Google's Claude on Vertex AI pages),
cross-checked with what other gateways forward. A beta missing here is dropped, which costs
that feature on that cloud; a wrong one would fail every request that names it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

__all__ = ["BEDROCK_BETAS", "VERTEX_BETAS", "accepted_betas"]

VERTEX_BETAS: Final = frozenset({
    "compact-2026-01-12", "compact-2026-09-04", "computer-use-2025-01-24", "computer-use-2025-11-24",
    "context-1m-2025-08-07", "context-management-2025-06-27", "dangerous-tool-use-2026-09-03",
    "interleaved-thinking-2025-05-14", "per-turn-control-2026-07-01", "thinking-binding-controls-2026-08-01",
    "thinking-display-updates-2026-08-18", "web-search-2025-03-05",
})
BEDROCK_BETAS: Final = frozenset({
    "compact-2026-01-12", "computer-use-2024-10-22", "computer-use-2025-01-24", "computer-use-2025-11-24",
    "context-1m-2025-08-07", "context-management-2025-06-27", "dangerous-tool-use-2026-09-03",
    "dev-full-thinking-2025-05-14", "effort-2025-11-24", "fine-grained-tool-streaming-2025-05-14",
    "interleaved-thinking-2025-05-14", "mid-conversation-output-config-2026-07-01",
    "mid-conversation-tool-changes-2026-07-01", "output-128k-2025-02-19", "thinking-binding-controls-2026-08-01",
    "thinking-display-updates-2026-08-18", "token-efficient-tools-2025-02-19", "tool-examples-2025-10-29",
})


def accepted_betas(values: Iterable[str], allowed: frozenset[str] | None) -> list[str]:
    """The betas named in ``values`` (``anthropic-beta`` header values, comma-separated, maybe
    several) that ``allowed`` holds (None: every one), each once, in the client's order."""
    out: list[str] = []
    for value in values:
        for beta in value.split(","):
            beta = beta.strip()
            if beta and (allowed is None or beta in allowed) and beta not in out:
                out.append(beta)
    return out
