"""A Gemini client's request read into the neutral Conversation, and rendered for Chat and Messages."""

from __future__ import annotations

import json
from typing import Any

import pytest

from apex.errors import InvalidRequest
from apex.translate.base import TranslateContext
from apex.translate.capabilities import ModelCaps
from apex.translate.request.gemini_conversation import (
    Call,
    Result,
    decode_thought_signature,
    encode_thought_signature,
    openapi_to_json_schema,
    read_gemini_request,
)
from apex.translate.directions.gemini_to_anthropic import GeminiToAnthropic
from apex.translate.directions.gemini_to_openai import GeminiToOpenAI


def _ctx(stream: bool = False) -> TranslateContext:
    return TranslateContext("alias", "upstream-model", stream, "req-1")


def _body(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj).encode()


CALL_TURNS: list[dict[str, Any]] = [
    {"role": "user", "parts": [{"text": "weather in Paris and Rome?"}]},
    {"role": "model", "parts": [{"functionCall": {"name": "weather", "args": {"city": "Paris"}}},
                                {"functionCall": {"name": "weather", "args": {"city": "Rome"}}},
                                {"functionCall": {"name": "clock", "args": {}, "id": "toolu_given"}}]},
    {"role": "user", "parts": [{"functionResponse": {"name": "clock", "response": {"output": "noon"}, "id": "toolu_given"}},
                               {"functionResponse": {"name": "weather", "response": {"output": "sunny"}}},
                               {"functionResponse": {"name": "weather", "response": {"error": "no data"}}}]},
]


def test_function_responses_match_calls_by_id_then_by_name_in_order() -> None:
    """A response with an id answers that call; one without answers the oldest open call of its name."""
    conv = read_gemini_request(_body({"contents": CALL_TURNS}))
    calls = [i for i in conv.turns[1].items if isinstance(i, Call)]
    results = [i for i in conv.turns[2].items if isinstance(i, Result)]
    assert [c.call_id for c in calls] == ["call_0", "call_1", "toolu_given"]
    assert [r.call_id for r in results] == ["toolu_given", "call_0", "call_1"]


def test_openai_rendering_of_calls_and_results() -> None:
    """Calls become one assistant message with tool_calls; results tool messages, errors marked."""
    sent = json.loads(GeminiToOpenAI().request(_body({"contents": CALL_TURNS}), _ctx()))
    assistant, *tools = sent["messages"][1:]
    assert [c["id"] for c in assistant["tool_calls"]] == ["call_0", "call_1", "toolu_given"]
    assert json.loads(assistant["tool_calls"][0]["function"]["arguments"]) == {"city": "Paris"}
    assert [(t["tool_call_id"], t["content"]) for t in tools] == [
        ("toolu_given", "noon"), ("call_0", "sunny"), ("call_1", "Error: no data")]


def test_anthropic_rendering_of_calls_and_results() -> None:
    """Calls become tool_use blocks, results tool_result blocks with the same ids; is_error kept."""
    sent = json.loads(GeminiToAnthropic().request(_body({"contents": CALL_TURNS}), _ctx()))
    uses = sent["messages"][1]["content"]
    results = sent["messages"][2]["content"]
    assert [u["id"] for u in uses] == ["call_0", "call_1", "toolu_given"]
    assert [(r["tool_use_id"], r["content"], r.get("is_error", False)) for r in results] == [
        ("toolu_given", "noon", False), ("call_0", "sunny", False), ("call_1", "no data", True)]
    assert sent["max_tokens"] == 8192


def test_openapi_schema_becomes_json_schema() -> None:
    """Upper-case types, nullable, int64 limits as strings and propertyOrdering are converted."""
    schema = {"type": "OBJECT", "properties": {
        "tags": {"type": "ARRAY", "items": {"type": "STRING"}, "minItems": "1"},
        "note": {"type": "STRING", "nullable": True}}, "required": ["tags"], "propertyOrdering": ["tags", "note"]}
    assert json.loads(openapi_to_json_schema(json.dumps(schema).encode())) == {
        "type": "object", "properties": {"tags": {"type": "array", "items": {"type": "string"}, "minItems": 1},
                                         "note": {"type": ["string", "null"]}}, "required": ["tags"]}


