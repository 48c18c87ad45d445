"""Neutral -> client dialect: one writer per client family (parts -> SSE bytes, ``Reply`` -> body)."""
