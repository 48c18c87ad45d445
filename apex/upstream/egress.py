"""How one channel's requests leave Apex: proxy, TLS options and connection budget.

Compiled once per config load (``compile_channel``) from the channel's ``proxy``, ``tls``
and ``max_connections`` keys; the upstream pool only reads the result. Without a ``proxy``
key the standard environment variables apply (``HTTPS_PROXY``, ``HTTP_PROXY``,
``NO_PROXY``, either case, read at load through ``urllib.request``; NO_PROXY also takes
IP addresses and CIDR blocks, see ``NoProxy``;
``ALL_PROXY`` for a scheme without its own variable, as curl does); ``"proxy": "direct"``
ignores them. Proxies are ``http://`` or ``https://`` (TLS to the proxy; CONNECT for https upstreams, forwarding for http) or
``socks5://`` / ``socks5h://`` (a SOCKS5 tunnel for both, through ``python-socks``, the
``socks`` extra; with ``socks5h`` the proxy resolves the upstream's name). Proxy
credentials are secrets: they live only in the prebuilt ``Proxy-Authorization`` value or
the SOCKS handshake, never in a repr, a log line or an error message.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import socket
import ssl
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from apex.config.proxy import DIRECT, Proxy, parse_proxy

__all__ = [
    "connect_reason",
    "DEFAULT_MAX_CONNECTIONS",
    "Egress",
    "NoProxy",
    "Proxy",
    "TlsOptions",
    "build_egress",
    "parse_proxy",
    "tls_context",
]

# Per channel origin. Like httpx's and aiohttp's default pool size: enough for a busy
# gateway's keep-alive reuse, small enough that a stampede queues instead of opening a
# connection per request (which providers answer with connection resets or 429s).
DEFAULT_MAX_CONNECTIONS: Final = 100


@dataclass(frozen=True, slots=True)
class TlsOptions:
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify: bool = True


def tls_context(options: TlsOptions) -> ssl.SSLContext:
    """A client context for the channel: its CA bundle (instead of the system store), its
    client certificate, or no verification when ``verify`` is false. Raises OSError or
    ssl.SSLError for unreadable files (the caller names the key)."""
    context = ssl.create_default_context(cafile=options.ca_file)
    if options.cert_file is not None:
        # Without a password callback OpenSSL prompts on the terminal for an encrypted key:
        # `apex config validate` or a reload would hang there. There is no key for a passphrase.
        context.load_cert_chain(options.cert_file, options.key_file, password=_encrypted_key)
    if not options.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class EncryptedKey(ValueError):
    """The client certificate's private key is encrypted (it asked for a passphrase)."""


def _encrypted_key() -> str:
    raise EncryptedKey("the private key is encrypted; give Apex an unencrypted key file "
                       "(openssl pkey -in KEY -out PLAIN_KEY) readable only by the gateway's user")


# The proxy variables Apex reads: HTTP_PROXY, HTTPS_PROXY and ALL_PROXY (any case).
_ENV_SCHEMES: Final = ("http", "https", "all")


class NoProxy:
    """``NO_PROXY``, compiled once per load: which upstreams connect directly.

    Entries are comma- or space-separated, case-insensitive: ``*`` (everything); a name, which
    matches itself and its subdomains, with or without a leading ``.`` or ``*.``
    (``.corp.example`` matches ``api.corp.example`` and ``corp.example``, as curl and urllib
    read it); an IP address or a CIDR block (``10.0.0.0/8``, ``fd00::/8``; curl since 7.86
    and Go match those, urllib does not); any of these with ``:port`` to match one port only.
    """

    __slots__ = ("_all", "_names", "_networks")

    def __init__(self, value: str) -> None:
        self._all = False
        self._names: list[tuple[str, int | None]] = []
        self._networks: list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, int | None]] = []
        for raw in value.replace(" ", ",").split(","):
            entry = raw.strip().lower()
            if not entry:
                continue
            if entry == "*":
                self._all = True
                continue
            entry, port = _split_port(entry)
            try:
                self._networks.append((ipaddress.ip_network(entry, strict=False), port))
                continue
            except ValueError:
                pass
            name = entry.removeprefix("*.").lstrip(".")
            if name:
                self._names.append((name, port))

    def bypass(self, host: str, port: int) -> bool:
        if self._all:
            return True
        host = host.lower().strip("[]").rstrip(".")
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return any(
                (want is None or want == port) and (host == name or host.endswith("." + name))
                for name, want in self._names
            )
        return any((want is None or want == port) and address in net for net, want in self._networks) or any(
            (want is None or want == port) and host == name for name, want in self._names
        )


