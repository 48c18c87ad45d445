"""``apex gateway start|stop|reload``: run the gateway, in the foreground or as a daemon, and signal it.

``start`` validates the config, writes the state file and calls the server's
``run_gateway`` (imported here only, so other commands never load aiohttp). ``--daemon``
re-runs ``apex gateway start --foreground`` in a new session with output to a log file,
waits for ``/health``, then writes the pid file. ``stop`` sends SIGTERM and waits for the
gateway to drain; ``reload`` validates first and then sends SIGHUP.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Final

import rich_click as click

from apex.cli.options import (
    addressed_config,
    config_choice,
    config_option,
    config_path,
    demo_config,
    demo_option,
    json_option,
    wants_json,
)
from apex.cli.output import EXIT_NOT_RUNNING, fail, fail_config, print_json, say
from apex.gateway_state import (
    base_url,
    listen_failure,
    http_get,
    log_path,
    pid_alive,
    pid_path,
    remember_started,
    running_pid,
    state_path,
)
from apex.cli.store import ConfigStore
from apex.config.load import check_host_paths, load_config, parse_listen
from apex.config.model import Config
from apex.errors import ConfigError

__all__ = ["gateway_group", "running_pid"]  # running_pid: re-exported from gateway_state

_POLL_S: Final = 0.1


@click.group("gateway")
def gateway_group() -> None:
    """Run and control the gateway process."""


def _load(path: Path) -> Config:
    """The config as the gateway will see it (environment overrides included), plus the
    checks only this host can make; a failure is one line and exit 1."""
    try:
        config = load_config(path)
        check_host_paths(config)
    except ConfigError as exc:
        fail_config(exc)
    return config


def _check_listen(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        parse_listen(value)
    except ValueError as exc:
        raise click.BadParameter(f"{value!r}: {exc} (e.g. 127.0.0.1:8080 or [::1]:8080)") from exc
    return value


@gateway_group.command("start")
@click.option("--daemon", "-d", is_flag=True, help="Detach; write a pid file and a log file.")
@click.option("--foreground", is_flag=True, help="Stay in the foreground (the default).")
@click.option("--pid-file", type=click.Path(dir_okay=False), help="Pid file for --daemon (default: <config>.pid).")
@click.option("--log-file", type=click.Path(dir_okay=False), help="Log file for --daemon (default: <config>.log).")
@click.option("--wait", "wait_s", type=click.FloatRange(min=0.1), default=20.0, show_default=True,
              help="Seconds --daemon waits for /health.")
@click.option("--listen", "listen", metavar="HOST:PORT", callback=_check_listen,
              help="Listen here instead of global.listen (sets $APEX_LISTEN for the gateway).")
@click.option("--demo", is_flag=True, help="Run the offline demo config shipped with Apex (mock provider, no keys).")
@config_option
@json_option
def start(daemon: bool, foreground: bool, pid_file: str | None, log_file: str | None, wait_s: float,
          listen: str | None, demo: bool, config_file: str | None, as_json: bool) -> None:
    """Start the gateway (foreground unless --daemon)."""
    if daemon and foreground:
        raise click.UsageError("--daemon and --foreground exclude each other")
    if demo:
        if config_choice(config_file)[1] == "--config":
            raise click.UsageError("--demo runs the packaged demo config; leave out --config")
        path = demo_config()
    else:
        path = config_path(config_file)
        if not path.exists():  # a first run: say how to make one, or how to try Apex without one
            fail_config(ConfigError(f"config file {path} does not exist; create one with `apex init --config {path}`, "
                                    "point at yours with --config or $APEX_CONFIG, or try the offline demo: "
                                    "`apex gateway start --demo`"))
    if listen is not None:
        os.environ["APEX_LISTEN"] = listen  # the gateway (and a daemon child) read it like any override
    config = _load(path)
    pid = running_pid(path)
    if pid is not None:
        fail(f"a gateway for {path} is already running (pid {pid})")
    if daemon:
        _start_daemon(path, config, Path(pid_file) if pid_file else pid_path(path),
                      Path(log_file) if log_file else log_path(path), wait_s, wants_json(as_json))
        return
    raise SystemExit(_run_foreground(path, wants_json(as_json)))


def _run_foreground(path: Path, as_json: bool) -> int:
    """Become the gateway: exec ``python -m apex.server`` (same pid, so systemd, the pid file
    and signals see no difference) so the serving process does not carry the CLI's modules."""
    remember_started(path)
    argv = _server_argv(path, as_json)
    if argv is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        with contextlib.suppress(OSError):  # cannot exec here: serve from this process instead
            os.execv(argv[0], argv)
    try:
        from apex.server.foreground import run_foreground  # only here: keeps aiohttp out of every other command
    except ImportError as exc:
        fail(f"the gateway server is not available: {exc}")
    return run_foreground(path, as_json=as_json)


