"""Request translation from OpenAI Chat and Anthropic clients to Gemini generateContent."""

from __future__ import annotations

import json
from typing import Any

import pytest

from apex.errors import InvalidRequest
from apex.translate.directions.anthropic_to_gemini import anthropic_to_gemini_request
from apex.translate.directions.openai_to_gemini import openai_to_gemini_request
from apex.translate.neutral.signatures import FOREIGN_SIGNATURE, SignatureStore

WEATHER_SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"],
                  "additionalProperties": False, "$schema": "http://json-schema.org/draft-07/schema#"}


def _openai(body: dict[str, Any], store: SignatureStore | None = None) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(openai_to_gemini_request(json.dumps(body).encode(), store or SignatureStore()))
    return out


def _anthropic(body: dict[str, Any], store: SignatureStore | None = None) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(anthropic_to_gemini_request(json.dumps(body).encode(), store or SignatureStore()))
    return out


OPENAI_TOOL_CONVERSATION: dict[str, Any] = {
    "model": "gem",
    "stream": True,
    "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": [{"type": "text", "text": "Use tools."}]},
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {"role": "assistant", "content": "", "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
            {"id": "call_b", "type": "function", "function": {"name": "get_time", "arguments": ""}}]},
        {"role": "tool", "tool_call_id": "call_b", "content": "12:00"},
        {"role": "tool", "tool_call_id": "call_a", "content": "sunny"},
        {"role": "user", "content": [{"type": "text", "text": "Thanks"},
                                     {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}}]},
    ],
    "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather", "parameters": WEATHER_SCHEMA}},
              {"type": "function", "function": {"name": "get_time"}}],
    "tool_choice": "required",
    "max_completion_tokens": 256,
    "temperature": 0.5,
    "stop": "END",
    "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
    "reasoning_effort": "low",
}


def test_openai_request_keeps_every_message_and_tool() -> None:
    """System/developer go to systemInstruction; turns, calls, results and tools all survive."""
    out = _openai(OPENAI_TOOL_CONVERSATION)
    assert "model" not in out and "stream" not in out
    assert [p["text"] for p in out["systemInstruction"]["parts"]] == ["Be brief.", "Use tools."]
    roles = [c["role"] for c in out["contents"]]
    assert roles == ["user", "model", "user"]
    model_parts = out["contents"][1]["parts"]
    assert [p["functionCall"]["name"] for p in model_parts] == ["get_weather", "get_time"]
    assert model_parts[0]["functionCall"]["args"] == {"city": "Paris"}
    assert model_parts[1]["functionCall"]["args"] == {}
    decls = out["tools"][0]["functionDeclarations"]
    assert [d["name"] for d in decls] == ["get_weather", "get_time"]
    assert decls[0]["parametersJsonSchema"] == WEATHER_SCHEMA and "parameters" not in decls[0]
    assert out["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    cfg = out["generationConfig"]
    assert cfg["maxOutputTokens"] == 256 and cfg["temperature"] == 0.5 and cfg["stopSequences"] == ["END"]
    assert cfg["responseMimeType"] == "application/json" and cfg["responseJsonSchema"] == {"type": "object"}
    assert "thinkingConfig" not in cfg  # low's 1024 does not fit a 256-token limit: the model's default stands
    roomy = _openai({**OPENAI_TOOL_CONVERSATION, "max_completion_tokens": 8192})["generationConfig"]
    assert roomy["thinkingConfig"] == {"thinkingBudget": 1024, "includeThoughts": True}


def test_an_effort_budget_fits_inside_the_clients_output_limit() -> None:
    """Gemini counts thinking inside maxOutputTokens: medium's 8192 under a 4096 limit left no
    room to answer (empty or cut answers). It fits, leaving half the limit to the answer."""
    body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "reasoning_effort": "medium",
                            "max_completion_tokens": 4096}
    cfg = _openai(body)["generationConfig"]
    assert cfg["maxOutputTokens"] == 4096 and cfg["thinkingConfig"]["thinkingBudget"] == 2048


def test_openai_tool_results_are_keyed_by_name_in_one_user_turn() -> None:
    """Tool messages become functionResponse parts named after their calls, in the calls' order
    (the results came get_time first), merged with the next user text."""
    parts = _openai(OPENAI_TOOL_CONVERSATION)["contents"][2]["parts"]
    assert parts[0] == {"functionResponse": {"name": "get_weather", "response": {"output": "sunny"}}}
    assert parts[1] == {"functionResponse": {"name": "get_time", "response": {"output": "12:00"}}}
    assert parts[2] == {"text": "Thanks"}
    assert parts[3] == {"inlineData": {"mimeType": "image/png", "data": "iVBORw0K"}}