def test_tools_config_and_generation_knobs_for_openai() -> None:
    """Declarations, a forced single function, JSON schema output, sampling, thinking -> Chat fields."""
    body = {"contents": [{"parts": [{"text": "hi"}]}],
            "systemInstruction": {"parts": [{"text": "a"}, {"text": "b"}]},
            "tools": [{"functionDeclarations": [{"name": "f", "parametersJsonSchema": {"type": "object"}}]},
                      {"googleSearch": {}}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["f"]}},
            "generationConfig": {"maxOutputTokens": 50, "stopSequences": ["x"], "topP": 0.9, "seed": 7,
                                 "responseMimeType": "application/json", "responseJsonSchema": {"type": "object"},
                                 "thinkingConfig": {"thinkingBudget": 20000}}}
    plain = json.loads(GeminiToOpenAI().request(_body(body), _ctx()))
    assert "reasoning_effort" not in plain and plain["max_tokens"] == 50  # a model not known to reason
    assert plain["top_p"] == 0.9 and plain["stop"] == ["x"]
    ctx = _ctx(stream=True)
    ctx.caps = ModelCaps(reasons=True, knobs=frozenset({"effort"}), max_tokens_field="max_completion_tokens")
    sent = json.loads(GeminiToOpenAI().request(_body(body), ctx))
    assert ctx.notices == {"x-apex-dropped-tools": "googleSearch"}  # the built-in tool is dropped, and said so
    assert sent["messages"][0] == {"role": "system", "content": "a\nb"}
    assert sent["tools"] == [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "f"}}
    assert (sent["max_completion_tokens"], sent["seed"]) == (50, 7)
    assert "top_p" not in sent and "stop" not in sent  # an OpenAI reasoning model refuses sampling settings and stop
    assert sent["response_format"]["json_schema"]["schema"] == {"type": "object"}
    assert sent["reasoning_effort"] == "high"
    assert sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


