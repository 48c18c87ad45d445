"""Start, pin, watch and stop the processes of a bench run (fake upstream, naive proxy, Apex).

Everything listens on 127.0.0.1. Each process gets its own session so that stopping it also
stops any worker it forked, and nothing else. CPU time comes from /proc/<pid>/stat (utime +
stime of all threads, plus live children), memory from /proc/<pid>/status.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

BENCH_DIR: Final = Path(__file__).resolve().parent
REPO_DIR: Final = BENCH_DIR.parent
_TICK: Final = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


@dataclass
class Proc:
    """A process this run started; ``stop`` ends it (and its own session) by PID."""

    name: str
    popen: subprocess.Popen[bytes]
    port: int
    log: Path
    cmd: list[str] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> None:
        if self.popen.poll() is not None:
            return
        for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 2.0)):
            try:
                os.killpg(self.popen.pid, sig)  # the session we created for it, nothing else
            except ProcessLookupError:
                return
            try:
                self.popen.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue


def spawn(name: str, cmd: list[str], port: int, log_dir: Path, cpu: int | None, env: dict[str, str] | None = None) -> Proc:
    log = log_dir / f"{name}.log"
    full_env = dict(os.environ)
    full_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_DIR), full_env.get("PYTHONPATH", "")) if p)
    if env:
        full_env.update(env)
    with open(log, "wb") as fh:  # the child keeps its own copy of the descriptor
        popen = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=full_env, cwd=log_dir, start_new_session=True)
    if cpu is not None:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(popen.pid, {cpu})
    return Proc(name, popen, port, log, cmd)


def wait_http(proc: Proc, path: str = "/health", timeout: float = 20.0) -> None:
    """Poll until GET path answers 200; raise with the log's tail if the process dies or never answers."""
    deadline = time.monotonic() + timeout
    url = f"http://127.0.0.1:{proc.port}{path}"
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited with {proc.popen.returncode}: {tail(proc.log)}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"{proc.name} did not answer {url} within {timeout:.0f}s: {tail(proc.log)}")


def tail(path: Path, n: int = 1500) -> str:
    try:
        return path.read_bytes()[-n:].decode(errors="replace").strip() or "(no output)"
    except OSError:
        return "(no log)"


def pin_threads(pid: int, cpu: int) -> None:
    """Pin every thread of pid (threads started after spawn keep the parent's mask anyway)."""
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            os.sched_setaffinity(int(tid), {cpu})
    except OSError:
        pass


def _descendants(pid: int) -> list[int]:
    kids: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        kids.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(kids.get(p, []))
    return out


def cpu_seconds(pid: int) -> float:
    """utime + stime of pid and its live descendants, in seconds."""
    total = 0
    for p in _descendants(pid):
        try:
            stat = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
    return total / _TICK


