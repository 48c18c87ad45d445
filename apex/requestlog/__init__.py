"""The request log (``global.request_log``): every finished request as one row, off the request path.

``build_request_log`` once per process picks the store (SQLite by default, PostgreSQL,
or none); the gateway calls ``RequestLog.submit`` per request. ``apex.requestlog.query``
reads the same tables for ``apex usage`` and ``apex requests``. asyncpg is imported only
when PostgreSQL is configured.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Final

from apex.config.model import RequestLogConfig
from apex.errors import ConfigError
from apex.requestlog.record import COLUMNS, Row, capture
from apex.requestlog.writer import RequestLog, RequestStore

__all__ = ["COLUMNS", "RequestLog", "RequestStore", "Row", "build_request_log", "capture", "sqlite_path"]

DB_NAME: Final = "requests.db"


def sqlite_path(cfg: RequestLogConfig, config_path: Path | None, env: Mapping[str, str] | None = None) -> Path | None:
    """Where the SQLite log lives: ``path`` if set, else the state directory (systemd's
    ``$STATE_DIRECTORY``, else ``$APEX_STATE_DIR``), else ``<config>.data/requests.db`` beside
    the config file; None when there is no config file to go by (embedded use).

    Never the config's own directory: the config watcher watches it, and every write to the
    log would wake the watcher (measured with bench/: ~5 % more CPU per request)."""
    if cfg.path:
        path = Path(cfg.path)
        if not path.is_absolute() and config_path is not None:
            # Beside the config, as the default is: the gateway and `apex usage --config F`
            # run from other directories used to read and write different files.
            return config_path.parent / path
        return path
    environ = os.environ if env is None else env
    state = environ.get("STATE_DIRECTORY", "").split(":")[0] or environ.get("APEX_STATE_DIR")
    if state:
        return Path(state) / DB_NAME
    if config_path is not None:
        return config_path.parent / (config_path.name + ".data") / DB_NAME
    return None


def build_request_log(
    cfg: RequestLogConfig, config_path: Path | None, on_drop: Callable[[int], None] | None = None
) -> RequestLog | None:
    """The log ``global.request_log`` asks for (not started), or None when it is off."""
    if cfg.type == "off":
        return None
    store: RequestStore
    if cfg.type == "postgres":
        if not cfg.dsn:
            raise ConfigError("a postgres request log needs a dsn", path="global.request_log.dsn")
        from apex.requestlog.postgres import PostgresStore

        store = PostgresStore(cfg.dsn)
        describe = "request log (postgres)"
    else:
        path = sqlite_path(cfg, config_path)
        if path is None:
            return None
        from apex.requestlog.sqlite import SqliteStore

        store = SqliteStore(path)
        describe = f"request log ({path})"
    return RequestLog(store, queue_size=cfg.queue_size, batch_size=cfg.batch_size,
                      retention_days=cfg.retention_days, on_drop=on_drop, describe=describe)