def test_signatures_are_reattached_or_replaced_by_placeholder() -> None:
    """A call Apex generated gets its stored signature back; an unknown id gets the placeholder (P5)."""
    store = SignatureStore()
    store.remember("call_a", "get_weather", "SIG-A")
    store.remember("call_b", "get_time", None)
    parts = _openai(OPENAI_TOOL_CONVERSATION, store)["contents"][1]["parts"]
    assert parts[0]["thoughtSignature"] == "SIG-A"
    assert "thoughtSignature" not in parts[1]  # known second call of a parallel batch
    foreign = _openai(OPENAI_TOOL_CONVERSATION)["contents"][1]["parts"]
    assert [p["thoughtSignature"] for p in foreign] == [FOREIGN_SIGNATURE, FOREIGN_SIGNATURE]


def test_tool_result_name_falls_back_to_the_signature_store() -> None:
    """A tool result whose call is not in the history is named from the store, else rejected."""
    store = SignatureStore()
    store.remember("call_z", "lookup", "S")
    body = {"messages": [{"role": "user", "content": "hi"}, {"role": "tool", "tool_call_id": "call_z", "content": "r"}]}
    assert _openai(body, store)["contents"][0]["parts"][1]["functionResponse"]["name"] == "lookup"
    with pytest.raises(InvalidRequest):
        _openai(body)


def test_openai_named_tool_choice_and_invalid_arguments() -> None:
    """A named tool_choice is ANY with one allowed name; non-object arguments are wrapped, not sent raw."""
    body = {"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "not json"}}]}],
        "tool_choice": {"type": "function", "function": {"name": "f"}}}
    out = _openai(body)
    assert out["toolConfig"]["functionCallingConfig"] == {"mode": "ANY", "allowedFunctionNames": ["f"]}
    assert out["contents"][1]["parts"][0]["functionCall"]["args"] == {"_raw": "not json"}


def test_openai_bad_body_is_invalid_request() -> None:
    """A body without messages is an InvalidRequest."""
    with pytest.raises(InvalidRequest):
        openai_to_gemini_request(b'{"model":"x"}', SignatureStore())


ANTHROPIC_TOOL_CONVERSATION: dict[str, Any] = {
    "model": "claude",
    "max_tokens": 1024,
    "system": [{"type": "text", "text": "Be brief."}],
    "messages": [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", "content": [
            {"type": "thinking", "thinking": "hmm", "signature": "anthropic-sig"},
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {}}]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_1", "content": [{"type": "text", "text": "sunny"}]},
            {"type": "tool_result", "tool_use_id": "toolu_2", "content": "boom", "is_error": True},
            {"type": "text", "text": "and?"}]},
    ],
    "tools": [{"name": "get_weather", "description": "Weather", "input_schema": WEATHER_SCHEMA},
              {"name": "get_time", "input_schema": {"type": "object", "properties": {}}}],
    "tool_choice": {"type": "tool", "name": "get_weather"},
    "stop_sequences": ["END"],
    "top_k": 5,
    "thinking": {"type": "enabled", "budget_tokens": 2048},
}