def test_images_for_both_upstreams() -> None:
    """inlineData becomes a data URL / base64 image block; fileData a URL."""
    body = {"contents": [{"parts": [{"text": "what is this"},
                                    {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
                                    {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://x.test/a.jpg"}}]}]}
    chat = json.loads(GeminiToOpenAI().request(_body(body), _ctx()))
    assert [p.get("image_url", {}).get("url") for p in chat["messages"][0]["content"]][1:] == [
        "data:image/png;base64,iVBORw0KGgo=", "https://x.test/a.jpg"]
    msg = json.loads(GeminiToAnthropic().request(_body(body), _ctx()))
    blocks = msg["messages"][0]["content"]
    assert blocks[1]["source"] == {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}
    assert blocks[2]["source"] == {"type": "url", "url": "https://x.test/a.jpg"}


def test_unsigned_thoughts_never_reach_anthropic_and_thinking_stays_off_after_unsigned_calls() -> None:
    """A thought without an Apex-minted signature is dropped; thinking is not enabled on that history."""
    body = {"contents": [{"role": "user", "parts": [{"text": "q"}]},
                         {"role": "model", "parts": [{"text": "hmm", "thought": True},
                                                     {"functionCall": {"name": "f", "args": {}}}]},
                         {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {"output": "1"}}}]}],
            "generationConfig": {"thinkingConfig": {"thinkingBudget": 4096}}}
    ctx = _ctx()
    ctx.caps = ModelCaps(reasons=True, knobs=frozenset({"budget"}))
    sent = json.loads(GeminiToAnthropic().request(_body(body), ctx))
    assert [b["type"] for b in sent["messages"][1]["content"]] == ["tool_use"]
    assert "thinking" not in sent


def test_thought_signature_wrapping() -> None:
    """Apex's wrapped Anthropic signatures round-trip; Gemini's own signatures are not mistaken for one."""
    assert decode_thought_signature(encode_thought_signature("EqABC/def+==")) == "EqABC/def+=="
    assert decode_thought_signature("CikB0e2Kbw5tJ9dwYB9m1I9W28H1Pvbhg7iFnlQJ") is None
    assert decode_thought_signature("not base64 at all!") is None


@pytest.mark.parametrize("body", [b"[]", b'{"contents": []}', b'{"contents": [{"parts": [{"text": ""}]}]}', b"{",
                                  b'{"contents": "hi"}'])
def test_bad_requests_are_invalid_request(body: bytes) -> None:
    """Bodies that are not a usable generateContent request are a 400, never a crash."""
    with pytest.raises(InvalidRequest):
        GeminiToOpenAI().request(body, _ctx())


def test_candidate_count_above_one_is_refused() -> None:
    """candidateCount > 1 cannot be served through translation: a precise 400."""
    body = {"contents": [{"parts": [{"text": "hi"}]}], "generationConfig": {"candidateCount": 2}}
    with pytest.raises(InvalidRequest, match="candidateCount"):
        GeminiToAnthropic().request(_body(body), _ctx())


def test_snake_case_field_names_are_read_and_opaque_keys_kept() -> None:
    """Google's REST API reads snake_case too (the Python SDK sends inline_data.mime_type): so does
    Apex, without touching argument names or schema property names that hold underscores."""
    body = {"contents": [{"role": "user", "parts": [{"inline_data": {"mime_type": "image/png", "data": "AAAA"}}]},
                         {"role": "model", "parts": [{"function_call": {"name": "f", "args": {"file_path": "a"}}}]}],
            "system_instruction": {"parts": [{"text": "sys"}]},
            "tools": [{"function_declarations": [{"name": "f", "parameters": {
                "type": "OBJECT", "properties": {"file_path": {"type": "STRING"}}, "any_of": [{"type": "OBJECT"}]}}]}],
            "generation_config": {"max_output_tokens": 10}}
    sent = json.loads(GeminiToOpenAI().request(_body(body), _ctx()))
    assert sent["messages"][0] == {"role": "system", "content": "sys"}
    assert sent["messages"][1]["content"][0]["image_url"]["url"] == "data:image/png;base64,AAAA"
    assert json.loads(sent["messages"][2]["tool_calls"][0]["function"]["arguments"]) == {"file_path": "a"}
    assert sent["tools"][0]["function"]["parameters"] == {
        "type": "object", "properties": {"file_path": {"type": "string"}}, "anyOf": [{"type": "object"}]}
    assert sent["max_tokens"] == 10


@pytest.mark.parametrize(("model", "effort"), [("gpt-5-mini", "minimal"), ("gpt-5.1", "none"), ("o4-mini", "low")])
def test_a_thinking_budget_of_zero_asks_for_the_least_reasoning(model: str, effort: str) -> None:
    """thinkingBudget 0 turns Gemini's thinking off; it sent no reasoning_effort, so gpt-5 and
    o-series reasoned at their default (medium). It asks for the least the model takes."""
    from apex.translate.capabilities import CapabilityTable

    ctx = _ctx()
    ctx.caps = CapabilityTable("openai").lookup(model)
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
            "generationConfig": {"thinkingConfig": {"thinkingBudget": 0}}}
    sent = json.loads(GeminiToOpenAI().request(_body(body), ctx))
    assert sent["reasoning_effort"] == effort


def test_audio_parts_go_as_input_audio_or_are_refused_clearly() -> None:
    """Audio inlineData went to OpenAI as an image_url and to Anthropic as an image block: both
    upstreams refused it with errors about images. OpenAI gets input_audio (wav, mp3); Anthropic,
    which takes no audio, a 400 naming the type."""
    body: Any = {"contents": [{"role": "user", "parts": [{"text": "transcribe"},
                                                    {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}}]}]}
    sent = json.loads(GeminiToOpenAI().request(_body(body), _ctx()))
    assert sent["messages"][0]["content"][1] == {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}}
    with pytest.raises(InvalidRequest, match="audio/wav"):
        GeminiToAnthropic().request(_body(body), _ctx())
    body["contents"][0]["parts"][1]["inlineData"]["mimeType"] = "audio/ogg"
    with pytest.raises(InvalidRequest, match="audio/ogg"):
        GeminiToOpenAI().request(_body(body), _ctx())


