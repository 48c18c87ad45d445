"""The request log end to end over real HTTP with the official SDKs, in SQLite and in a real PostgreSQL,
read back by `apex usage` and `apex requests`."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import anthropic
import asyncpg
import openai
import pytest
from click.testing import CliRunner, Result

from apex.cli import cli
from apex.requestlog import COLUMNS
from tests.conftest import ApexInstance, StartApex, ant, basic_config, oai
from tests.integration.fakes import FakeUpstream, error
from tests.postgres_server import PostgresServer, postgres_server

__all__ = ["postgres_server"]  # the fixture

MSG: Any = [{"role": "user", "content": "secret prompt text: what is 4200 + 42?"}]
PRICES = {"gpt-*": {"input": 1000, "output": 1000}, "claude-*": {"input": 1000, "output": 1000}}
Rows = Callable[[], Awaitable[list[dict[str, Any]]]]


def _config(upstream: FakeUpstream, request_log: dict[str, Any]) -> dict[str, Any]:
    cfg = basic_config(upstream)
    cfg["global"]["request_log"] = request_log
    cfg["prices"] = PRICES
    cfg["teams"] = [{"id": "t1", "api_key": "tk-team-1"},
                    {"id": "capped", "api_key": "tk-capped", "policy": {"budget": {"usd": 0.0, "period": "day"}}}]
    return cfg


async def _traffic(inst: ApexInstance, upstream: FakeUpstream) -> None:
    """Seven requests: OpenAI plain and streamed, Anthropic, three failed attempts (500), a budget 429, a 401, team-less."""
    await oai(inst, "tk-team-1").chat.completions.create(model="gpt-4o", messages=MSG)
    _ = [c async for c in await oai(inst, "tk-team-1").chat.completions.create(model="gpt-4o", messages=MSG, stream=True)]
    await ant(inst, "tk-team-1").messages.create(model="claude-sonnet-4-5", max_tokens=50, messages=MSG)
    upstream.push(error(500), error(500), error(500))
    with pytest.raises(openai.InternalServerError):
        await oai(inst, "tk-team-1").chat.completions.create(model="gpt-4o-mini", messages=MSG)
    with pytest.raises(openai.RateLimitError):
        await oai(inst, "tk-capped").chat.completions.create(model="gpt-4o", messages=MSG)
    with pytest.raises(anthropic.AuthenticationError):
        await ant(inst, "wrong-key").messages.create(model="claude-sonnet-4-5", max_tokens=5, messages=MSG)
    await oai(inst).chat.completions.create(model="gpt-4o", messages=MSG)
    assert inst.gateway.request_log is not None
    await inst.gateway.request_log.flush()


def _check_rows(rows: list[dict[str, Any]]) -> float:
    """Check the seven rows; their total cost."""
    assert len(rows) == 7
    by_status: dict[int, list[dict[str, Any]]] = {}
    for r in rows:
        by_status.setdefault(r["status"], []).append(r)
    plain, stream, anth, team_less = sorted(by_status[200], key=lambda r: r["ts"])
    assert (plain["team"], plain["model"], plain["upstream_model"], plain["channel"]) == ("t1", "gpt-4o", "gpt-4o", "oa")
    assert plain["prompt_tokens"] == 16 and plain["completion_tokens"] == 12 and not plain["estimated"]
    assert plain["cost_usd"] == pytest.approx(0.028)
    assert plain["key_fingerprint"].startswith("sha256:") and plain["request_id"].startswith("req_")
    assert plain["request_body"] is None and plain["response_body"] is None  # no content by default
    assert stream["stream"] and stream["ttft_ms"] is not None and stream["cost_usd"] > 0
    assert anth["dialect"] == "anthropic_messages" and anth["channel"] == "an" and anth["cost_usd"] == pytest.approx(0.032)
    assert team_less["team"] is None and team_less["key_fingerprint"].startswith("sha256:")
    assert team_less["key_fingerprint"] != plain["key_fingerprint"]
    failed = by_status[500][0]
    assert failed["attempts"] == 3 and failed["channels_tried"] == "oa,oa,oa" and failed["error_type"] == "api_error"
    assert failed["cost_usd"] is None and failed["prompt_tokens"] is None
    capped = by_status[429][0]
    assert capped["team"] == "capped" and capped["error_type"] == "budget_exceeded" and capped["attempts"] == 0
    denied = by_status[401][0]
    assert denied["team"] is None and denied["key_fingerprint"] is None and denied["error_type"] == "authentication"
    text = json.dumps(rows)
    for secret in ("tk-team-1", "wrong-key", "sk-upstream-oa", "secret prompt text"):
        assert secret not in text
    return float(sum(r["cost_usd"] or 0.0 for r in rows))


async def _cli(config: Path, *args: str) -> Result:
    # In a thread: the Postgres reader runs its own event loop.
    result = await asyncio.to_thread(CliRunner().invoke, cli, ["--config", str(config), *args])
    assert result.exit_code == 0, result.output
    return result


async def _check_reports(config: Path, total_cost: float) -> None:
    total = json.loads((await _cli(config, "usage", "--json")).output)
    assert len(total) == 1 and total[0]["requests"] == 7
    assert total[0]["cost_usd"] == pytest.approx(total_cost) and total_cost > 0.028 * 3 + 0.032
    assert total[0]["errors"] == 3 and total[0]["error_rate"] == pytest.approx(3 / 7)
    assert total[0]["p50_ms"] is not None and total[0]["p95_ms"] >= total[0]["p50_ms"]
    by_team = {(r["team"], r["model"]): r for r in json.loads((await _cli(config, "usage", "--by", "team", "--by", "model",
                                                                          "--json")).output)}
    assert by_team[("t1", "gpt-4o")]["requests"] == 2 and by_team[("t1", "gpt-4o")]["prompt_tokens"] >= 16
    assert by_team[("t1", "claude-sonnet-4-5")]["cost_usd"] == pytest.approx(0.032)
    days = json.loads((await _cli(config, "usage", "--by", "day", "--from", "2000-01-01", "--to", "2999-12-31",
                                  "--json")).output)
    assert len(days) == 1 and days[0]["requests"] == 7 and len(days[0]["day"]) == 10
    assert json.loads((await _cli(config, "usage", "--team", "t1", "--since", "1h", "--json")).output)[0]["requests"] == 4
    table = (await _cli(config, "usage", "--by", "channel")).output
    assert "Usage by channel" in table and "│ oa" in table and "│ an" in table

    fives = json.loads((await _cli(config, "requests", "--status", "5xx", "--json")).output)
    assert [r["status"] for r in fives] == [500]
    claude = json.loads((await _cli(config, "requests", "--model", "claude-*", "--limit", "5", "--json")).output)
    assert [r["status"] for r in claude] == [200]  # the 401 never got as far as reading a model
    latest = json.loads((await _cli(config, "requests", "--limit", "2", "--json")).output)
    assert len(latest) == 2 and latest[0]["ts"] >= latest[1]["ts"]
    assert all(isinstance(r["stream"], bool) for r in latest)  # SQLite gave 0/1, PostgreSQL true/false
    shown = json.loads((await _cli(config, "requests", "show", fives[0]["request_id"], "--json")).output)
    assert shown["channels_tried"] == "oa,oa,oa" and set(shown) == set(COLUMNS)
    assert "Latest requests" in (await _cli(config, "requests", "--team", "t1")).output
    assert fives[0]["request_id"] in (await _cli(config, "requests", "show", fives[0]["request_id"])).output
    # --config and --json given to the group, before `show` (the group's help lists them)
    result = await asyncio.to_thread(CliRunner().invoke, cli, ["requests", "--config", str(config), "--json", "show",
                                                               fives[0]["request_id"]])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["request_id"] == fives[0]["request_id"]


async def test_sqlite_log_records_every_request_and_reports(
    upstream: FakeUpstream, start_apex: StartApex, tmp_path: Path
) -> None:
    """Every request lands in the SQLite file (WAL) with its metadata and cost, no content, no key;
    `apex usage` and `apex requests` report from it."""
    db = tmp_path / "state" / "requests.db"
    cfg = _config(upstream, {"type": "sqlite", "path": str(db)})
    inst = await start_apex(cfg)
    await _traffic(inst, upstream)
    conn = sqlite3.connect(db)
    conn.row_factory = sqlite3.Row
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    rows = [dict(r) for r in conn.execute("SELECT * FROM apex_requests")]
    conn.close()
    total_cost = _check_rows(rows)
    config = tmp_path / "config.json"
    config.write_text(json.dumps(cfg))
    await _check_reports(config, total_cost)


async def test_postgres_log_records_every_request_and_reports(
    upstream: FakeUpstream, start_apex: StartApex, tmp_path: Path, postgres_server: PostgresServer
) -> None:
    """The same with a real PostgreSQL server: rows written with COPY, reports through asyncpg."""
    cfg = _config(upstream, {"type": "postgres", "dsn": postgres_server.dsn})
    inst = await start_apex(cfg)
    await _traffic(inst, upstream)
    conn = await asyncpg.connect(postgres_server.dsn)
    try:
        rows = [dict(r) for r in await conn.fetch("SELECT * FROM apex_requests")]
    finally:
        await conn.close()
    total_cost = _check_rows(rows)
    config = tmp_path / "config.json"
    config.write_text(json.dumps(cfg))
    await _check_reports(config, total_cost)


async def test_capture_content_is_opt_in_and_capped(upstream: FakeUpstream, start_apex: StartApex, tmp_path: Path) -> None:
    """capture_content records the request body and a non-stream answer, each cut to capture_max_bytes."""
    db = tmp_path / "requests.db"
    inst = await start_apex(_config(upstream, {"type": "sqlite", "path": str(db), "capture_content": True,
                                               "capture_max_bytes": 40}))
    await oai(inst, "tk-team-1").chat.completions.create(model="gpt-4o", messages=MSG)
    assert inst.gateway.request_log is not None
    await inst.gateway.request_log.flush()
    conn = sqlite3.connect(db)
    request_body, response_body = conn.execute("SELECT request_body, response_body FROM apex_requests").fetchone()
    conn.close()
    assert request_body.startswith('{"messages"') or request_body.startswith('{"model"')
    assert "more bytes]" in request_body and "more bytes]" in response_body


async def test_unwritable_log_does_not_stop_the_gateway(upstream: FakeUpstream, start_apex: StartApex, tmp_path: Path) -> None:
    """A log file that cannot be opened is reported and the gateway serves without it."""
    blocker = tmp_path / "file"
    blocker.write_text("")
    inst = await start_apex(_config(upstream, {"type": "sqlite", "path": str(blocker / "requests.db")}))
    assert inst.gateway.request_log is None
    await oai(inst, "tk-team-1").chat.completions.create(model="gpt-4o", messages=MSG)


async def test_a_nul_byte_in_captured_content_costs_no_row(
    upstream: FakeUpstream, start_apex: StartApex, postgres_server: PostgresServer
) -> None:
    """PostgreSQL text cannot hold NUL: a body with a raw 0x00 failed its whole batch, so every
    request logged beside it was lost. It is stored with U+FFFD in its place."""
    cfg = _config(upstream, {"type": "postgres", "dsn": postgres_server.dsn, "capture_content": True})
    inst = await start_apex(cfg)
    client = oai(inst, "tk-team-1")
    await client.chat.completions.create(model="gpt-4o", messages=MSG)
    body = b'{"model": "gpt-4o", "messages": [{"role": "user", "content": "a\x00b"}]}'
    async with aiohttp.ClientSession() as s, s.post(f"{inst.openai_url}/chat/completions", data=body, headers={
            "Authorization": "Bearer tk-team-1", "Content-Type": "application/json"}) as r:
        assert r.status in (200, 400)
    await client.chat.completions.create(model="gpt-4o", messages=MSG)
    assert inst.gateway.request_log is not None
    await inst.gateway.request_log.flush()
    conn = await asyncpg.connect(postgres_server.dsn)
    try:
        rows = await conn.fetch("SELECT request_body FROM apex_requests")
    finally:
        await conn.close()
    assert len(rows) == 3 and inst.gateway.request_log.dropped == 0
    assert any("a\ufffdb" in (r["request_body"] or "") for r in rows)


async def test_reports_on_a_log_that_cannot_be_read_say_so_in_one_line(tmp_path: Path,
                                                                       postgres_server: PostgresServer) -> None:
    """A PostgreSQL server that is down, or a log whose table the gateway has not created yet:
    one line (a JSON object with --json), not a 70-line traceback."""
    from tests.integration.conftest import free_port

    down = {"global": {"request_log": {"type": "postgres", "dsn": f"postgresql://apex@127.0.0.1:{free_port()}/apex"}},
            "channels": [{"name": "m", "provider_type": "mock"}]}
    empty = {"global": {"request_log": {"type": "postgres", "dsn": postgres_server.dsn}},
             "channels": [{"name": "m", "provider_type": "mock"}]}
    conn = await asyncpg.connect(postgres_server.dsn)
    try:
        await conn.execute("DROP TABLE IF EXISTS apex_requests")
    finally:
        await conn.close()
    for cfg, says in ((down, "cannot reach the request log's PostgreSQL server"), (empty, "no request log yet")):
        config = tmp_path / "config.json"
        config.write_text(json.dumps(cfg))
        for args in (("usage",), ("requests",), ("requests", "--json")):
            result = await asyncio.to_thread(CliRunner().invoke, cli, [*args, "--config", str(config)])
            assert result.exit_code == 1, result.output
            assert says in result.output and "Traceback" not in result.output, result.output


async def test_a_relative_log_path_is_beside_the_config(upstream: FakeUpstream, start_apex: StartApex, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """global.request_log.path "logs/requests.db" is beside the config file, for the gateway
    and for `apex usage --config F` run from anywhere (each used its own working directory)."""
    cfg = _config(upstream, {"type": "sqlite", "path": "logs/requests.db"})
    config = tmp_path / "conf" / "config.json"
    config.parent.mkdir()
    config.write_text(json.dumps(cfg))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    from apex.config.load import load_config_bytes
    from apex.requestlog import sqlite_path

    assert sqlite_path(load_config_bytes(config.read_bytes()).global_.request_log, config) == (
        config.parent / "logs" / "requests.db")


async def test_captured_answers_are_what_the_client_got(upstream: FakeUpstream, start_apex: StartApex,
                                                        tmp_path: Path) -> None:
    """An Anthropic client on an OpenAI channel: the captured answer is the Messages body it
    got, not the upstream's Chat body."""
    db = tmp_path / "requests.db"
    inst = await start_apex(_config(upstream, {"type": "sqlite", "path": str(db), "capture_content": True}))
    await ant(inst, "tk-team-1").messages.create(model="gpt-4o", max_tokens=50, messages=MSG)
    assert inst.gateway.request_log is not None
    await inst.gateway.request_log.flush()
    conn = sqlite3.connect(db)
    (response_body,) = conn.execute("SELECT response_body FROM apex_requests").fetchone()
    conn.close()
    assert json.loads(response_body)["type"] == "message", response_body


async def test_captured_errors_are_the_error_the_client_got(upstream: FakeUpstream, start_apex: StartApex,
                                                            tmp_path: Path) -> None:
    """An upstream 400 passed on to the client: its body is captured too (it was NULL)."""
    db = tmp_path / "requests.db"
    cfg = _config(upstream, {"type": "sqlite", "path": str(db), "capture_content": True})
    inst = await start_apex(cfg)
    upstream.push(error(400, "bad thing"))
    with pytest.raises(openai.BadRequestError):
        await oai(inst, "tk-team-1").chat.completions.create(model="gpt-4o", messages=MSG)
    assert inst.gateway.request_log is not None
    await inst.gateway.request_log.flush()
    conn = sqlite3.connect(db)
    (response_body,) = conn.execute("SELECT response_body FROM apex_requests").fetchone()
    conn.close()
    assert "bad thing" in response_body, response_body
