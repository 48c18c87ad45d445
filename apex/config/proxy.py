"""A channel's ``proxy`` value: what it may be and what it means, read once.

Checked when the config is loaded (``check_proxy``: the CLI's edits, ``apex config
validate`` and the gateway refuse the same values with the key path) and parsed again where
the channel's egress is compiled (apex.upstream.egress), which also reads the proxy
environment variables with ``parse_proxy``. Credentials never appear in a repr or an error.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import unquote, urlsplit

from apex.config.clouds import missing_extra
from apex.errors import ConfigError

__all__ = ["DIRECT", "Proxy", "check_proxy", "parse_proxy"]

DIRECT: Final = "direct"

_SOCKS_SCHEMES: Final = frozenset({"socks5", "socks5h"})
_DEFAULT_PORTS: Final = {"http": 80, "https": 443, "socks5": 1080, "socks5h": 1080}
_SOCKS_EXTRA_HINT: Final = "pip install 'apex-gateway[socks]'"


@dataclass(frozen=True, slots=True)
class Proxy:
    """A proxy: where to connect, its kind and, when it wants credentials, those (secrets).

    ``scheme`` is ``http`` or ``https`` (CONNECT / forwarding, to the proxy over TLS for
    ``https``; ``authorization`` is the prebuilt ``Proxy-Authorization`` value) or ``socks5``
    / ``socks5h`` (``username`` and ``password`` for the RFC 1929 handshake; ``socks5h`` lets
    the proxy resolve names)."""

    host: str
    port: int
    authorization: str | None = field(default=None, repr=False)  # "Basic ...": a secret
    password: str | None = field(default=None, repr=False)
    scheme: str = "http"
    username: str | None = field(default=None, repr=False)

    @property
    def socks(self) -> bool:
        """A SOCKS5 tunnel (for http and https upstreams alike), not an HTTP proxy."""
        return self.scheme in _SOCKS_SCHEMES

    @property
    def tls(self) -> bool:
        """An HTTP proxy spoken to over TLS (``https://``)."""
        return self.scheme == "https"

    @property
    def label(self) -> str:
        """``host:port``, for messages (never the credentials)."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def parse_proxy(url: str) -> Proxy:
    """``http://``, ``https://``, ``socks5://`` or ``socks5h://`` ``[user:pass@]host[:port]``; ValueError
    (without the credentials) otherwise, or when a socks URL needs the missing ``socks`` extra.
    A value without a scheme (``proxy.corp:3128``, common in ``https_proxy``) is http://, as
    curl, requests, httpx and Go read it."""
    if "://" not in url and url:
        url = "http://" + url
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        shown = parts.scheme or "no scheme"
        raise ValueError(
            f"proxy must be an http://, https://, socks5:// or socks5h:// URL or \"direct\" (got {shown}; "
            "socks4 proxies are not supported)"
        )
    try:
        port = parts.port or _DEFAULT_PORTS[scheme]
    except ValueError:
        raise ValueError("proxy URL has an invalid port") from None
    if not parts.hostname:
        raise ValueError("proxy URL has no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("proxy URL must not have a path, query or fragment")
    user = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password or "") if parts.username is not None else None
    if scheme in _SOCKS_SCHEMES:
        if missing_extra("socks"):
            raise ValueError(f"a {scheme}:// proxy needs the socks extra: {_SOCKS_EXTRA_HINT}")
        if user is not None and not (0 < len(user.encode()) < 256 and 0 < len((password or "").encode()) < 256):
            # RFC 1929 carries each in 1-255 bytes; python-socks offers no authentication without both
            raise ValueError("SOCKS5 proxy credentials need a user name and a password of 1-255 bytes each")
        return Proxy(parts.hostname, port, None, password, scheme, user)
    if user is not None:
        auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        return Proxy(parts.hostname, port, auth, password or None, scheme)
    return Proxy(parts.hostname, port, scheme=scheme)


def check_proxy(value: str | None, path: str) -> None:
    """A channel's ``proxy`` at load: absent, ``"direct"``, or a URL ``parse_proxy`` takes;
    ConfigError at ``path`` otherwise. A value still holding a ``${VAR}`` (``apex config
    validate --allow-missing-env``, the CLI's edits) is checked once it is resolved."""
    if value is None or value == DIRECT or "${" in value:
        return
    try:
        parse_proxy(value)
    except ValueError as exc:
        raise ConfigError(str(exc), path=path) from None
