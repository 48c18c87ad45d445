"""The container image: built from the repository's Dockerfile and run with a real engine.

Needs podman (Debian's package; ``.ci/install-deps`` installs it) and, because no image
registry is reachable here, a Debian base image made locally with ``mmdebstrap`` and
``podman import`` (cached by the engine after the first run). Skipped with the reason when
either is missing or the engine cannot run containers on this machine.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BASE_IMAGE = os.environ.get("APEX_TEST_CONTAINER_BASE", "localhost/apex-test-base:bookworm")
IMAGE = "localhost/apex-gateway:test"
HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")


def engine_args() -> list[str]:
    """podman and the options this kind of machine needs: runc (crun refuses hybrid cgroups here)."""
    podman = shutil.which("podman")
    if podman is None:
        pytest.skip("no container engine: install podman (Debian package) to build and run the image")
    runc = shutil.which("runc") or ("/usr/sbin/runc" if Path("/usr/sbin/runc").exists() else None)
    return [podman, *(["--runtime", runc] if runc else [])]


# Without CAP_SYS_RESOURCE the engine cannot raise limits to its defaults; lower ones always work.
ULIMITS = ["--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"]


def run(args: list[str], timeout: float, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(args[:4])}... exited {r.returncode}:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


def ensure_base(engine: list[str], tmp: Path) -> None:
    if run([*engine, "image", "exists", BASE_IMAGE], 60, check=False).returncode == 0:
        return
    if shutil.which("mmdebstrap") is None:
        pytest.skip(f"no base image {BASE_IMAGE} and no mmdebstrap to make one (no registry is reachable)")
    tar = tmp / "base.tar"
    run(["mmdebstrap", "--variant=minbase", "--include=python3,python3-venv,ca-certificates",
         "--dpkgopt=path-exclude=/usr/share/{doc,man,info,locale}/*", "bookworm", str(tar)], 900)
    run([*engine, "import", "--change", 'CMD ["/bin/sh"]', str(tar), BASE_IMAGE], 300)


@pytest.fixture(scope="module")
def image(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[str]]:
    engine = engine_args()
    probe = run([*engine, "info"], 60, check=False)
    if probe.returncode != 0:
        pytest.skip(f"podman cannot run here: {probe.stderr.strip()[:200]}")
    ensure_base(engine, tmp_path_factory.mktemp("base"))
    build = [*engine, "build", "--network=host", *ULIMITS, "--format", "docker",
             "--build-arg", f"BASE={BASE_IMAGE}", "-t", IMAGE]
    if HOST_CA.exists():  # a TLS-intercepting proxy on the way to PyPI: trust what the host trusts
        build += ["--build-arg", "PIP_CERT=/etc/ssl/host-ca.crt", "-v", f"{HOST_CA}:/etc/ssl/host-ca.crt:ro"]
    run([*build, str(REPO)], 900)
    yield engine


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def http_json(url: str, body: dict[str, object] | None = None, key: str | None = None) -> tuple[int, object]:
    headers = {"Content-Type": "application/json"} | ({"Authorization": f"Bearer {key}"} if key else {})
    req = urllib.request.Request(url, data=json.dumps(body).encode() if body else None, headers=headers)
    with urllib.request.urlopen(req, timeout=5) as r:
        return r.status, json.loads(r.read())


def test_image_serves_the_demo(image: list[str]) -> None:
    """The image runs as non-root, read-only, serves the demo, answers /health and its HEALTHCHECK."""
    engine = image
    port = free_port()
    name = f"apex-test-{os.getpid()}"
    run([*engine, "run", "-d", "--rm", "--name", name, "--network=host", "--read-only", "--tmpfs", "/var/lib/apex:rw,mode=1777", *ULIMITS,
         "-e", f"APEX_LISTEN=127.0.0.1:{port}", IMAGE, "--demo"], 120)
    try:
        deadline = time.monotonic() + 30
        status, health = 0, None
        while status == 0:
            try:
                status, health = http_json(f"http://127.0.0.1:{port}/health")
            except OSError:
                assert time.monotonic() < deadline, run([*engine, "logs", name], 30, check=False).stdout
                time.sleep(0.2)
        assert status == 200 and isinstance(health, dict) and health["status"] == "healthy"
        status, answer = http_json(f"http://127.0.0.1:{port}/v1/chat/completions",
                                   {"model": "demo-1", "messages": [{"role": "user", "content": "hi"}]},
                                   key="apex-demo-key")
        assert status == 200 and isinstance(answer, dict) and answer["choices"][0]["message"]["content"]
        assert run([*engine, "exec", name, "id", "-u"], 30).stdout.strip() != "0"
        assert run([*engine, "healthcheck", "run", name], 60, check=False).returncode == 0
        no_gcc = run([*engine, "exec", name, "sh", "-c", "command -v gcc cc || echo none"], 30).stdout.strip()
        assert no_gcc == "none"
    finally:
        run([*engine, "stop", "-t", "10", name], 60, check=False)
    size = json.loads(run([*engine, "image", "inspect", IMAGE], 60).stdout)[0]["Size"]
    base = json.loads(run([*engine, "image", "inspect", BASE_IMAGE], 60).stdout)[0]["Size"]
    print(f"image {size / 1e6:.0f} MB, of which Apex and its dependencies {(size - base) / 1e6:.0f} MB")
    assert size - base < 120e6  # what Apex adds on top of the base