def _server_argv(path: Path, as_json: bool) -> list[str] | None:
    """The command line that runs the gateway from the same interpreter and the same ``apex``
    package this CLI was imported from; None when there is no interpreter to exec."""
    if not sys.executable:
        return None
    argv = [sys.executable]
    # -P keeps the working directory off sys.path (a folder named "apex" there must not stand
    # in for the package), unless this CLI itself found apex through it (`python -m apex` in a
    # source checkout).
    found_via_cwd = not sys.flags.safe_path and bool(sys.path) and sys.path[0] in ("", os.getcwd())
    if not found_via_cwd:
        argv.append("-P")
    argv += ["-m", "apex.server", "--config", os.fspath(path)]
    if as_json:
        argv.append("--json")
    return argv


def _start_daemon(path: Path, config: Config, pid_file: Path, log_file: Path, wait_s: float, as_json: bool) -> None:
    try:
        log_file.parent.mkdir(parents=True, exist_ok=True)
        log = open(log_file, "ab")  # noqa: SIM115  # closed right after the child has its copy
    except OSError as exc:
        fail(f"cannot open the daemon's log file {log_file}: {exc.strerror}; choose another with --log-file")
    if _port_taken(config.global_.listen):
        # Checked before the child starts: its /health poll below would be answered by
        # whatever holds the port (another gateway), and this start reported as a success.
        fail(listen_failure(config.global_.listen, OSError(errno.EADDRINUSE, "in use")))
    with log:
        # -P: never put the working directory on sys.path, so a folder named "apex" there
        # (e.g. /etc/apex when started from /etc) cannot stand in for the installed package.
        proc = subprocess.Popen(
            [sys.executable, "-P", "-m", "apex", "gateway", "start", "--foreground", "--config", os.fspath(path)],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,  # survive the shell's SIGHUP/SIGINT; stop via `apex gateway stop`
            close_fds=True,
        )
    health = base_url(config.global_.listen) + "/health"
    deadline = time.monotonic() + wait_s
    while True:
        code = proc.poll()
        if code is not None:
            fail(f"the gateway exited with code {code} while starting: {_last_error(log_file)} (log: {log_file})")
        if http_get(health, timeout=0.5) is not None:
            break
        if time.monotonic() > deadline:
            proc.terminate()
            fail(f"the gateway did not answer {health} within {wait_s:g}s; stopped it; see {log_file}")
        time.sleep(_POLL_S)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.write_text(f"{proc.pid}\n")
    if as_json:
        print_json({"result": "started", "pid": proc.pid, "listen": config.global_.listen,
                    "config": os.fspath(path), "pid_file": os.fspath(pid_file), "log_file": os.fspath(log_file)})
    else:
        say(f"gateway started: pid {proc.pid}, listening on {config.global_.listen}, log {log_file}")


def _port_taken(listen: str) -> bool:
    """True when something accepts connections on ``listen`` (as this host reaches it)."""
    host, _, port = base_url(listen).removeprefix("http://").rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=1.0):
            return True
    except OSError:
        return False


def _last_error(log_file: Path) -> str:
    """The child's last ``error:`` line (its one-line reason), else its last line."""
    try:
        lines = [ln.strip() for ln in log_file.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    errors = [ln for ln in lines if ln.startswith("error:")]
    return (errors or lines or ["no output"])[-1].removeprefix("error: ")


@gateway_group.command("stop")
@click.option("--timeout", "timeout_s", type=click.FloatRange(min=0), default=30.0, show_default=True,
              help="Seconds to wait for in-flight requests to finish.")
@config_option
@demo_option
@json_option
def stop(timeout_s: float, config_file: str | None, demo: bool, as_json: bool) -> None:
    """Stop the gateway gracefully (SIGTERM) and wait; exit 1 if it is still running after --timeout."""
    path, _ = addressed_config(config_file, demo)
    pid = running_pid(path)
    if pid is None:
        _clean_stale(path)
        _report(as_json, "not running", None, "gateway is not running")
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while pid_alive(pid):
        if time.monotonic() > deadline:
            fail(f"gateway pid {pid} is still running {timeout_s:g}s after SIGTERM")
        time.sleep(_POLL_S)
    _clean_stale(path)
    _report(as_json, "stopped", pid, f"gateway stopped (pid {pid})")


@gateway_group.command("reload")
@config_option
@demo_option
@json_option
def reload(config_file: str | None, demo: bool, as_json: bool) -> None:
    """Validate the config, then tell the running gateway to reload it (SIGHUP)."""
    path, source = addressed_config(config_file, demo)
    pid = running_pid(path)
    if pid is None:
        fail(f"no gateway is running for {path} ({source}); point at its config with --config or $APEX_CONFIG",
             EXIT_NOT_RUNNING)
    try:
        ConfigStore(path).load()
    except ConfigError as exc:
        fail(f"not reloading, the gateway keeps its current config: {exc}")
    os.kill(pid, signal.SIGHUP)
    _report(as_json, "reload requested", pid, f"reload signal sent to pid {pid}")


def _clean_stale(path: Path) -> None:
    for stale in (state_path(path), pid_path(path)):
        try:
            stale.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            click.echo(f"warning: cannot remove {stale}: {exc.strerror}", err=True)


def _report(as_json: bool, result: str, pid: int | None, message: str) -> None:
    if wants_json(as_json):
        print_json({"result": result, "pid": pid})
    else:
        say(message)
