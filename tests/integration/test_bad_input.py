"""Hostile client input gets a precise 4xx in the client's protocol (issue 13, items 3-9).

Raw sockets where an SDK would refuse to send the bytes; the official SDKs elsewhere.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import aiohttp
import anthropic
import openai
import pytest

from tests.conftest import StartApex, ant, basic_config, oai
from tests.integration.fakes import FakeUpstream


async def raw_exchange(port: int, data: bytes, *, read_timeout: float = 5.0) -> bytes:
    """Send ``data`` on a fresh connection; everything read until the server closes or goes quiet."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        out = b""
        while True:
            try:
                chunk = await asyncio.wait_for(reader.read(65536), read_timeout)
            except TimeoutError:
                break
            if not chunk:
                break
            out += chunk
            if _complete(out):
                break
        return out
    finally:
        writer.close()


def _complete(data: bytes) -> bool:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip())
    return False


def post(path: bytes, headers: list[tuple[bytes, bytes]], body: bytes) -> bytes:
    head = b"".join(k + b": " + v + b"\r\n" for k, v in headers)
    return (b"POST " + path + b" HTTP/1.1\r\nHost: apex\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode() + b"\r\n" + head + b"\r\n" + body)


def parse(answer: bytes) -> tuple[int, dict[str, str], Any]:
    assert answer, "the connection was dropped without an answer"
    head, _, body = answer.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {k.decode().lower(): v.strip().decode() for k, _, v in (ln.partition(b":") for ln in lines[1:])}
    assert headers.get("content-type", "").startswith("application/json"), answer
    return status, headers, json.loads(body)


BODY = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}).encode()
AUTH = (b"Authorization", b"Bearer vk-default")


@pytest.mark.parametrize("model", ["gpt-4o\n", "gpt\r\nx-evil: 1", "gpt\x004o", "g" * 100_000, "gpt\u20284o"])
async def test_bad_model_name_is_400_before_any_upstream_call(upstream: FakeUpstream, start_apex: StartApex, model: str) -> None:
    inst = await start_apex(basic_config(upstream))
    with pytest.raises(openai.BadRequestError) as info:
        await oai(inst).chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])
    assert info.value.body["param"] == "model"  # type: ignore[index]
    assert len(info.value.response.text) < 1000  # the name is not echoed back
    with pytest.raises(anthropic.BadRequestError) as ainfo:
        await ant(inst).messages.create(model=model, max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert ainfo.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert upstream.requests == []


def gemini_config(upstream: FakeUpstream) -> dict[str, Any]:
    return {
        "global": {"auth": {"keys": ["k"]}, "retries": {"max_attempts": 1}},
        "logging": {"level": "error"},
        "channels": [{"name": "gm", "provider_type": "gemini", "base_url": upstream.url, "api_key": "g-key"}],
        "routers": [{"name": "r", "rules": [{"match": {"model": "gemini-*"}, "channels": [{"name": "gm"}]}]}],
    }


@pytest.mark.parametrize("model", ["gemini-x/../../v1beta/cachedContents", "gemini-x/..%2F..", "gemini-..", "gemini-x.."])
async def test_gemini_path_traversal_refused(upstream: FakeUpstream, start_apex: StartApex, model: str) -> None:
    inst = await start_apex(gemini_config(upstream))
    with pytest.raises(openai.BadRequestError) as info:
        await oai(inst, "k").chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])
    assert ".." in info.value.body["message"]  # type: ignore[index]
    assert upstream.requests == []


@pytest.mark.parametrize(("model", "path"), [
    ("gemini-x?key=other#", "/v1beta/models/gemini-x%3Fkey=other%23:generateContent"),
    ("gemini-x/y:countTokens", "/v1beta/models/gemini-x%2Fy%3AcountTokens:generateContent"),
])
async def test_gemini_model_is_one_escaped_segment(upstream: FakeUpstream, start_apex: StartApex, model: str, path: str) -> None:
    inst = await start_apex(gemini_config(upstream))
    await oai(inst, "k").chat.completions.create(model=model, messages=[{"role": "user", "content": "x"}])
    assert upstream.requests[0].query == ""
    assert upstream.raw_paths[0] == path  # as sent on the wire: one escaped segment


