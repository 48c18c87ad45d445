"""Routing: model matching, load balancing, retry policy and channel health (all pure)."""
