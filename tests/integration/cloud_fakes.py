"""Fake Azure OpenAI, Bedrock and Vertex AI services that check what the real ones check.

* ``SigV4`` recomputes an AWS Signature Version 4 from the request as received (method,
  path, query, signed headers, body hash) with the test's secret, written from AWS's
  specification (not botocore), and rejects a wrong or stale one as AWS does (403).
* ``encode_event_stream`` frames Bedrock's answers in AWS's binary event-stream format
  (prelude, typed headers, CRC32s), as InvokeModelWithResponseStream sends them.
* ``AzureTokens`` / ``GoogleTokens`` are token endpoints issuing short-lived tokens: the
  Entra ID client-credentials grant, and Google's JWT-bearer grant whose RS256 signature is
  verified with the service account's public key. Expired tokens are refused (401).
* ``CloudFake`` serves Bedrock, Azure and Vertex URL shapes on one loopback port and
  answers from the real captures in ``tests/fixtures/real``.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import functools
import hashlib
import hmac
import json
import re
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

from aiohttp import web
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from multidict import CIMultiDict

from tests.integration.fakes import (FakeUpstream, Recorded, anthropic_schema_refusal, fixture_bytes, gemini_unknown_field,
                                     split_events)

# --- AWS SigV4, from https://docs.aws.amazon.com/IAM/latest/UserGuide/create-signed-request.html


def _hmac(key: bytes, msg: str) -> bytes:
    return hmac.new(key, msg.encode(), hashlib.sha256).digest()


def _uri_encode(segment: str) -> str:
    return quote(segment, safe="-_.~")


@dataclass
class SigV4:
    """Verifies requests signed for ``service`` in ``region`` by ``access_key``/``secret``."""

    access_key: str
    secret: str
    region: str
    service: str = "bedrock"
    session_token: str | None = None
    max_skew_s: float = 300.0

    def check(self, method: str, raw_path: str, query: str, headers: CIMultiDict[str], body: bytes) -> str | None:
        """None when the signature is valid, else why not (AWS's message)."""
        auth = headers.get("Authorization", "")
        if not auth.startswith("AWS4-HMAC-SHA256 "):
            return "Authorization header requires AWS4-HMAC-SHA256"
        parts = dict(p.strip().split("=", 1) for p in auth[len("AWS4-HMAC-SHA256 "):].split(","))
        credential, signed, signature = parts["Credential"], parts["SignedHeaders"], parts["Signature"]
        key_id, date, region, service, term = credential.split("/")
        if key_id != self.access_key:
            return "The security token included in the request is invalid."
        if region != self.region or service != self.service or term != "aws4_request":
            return f"Credential should be scoped to a valid region and service {self.region}/{self.service}"
        amz_date = headers.get("X-Amz-Date", "")
        when = dt.datetime.strptime(amz_date, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.UTC)
        if abs((dt.datetime.now(dt.UTC) - when).total_seconds()) > self.max_skew_s or amz_date[:8] != date:
            return "Signature expired"
        if self.session_token is not None and headers.get("X-Amz-Security-Token") != self.session_token:
            return "The security token included in the request is invalid."
        names = signed.split(";")
        if "host" not in names:
            return "'Host' must be a signed header"
        # Canonical URI: each segment URI-encoded again (non-S3 services double-encode).
        canonical_uri = "/".join(_uri_encode(s) for s in raw_path.split("/"))
        pairs = sorted((_uri_encode(unquote(k)), _uri_encode(unquote(v))) for k, v in parse_qsl(query, keep_blank_values=True))
        canonical_query = "&".join(f"{k}={v}" for k, v in pairs)
        canonical_headers = "".join(f"{n}:{' '.join(headers.get(n, '').split())}\n" for n in names)
        request = "\n".join([method, canonical_uri, canonical_query, canonical_headers, signed,
                             hashlib.sha256(body).hexdigest()])
        scope = f"{date}/{region}/{service}/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope, hashlib.sha256(request.encode()).hexdigest()])
        key = _hmac(_hmac(_hmac(_hmac(("AWS4" + self.secret).encode(), date), region), service), "aws4_request")
        expected = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, signature):
            return ("The request signature we calculated does not match the signature you provided. "
                    "Check your AWS Secret Access Key and signing method.")
        return None