@pytest.mark.parametrize(("header", "value", "status"), [
    (b"Authorization", b"Bearer vk-d\xe9fault", 401),
    (b"Authorization", b"Bearer \xff\xfe\xfd", 401),
    (b"x-api-key", b"\xc3\x28vk", 401),
    (b"x-apex-router", b"r\xff", 400),
    (b"x-request-id", b"\xff\xfeid", 200),
])
@pytest.mark.parametrize("path", [b"/v1/chat/completions", b"/v1/messages"])
async def test_non_utf8_headers_get_a_clean_answer(upstream: FakeUpstream, start_apex: StartApex,
                                                   caplog: pytest.LogCaptureFixture,
                                                   header: bytes, value: bytes, status: int, path: bytes) -> None:
    inst = await start_apex(basic_config(upstream))
    headers = [(header, value)] if header != b"x-request-id" else [AUTH, (header, value)]
    if header == b"x-apex-router":
        headers = [(b"Authorization", b"Bearer global-key"), (header, value)]
    answer = await raw_exchange(inst.port, post(path, headers, BODY))
    got, resp_headers, body = parse(answer)
    assert got == status, answer
    assert resp_headers["x-request-id"].startswith("req_")  # the bad id is not echoed
    if status != 200:
        if path == b"/v1/messages":
            assert body["type"] == "error" and body["error"]["type"] in ("authentication_error", "invalid_request_error")
        else:
            assert body["error"]["type"] in ("authentication_error", "invalid_request_error")
    assert "Traceback" not in caplog.text and not [r for r in caplog.records if r.levelname == "ERROR"]


@pytest.mark.parametrize("depth", [1_000, 5_000, 100_000])
@pytest.mark.parametrize("path", [b"/v1/chat/completions", b"/v1/messages", b"/v1/responses", b"/v1/embeddings",
                                  b"/v1/messages/count_tokens"])
async def test_deeply_nested_json_is_400(upstream: FakeUpstream, start_apex: StartApex, depth: int, path: bytes) -> None:
    inst = await start_apex(basic_config(upstream))
    body = b'{"model":"gpt-4o","input":"x","messages":' + b"[" * depth + b"]" * depth + b"}"
    status, _, obj = parse(await raw_exchange(inst.port, post(path, [AUTH], body)))
    assert status == 400, obj
    assert upstream.requests == []


@pytest.mark.parametrize("depth", [450, 600, 900])
@pytest.mark.parametrize("path", [b"/v1/chat/completions", b"/v1/messages", b"/v1/responses", b"/v1/embeddings",
                                  b"/v1/messages/count_tokens"])
async def test_nesting_below_msgspecs_limit_is_never_a_500(
    upstream: FakeUpstream, start_apex: StartApex, depth: int, path: bytes, caplog: pytest.LogCaptureFixture,
) -> None:
    """Nesting msgspec still decodes (under ~1,000 levels) but deeper than Python's recursion
    limit allows a recursive walk (~500 levels): the token estimate walks it with its own stack,
    a translation that recurses answers 400 in the client's protocol. Never a 500 (it was one:
    the token estimate's RecursionError, found by test_fuzz_http)."""
    inst = await start_apex(basic_config(upstream))
    body = b'{"model":"gpt-4o","input":"x","messages":' + b"[" * depth + b"]" * depth + b"}"
    status, _, obj = parse(await raw_exchange(inst.port, post(path, [AUTH], body)))
    assert status < 500, obj
    if status >= 400:
        error = obj["error"]
        assert error["type"] in ("invalid_request_error", "api_error") if path != b"/v1/messages" else obj["type"] == "error"
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text


async def test_expect_continue_checks_the_declared_length_first(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """An oversize declared body is refused with 413 before ``100 Continue``; a small one is invited."""
    inst = await start_apex(basic_config(upstream, **{"global": {"auth": {"keys": ["global-key"]}, "max_body_bytes": 1000}}))
    reader, writer = await asyncio.open_connection("127.0.0.1", inst.port)
    try:
        writer.write(b"POST /v1/messages HTTP/1.1\r\nHost: apex\r\nAuthorization: Bearer vk-default\r\n"
                     b"Content-Type: application/json\r\nContent-Length: 50000000\r\nExpect: 100-continue\r\n\r\n")
        await writer.drain()
        first = await asyncio.wait_for(reader.read(65536), 5)
    finally:
        writer.close()
    assert not first.startswith(b"HTTP/1.1 100"), first
    status, _, obj = parse(first)
    assert status == 413 and obj["error"]["type"] == "request_too_large"

    reader, writer = await asyncio.open_connection("127.0.0.1", inst.port)
    try:
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: apex\r\nAuthorization: Bearer vk-default\r\n"
                     b"Content-Type: application/json\r\nContent-Length: " + str(len(BODY)).encode() +
                     b"\r\nExpect: 100-continue\r\n\r\n")
        await writer.drain()
        interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        assert interim.startswith(b"HTTP/1.1 100 Continue")
        writer.write(BODY)
        await writer.drain()
        status, _, obj = parse(await asyncio.wait_for(reader.read(65536), 5))
        assert status == 200 and obj["object"] == "chat.completion"
    finally:
        writer.close()


