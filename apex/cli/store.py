"""The one place the CLI writes the config file: lock, read raw JSON, edit, validate, write atomically.

Edits work on the file's raw JSON (not the decoded Config) so ``${VAR}`` references, key
order and keys left at their defaults stay as the admin wrote them. Before anything is
written the result is validated with ``load_config_bytes(strict_env=False)``, so a CLI
without the gateway's secrets in its environment can still edit. A write is: temp file in
the same directory, fsync, copy of the old content to ``<name>.bak``, rename over, fsync of
the directory. An exclusive ``flock`` on ``.<name>.lock`` spans read-modify-write so two CLIs
cannot interleave. A symlinked config is written through to its target, keeping the link.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Final, final

from apex.config.load import check_unique_keys, load_config_bytes, read_config_file
from apex.config.model import Config
from apex.errors import ConfigError

__all__ = ["ConfigStore", "RawConfig", "encode_raw", "LOCK_TIMEOUT_S"]

# The file's JSON as decoded by the json module. Any is deliberate: these are arbitrary,
# user-written JSON trees edited key by key, and typing them tighter buys nothing here.
RawConfig = dict[str, Any]

LOCK_TIMEOUT_S: Final = 10.0
_NEW_FILE_MODE: Final = 0o600  # a fresh config may hold a generated vkey


def encode_raw(raw: RawConfig) -> bytes:
    """The bytes the CLI writes for ``raw``: 2-space indented JSON, key order kept, newline-terminated."""
    return (json.dumps(raw, indent=2, ensure_ascii=False) + "\n").encode()


@final
class ConfigStore:
    """Reads and atomically rewrites the config file at ``path``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def target(self) -> Path:
        """The real file written: the symlink's target when ``path`` is a symlink."""
        return Path(os.path.realpath(self.path))

    @property
    def backup_path(self) -> Path:
        """Where the previous content is kept on each write."""
        return self.target.with_name(self.target.name + ".bak")

    @property
    def lock_path(self) -> Path:
        """The lock file beside the config."""
        return self.target.with_name("." + self.target.name + ".lock")

    def exists(self) -> bool:
        """True when the config file exists."""
        return self.path.exists()

    def read_bytes(self) -> bytes:
        """The file's bytes; ConfigError naming the path when it cannot be read."""
        return read_config_file(self.path)

    def read_raw(self) -> RawConfig:
        """The file as a JSON object; ConfigError when it is not one."""
        return _decode_raw(self.read_bytes())

    def load(self) -> Config:
        """The validated Config, leaving unset ``${VAR}`` references in place."""
        return load_config_bytes(self.read_bytes(), strict_env=False)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the exclusive write lock; ConfigError if another writer keeps it past the timeout."""
        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            deadline = time.monotonic() + LOCK_TIMEOUT_S
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise ConfigError(
                            f"another apex command is writing {os.fspath(self.path)!r} (lock {self.lock_path})"
                        ) from None
                    time.sleep(0.02)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the flock

    @contextlib.contextmanager
    def edit(self) -> Iterator[RawConfig]:
        """Yield the raw config for in-place changes; on clean exit validate and write it.

        Raises ConfigError (file untouched) when the edited config is invalid. An exception
        inside the block aborts the edit without writing.
        """
        with self.lock():
            raw = self.read_raw()
            yield raw
            self._write_locked(encode_raw(raw), keep_backup=True)

    def create(self, raw: RawConfig, *, force: bool = False, mode: int | None = None) -> None:
        """Write a new config file; ConfigError if it exists and ``force`` is not set.
        ``mode`` sets its permissions (default 0600, or the replaced file's)."""
        with self.lock():
            existed = self.path.exists() or self.path.is_symlink()
            if existed and not force:
                raise ConfigError(f"{os.fspath(self.path)!r} already exists (use --force to overwrite)")
            self._write_locked(encode_raw(raw), keep_backup=existed, mode=mode)

    def _write_locked(self, data: bytes, *, keep_backup: bool, mode: int | None = None) -> None:
        config = load_config_bytes(data, strict_env=False, overrides=False)  # APEX_* overrides are not the file's
        if any(ch.tls is not None for ch in config.channels):
            # CA and client-certificate files: what `config validate` and the gateway's load
            # refuse is refused here too, not written for the next reload to reject.
            from apex.upstream.channel import check_egress

            check_egress(config)
        target = self.target
        directory = target.parent
        directory.mkdir(parents=True, exist_ok=True)
        if mode is None:
            try:
                mode = target.stat().st_mode & 0o7777
            except FileNotFoundError:
                mode = _NEW_FILE_MODE
        if keep_backup:
            with contextlib.suppress(FileNotFoundError):
                _write_file(self.backup_path, target.read_bytes(), mode, directory)
        _write_file(target, data, mode, directory)


def _write_file(target: Path, data: bytes, mode: int, directory: Path) -> None:
    """Atomically replace ``target`` with ``data``: temp file, fsync, rename, fsync directory."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fchmod(f.fileno(), mode)
            os.fsync(f.fileno())
        os.replace(tmp_name, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        raise
    dir_fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def _decode_raw(data: bytes) -> RawConfig:
    try:
        raw = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"invalid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise ConfigError("the config file must hold a JSON object")
    check_unique_keys(data)  # an edit would write the last value only and drop the others
    return raw