# --- AWS event-stream framing, from botocore's decoder's format (prelude, headers, CRCs)


def encode_event_stream(headers: dict[str, str], payload: bytes) -> bytes:
    """One event-stream message with string-typed headers (type 7)."""
    hbytes = b""
    for name, value in headers.items():
        n, v = name.encode(), value.encode()
        hbytes += struct.pack("!B", len(n)) + n + struct.pack("!BH", 7, len(v)) + v
    total = 12 + len(hbytes) + len(payload) + 4
    prelude = struct.pack("!II", total, len(hbytes))
    prelude += struct.pack("!I", binascii.crc32(prelude) & 0xFFFFFFFF)
    message = prelude + hbytes + payload
    return message + struct.pack("!I", binascii.crc32(message) & 0xFFFFFFFF)


def bedrock_chunk(event_json: bytes) -> bytes:
    """An InvokeModelWithResponseStream ``chunk`` frame carrying one model event."""
    payload = json.dumps({"bytes": base64.b64encode(event_json).decode(), "p": "abcdefgh"}).encode()
    return encode_event_stream(
        {":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"}, payload)


def bedrock_exception(name: str, message: str) -> bytes:
    return encode_event_stream(
        {":exception-type": name, ":content-type": "application/json", ":message-type": "exception"},
        json.dumps({"message": message}).encode())


def sse_data(event: bytes) -> bytes:
    return b"".join(line[5:].strip() for line in event.splitlines() if line.startswith(b"data:"))


# --- token endpoints


@dataclass
class Tokens:
    """Issued bearer tokens and when they expire (monotonic seconds)."""

    lifetime_s: float = 3600.0
    issued: dict[str, float] = field(default_factory=dict)
    fail: bool = False  # answer every token request with an error

    def issue(self, prefix: str) -> str:
        token = f"{prefix}-{len(self.issued) + 1}-{int(time.time() * 1000)}"
        self.issued[token] = time.monotonic() + self.lifetime_s
        return token

    def valid(self, authorization: str) -> bool:
        if not authorization.startswith("Bearer "):
            return False
        expires = self.issued.get(authorization[7:])
        return expires is not None and time.monotonic() < expires


@dataclass
class AzureTokens(Tokens):
    tenant: str = "tenant-1"
    client_id: str = "client-1"
    client_secret: str = "s3cret"

    async def handle(self, request: web.Request) -> web.Response:
        if request.match_info["tenant"] != self.tenant:
            return web.json_response({"error": "invalid_request", "error_description": "AADSTS90002: Tenant not found."}, status=400)
        form = dict(parse_qsl((await request.read()).decode()))
        if self.fail or form.get("client_secret") != self.client_secret or form.get("client_id") != self.client_id:
            return web.json_response({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."}, status=401)
        if form.get("grant_type") != "client_credentials" or form.get("scope") != "https://cognitiveservices.azure.com/.default":
            return web.json_response({"error": "invalid_scope", "error_description": "AADSTS70011: bad scope"}, status=400)
        return web.json_response({"token_type": "Bearer", "expires_in": int(self.lifetime_s), "ext_expires_in": int(self.lifetime_s),
                                  "access_token": self.issue("az")})


@functools.lru_cache(maxsize=2)
def _rsa_key(which: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)  # slow: made once per process


def service_account(token_uri: str, which: int = 0) -> tuple[dict[str, str], rsa.RSAPublicKey]:
    """A service-account JSON and its public key (``which`` picks one of two RSA keys)."""
    key = _rsa_key(which)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    info = {
        "type": "service_account", "project_id": "proj-1", "private_key_id": "kid-1", "private_key": pem,
        "client_email": "apex@proj-1.iam.gserviceaccount.com", "client_id": "1234", "token_uri": token_uri,
    }
    return info, key.public_key()


def _b64url(data: str) -> bytes:
    return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))


# google-auth addresses every grant JWT to Google's token endpoint, whatever token_uri says.
GOOGLE_TOKEN_AUDIENCE = "https://oauth2.googleapis.com/token"