async def _raw_upstream(answer: bytes) -> asyncio.Server:
    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(answer)
            await writer.drain()
        finally:
            writer.close()

    return await asyncio.start_server(serve, "127.0.0.1", 0)


@pytest.mark.parametrize("status_line", [b"HTTP/1.1 2000 OK", b"HTTP/1.1 200OK", b"HTTP/1.1 20 OK", b"HTTP/1.1 200\x00"])
async def test_malformed_status_line_fails_over(upstream: FakeUpstream, start_apex: StartApex, status_line: bytes) -> None:
    """A status line with a 4-digit code is a malformed answer: the next channel serves the request."""
    body = b'{"id":"x","object":"chat.completion","choices":[]}'
    bad = await _raw_upstream(status_line + b"\r\nContent-Type: application/json\r\nContent-Length: "
                              + str(len(body)).encode() + b"\r\n\r\n" + body)
    try:
        cfg = basic_config(upstream)
        port = bad.sockets[0].getsockname()[1]
        cfg["channels"].insert(0, {"name": "bad", "provider_type": "openai", "base_url": f"http://127.0.0.1:{port}/v1", "api_key": "kb"})
        cfg["routers"][0]["channels"] = [{"name": "bad"}, {"name": "oa"}]
        cfg["routers"][0]["strategy"] = "priority"
        inst = await start_apex(cfg)
        done = await oai(inst).chat.completions.with_raw_response.create(model="gpt-4o", messages=[{"role": "user", "content": "x"}])
        assert done.headers["x-apex-channel"] == "oa" and done.headers["x-apex-attempts"] == "2"
        assert upstream.hits("/chat/completions") == 1
    finally:
        bad.close()
        await bad.wait_closed()


def _compress(encoding: str, body: bytes) -> bytes:
    import gzip
    import zlib

    if encoding == "br":
        import brotli  # type: ignore[import-untyped]  # a dependency: aiohttp decodes br only with it (a 400 "malformed" without)

        return bytes(brotli.compress(body))
    if encoding == "zstd":
        from backports import zstd  # a dependency before Python 3.14 (compression.zstd after)

        return zstd.compress(body)
    return gzip.compress(body) if encoding == "gzip" else zlib.compress(body)


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br", "zstd"])
async def test_a_compressed_request_body_is_read_whole_and_sent_on_decompressed(
    upstream: FakeUpstream, start_apex: StartApex, encoding: str,
) -> None:
    """Content-Length counts the compressed bytes while aiohttp hands over the decompressed
    ones: reading exactly that many cut the body (a 400 for a short body, a prefix of a long
    one). The whole body is read, and the upstream gets plain JSON. br and zstd as the README
    says (they were refused: the libraries aiohttp needs were no dependency)."""
    inst = await start_apex(basic_config(upstream))
    body = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": "hello " * 500}]}).encode()
    packed = _compress(encoding, body)
    status, _, obj = parse(await raw_exchange(inst.port, post(b"/v1/chat/completions", [AUTH, (b"Content-Encoding", encoding.encode())], packed)))
    assert status == 200, obj
    sent = upstream.requests[-1]
    assert json.loads(sent.body) == json.loads(body) and "content-encoding" not in {k.lower() for k in sent.headers}