def memory_mb(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (peak RSS) of pid and its descendants, in MiB."""
    rss = hwm = 0
    for p in _descendants(pid):
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss += int(line.split()[1])
                elif line.startswith("VmHWM:"):
                    hwm += int(line.split()[1])
        except OSError:
            continue
    return {"rss_mb": rss / 1024, "peak_rss_mb": hwm / 1024}


def build_fake(build_dir: Path) -> Path:
    """Compile bench/fake_upstream.c with the system gcc when the binary is missing or stale."""
    src = BENCH_DIR / "fake_upstream.c"
    exe = build_dir / "fake_upstream"
    build_dir.mkdir(parents=True, exist_ok=True)
    if not exe.exists() or exe.stat().st_mtime < src.stat().st_mtime:
        cc = os.environ.get("CC", "gcc")
        subprocess.run([cc, "-O2", "-o", str(exe), str(src), "-lpthread"], check=True)
    return exe


def start_fake(exe: Path, log_dir: Path, cpu: int | None, chunks: int, gap_us: int) -> Proc:
    port = free_port()
    p = spawn("fake_upstream", [str(exe), "-p", str(port), "-n", str(chunks), "-g", str(gap_us)], port, log_dir, cpu)
    wait_http(p, "/health", 10)
    return p


def start_naive(name: str, upstream_port: int, log_dir: Path, cpu: int | None) -> Proc:
    port = free_port()
    cmd = [sys.executable, "-m", "bench.naive_proxy", "--port", str(port), "--upstream", f"http://127.0.0.1:{upstream_port}"]
    p = spawn(name, cmd, port, log_dir, cpu)
    wait_http(p, "/health", 20)
    return p


def tensorzero_available() -> bool:
    """The `tensorzero` wheel (pip install tensorzero) carries the Rust gateway peer."""
    import importlib.util

    return importlib.util.find_spec("tensorzero") is not None


def start_tensorzero(name: str, upstream_port: int, log_dir: Path, cpu: int | None) -> Proc:
    """TensorZero's gateway (bench/tensorzero_peer.py) on the port it picks; waits until it serves."""
    port_file = log_dir / f"{name}.port"
    port_file.unlink(missing_ok=True)
    cmd = [sys.executable, "-m", "bench.tensorzero_peer", "--upstream", f"http://127.0.0.1:{upstream_port}", "--port-file", str(port_file)]
    p = spawn(name, cmd, 0, log_dir, cpu)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if not p.alive():
            raise RuntimeError(f"{name} exited with {p.popen.returncode}: {tail(p.log)}")
        text = port_file.read_text() if port_file.exists() else ""
        if text.endswith("\n"):
            p.port = int(text.split()[1])
            return p
        time.sleep(0.05)
    p.stop()
    raise RuntimeError(f"{name} did not start within 30 s: {tail(p.log)}")


def apex_config(port: int, upstream_port: int, metrics: bool = True, level: str = "warning",
                request_log: bool = True) -> dict[str, object]:
    """The bench config: gateway key, two fake channels, a claude-* rule, a rate-limited team.

    The request log is on by default (SQLite beside the config, as in production); ``request_log=False`` turns it off."""
    g: dict[str, object] = {"listen": f"127.0.0.1:{port}", "auth": {"keys": ["bench-key"]}}
    if not request_log:
        g["request_log"] = {"type": "off"}
    return {
        "global": g,
        "logging": {"level": level},
        "metrics": {"enabled": metrics},
        "channels": [
            {"name": "fake-openai", "provider_type": "openai", "base_url": f"http://127.0.0.1:{upstream_port}/v1", "api_key": "sk-fake"},
            {"name": "fake-anthropic", "provider_type": "anthropic", "base_url": f"http://127.0.0.1:{upstream_port}", "api_key": "sk-ant-fake"},
        ],
        "routers": [
            {
                "name": "default",
                "rules": [{"match": {"model": "claude-*"}, "channels": [{"name": "fake-anthropic"}]}],
                "channels": [{"name": "fake-openai"}],
            }
        ],
        "teams": [
            {"id": "bench-team", "api_key": "team-key", "policy": {"rate_limit": {"rpm": 100_000_000, "tpm": 1_000_000_000_000}}}
        ],
    }


def apex_commands(config: Path) -> list[list[str]]:
    """Candidates in order: $APEX_BENCH_CMD ({config} placeholder, else --config appended), the CLI, the server module."""
    override = os.environ.get("APEX_BENCH_CMD")
    if override:
        parts = shlex.split(override)
        if any("{config}" in p for p in parts):
            return [[p.replace("{config}", str(config)) for p in parts]]
        return [[*parts, "--config", str(config)]]
    return [
        [sys.executable, "-m", "apex", "gateway", "start", "--config", str(config)],
        [sys.executable, "-m", "apex.server", "--config", str(config)],
    ]


def start_apex(name: str, upstream_port: int, log_dir: Path, cpu: int | None, metrics: bool = True, level: str = "warning",
               request_log: bool = True) -> Proc:
    """Write a config into log_dir and start Apex with the first command that serves /health."""
    port = free_port()
    cfg_dir = log_dir / name
    cfg_dir.mkdir(parents=True, exist_ok=True)
    cfg = cfg_dir / "config.json"
    cfg.write_text(json.dumps(apex_config(port, upstream_port, metrics, level, request_log), indent=2))
    errors = []
    for cmd in apex_commands(cfg):
        p = spawn(name, cmd, port, log_dir, cpu)
        try:
            wait_http(p, "/health", 25)
            return p
        except RuntimeError as exc:
            p.stop()
            errors.append(f"{shlex.join(cmd)}: {exc}")
    raise RuntimeError("Apex did not start:\n  " + "\n  ".join(errors))