@dataclass
class GoogleTokens(Tokens):
    """Google's OAuth token endpoint for the JWT-bearer grant of a service account."""

    public_key: rsa.RSAPublicKey | None = None
    client_email: str = "apex@proj-1.iam.gserviceaccount.com"
    token_uri: str = ""

    async def handle(self, request: web.Request) -> web.Response:
        form = dict(parse_qsl((await request.read()).decode()))
        if form.get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" or self.fail:
            return web.json_response({"error": "invalid_grant", "error_description": "bad grant"}, status=400)
        try:
            head_b64, claims_b64, sig_b64 = form["assertion"].split(".")
            header, claims = json.loads(_b64url(head_b64)), json.loads(_b64url(claims_b64))
            assert self.public_key is not None
            self.public_key.verify(_b64url(sig_b64), f"{head_b64}.{claims_b64}".encode(), padding.PKCS1v15(), hashes.SHA256())
        except Exception:
            return web.json_response({"error": "invalid_grant", "error_description": "Invalid JWT Signature."}, status=400)
        now = time.time()
        if (header.get("alg") != "RS256" or claims.get("iss") != self.client_email or claims.get("aud") not in (self.token_uri, GOOGLE_TOKEN_AUDIENCE)
                or "https://www.googleapis.com/auth/cloud-platform" not in claims.get("scope", "").split()
                or not claims["iat"] - 300 <= now <= claims["exp"] + 300 or claims["exp"] - claims["iat"] > 3600):
            return web.json_response({"error": "invalid_grant", "error_description": "Invalid JWT claims."}, status=400)
        return web.json_response({"access_token": self.issue("ya29"), "expires_in": int(self.lifetime_s) or 1,
                                  "token_type": "Bearer"})


# --- the services


def _anthropic_answer(req: dict[str, Any], stream: bool, model: str, *, call_tools: bool = True) -> list[bytes] | bytes:
    tools = call_tools and bool(req.get("tools"))
    if stream:
        name = "anthropic_messages_stream_tool_use.sse" if tools else "anthropic_messages_stream_text.sse"
        return split_events(fixture_bytes(name))
    name = "anthropic_messages_nonstream_tool_use.json" if tools else "anthropic_messages_nonstream.json"
    obj = json.loads(fixture_bytes(name))
    obj["model"] = model
    return json.dumps(obj).encode()


# The betas each cloud takes for Claude (its documentation); the fake refuses any other, as they do.
VERTEX_KNOWN_BETAS = frozenset({
    "compact-2026-01-12", "compact-2026-09-04", "computer-use-2025-01-24", "computer-use-2025-11-24",
    "context-1m-2025-08-07", "context-management-2025-06-27", "dangerous-tool-use-2026-09-03",
    "interleaved-thinking-2025-05-14", "per-turn-control-2026-07-01", "thinking-binding-controls-2026-08-01",
    "thinking-display-updates-2026-08-18", "tool-search-tool-2025-10-19", "web-search-2025-03-05",
})
BEDROCK_KNOWN_BETAS = frozenset({
    "compact-2026-01-12", "computer-use-2024-10-22", "computer-use-2025-01-24", "computer-use-2025-11-24",
    "context-1m-2025-08-07", "context-management-2025-06-27", "dangerous-tool-use-2026-09-03",
    "dev-full-thinking-2025-05-14", "effort-2025-11-24", "fine-grained-tool-streaming-2025-05-14",
    "interleaved-thinking-2025-05-14", "mid-conversation-output-config-2026-07-01",
    "mid-conversation-tool-changes-2026-07-01", "output-128k-2025-02-19", "thinking-binding-controls-2026-08-01",
    "thinking-display-updates-2026-08-18", "token-efficient-tools-2025-02-19", "tool-examples-2025-10-29",
    "tool-search-tool-2025-10-19",
})


def _check_betas(req: dict[str, Any], betas: list[str], known: frozenset[str]) -> str | None:
    """Unknown betas, and what needs a beta the request does not carry, are refused."""
    unknown = [b for b in betas if b not in known]
    if unknown:
        return "Unexpected value(s) " + ", ".join(f"`{b}`" for b in unknown) + " for the `anthropic-beta` header."
    for i, m in enumerate(req.get("messages") or []):
        if m.get("role") == "system" and "per-turn-control-2026-07-01" not in betas:
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
    if any(t.get("defer_loading") for t in req.get("tools") or []) and "tool-search-tool-2025-10-19" not in betas:
        return "tools.0.defer_loading: Extra inputs are not permitted"
    return None


