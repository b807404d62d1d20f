"""The catalog: which deployments exist, what they cost, and what each model name resolves to.

A model name is either a configured route (an alias over several deployments) or
`provider/model`, which addresses one deployment directly on any enabled provider.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from switchboard.v1 import chat_pb2

from server.config import Config
from server.core.errors import ModelNotFoundError
from server.providers.base import Provider, UpstreamCall
from server.routing.cost import Price
from server.routing.price_table import (
    DEFAULT_MAX_OUTPUT_TOKENS,
    DEFAULT_PRICES,
    lookup_max_output,
    lookup_price,
)

__all__ = ["Catalog", "Deployment", "Price", "ProviderEntryLike", "Route"]

# Direct `provider/model` names come from callers; remember at most this many.
MAX_DIRECT_DEPLOYMENTS = 4096


class ProviderEntryLike(Protocol):
    """What the catalog needs from ``server.providers.registry``: the adapter and its key pool."""

    @property
    def provider(self) -> Provider: ...

    @property
    def api_keys(self) -> Sequence[str]: ...


@dataclass(eq=False, slots=True)
class Deployment:
    """A provider plus one upstream model, with its price, key pool and limits."""

    id: str
    provider: Provider
    model: str
    api_keys: tuple[str, ...] = field(repr=False, default=("",))
    price: Price | None = None
    weight: float = 1.0
    max_concurrency: int | None = None
    # Per-attempt timeout override (seconds); None uses `timeouts.attempt`.
    timeout: float | None = None
    # Most output tokens one response may hold (what a request without max_tokens reserves).
    max_output_tokens: int = DEFAULT_MAX_OUTPUT_TOKENS
    # Health-store names of the pool's keys (`<id>#<index>`): keys are never used as names.
    key_names: tuple[str, ...] = field(init=False, repr=False)
    # In-process counters: in-flight calls (for max_concurrency) and the key round-robin.
    inflight: int = field(init=False, default=0, repr=False)
    next_key: int = field(init=False, default=0, repr=False)
    # Per-key UpstreamCalls for the usual full attempt budget, built once by the executor.
    calls: tuple[UpstreamCall, ...] | None = field(init=False, default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.api_keys:
            self.api_keys = ("",)
        self.key_names = tuple(f"{self.id}#{i}" for i in range(len(self.api_keys)))

    @property
    def provider_name(self) -> str:
        return self.provider.name


@dataclass(eq=False, slots=True)
class Route:
    """A public model name and the deployments that can serve it."""

    name: str
    strategy: str
    deployments: list[Deployment]
    # True for a configured alias; False for a direct `provider/model` address.
    is_alias: bool = False
    description: str = ""


PriceLookup = Mapping[str, Price]


class Catalog:
    """Resolves model names to routes (configured aliases or direct `provider/model`)."""

    def __init__(
        self,
        providers: Mapping[str, ProviderEntryLike],
        config: Config,
        prices: PriceLookup | None = None,
    ) -> None:
        self._providers = dict(providers)
        self._prices = dict(DEFAULT_PRICES if prices is None else prices)
        self._direct = 0
        self._deployments: dict[str, Deployment] = {}
        self._routes: dict[str, Route] = {}
        # One-deployment routes for direct `provider/model` names, built once per name.
        self._single: dict[str, Route] = {}
        self._configured: list[Deployment] = []
        for dc in config.deployments:
            entry = self._providers.get(dc.provider)
            if entry is None:
                # Its provider is not enabled (no key in the environment): leave it out.
                continue
            price = (
                Price(
                    input=dc.price.input,
                    output=dc.price.output,
                    cached_input=dc.price.cached_input,
                    cache_write=dc.price.cache_write,
                )
                if dc.price
                else lookup_price(self._prices, f"{dc.provider}/{dc.model}")
            )
            d = self._deployments[dc.deployment_id] = Deployment(
                id=dc.deployment_id,
                provider=entry.provider,
                model=dc.model,
                api_keys=tuple(entry.api_keys) or ("",),
                price=price,
                weight=dc.weight,
                max_concurrency=dc.max_concurrency,
                timeout=dc.timeout,
                max_output_tokens=dc.max_output_tokens
                or _max_output(entry.provider, dc.model, f"{dc.provider}/{dc.model}"),
            )
            self._single[d.id] = Route(d.id, "ordered", [d])
            self._configured.append(d)
        for rc in config.routes:
            members = [d for d in (self._deployment(name) for name in rc.deployments) if d]
            if members:
                self._routes[rc.name] = Route(
                    rc.name, rc.strategy, members, is_alias=True, description=rc.description
                )

    def _deployment(self, deployment_id: str) -> Deployment | None:
        found = self._deployments.get(deployment_id)
        if found is not None:
            return found
        provider_name, sep, model = deployment_id.partition("/")
        entry = self._providers.get(provider_name)
        if not sep or not model or entry is None:
            return None
        created = Deployment(
            id=deployment_id,
            provider=entry.provider,
            model=model,
            api_keys=tuple(entry.api_keys) or ("",),
            price=lookup_price(self._prices, deployment_id),
            max_output_tokens=_max_output(entry.provider, model, deployment_id),
        )
        if self._direct < MAX_DIRECT_DEPLOYMENTS:
            self._direct += 1
            self._deployments[deployment_id] = created
            self._single[deployment_id] = Route(deployment_id, "ordered", [created])
        return created

    def resolve(self, model: str) -> Route:
        """The route for a model name; raises ModelNotFoundError (404) for unknown names."""
        route = self._routes.get(model) or self._single.get(model)
        if route is not None:
            return route
        deployment = self._deployment(model)
        if deployment is None:
            raise ModelNotFoundError(
                f"The model `{model}` does not exist or you do not have access to it. "
                "Use `provider/model` for an enabled provider, or a configured route name.",
                param="model",
            )
        return self._single.get(model) or Route(model, "ordered", [deployment])

    @property
    def routes(self) -> Mapping[str, Route]:
        return self._routes

    @property
    def deployments(self) -> Mapping[str, Deployment]:
        return self._deployments

    @property
    def provider_names(self) -> list[str]:
        return sorted(self._providers)

    def list_models(self) -> list[chat_pb2.Model]:
        """Routes first, then every known deployment (configured, priced or demo)."""
        out: list[chat_pb2.Model] = []
        for route in self._routes.values():
            out.append(chat_pb2.Model(id=route.name, route=True, description=route.description))
        seen: set[str] = set()
        # Configured deployments, then priced and provider-declared models; not the direct
        # names callers happened to use (their listing must not depend on traffic).
        candidates = list(self._configured)
        for deployment_id in self._prices:
            d = self._deployment(deployment_id)
            if d is not None:
                candidates.append(d)
        for entry in self._providers.values():
            declared = getattr(entry, "models", None) or getattr(entry.provider, "models", ())
            for model in declared or ():
                d = self._deployment(f"{entry.provider.name}/{model}")
                if d is not None:
                    candidates.append(d)
        for d in candidates:
            if d.id in seen:
                continue
            seen.add(d.id)
            out.append(_model_of(d))
        return out

    def describe(self, model: str) -> chat_pb2.Model:
        """One model or route by name (``GET /v1/models/{id}``); 404 for unknown names."""
        route = self._routes.get(model)
        if route is not None:
            return chat_pb2.Model(id=route.name, route=True, description=route.description)
        (deployment,) = self.resolve(model).deployments
        return _model_of(deployment)


def _max_output(provider: Provider, model: str, deployment_id: str) -> int:
    """The adapter's own limit for the model (Anthropic's table), else the shipped one."""
    of_adapter = getattr(provider, "max_output_tokens", None)
    limit = of_adapter(model) if callable(of_adapter) else None
    return limit or lookup_max_output(deployment_id) or DEFAULT_MAX_OUTPUT_TOKENS


def _model_of(d: Deployment) -> chat_pb2.Model:
    m = chat_pb2.Model(id=d.id, provider=d.provider_name, demo=d.provider.kind == "demo")
    if d.price is not None:
        m.pricing.CopyFrom(d.price.to_proto())
    return m
