"""A throwaway PostgreSQL server on a free 127.0.0.1 port, for tests that need a real one.

Uses Debian's ``postgresql`` binaries (``initdb``, ``pg_ctl``; ``.ci/install-deps`` installs
them) on a fresh data directory in a temp dir, trust auth on loopback only. PostgreSQL
refuses to run as root, so under root the server runs as the ``postgres`` (else ``nobody``)
user. Stopped by ``pg_ctl stop`` at teardown; the data directory is removed. Tests skip,
saying why, when the binaries are missing.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["PostgresServer", "postgres_server"]

_START_TIMEOUT_S = 30


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found is not None:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class PostgresServer:
    """One postgres we started: ``dsn`` for the ``postgres`` database as user ``apex``."""

    def __init__(self, initdb: str, pg_ctl: str) -> None:
        self._initdb = initdb
        self._pg_ctl = pg_ctl
        self.port = _free_port()
        self._dir = Path(tempfile.mkdtemp(prefix="apex-pg-"))
        self._data = self._dir / "data"
        self._user: str | None = None
        if os.geteuid() == 0:
            for name in ("postgres", "nobody"):
                try:
                    pwd.getpwnam(name)
                except KeyError:
                    continue
                self._user = name
                break
            else:
                raise RuntimeError("running as root and no unprivileged user to run postgres as")
            entry = pwd.getpwnam(self._user)
            os.chown(self._dir, entry.pw_uid, entry.pw_gid)

    @property
    def dsn(self) -> str:
        return f"postgresql://apex@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        cmd = list(args)
        if self._user is not None:
            cmd = ["runuser", "-u", self._user, "--", *cmd]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=_START_TIMEOUT_S,
                       cwd=self._dir)

    def start(self) -> None:
        self._run(self._initdb, "-D", str(self._data), "-U", "apex", "--auth=trust", "-E", "UTF8", "--no-sync")
        self._run(self._pg_ctl, "-D", str(self._data), "-w", "-t", str(_START_TIMEOUT_S), "-l", str(self._dir / "log"),
                  "-o", f"-p {self.port} -h 127.0.0.1 -k {self._dir} -c fsync=off", "start")

    def stop(self) -> None:
        """``pg_ctl stop`` (fast mode) and remove the data directory."""
        try:
            if (self._data / "postmaster.pid").exists():
                self._run(self._pg_ctl, "-D", str(self._data), "-m", "fast", "-w", "stop")
        finally:
            shutil.rmtree(self._dir, ignore_errors=True)


@pytest.fixture
def postgres_server() -> Iterator[PostgresServer]:
    """A running PostgreSQL for one test, stopped at teardown."""
    initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL server binaries are not installed (apt-get install postgresql)")
    try:
        import asyncpg  # noqa: F401
    except ImportError:
        pytest.skip("asyncpg is not installed (pip install 'apex[postgres]')")
    server = PostgresServer(initdb, pg_ctl)
    try:
        server.start()
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, RuntimeError, OSError) as exc:
        server.stop()
        detail = getattr(exc, "stderr", b"") or b""
        pytest.skip(f"could not start a PostgreSQL server: {exc} {detail.decode(errors='replace')[-300:]}")
    try:
        yield server
    finally:
        server.stop()