def _check_messages_body(req: dict[str, Any], version: str, *, stream_key: str) -> str | None:
    """Bedrock and Vertex reject a Messages body that is not theirs."""
    if req.get("anthropic_version") != version:
        return f"anthropic_version must be {version}"
    if "model" in req:
        return "extraneous key [model] is not permitted"
    if stream_key == "forbidden" and "stream" in req:
        return "extraneous key [stream] is not permitted"
    if not isinstance(req.get("messages"), list) or not isinstance(req.get("max_tokens"), int):
        return "messages and max_tokens are required"
    refusal = anthropic_schema_refusal(req)  # the same structured outputs as Anthropic's own API
    return None if refusal is None else str(refusal["error"]["message"])


_CONVERSE_NAME = re.compile(r"[a-zA-Z0-9_-]{1,64}")


def _bad_converse_tool_name(req: dict[str, Any]) -> str | None:
    """Bedrock's refusal of a tool name outside ``[a-zA-Z0-9_-]+`` of 1-64 characters (API
    reference: ToolSpecification, SpecificToolChoice, ToolUseBlock), None when all are valid."""
    config = req.get("toolConfig") or {}
    named = [(f"toolConfig.tools.{i + 1}.member.toolSpec.name", t["toolSpec"]["name"])
             for i, t in enumerate(config.get("tools") or [])]
    if "tool" in (config.get("toolChoice") or {}):
        named.append(("toolConfig.toolChoice.tool.name", config["toolChoice"]["tool"]["name"]))
    named += [(f"messages.{i + 1}.member.content.{j + 1}.member.toolUse.name", b["toolUse"]["name"])
              for i, m in enumerate(req.get("messages") or []) for j, b in enumerate(m["content"]) if "toolUse" in b]
    for where, name in named:
        if not isinstance(name, str) or not _CONVERSE_NAME.fullmatch(name):
            return (f"1 validation error detected: Value '{name}' at '{where}' failed to satisfy constraint: "
                    "Member must satisfy regular expression pattern: [a-zA-Z0-9_-]+ and length less than or equal to 64")
    return None


