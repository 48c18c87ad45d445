"""Assemble the aiohttp application and run the gateway in the foreground.

``build_app`` wires routes and the Gateway's lifecycle (upstream connection pool, limiter, config
watcher). ``run_gateway`` is what ``apex gateway start`` calls: uvloop, one process,
SIGTERM/SIGINT for a graceful stop that lets in-flight requests finish (bounded by
``global.shutdown_grace_ms``), SIGHUP and file changes for hot reload, sd_notify READY.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from aiohttp import web

from apex.config.load import load_config_bytes, parse_listen, read_config_file
from apex.errors import ConfigError, StartupError
from apex.server import gemini, handlers
from apex.gateway_state import listen_failure
from apex.server.conn import ApexRunner, raise_fd_limit
from apex.server.gateway import Gateway
from apex.server.keys import FALLBACK_KEY, GATEWAY_KEY
from apex.server.logs import configure_logging, flush_logs, reopen_log_files, start_flush_timer, stop_flush_timer
from apex.server.endpoint import api_endpoint, expect_handler
from apex.server.handlers import API_PATHS
from apex.server.pipeline import proxy
from apex.types import Dialect

__all__ = ["build_app", "run_gateway", "serve"]

log = logging.getLogger("apex.server")

GC_GEN0_THRESHOLD = 20_000  # CPython's default is 700 allocations
DRAIN_POLL_S = 0.05  # how often the shutdown checks whether in-flight requests are done
STOP_MARGIN_S = 0.5  # after the grace: time for the streams' error events and aiohttp's own close


def build_app(gateway: Gateway, *, watch: bool = False) -> web.Application:
    """The aiohttp app serving ``gateway``; ``watch`` starts the config-file watcher."""
    app = web.Application(client_max_size=1 << 62)  # the pipeline enforces max_body_bytes itself
    app[GATEWAY_KEY] = gateway
    app[FALLBACK_KEY] = handlers.fallback
    r = app.router
    for path, dialect in API_PATHS.items():
        r.add_post(path, api_endpoint(dialect, proxy), expect_handler=expect_handler(dialect))
    expect = expect_handler()  # aiohttp's own answers a bad Expect in plain text (or a 500 for non-ASCII)
    r.add_get("/v1/models", api_endpoint(Dialect.OPENAI_CHAT, handlers.models), allow_head=False, expect_handler=expect)
    # Model names may hold "/" (meta-llama/Llama-3.1-8B, openai/gpt-4o): the SDKs send it unencoded.
    r.add_get("/v1/models/{model_id:.+}", api_endpoint(Dialect.OPENAI_CHAT, handlers.models), allow_head=False,
              expect_handler=expect)
    for version in ("/v1beta", "/v1"):  # Google serves the Gemini API under both
        r.add_post(f"{version}/models/{{target:[\\s\\S]+}}", api_endpoint(Dialect.GEMINI_GENERATE, gemini.generate),
                   expect_handler=expect_handler(Dialect.GEMINI_GENERATE))
    r.add_get("/v1beta/models", api_endpoint(Dialect.GEMINI_GENERATE, gemini.models), allow_head=False,
              expect_handler=expect)
    r.add_get(r"/v1beta/models/{model_id:[\s\S]+}", api_endpoint(Dialect.GEMINI_GENERATE, gemini.models), allow_head=False,
              expect_handler=expect)
    r.add_get("/health", handlers.health, expect_handler=expect)  # GET and HEAD
    r.add_get("/ready", handlers.ready, expect_handler=expect)
    r.add_route("*", r"/{tail:[\s\S]*}", handlers.fallback, expect_handler=expect)

    async def lifecycle(app: web.Application) -> AsyncIterator[None]:
        await gateway.start()
        watcher = None
        if watch and gateway.config_path is not None:
            from apex.config.watch import ConfigWatcher

            loop = asyncio.get_running_loop()
            watcher = ConfigWatcher(
                gateway.config_path,
                lambda data: gateway.reload_bytes(data, "file"),
                loop,
                initial_content=gateway.loaded_config_bytes,  # an edit made while starting is not missed
            )
            watcher.start()
        try:
            yield
        finally:
            if watcher is not None:
                watcher.stop()
            await gateway.close()

    app.cleanup_ctx.append(lifecycle)
    return app


async def serve(gateway: Gateway, *, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve until SIGTERM/SIGINT, then stop gracefully."""
    config = gateway.snapshot.config
    host, port = parse_listen(config.global_.listen)
    app = build_app(gateway, watch=True)
    # serve() waits out the grace itself (_drain); aiohttp's own wait is only the last step.
    runner = ApexRunner(app, gateway, handler_cancellation=True, access_log=None, shutdown_timeout=STOP_MARGIN_S)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=1024, reuse_address=True)
    try:
        await site.start()
    except OSError as exc:
        await runner.cleanup()
        raise StartupError(listen_failure(config.global_.listen, exc)) from exc
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, lambda: gateway.reload_from_file("SIGHUP"))
    loop.add_signal_handler(signal.SIGUSR1, reopen_log_files)  # logrotate's postrotate
    log.info("apex %s listening on %s (config %s)", gateway.version, config.global_.listen, gateway.config_path,
             extra={"fields": {"version": gateway.version, "listen": config.global_.listen,
                               "config_file": str(gateway.config_path) if gateway.config_path else None}})
    from apex import sdnotify

    _tune_gc()
    sdnotify.ready()
    if on_ready is not None:
        on_ready(config.global_.listen)
    start_flush_timer(loop)
    watchdog = sdnotify.Watchdog(loop)
    try:
        await stop.wait()
        gateway.draining = True  # /ready answers 503 from now on
        sdnotify.notify("STOPPING=1")
        delay = gateway.snapshot.config.global_.drain_delay_ms / 1000
        if delay > 0:
            # Load balancers see /ready fail and stop sending; keep serving what still arrives.
            log.info("draining: /ready is 503, still serving for %.1f s", delay)
            await asyncio.sleep(delay)
        grace = gateway.snapshot.config.global_.shutdown_grace_ms / 1000  # as of now: a reload may have changed it
        log.info("shutting down: letting in-flight requests finish (up to %.1f s)", grace)
        await site.stop()  # no new connections
        if runner.server is not None:
            runner.server.pre_shutdown()  # idle keep-alive connections close; busy ones after their request
        await _drain(gateway, grace)
    finally:
        watchdog.stop()
        stop_flush_timer()
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1):
            loop.remove_signal_handler(sig)
        await runner.cleanup()
        flush_logs()


