"""Render a bench report (the dict the driver builds) as Markdown tables."""

from __future__ import annotations

from typing import Any


def _f(v: Any, digits: int = 2) -> str:
    if isinstance(v, bool):
        return "yes" if v else "**no**"
    if isinstance(v, float):
        if v != v:  # NaN
            return "-"
        return f"{v:.{digits}f}"
    if v is None:
        return "-"
    return str(v)


def _table(head: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "|".join("---:" if i else "---" for i in range(len(head))) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def render_markdown(rep: dict[str, Any]) -> str:
    m = rep.get("meta", {})
    lines = [f"# Apex bench report ({m.get('mode', '?')} mode)", ""]
    lines += [
        f"- When: {m.get('started')} to {m.get('finished')}, {m.get('elapsed_s')} s; commit `{m.get('commit')}`; "
        f"Python {m.get('python')}, kernel {m.get('kernel')}",
        f"- CPUs {m.get('cpus')}: proxy under test pinned to CPU {m.get('proxy_cpu')}; fake upstream (C, epoll), wrk and "
        f"the open-loop client on CPU {m.get('load_cpu')}; loopback only",
        f"- Load average at start {_fmt_load(m.get('loadavg_start'))}, at end {_fmt_load(m.get('loadavg_end'))} "
        "(other work on the machine shows up as noise)",
        f"- Apex started with: `{m.get('apex_cmd') or 'not started'}`; config: gateway key, metrics on, logging at warning, "
        "two fake channels, a `claude-*` rule, a team with RPM/TPM limits",
        f"- Request body {m.get('request_body_bytes')} B; stream: {m.get('stream', {}).get('chunks')} chunks "
        f"{m.get('stream', {}).get('gap_ms')} ms apart",
        "- Latency columns are milliseconds of service time (bytes written to last byte read); `sched p99` counts from the "
        "scheduled send time instead. `added` = target minus `direct` at the same rate, same round. CPU ms/req is the "
        "target process's utime+stime over the run divided by requests sent.",
        "",
    ]
    if rep.get("error"):
        lines += [f"**Run error:** {rep['error']}", ""]
    chk = rep.get("check")
    if chk:
        lines += ["## Regression check", ""]
        verdict = "PASSED" if chk["passed"] else "FAILED: " + "; ".join(chk["failures"])
        lines += [
            f"**{verdict}**",
            "",
            f"- At {chk['rate']} req/s, median over rounds: Apex adds {_f(chk.get('apex_added_p50'), 3)} ms p50 "
            f"(limit {chk['abs_limit_ms']} ms); naive adds {_f(chk['naive_added_p50'], 3)} ms; "
            f"ratio {_f(chk.get('apex_ratio'))} (margin {chk['ratio_margin']}x)",
            f"- Noise: an identical second naive proxy measured like Apex gives ratio {_f(chk.get('noise_twin_ratio'))}; "
            f"naive's added p50 spread over rounds {_f(chk.get('noise_naive_spread_ms'), 3)} ms "
            f"(rounds: naive {_list(chk['naive_added_p50_rounds'])}, twin {_list(chk['twin_added_p50_rounds'])}, "
            f"apex {_list(chk['apex_added_p50_rounds'])})",
            f"- Under wrk: Apex's CPU per request is {_f(chk.get('wrk_cpu_ratio'))}x naive's "
            f"(margin {chk.get('cpu_ratio_margin', '-')}x; lowest of each target's runs, ms/req: "
            f"naive {_list(chk.get('wrk_cpu_runs', {}).get('naive', []))}, apex {_list(chk.get('wrk_cpu_runs', {}).get('apex', []))}); "
            f"its throughput {_f(chk.get('info_wrk_rps_ratio'))}x naive's (not gated)",
            "",
        ]
    for sc in rep.get("scenarios", {}).values():
        lines += [f"## {sc['title']}", ""]
        if sc.get("note"):
            lines += [sc["note"], ""]
        if sc.get("saturation"):
            lines += ["Saturation (wrk, closed loop, 1 thread, 32 connections):", ""]
            rows = []
            for label, s in sc["saturation"].items():
                if "rps" not in s:
                    rows.append([label, "-", "-", "-", "-", "-", "-", str(s)[:80]])
                    continue
                rows.append([label, f"{s['rps']:.0f}", _f(s["p50"]), _f(s["p99"]), _f(s["cpu_ms_per_req"], 3),
                             _f(s["cpu_util"]), _f(s.get("rss_mb"), 1), str(s["errors"])])
            lines += _table(["target", "req/s", "p50", "p99", "CPU ms/req", "CPU util", "RSS MiB", "errors"], rows) + [""]
        lines += ["Open loop (fixed rate):", ""]
        if sc.get("stream"):
            head = ["rate", "target", "n", "err", "TTFC p50", "added TTFC p50", "total p50", "added total p50", "total p99",
                    "added total p99", "reads with data p50", "one by one", "CPU ms/req"]
            rows = []
            for rate, data in sc["rates"].items():
                for label, r in data["merged"].items():
                    rows.append([rate, label, str(r["n"]), str(r["errors"]), _f(r.get("ttfc_p50"), 3), _f(r.get("added_ttfc_p50"), 3),
                                 _f(r.get("p50")), _f(r.get("added_p50"), 3), _f(r.get("p99")), _f(r.get("added_p99"), 3),
                                 f"{_f(r.get('arrivals_p50'), 0)} (min {r.get('arrivals_min', '-')})", _f(r.get("one_by_one")),
                                 _f(r.get("cpu_ms_per_req"), 3)])
        else:
            head = ["rate", "target", "n", "err", "p50", "p90", "p99", "sched p99", "added p50", "added p90", "added p99",
                    "CPU ms/req", "RSS MiB"]
            rows = []
            for rate, data in sc["rates"].items():
                for label, r in data["merged"].items():
                    rows.append([rate, label, str(r["n"]), str(r["errors"]), _f(r.get("p50"), 3), _f(r.get("p90"), 3),
                                 _f(r.get("p99"), 3), _f(r.get("sched_p99"), 3), _f(r.get("added_p50"), 3),
                                 _f(r.get("added_p90"), 3), _f(r.get("added_p99"), 3), _f(r.get("cpu_ms_per_req"), 3),
                                 _f(r.get("rss_mb"), 1)])
        lines += _table(head, rows) + [""]
        errs = [f"{rate} req/s {label}: {r['first_error']}" for rate, d in sc["rates"].items() for label, r in d["merged"].items() if r.get("first_error")]
        if errs:
            lines += ["Errors: " + "; ".join(errs), ""]
    return "\n".join(lines)


def _fmt_load(v: Any) -> str:
    return "/".join(f"{x:.2f}" for x in v) if isinstance(v, (list, tuple)) else "-"


def _list(v: list[float]) -> str:
    return ", ".join(f"{x:.3f}" for x in v) if v else "-"
