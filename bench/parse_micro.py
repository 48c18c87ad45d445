"""Microbenchmark of the upstream client's response parsing, with no sockets.

    python -m bench.parse_micro

Feeds prebuilt response bytes to one pooled connection object the way the event loop does
(``data_received``) and reads the reply: a ~640 B OpenAI JSON answer in one read, and a
chunked 100-event SSE body with one event per read. Prints CPU microseconds per answer (best of
five runs): the parse cost alone, the figure the issue's 3.4/9.4 and 18/156 us came from.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from apex.upstream.http import UpstreamPool, _Connection, _Slots, _Target

_JSON_BODY = (
    b'{"id":"chatcmpl-bench","object":"chat.completion","created":1700000000,"model":"gpt-4o-mini",'
    b'"choices":[{"index":0,"message":{"role":"assistant","content":"' + b"word " * 60 + b'"},'
    b'"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":60,"total_tokens":72}}'
)
JSON_ANSWER = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nDate: Sun, 06 Dec 2026 18:00:00 GMT\r\n"
    b"x-request-id: req_123\r\nopenai-processing-ms: 120\r\nContent-Length: %d\r\n\r\n" % len(_JSON_BODY)
) + _JSON_BODY
_EVENT = b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","choices":[{"index":0,"delta":{"content":"word "},"finish_reason":null}]}\n\n'
SSE_HEAD = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
SSE_READS = [b"%x\r\n%s\r\n" % (len(_EVENT), _EVENT) for _ in range(100)]
SSE_READS[-1] += b"0\r\n\r\n"


class _Transport:
    def write(self, data: bytes) -> None: ...
    def writelines(self, data: Any) -> None: ...
    def close(self) -> None: ...
    def is_closing(self) -> bool: return False
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def get_extra_info(self, name: str, default: Any = None) -> Any: return default


def _one(conn: Any, pool: Any, reads: list[bytes]) -> int:
    reply = conn.start(b"", b"")
    for data in reads:
        conn.data_received(data)
    size = sum(len(p) for p in reply._parts)
    reply._parts.clear()
    reply._size = 0
    conn.slots.idle.clear()
    return size


def measure(reads: list[bytes], n: int) -> float:
    loop = asyncio.new_event_loop()
    try:
        pool = UpstreamPool()
        origin = _Target("http://127.0.0.1:9/v1/chat/completions").origin
        conn = _Connection(pool, _Slots(None, 1), origin, loop)
        conn.connection_made(_Transport())  # type: ignore[arg-type]
        best = float("inf")
        for _ in range(5):
            t0 = time.process_time()
            for _ in range(n):
                _one(conn, pool, reads)
            best = min(best, (time.process_time() - t0) / n)
        return best * 1e6
    finally:
        loop.close()


def main() -> None:
    print(f"JSON answer ({len(JSON_ANSWER)} B, one read): {measure([JSON_ANSWER], 20000):.2f} us")
    print(f"SSE body (100 events, one read each): {measure([SSE_HEAD, *SSE_READS], 1000):.1f} us")


if __name__ == "__main__":
    main()
