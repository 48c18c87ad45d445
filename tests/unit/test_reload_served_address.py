"""A reload is checked against the address the gateway serves, not the file's new listen."""

from __future__ import annotations

import json

import pytest

from apex.config.load import load_config_bytes
from apex.server.gateway import Gateway


def _config(listen: str, anonymous: bool = False) -> bytes:
    return json.dumps({"global": {"listen": listen, "auth": {"anonymous": anonymous}},
                       "channels": [{"name": "m", "provider_type": "mock", "models": ["*"]}],
                       "routers": [{"name": "r", "channels": [{"name": "m"}]}]}).encode()


@pytest.mark.parametrize(("served", "accepted"), [("0.0.0.0:8080", False), ("127.0.0.1:8080", True)])
def test_anonymous_by_reload_needs_a_loopback_socket(served: str, accepted: bool, caplog: pytest.LogCaptureFixture) -> None:
    """The README's sidecar edit (listen 127.0.0.1 plus anonymous) reloaded into a gateway
    bound to 0.0.0.0 was accepted, and key-less requests got 200 on the public socket."""
    gw = Gateway(load_config_bytes(_config(served)))
    assert gw.reload_bytes(_config("127.0.0.1:8080", anonymous=True)) is accepted
    assert gw.snapshot.config.global_.auth.anonymous is accepted
    if not accepted:
        assert "listens on 0.0.0.0:8080 until it restarts" in caplog.text