async def _drain(gateway: Gateway, grace: float) -> None:
    """Wait up to ``grace`` for in-flight requests to finish; then stop every request still
    open, each answered in its protocol: a stream with an error event (the relay does that
    when cancelled while ``gateway.stopping``), a request still waiting on its upstream with a
    503 (the endpoint wrapper does that). They get ``STOP_MARGIN_S`` to write it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace
    # in_flight is a plain int (no event to set on every request's path): poll it.
    while gateway.in_flight and loop.time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(DRAIN_POLL_S)
    if not gateway.requests:
        return
    log.warning("shutdown deadline: stopping %d open request(s) (%d stream(s)) with an error in their protocol",
                len(gateway.requests), len(gateway.streams))
    gateway.stopping = True
    open_now = list(gateway.requests)
    for task in open_now:
        task.cancel()
    await asyncio.wait(open_now, timeout=STOP_MARGIN_S)


def _tune_gc() -> None:
    """Keep the cyclic GC off the request path's back.

    Everything loaded at start-up (modules, the Snapshot, compiled regexes) lives for the
    process's life: freeze it so full collections stop re-scanning it, and collect the
    young generation less often (the request path makes few reference cycles). Measured
    with bench/: GC was ~10-20 % of Apex's CPU per request before this.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, 20, 50)


def run_gateway(config_path: Path, *, on_ready: Callable[[str], None] | None = None) -> int:
    """Run the gateway in the foreground; raise ConfigError for an invalid initial config."""
    data = read_config_file(config_path)
    config = load_config_bytes(data)
    try:
        configure_logging(config.logging)
    except ValueError as exc:  # a NUL in the path
        raise ConfigError(f"cannot open log file {config.logging.file!r}: {exc}", path="logging.file") from exc
    except OSError as exc:
        raise ConfigError(
            f"cannot open log file {config.logging.file}: {exc.strerror}; make it writable for this user, "
            f"or remove logging.file to log to stderr",
            path="logging.file",
        ) from exc
    soft, _ = raise_fd_limit()
    log.debug("open-files limit: %d", soft)
    # abspath, not resolve(): the watcher follows a symlinked config (Kubernetes ..data swaps) itself.
    gateway = Gateway(config, Path(os.path.abspath(config_path)))
    import uvloop

    gateway.loaded_config_bytes = data
    uvloop.run(serve(gateway, on_ready=on_ready))
    return 0
