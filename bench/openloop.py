"""Open-loop HTTP/1.1 load client: requests go out on a fixed schedule, whatever the target does.

Closed-loop tools (wrk, locust) wait for an answer before sending the next request, so a slow
target slows the load and queueing hides. Here request *i* is due at ``start + i / rate`` and
is sent then on an idle keep-alive connection, or a new one; nothing waits for earlier answers.

Each request records two latencies, both with ``time.perf_counter`` (the loop clock of uvloop
has millisecond resolution, too coarse for a sub-millisecond hop):

* ``service``: from the moment the bytes were written to the last byte of the answer;
* ``sched``: from the scheduled send time, which adds the client's own lateness (event-loop
  timers fire on a 1 ms grid, so up to ~1 ms) and any wait for a connection.

Streams also record the time to the first SSE ``data:`` bytes and how many socket reads carried
``data:`` (a proxy that buffers the stream delivers all chunks in one or two reads).

The client is a bare ``asyncio.Protocol`` rather than aiohttp's client, so that on one core it
keeps up with 1000+ req/s while adding little and steady time of its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Final

__all__ = ["CHAT_BODY", "LoadResult", "Sample", "build_request", "chat_body", "run_open_loop", "summarize"]

_SYSTEM: Final = (
    "You are a concise assistant for an internal engineering team. Answer in plain English, cite the "
    "relevant file when you can, and say so when you are unsure instead of guessing."
)
_TURNS: Final = (
    ("user", "We run an aiohttp service behind nginx. Requests that take longer than sixty seconds are cut off "
             "with a 504 even though the upstream keeps working. Which timeouts should we look at first?"),
    ("assistant", "Check nginx proxy_read_timeout and proxy_send_timeout, then the aiohttp ClientTimeout of any "
                  "client session the service uses, and finally any load balancer idle timeout in front of nginx."),
    ("user", "proxy_read_timeout is already 300s. The load balancer idle timeout is 60s. Is that the culprit, and how "
             "do we keep a slow streaming answer alive through it without raising the limit for everyone?"),
)


def chat_body(model: str, stream: bool, anthropic: bool = False) -> bytes:
    """A realistic ~1 KB chat request body (the same conversation as bench/chat.lua)."""
    import json

    msgs = [{"role": r, "content": c} for r, c in _TURNS]
    if anthropic:
        doc: dict[str, object] = {"model": model, "system": _SYSTEM, "messages": msgs, "max_tokens": 256, "temperature": 0.2}
    else:
        doc = {"model": model, "messages": [{"role": "system", "content": _SYSTEM}, *msgs], "temperature": 0.2, "max_tokens": 256}
    if stream:
        doc["stream"] = True
        if not anthropic:
            doc["stream_options"] = {"include_usage": True}
    return json.dumps(doc, separators=(",", ":")).encode()


CHAT_BODY: Final = chat_body("gpt-4o-mini", stream=False)


def build_request(host: str, port: int, path: str, body: bytes, key: str | None, anthropic: bool = False) -> bytes:
    """Serialize one POST once; every request of a run reuses the bytes."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}:{port}", "Content-Type: application/json", "Accept: */*"]
    if key:
        lines.append(f"x-api-key: {key}" if anthropic else f"Authorization: Bearer {key}")
    if anthropic:
        lines.append("anthropic-version: 2023-06-01")
    lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


@dataclass(slots=True)
class Sample:
    """One request's outcome; times are perf_counter seconds."""

    t_sched: float
    t_send: float = 0.0
    t_first: float = 0.0
    t_done: float = 0.0
    status: int = 0
    error: str = ""
    arrivals: int = 0  # socket reads that carried SSE "data:" bytes
    events: int = 0  # "data:" occurrences seen


_HEAD, _BODY_CL, _BODY_CHUNKED, _IDLE = range(4)