class CloudFake:
    """Bedrock (``/model/...``), Azure (``/openai/...``), Vertex (``/v1/projects/...``) and
    the two token endpoints, on 127.0.0.1:<port>."""

    def __init__(self) -> None:
        self.requests: list[Recorded] = []
        self.port = 0
        self.sigv4: SigV4 | None = None
        self.bedrock_api_key: str | None = None
        self.azure_api_key: str | None = None
        self.azure_tokens = AzureTokens()
        self.google_tokens = GoogleTokens()
        self.project = "proj-1"
        self.location = "us-east5"
        self.stream_frames: list[bytes] | None = None  # override the next Bedrock stream's frames
        self.split_frames = True  # send frames split across writes (framing must be reassembled)
        self.call_tools = True  # Claude answers a request with tools by calling one (False: with text)
        self.converse_answer: bytes | None = None  # the next Converse answer's raw 200 body, as given
        self.converse_usage: dict[str, int] | None = None  # Converse usage to report (cache counts, say)
        self.converse_reasoning = False  # answer with a reasoningContent block first (DeepSeek-R1, Claude)
        self.converse_break_after: int | None = None  # end a ConverseStream with an exception frame after N frames
        self.converse_text = "4200 + 42 = 4242"  # the text a Converse answer (JSON or stream) carries
        self.converse_stop: str | None = None  # the stopReason to report instead of end_turn / tool_use
        self.converse_json: str | None = None  # the text instead, when the system prompt asks for JSON (as a model obeys it)
        self.next_error: web.Response | None = None  # the next Bedrock or Vertex answer, as given
        self.azure_stream: list[bytes] | None = None  # the next Azure Chat stream's events, as given
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def hits_openai(self) -> int:
        return sum(1 for r in self.requests if r.path.startswith("/openai/"))

    def last(self, part: str = "") -> Recorded:
        return [r for r in self.requests if part in r.path][-1]

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tenant}/oauth2/v2.0/token", self.azure_tokens.handle)
        app.router.add_post("/google/token", self.google_tokens.handle)
        app.router.add_post("/model/{model}/{action}", self._bedrock)
        app.router.add_post("/openai/{tail:.*}", self._azure)
        app.router.add_post("/v1/projects/{project}/locations/{location}/publishers/{publisher}/models/{call}", self._vertex)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = self._runner.addresses[0][1]  # the bound port of an ephemeral listen
        self.google_tokens.token_uri = f"{self.url}/google/token"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _record(self, request: web.Request) -> bytes:
        body = await request.read()
        self.requests.append(Recorded(request.method, request.raw_path.split("?")[0], request.query_string,
                                      CIMultiDict(request.headers), body))
        return body

    # Bedrock: https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_InvokeModel.html
    async def _bedrock(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        if self.next_error is not None:
            answer, self.next_error = self.next_error, None
            return answer
        def deny(status: int, kind: str, message: str) -> web.Response:
            return web.json_response({"message": message}, status=status, headers={"x-amzn-ErrorType": f"{kind}:http://internal.amazon.com/coral/com.amazon.bedrock/"})

        if self.bedrock_api_key is not None:
            if request.headers.get("Authorization") != f"Bearer {self.bedrock_api_key}":
                return deny(403, "AccessDeniedException", "Invalid API Key format: Must start with pre-defined prefix")
        else:
            assert self.sigv4 is not None
            raw_path = request.raw_path.split("?")[0]
            why = self.sigv4.check(request.method, raw_path, request.query_string, CIMultiDict(request.headers), body)
            if why is not None:
                return deny(403, "InvalidSignatureException" if "signature" in why else "UnrecognizedClientException", why)
        model, action = request.match_info["model"], request.match_info["action"]
        if action in ("converse", "converse-stream"):
            return await self._converse(request, body, action == "converse-stream", deny)
        if action not in ("invoke", "invoke-with-response-stream"):
            return deny(404, "UnknownOperationException", "unknown operation")
        if not (model.startswith("anthropic.") or ".anthropic." in model):
            return deny(400, "ValidationException", "The provided model identifier is invalid.")
        req = json.loads(body)
        why = _check_messages_body(req, "bedrock-2023-05-31", stream_key="forbidden")
        betas = req.get("anthropic_beta") or []
        if why is None and (not isinstance(betas, list) or any(b not in BEDROCK_KNOWN_BETAS for b in betas)):
            why = "invalid beta flag"
        if why is None:
            why = _check_betas(req, betas, BEDROCK_KNOWN_BETAS)
        if why is not None:
            return deny(400, "ValidationException", why)
        if action == "invoke":
            out = _anthropic_answer(req, False, model, call_tools=self.call_tools)
            assert isinstance(out, bytes)
            return web.Response(body=out, content_type="application/json")
        frames = self.stream_frames
        self.stream_frames = None
        if frames is None:
            events = _anthropic_answer(req, True, model, call_tools=self.call_tools)
            assert isinstance(events, list)
            frames = [bedrock_chunk(sse_data(e)) for e in events if sse_data(e)]
        resp = web.StreamResponse(headers={"Content-Type": "application/vnd.amazon.eventstream",
                                           "x-amzn-bedrock-content-type": "application/json"})
        await resp.prepare(request)
        data = b"".join(frames)
        if self.split_frames:  # odd-sized writes: frames straddle reads
            for i in range(0, len(data), 37):
                await resp.write(data[i:i + 37])
        else:
            await resp.write(data)
        await resp.write_eof()
        return resp

    # Converse: https://docs.aws.amazon.com/bedrock/latest/APIReference/API_runtime_Converse.html
    async def _converse(self, request: web.Request, body: bytes, stream: bool,
                        deny: Callable[[int, str, str], web.Response]) -> web.StreamResponse:
        req = json.loads(body)
        allowed = {"messages", "system", "inferenceConfig", "toolConfig", "guardrailConfig", "additionalModelRequestFields",
                   "additionalModelResponseFieldPaths", "promptVariables", "requestMetadata", "performanceConfig"}
        extra = set(req) - allowed
        if extra:
            return deny(400, "ValidationException", f"extraneous key [{sorted(extra)[0]}] is not permitted")
        for m in req.get("messages") or []:
            if m.get("role") not in ("user", "assistant") or not m.get("content"):
                return deny(400, "ValidationException", "messages need a role and content")
            for block in m["content"]:
                if len(block) != 1 or next(iter(block)) not in ("text", "image", "toolUse", "toolResult", "document"):
                    return deny(400, "ValidationException", f"bad content block {block}")
        if not isinstance((req.get("inferenceConfig") or {}).get("maxTokens", 1), int):
            return deny(400, "ValidationException", "maxTokens must be an integer")
        roles = [m.get("role") for m in req.get("messages") or []]
        if any(a == b for a, b in zip(roles, roles[1:], strict=False)):
            return deny(400, "ValidationException", "A conversation must alternate between user and assistant roles. "
                        "Make sure the conversation alternates between user and assistant roles and try again.")
        uses_tools = any("toolUse" in b or "toolResult" in b for m in req.get("messages") or [] for b in m["content"])
        if uses_tools and not req.get("toolConfig"):
            return deny(400, "ValidationException",
                        "The toolConfig field must be defined when using toolUse and toolResult content blocks.")
        tools = (req.get("toolConfig") or {}).get("tools")
        if tools is not None and not all("json" in t["toolSpec"]["inputSchema"] for t in tools):
            return deny(400, "ValidationException", "toolSpec.inputSchema.json is required")
        bad = _bad_converse_tool_name(req)
        if bad is not None:
            return deny(400, "ValidationException", bad)
        chosen = ((req.get("toolConfig") or {}).get("toolChoice") or {}).get("tool")
        tool = (chosen["name"] if chosen else tools[0]["toolSpec"]["name"]) if tools and self.call_tools else None
        usage = self.converse_usage or {"inputTokens": 21, "outputTokens": 9, "totalTokens": 30}
        thought = {"text": "Adding the numbers.", "signature": "sig-bdrk-1"}
        if not stream and self.converse_answer is not None:
            answer, self.converse_answer = self.converse_answer, None
            return web.Response(body=answer, content_type="application/json")
        stop = self.converse_stop or ("tool_use" if tool else "end_turn")
        text = self.converse_text
        if self.converse_json is not None and any("JSON" in b.get("text", "") for b in req.get("system") or []):
            text = self.converse_json
        if not stream:
            content: list[dict[str, Any]] = [{"text": text}] if text else []
            if tool:
                content = [{"text": "Calling it."}, {"toolUse": {"toolUseId": "tooluse_1", "name": tool, "input": {"password": "mellon"}}}]
            if self.converse_reasoning:
                content.insert(0, {"reasoningContent": {"reasoningText": thought}})
            return web.json_response({"output": {"message": {"role": "assistant", "content": content}},
                                      "stopReason": stop, "usage": usage,
                                      "metrics": {"latencyMs": 12}})
        def ev(name: str, payload: dict[str, Any]) -> bytes:
            return encode_event_stream({":event-type": name, ":content-type": "application/json", ":message-type": "event"},
                                       json.dumps({**payload, "p": "abc"}).encode())
        frames = [ev("messageStart", {"role": "assistant"})]
        at = 0
        if self.converse_reasoning:  # ConverseStream: text deltas, then the signature, in one block
            frames += [ev("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "Adding the "}}}),
                       ev("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"text": "numbers."}}}),
                       ev("contentBlockDelta", {"contentBlockIndex": 0, "delta": {"reasoningContent": {"signature": thought["signature"]}}}),
                       ev("contentBlockStop", {"contentBlockIndex": 0})]
            at = 1
        half = len(text) // 2
        if text:
            frames += [ev("contentBlockDelta", {"contentBlockIndex": at, "delta": {"text": text[:half]}}),
                       ev("contentBlockDelta", {"contentBlockIndex": at, "delta": {"text": text[half:]}}),
                       ev("contentBlockStop", {"contentBlockIndex": at})]
        if tool:
            frames += [ev("contentBlockStart", {"contentBlockIndex": at + 1, "start": {"toolUse": {"toolUseId": "tooluse_1", "name": tool}}}),
                       ev("contentBlockDelta", {"contentBlockIndex": at + 1, "delta": {"toolUse": {"input": '{"passw'}}}),
                       ev("contentBlockDelta", {"contentBlockIndex": at + 1, "delta": {"toolUse": {"input": 'ord": "mellon"}'}}}),
                       ev("contentBlockStop", {"contentBlockIndex": at + 1})]
        frames += [ev("messageStop", {"stopReason": stop}),
                   ev("metadata", {"usage": usage, "metrics": {"latencyMs": 12}})]
        if self.converse_break_after is not None:  # before its metadata: no usage ever reported
            frames = [*frames[:self.converse_break_after], bedrock_exception("throttlingException", "Too many tokens")]
        resp = web.StreamResponse(headers={"Content-Type": "application/vnd.amazon.eventstream"})
        await resp.prepare(request)
        data = b"".join(frames)
        for i in range(0, len(data), 53):
            await resp.write(data[i:i + 53])
        await resp.write_eof()
        return resp

    # Azure OpenAI: https://learn.microsoft.com/azure/ai-foundry/openai/reference
    async def _azure(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        auth_ok = (self.azure_api_key is not None and request.headers.get("api-key") == self.azure_api_key) or \
            self.azure_tokens.valid(request.headers.get("Authorization", ""))
        if not auth_ok:
            return web.json_response({"error": {"code": "401", "message": "Access denied due to invalid subscription key or wrong API endpoint."}}, status=401)
        tail = request.match_info["tail"]
        version = request.query.get("api-version")
        parts = tail.split("/")
        if parts[0] == "deployments" and len(parts) >= 3:
            if not version or version == "v1":
                return web.json_response({"error": {"code": "404", "message": "Resource not found"}}, status=404)
            deployment, op = parts[1], "/".join(parts[2:])
        elif parts[0] == "v1" and len(parts) >= 2:
            if version not in (None, "preview"):
                return web.json_response({"error": {"code": "BadRequest", "message": "api-version is not allowed on v1"}}, status=400)
            deployment, op = None, "/".join(parts[1:])
        else:
            return web.json_response({"error": {"code": "404", "message": "Resource not found"}}, status=404)
        req = json.loads(body)
        model = deployment or req.get("model")
        if not model:
            return web.json_response({"error": {"code": "BadRequest", "message": "model is required"}}, status=400)
        stream = bool(req.get("stream"))
        if "stream_options" in req and deployment is not None and str(version)[:10] < "2024-09-01":
            return web.json_response({"error": {"code": None, "param": None, "type": "invalid_request_error",
                                                "message": "Unrecognized request argument supplied: stream_options"}}, status=400)
        if op == "chat/completions":
            if stream and self.azure_stream is not None:
                events, self.azure_stream = self.azure_stream, None
                return await _sse(request, events)
            if stream:
                name = "openai_chat_stream_tool_calls.sse" if req.get("tools") else "openai_chat_stream_text.sse"
                events = split_events(fixture_bytes(name))
                if not (req.get("stream_options") or {}).get("include_usage"):
                    events = [e for e in events if b'"choices":[]' not in e]
                return await _sse(request, events)
            name = "openai_chat_nonstream_tool_calls.json" if req.get("tools") else "openai_chat_nonstream.json"
            obj = json.loads(fixture_bytes(name))
            obj["model"] = model
            return web.json_response(obj)
        if op == "responses" and deployment is None:
            if stream:
                name = "openai_responses_stream_function_calls.sse" if req.get("tools") else "openai_responses_stream_text.sse"
                return await _sse(request, split_events(fixture_bytes(name)))
            return web.Response(body=fixture_bytes("openai_responses_nonstream.json"), content_type="application/json")
        if op == "embeddings":
            obj = json.loads(fixture_bytes("openai_embeddings_base64.json"))
            obj["model"] = model
            return web.json_response(obj)
        return web.json_response({"error": {"code": "404", "message": "Resource not found"}}, status=404)

    # Vertex AI: https://cloud.google.com/vertex-ai/generative-ai/docs/partner-models/claude
    async def _vertex(self, request: web.Request) -> web.StreamResponse:
        body = await self._record(request)
        if self.next_error is not None:
            answer, self.next_error = self.next_error, None
            return answer
        if not self.google_tokens.valid(request.headers.get("Authorization", "")):
            return web.json_response({"error": {"code": 401, "message": "Request had invalid authentication credentials.",
                                                "status": "UNAUTHENTICATED"}}, status=401)
        info = request.match_info
        if info["project"] != self.project or info["location"] != self.location:
            return web.json_response({"error": {"code": 404, "message": "project or location not found", "status": "NOT_FOUND"}}, status=404)
        model, _, method = info["call"].partition(":")
        req = json.loads(body)
        if info["publisher"] == "anthropic":
            if method not in ("rawPredict", "streamRawPredict"):
                return web.json_response({"error": {"code": 404, "message": "method", "status": "NOT_FOUND"}}, status=404)
            why = _check_messages_body(req, "vertex-2023-10-16", stream_key="allowed")
            if why is None:
                header = ",".join(request.headers.getall("anthropic-beta", []))
                why = _check_betas(req, [b.strip() for b in header.split(",") if b.strip()], VERTEX_KNOWN_BETAS)
            if why is None and bool(req.get("stream")) != (method == "streamRawPredict"):
                why = "stream must be true exactly for streamRawPredict"
            if why is not None:
                return web.json_response({"type": "error", "error": {"type": "invalid_request_error", "message": why}}, status=400)
            out = _anthropic_answer(req, method == "streamRawPredict", model, call_tools=self.call_tools)
            if isinstance(out, list):
                return await _sse(request, out)
            return web.Response(body=out, content_type="application/json")
        if info["publisher"] != "google" or method not in ("generateContent", "streamGenerateContent"):
            return web.json_response({"error": {"code": 404, "message": "method", "status": "NOT_FOUND"}}, status=404)
        unknown = gemini_unknown_field(request.path, req)
        if unknown is not None:
            message = f'Invalid JSON payload received. Unknown name "{unknown}": Cannot find field.'
            return web.json_response({"error": {"code": 400, "message": message, "status": "INVALID_ARGUMENT"}}, status=400)
        if method == "streamGenerateContent":
            if request.query.get("alt") != "sse":
                return web.json_response({"error": {"code": 400, "message": "use alt=sse", "status": "INVALID_ARGUMENT"}}, status=400)
            name = "gemini_stream_function_call.sse" if req.get("tools") else "gemini_stream.sse"
            return await _sse(request, split_events(fixture_bytes(name)))
        return web.Response(body=fixture_bytes("gemini_generate_content.json"), content_type="application/json")


async def _sse(request: web.Request, events: list[bytes]) -> web.StreamResponse:
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await resp.prepare(request)
    for e in events:
        await resp.write(e)
    await resp.write_eof()
    return resp


def claude_channel(kind: str, upstream: FakeUpstream, cloud: CloudFake, tmp_path: Path) -> dict[str, Any]:
    """A channel (without its name) reaching Claude through ``kind``: anthropic, deepseek's Anthropic
    endpoint (on ``upstream``), or Bedrock / Vertex (on ``cloud``, a key or service account set up)."""
    if kind == "anthropic":
        return {"provider_type": "anthropic", "base_url": upstream.url, "api_key": "sk-ant"}
    if kind == "deepseek":
        return {"provider_type": "deepseek", "base_url": upstream.openai_url, "api_key": "sk-ds",
                "anthropic_base_url": upstream.url + "/anthropic"}
    if kind == "bedrock":
        cloud.bedrock_api_key = "ABSK-test"
        return {"provider_type": "bedrock", "region": "us-west-2", "base_url": cloud.url, "api_key": "ABSK-test",
                "model_map": {"*": "us.anthropic.claude-opus-4-5-20251101-v1:0"}}
    info, public = service_account(cloud.google_tokens.token_uri)
    cloud.google_tokens.public_key = public
    path = tmp_path / "sa.json"
    path.write_text(json.dumps(info))
    return {"provider_type": "vertex", "project": "proj-1", "location": "us-east5", "base_url": cloud.url,
            "credentials_file": str(path), "model_map": {"*": "claude-opus-4-5@20251101"}}
