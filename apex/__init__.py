"""Apex: an AI gateway. Only the version lives here, so importing apex costs nothing."""

__version__ = "0.1.0"
