"""apex router (incl. rule add/delete) and apex team through click's runner."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from click.testing import Result

from tests.unit.cli.conftest import read

Run = Callable[..., Result]


def test_router_add_with_channels_and_strategy(cfg: Path, run: Run) -> None:
    """router add parses NAME[:WEIGHT] refs and the strategy."""
    r = run("router", "add", "r3", "--vkey", "vk-r3-abcdefghijkl", "--channel", "oa:3", "--channel", "demo",
            "--strategy", "random")
    assert r.exit_code == 0, r.output
    assert read(cfg)["routers"][-1] == {"name": "r3", "vkey": "vk-r3-abcdefghijkl",
                                        "channels": [{"name": "oa", "weight": 3}, {"name": "demo"}],
                                        "strategy": "random"}


def test_router_add_unknown_channel_names_path(cfg: Path, run: Run) -> None:
    """A router naming a missing channel is refused with the key path."""
    r = run("router", "add", "r3", "--channel", "ghost")
    assert r.exit_code == 1
    assert 'routers[2].channels[0].name: unknown channel "ghost"' in r.stderr


def test_router_bad_weight_and_strategy(cfg: Path, run: Run) -> None:
    """A non-numeric weight or unknown strategy is a usage error."""
    assert run("router", "add", "r3", "--channel", "oa:x").exit_code == 2
    assert run("router", "add", "r3", "--channel", "oa:0").exit_code == 2
    assert run("router", "add", "r3", "--strategy", "fastest").exit_code == 2


def test_router_update_keeps_rules(cfg: Path, run: Run) -> None:
    """router update replaces default channels and keeps vkey and rules."""
    assert run("router", "update", "default", "--channel", "oa").exit_code == 0
    router = read(cfg)["routers"][0]
    assert router["channels"] == [{"name": "oa"}]
    assert router["vkey"] == "vk-default-0123456789"
    assert len(router["rules"]) == 1


def test_router_delete_used_by_team_is_refused(cfg: Path, run: Run) -> None:
    """Deleting a router a team allows is refused naming the team."""
    r = run("router", "delete", "second", "--yes")
    assert r.exit_code == 1 and 'team "search"' in r.stderr
    assert run("team", "update", "search", "--router", "default").exit_code == 0
    assert run("router", "delete", "second").exit_code == 0
    assert [x["name"] for x in read(cfg)["routers"]] == ["default"]


def test_router_list_masks_vkey(cfg: Path, run: Run) -> None:
    """router list masks literal vkeys and shows ${VAR} references as written."""
    listed = json.loads(run("router", "list", "--json").stdout)
    assert listed[0]["vkey"] == "vk-…6789"
    assert listed[1]["vkey"] == "${SECOND_VKEY}"
    table = run("router", "list").stdout
    assert "vk-default-0123456789" not in table and "default" in table


def test_router_show(cfg: Path, run: Run) -> None:
    """router show prints the rules; --json includes teams using it."""
    assert "gpt-*" in run("router", "show", "default").stdout
    data = json.loads(run("router", "show", "second", "--json").stdout)
    assert data["used_by"] == ['team "search"']


def test_rule_add_appends_or_inserts(cfg: Path, run: Run) -> None:
    """rule add appends by default and inserts at --position; several --model make a list."""
    assert run("router", "rule", "add", "default", "--model", "claude-*", "--channel", "demo").exit_code == 0
    r = run("router", "rule", "add", "default", "--model", "a*", "--model", "b*", "--channel", "demo:2",
            "--channel", "oa", "--strategy", "priority", "--fallback", "demo", "--position", "0", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["position"] == 0
    rules = read(cfg)["routers"][0]["rules"]
    assert rules[0] == {"match": {"model": ["a*", "b*"]}, "channels": [{"name": "demo", "weight": 2}, {"name": "oa"}],
                        "strategy": "priority", "fallback": ["demo"]}
    assert rules[1]["match"] == {"model": "gpt-*"}
    assert rules[2]["match"] == {"model": "claude-*"}


def test_rule_add_needs_model_and_channel(cfg: Path, run: Run) -> None:
    """A rule without --model or --channel is a usage error; a bad glob names its path."""
    assert run("router", "rule", "add", "default", "--channel", "demo").exit_code == 2
    assert run("router", "rule", "add", "default", "--model", "x").exit_code == 2
    r = run("router", "rule", "add", "default", "--model", "gpt-[", "--channel", "demo")
    assert r.exit_code == 1 and "routers[0].rules[1].match.model" in r.stderr


def test_rule_delete(cfg: Path, run: Run) -> None:
    """rule delete removes by index and rejects an index out of range."""
    assert run("router", "rule", "delete", "default", "3").exit_code == 1
    assert run("router", "rule", "delete", "default", "0", "--yes").exit_code == 0
    assert read(cfg)["routers"][0].get("rules") == []


def test_team_add_with_policy(cfg: Path, run: Run) -> None:
    """team add writes key, routers, models and rate limits."""
    r = run("team", "add", "t2", "--api-key", "${T2_KEY}", "--router", "default", "--model", "gpt-*",
            "--rpm", "60", "--tpm", "1000")
    assert r.exit_code == 0, r.output
    assert read(cfg)["teams"][-1] == {"id": "t2", "api_key": "${T2_KEY}",
                                      "policy": {"allowed_routers": ["default"], "allowed_models": ["gpt-*"],
                                                 "rate_limit": {"rpm": 60, "tpm": 1000}}}


def test_team_add_requires_key_and_known_router(cfg: Path, run: Run) -> None:
    """--api-key is required; an unknown router names its key path; a reused key is refused."""
    assert run("team", "add", "t2").exit_code == 2
    r = run("team", "add", "t2", "--api-key", "k-123456789012", "--router", "ghost")
    assert r.exit_code == 1 and "teams[1].policy.allowed_routers[0]" in r.stderr
    r = run("team", "add", "t2", "--api-key", "vk-default-0123456789")
    assert r.exit_code == 1 and "already used" in r.stderr
    assert run("team", "add", "t2", "--api-key", "k", "--rpm", "-1").exit_code == 2


def test_team_update_keeps_other_limit(cfg: Path, run: Run) -> None:
    """team update --tpm keeps rpm and the key."""
    assert run("team", "update", "search", "--rpm", "10").exit_code == 0
    assert run("team", "update", "search", "--tpm", "99").exit_code == 0
    team = read(cfg)["teams"][0]
    assert team["policy"]["rate_limit"] == {"rpm": 10, "tpm": 99}
    assert team["api_key"] == "tk-search-0123456789"


def test_team_update_can_clear_lists_and_limits(cfg: Path, run: Run) -> None:
    """README: on update an empty value removes a key. --model "" was refused ("bad glob: empty
    pattern") and no --rpm could remove a limit (0 was out of range): a limit set once stayed."""
    assert run("team", "update", "search", "--model", "gpt-*", "--router", "default", "--rpm", "10", "--tpm", "99").exit_code == 0
    r = run("team", "update", "search", "--model", "", "--router", "", "--rpm", "0")
    assert r.exit_code == 0, r.output
    policy = read(cfg)["teams"][0]["policy"]
    assert "allowed_models" not in policy and "allowed_routers" not in policy and policy["rate_limit"] == {"tpm": 99}
    assert run("team", "update", "search", "--tpm", "0").exit_code == 0
    assert "policy" not in read(cfg)["teams"][0]


def test_channel_update_can_clear_lists(cfg: Path, run: Run) -> None:
    """--model "", --header "" and --map "" were refused as a bad glob or a usage error."""
    assert run("channel", "add", "c2", "--provider", "openai", "--api-key", "sk-x", "--model", "gpt-*",
               "--header", "X-Title=app", "--map", "a=b").exit_code == 0
    r = run("channel", "update", "c2", "--model", "", "--header", "", "--map", "")
    assert r.exit_code == 0, r.output
    ch = read(cfg)["channels"][-1]
    assert not {"models", "headers", "model_map"} & set(ch)


def test_team_list_show_delete(cfg: Path, run: Run) -> None:
    """team list/show mask the key; delete removes the team."""
    listed = json.loads(run("team", "list", "--json").stdout)
    assert listed[0]["api_key"] == "tk-…6789"
    assert "tk-search-0123456789" not in run("team", "list").stdout
    assert "tk-search-0123456789" not in run("team", "show", "search").stdout
    assert json.loads(run("team", "show", "search", "--json").stdout)["id"] == "search"
    assert run("team", "delete", "search", "--yes").exit_code == 0
    assert read(cfg)["teams"] == []
    assert run("team", "delete", "search").exit_code == 1


def test_tables_show_globs_as_written(cfg: Path, run: Run) -> None:
    """A glob's [a-z] class is shown, not eaten as rich markup (o[a-z]* showed as o*)."""
    assert run("router", "rule", "add", "default", "--model", "o[a-z]*", "--model", "gpt-[bold]x",
               "--channel", "demo").exit_code == 0
    shown = run("router", "show", "default").stdout
    assert "o[a-z]*" in shown and "gpt-[bold]x" in shown, shown
