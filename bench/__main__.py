"""`python -m bench`: Apex's latency and throughput bench, side by side with a naive proxy.

    python -m bench                 full run (~4 min): report in bench/results/
    python -m bench --quick         CI regression check (< 2 min); exit 1 on a regression
    python -m bench serve           start fake upstream + naive + Apex, print ports, wait (for profiling)
    python -m bench load --port P   open-loop load against a running target; prints a JSON summary
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def _run(args: argparse.Namespace) -> int:
    from bench import driver

    targets = {"direct", "naive"} if args.no_apex else {"direct", "naive", "apex"}
    return driver.main(args.quick, Path(args.out), targets, rounds=args.rounds)


def _serve(args: argparse.Namespace) -> int:
    import tempfile

    from bench import procs

    tmp = Path(tempfile.mkdtemp(prefix="apex-bench-serve-"))
    cores = procs.cpus()
    load_cpu, proxy_cpu = (cores[0], cores[-1]) if len(cores) > 1 else (None, None)
    started: list[procs.Proc] = []
    try:
        exe = procs.build_fake(procs.BENCH_DIR / "build")
        fake = procs.start_fake(exe, tmp, load_cpu, args.chunks, args.gap_us)
        started.append(fake)
        naive = procs.start_naive("naive", fake.port, tmp, proxy_cpu)
        started.append(naive)
        apex = procs.start_apex("apex", fake.port, tmp, proxy_cpu, level=args.log_level)
        started.append(apex)
        info = {p.name: {"port": p.port, "pid": p.pid} for p in started}
        info["logs"] = str(tmp)  # type: ignore[assignment]  # one string among the process entries
        print(json.dumps(info), flush=True)
        print(f"serving for {args.seconds:g} s (Ctrl-C stops)", file=sys.stderr, flush=True)
        time.sleep(args.seconds)
    except KeyboardInterrupt:
        pass
    finally:
        for p in reversed(started):
            p.stop()
    return 0


def _load(args: argparse.Namespace) -> int:
    import uvloop

    from bench.openloop import build_request, chat_body, run_open_loop, summarize

    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    path = "/v1/messages" if args.anthropic else "/v1/chat/completions"
    payload = build_request("127.0.0.1", args.port, path, chat_body(args.model, args.stream, args.anthropic), args.key, args.anthropic)

    async def go() -> dict[str, object]:
        return summarize(await run_open_loop("127.0.0.1", args.port, payload, args.rate, args.duration, stream=args.stream))

    print(json.dumps(uvloop.run(go()), default=str))
    return 0


def _exit_on_sigterm() -> None:
    """SIGTERM (CI timeouts, `kill`) unwinds like Ctrl-C, so every started process is stopped."""
    import signal

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)


def main() -> int:
    _exit_on_sigterm()
    ap = argparse.ArgumentParser(prog="python -m bench", description="Apex latency/throughput bench.")
    ap.add_argument("--quick", action="store_true", help="CI regression check, under 2 minutes")
    ap.add_argument("--no-apex", action="store_true", help="measure only direct and the naive proxy")
    ap.add_argument("--rounds", type=int, default=None,
                    help="rounds per rate (full run: 1 by default; the medians over rounds are reported)")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results"), help="report directory")
    sub = ap.add_subparsers(dest="cmd")
    sv = sub.add_parser("serve", help="start fake upstream, naive proxy and Apex; print ports and PIDs")
    sv.add_argument("--seconds", type=float, default=300)
    sv.add_argument("--chunks", type=int, default=20)
    sv.add_argument("--gap-us", type=int, default=2000)
    sv.add_argument("--log-level", default="warning")
    ld = sub.add_parser("load", help="open-loop load against 127.0.0.1:PORT")
    ld.add_argument("--port", type=int, required=True)
    ld.add_argument("--rate", type=float, default=200)
    ld.add_argument("--duration", type=float, default=10)
    ld.add_argument("--stream", action="store_true")
    ld.add_argument("--anthropic", action="store_true", help="POST /v1/messages in Anthropic shape")
    ld.add_argument("--model", default="gpt-4o-mini")
    ld.add_argument("--key", default="bench-key")
    ld.add_argument("--cpu", type=int, default=None, help="pin the client to this CPU")
    args = ap.parse_args()
    if args.cmd == "serve":
        return _serve(args)
    if args.cmd == "load":
        return _load(args)
    return _run(args)


if __name__ == "__main__":
    sys.exit(main())
