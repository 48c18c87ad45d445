"""How one channel's requests leave Apex: proxy, TLS options and connection budget.

Compiled once per config load (``compile_channel``) from the channel's ``proxy``, ``tls``
and ``max_connections`` keys; the upstream pool only reads the result. Without a ``proxy``
key the standard environment variables apply (``HTTPS_PROXY``, ``HTTP_PROXY``,
``NO_PROXY``, either case, read at load through ``urllib.request``'s own parser);
``"proxy": "direct"`` ignores them. Proxy credentials are secrets: they live only in the
prebuilt ``Proxy-Authorization`` value, never in a repr, a log line or an error message.
"""

from __future__ import annotations

import base64
import contextlib
import os
import ssl
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import unquote, urlsplit

__all__ = ["DEFAULT_MAX_CONNECTIONS", "Egress", "Proxy", "TlsOptions", "build_egress", "parse_proxy", "tls_context"]

DIRECT: Final = "direct"

# Per channel origin. Like httpx's and aiohttp's default pool size: enough for a busy
# gateway's keep-alive reuse, small enough that a stampede queues instead of opening a
# connection per request (which providers answer with connection resets or 429s).
DEFAULT_MAX_CONNECTIONS: Final = 100


@dataclass(frozen=True, slots=True)
class Proxy:
    """An HTTP proxy: where to connect and, when it wants credentials, the header value."""

    host: str
    port: int
    authorization: str | None = field(default=None, repr=False)  # "Basic ...": a secret
    password: str | None = field(default=None, repr=False, compare=False)

    @property
    def label(self) -> str:
        """``host:port``, for messages (never the credentials)."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class TlsOptions:
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True


def parse_proxy(url: str) -> Proxy:
    """``http://[user:pass@]host[:port]``; ValueError (without the credentials) otherwise."""
    parts = urlsplit(url)
    if parts.scheme != "http":
        shown = parts.scheme or "no scheme"
        raise ValueError(f"proxy must be an http:// URL or \"direct\" (got {shown}; socks and https proxies are not supported)")
    try:
        port = parts.port or 80
    except ValueError:
        raise ValueError("proxy URL has an invalid port") from None
    if not parts.hostname:
        raise ValueError("proxy URL has no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("proxy URL must not have a path, query or fragment")
    auth = None
    if parts.username is not None:
        user = unquote(parts.username)
        password = unquote(parts.password or "")
        auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        return Proxy(parts.hostname, port, auth, password or None)
    return Proxy(parts.hostname, port)


def tls_context(options: TlsOptions) -> ssl.SSLContext:
    """A client context for the channel: its CA bundle (instead of the system store), its
    client certificate, or no verification when ``verify`` is false. Raises OSError or
    ssl.SSLError for unreadable files (the caller names the key)."""
    context = ssl.create_default_context(cafile=options.ca_file)
    if options.cert_file is not None:
        context.load_cert_chain(options.cert_file, options.key_file)
    if not options.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


# Not in typeshed, but public since Python 3.3 and what urllib itself uses for NO_PROXY.
_bypass: Final[Callable[[str, Mapping[str, str]], bool]] = urllib.request.proxy_bypass_environment  # type: ignore[attr-defined]


class Egress:
    """One channel's way out: which proxy serves an upstream URL, the TLS context, the
    connection budget. ``key`` identifies equal settings across reloads so their pooled
    connections survive a reload that did not change them."""

    __slots__ = ("_env", "_mode", "_proxy", "key", "max_connections", "name", "ssl")

    def __init__(
        self,
        name: str,
        *,
        proxy: Proxy | None = None,
        mode: str = "env",
        env: Mapping[str, str] | None = None,
        ssl_context: ssl.SSLContext | None = None,
        tls: TlsOptions | None = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
    ) -> None:
        self.name = name
        self._mode = mode  # "proxy" | "direct" | "env"
        self._proxy = proxy
        self._env = dict(env or {})
        self.ssl = ssl_context
        self.max_connections = max_connections
        env_key = tuple(sorted(self._env.items())) if mode == "env" else ()
        self.key = (name, mode, proxy, proxy.authorization if proxy else None, env_key, tls, max_connections)

    def secrets(self) -> list[str]:
        """Proxy credentials (header value and password) for the channel's scrubber."""
        proxies = [self._proxy] if self._proxy is not None else []
        if self._mode == "env":
            for scheme in ("http", "https"):
                url = self._env.get(scheme)
                if url:
                    with contextlib.suppress(ValueError):
                        proxies.append(parse_proxy(url))
        out = []
        for proxy in proxies:
            if proxy.authorization:
                out.append(proxy.authorization)
                out.append(proxy.authorization.split(" ", 1)[1])
                if proxy.password:
                    out.append(proxy.password)
        return out

    def proxy_for(self, scheme: str, host: str, port: int) -> Proxy | None:
        """The proxy a request to ``scheme://host:port`` goes through, None for a direct connection."""
        if self._mode == "proxy":
            return self._proxy
        if self._mode == "direct" or not self._env:
            return None
        url = self._env.get(scheme)
        if not url:
            return None
        if _bypass(f"{host}:{port}", self._env):
            return None
        try:
            return parse_proxy(url)
        except ValueError:
            return None  # checked at load; the environment is read once, so this cannot differ


def build_egress(
    name: str,
    proxy: str | None,
    tls: TlsOptions | None,
    max_connections: int | None,
) -> Egress:
    """Compile a channel's egress keys. Raises ValueError("key: why") for a bad value."""
    limit = DEFAULT_MAX_CONNECTIONS if max_connections is None else max_connections
    if limit < 1:
        raise ValueError("max_connections: must be at least 1")
    context = None
    if tls is not None:
        for key in ("ca_file", "cert_file", "key_file"):
            path = getattr(tls, key)
            if path is not None and not os.path.isfile(path):
                raise ValueError(f"tls.{key}: no such file: {path}")
        if tls.key_file is not None and tls.cert_file is None:
            raise ValueError("tls.key_file: needs tls.cert_file")
        try:
            context = tls_context(tls)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"tls: cannot load the certificates: {exc}") from None
    if proxy == "direct":
        return Egress(name, mode="direct", ssl_context=context, tls=tls, max_connections=limit)
    if proxy is not None:
        try:
            parsed = parse_proxy(proxy)
        except ValueError as exc:
            raise ValueError(f"proxy: {exc}") from None
        return Egress(name, proxy=parsed, mode="proxy", ssl_context=context, tls=tls, max_connections=limit)
    # Read once per load (lower case wins, as curl and requests do); NO_PROXY is env["no"].
    env = urllib.request.getproxies_environment()
    for scheme in ("http", "https"):
        if env.get(scheme):
            try:
                parse_proxy(env[scheme])
            except ValueError as exc:
                raise ValueError(f"proxy: the {scheme.upper()}_PROXY environment variable: {exc}") from None
    return Egress(name, mode="env", env=env, ssl_context=context, tls=tls, max_connections=limit)
