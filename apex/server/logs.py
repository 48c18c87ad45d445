"""Logging setup: ``json`` (one object per line) or ``pretty``, to stdout or a file.

Secrets never reach a log line: the request path logs principals and team ids, never keys,
and the access line is built from the Exchange, which holds no secrets or message content.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Final

import msgspec

from apex.config.model import LoggingConfig

__all__ = ["JsonFormatter", "configure_logging"]

_ENC: Final = msgspec.json.Encoder()
_LEVELS: Final = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, and the Exchange fields if any."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return _ENC.encode(out).decode()


def configure_logging(cfg: LoggingConfig) -> logging.Handler:
    """Install the root handler for ``cfg``; returns it (so a reload can swap it)."""
    handler: logging.Handler
    if cfg.file:
        handler = logging.FileHandler(cfg.file)
    else:
        handler = logging.StreamHandler(sys.stdout)
    if cfg.format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(_LEVELS[cfg.level])
    logging.getLogger("apex.access").disabled = not cfg.access_log
    return handler