def test_anthropic_request_keeps_every_message_and_tool() -> None:
    """System, turns, tool_use calls, tool_result responses by name, and tools all map (8.3)."""
    out = _anthropic(ANTHROPIC_TOOL_CONVERSATION)
    assert out["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert [c["role"] for c in out["contents"]] == ["user", "model", "user"]
    model = out["contents"][1]["parts"]
    assert model[0] == {"text": "Checking."}  # thinking dropped
    assert model[1]["functionCall"] == {"name": "get_weather", "args": {"city": "Paris"}}
    assert model[2]["functionCall"] == {"name": "get_time", "args": {}}
    results = out["contents"][2]["parts"]
    assert results[0] == {"functionResponse": {"name": "get_weather", "response": {"output": "sunny"}}}
    assert results[1] == {"functionResponse": {"name": "get_time", "response": {"error": "boom"}}}
    assert results[2] == {"text": "and?"}
    assert [d["name"] for d in out["tools"][0]["functionDeclarations"]] == ["get_weather", "get_time"]
    assert out["toolConfig"]["functionCallingConfig"] == {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
    cfg = out["generationConfig"]
    assert cfg["maxOutputTokens"] == 1024 and cfg["stopSequences"] == ["END"] and cfg["topK"] == 5
    assert cfg["thinkingConfig"] == {"thinkingBudget": 2048, "includeThoughts": True}


def test_anthropic_adjacent_same_role_turns_are_merged() -> None:
    """Two user messages in a row become one user content (Gemini turn order, P25)."""
    out = _anthropic({"max_tokens": 5, "messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]})
    assert out["contents"] == [{"parts": [{"text": "a"}, {"text": "b"}], "role": "user"}]


def test_anthropic_server_tools_and_unknown_results_are_rejected() -> None:
    """Server tools and tool results without a known call are InvalidRequest."""
    with pytest.raises(InvalidRequest):
        _anthropic({"max_tokens": 5, "messages": [{"role": "user", "content": "a"}],
                    "tools": [{"type": "web_search_20250305", "name": "web_search"}]})
    with pytest.raises(InvalidRequest):
        _anthropic({"max_tokens": 5, "messages": [{"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": "toolu_x", "content": "r"}]}]})


def test_anthropic_images_inline_and_by_url() -> None:
    """Base64 images are inlined; URL images are passed as fileData references."""
    out = _anthropic({"max_tokens": 5, "messages": [{"role": "user", "content": [
        {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "AAAA"}},
        {"type": "image", "source": {"type": "url", "url": "https://x.test/a.png"}}]}]})
    parts = out["contents"][0]["parts"]
    assert parts[0] == {"inlineData": {"mimeType": "image/jpeg", "data": "AAAA"}}
    assert parts[1] == {"fileData": {"fileUri": "https://x.test/a.png", "mimeType": "image/png"}}


def test_n_above_one_is_refused_for_gemini() -> None:
    """n=2 went to Gemini as candidateCount 2 and the reply carried one candidate (the other
    billed and dropped): a 400 naming n, as on Anthropic channels; n=1 is fine."""
    body: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "n": 2}
    with pytest.raises(InvalidRequest, match="n > 1"):
        _openai(body)
    assert "candidateCount" not in _openai({**body, "n": 1}).get("generationConfig", {})


def test_output_limits_are_cut_to_the_gemini_model_as_written() -> None:
    """Both translators into Gemini write maxOutputTokens within the model's limit
    (capability table), and leave a smaller one alone."""
    from apex.translate.capabilities import ModelCaps

    caps = ModelCaps(reasons=True, max_output=65_536)
    chat: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 128_000}
    messages: dict[str, Any] = {"model": "m", "max_tokens": 128_000, "messages": [{"role": "user", "content": "hi"}]}
    for translate, body in ((openai_to_gemini_request, chat), (anthropic_to_gemini_request, messages)):
        out = json.loads(translate(json.dumps(body).encode(), SignatureStore(), caps=caps))
        assert out["generationConfig"]["maxOutputTokens"] == 65_536
        out = json.loads(translate(json.dumps({**body, "max_tokens": 1000}).encode(), SignatureStore(), caps=caps))
        assert out["generationConfig"]["maxOutputTokens"] == 1000


@pytest.mark.parametrize(("model", "budget"), [("gemini-2.5-flash", 24_576), ("gemini-2.5-flash-lite", 24_576),
                                               ("gemini-2.5-pro", 32_768)])
def test_thinking_budgets_are_cut_to_the_gemini_models_range(model: str, budget: int) -> None:
    """xhigh (32,768) and Claude Code's 31,999 were sent whole: gemini-2.5-flash takes at most
    24,576 and answers 400 to more, on every turn of an agent routed there."""
    from apex.translate.capabilities import CapabilityTable

    caps = CapabilityTable("gemini").lookup(model)
    chat: dict[str, Any] = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "reasoning_effort": "xhigh"}
    out = json.loads(openai_to_gemini_request(json.dumps(chat).encode(), SignatureStore(), caps=caps))
    assert out["generationConfig"]["thinkingConfig"]["thinkingBudget"] == budget
    messages: dict[str, Any] = {"model": "m", "max_tokens": 64_000, "messages": [{"role": "user", "content": "hi"}],
                                "thinking": {"type": "enabled", "budget_tokens": 31_999}}
    out = json.loads(anthropic_to_gemini_request(json.dumps(messages).encode(), SignatureStore(), caps=caps))
    assert out["generationConfig"]["thinkingConfig"]["thinkingBudget"] == min(31_999, budget)
    messages["thinking"]["budget_tokens"] = 2_048
    out = json.loads(anthropic_to_gemini_request(json.dumps(messages).encode(), SignatureStore(), caps=caps))
    assert out["generationConfig"]["thinkingConfig"]["thinkingBudget"] == 2_048


