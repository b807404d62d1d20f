"""Metrics exposition and the one-line-per-request JSON log, through the Gateway."""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import Iterator

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from server.config import CircuitConfig, PriceConfig, RetryConfig
from server.core.context import Principal
from server.core.errors import UpstreamBadRequestError, UpstreamServerError
from server.core.service import Gateway
from server.observability.logging import REQUEST_LOGGER, JsonFormatter, configure_logging
from server.observability.metrics import Metrics
from server.observability.requests import RequestObserver
from server.resilience.executor import Executor
from server.routing.router import Router
from server.store.embedded.health import LocalHealth
from tests.unit.resilience.scripted import ScriptedProvider, Step, catalog, config, ctx, request

SECRET_PROMPT = "my secret prompt text"
PROVIDER_KEY = "sk-provider-key-abcdef123456"


class _Keys:
    async def lookup(self, secret: str) -> Principal | None:
        return None


@pytest.fixture
def log_lines() -> Iterator[io.StringIO]:
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(REQUEST_LOGGER)
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    try:
        yield buffer
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def gateway(*providers: ScriptedProvider) -> tuple[Gateway, Metrics]:
    cfg = config(
        *(p.name for p in providers),
        retry=RetryConfig(max_attempts_per_deployment=1),
        circuit=CircuitConfig(consecutive_failures=1),
    )
    cfg = cfg.model_copy(
        update={
            "deployments": [
                d.model_copy(update={"price": PriceConfig(input=1.0, output=2.0)})
                for d in cfg.deployments
            ]
        }
    )
    health = LocalHealth(cfg.circuit)
    metrics = Metrics()
    metrics.watch_health(health)
    cat = catalog(cfg, *providers, keys=(PROVIDER_KEY,))
    gw = Gateway(
        Router(cat, health=health, explore=0.0),
        Executor(cfg, health=health, metrics=metrics),
        _Keys(),
        "master",
        default_timeout=10.0,
        sinks=[RequestObserver(metrics)],
    )
    return gw, metrics


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    body, content_type = metrics.render()
    assert content_type.startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_chat_records_metrics_and_one_log_line(log_lines: io.StringIO) -> None:
    a = ScriptedProvider("a", Step(error=UpstreamServerError("boom", provider="a", status=500)))
    b = ScriptedProvider("b", Step(text="three word answer"))
    gw, metrics = gateway(a, b)
    response = await gw.chat(request(model="r", text=SECRET_PROMPT), ctx())
    assert response.route.deployment == "b/m"

    s = samples(metrics)
    ok = (("deployment", "b/m"), ("outcome", "success"), ("route", "r"))
    assert s[("switchboard_requests_total", ok)] == 1
    assert (
        s[
            (
                "switchboard_upstream_errors_total",
                (("deployment", "a/m"), ("reason", "UPSTREAM_SERVER_ERROR")),
            )
        ]
        == 1
    )
    assert s[("switchboard_fallbacks_total", (("route", "r"),))] == 1
    tokens = (("deployment", "b/m"), ("kind", "output"), ("route", "r"))
    assert s[("switchboard_tokens_total", tokens)] == 3
    assert s[
        ("switchboard_cost_usd_total", (("deployment", "b/m"), ("route", "r")))
    ] == pytest.approx((3 * 1.0 + 3 * 2.0) / 1e6)
    assert (
        s[("switchboard_request_duration_seconds_count", (("route", "r"), ("stream", "false")))]
        == 1
    )
    assert s[("switchboard_circuit_state", (("name", "a/m"),))] == 2  # opened after 1 failure

    lines = log_lines.getvalue().splitlines()
    assert len(lines) == 1
    assert SECRET_PROMPT not in lines[0] and PROVIDER_KEY not in lines[0]
    entry = orjson.loads(lines[0])
    assert entry["request_id"] == "req-1" and entry["route"] == "r"
    assert entry["outcome"] == "success" and entry["status"] == 200
    assert entry["deployment"] == "b/m" and entry["attempts"] == 2 and entry["fallbacks"] == 1
    assert [t["outcome"] for t in entry["tried"]] == ["server_error", "success"]
    assert entry["input_tokens"] == 3 and entry["output_tokens"] == 3
    assert entry["cost_usd"] == pytest.approx(9e-6)
    assert entry["latency_ms"] > 0 and entry["level"] == "info"


