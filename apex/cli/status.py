"""``apex status``: is a gateway running for this config, and how is it doing.

Reads the state file, checks the pid, asks the gateway's ``/health`` (version, uptime) and
metrics (``apex_channel_up{channel=...}``: 1 healthy, 0 cooling down), and counts the
config's channels, routers and teams. Exit 0 when running, 3 when not (LSB convention).
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Final

import rich_click as click
from click.exceptions import Exit

from apex import __version__
from apex.cli.options import addressed_config, config_option, demo_option, json_option, wants_json
from apex.cli.output import EXIT_NOT_RUNNING, print_json, print_table
from apex.gateway_state import base_url, http_get, pid_alive, read_state, running_pid, state_path
from apex.cli.store import ConfigStore
from apex.errors import ConfigError

__all__ = ["status_command", "parse_channel_up"]

_CHANNEL_UP: Final = re.compile(r'^apex_channel_up\{(?:[^}]*,)?channel="((?:[^"\\]|\\.)*)"[^}]*\}\s+(\S+)', re.M)


def parse_channel_up(metrics_text: str) -> dict[str, str]:
    """``{channel: "up" | "down"}`` from Prometheus text holding the ``apex_channel_up`` gauge."""
    health: dict[str, str] = {}
    for name, value in _CHANNEL_UP.findall(metrics_text):
        try:
            up = float(value) >= 1
        except ValueError:
            continue
        health[name.replace('\\"', '"').replace("\\\\", "\\")] = "up" if up else "down"
    return health


@click.command("status")
@config_option
@demo_option
@json_option
def status_command(config_file: str | None, demo: bool, as_json: bool) -> None:
    """Show whether the gateway runs (exit 0) or not (exit 3), and its health."""
    path, source = addressed_config(config_file, demo)
    report: dict[str, Any] = {"running": False, "pid": None, "listen": None, "uptime_seconds": None,
                              "version": None, "cli_version": __version__, "config": os.fspath(path),
                              "config_source": source, "hint": None,
                              "healthy": None, "channels": {}, "counts": None, "config_error": None}
    channel_names: list[str] = []
    metrics_path = "/metrics"
    try:
        config = ConfigStore(path).load()
        report["counts"] = {"channels": len(config.channels), "routers": len(config.routers),
                            "teams": len(config.teams)}
        channel_names = [c.name for c in config.channels]
        metrics_path = config.metrics.path if config.metrics.enabled else ""
        report["listen"] = config.global_.listen
    except ConfigError as exc:
        report["config_error"] = str(exc)

    state = read_state(state_path(path))
    pid = state.pid if state is not None and pid_alive(state.pid) else running_pid(path)  # a daemon's pid file too
    listen = state.listen if state is not None and state.pid == pid else report["listen"]
    if pid is not None and listen:
        report.update(running=True, pid=pid, listen=listen)
        url = base_url(listen)
        body = http_get(url + "/health")
        report["healthy"] = False
        if body is not None:
            try:
                health = json.loads(body)
                report.update(healthy=health.get("status") == "healthy", version=health.get("version"),
                              uptime_seconds=health.get("uptime_seconds"))
            except (ValueError, AttributeError):
                pass
        ups: dict[str, str] = {}
        if metrics_path:
            text = http_get(url + metrics_path)
            if text is not None:
                ups = parse_channel_up(text.decode(errors="replace"))
        report["channels"] = {name: ups.get(name, "unknown") for name in channel_names}

    if not report["running"]:
        report["hint"] = (f"no gateway is running for {path} ({source}); if you started one with another "
                          f"config, point at it with --config FILE or $APEX_CONFIG")
    if wants_json(as_json):
        print_json(report)
    else:
        _print(report)
    if not report["running"]:
        raise Exit(EXIT_NOT_RUNNING)


def _print(report: dict[str, Any]) -> None:
    counts = report["counts"] or {}
    uptime = report["uptime_seconds"]
    rows = [
        ["state", "running" if report["running"] else "not running"],
        ["pid", str(report["pid"] or "")],
        ["listen", str(report["listen"] or "")],
        ["healthy", "" if report["healthy"] is None else ("yes" if report["healthy"] else "no")],
        ["uptime", "" if uptime is None else _duration(float(uptime))],
        ["version", str(report["version"] or "")],
        ["config", f"{report['config']} ({report['config_source']})"],
        ["channels", str(counts.get("channels", ""))],
        ["routers", str(counts.get("routers", ""))],
        ["teams", str(counts.get("teams", ""))],
    ]
    if report["config_error"]:
        rows.append(["config error", report["config_error"]])
    rows.extend([f"channel {name}", state] for name, state in report["channels"].items())
    print_table("Apex gateway", ["", ""], rows)
    if report["hint"]:
        click.echo(report["hint"], err=True)


def _duration(seconds: float) -> str:
    s = int(seconds)
    days, s = divmod(s, 86400)
    hours, s = divmod(s, 3600)
    minutes, s = divmod(s, 60)
    parts = [f"{days}d"] if days else []
    if days or hours:
        parts.append(f"{hours}h")
    if days or hours or minutes:
        parts.append(f"{minutes}m")
    parts.append(f"{s}s")
    return " ".join(parts)
