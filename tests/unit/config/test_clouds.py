"""Config rules of the cloud provider types, and the URLs their channels compile to."""

from __future__ import annotations

import json
from typing import Any

import pytest

import apex.config.clouds as clouds
from apex.config.load import load_config_bytes
from apex.errors import ConfigError
from apex.snapshot import build_snapshot
from apex.types import Dialect


def _load(channel: dict[str, Any]) -> Any:
    cfg = {"channels": [{"name": "c", **channel}], "routers": [{"name": "r", "channels": [{"name": "c"}]}]}
    return load_config_bytes(json.dumps(cfg).encode())


def _error(channel: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as err:
        _load(channel)
    return err.value


AZURE = {"provider_type": "azure_openai", "base_url": "https://res.openai.azure.com", "api_version": "2024-10-21", "api_key": "k"}
BEDROCK = {"provider_type": "bedrock", "region": "us-east-1"}
VERTEX = {"provider_type": "vertex", "project": "p", "location": "us-east5"}


@pytest.mark.parametrize(("channel", "path", "words"), [
    ({**AZURE, "api_version": None}, "channels[0].api_version", "required"),
    ({**AZURE, "api_version": "latest"}, "channels[0].api_version", "Expected `str` matching regex"),
    ({**BEDROCK, "region": "US East"}, "channels[0].region", "Expected `str` matching regex"),
    ({**AZURE, "api_key": None, "azure_ad": {"tenant_id": "", "client_id": "c", "client_secret": "s"}},
     "channels[0].azure_ad.tenant_id", "Expected `str` of length >= 1"),
    ({k: v for k, v in AZURE.items() if k != "api_key"}, "channels[0].api_key", "exactly one"),
    ({**AZURE, "azure_ad": {"tenant_id": "t", "client_id": "c", "client_secret": "s"}}, "channels[0].api_key", "exactly one"),
    ({k: v for k, v in AZURE.items() if k != "base_url"}, "channels[0].base_url", "resource endpoint"),
    ({**BEDROCK, "region": None}, "channels[0].region", "required"),
    ({**BEDROCK, "api_key": "a", "aws": {"access_key_id": "a", "secret_access_key": "b"}}, "channels[0].api_key", "not both"),
    ({**VERTEX, "location": None}, "channels[0].location", "global"),
    ({**VERTEX, "project": None}, "channels[0].project", "project"),
    ({**VERTEX, "api_key": "k"}, "channels[0].api_key", "Application Default Credentials"),
    ({**AZURE, "region": "us-east-1"}, "channels[0].region", "only for provider_type bedrock"),
    ({"provider_type": "openai", "api_key": "k", "project": "p"}, "channels[0].project", "only for provider_type vertex"),
])
def test_cloud_keys_are_checked_with_their_path(channel: dict[str, Any], path: str, words: str) -> None:
    """Each missing, conflicting or misplaced cloud key is a load error naming its JSON path."""
    err = _error({k: v for k, v in channel.items() if v is not None})
    assert err.path == path and words in err.message


@pytest.mark.parametrize(("channel", "extra"), [(BEDROCK, "aws"), (VERTEX, "gcp")])
def test_a_missing_extra_is_a_load_error_naming_it(monkeypatch: pytest.MonkeyPatch, channel: dict[str, Any], extra: str) -> None:
    """Without botocore / google-auth the config does not load, and the error says what to install."""
    monkeypatch.setattr(clouds, "missing_extra", lambda name: name == extra)
    err = _error(channel)
    assert f"apex-gateway[{extra}]" in err.message and err.path == "channels[0].provider_type"


def test_missing_extra_checks_the_real_modules() -> None:
    """The extras the test environment installs are found (so the check is not always 'missing')."""
    assert not clouds.missing_extra("aws") and not clouds.missing_extra("gcp")


def _plans(channel: dict[str, Any]) -> Any:
    return build_snapshot(_load(channel)).channels["c"]


def test_default_urls_follow_region_and_location() -> None:
    """Bedrock defaults to bedrock-runtime.{region}; Vertex to {location}-aiplatform, or the global host."""
    br = _plans(BEDROCK)
    plan = br.plan_for(Dialect.ANTHROPIC_MESSAGES, "anthropic.claude-3-5-haiku-20241022-v1:0")
    assert plan.url_for("anthropic.claude-3-5-haiku-20241022-v1:0", False) == \
        "https://bedrock-runtime.us-east-1.amazonaws.com/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/invoke"
    vx = _plans(VERTEX)
    plan = vx.plan_for(Dialect.OPENAI_CHAT, "gemini-2.5-pro")
    assert plan.url_for("gemini-2.5-pro", True) == ("https://us-east5-aiplatform.googleapis.com/v1/projects/p/locations/us-east5"
                                                    "/publishers/google/models/gemini-2.5-pro:streamGenerateContent?alt=sse")
    glob = _plans({**VERTEX, "location": "global"})
    plan = glob.plan_for(Dialect.ANTHROPIC_MESSAGES, "claude-opus-4@20250514")
    assert plan.url_for("claude-opus-4@20250514", False) == ("https://aiplatform.googleapis.com/v1/projects/p/locations/global"
                                                             "/publishers/anthropic/models/claude-opus-4@20250514:rawPredict")


def test_azure_dated_urls_escape_the_deployment_and_refuse_dot_dot() -> None:
    """A deployment is one escaped path segment of the dated URL; '..' never reaches Azure."""
    from apex.errors import InvalidRequest

    az = _plans(AZURE)
    plan = az.plans[Dialect.OPENAI_CHAT]
    assert plan.url_for("my dep/x", False) == \
        "https://res.openai.azure.com/openai/deployments/my%20dep%2Fx/chat/completions?api-version=2024-10-21"
    with pytest.raises(InvalidRequest):
        plan.url_for("../../admin", False)
    assert Dialect.OPENAI_RESPONSES in az.plans and az.plans[Dialect.OPENAI_RESPONSES].upstream is Dialect.OPENAI_CHAT
