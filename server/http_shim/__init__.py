"""OpenAI-compatible (and later Anthropic-compatible) REST onto the core ``Gateway``."""

from server.http_shim.app import HttpMetrics, Route, ShimApp, create_app

__all__ = ["HttpMetrics", "Route", "ShimApp", "create_app"]
