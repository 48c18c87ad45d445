"""Upstream providers: presets (URLs, auth, dialects) and the transports that reach them."""