async def test_a_compressed_body_is_held_to_the_limit_by_what_it_decompresses_to(
    upstream: FakeUpstream, start_apex: StartApex,
) -> None:
    """A zip bomb (2 MB of spaces in ~2 KB) against a 64 KB limit: 413, nothing sent upstream."""
    import gzip

    inst = await start_apex(basic_config(upstream, **{"global": {"auth": {"keys": ["global-key"]}, "max_body_bytes": 65536}}))
    bomb = gzip.compress(b'{"model":"gpt-4o","messages":[],"x":"' + b" " * 2_000_000 + b'"}')
    assert len(bomb) < 65536
    status, _, obj = parse(await raw_exchange(inst.port, post(b"/v1/chat/completions", [AUTH, (b"Content-Encoding", b"gzip")], bomb)))
    assert status == 413 and obj["error"]["type"] == "invalid_request_error", obj
    assert not upstream.requests


@pytest.mark.parametrize("path", [b"/v1/chat/completions", b"/v1/messages", b"/v1/responses"])
async def test_an_empty_body_is_named_empty(upstream: FakeUpstream, start_apex: StartApex, path: bytes) -> None:
    """``Content-Length: 0`` is an empty body, not one "shorter than its Content-Length"."""
    inst = await start_apex(basic_config(upstream))
    status, _, obj = parse(await raw_exchange(inst.port, post(path, [AUTH], b"")))
    assert status == 400
    message = obj["error"]["message"]
    assert "empty" in message and "shorter" not in message, obj


