"""What every run sends and configures: the request bodies and the gateway's one route."""

from __future__ import annotations

import sys

PY = sys.executable

# Content chunks per streamed answer from the fake upstream.
CHUNKS = 20

BODY = {
    "model": "mock-model",
    "messages": [
        {
            "role": "system",
            "content": "You are a helpful assistant. Answer concisely and accurately.",
        },
        {
            "role": "user",
            "content": "What is the capital of France? Please answer in one short sentence.",
        },
    ],
    "temperature": 0.2,
    "max_tokens": 64,
}
STREAM_BODY = BODY | {"stream": True, "stream_options": {"include_usage": True}}

CONFIG_YAML = """\
# Written by bench/run.py: one route so the benchmark body's model "mock-model" resolves.
routes:
  - name: mock-model
    strategy: ordered
    deployments: ["openai/mock-model"]
"""

# Suffix of the targets served by the --baseline checkout: shim@baseline, grpc@baseline.
BASELINE = "@baseline"


def client_list(client: str) -> list[str]:
    """The load generators a test runs with: the C one (wrk, h2load) when present, and Python."""
    return [client, "python"] if client != "python" else ["python"]


def direct_client(client: str, http_client: str) -> str:
    """Which client's direct calls a target's "added" latency is paired with: its own, except
    h2load's (gRPC, which direct calls cannot speak), which pairs with the HTTP client's."""
    return http_client if client == "h2load" else client
