"""AWS Bedrock: InvokeModel for Anthropic models, SigV4 signing, and the AWS credential chain.

Anthropic models (``anthropic.*`` and inference profiles such as ``us.anthropic.*``) are
spoken natively: ``POST /model/{id}/invoke`` and ``/invoke-with-response-stream`` with the
Messages body minus ``model`` and ``stream`` plus ``anthropic_version: bedrock-2023-05-31``
(what Anthropic's own Bedrock client sends); streams arrive in AWS event-stream framing
(``apex.upstream.eventstream``). Other models use Converse / ConverseStream.

Auth is a Bedrock API key (a static ``Authorization: Bearer``), or SigV4 with botocore's
``SigV4Auth`` (service ``bedrock``) over the exact bytes sent. Keys come from the config,
or from botocore's standard chain (environment, shared files and profiles, web identity,
container and instance metadata), resolved and refreshed in a background thread: botocore
may block on files and the metadata services, which the event loop must never do.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass, replace
from typing import ClassVar, Final

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials, RefreshableCredentials
from botocore.session import Session

from apex.config.model import AwsCredentials, Channel
from apex.errors import InvalidRequest, Untranslatable
from apex.upstream.cloud import Authorizer, CloudRoute, CloudSetup, Native, anthropic_body_for
from apex.upstream.converse import anthropic_to_converse, converse_reply
from apex.upstream.credentials import CredentialSlot, Fetched, Refresher
from apex.upstream.eventstream import event_stream_reply
from apex.upstream.http import encode_header_fields
from apex.types import Dialect

__all__ = ["BEDROCK_ANTHROPIC_VERSION", "ConverseRoute", "aws_refresher", "bedrock_setup", "is_anthropic_model", "sigv4_authorizer"]

BEDROCK_ANTHROPIC_VERSION: Final = "bedrock-2023-05-31"
SERVICE: Final = "bedrock"
# botocore refreshes temporary keys itself once they are within 10 minutes of expiry
# (its mandatory refresh window), so keys it hands out stay valid at least that long.
_CHAIN_KEYS_VALID_S: Final = 600.0
_SIGNED_CONTENT_TYPE: Final = "application/json"


def is_anthropic_model(model: str) -> bool:
    """``anthropic.claude-...``, an inference profile ``us.anthropic.claude-...``, or an ARN
    naming one."""
    if model.startswith("arn:"):
        return "anthropic." in model
    head, _, rest = model.partition(".")
    return head == "anthropic" or rest.startswith("anthropic.")


def bedrock_setup(ch: Channel, base: str) -> CloudSetup:
    """URLs, body edits, auth and stream framing of a bedrock channel."""
    region = ch.region or ""
    credentials: CredentialSlot | None = None
    auth: dict[str, str] = {}
    authorize = None
    if ch.api_key:
        auth = {"Authorization": f"Bearer {ch.api_key}"}
    else:
        static = ch.aws
        credentials = CredentialSlot(("aws", static), lambda _pool: aws_refresher(ch.name, static))
        authorize = sigv4_authorizer(credentials, ch.name, region)

    def invoke_url(model: str, stream: bool) -> str:
        action = "invoke-with-response-stream" if stream else "invoke"
        return f"{base}/model/{model}/{action}"

    anthropic = CloudRoute(
        invoke_url, anthropic_body_for(BEDROCK_ANTHROPIC_VERSION, keep_stream=False), authorize, event_stream_reply
    )
    def converse_url(model: str, stream: bool) -> str:
        return f"{base}/model/{model}/{'converse-stream' if stream else 'converse'}"

    # Other models: Converse, behind the same Messages shape (apex.upstream.converse).
    converse = ConverseRoute(converse_url, None, authorize)
    kinds = {
        "anthropic": {Dialect.ANTHROPIC_MESSAGES: Native(f"{base}/model", "anthropic", anthropic)},
        "converse": {Dialect.ANTHROPIC_MESSAGES: Native(f"{base}/model", "anthropic", converse)},
    }
    return CloudSetup(kinds, _kind_of, auth, credentials)


@dataclass(frozen=True, slots=True)
class ConverseRoute(CloudRoute):
    """The Converse route: the Messages body becomes a Converse body when the attempt is
    prepared, and the answer needs what that conversion learned (the tool names it fitted, to
    give the calls their Messages names back): ``convert`` returns a route for this request
    whose ``reply`` knows them."""

    resolves_tool_search: ClassVar[bool] = True  # anthropic_to_converse declares loaded tools itself
    server_tools: ClassVar[bool] = False  # Converse has no web search: a Codex web_search is dropped

    def convert(self, body: bytes) -> tuple[bytes, CloudRoute]:
        try:
            converse, names = anthropic_to_converse(body)
        except InvalidRequest as err:  # Converse cannot carry it; the route's next channel may
            raise Untranslatable.of(err) from err
        return converse, replace(self, reply=functools.partial(converse_reply, names=names))


def _kind_of(model: str) -> str:
    return "anthropic" if is_anthropic_model(model) else "converse"


def sigv4_authorizer(slot: CredentialSlot, channel: str, region: str) -> Authorizer:
    """Sign each request with the slot's current keys: the X-Amz-Date, security token and
    Authorization lines. Signed: host, content-type, x-amz-date (and the token)."""

    def authorize(url: str, body: bytes) -> bytes:
        creds = slot.current(channel)
        assert isinstance(creds, ReadOnlyCredentials)
        request = AWSRequest("POST", url, {"Content-Type": _SIGNED_CONTENT_TYPE}, body)
        SigV4Auth(creds, SERVICE, region).add_auth(request)
        h = request.headers
        lines = {"X-Amz-Date": h["X-Amz-Date"], "Authorization": h["Authorization"]}
        token = h.get("X-Amz-Security-Token")
        if token:
            lines["X-Amz-Security-Token"] = token
        return encode_header_fields(lines)

    return authorize


def aws_refresher(channel: str, static: AwsCredentials | None) -> Refresher[object]:
    """Keys from the config (fetched once), or from the standard chain (refreshed)."""
    if static is not None:
        frozen = ReadOnlyCredentials(static.access_key_id, static.secret_access_key, static.session_token)

        async def fixed() -> Fetched[ReadOnlyCredentials]:
            return Fetched(frozen, None)

        return Refresher(channel, "AWS credentials", fixed)

    resolved: list[Credentials] = []

    def resolve() -> Fetched[ReadOnlyCredentials]:
        if not resolved:
            creds = Session().get_credentials()
            if creds is None:
                raise RuntimeError("no AWS credentials found (environment, shared files, web identity, metadata)")
            resolved.append(creds)
        creds = resolved[0]
        frozen = creds.get_frozen_credentials()
        if isinstance(creds, RefreshableCredentials):
            return Fetched(frozen, _CHAIN_KEYS_VALID_S)
        return Fetched(frozen, None)

    async def from_chain() -> Fetched[ReadOnlyCredentials]:
        return await asyncio.to_thread(resolve)

    return Refresher(channel, "AWS credentials", from_chain)