def test_an_enum_answer_is_asked_for_in_words_on_other_upstreams() -> None:
    """responseMimeType text/x.enum with an enum schema was dropped without a trace: the
    upstream got no constraint. The values reach it as a system instruction."""
    body: Any = {"contents": [{"role": "user", "parts": [{"text": "Is the sky blue?"}]}],
                 "systemInstruction": {"parts": [{"text": "Be brief."}]},
                 "generationConfig": {"responseMimeType": "text/x.enum",
                                      "responseSchema": {"type": "STRING", "enum": ["yes", "no"]}}}
    sent = json.loads(GeminiToOpenAI().request(_body(body), _ctx()))
    assert sent["messages"][0] == {"role": "system", "content": "Be brief.\n\nRespond with exactly one of these values "
                                                                "and nothing else: yes, no"}
    assert "response_format" not in sent
    anthropic = json.loads(GeminiToAnthropic().request(_body(body), _ctx()))
    assert anthropic["system"].endswith("Respond with exactly one of these values and nothing else: yes, no")


def test_allowed_function_names_limit_what_is_offered() -> None:
    """mode ANY with two allowed names of three declared: only those two are offered (all three
    went with tool_choice required, and the excluded delete_all could be called)."""
    decls = [{"name": n, "parametersJsonSchema": {"type": "object"}} for n in ("get_w", "get_t", "delete_all")]
    body = {"contents": [{"parts": [{"text": "hi"}]}], "tools": [{"functionDeclarations": decls}],
            "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_w", "get_t"]}}}
    sent = json.loads(GeminiToOpenAI().request(_body(body), _ctx()))
    assert [t["function"]["name"] for t in sent["tools"]] == ["get_w", "get_t"]
    assert sent["tool_choice"] == "required"


@pytest.mark.parametrize("budget", [32768, 10**30])
def test_a_thinking_budget_without_max_output_tokens_stays_within_the_models_limit(budget: int) -> None:
    """Gemini 2.5 Pro's top budget (32,768) plus answer room went out as max_tokens 36,864 to
    Opus 4.1 (limit 32,000: a 400), and 10**30 as is; an OpenAI client's xhigh was clamped."""
    ctx = _ctx()
    ctx.caps = ModelCaps(reasons=True, knobs=frozenset({"budget"}), max_output=32_000)
    body = {"contents": [{"role": "user", "parts": [{"text": "q"}]}],
            "generationConfig": {"thinkingConfig": {"thinkingBudget": budget}}}
    sent = json.loads(GeminiToAnthropic().request(_body(body), ctx))
    assert sent["max_tokens"] == 32_000
    assert 1024 <= sent["thinking"]["budget_tokens"] < sent["max_tokens"]


@pytest.mark.parametrize(("change", "path"), [
    ({"systemInstruction": {"text": "be brief"}}, "systemInstruction"),
    ({"systemInstruction": {"role": "system"}}, "systemInstruction"),
    ({"contents": [{"text": "hi"}]}, "contents[0]"),
    ({"contents": [{"role": "user", "parts": [{"text": "hi"}]}, {"role": "model", "parts": []}]}, "contents[1]"),
    ({"contents": [{"role": "user", "parts": [{"text": "hi"}]}, {"role": "model", "parts": [
        {"text": "calling"}, {"functionCall": {"args": {}}}]}]}, "contents[1].parts[1].functionCall.name"),
])
@pytest.mark.parametrize("translator", [GeminiToOpenAI(), GeminiToAnthropic()])
def test_a_content_of_the_wrong_shape_is_refused_by_its_path(change: dict[str, Any], path: str,
                                                             translator: GeminiToOpenAI | GeminiToAnthropic) -> None:
    """A Content without parts (``{"text": ...}`` decodes so) was dropped: the system prompt or the
    user's turn went missing unseen; a call without a name went up as ``tool_e3b0c442``, and its
    functionResponse pointed at a call that did not exist. Gemini answers 400 to each."""
    body = {"systemInstruction": {"parts": [{"text": "be brief"}]}, "contents": [{"parts": [{"text": "hi"}]}], **change}
    with pytest.raises(InvalidRequest) as info:
        translator.request(_body(body), _ctx())
    assert info.value.param is not None and info.value.param.startswith(path) and info.value.message.startswith(path)