class _Conn(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight."""

    def __init__(self, pool: _Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.state = _IDLE
        self.sample: Sample | None = None
        self.left = 0  # body bytes left (content-length) or chunk bytes left incl. CRLF
        self.keep = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's TCPTransport is not an asyncio.Transport subclass


    def send(self, sample: Sample) -> None:
        assert self.transport is not None
        self.sample = sample
        self.state = _HEAD
        self.buf.clear()
        sample.t_send = time.perf_counter()
        self.transport.write(self.pool.payload)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter()
        s = self.sample
        if s is None:
            return
        buf = self.buf
        buf += data
        if self.state == _HEAD:
            i = buf.find(b"\r\n\r\n")
            if i < 0:
                return
            head = bytes(buf[:i]).lower()
            del buf[: i + 4]
            s.status = int(head[9:12])
            self.keep = b"connection: close" not in head
            if b"transfer-encoding: chunked" in head:
                self.state, self.left = _BODY_CHUNKED, -1
            else:
                j = head.find(b"content-length:")
                end = head.find(b"\r\n", j)
                self.left = int(head[j + 15 : end if end >= 0 else len(head)]) if j >= 0 else 0
                self.state = _BODY_CL
            body_part = bytes(buf)
        else:
            body_part = data
        if self.pool.stream and b"data:" in body_part:
            if not s.t_first:
                s.t_first = now
            s.arrivals += 1
            s.events += body_part.count(b"data:")
        if self._consume():
            s.t_done = now
            self.sample = None
            self.state = _IDLE
            self.pool.finished(self, s)

    def _consume(self) -> bool:
        """Eat body bytes from buf; True once the answer is complete."""
        buf = self.buf
        if self.state == _BODY_CL:
            take = min(self.left, len(buf))
            del buf[:take]
            self.left -= take
            return self.left == 0
        while buf:
            if self.left == -2:  # expecting the CRLF after the last chunk
                if len(buf) < 2:
                    return False
                del buf[:2]
                return True
            if self.left == -1:  # expecting a chunk-size line
                j = buf.find(b"\r\n")
                if j < 0:
                    return False
                size = int(bytes(buf[:j]).split(b";")[0], 16)
                del buf[: j + 2]
                if size == 0:
                    self.left = -2  # expecting the final CRLF
                    continue
                self.left = size + 2
            else:
                take = min(self.left, len(buf))
                del buf[:take]
                self.left -= take
                if self.left == 0:
                    self.left = -1
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.pool.lost(self)


class _Pool:
    def __init__(self, host: str, port: int, payload: bytes, stream: bool, max_conns: int) -> None:
        self.host, self.port, self.payload, self.stream = host, port, payload, stream
        self.max_conns = max_conns
        self.idle: list[_Conn] = []
        self.conns: set[_Conn] = set()
        self.opening = 0
        self.waiting: deque[Sample] = deque()
        self.done: list[Sample] = []
        self.outstanding = 0
        self.all_done = asyncio.Event()
        self.tasks: set[asyncio.Task[None]] = set()

    def submit(self, s: Sample) -> None:
        self.outstanding += 1
        self.all_done.clear()
        if self.idle:
            self.idle.pop().send(s)
        elif len(self.conns) + self.opening < self.max_conns:
            self.opening += 1
            t = asyncio.get_running_loop().create_task(self._open_and_send(s))
            self.tasks.add(t)
            t.add_done_callback(self.tasks.discard)
        else:
            self.waiting.append(s)

    async def _open_and_send(self, s: Sample) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(lambda: _Conn(self), self.host, self.port)
        except OSError as exc:
            self.opening -= 1
            s.error = f"connect: {exc.__class__.__name__}"
            self._record(s)
            return
        self.opening -= 1
        self.conns.add(conn)
        conn.send(s)

    def finished(self, conn: _Conn, s: Sample) -> None:
        self._record(s)
        if not conn.keep:
            assert conn.transport is not None
            conn.transport.close()
            return
        if self.waiting:
            conn.send(self.waiting.popleft())
        else:
            self.idle.append(conn)

    def lost(self, conn: _Conn) -> None:
        self.conns.discard(conn)
        if conn in self.idle:
            self.idle.remove(conn)
        if conn.sample is not None:
            s, conn.sample = conn.sample, None
            s.error = s.error or "connection lost"
            s.t_done = time.perf_counter()
            self._record(s)
        if self.waiting and len(self.conns) + self.opening < self.max_conns:
            self.outstanding -= 1
            self.submit(self.waiting.popleft())

    def _record(self, s: Sample) -> None:
        self.done.append(s)
        self.outstanding -= 1
        if self.outstanding == 0:
            self.all_done.set()

    def close(self) -> None:
        for c in list(self.conns):
            if c.transport is not None:
                c.transport.abort()


@dataclass(slots=True)
class LoadResult:
    rate: float
    duration: float
    samples: list[Sample] = field(default_factory=list)  # after warm-up only
    sent: int = 0
    late_sends: int = 0  # sends more than 5 ms behind schedule (client could not keep up)
    max_conns_used: int = 0


async def run_open_loop(
    host: str,
    port: int,
    payload: bytes,
    rate: float,
    duration: float,
    *,
    stream: bool = False,
    warmup: float = 0.5,
    max_conns: int = 512,
    drain_timeout: float = 30.0,
) -> LoadResult:
    """Send ``rate * (warmup + duration)`` requests on schedule; return the samples after warm-up."""
    pool = _Pool(host, port, payload, stream, max_conns)
    n = int(math.ceil(rate * (warmup + duration)))
    start = time.perf_counter() + 0.02
    late = 0
    sent_samples: list[Sample] = []
    for i in range(n):
        ts = start + i / rate
        delay = ts - time.perf_counter()
        if delay > 0.0005:
            await asyncio.sleep(delay)
        elif delay < -0.005:
            late += 1
        s = Sample(ts)
        sent_samples.append(s)
        pool.submit(s)
        if i % 64 == 63:
            await asyncio.sleep(0)  # let answers in even when behind schedule
    used = len(pool.conns)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(pool.all_done.wait(), drain_timeout)
    pool.close()
    for s in sent_samples:
        if not s.t_done:
            s.error = s.error or "timeout"
    cutoff = start + warmup
    return LoadResult(
        rate=rate,
        duration=duration,
        samples=[s for s in sent_samples if s.t_sched >= cutoff],
        sent=n,
        late_sends=late,
        max_conns_used=max(used, len(pool.conns)),
    )


def _pct(sorted_vals: list[float], q: float) -> float:
    if not sorted_vals:
        return float("nan")
    k = min(len(sorted_vals) - 1, max(0, int(round(q / 100.0 * (len(sorted_vals) - 1)))))
    return sorted_vals[k]


def summarize(res: LoadResult) -> dict[str, object]:
    """Percentiles in milliseconds; errors are non-2xx, lost and timed-out requests."""
    ok = [s for s in res.samples if not s.error and 200 <= s.status < 300]
    out: dict[str, object] = {
        "rate": res.rate,
        "n": len(res.samples),
        "ok": len(ok),
        "errors": len(res.samples) - len(ok),
        "late_sends": res.late_sends,
        "conns": res.max_conns_used,
    }
    svc = sorted((s.t_done - s.t_send) * 1e3 for s in ok)
    sch = sorted((s.t_done - s.t_sched) * 1e3 for s in ok)
    for q in (50, 90, 99):
        out[f"p{q}"] = _pct(svc, q)
        out[f"sched_p{q}"] = _pct(sch, q)
    out["max"] = svc[-1] if svc else float("nan")
    firsts = sorted((s.t_first - s.t_send) * 1e3 for s in ok if s.t_first)
    if firsts:
        for q in (50, 90, 99):
            out[f"ttfc_p{q}"] = _pct(firsts, q)
        arr = sorted(s.arrivals for s in ok)
        ev = sorted(s.events for s in ok)
        out["arrivals_p50"] = _pct([float(a) for a in arr], 50)
        out["arrivals_min"] = arr[0]
        out["events_p50"] = _pct([float(e) for e in ev], 50)
    bad = [s for s in res.samples if s.error or not 200 <= s.status < 300]
    if bad:
        out["first_error"] = bad[0].error or f"status {bad[0].status}"
    return out
