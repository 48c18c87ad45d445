"""Guard tests: the dependency direction holds and every module imports on its own."""

from __future__ import annotations

import pkgutil
import subprocess
import sys

import pytest

import apex

ALL_MODULES = sorted(m.name for m in pkgutil.walk_packages(apex.__path__, "apex.") if not m.name.endswith("__main__"))

# Pure modules: no sockets, no aiohttp, no prometheus (style.md, dependency direction).
PURE = [
    "apex.errors", "apex.types", "apex.sse", "apex.glob", "apex.tokens", "apex.passthrough",
    "apex.config.model", "apex.config.load", "apex.auth", "apex.ratelimit",
    "apex.routing.match", "apex.routing.balance", "apex.routing.policy", "apex.routing.health", "apex.routing.router",
    *[m for m in ALL_MODULES if m.startswith(("apex.translate.", "apex.wire."))],
]


def _imported_after(module: str) -> set[str]:
    code = f"import sys, {module}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    return set(out.stdout.split())


def test_pure_modules_do_not_import_aiohttp_or_prometheus() -> None:
    """Translation, routing, auth, rate limiting and SSE never pull in aiohttp or prometheus_client."""
    code = "import sys\n" + "".join(f"import {m}\n" for m in PURE) + "print('aiohttp' in sys.modules, 'prometheus_client' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split() == ["False", "False"]


@pytest.mark.parametrize("module", ALL_MODULES)
def test_module_imports_alone(module: str) -> None:
    """Each module imports in a fresh interpreter (no import cycles, no import-order dependence)."""
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True, timeout=60, capture_output=True)


def test_cli_help_does_not_import_server() -> None:
    """`apex --help` stays fast: it loads neither aiohttp nor the server."""
    code = "import sys\nsys.argv = ['apex', '--help']\nfrom apex.cli import main\ntry:\n    main()\nexcept SystemExit:\n    pass\nprint('aiohttp' in sys.modules, 'apex.server' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split()[-2:] == ["False", "False"]


def test_only_the_server_imports_aiohttp() -> None:
    """aiohttp (server side) lives in apex.server only: the Snapshot, providers and the
    upstream client load without it, so `apex config validate` and `route explain` stay light."""
    outside = [m for m in ALL_MODULES if not m.startswith(("apex.server", "apex.cli"))]
    code = "import sys\n" + "".join(f"import {m}\n" for m in outside) + "print('aiohttp' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.split() == ["False"]
