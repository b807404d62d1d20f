"""The catalog: which deployments exist, what they cost, and what each model name resolves to.

A model name is, in this order: a configured route (a name over several deployments), a
configured alias (``models:`` in the config, naming a deployment or a route), ``provider/model``
(one deployment on an enabled provider), or a bare model name (``gpt-4o-mini``, as the OpenAI
Agents SDK and others send it). A bare name resolves when exactly one enabled provider serves
it: a configured deployment of that model, a row of the price table, or a model the provider
declares (the demo's). Ambiguous and unknown names are a 404 listing the ``provider/model`` ids
that match; a name whose only servers are providers that are not enabled is a 404 naming the
variable that enables them, as is ``provider/model`` on such a provider.
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
# Matching ids listed in a 404 for an ambiguous or unserved name.
MAX_LISTED = 8


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
        *,
        disabled: Mapping[str, str] | None = None,
    ) -> None:
        self._providers = dict(providers)
        # Providers that exist but are not enabled → the variable that enables each.
        self._disabled = {k: v for k, v in (disabled or {}).items() if k not in self._providers}
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
        # Bare model name → the deployment ids that serve it (enabled ones, and those of
        # providers that are not enabled, for the 404 that says so).
        self._bare: dict[str, list[str]] = {}
        self._bare_disabled: dict[str, list[str]] = {}
        for d in self._configured:
            self._index(d.model, d.id)
        for dc in config.deployments:
            if dc.provider in self._disabled:
                self._index(dc.model, dc.deployment_id, enabled=False)
        for deployment_id in self._prices:
            provider, _, model = deployment_id.partition("/")
            if provider in self._providers:
                self._index(model, deployment_id)
            elif provider in self._disabled:
                self._index(model, deployment_id, enabled=False)
        for entry in self._providers.values():
            for model in getattr(entry.provider, "models", ()) or ():
                self._index(model, f"{entry.provider.name}/{model}")
        for alias, target in config.models.items():
            route = self._routes.get(target)
            if route is None:
                found = self._deployment(target)
                route = Route(target, "ordered", [found]) if found is not None else None
            if route is None and target.partition("/")[0] in self._disabled:
                # An alias of a provider that is not enabled: its 404 says which variable.
                self._bare_disabled[alias] = [target]
            if route is not None and alias not in self._routes:
                self._routes[alias] = Route(
                    alias,
                    route.strategy,
                    route.deployments,
                    is_alias=True,
                    description=f"alias of {target}",
                )

    def _index(self, model: str, deployment_id: str, *, enabled: bool = True) -> None:
        ids = (self._bare if enabled else self._bare_disabled).setdefault(model, [])
        if deployment_id not in ids:
            ids.append(deployment_id)

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
        if deployment is not None:
            return self._single.get(model) or Route(model, "ordered", [deployment])
        provider, sep, rest = model.partition("/")
        if sep and rest and provider in self._disabled:
            raise self._not_enabled(model, [model])
        return self._bare_route(model)

    def _bare_route(self, model: str) -> Route:
        """A bare model name served by exactly one enabled provider (module docstring)."""
        ids = self._bare.get(model)
        if ids is not None and len(ids) == 1:
            d = self._deployment(ids[0])
            if d is not None:
                route = Route(model, "ordered", [d])
                if self._direct < MAX_DIRECT_DEPLOYMENTS:
                    self._direct += 1
                    self._single[model] = route
                return route
        if ids:
            raise ModelNotFoundError(
                f"The model `{model}` is served by several providers: use one of "
                f"{_listed(ids)}, or configure an alias (`models:` in the config file).",
                param="model",
                metadata={"candidates": ",".join(ids[:MAX_LISTED])},
            )
        disabled = self._bare_disabled.get(model)
        if disabled:
            raise self._not_enabled(model, disabled)
        raise ModelNotFoundError(
            f"The model `{model}` does not exist or you do not have access to it. "
            "Use `provider/model` for an enabled provider "
            f"({', '.join(sorted(self._providers)) or 'none'}), a configured route or alias.",
            param="model",
        )

    def _not_enabled(self, model: str, ids: Sequence[str]) -> ModelNotFoundError:
        providers = sorted({i.partition("/")[0] for i in ids})
        variables = " or ".join(f"{self._disabled[p]}" for p in providers if p in self._disabled)
        which = ", ".join(f"`{p}`" for p in providers)
        served = "" if list(ids) == [model] else f" (it is {_listed(ids)})"
        return ModelNotFoundError(
            f"The model `{model}`{served} is served by {which}, which is not enabled on this "
            f"gateway: set {variables} in the gateway's environment.",
            param="model",
            metadata={"provider": providers[0], "enable_with": variables},
        )

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


def _listed(ids: Sequence[str]) -> str:
    shown = ", ".join(f"`{i}`" for i in ids[:MAX_LISTED])
    return shown + (f" and {len(ids) - MAX_LISTED} more" if len(ids) > MAX_LISTED else "")


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
