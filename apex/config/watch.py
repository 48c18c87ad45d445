"""Watch the config file and hand each new content to the event loop; never validate, never raise.

watchdog reports changes in the directories that hold the file (and, for a symlink, every
hop of its chain), so edits in place, editors' save-by-rename and Kubernetes-style swaps
of a ``..data`` symlink are all seen. Events are debounced on one worker thread, the file is
read whole, content whose SHA-256 equals the last delivered one is skipped, and the rest is
passed to ``on_change`` on the event loop thread via ``call_soon_threadsafe``. Validation and
the swap belong to the caller (the gateway's reload). Errors are logged and the watcher
keeps going: nothing here may raise into watchdog's thread or stop the gateway.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final, final

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch

__all__ = ["ConfigWatcher"]

_log: Final = logging.getLogger(__name__)
_MAX_LINKS: Final = 40  # same bound as the kernel's symlink loop limit


def _norm(path: str) -> str:
    """Canonical spelling of ``path`` whose last component is kept (it may be a symlink)."""
    head, tail = os.path.split(os.path.abspath(path))
    return os.path.join(os.path.realpath(head), tail)


def _symlink_chain(path: Path) -> list[str]:
    """``path`` and every path its symlinks pass through, each with its ancestor links.

    For ``/cfg/config.json -> ..data/config.json`` with ``..data -> ..2024_01``, this holds
    ``/cfg/config.json``, ``/cfg/..data/config.json``, ``/cfg/..data`` and the real file, so an
    event renaming ``..data`` matches.
    """
    seen: list[str] = []
    current = os.path.abspath(path)
    for _ in range(_MAX_LINKS):
        if current in seen:
            break
        seen.append(current)
        # Ancestor components that are symlinks are swapped by Kubernetes; they count too.
        parent = os.path.dirname(current)
        while parent not in ("/", ""):
            if os.path.islink(parent) and parent not in seen:
                seen.append(parent)
            parent = os.path.dirname(parent)
        if not os.path.islink(current):
            break
        try:
            target = os.readlink(current)
        except OSError:
            break
        current = os.path.normpath(os.path.join(os.path.dirname(current), target))
    real = os.path.realpath(path)
    if real not in seen:
        seen.append(real)
    return seen


class _Handler(FileSystemEventHandler):
    """Forwards relevant watchdog events to the watcher; runs on watchdog's thread."""

    def __init__(self, watcher: ConfigWatcher) -> None:
        self._watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        try:
            self._watcher._on_event(event)
        except Exception:  # watchdog's thread boundary: log, never raise into it
            _log.exception("config watcher: error handling %r", event)


@final
class ConfigWatcher:
    """Delivers each new content of the config file at ``path`` to ``on_change`` on ``loop``.

    ``start()`` records the current content as already delivered (the gateway loaded it),
    so only later changes are reported; pass ``initial_content`` to use the bytes the
    gateway actually loaded instead. ``check_now()`` skips the debounce (e.g. on SIGHUP).
    """

    def __init__(
        self,
        path: Path,
        on_change: Callable[[bytes], object],
        loop: asyncio.AbstractEventLoop,
        *,
        debounce_s: float = 0.1,
        initial_content: bytes | None = None,
    ) -> None:
        self._path = Path(os.path.abspath(path))
        self._on_change = on_change
        self._loop = loop
        self._debounce_s = debounce_s
        self._last_digest: bytes | None = (
            hashlib.sha256(initial_content).digest() if initial_content is not None else None
        )
        self._cond = threading.Condition()
        self._due: float | None = None
        self._stopped = False
        self._relevant: frozenset[str] = frozenset()
        self._watches: dict[str, ObservedWatch] = {}
        self._observer: BaseObserver | None = None
        self._worker: threading.Thread | None = None
        self._handler = _Handler(self)

    @property
    def path(self) -> Path:
        """The watched config path, absolute."""
        return self._path

    def start(self) -> None:
        """Begin watching; raises OSError only if no directory could be watched at all."""
        if self._last_digest is None:
            try:
                self._last_digest = hashlib.sha256(self._path.read_bytes()).digest()
            except OSError as exc:
                _log.warning("config watcher: cannot read %s: %s", self._path, exc.strerror)
        self._observer = Observer()
        self._observer.daemon = True
        self._refresh_watches()
        if not self._watches:
            raise OSError(f"cannot watch the directory of {self._path}")
        self._observer.start()
        self._worker = threading.Thread(target=self._run, name="apex-config-watch", daemon=True)
        self._worker.start()

    def stop(self) -> None:
        """Stop watching and wait (briefly) for the threads; safe to call twice."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        if self._observer is not None:
            self._observer.stop()
            if self._observer.is_alive():
                self._observer.join(timeout=2)
        if self._worker is not None and self._worker is not threading.current_thread():
            self._worker.join(timeout=2)

    def check_now(self) -> None:
        """Read the file on the worker thread now, without waiting for the debounce."""
        self._schedule(0.0)

    # -- watchdog thread ------------------------------------------------------------

    def _on_event(self, event: FileSystemEvent) -> None:
        paths = [event.src_path, getattr(event, "dest_path", "")]
        for p in paths:
            if p and _norm(os.fsdecode(p)) in self._relevant:
                self._schedule(self._debounce_s)
                return

    def _schedule(self, delay: float) -> None:
        with self._cond:
            self._due = time.monotonic() + delay
            self._cond.notify_all()

    # -- worker thread --------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped and self._due is None:
                    self._cond.wait()
                if self._stopped:
                    return
                assert self._due is not None
                remaining = self._due - time.monotonic()
                if remaining > 0:
                    # A later event moved the deadline: wait again (this is the debounce).
                    self._cond.wait(remaining)
                    continue
                self._due = None
            try:
                self._check()
            except Exception:  # background-thread boundary: log and keep watching
                _log.exception("config watcher: unexpected error")

    def _check(self) -> None:
        # A swap may have changed which directories and links matter.
        self._refresh_watches()
        try:
            content = self._path.read_bytes()
        except OSError as exc:
            # Mid-rename or deleted: the rename's own event brings us back here.
            _log.warning("config watcher: cannot read %s: %s", self._path, exc.strerror)
            return
        digest = hashlib.sha256(content).digest()
        if digest == self._last_digest:
            return
        self._last_digest = digest
        try:
            self._loop.call_soon_threadsafe(self._deliver, content)
        except RuntimeError:
            _log.warning("config watcher: event loop is closed; change to %s not delivered", self._path)

    def _refresh_watches(self) -> None:
        chain = _symlink_chain(self._path)
        self._relevant = frozenset(_norm(p) for p in chain)
        wanted = {os.path.realpath(os.path.dirname(p)) for p in chain}
        observer = self._observer
        if observer is None:
            return
        for directory in list(self._watches):
            if directory not in wanted:
                try:
                    observer.unschedule(self._watches.pop(directory))
                except (KeyError, OSError) as exc:
                    _log.debug("config watcher: unschedule %s: %s", directory, exc)
        for directory in wanted - self._watches.keys():
            if not os.path.isdir(directory):
                continue
            try:
                self._watches[directory] = observer.schedule(self._handler, directory, recursive=False)
            except OSError as exc:
                _log.warning("config watcher: cannot watch %s: %s", directory, exc)

    # -- event loop thread ----------------------------------------------------------

    def _deliver(self, content: bytes) -> None:
        try:
            self._on_change(content)
        except Exception:  # the callback's failures are the caller's to report; keep watching
            _log.exception("config watcher: on_change failed for %s", self._path)
