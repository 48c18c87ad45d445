"""SOCKS5 tunnels for channel proxies (``socks5://`` and ``socks5h://``), through python-socks.

python-socks (the ``socks`` extra; its asyncio flavour) opens the TCP connection to the
proxy and runs the SOCKS5 handshake (RFC 1928, user and password by RFC 1929), then hands
back a connected non-blocking socket; the upstream pool gives it to the event loop and,
for https, starts TLS to the upstream inside it. ``socks5`` resolves the upstream's name
here; ``socks5h`` sends the name for the proxy to resolve (what python-socks calls rdns).

Imported only when a connection goes through a SOCKS proxy: a config naming one without
the extra installed does not load (apex.upstream.egress). Failures are ``SocksFailed``, an
OSError whose text says what went wrong in an operator's words, never the credentials.
"""

from __future__ import annotations

import asyncio
import socket

from python_socks import ProxyConnectionError, ProxyError, ProxyTimeoutError, ProxyType
from python_socks._errors import IncompleteReadError  # the cause of a handshake cut short (not re-exported)
from python_socks.async_.asyncio import Proxy as SocksClient

from apex.upstream.egress import Proxy, connect_reason

__all__ = ["SocksFailed", "open_tunnel"]

# The handshake's own limit; the pool's connect timeout (asyncio.timeout around the whole
# connect) is what bounds it in practice.
_HANDSHAKE_SECONDS = 300.0


class SocksFailed(OSError):
    """The SOCKS proxy could not be reached, refused us, or could not reach the upstream."""

    def __init__(self, reason: str) -> None:
        super().__init__(None, reason)  # strerror: what connect_reason reports


async def open_tunnel(proxy: Proxy, host: str, port: int) -> socket.socket:
    """A socket connected to ``host:port`` through the SOCKS5 ``proxy``; SocksFailed otherwise."""
    client = SocksClient(
        ProxyType.SOCKS5,
        proxy.host,
        proxy.port,
        username=proxy.username,
        password=proxy.password,
        rdns=proxy.scheme == "socks5h",  # python-socks resolves at the proxy unless told not to
        loop=asyncio.get_running_loop(),
    )
    try:
        return await client.connect(host, port, timeout=_HANDSHAKE_SECONDS)
    except ProxyConnectionError as exc:
        cause = exc.__cause__
        why = connect_reason(cause) if isinstance(cause, OSError) else "unreachable"
        raise SocksFailed(f"the SOCKS proxy is unreachable ({why})") from exc
    except ProxyTimeoutError as exc:
        raise SocksFailed("the SOCKS proxy did not answer the handshake in time") from exc
    except ProxyError as exc:
        if exc.error_code is not None:  # the proxy's reply to CONNECT (RFC 1928 section 6)
            raise SocksFailed(f"the SOCKS proxy could not connect to the upstream ({_first_lower(str(exc))})") from exc
        if isinstance(exc.__cause__, IncompleteReadError):
            raise SocksFailed("the SOCKS proxy closed the connection during the handshake") from exc
        # Authentication refused, no acceptable method (credentials wanted), or a malformed reply.
        raise SocksFailed(f"the SOCKS proxy refused the handshake ({_first_lower(str(exc))})") from exc


def _first_lower(text: str) -> str:
    return text[:1].lower() + text[1:]
