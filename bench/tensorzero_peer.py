"""TensorZero's Rust gateway as a bench peer: `python -m bench.tensorzero_peer --upstream URL --port-file F`.

The `tensorzero` wheel embeds its Rust gateway; `tensorzero._start_http_gateway` (what
`tensorzero.patch_openai_client` uses) serves its OpenAI-compatible API,
`POST /openai/v1/chat/completions`, on an ephemeral 127.0.0.1 port from inside this process
(tokio threads in the same PID, so /proc CPU accounting covers it). The config routes model
`tensorzero::model_name::fake` to the bench's fake upstream as an OpenAI-compatible provider,
with observability (ClickHouse) off and logs at warning: the same footing as Apex (metrics
in-process, access log off at warning) and the naive proxy. Writes `PORT <n>` to the port
file once serving, then runs until SIGTERM.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
from pathlib import Path
from urllib.parse import urlsplit

MODEL = "tensorzero::model_name::fake"
PATH = "/openai/v1/chat/completions"

_CONFIG = """\
[gateway]
observability.enabled = false

[models.fake]
routing = ["fake"]

[models.fake.providers.fake]
type = "openai"
model_name = "gpt-4o-mini"
api_base = "{upstream}/v1/"
api_key_location = "none"
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--upstream", required=True, help="the fake upstream, http://127.0.0.1:PORT")
    ap.add_argument("--port-file", required=True)
    args = ap.parse_args()
    os.environ.setdefault("RUST_LOG", "warn")
    import tensorzero  # imported late: RUST_LOG must be set before the gateway starts

    config = Path(args.port_file).with_suffix(".toml")
    config.write_text(_CONFIG.format(upstream=args.upstream.rstrip("/")))
    gateway = tensorzero._start_http_gateway(  # noqa: SLF001  # the public patch_openai_client wraps exactly this
        config_file=str(config), clickhouse_url=None, postgres_url=None, valkey_url=None, async_setup=False
    )
    port = urlsplit(gateway.base_url).port
    Path(args.port_file).write_text(f"PORT {port}\n")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    gateway.close()


if __name__ == "__main__":
    main()
