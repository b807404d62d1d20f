"""When to try a deployment again: capped exponential backoff with full jitter, or the upstream's
own Retry-After (openai-python ``_base_client.py`` style, house style 5)."""

from __future__ import annotations

import random
from collections.abc import Callable

from server.config import RetryConfig
from server.core.errors import GatewayError


class RetryPolicy:
    """Delays between tries of one deployment."""

    def __init__(
        self, config: RetryConfig | None = None, *, rng: Callable[[], float] = random.random
    ) -> None:
        cfg = config or RetryConfig()
        self.max_attempts = cfg.max_attempts_per_deployment
        self.initial_delay = cfg.initial_delay
        self.max_delay = cfg.max_delay
        self.max_retry_after = cfg.max_retry_after
        self.rate_limit_cooldown = cfg.rate_limit_cooldown
        self.max_rounds = cfg.max_rounds
        self._rng = rng

    def backoff(self, retry: int) -> float:
        """Full jitter (AWS architecture blog): uniform in [0, min(cap, base * 2**(retry-1)))."""
        ceiling = min(self.max_delay, self.initial_delay * (2.0 ** max(retry - 1, 0)))
        return self._rng() * ceiling

    def delay(self, error: GatewayError, retry: int) -> float | None:
        """Seconds to wait before retry number `retry` (1-based) of the same deployment; None
        when the upstream asked for a longer pause than we are willing to wait here."""
        retry_after = error.retry_after
        if retry_after is not None:
            if retry_after > self.max_retry_after:
                return None
            return max(retry_after, 0.0)
        return self.backoff(retry)
