"""Bedrock with no keys in the config: botocore's standard credential chain, resolved off the request path."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tests.conftest import StartApex
from tests.integration.cloud_clients import answered, ask
from tests.integration.cloud_fakes import CloudFake, SigV4


@pytest.fixture
def clean_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> pytest.MonkeyPatch:
    """No AWS settings from this machine: empty config files, no metadata service, no keys."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
                 "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return monkeypatch


def config(cloud: CloudFake) -> dict[str, Any]:
    return {
        "global": {"auth": {"keys": ["k"]}, "retries": {"max_attempts": 1}},
        "logging": {"level": "error"},
        "channels": [{"name": "br", "provider_type": "bedrock", "region": "eu-west-1", "base_url": cloud.url,
                      "model_map": {"claude-*": "eu.anthropic.claude-sonnet-4-20250514-v1:0"}}],
        "routers": [{"name": "r", "channels": [{"name": "br"}]}],
    }


async def test_keys_from_the_environment(cloud: CloudFake, start_apex: StartApex, clean_aws_env: pytest.MonkeyPatch) -> None:
    """AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN sign the requests."""
    clean_aws_env.setenv("AWS_ACCESS_KEY_ID", "AKIAENV")
    clean_aws_env.setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
    clean_aws_env.setenv("AWS_SESSION_TOKEN", "env-token")
    cloud.sigv4 = SigV4("AKIAENV", "env-secret", "eu-west-1", session_token="env-token")
    inst = await start_apex(config(cloud))
    text, _ = await ask(inst, "messages", "claude-x", stream=True, tools=False)
    assert answered(text)


async def test_temporary_keys_from_the_container_credentials_endpoint(cloud: CloudFake, start_apex: StartApex,
                                                                      clean_aws_env: pytest.MonkeyPatch) -> None:
    """ECS/EKS-style container credentials (temporary keys with an expiry) are fetched and used."""
    served = []

    async def creds(request: web.Request) -> web.Response:
        served.append(request.headers.get("Authorization"))
        expiry = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
        return web.json_response({"AccessKeyId": "ASIACONTAINER", "SecretAccessKey": "container-secret",
                                  "Token": "container-token", "Expiration": expiry})

    app = web.Application()
    app.router.add_get("/creds", creds)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        port = runner.addresses[0][1]
        clean_aws_env.setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", f"http://127.0.0.1:{port}/creds")
        clean_aws_env.setenv("AWS_CONTAINER_AUTHORIZATION_TOKEN", "pod-identity-token")
        cloud.sigv4 = SigV4("ASIACONTAINER", "container-secret", "eu-west-1", session_token="container-token")
        inst = await start_apex(config(cloud))
        text, _ = await ask(inst, "chat", "claude-x", stream=False, tools=False)
        assert answered(text)
        assert served and served[0] == "pod-identity-token"
    finally:
        await runner.cleanup()


async def test_no_credentials_anywhere_is_a_clear_reason(cloud: CloudFake, start_apex: StartApex,
                                                        clean_aws_env: pytest.MonkeyPatch) -> None:
    """With nothing in the chain, start-up still succeeds and the channel says why it cannot sign."""
    inst = await start_apex(config(cloud))
    assert "no AWS credentials found" in inst.gateway.credential_problems()["br"]
