"""What the CLI prints of a URL that carries credentials (channel list/show, config show)."""

from __future__ import annotations

import pytest

from apex.config.schema import mask_secrets


@pytest.mark.parametrize(("url", "shown"), [
    ("http://alice:s3cret@proxy.corp:3128", "http://alice:****@proxy.corp:3128"),
    ("alice:s3cret@proxy.corp:3128", "alice:****@proxy.corp:3128"),  # a proxy written without a scheme
    # A token as the user name (sent as Basic auth) was printed whole.
    ("http://tokA-SECRET@127.0.0.1:3128", "http://****@127.0.0.1:3128"),
    ("redis://redD-SECRET@127.0.0.1:6379/0", "redis://****@127.0.0.1:6379/0"),
    # A password holding / ? # ends urlsplit's netloc early: it was printed from there on.
    ("http://puser:pp/B-SECRET@127.0.0.1:3128", "http://puser:****@127.0.0.1:3128"),
    ("postgresql://apex:pw#C-SECRET@db:5432/apex?sslmode=require", "postgresql://apex:****@db:5432/apex?sslmode=require"),
    ("http://127.0.0.1:3128/path", "http://127.0.0.1:3128/path"),
])
def test_url_credentials_are_masked_whatever_they_hold(url: str, shown: str) -> None:
    assert mask_secrets({"proxy": url})["proxy"] == shown
