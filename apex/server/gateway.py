"""The Gateway: the live Snapshot plus the process-wide resources the request path uses.

It owns the one upstream connection pool, the rate limiter, and the swap of Snapshots on
reload (file watcher, SIGHUP, or a direct call). A reload validates first; an invalid
config leaves the running one in place, is logged with its key path, and is counted.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Final
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from apex import __version__, sdnotify
from apex.auth import TeamPolicy
from apex.budget import (
    NANO,
    BudgetGrant,
    BudgetLedger,
    BudgetPolicy,
    MemoryBudgetStore,
    build_ledger,
)
from apex.config.load import is_loopback, load_config_bytes, parse_listen
from apex.config.model import Config
from apex.cost import PriceBook
from apex.requestlog import RequestLog, Row, build_request_log, capture
from apex.errors import ApexError, BudgetExceeded, ConfigError, ErrorKind
from apex.metrics import NONE, Metrics
from apex.upstream.credentials import CredentialKeeper, CredentialSlot
from apex.upstream.channel import CompiledChannel
from apex.upstream.http import UpstreamPool
from apex.ratelimit import (
    Decision,
    Limits,
    MemoryStore,
    RateLimiter,
    build_limiter,
    rate_limited,
)
from apex.ratelimit import (
    headers as ratelimit_headers,
)
from apex.routing.health import ChannelState
from apex.server.exchange import Exchange
from apex.server.logs import (
    ACCESS_LOGGER,
    access_fields,
    configure_logging,
    write_access_line,
)
from apex.snapshot import Snapshot, build_snapshot
from apex.types import Dialect, Usage


if TYPE_CHECKING:
    from apex.tracing import Tracer  # only imported at run time when tracing is on

__all__ = ["Gateway", "RateGrant"]

log = logging.getLogger("apex.gateway")
access_log = logging.getLogger(ACCESS_LOGGER)
_INFO = logging.INFO
CREDENTIALS_START_WAIT_S: Final = 10.0  # at start-up, how long first credential fetches may take
# Output tokens reserved against a budget when the request sets no max_tokens.
BUDGET_DEFAULT_OUTPUT_TOKENS: Final = 1024
BUDGET_HEADER: Final = "x-apex-budget-remaining-usd"


class RateGrant:
    """What an admitted request was charged, to settle against real usage afterwards."""

    __slots__ = ("team_id", "limits", "charged")

    def __init__(self, team_id: str, limits: Limits, charged: int) -> None:
        self.team_id = team_id
        self.limits = limits
        self.charged = charged


class Gateway:
    """Everything a running Apex process shares between requests."""

    def __init__(
        self,
        config: Config,
        config_path: Path | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.config_path = config_path
        self.version = __version__
        # The address served until a restart (a reload cannot move the socket).
        self.listen = config.global_.listen
        # What else the process set up once and keeps until a restart: a reload that changes
        # one of them is told so (compared with what runs, not with the previous file).
        g = config.global_
        self._fixed_at_start: dict[str, object] = {"listen": g.listen, "rate_limit_store": g.rate_limit_store,
                                                   "request_log": g.request_log, "tracing": g.tracing}
        # Routing time and chance: the clock health, Retry-After holds and backoff are
        # measured on, the sleep that waits a backoff, and the generator behind weighted
        # random and jitter. Injected so tests are exact rather than statistical or timed.
        self.clock = clock
        self.sleep = sleep
        self.started_monotonic = time.monotonic()
        # The one upstream pool (needs no loop to exist): every Snapshot's channels send through it.
        self._upstream = UpstreamPool()
        self.snapshot: Snapshot = build_snapshot(config, None, self._on_health_change, rng=rng, pool=self._upstream)
        self._credentials = CredentialKeeper()
        self._started = False
        self.limiter: RateLimiter | None = None
        self.budgets: BudgetLedger | None = None
        self.request_log: RequestLog | None = None
        self._capture: int | None = None  # capture_max_bytes when capture_content is on
        self._budget_policies: dict[str, BudgetPolicy] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._limits: dict[str, Limits] = {}
        self.metrics = Metrics(self.version, self._rule_patterns)  # before _refresh_limits, which prunes it
        self.prices = PriceBook(config)
        self._refresh_limits()
        self.loaded_config_bytes: bytes | None = None  # the file content the live config came from
        self.in_flight = 0
        self.draining = False  # set when shutdown begins: /ready answers 503 from then on
        self.streams: set[asyncio.Task[object]] = set()  # tasks relaying a committed stream
        self.requests: set[asyncio.Task[None]] = set()  # every API request's task, stream or not
        self.stopping = False  # the shutdown deadline passed: open streams end with an error event
        self.tracer: Tracer | None = None  # global.tracing; None keeps tracing off the request path
        self.metrics.in_flight.set_function(lambda: self.in_flight)
        self._metrics_snapshot: Snapshot | None = None  # the Snapshot the metric bindings belong to
        self._metrics_on = False
        self._bind_metrics(self.snapshot)

    # --- lifecycle ----------------------------------------------------------------

    async def start(self) -> None:
        """Create the rate limiter and the credential refreshers (inside the loop)."""
        self._started = True
        # The routing clock also drives the local buckets and budget periods (tests inject fake time).
        self.limiter = build_limiter(self.snapshot.config.global_.rate_limit_store, self.clock,
                                     on_store_error=self.metrics.record_store_error)
        fresh = self._credentials.bind(_credential_slots(self.snapshot), self._upstream)
        if fresh:  # the first requests should find credentials; a failure is logged, not fatal
            await asyncio.gather(*(r.wait_first(CREDENTIALS_START_WAIT_S) for r in fresh))
        self.budgets = build_ledger(self.snapshot.config.global_.rate_limit_store, self.clock)
        self.budgets.on_remaining = self._budget_remaining
        rl = self.snapshot.config.global_.request_log
        self.request_log = build_request_log(rl, self.config_path, self.metrics.request_log_dropped.inc)
        if self.request_log is not None:
            try:
                await self.request_log.start()
            except OSError as exc:  # serve anyway: the log is a record, not a dependency
                log.error("request log disabled: %s", exc)
                self.request_log = None
            self._capture = rl.capture_max_bytes if rl.capture_content else None
        tracing = self.snapshot.config.global_.tracing
        if tracing is not None:
            from apex.tracing import build_tracer  # imported only when tracing is on

            self.tracer = build_tracer(tracing)

    async def close(self) -> None:
        await self._credentials.close()
        await self._upstream.close()
        if self.limiter is not None:
            await self.limiter.close()
        if self._tasks:  # budget and rate-limit settlements still in flight
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self.budgets is not None:
            await self.budgets.close()
        if self.request_log is not None:
            await self.request_log.close()
        if self.tracer is not None:
            if not await asyncio.to_thread(self.tracer.shutdown):  # flushes queued spans, for at most SHUTDOWN_FLUSH_S
                log.warning("tracing: spans not yet exported were dropped at shutdown (the collector did not take them)")
            self.tracer = None

    @property
    def upstream(self) -> UpstreamPool:
        return self._upstream

    def uptime_seconds(self) -> float:
        return time.monotonic() - self.started_monotonic

    def unready_reasons(self) -> list[str]:
        """Why this instance should not get new requests now (empty: ready)."""
        if self.draining:
            return ["draining: the gateway is shutting down"]
        snap = self.snapshot
        now = time.monotonic()
        reasons = []
        for router in snap.config.routers:
            names = {ref.name for ref in router.channels}
            for rule in router.rules:
                names.update(ref.name for ref in rule.channels)
                names.update(rule.fallback)
            if names and all(snap.health.state_of(n, now) is ChannelState.COOLING for n in names):
                reasons.append(f"router {router.name!r}: every channel is cooling down ({', '.join(sorted(names))})")
            elif names and all(not snap.channels[n].credentials_ok for n in names):
                reasons.append(f"router {router.name!r}: no channel has valid cloud credentials ({', '.join(sorted(names))})")
        return reasons

    # --- reload -------------------------------------------------------------------

    def reload_bytes(self, data: bytes, source: str = "file") -> bool:
        """Validate ``data`` and swap it in; on error keep the old config. True on success.

        systemd (>= 253 tracks it) hears RELOADING=1 before and READY=1 after, either way.
        """
        sdnotify.reloading()
        try:
            return self._reload_bytes(data, source)
        finally:
            sdnotify.ready()

    def _reload_bytes(self, data: bytes, source: str) -> bool:
        try:
            config = load_config_bytes(data)
            self._check_served_address(config)
            snapshot = build_snapshot(config, self.snapshot, self._on_health_change, pool=self._upstream)
        except ConfigError as exc:
            log.error("config reload rejected (%s): %s", source, exc.message, extra={"fields": {"config_path": exc.path}})
            self.on_reload(False)
            return False
        except (ValueError, RecursionError) as exc:  # a check that let one through: still a rejected file, counted
            log.error("config reload rejected (%s): %s: %s", source, type(exc).__name__, exc)
            self.on_reload(False)
            return False
        old = self.snapshot.config
        if config.logging != old.logging:
            try:
                configure_logging(config.logging)  # first: a log file that cannot be opened rejects the reload
            except (OSError, ValueError) as err:  # ValueError: a NUL in the path
                log.error("config reload rejected (%s): cannot open logging.file %r: %s", source,
                          config.logging.file, getattr(err, "strerror", None) or err,
                          extra={"fields": {"config_path": "logging.file"}})
                self.on_reload(False)
                return False
        for key, running in self._fixed_at_start.items():
            new, previous = getattr(config.global_, key), getattr(old.global_, key)
            if new != previous and new != running:  # back to what runs: nothing to apply
                log.warning("global.%s changed: restart Apex to apply it", key)
        self.snapshot = snapshot
        if self._started:  # before start() there is no loop to bind in: start() binds
            self._bind_credentials(snapshot)
        self.prices = PriceBook(config)
        self._refresh_limits()
        self.loaded_config_bytes = data
        log.info("config reloaded (%s): %d channels, %d routers, %d teams", source,
                 len(config.channels), len(config.routers), len(config.teams))
        self.on_reload(True)
        return True

    def record_answer(self, request_id: str, client_rid: str | None, dialect: Dialect, status: int,
                      kind: ErrorKind) -> None:
        """Count and log an answer Apex made outside an endpoint (a 404, a refused Expect, a
        request the parser refused) like every answered request, once it is out."""
        ex = Exchange(request_id, client_rid, dialect)
        ex.status = status
        ex.error_kind = kind
        asyncio.get_running_loop().call_soon(self.finish, ex)

    def _check_served_address(self, config: Config) -> None:
        """Anonymous auth against the address actually served: the loader checks the file's
        ``listen``, which a reload does not apply, so an edit to a loopback ``listen`` plus
        ``anonymous`` opened a public socket to key-less requests."""
        if config.global_.auth.anonymous and not is_loopback(parse_listen(self.listen)[0]):
            raise ConfigError(f"anonymous auth is only allowed on a loopback listen address, and this gateway "
                              f"listens on {self.listen} until it restarts", path="global.auth.anonymous")

    def _bind_credentials(self, snapshot: Snapshot) -> None:
        """Give the new Snapshot's cloud channels their credentials: the running refresher when
        unchanged, else a new one fetching in the background (requests meanwhile get a
        retryable error naming the reason)."""
        self._credentials.bind(_credential_slots(snapshot), self.upstream)

    def credential_problems(self) -> dict[str, str]:
        """Channels whose cloud credentials are failing, with the reason (for /health)."""
        out = {}
        for name, ch in self.snapshot.channels.items():
            if ch.cloud is not None and ch.cloud.reason is not None:
                out[name] = ch.cloud.reason
        return out

    def reload_from_file(self, source: str = "signal") -> bool:
        if self.config_path is None:
            return False
        try:
            data = self.config_path.read_bytes()
        except OSError as exc:
            log.error("config reload failed: cannot read %s: %s", self.config_path, exc.strerror)
            self.on_reload(False)
            return False
        return self.reload_bytes(data, source)

    def on_reload(self, ok: bool) -> None:
        """Hook for metrics: a reload succeeded or failed."""
        self.metrics.record_reload(ok)

    def _refresh_limits(self) -> None:
        self._limits = {tid: Limits.from_config(t.rate_limit) for tid, t in self.snapshot.keys.teams.items()}
        store = self.limiter.store if self.limiter is not None else None
        if isinstance(store, MemoryStore):
            store.forget(set(self._limits))  # buckets of teams a reload removed are freed
        self._budget_policies = {
            t.id: BudgetPolicy.from_config(t.policy.budget) for t in self.snapshot.config.teams if t.policy.budget is not None
        }
        spend = self.budgets.store if self.budgets is not None else None
        if isinstance(spend, MemoryBudgetStore):
            spend.forget(set(self._budget_policies))
        self.metrics.keep_budgets(self._budget_policies.keys())

    def _budget_remaining(self, team_id: str, usd: float) -> None:
        """Export a team's remaining budget, unless a reload removed the team or its budget
        while its request ran (its series, gone, would come back for good)."""
        if team_id in self._budget_policies:
            self.metrics.set_budget_remaining(team_id, usd)

    # --- rate limits --------------------------------------------------------------

    async def acquire_rate_limit(self, team: TeamPolicy, estimate: int, ex: Exchange) -> RateGrant | None:
        """Charge a team's buckets up front; raise RateLimited (429) when it does not fit."""
        limits = self._limits.get(team.id)
        if limits is None or limits.unlimited or self.limiter is None:
            return None
        decision: Decision = await self.limiter.acquire(team.id, limits, estimate)
        if ex.ratelimit_headers is None:
            ex.ratelimit_headers = ratelimit_headers(decision)
        else:  # the budget header is there already
            ex.ratelimit_headers.extend(ratelimit_headers(decision))
        if not decision.allowed:
            self.on_rate_limited(ex)
            raise rate_limited(decision)
        return RateGrant(team.id, limits, estimate)

    async def settle_rate_limit(self, grant: RateGrant, usage: Usage | None) -> None:
        """Correct the request's token charge to its usage. With a shared store (Redis) that
        is a round trip the answer need not wait for: it runs as a task, which a stop waits
        for like the budget settlements; in-process buckets settle at once."""
        limiter = self.limiter
        if usage is None or limiter is None:
            return
        settling = limiter.settle(grant.team_id, grant.limits, grant.charged, usage.total_tokens)
        if limiter.remote:
            self._track(asyncio.get_running_loop().create_task(settling, name=f"rate-settle-{grant.team_id}"))
        else:
            await settling

    # --- budgets ------------------------------------------------------------------

    def has_budget(self, team_id: str) -> bool:
        return team_id in self._budget_policies

    async def reserve_budget(self, team_id: str, ex: Exchange, channel: CompiledChannel, model: str, max_out: int) -> None:
        """Reserve the request's estimated cost against its team's budget (priced on the first
        channel it will try); raise BudgetExceeded (429). Settled in ``finish``."""
        policy = self._budget_policies.get(team_id)
        if policy is None or self.budgets is None:
            return
        price = self.prices.price(channel.name, channel.map_model(model), also=model)
        estimate = 0.0
        if price is not None:
            estimate = ex.prompt_estimate() * price.input + (max_out or BUDGET_DEFAULT_OUTPUT_TOKENS) * price.output
        try:
            grant, remaining = await self.budgets.reserve(team_id, policy, estimate)
        except BudgetExceeded as exc:  # the 429 carries the figure too
            remaining = exc.remaining_usd
            if remaining is not None:
                self._budget_header(ex, remaining)
            raise
        ex.budget_grant = grant
        if remaining is not None:
            self._budget_header(ex, remaining)

    @staticmethod
    def _budget_header(ex: Exchange, remaining: float) -> None:
        header = (BUDGET_HEADER, f"{remaining:.6f}")
        if ex.ratelimit_headers is None:
            ex.ratelimit_headers = [header]
        else:
            ex.ratelimit_headers.append(header)

    def _settle_budget(self, grant: BudgetGrant, cost: float) -> None:
        ledger = self.budgets
        if ledger is None:
            return
        self._track(asyncio.get_running_loop().create_task(ledger.settle(grant, cost), name=f"budget-settle-{grant.team_id}"))

    @property
    def pending_settlements(self) -> int:
        """Budget and rate-limit settlements still running after their answers."""
        return len(self._tasks)

    def _track(self, task: asyncio.Task[None]) -> None:
        """A settlement running after its answer: kept until done, waited for at a stop."""
        self._tasks.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed", task.get_name(), exc_info=task.exception())

    def on_rate_limited(self, ex: Exchange) -> None:
        """Hook for metrics: a request was refused by its team's rate limit."""
        if self._metrics_current():
            m = self.metrics
            m.record_rate_limited(ex.router or NONE, m.models.label(ex.model, ex.router, ex.rule, ex.routed), ex.team or NONE)

    # --- observations ---------------------------------------------------------------

    def _on_health_change(self, channel: str, old: ChannelState, new: ChannelState) -> None:
        log.warning("channel %s: %s -> %s", channel, old.value, new.value,
                    extra={"fields": {"channel": channel, "from_state": old.value, "state": new.value}})
        self.metrics.record_channel_state(channel, new.value)

    def record_fallback(self, ex: Exchange, from_channel: str, to_channel: str) -> None:
        """Log a move to another channel; ``finish`` counts it (from ``ex.tried``)."""
        log.info("falling back to another channel", extra={"fields": {
            "request_id": ex.request_id, "from_channel": from_channel, "to_channel": to_channel}})

    def log_attempt(self, ex: Exchange, channel: str, err: ApexError | None, elapsed_ms: float) -> None:
        """One upstream attempt ended: its channel, outcome and time (failures at warning,
        successes at debug; the access line sums the attempts up)."""
        if err is None:
            if log.isEnabledFor(logging.DEBUG):
                log.debug("upstream attempt succeeded", extra={"fields": {
                    "request_id": ex.request_id, "attempt": ex.attempts, "channel": channel,
                    "elapsed_ms": round(elapsed_ms, 1)}})
            return
        log.warning("upstream attempt failed: %s", err.message, extra={"fields": {
            "request_id": ex.request_id, "attempt": ex.attempts, "channel": channel,
            "elapsed_ms": round(elapsed_ms, 1), "error_type": err.kind, "retryable": err.retryable}})
        if err.retryable and self._metrics_current():
            self.metrics.record_attempt_failure(ex.router or NONE, channel, err.kind)

    def log_stream_failure(self, ex: Exchange, channel: str, elapsed_ms: float) -> None:
        """A committed stream's upstream failed (broke, idled out, sent an error event): a failed
        attempt like any other for the log and ``apex_attempt_failures_total``, though not retried."""
        kind = ex.stream_error or "api_error"
        log.warning("upstream stream failed after it started", extra={"fields": {
            "request_id": ex.request_id, "attempt": ex.attempts, "channel": channel,
            "elapsed_ms": round(elapsed_ms, 1), "error_type": kind, "retryable": False}})
        ex.attempt_errors.append(kind)
        if self._metrics_current():
            self.metrics.record_attempt_failure(ex.router or NONE, channel, kind)

    def in_flight_changed(self, ex: Exchange, delta: int) -> None:
        """A request started (+1) or ended (-1). A plain int the gauge reads at scrape time:
        no metric call on the request path (kept even with metrics off, so it stays balanced)."""
        self.in_flight += delta

    def finish(self, ex: Exchange) -> None:
        """The request is over: count it, then write the access line (each only when enabled)."""
        latency = ex.elapsed_ms()
        overhead = ex.overhead_ms
        if overhead is None or ex.committed:
            # A stream's head went out before its end: its whole overhead is known only now.
            overhead = max(0.0, latency - ex.upstream_ms - ex.waiting_ms)
        usage = ex.usage
        if (usage is None or ex.stream) and (200 <= ex.status < 300 or ex.committed):
            usage = ex.usage = ex.usage_so_far()  # estimated, or topped up: a stream the client left counts too
        cost = None
        if usage is not None:
            cost = ex.cost_usd = self.prices.cost(ex.channel, ex.upstream_model, usage, also=ex.model)
        grant = ex.budget_grant
        if grant is not None:
            # No usage (nothing served): refund; usage but no price: the reservation stands.
            self._settle_budget(grant, cost if cost is not None else (0.0 if usage is None else grant.reserved / NANO))
        if self._metrics_current():
            m = self.metrics
            model = m.models.label(ex.model, ex.router, ex.rule, ex.routed, admit=ex.status < 400)
            series = m.series(ex.router or NONE, model, ex.team or NONE, ex.channel or NONE)
            series.record(ex.status, ex.error_type(), ex.upstream_ms, ex.ttft_ms, overhead, latency)
            tried = ex.tried
            if len(tried) > 1:
                # Counted here, with the request's own model label: counted at the move, a glob
                # rule's new name went under the pattern there and under its name here.
                for before, after in zip(tried, tried[1:], strict=False):
                    if before != after:
                        m.record_fallback(ex.router or NONE, model, before, after)
            if usage is not None:
                series.add_tokens(usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens, usage.estimated)
                series.add_cost(cost)
        if ex.trace is not None and self.tracer is not None:
            self.tracer.end_request(ex, ex.trace, ex.error_type())
        if access_log.isEnabledFor(_INFO):
            write_access_line(access_log, access_fields(ex, latency, overhead, usage, cost))
        if self.request_log is not None:
            self.request_log.submit(_log_row(ex, latency, overhead, usage, cost, self._capture))

    # --- metrics wiring -------------------------------------------------------------

    def metrics_response(self) -> web.Response:
        """The Prometheus exposition of this gateway's registry (served at ``metrics.path``)."""
        snap = self.snapshot
        now = self.clock()
        snap.health.poll(now)  # transitions due only to time passing (cooling -> half-open)
        self.metrics.set_channel_states(
            {name: snap.health.state_of(name, now) is ChannelState.UP and ch.credentials_ok
             for name, ch in snap.channels.items()}
        )
        egress_channels = [name for name, ch in snap.channels.items() if ch.egress is not None]
        self.metrics.set_upstream_connections(self._upstream.connection_counts(), egress_channels)
        body, content_type = self.metrics.render()
        return web.Response(body=body, headers={"Content-Type": content_type})

    def _metrics_current(self) -> bool:
        """Rebind the metric children when the Snapshot changed; True when metrics are enabled."""
        snap = self.snapshot
        if snap is not self._metrics_snapshot:
            self._bind_metrics(snap)
        return self._metrics_on

    def _bind_metrics(self, snap: Snapshot) -> None:
        # Label children are cached per Snapshot: a reload may rename routers, rules and channels.
        self.metrics.new_generation()
        self._metrics_snapshot = snap
        self._metrics_on = snap.config.metrics.enabled

    def _rule_patterns(self, router: str, rule: str) -> tuple[str, ...] | None:
        compiled = self.snapshot.routers.get(router)
        if compiled is None:
            return None
        for r in compiled.rules:
            if r.label == rule:
                return r.patterns
        return None


def _credential_slots(snap: Snapshot) -> list[CredentialSlot]:
    return [ch.cloud.credentials for ch in snap.channels.values() if ch.cloud is not None and ch.cloud.credentials is not None]


def _log_row(ex: Exchange, latency: float, overhead: float, usage: Usage | None, cost: float | None,
             capture_cap: int | None) -> Row:
    """The request log's row for a finished request (columns in ``apex.requestlog.COLUMNS`` order)."""
    request_body = response_body = None
    if capture_cap is not None:
        request_body = capture(ex.request_body, capture_cap)
        response_body = capture(ex.response_body, capture_cap)
    u = usage
    return (
        time.time() - latency / 1000.0, ex.request_id, ex.dialect.value, ex.team, ex.key_fingerprint, ex.router,
        ex.rule, ex.model, ex.upstream_model, ex.channel, ",".join(ex.tried), ex.attempts, ex.status,
        ex.error_type(), ex.stream, latency, ex.ttft_ms, overhead, ex.upstream_ms,
        u.prompt_tokens if u else None, u.completion_tokens if u else None, u.cached_tokens if u else None,
        u.cache_write_tokens if u else None, u.reasoning_tokens if u else None, u.estimated if u else None,
        cost, request_body, response_body,
    )
