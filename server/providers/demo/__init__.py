"""The ``demo`` provider: a local, deterministic stand-in model for trying Switchboard offline."""

from server.providers.demo.provider import MODELS, DemoProvider

__all__ = ["MODELS", "DemoProvider"]
