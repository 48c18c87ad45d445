"""ConfigStore: validation before write, atomic replace with .bak, lock, symlinks kept."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from apex.cli.store import ConfigStore
from apex.errors import ConfigError

VALID = {"channels": [{"name": "demo", "provider_type": "mock"}], "routers": [{"name": "r", "vkey": "${VK}"}]}


def _store(tmp_path: Path) -> ConfigStore:
    path = tmp_path / "config.json"
    path.write_text(json.dumps(VALID))
    return ConfigStore(path)


def test_edit_writes_and_keeps_backup(tmp_path: Path) -> None:
    """A valid edit replaces the file, keeps ${VAR} and puts the old bytes in .bak."""
    store = _store(tmp_path)
    before = store.path.read_bytes()
    with store.edit() as raw:
        raw["channels"].append({"name": "two", "provider_type": "mock"})
    data = json.loads(store.path.read_text())
    assert [c["name"] for c in data["channels"]] == ["demo", "two"]
    assert data["routers"][0]["vkey"] == "${VK}"
    assert store.backup_path.read_bytes() == before
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_invalid_edit_leaves_file_untouched(tmp_path: Path) -> None:
    """An edit failing validation raises ConfigError with the key path and writes nothing."""
    store = _store(tmp_path)
    before = store.path.read_bytes()
    with pytest.raises(ConfigError) as info, store.edit() as raw:
        raw["routers"][0]["channels"] = [{"name": "ghost"}]
    assert info.value.path == "routers[0].channels[0].name"
    assert store.path.read_bytes() == before
    assert not store.backup_path.exists()


def test_exception_in_block_aborts(tmp_path: Path) -> None:
    """An exception inside the edit block writes nothing."""
    store = _store(tmp_path)
    before = store.path.read_bytes()
    with pytest.raises(RuntimeError), store.edit() as raw:
        raw["channels"] = []
        raise RuntimeError("abort")
    assert store.path.read_bytes() == before


def test_symlink_is_written_through(tmp_path: Path) -> None:
    """Editing a symlinked config rewrites its target and keeps the link."""
    real = tmp_path / "real.json"
    real.write_text(json.dumps(VALID))
    link = tmp_path / "config.json"
    link.symlink_to(real)
    with ConfigStore(link).edit() as raw:
        raw["channels"][0]["latency_ms"] = 5
    assert link.is_symlink()
    assert json.loads(real.read_text())["channels"][0]["latency_ms"] == 5


def test_mode_is_preserved(tmp_path: Path) -> None:
    """The rewritten file keeps the original's permission bits."""
    store = _store(tmp_path)
    os.chmod(store.path, 0o640)
    with store.edit() as raw:
        raw["teams"] = []
    assert os.stat(store.path).st_mode & 0o777 == 0o640


def test_concurrent_edits_do_not_lose_updates(tmp_path: Path) -> None:
    """Threads editing at once each land their change (the lock serialises read-modify-write)."""
    store = _store(tmp_path)

    def add(i: int) -> None:
        with ConfigStore(store.path).edit() as raw:
            raw["channels"].append({"name": f"c{i}", "provider_type": "mock"})

    threads = [threading.Thread(target=add, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    names = {c["name"] for c in json.loads(store.path.read_text())["channels"]}
    assert names == {"demo"} | {f"c{i}" for i in range(8)}


def test_create_refuses_existing(tmp_path: Path) -> None:
    """create() refuses to overwrite unless forced."""
    store = _store(tmp_path)
    with pytest.raises(ConfigError, match="already exists"):
        store.create(VALID)
    store.create({"channels": []}, force=True)
    assert json.loads(store.path.read_text()) == {"channels": []}


def test_non_object_file(tmp_path: Path) -> None:
    """A file that is not a JSON object is a ConfigError."""
    path = tmp_path / "config.json"
    path.write_text("[1, 2]")
    with pytest.raises(ConfigError, match="JSON object"):
        ConfigStore(path).read_raw()
    path.write_text("{nope")
    with pytest.raises(ConfigError, match="invalid JSON"):
        ConfigStore(path).read_raw()


def test_a_key_written_twice_is_refused_not_dropped(tmp_path: Path) -> None:
    """The gateway refuses a file with a key written twice; an edit refuses it too, naming the
    key (json.loads kept the last "teams" and the edit wrote the file without the first)."""
    path = tmp_path / "config.json"
    body = json.dumps(VALID)[:-1] + ', "teams": [{"id": "a", "api_key": "ka"}], "teams": [{"id": "b", "api_key": "kb"}]}'
    path.write_text(body)
    store = ConfigStore(path)
    with pytest.raises(ConfigError) as info, store.edit() as raw:
        raw["channels"].append({"name": "two", "provider_type": "mock"})
    assert info.value.path == "teams" and "appears twice" in str(info.value)
    assert path.read_text() == body
