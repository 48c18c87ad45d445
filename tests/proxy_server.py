"""A small real HTTP proxy for the egress tests, run as its own process.

    python -m tests.proxy_server [--auth user:pass] [--tls CERT KEY]

Prints ``PORT <n>`` once listening on 127.0.0.1, then one line per request it handles:
``SEEN CONNECT 127.0.0.1:443 auth=ok`` or ``SEEN POST http://127.0.0.1:80/v1/... auth=ok``
(``auth`` is ``ok``, ``missing`` or ``bad``; the credentials themselves are never printed).
CONNECT opens a tunnel and pipes bytes both ways; an absolute-form request is forwarded to
its origin in origin-form without Proxy-Authorization (one upstream connection per request,
``Connection: close``), and the answer is copied back as it came. Stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import signal
import ssl
import sys
from urllib.parse import urlsplit


class Proxy:
    def __init__(self, auth: str | None) -> None:
        self.expected = None if auth is None else "Basic " + base64.b64encode(auth.encode()).decode()

    def _auth(self, headers: dict[str, str]) -> str:
        given = headers.get("proxy-authorization")
        if self.expected is None:
            return "ok"
        if given is None:
            return "missing"
        return "ok" if given == self.expected else "bad"

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                lines = head.decode("latin-1").split("\r\n")
                method, target, _ = lines[0].split(" ", 2)
                headers = {}
                for line in lines[1:]:
                    if line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                verdict = self._auth(headers)
                print(f"SEEN {method} {target} auth={verdict}", flush=True)
                if verdict != "ok":  # with a page, as squid and tinyproxy send one
                    if method != "CONNECT":
                        await reader.readexactly(int(headers.get("content-length", "0")))
                    page = b"<html><body><h1>407 Proxy Authentication Required</h1></body></html>\n"
                    writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"test\"\r\n"
                                 b"Content-Type: text/html\r\nContent-Length: %d\r\n\r\n%s" % (len(page), page))
                    await writer.drain()
                    continue
                if method == "CONNECT":
                    await self._tunnel(target, reader, writer)
                    return
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                await self._forward(method, target, lines[1:], body, writer)
        finally:
            writer.close()

    async def _tunnel(self, target: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        host, _, port = target.rpartition(":")
        try:
            up_reader, up_writer = await asyncio.open_connection(host.strip("[]"), int(port))
        except OSError:
            writer.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            return
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
        await writer.drain()
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    async def _forward(self, method: str, target: str, header_lines: list[str], body: bytes,
                       writer: asyncio.StreamWriter) -> None:
        url = urlsplit(target)
        path = url.path + (f"?{url.query}" if url.query else "")
        kept = [line for line in header_lines if line and not line.lower().startswith(("proxy-authorization:", "connection:"))]
        head = "\r\n".join([f"{method} {path} HTTP/1.1", *kept, "Connection: close"]) + "\r\n\r\n"
        up_reader, up_writer = await asyncio.open_connection(url.hostname, url.port or 80)
        up_writer.write(head.encode("latin-1") + body)
        await up_writer.drain()
        answer = await up_reader.read()  # Connection: close: the whole answer, framed by the origin
        up_writer.close()
        writer.write(answer)
        await writer.drain()


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, record: bytearray | None = None) -> None:
    """Copy ``reader`` to ``writer`` until EOF, keeping the first 4 KiB in ``record`` if given."""
    try:
        while data := await reader.read(65536):
            if record is not None and len(record) < 4096:
                record += data
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--auth", default=None, help="user:pass the proxy requires")
    ap.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"), default=None,
                    help="serve over TLS (an https:// proxy) with this certificate chain and key")
    args = ap.parse_args()
    proxy = Proxy(args.auth)
    context = None
    if args.tls:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*args.tls)
    server = await asyncio.start_server(proxy.serve, "127.0.0.1", 0, ssl=context)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
