"""``apex route explain``: which router, rule, channels (in order) and upstream model a request gets."""

from __future__ import annotations

from dataclasses import asdict

import rich_click as click
from click.exceptions import Exit

from apex.cli.explain import explain_route
from apex.cli.options import config_option, config_path, json_option, wants_json
from apex.cli.output import fail, print_json, print_table, say
from apex.cli.store import ConfigStore
from apex.errors import ClientError

__all__ = ["route_group"]


@click.group("route")
def route_group() -> None:
    """Inspect routing decisions without sending a request."""


@route_group.command("explain")
@click.option("--model", required=True, metavar="M", help="Model name as a client would ask for it.")
@click.option("--key", metavar="K", help="Client key (router vkey, team key or global key).")
@click.option("--router", "router_name", metavar="R", help="Router named by the x-apex-router header.")
@config_option
@json_option
def explain(model: str, key: str | None, router_name: str | None, config_file: str | None, as_json: bool) -> None:
    """Explain how a request for --model with --key would be routed."""
    # ${VAR}s set in this environment are expanded (so a real key matches); unset ones stay
    # literal, so --key '${APEX_VKEY}' names that key without knowing its value.
    config = ConfigStore(config_path(config_file)).load()
    try:
        result = explain_route(config, model, key, router_name)
    except ClientError as exc:
        if wants_json(as_json):
            print_json({"routed": False, "status": exc.status, "error": exc.message})
            raise Exit(1) from exc
        fail(f"{exc.status}: {exc.message}")
    if wants_json(as_json):
        print_json({"routed": True, **asdict(result)})
        return
    where = f"rule {result.rule}" if result.rule is not None else "default channels"
    say(f"key: {result.principal}")
    say(f"routers considered: {', '.join(result.routers_considered)}")
    say(f"router: [bold]{result.router}[/bold], {where}, strategy {result.strategy}")
    print_table(
        f"Channels for {model}",
        ["#", "channel", "weight", "role", "upstream model"],
        [[str(i), s.name, str(s.weight), "fallback" if s.fallback else "primary", s.upstream_model]
         for i, s in enumerate(result.channels)],
    )
    if result.filtered_out:
        say(f"skipped (their models do not include {model}): {', '.join(result.filtered_out)}")
