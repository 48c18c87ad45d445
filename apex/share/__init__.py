"""Files shipped with the package: the offline demo config, the annotated example config,
the systemd unit and its secrets file template, and the Grafana dashboard.

They live inside the package so a wheel install has them (``apex gateway start --demo``,
``apex init --systemd``); ``share_path`` gives their location on disk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

__all__ = ["DEMO_CONFIG", "EXAMPLE_CONFIG", "GRAFANA_DASHBOARD", "SHARE_DIR", "SYSTEMD_ENV", "SYSTEMD_UNIT", "share_path"]

SHARE_DIR: Final = Path(__file__).resolve().parent
DEMO_CONFIG: Final = "demo.json"
EXAMPLE_CONFIG: Final = "example.json"
GRAFANA_DASHBOARD: Final = "grafana/apex-dashboard.json"
SYSTEMD_UNIT: Final = "systemd/apex.service"
SYSTEMD_ENV: Final = "systemd/apex.env.example"


def share_path(name: str) -> Path:
    """The path of a shipped file, e.g. ``share_path(DEMO_CONFIG)``."""
    return SHARE_DIR / name
