"""The ``_seconds`` histograms beside the contract's ``_ms`` ones, and promtool on a real scrape."""

from __future__ import annotations

import asyncio
import shutil

import pytest

from tests.conftest import StartApex, ant, basic_config, oai
from tests.integration.fakes import FakeUpstream
from tests.integration.test_metrics import parse, scrape

MSG: list[dict[str, str]] = [{"role": "user", "content": "hi"}]


async def test_seconds_histograms_mirror_ms_ones(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """Each _seconds family has the _ms family's counts, bounds / 1000 and sum / 1000."""
    inst = await start_apex(basic_config(upstream))
    await oai(inst).chat.completions.create(model="gpt-4o", messages=MSG)  # type: ignore[arg-type]
    async with ant(inst).messages.stream(model="claude-3-5", max_tokens=10, messages=MSG) as s:  # type: ignore[arg-type]
        await s.get_final_message()
    status, text = await scrape(inst)
    assert status == 200
    samples = parse(text)
    for base in ("apex_upstream_latency", "apex_ttft", "apex_overhead"):
        ms, sec = samples[f"{base}_ms_bucket"], samples[f"{base}_seconds_bucket"]
        assert len(ms) == len(sec) and len(ms) > 0
        for labels, value in ms.items():
            le = dict(labels)["le"]
            other = dict(labels) | {"le": le if le == "+Inf" else repr(round(float(le) / 1000, 9))}
            key = tuple(sorted((k, str(float(v)) if k == "le" and v != "+Inf" else v) for k, v in other.items()))
            match = {tuple(sorted((k, str(float(v)) if k == "le" and v != "+Inf" else v) for k, v in lab)): val
                     for lab, val in sec.items()}
            assert match[key] == value
        for labels, total in samples[f"{base}_ms_sum"].items():
            assert samples[f"{base}_seconds_sum"][labels] == pytest.approx(total / 1000)
    durations = samples["apex_request_duration_seconds_count"]
    assert sum(durations.values()) == 2
    assert all(v < 10 for v in samples["apex_request_duration_seconds_sum"].values())


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed (Debian: prometheus package)")
async def test_promtool_check_metrics_on_a_real_scrape(upstream: FakeUpstream, start_apex: StartApex) -> None:
    """promtool complains about nothing but the _ms names the contract keeps."""
    inst = await start_apex(basic_config(upstream))
    await oai(inst).chat.completions.create(model="gpt-4o", messages=MSG)  # type: ignore[arg-type]
    _, text = await scrape(inst)
    proc = await asyncio.create_subprocess_exec("promtool", "check", "metrics", stdin=asyncio.subprocess.PIPE,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT)
    out, _ = await asyncio.wait_for(proc.communicate(text.encode()), 30)
    problems = [line for line in out.decode().splitlines() if line.strip()]
    assert any("_ms" in p for p in problems)  # promtool did read the scrape: it names the kept _ms names
    unexpected = [p for p in problems if "_ms" not in p.split(" ")[0] and "use base unit" not in p]
    assert not unexpected, problems