async def test_stream_and_failures_are_recorded_too(log_lines: io.StringIO) -> None:
    a = ScriptedProvider(
        "a",
        Step(text="one two"),
        Step(error=UpstreamBadRequestError("bad temperature", status=400)),
    )
    gw, metrics = gateway(a)
    frames = [f async for f in gw.stream_chat(request(model="r"), ctx())]
    assert frames[0].HasField("start") and frames[-1].HasField("end")
    with pytest.raises(UpstreamBadRequestError):
        await gw.chat(request(model="r"), ctx())
    with pytest.raises(Exception, match="does not exist"):
        await gw.chat(request(model="missing"), ctx())

    s = samples(metrics)
    assert (
        s[
            (
                "switchboard_time_to_first_token_seconds_count",
                (("deployment", "a/m"), ("route", "r")),
            )
        ]
        == 1
    )
    failed = (("deployment", ""), ("outcome", "UPSTREAM_INVALID_REQUEST"), ("route", "r"))
    assert s[("switchboard_requests_total", failed)] == 1
    entries = [orjson.loads(line) for line in log_lines.getvalue().splitlines()]
    assert [e["outcome"] for e in entries] == [
        "success",
        "UPSTREAM_INVALID_REQUEST",
        "MODEL_NOT_FOUND",
    ]
    assert entries[0]["stream"] is True and entries[0]["ttft_ms"] > 0
    assert entries[1]["status"] == 400 and entries[1]["error"] == "bad temperature"
    assert entries[2]["status"] == 404 and entries[2]["route"] == ""


async def test_a_stream_closed_after_its_end_frame_is_a_success(log_lines: io.StringIO) -> None:
    gw, metrics = gateway(ScriptedProvider("a", Step(text="one two")))
    stream = gw.stream_chat(request(model="r"), ctx())
    async for frame in stream:
        if frame.HasField("end"):
            break
    await stream.aclose()
    entry = orjson.loads(log_lines.getvalue().splitlines()[-1])
    assert entry["outcome"] == "success" and entry["output_tokens"] == 2
    ok = (("deployment", "a/m"), ("outcome", "success"), ("route", "r"))
    assert samples(metrics)[("switchboard_requests_total", ok)] == 1


async def test_a_client_that_goes_away_is_logged_as_cancelled(log_lines: io.StringIO) -> None:
    a = ScriptedProvider("a", Step(text="one two three"))
    gw, _ = gateway(a)
    stream = gw.stream_chat(request(model="r"), ctx())
    await stream.__anext__()
    await stream.aclose()
    entry = orjson.loads(log_lines.getvalue().splitlines()[-1])
    assert entry["outcome"] == "cancelled" and entry["status"] == 499


def test_http_metrics_hook() -> None:
    metrics = Metrics()
    metrics.observe_http("POST", "/v1/chat/completions", 200, 0.01)
    s = samples(metrics)
    labels = (("method", "POST"), ("route", "/v1/chat/completions"), ("status", "200"))
    assert s[("switchboard_http_requests_total", labels)] == 1


async def test_configured_logging_writes_json_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    from server.observability import logging as obs_logging

    monkeypatch.setattr(obs_logging, "_sink", None)
    monkeypatch.setattr(obs_logging, "_sink_enabled", True)
    buffer = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        configure_logging("info", stream=buffer)
        logging.getLogger("switchboard.test").info("hello %s", "there")
        gw, _ = gateway(ScriptedProvider("a"))
        await gw.chat(request(model="r", text=SECRET_PROMPT), ctx())
        assert len(buffer.getvalue().splitlines()) == 1  # request lines wait for the iteration
        await asyncio.sleep(0)  # its end, where they are written together
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])
    first, second = (orjson.loads(line) for line in buffer.getvalue().splitlines())
    assert first["msg"] == "hello there" and first["logger"] == "switchboard.test"
    assert second["logger"] == REQUEST_LOGGER and second["outcome"] == "success"
    assert second["ts"].endswith("Z") and second["level"] == "info"
    assert SECRET_PROMPT not in buffer.getvalue() and PROVIDER_KEY not in buffer.getvalue()
