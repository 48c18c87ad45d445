"""Token log probabilities: OpenAI Chat ``logprobs`` and Gemini ``logprobsResult`` <-> neutral.

OpenAI gives one entry per answer token, ``{token, logprob, bytes, top_logprobs: [{token,
logprob, bytes}]}``, under ``choices[i].logprobs.content`` (and ``.refusal`` for refusal
tokens); Gemini gives ``candidates[i].logprobsResult`` with ``chosenCandidates[]`` ({token,
tokenId?, logProbability}) and ``topCandidates[]`` ({candidates: [...]}, likeliest first),
one entry each per decoding step, and the mean of the chosen ones as ``avgLogprobs``. In
streams each chunk carries the tokens of its own text. Gemini sends no ``bytes``: they are
the token's UTF-8; OpenAI sends no token ids: none are made up. What this module must not
do: decide whether logprobs were asked for (they are in an answer only when they were).
"""

from __future__ import annotations

from collections.abc import Sequence

from apex.translate.neutral.parts import TokenLogprob
from apex.wire.gemini import LogprobsResult
from apex.wire.openai import ChoiceLogprobs

__all__ = ["average_logprob", "gemini_logprobs_result", "logprobs_from_gemini", "logprobs_from_openai",
           "openai_logprobs"]


def logprobs_from_openai(logprobs: ChoiceLogprobs) -> tuple[TokenLogprob, ...]:
    """A Chat choice's ``logprobs`` -> tokens (content, then refusal: clients of other
    dialects get a refusal as text)."""
    return tuple(
        TokenLogprob(t.token, t.logprob, tuple(TokenLogprob(a.token, a.logprob) for a in t.top_logprobs))
        for t in (*(logprobs.content or ()), *(logprobs.refusal or ())))


def logprobs_from_gemini(result: LogprobsResult) -> tuple[TokenLogprob, ...]:
    """A candidate's ``logprobsResult`` -> tokens (step i's alternatives are topCandidates[i])."""
    tops = result.top_candidates
    return tuple(
        TokenLogprob(c.token, c.log_probability,
                     tuple(TokenLogprob(a.token, a.log_probability) for a in tops[i].candidates) if i < len(tops) else ())
        for i, c in enumerate(result.chosen_candidates))


def _openai_token(token: TokenLogprob) -> dict[str, object]:
    return {"token": token.token, "logprob": token.logprob, "bytes": list(token.token.encode())}


def openai_logprobs(tokens: Sequence[TokenLogprob]) -> dict[str, object]:
    """Tokens -> a Chat choice's ``logprobs`` object."""
    return {"content": [{**_openai_token(t), "top_logprobs": [_openai_token(a) for a in t.top]} for t in tokens],
            "refusal": None}


def _gemini_token(token: TokenLogprob) -> dict[str, object]:
    return {"token": token.token, "logProbability": token.logprob}


def gemini_logprobs_result(tokens: Sequence[TokenLogprob]) -> dict[str, object]:
    """Tokens -> a candidate's ``logprobsResult`` (``topCandidates`` when alternatives were asked for)."""
    result: dict[str, object] = {"chosenCandidates": [_gemini_token(t) for t in tokens]}
    if any(t.top for t in tokens):
        result["topCandidates"] = [{"candidates": [_gemini_token(a) for a in t.top]} for t in tokens]
    return result


def average_logprob(tokens: Sequence[TokenLogprob]) -> float | None:
    """Gemini's ``avgLogprobs``: the mean of the chosen tokens' log probabilities (None: no tokens)."""
    return sum(t.logprob for t in tokens) / len(tokens) if tokens else None