def test_parallel_results_go_in_call_order() -> None:
    """Claude Code sends parallel results in the order its tools finished; with three calls of
    one name, Gemini pairs results with calls by position: they go in call order (8.3)."""
    calls = [("t1", "echo one"), ("t2", "echo two"), ("t3", "echo three")]
    messages: dict[str, Any] = {"model": "m", "max_tokens": 100, "messages": [
        {"role": "user", "content": "run three"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": i, "name": "Bash", "input": {"command": c}}
                                          for i, c in calls]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": i, "content": out}
                                     for i, out in (("t3", "three"), ("t1", "one"), ("t2", "two"))]}]}
    chat: dict[str, Any] = {"model": "m", "messages": [
        {"role": "user", "content": "run three"},
        {"role": "assistant", "tool_calls": [{"id": i, "type": "function", "function": {
            "name": "Bash", "arguments": json.dumps({"command": c})}} for i, c in calls]},
        *({"role": "tool", "tool_call_id": i, "content": out} for i, out in (("t3", "three"), ("t1", "one"), ("t2", "two"))),
        {"role": "user", "content": "and now?"}]}
    for translate, body in ((anthropic_to_gemini_request, messages), (openai_to_gemini_request, chat)):
        out = json.loads(translate(json.dumps(body).encode(), SignatureStore()))
        answers = [p["functionResponse"]["response"] for p in out["contents"][2]["parts"] if "functionResponse" in p]
        assert [next(v for v in a.values() if isinstance(v, str)) for a in answers] == ["one", "two", "three"]


def test_calls_without_results_get_error_results() -> None:
    """A call the client left unanswered (a cancelled tool, a trimmed history) went to Gemini as
    is: 400 "the number of function response parts is equal to the number of function call
    parts". Each gets an error result in its place, as on Anthropic channels."""
    chat: dict[str, Any] = {"model": "m", "messages": [
        {"role": "user", "content": "weather and time?"},
        {"role": "assistant", "tool_calls": [
            {"id": "a", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}},
            {"id": "b", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "b", "content": "12:00"},
        {"role": "user", "content": "go on"},
        {"role": "assistant", "tool_calls": [{"id": "c", "type": "function", "function": {"name": "get_time", "arguments": "{}"}}]},
        {"role": "user", "content": "never mind"}]}
    contents = _openai(chat)["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user", "model", "user"]
    first = contents[2]["parts"]
    assert [p["functionResponse"]["name"] for p in first if "functionResponse" in p] == ["get_weather", "get_time"]
    assert first[0]["functionResponse"]["response"] == {"error": "No result was provided for this tool call."}
    assert first[1]["functionResponse"]["response"] == {"output": "12:00"} and first[2] == {"text": "go on"}
    last = contents[4]["parts"]
    assert last[0]["functionResponse"]["name"] == "get_time" and last[1] == {"text": "never mind"}


def test_a_missing_result_keeps_its_own_place_among_same_name_calls() -> None:
    """Two parallel get_w calls, a result for the second only: Gemini pairs by position, so the
    made-up error result goes first and Quito's result second (the fill matched by name and
    told Gemini the Paris call returned Quito's weather)."""
    calls = [{"id": "call_P", "type": "function", "function": {"name": "get_w", "arguments": '{"city":"Paris"}'}},
             {"id": "call_Q", "type": "function", "function": {"name": "get_w", "arguments": '{"city":"Quito"}'}}]
    out = _openai({"model": "m", "messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": "call_Q", "content": "Quito: 25C"},
    ]})
    results = [p["functionResponse"]["response"] for p in out["contents"][2]["parts"]]
    assert "error" in results[0] and results[1] == {"output": "Quito: 25C"}, results
    uses = [{"type": "tool_use", "id": c["id"], "name": "get_w", "input": {}} for c in calls]
    out = _anthropic({"model": "m", "max_tokens": 10, "messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": uses},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_Q", "content": "Quito: 25C"}]},
    ]})
    results = [p["functionResponse"]["response"] for p in out["contents"][2]["parts"]]
    assert "error" in results[0] and results[1] == {"output": "Quito: 25C"}, results
