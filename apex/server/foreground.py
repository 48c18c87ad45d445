"""The gateway process itself: ``python -m apex.server --config PATH``.

``apex gateway start`` checks the config and the pid file, then replaces itself (exec, same
pid) with this module, so the serving process never carries the CLI's modules (rich,
rich-click, the command groups: ~4 MB of RSS for nothing). Here: the state file the CLI's
stop/reload/status read, the gateway, and startup errors as the CLI prints them
(``error: ...`` on stderr, or one JSON object with ``--json``), exit code 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from apex import __version__, sdnotify
from apex.errors import ConfigError, StartupError, json_error_line
from apex.gateway_state import GatewayState, remove_state, state_path, write_state

__all__ = ["main", "run_foreground"]


def _fail(message: str, *, as_json: bool, path: str | None = None) -> int:
    line = json_error_line(message, 1, path) if as_json else f"error: {message}"
    print(line, file=sys.stderr, flush=True)
    return 1


def run_foreground(path: Path, *, as_json: bool = False) -> int:
    """Serve ``path`` until stopped; the exit code (startup errors printed, not raised)."""
    from apex.server.app import run_gateway

    state_file = state_path(path)
    pid = os.getpid()

    def on_ready(listen: str) -> None:
        # ``listen`` comes from the config the gateway loaded: the file is read once, so the
        # state file cannot name an address from a different version of it.
        # Written once the socket is bound: a second start that fails on the busy port must
        # not replace (then remove) the running gateway's state, which status/stop/reload read.
        try:
            write_state(state_file, GatewayState(pid, listen, os.fspath(path), time.time(), __version__))
        except OSError as exc:
            # A read-only config directory (systemd ProtectSystem=strict) must not stop the gateway.
            print(f"warning: cannot write state file {state_file}: {exc.strerror}; "
                  f"set $APEX_STATE_DIR to a writable directory", file=sys.stderr, flush=True)
        # run_gateway itself sends READY=1 and STOPPING=1; this adds the line systemctl shows.
        sdnotify.status(f"serving on {listen}")

    try:
        return run_gateway(path, on_ready=on_ready)
    except ConfigError as exc:
        return _fail(str(exc), as_json=as_json, path=exc.path)
    except StartupError as exc:
        return _fail(str(exc), as_json=as_json)
    finally:
        remove_state(state_file, pid)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m apex.server",
                                     description="Run the Apex gateway in the foreground (what `apex gateway start` runs).")
    parser.add_argument("--config", required=True, type=Path, help="the config file")
    parser.add_argument("--json", action="store_true", help="startup errors as one JSON object on stderr")
    args = parser.parse_args(argv)
    return run_foreground(args.config, as_json=args.json)
