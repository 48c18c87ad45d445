"""The running gateway's state file, pid file and liveness probes, shared by start/stop/reload/status.

``apex gateway start`` writes ``<config>.state`` (JSON: pid, listen, config path, start
time, version) beside the config, or in ``$APEX_STATE_DIR`` when set (systemd's read-only
``/etc``); the gateway removes it on exit. The packaged demo config (``--demo``) keeps its
files in the user's state directory instead, since the package may be read-only. Each start
also records its config path in ``<user state dir>/last-config``, so ``apex status`` (and
stop/reload) without ``--config`` can find the gateway this user started last. A pid is only trusted while that process is
alive and, where ``/proc`` exists, its command line mentions apex, so a stale file left by
``kill -9`` never makes the CLI signal an unrelated process. Probes use urllib: the CLI
must not import aiohttp.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Final

from apex.config.load import parse_listen
from apex.share import SHARE_DIR

__all__ = [
    "listen_failure",
    "GatewayState",
    "running_pid",
    "target_config",
    "STATE_DIR_ENV",
    "remember_started",
    "remembered_config",
    "user_state_dir",
    "base_url",
    "http_get",
    "log_path",
    "pid_alive",
    "pid_path",
    "read_pid_file",
    "read_state",
    "remove_state",
    "state_path",
    "write_state",
]

STATE_DIR_ENV: Final = "APEX_STATE_DIR"
# The gateway is on this host: never send probes through $http_proxy.
_OPENER: Final = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclass(frozen=True, slots=True)
class GatewayState:
    """What a running gateway leaves for the CLI."""

    pid: int
    listen: str
    config: str
    started_at: float
    version: str


def user_state_dir() -> Path:
    """``$APEX_STATE_DIR``, else ``$XDG_STATE_HOME/apex``, else ``~/.local/state/apex``."""
    explicit = os.environ.get(STATE_DIR_ENV)
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".local" / "state"
    return base / "apex"


def _beside(config: Path, suffix: str) -> Path:
    explicit = os.environ.get(STATE_DIR_ENV)
    if explicit:
        directory = Path(explicit)
    elif config.parent == SHARE_DIR:  # the packaged demo: site-packages may be read-only
        directory = user_state_dir()
    else:
        directory = config.parent
    return directory / (config.name + suffix)


def _last_config_file() -> Path:
    return user_state_dir() / "last-config"


def remember_started(config: Path) -> None:
    """Record ``config`` as the one this user started last (best effort: never fails a start)."""
    target = _last_config_file()
    with contextlib.suppress(OSError):
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}")
        tmp.write_text(os.fspath(config) + "\n")
        os.replace(tmp, target)


def remembered_config() -> Path | None:
    """The config path of the last ``apex gateway start`` by this user, if recorded."""
    try:
        text = _last_config_file().read_text().strip()
    except OSError:
        return None
    return Path(text) if text and os.path.isabs(text) else None


def state_path(config: Path) -> Path:
    """``<config>.state`` beside the config (or in ``$APEX_STATE_DIR``)."""
    return _beside(config, ".state")


def pid_path(config: Path) -> Path:
    """Default pid file of ``gateway start --daemon``."""
    return _beside(config, ".pid")


def log_path(config: Path) -> Path:
    """Default log file of ``gateway start --daemon``."""
    return _beside(config, ".log")


def write_state(path: Path, state: GatewayState) -> None:
    """Atomically write the state file; raises OSError (the caller decides if that matters)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(asdict(state), f)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_state(path: Path) -> GatewayState | None:
    """The state file's content, or None when it is missing or unreadable."""
    try:
        data = json.loads(path.read_bytes())
        return GatewayState(
            pid=int(data["pid"]),
            listen=str(data["listen"]),
            config=str(data["config"]),
            started_at=float(data["started_at"]),
            version=str(data.get("version", "")),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remove_state(path: Path, pid: int) -> None:
    """Remove the state file if it still names ``pid`` (a newer gateway may have replaced it)."""
    state = read_state(path)
    if state is not None and state.pid == pid:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def read_pid_file(path: Path) -> int | None:
    """The pid in a pid file, or None."""
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs and (where /proc exists) is an apex process, not a zombie."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, owned by someone else (e.g. the systemd service user)
    proc = Path("/proc") / str(pid)
    if Path("/proc/self").exists():
        try:
            cmdline = (proc / "cmdline").read_bytes()
        except OSError:
            return False
        # A zombie has an empty cmdline; a recycled pid runs something else.
        return b"apex" in cmdline
    return True


def base_url(listen: str) -> str:
    """``http://host:port`` to reach a gateway listening on ``listen`` from this host."""
    host, port = parse_listen(listen)
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}"


def http_get(url: str, timeout: float = 1.0) -> bytes | None:
    """The body of a 200 answer to GET ``url``, or None on any failure."""
    try:
        with _OPENER.open(url, timeout=timeout) as resp:
            if resp.status != 200:
                return None
            body: bytes = resp.read()
            return body
    except (OSError, urllib.error.URLError, ValueError):
        return None


def running_pid(config: Path) -> int | None:
    """The pid of the gateway serving ``config``, from its state file or pid file, if alive."""
    state = read_state(state_path(config))
    if state is not None and pid_alive(state.pid):
        return state.pid
    pid = read_pid_file(pid_path(config))
    if pid is not None and pid_alive(pid):
        return pid
    return None


def target_config(path: Path, source: str) -> tuple[Path, str]:
    """The config whose gateway status/stop/reload should address: ``path`` unless it was
    only the default ``./config.json`` with no gateway running for it, and the config this
    user started last has one running (the README's demo, run from anywhere)."""
    if source.startswith("default") and running_pid(path) is None:
        last = remembered_config()
        if last is not None and last != path and running_pid(last) is not None:
            return last, "the config you started last"
    return path, source


def listen_failure(listen: str, exc: OSError) -> str:
    """One line: why ``listen`` cannot be bound and what to do about it."""
    fix = "choose another address with --listen HOST:PORT, $APEX_LISTEN or global.listen"
    if exc.errno == errno.EADDRINUSE:
        return f"cannot listen on {listen}: the address is already in use (another process holds the port; `ss -ltnp` shows which); stop it, or {fix}"
    if exc.errno == errno.EACCES:
        return f"cannot listen on {listen}: permission denied (ports below 1024 need root or CAP_NET_BIND_SERVICE); {fix}"
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot listen on {listen}: this host has no such address; {fix}"
    return f"cannot listen on {listen}: {exc.strerror or exc}; {fix}"
