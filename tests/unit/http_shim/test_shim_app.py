"""The route table, /v1/models, /healthz, /metrics hook, lifespan and unknown routes."""

from __future__ import annotations

from typing import Any

import pytest

from server.config import Config, DeploymentConfig, RouteConfig
from server.http_shim import Route, ShimApp, create_app
from server.http_shim.asgi import HttpRequest
from tests.unit.http_shim.support import (
    MASTER,
    AsgiClient,
    ScriptedProvider,
    build_gateway,
)


class RecordingMetrics:
    """A metrics hook that keeps what it was told."""

    def __init__(self) -> None:
        self.observed: list[tuple[str, str, int]] = []

    def observe_http(self, method: str, route: str, status: int, seconds: float) -> None:
        assert seconds >= 0
        self.observed.append((method, route, status))

    def render(self) -> tuple[bytes, str]:
        return b"requests_total 1\n", "text/plain; version=0.0.4"


async def test_models_lists_routes_and_deployments_in_openai_shape() -> None:
    config = Config(
        deployments=[DeploymentConfig(provider="script", model="m1")],
        routes=[RouteConfig(name="fast", deployments=["script/m1"])],
    )
    client = AsgiClient(create_app(build_gateway(ScriptedProvider("script"), config=config)))
    r = await client.request("GET", "/v1/models")
    assert r.status == 200
    assert r.json() == {
        "object": "list",
        "data": [
            {"id": "fast", "object": "model", "created": 0, "owned_by": "switchboard"},
            {"id": "script/m1", "object": "model", "created": 0, "owned_by": "script"},
        ],
    }


async def test_models_needs_a_key(client: AsgiClient) -> None:
    r = await client.request("GET", "/v1/models", key=None)
    assert r.status == 401 and r.json()["error"]["code"] == "invalid_api_key"


async def test_paths_without_v1_prefix_work(client: AsgiClient) -> None:
    assert (await client.request("GET", "/models", key=MASTER)).status == 200


async def test_healthz_needs_no_key(client: AsgiClient) -> None:
    r = await client.request("GET", "/healthz", key=None)
    assert r.status == 200 and r.json() == {"status": "ok"}
    assert r.headers["x-request-id"]


async def test_healthz_reports_degraded_with_the_problems_and_stays_200() -> None:
    problems: list[str] = []
    gateway = build_gateway(ScriptedProvider("script"))
    client = AsgiClient(create_app(gateway, problems=lambda: list(problems)))
    assert (await client.request("GET", "/healthz", key=None)).json() == {"status": "ok"}
    problems.append("limits: the limit store (Redis) is unreachable since 2.0 s")
    r = await client.request("GET", "/healthz", key=None)
    assert r.status == 200
    assert r.json() == {"status": "degraded", "problems": problems}


async def test_unknown_path_and_wrong_method(client: AsgiClient) -> None:
    r = await client.request("POST", "/v1/completions", body={})
    assert r.status == 404
    assert r.json()["error"] == {
        "message": "Invalid URL (POST /v1/completions)",
        "type": "invalid_request_error",
        "param": None,
        "code": "unknown_url",
    }
    r = await client.request("GET", "/v1/chat/completions")
    assert r.status == 405 and r.headers["allow"] == "POST"


async def test_head_is_answered_by_the_get_route(client: AsgiClient) -> None:
    r = await client.request("HEAD", "/healthz", key=None)
    assert r.status == 200 and r.headers["x-request-id"]
    r = await client.request("HEAD", "/v1/chat/completions")
    assert r.status == 405 and r.headers["allow"] == "POST"
    r = await client.request("DELETE", "/healthz", key=None)
    assert r.status == 405 and r.headers["allow"] == "GET, HEAD"


async def test_metrics_hook_sees_every_request_and_serves_metrics() -> None:
    metrics = RecordingMetrics()
    client = AsgiClient(create_app(build_gateway(ScriptedProvider()), metrics=metrics))
    await client.request("GET", "/healthz")
    await client.chat({"model": "script/x"}, key=None)
    await client.request("GET", "/nope/12345")
    r = await client.request("GET", "/metrics", key=None)
    assert r.status == 200 and r.body == b"requests_total 1\n"
    assert r.headers["content-type"] == "text/plain; version=0.0.4"
    assert metrics.observed == [
        ("GET", "/healthz", 200),
        ("POST", "/v1/chat/completions", 401),
        # Raw unknown paths are never a label (unbounded cardinality).
        ("GET", "unmatched", 404),
        ("GET", "/metrics", 200),
    ]


async def test_no_metrics_route_without_a_hook(client: AsgiClient) -> None:
    assert (await client.request("GET", "/metrics")).status == 404


async def test_extra_routes_join_the_table() -> None:
    async def hello(req: HttpRequest) -> int:
        await req.respond_json(200, b'{"hello":true}')
        return 200

    app = create_app(build_gateway(), extra_routes=[Route("GET", "/v1/hello", hello)])
    assert ("GET", "/v1/hello") in app.routes
    assert ("POST", "/v1/messages") in app.routes
    r = await AsgiClient(app).request("GET", "/v1/hello")
    assert r.json() == {"hello": True}


def test_duplicate_routes_are_refused() -> None:
    async def h(req: HttpRequest) -> int:
        return 200

    with pytest.raises(ValueError, match="duplicate route"):
        ShimApp([Route("GET", "/x", h), Route("GET", "/x", h)])


async def test_lifespan_is_acknowledged(client: AsgiClient) -> None:
    incoming = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await client.app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)
    assert [m["type"] for m in sent] == ["lifespan.startup.complete", "lifespan.shutdown.complete"]


async def test_body_over_the_limit_is_413(client: AsgiClient) -> None:
    r = await client.chat(b"x", headers={"content-length": str(65 * 1024 * 1024)})
    assert r.status == 413 and r.json()["error"]["code"] == "request_too_large"