@pytest.mark.parametrize(("encoding", "body"), [
    (b"gzip", b"x"),  # curl -d x -H 'Content-Encoding: gzip': not gzip at all
    (b"gzip", b'{"model":"gpt-4o","messages":[]}'),  # plain JSON labelled gzip
    (b"deflate", b"\x00\x01\x02 not deflate"),
    (b"gzip", b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\x03garbage after a gzip magic"),
])
@pytest.mark.parametrize("path", [b"/v1/chat/completions", b"/v1/messages"])
async def test_a_body_that_is_not_its_content_encoding_is_named(
    upstream: FakeUpstream, start_apex: StartApex, encoding: bytes, body: bytes, path: bytes,
) -> None:
    """A body that does not decode as its Content-Encoding is a 400 that names the encoding (it
    was a 500, or "empty", which sends the user looking in the wrong place)."""
    inst = await start_apex(basic_config(upstream))
    status, _, obj = parse(await raw_exchange(inst.port, post(path, [AUTH, (b"Content-Encoding", encoding)], body)))
    assert status == 400, obj
    message = obj["error"]["message"]
    assert encoding.decode() in message and "Content-Encoding" in message, obj
    assert not upstream.requests


@pytest.mark.parametrize("chunks", [
    b"5\r\n{\"mod\r\nZZ\r\nel\"\r\n0\r\n\r\n",  # a chunk size that is not hex, after a good chunk
    b"5\r\n{\"mod\r\n3\r\nel\"XXXX\r\n0\r\n\r\n",  # a chunk longer than its size
])
async def test_chunked_framing_broken_mid_body_is_400(upstream: FakeUpstream, start_apex: StartApex, chunks: bytes) -> None:
    """Chunked framing that breaks after the handler started reading is the client's error (400)."""
    inst = await start_apex(basic_config(upstream))
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: apex\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer vk-default\r\nTransfer-Encoding: chunked\r\n\r\n")
    answer = await raw_exchange(inst.port, head + chunks)
    status, _, obj = parse(answer)
    assert status == 400, obj
    assert not upstream.requests


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
@pytest.mark.parametrize("value", ["-1000000000000", "9" * 400], ids=["negative", "400-digits"])
async def test_out_of_range_output_limits_are_400_and_charge_nothing(upstream: FakeUpstream, start_apex: StartApex,
                                                                    field: str, value: str) -> None:
    """A negative max_tokens charged the team's TPM bucket minus a trillion tokens (then 429s for
    19 years once settled); a 400-digit one was a 500 from the budget's cost estimate. Both are
    a 400 naming the field, and the team's next request goes through."""
    cfg = basic_config(upstream)
    cfg["teams"] = [{"id": "t", "api_key": "tk", "policy": {"rate_limit": {"rpm": 100, "tpm": 100_000},
                                                           "budget": {"usd": 5}}}]
    inst = await start_apex(cfg)
    body = '{"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "' + field + '": ' + value + "}"
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: apex\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer tk\r\nContent-Length: %d\r\n\r\n" % len(body))
    status, _, obj = parse(await raw_exchange(inst.port, head + body.encode()))
    assert status == 400 and obj["error"]["param"] == field, obj
    assert not upstream.requests
    done = await oai(inst, "tk").chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    assert done.choices


async def test_a_huge_temperature_is_not_a_500(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """A 400-digit temperature from an OpenAI client to an Anthropic channel overflowed float()."""
    inst = await start_apex(basic_config(upstream))
    body = '{"model": "claude-x", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}], "temperature": ' + "9" * 400 + "}"
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: apex\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer vk-default\r\nContent-Length: %d\r\n\r\n" % len(body))
    status, _, obj = parse(await raw_exchange(inst.port, head + body.encode()))
    assert status != 500, obj
    if upstream.requests:
        assert upstream.requests[-1].json["temperature"] == 1.0


@pytest.mark.parametrize(("path", "body"), [
    ("/v1/embeddings", {"model": "demo-emb", "input": "hi", "dimensions": 5_000_000}),
    ("/v1/embeddings", {"model": "demo-emb", "input": ["x"] * 3000}),
    ("/v1beta/models/demo-emb:batchEmbedContents",
     {"requests": [{"model": "models/demo-emb", "content": {"parts": [{"text": "hi"}]}, "outputDimensionality": 5_000_000}]}),
])
async def test_the_mock_refuses_embeddings_past_the_real_apis_bounds(start_apex: StartApex, path: str,
                                                                    body: dict[str, Any]) -> None:
    """dimensions 5,000,000 on a mock channel (the demo routes every model there) built 114 MB
    on the event loop; larger ones took the process to the OOM killer. A 400, as the APIs answer."""
    cfg = {"global": {"auth": {"keys": ["k"]}}, "channels": [{"name": "m", "provider_type": "mock", "models": ["*"]}],
           "routers": [{"name": "r", "channels": [{"name": "m"}]}]}
    inst = await start_apex(cfg)
    data = json.dumps(body)
    head = (b"POST %s HTTP/1.1\r\nHost: apex\r\nContent-Type: application/json\r\nAuthorization: Bearer k\r\n"
            b"x-goog-api-key: k\r\nContent-Length: %d\r\n\r\n" % (path.encode(), len(data)))
    status, _, obj = parse(await raw_exchange(inst.port, head + data.encode()))
    assert status == 400, obj


async def test_a_compressed_body_refused_unread_closes_the_connection_without_inflating_it(
        upstream: FakeUpstream, start_apex: StartApex) -> None:
    """A gzip bomb with no key got its 401 at once, then aiohttp's lingering close read and
    inflated the rest on the event loop for up to 10 s (three stalled /health for 2 s), and kept
    the connection. Now the connection closes once the 401 is out."""
    import gzip

    inst = await start_apex(basic_config(upstream))
    bomb = gzip.compress(b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "' + b"x" * (64 << 20) + b'"}]}', 9)
    reader, writer = await asyncio.open_connection("127.0.0.1", inst.port)
    try:
        writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: apex\r\nContent-Type: application/json\r\n"
                     b"Content-Encoding: gzip\r\nContent-Length: %d\r\n\r\n" % len(bomb) + bomb)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 5)  # to EOF: Apex closes
    finally:
        writer.close()
    status, headers, obj = parse(answer)
    assert status == 401 and headers.get("connection", "").lower() == "close", (status, headers)
    assert obj["error"]["type"] == "authentication_error"


@pytest.mark.parametrize("request_line", [b"CONNECT example.com:443 HTTP/1.1", b"OPTIONS * HTTP/1.1"])
async def test_request_target_without_a_path_gets_a_counted_json_404(upstream: FakeUpstream, start_apex: StartApex,
                                                                     request_line: bytes) -> None:
    """CONNECT host:port and OPTIONS * got aiohttp's plain-text 404, missing from the metrics
    and the access log; now the JSON 404 every unknown path gets, counted like it."""
    inst = await start_apex(basic_config(upstream))
    status, headers, body = parse(await raw_exchange(inst.port, request_line + b"\r\nHost: example.com:443\r\n\r\n"))
    assert status == 404 and headers["content-type"] == "application/json"
    assert body["error"]["type"] == "not_found_error" and "not a forwarding proxy" in body["error"]["message"]
    assert headers["x-request-id"]
    async with aiohttp.ClientSession() as s, s.get(f"{inst.url}/metrics") as r:
        assert 'status="404"' in await r.text()
