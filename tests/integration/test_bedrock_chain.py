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


async def test_a_session_token_from_the_chain_never_comes_back_out(
    start_apex: StartApex, clean_aws_env: pytest.MonkeyPatch, log_file: Path,
) -> None:
    """AWS answers a bad signature by quoting its canonical string, session token included:
    a token from the chain is scrubbed from the answer and the log like one from the config
    (only config values were), and botocore's own debug lines (its canonical request) stay
    out of Apex's log even at level debug."""
    import anthropic
    import openai

    from apex.config.model import LoggingConfig
    from apex.server.logs import configure_logging
    from tests.conftest import ant, oai

    configure_logging(LoggingConfig(level="debug", format="json", file=str(log_file)))

    token = "IQoJb3JpZ2luX2VjEChainTokenSECRET0123456789"
    clean_aws_env.setenv("AWS_ACCESS_KEY_ID", "AKIAENVCHAIN")
    clean_aws_env.setenv("AWS_SECRET_ACCESS_KEY", "env-secret-chain-0123456789")
    clean_aws_env.setenv("AWS_SESSION_TOKEN", token)

    async def refuse(request: web.Request) -> web.Response:
        canonical = f"POST\\n{request.path}\\n\\nhost:{request.host}\\nx-amz-security-token:{request.headers['X-Amz-Security-Token']}\\n"
        message = f"The request signature we calculated does not match the signature you provided. The Canonical String for this request should have been '{canonical}'"
        return web.json_response({"message": message}, status=403, headers={"x-amzn-ErrorType": "InvalidSignatureException:"})

    app = web.Application()
    app.router.add_post("/{tail:.*}", refuse)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        cfg = {
            "global": {"auth": {"keys": ["k"]}, "retries": {"max_attempts": 1}},
            "channels": [{"name": "br", "provider_type": "bedrock", "region": "eu-west-1", "base_url": f"http://127.0.0.1:{port}",
                          "model_map": {"*": "eu.anthropic.claude-sonnet-4-20250514-v1:0"}}],
            "routers": [{"name": "r", "channels": [{"name": "br"}]}],
        }
        inst = await start_apex(cfg)
        with pytest.raises(openai.APIStatusError) as oe:
            await oai(inst, "k").chat.completions.create(model="claude-x", messages=[{"role": "user", "content": "hi"}])
        with pytest.raises(anthropic.APIStatusError) as ae:
            await ant(inst, "k").messages.create(model="claude-x", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
        logged = _logged(log_file)
        assert "upstream attempt failed" in logged  # the failure is logged, scrubbed
        for text in (oe.value.response.text, ae.value.response.text, logged):
            assert token not in text and "env-secret-chain" not in text
        assert "canonical string" in oe.value.response.text.lower()  # the message itself still comes through
    finally:
        await runner.cleanup()


def _logged(path: Path) -> str:
    from apex.server.logs import flush_logs

    flush_logs()
    return path.read_text()
