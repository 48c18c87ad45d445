-- wrk script: POST a realistic ~1 KB OpenAI chat request with a bearer key.
-- Environment: BENCH_KEY (default bench-key), BENCH_MODEL (default gpt-4o-mini),
-- BENCH_PATH (default /v1/chat/completions), BENCH_STREAM=1 for "stream": true.
-- done() prints one machine-readable line (WRKJSON {...}); wrk itself reports non-2xx answers.
local key = os.getenv("BENCH_KEY") or "bench-key"
local model = os.getenv("BENCH_MODEL") or "gpt-4o-mini"
local stream = os.getenv("BENCH_STREAM") == "1"

wrk.method = "POST"
wrk.path = os.getenv("BENCH_PATH") or "/v1/chat/completions"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer " .. key
wrk.body = '{"model":"' .. model .. '","messages":['
  .. '{"role":"system","content":"You are a concise assistant for an internal engineering team. Answer in plain English, cite the relevant file when you can, and say so when you are unsure instead of guessing."},'
  .. '{"role":"user","content":"We run an aiohttp service behind nginx. Requests that take longer than sixty seconds are cut off with a 504 even though the upstream keeps working. Which timeouts should we look at first?"},'
  .. '{"role":"assistant","content":"Check nginx proxy_read_timeout and proxy_send_timeout, then the aiohttp ClientTimeout of any client session the service uses, and finally any load balancer idle timeout in front of nginx."},'
  .. '{"role":"user","content":"proxy_read_timeout is already 300s. The load balancer idle timeout is 60s. Is that the culprit, and how do we keep a slow streaming answer alive through it without raising the limit for everyone?"}'
  .. '],"temperature":0.2,"max_tokens":256' .. (stream and ',"stream":true,"stream_options":{"include_usage":true}' or '') .. '}'

done = function(summary, latency, requests)
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"errors_status":%d,"errors_connect":%d,"errors_read":%d,"errors_timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"body_bytes":%d}\n',
    summary.requests, summary.duration, summary.errors.status, summary.errors.connect, summary.errors.read,
    summary.errors.timeout, latency:percentile(50), latency:percentile(90), latency:percentile(99), #wrk.body))
end
