"""What a valid config file can still get wrong about providers, found before serving.

``config.py`` checks each field's shape; this checks what the fields say together with the
environment: a deployment, route or model alias naming a provider that does not exist is an
error (it could never serve), one whose provider exists but is not enabled (no
``<NAME>_API_KEY``) is a warning naming the variable that enables it (it is left out until
then). ``switchboard check-config`` prints both and exits 1 on errors; ``serve`` refuses
errors and logs warnings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from server.config import Config
from server.providers.registry import KNOWN_PROVIDERS


@dataclass(slots=True)
class Problems:
    """Errors (the config cannot work) and warnings (part of it is idle until configured)."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _enablers(config: Config) -> tuple[set[str], dict[str, str]]:
    """Extra endpoints (built or refused at startup whatever their key) and, for each built-in
    provider, the variable that enables it (`providers:` may name another one)."""
    extra = {pc.name for pc in config.providers if pc.name not in KNOWN_PROVIDERS}
    key_vars = {pc.name: pc.api_key_env for pc in config.providers if pc.name in KNOWN_PROVIDERS}
    variables = {name: key_vars.get(name) or f"{name.upper()}_API_KEY" for name in KNOWN_PROVIDERS}
    return extra, variables


def disabled_providers(config: Config, env: Mapping[str, str]) -> dict[str, str]:
    """Built-in providers that are not enabled, each with the variable that would enable it
    (the catalog names it in its 404 for their models)."""
    extra, variables = _enablers(config)
    return {
        name: variable
        for name, variable in variables.items()
        if name not in extra and not env.get(variable, "").strip()
    }


def provider_problems(config: Config, env: Mapping[str, str]) -> Problems:
    """Deployments, routes and aliases whose providers are unknown (errors) or not enabled
    (warnings)."""
    problems = Problems()
    extra, variables = _enablers(config)
    known = set(KNOWN_PROVIDERS) | extra | {"demo"}
    off = disabled_providers(config, env)

    def variable(provider: str) -> str:
        return variables.get(provider) or f"{provider.upper()}_API_KEY"

    def enabled(provider: str) -> bool:
        return provider not in off

    deployment_ids: dict[str, str] = {}
    for i, dc in enumerate(config.deployments):
        deployment_ids[dc.deployment_id] = dc.provider
        where = f"deployments.{i} ({dc.deployment_id})"
        if dc.provider not in known:
            problems.errors.append(
                f"{where}: unknown provider '{dc.provider}' (known: {', '.join(sorted(known))}; "
                "add it under `providers:` for another OpenAI-compatible server)"
            )
        elif not enabled(dc.provider):
            problems.warnings.append(
                f"{where}: provider '{dc.provider}' is not enabled; set "
                f"{variable(dc.provider)} to serve it"
            )
    for i, rc in enumerate(config.routes):
        for name in rc.deployments:
            provider = deployment_ids.get(name) or name.partition("/")[0]
            where = f"routes.{i} ({rc.name}) deployment '{name}'"
            if name not in deployment_ids and "/" not in name:
                problems.errors.append(
                    f"{where}: not a configured deployment id nor `provider/model`"
                )
            elif provider not in known:
                problems.errors.append(f"{where}: unknown provider '{provider}'")
            elif not enabled(provider) and name not in deployment_ids:
                problems.warnings.append(
                    f"{where}: provider '{provider}' is not enabled; set "
                    f"{variable(provider)} to serve it"
                )
    routes = {rc.name for rc in config.routes}
    for alias, target in config.models.items():
        where = f"models.{alias} ({target})"
        if alias in routes:
            problems.errors.append(f"{where}: '{alias}' is also a route name")
            continue
        if target in routes:
            continue
        provider = deployment_ids.get(target) or target.partition("/")[0]
        if target not in deployment_ids and "/" not in target:
            problems.errors.append(f"{where}: not a route, a deployment id nor `provider/model`")
        elif provider not in known:
            problems.errors.append(f"{where}: unknown provider '{provider}'")
        elif not enabled(provider):
            problems.warnings.append(
                f"{where}: provider '{provider}' is not enabled; set "
                f"{variable(provider)} to serve it"
            )
    return problems
