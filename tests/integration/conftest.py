"""Fixtures for the integration tests: ``log_file`` points Apex's logging at a JSON file;
``ca`` and ``tls_upstream`` give a test CA (trustme) and a FakeUpstream serving TLS with it;
``start_proxy`` starts tests/proxy_server.py (a real HTTP proxy process) and stops it by PID."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, Final

import pytest

from apex.config.model import LoggingConfig
from apex.server.logs import configure_logging
from tests.integration.cloud_fakes import CloudFake
from tests.integration.fakes import FakeUpstream

ROOT: Final = Path(__file__).resolve().parents[2]
LIMIT: Final = 10.0  # seconds a proxy process may take to start or stop


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[Path]:
    """Point Apex's logging at a JSON file for the test; restore the root logger afterwards."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level, logging.getLogger("apex.access").disabled)
    path = tmp_path / "apex.log"
    configure_logging(LoggingConfig(level="info", format="json", file=str(path)))
    try:
        yield path
    finally:
        for h in list(root.handlers):
            root.removeHandler(h)
            h.close()
        for h in saved[0]:
            root.addHandler(h)
        root.setLevel(saved[1])
        logging.getLogger("apex.access").disabled = saved[2]


@pytest.fixture
def ca() -> Any:
    """A test certificate authority (trustme); the test is skipped without trustme."""
    trustme = pytest.importorskip("trustme", reason="trustme makes the test CA (pip install trustme)")
    return trustme.CA()


@pytest.fixture
async def tls_upstream(ca: Any) -> AsyncIterator[FakeUpstream]:
    """A FakeUpstream over TLS with a certificate for 127.0.0.1 and localhost from the test CA."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(context)
    fake = FakeUpstream()
    await fake.start(ssl_context=context)
    yield fake
    await fake.stop()


class ProxyProcess:
    """tests/proxy_server.py running as a child process; ``seen`` are its request lines."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc = proc
        self.port = port
        self.seen: list[str] = []
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            text = line.decode().strip()
            if text.startswith("SEEN "):
                self.seen.append(text[5:])

    def url(self, auth: str | None = None, scheme: str = "http") -> str:
        return f"{scheme}://{auth + '@' if auth else ''}127.0.0.1:{self.port}"

    async def stop(self) -> None:
        await stop_process(self.proc)
        self._reader.cancel()


StartProxy = Callable[..., Awaitable[ProxyProcess]]


@pytest.fixture
async def start_proxy() -> AsyncIterator[StartProxy]:
    started: list[ProxyProcess] = []

    async def start(auth: str | None = None, tls: tuple[str, str] | None = None) -> ProxyProcess:
        args = [sys.executable, "-m", "tests.proxy_server"] + (["--auth", auth] if auth else [])
        if tls is not None:  # an https:// proxy: certificate chain and key files
            args += ["--tls", *tls]
        proc = await asyncio.create_subprocess_exec(*args, cwd=ROOT, stdout=asyncio.subprocess.PIPE)
        assert proc.stdout is not None
        async with asyncio.timeout(LIMIT):
            first = (await proc.stdout.readline()).decode()
        assert first.startswith("PORT "), first
        proxy = ProxyProcess(proc, int(first.split()[1]))
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        await proxy.stop()


@pytest.fixture
async def cloud() -> AsyncIterator[CloudFake]:
    """The fake clouds (Azure, Bedrock, Vertex and their token services) on loopback; a test
    module whose fake needs settings before it starts (keys, SigV4) defines its own."""
    fake = CloudFake()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()


async def stop_process(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM a process this test started, SIGKILL it if it is still there after LIMIT."""
    if proc.returncode is None:
        proc.terminate()
        try:
            async with asyncio.timeout(LIMIT):
                await proc.wait()
        except TimeoutError:
            proc.kill()
            await proc.wait()


def free_port() -> int:
    """A loopback TCP port nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serving(cmd: list[str], port: int, log: Path, name: str) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``cmd`` (a server that listens on 127.0.0.1:``port``), its output in ``log``; yield
    once the port takes connections (fail, quoting the log, if it exits or never does), and
    stop it by PID afterwards (SIGTERM, SIGKILL after LIMIT)."""
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    try:
        for _ in range(200):
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.1):
                break
            assert proc.poll() is None, log.read_text(errors="replace")
            time.sleep(0.05)
        else:
            pytest.fail(f"{name} did not listen: " + log.read_text(errors="replace"))
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(LIMIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

