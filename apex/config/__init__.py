"""The config file: its model (frozen Structs) and its loader."""

from apex.config.load import load_config, load_config_bytes, parse_listen
from apex.config.model import Config

__all__ = ["Config", "load_config", "load_config_bytes", "parse_listen"]