def _split_port(entry: str) -> tuple[str, int | None]:
    """``host:port``, ``[v6]:port``, ``v6`` or ``host``: the host part and the port if any."""
    if entry.startswith("["):
        host, _, rest = entry[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
    if entry.count(":") == 1:
        host, _, port = entry.partition(":")
        if port.isdigit():
            return host, int(port)
    return entry, None


class Egress:
    """One channel's way out: which proxy serves an upstream URL, the TLS context, the
    connection budget. ``key`` identifies equal settings across reloads so their pooled
    connections survive a reload that did not change them."""

    __slots__ = ("_env", "_mode", "_no_proxy", "_proxy", "key", "max_connections", "name", "ssl")

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
        self._no_proxy = NoProxy(self._env.get("no", ""))
        self.ssl = ssl_context
        self.max_connections = max_connections
        env_key = tuple(sorted(self._env.items())) if mode == "env" else ()
        # What identifies its connections across reloads. Not the budget nor the TLS files'
        # contents: a reload that changes those updates the pool in place (UpstreamPool.post),
        # so the budget stays one budget and new connections use the files as they are now.
        self.key = (name, mode, proxy, proxy.authorization if proxy else None, env_key, tls)

    def secrets(self) -> list[str]:
        """Proxy credentials (header value and password) for the channel's scrubber."""
        proxies = [self._proxy] if self._proxy is not None else []
        if self._mode == "env":
            for scheme in _ENV_SCHEMES:
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
        url = self._env.get(scheme) or self._env.get("all")
        if not url:
            return None
        if self._no_proxy.bypass(host, port):
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
        except EncryptedKey as exc:
            raise ValueError(f"tls.{'key_file' if tls.key_file else 'cert_file'}: {exc}") from None
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"tls: cannot load the certificates: {exc}") from None
    if proxy == DIRECT:
        return Egress(name, mode="direct", ssl_context=context, tls=tls, max_connections=limit)
    if proxy is not None:
        try:
            parsed = parse_proxy(proxy)
        except ValueError as exc:
            raise ValueError(f"proxy: {exc}") from None
        return Egress(name, proxy=parsed, mode="proxy", ssl_context=context, tls=tls, max_connections=limit)
    # Read once per load (lower case wins, as curl and requests do); NO_PROXY is env["no"],
    # ALL_PROXY env["all"] (used for a scheme without its own variable).
    env = urllib.request.getproxies_environment()
    for scheme in _ENV_SCHEMES:
        if env.get(scheme):
            try:
                parse_proxy(env[scheme])
            except ValueError as exc:
                raise ValueError(f"proxy: the {scheme.upper()}_PROXY environment variable: {exc}") from None
    return Egress(name, mode="env", env=env, ssl_context=context, tls=tls, max_connections=limit)


def connect_reason(exc: BaseException) -> str:
    """Why a connection could not be made, in words an operator acts on."""
    if isinstance(exc, socket.gaierror):
        return f"DNS lookup failed ({exc.strerror or exc})"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return f"TLS certificate verify failed ({exc.verify_message or exc.reason})"
    if isinstance(exc, ssl.SSLError):
        return f"TLS handshake failed ({exc.reason or exc})"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, ConnectionResetError):
        return "connection reset while connecting"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[0].lower() + exc.strerror[1:]
    return str(exc) or type(exc).__name__
