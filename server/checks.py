"""What a valid config file can still get wrong about providers, found before serving.

``config.py`` checks each field's shape; this checks what the fields say together with the
environment: a deployment or route naming a provider that does not exist is an error (it could
never serve), one whose provider exists but is not enabled (no ``<NAME>_API_KEY``) is a warning
naming the variable that enables it (it is left out until then). ``switchboard check-config``
prints both and exits 1 on errors; ``serve`` refuses errors and logs warnings.
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


def provider_problems(config: Config, env: Mapping[str, str]) -> Problems:
    """Deployments and routes whose providers are unknown (errors) or not enabled (warnings)."""
    problems = Problems()
    # Extra endpoints are built (or refused) at startup whatever their key; a built-in provider
    # named in `providers:` may read its key from another variable.
    extra = {pc.name for pc in config.providers if pc.name not in KNOWN_PROVIDERS}
    key_vars = {pc.name: pc.api_key_env for pc in config.providers if pc.name in KNOWN_PROVIDERS}
    known = set(KNOWN_PROVIDERS) | extra | {"demo"}

    def variable(provider: str) -> str:
        return key_vars.get(provider) or f"{provider.upper()}_API_KEY"

    def enabled(provider: str) -> bool:
        if provider in extra or provider == "demo":
            return True
        return bool(env.get(variable(provider), "").strip())

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
    return problems
