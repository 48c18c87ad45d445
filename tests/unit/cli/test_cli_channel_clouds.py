"""apex channel add|update|show with the cloud flags (azure_openai, bedrock, vertex)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from click.testing import Result

from tests.unit.cli.conftest import read

Run = Callable[..., Result]


def test_add_azure_with_entra_id(cfg: Path, run: Run) -> None:
    """azure_openai: endpoint, api_version, deployments as --map and the azure_ad block from flat flags."""
    r = run("channel", "add", "az", "--provider", "azure_openai", "--base-url", "https://res.openai.azure.com",
            "--api-version", "2024-10-21", "--map", "gpt-4o=my-deployment", "--azure-tenant-id", "t-1",
            "--azure-client-id", "c-1", "--azure-client-secret", "${AZURE_CLIENT_SECRET}")
    assert r.exit_code == 0, r.output
    assert read(cfg)["channels"][-1] == {
        "name": "az", "provider_type": "azure_openai", "base_url": "https://res.openai.azure.com",
        "model_map": {"gpt-4o": "my-deployment"}, "api_version": "2024-10-21",
        "azure_ad": {"tenant_id": "t-1", "client_id": "c-1", "client_secret": "${AZURE_CLIENT_SECRET}"},
    }


def test_add_bedrock_and_vertex(cfg: Path, run: Run) -> None:
    """bedrock takes a region (the AWS chain by default); vertex a project, location and credentials file."""
    assert run("channel", "add", "br", "--provider", "bedrock", "--region", "us-east-1").exit_code == 0
    r = run("channel", "add", "vx", "--provider", "vertex", "--project", "p-1", "--location", "global",
            "--credentials-file", "/etc/apex/sa.json")
    assert r.exit_code == 0, r.output
    chans = read(cfg)["channels"]
    assert chans[-2] == {"name": "br", "provider_type": "bedrock", "region": "us-east-1"}
    assert chans[-1] == {"name": "vx", "provider_type": "vertex", "project": "p-1", "location": "global",
                         "credentials_file": "/etc/apex/sa.json"}


def test_update_sets_static_aws_keys_and_show_masks_them(cfg: Path, run: Run) -> None:
    """Static AWS keys go into the aws block; show never prints them."""
    assert run("channel", "add", "br", "--provider", "bedrock", "--region", "us-west-2").exit_code == 0
    r = run("channel", "update", "br", "--aws-access-key-id", "AKIAEXAMPLE", "--aws-secret-access-key", "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY")
    assert r.exit_code == 0, r.output
    assert read(cfg)["channels"][-1]["aws"] == {"access_key_id": "AKIAEXAMPLE", "secret_access_key": "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY"}
    shown = run("channel", "show", "br", "--json")
    assert shown.exit_code == 0, shown.output
    assert "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY" not in shown.output
    # The key id is masked too (as `aws configure list` does): an upstream quoting the SigV4
    # Authorization header shows it, so Apex scrubs it everywhere.
    assert "AKIAEXAMPLE" not in shown.output and json.loads(shown.output)["aws"]["access_key_id"]


def test_a_cloud_flag_of_another_cloud_is_refused(cfg: Path, run: Run) -> None:
    """--region on an azure channel fails validation naming the key; the file is unchanged."""
    before = cfg.read_bytes()
    r = run("channel", "add", "az", "--provider", "azure_openai", "--base-url", "https://r.openai.azure.com",
            "--api-version", "v1", "--api-key", "k", "--region", "us-east-1")
    assert r.exit_code == 1 and "region" in r.stderr and "only for provider_type bedrock" in r.stderr
    assert cfg.read_bytes() == before
