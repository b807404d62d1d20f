"""The dashboard's pages and forms, as shim routes under ``/ui`` behind the master key.

Every page but the login form needs a live session (``session.py``); without one a GET is sent
to the login form and a POST is refused. Every POST carries the session's CSRF token, checked
before anything else. Pages read the state seams directly (keys, the usage ledger, health and
the catalog): the dashboard is one more reader of what the CLI and ``AdminService`` read.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from switchboard.v1 import admin_pb2

from server.core.context import KeyLimits
from server.core.errors import GatewayError
from server.core.state import CircuitState, HealthStore, KeySpec, KeyStore, KeyUpdate, UsageReader
from server.http_shim.app import Route
from server.http_shim.asgi import HttpRequest
from server.routing.catalog import Catalog
from server.ui import charts, web
from server.ui.session import LOGIN_COOKIE, LOGIN_SECONDS, SESSION_COOKIE, SESSION_SECONDS, Sessions
from server.ui.timings import RecentTimings
from server.ui.usage import Usage, load

_HERE = Path(__file__).parent
_STYLESHEET = (_HERE / "static" / "style.css").read_bytes()
DEFAULT_DAYS = 14
MAX_DAYS = 90
RECENT_ROWS = 100
DAY = 86400.0

_env = Environment(
    loader=FileSystemLoader(_HERE / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
_env.filters["usd"] = lambda v: f"${v:,.6f}".rstrip("0").rstrip(".") if v else "$0"
_env.filters["utc"] = lambda t: time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(t))
_env.filters["num"] = lambda v: f"{v:,}"


@dataclass(frozen=True, slots=True)
class Page:
    """What a page handler returns: a template and its context, or a finished response."""

    template: str
    context: dict[str, Any]
    status: int = 200


PageHandler = Callable[[HttpRequest, dict[str, str]], Awaitable[Page | int]]


class Dashboard:
    """The ``/ui`` routes over the state seams the gateway was built with."""

    def __init__(
        self,
        master_key: str,
        keys: KeyStore,
        ledger: UsageReader,
        health: HealthStore,
        catalog: Catalog,
        timings: RecentTimings | None = None,
    ) -> None:
        self.sessions = Sessions(master_key)
        self.keys = keys
        self.ledger = ledger
        self.health = health
        self.catalog = catalog
        self.timings = timings or RecentTimings(capacity=0)

    def routes(self) -> list[Route]:
        """Every route of the dashboard, for ``create_app(extra_routes=...)``."""
        return [
            Route("GET", "/ui", self._home),
            Route("GET", "/ui/", self._home),
            Route("GET", "/ui/login", self._login_form),
            Route("POST", "/ui/login", self._login),
            Route("POST", "/ui/logout", self._logout),
            Route("GET", "/ui/static/style.css", self._stylesheet),
            Route("GET", "/ui/usage", self._guard(self._usage)),
            Route("GET", "/ui/keys", self._guard(self._keys)),
            Route("POST", "/ui/keys/create", self._guard(self._create_key)),
            Route("POST", "/ui/keys/revoke", self._guard(self._revoke_key)),
            Route("POST", "/ui/keys/rotate", self._guard(self._rotate_key)),
            Route("POST", "/ui/keys/update", self._guard(self._update_key)),
            Route("GET", "/ui/requests", self._guard(self._requests)),
            Route("GET", "/ui/health", self._guard(self._health)),
        ]

    # --- sessions -------------------------------------------------------------------------

    def _guard(self, page: PageHandler) -> Callable[[HttpRequest], Awaitable[int]]:
        """Runs ``page`` for a live session (CSRF token checked on POST) and renders it."""

        async def handler(req: HttpRequest) -> int:
            nonce = self.sessions.verify(web.cookies(req).get(SESSION_COOKIE))
            if nonce is None:
                if req.method == "GET":
                    return await web.redirect(req, "/ui/login")
                return await self._refuse(req, None, 401, "Your session has ended; log in again.")
            fields: dict[str, str] = {}
            if req.method == "POST":
                fields = await web.form(req)
                if not self.sessions.csrf_ok(nonce, fields.get("csrf")):
                    return await self._refuse(
                        req,
                        nonce,
                        403,
                        "The form's security token is missing or wrong, so nothing was done. "
                        "Reload the page and try again.",
                    )
            result = await page(req, fields)
            if isinstance(result, int):
                return result
            context = {**result.context, "csrf": self.sessions.csrf(nonce), "path": req.path}
            return await web.html(req, result.status, _render(result.template, context))

        return handler

    async def _refuse(self, req: HttpRequest, nonce: str | None, status: int, message: str) -> int:
        context: dict[str, Any] = {"message": message, "path": req.path}
        if nonce is not None:
            context["csrf"] = self.sessions.csrf(nonce)
        return await web.html(req, status, _render("refused.html", context))

    async def _home(self, req: HttpRequest) -> int:
        return await web.redirect(req, "/ui/usage")

    async def _login_form(self, req: HttpRequest) -> int:
        if self.sessions.verify(web.cookies(req).get(SESSION_COOKIE)) is not None:
            return await web.redirect(req, "/ui/usage")
        return await self._login_page(req, 200, None)

    async def _login_page(self, req: HttpRequest, status: int, error: str | None) -> int:
        token = self.sessions.issue_login()
        nonce = self.sessions.verify_login(token)
        assert nonce is not None
        body = _render("login.html", {"csrf": self.sessions.csrf(nonce), "error": error})
        cookie = web.set_cookie(req, LOGIN_COOKIE, token, LOGIN_SECONDS)
        return await web.html(req, status, body, [cookie])

    async def _login(self, req: HttpRequest) -> int:
        fields = await web.form(req)
        nonce = self.sessions.verify_login(web.cookies(req).get(LOGIN_COOKIE))
        if nonce is None or not self.sessions.csrf_ok(nonce, fields.get("csrf")):
            return await self._login_page(
                req, 403, "The login form expired or was not sent from this page; try again."
            )
        if not self.sessions.is_master_key(fields.get("master_key", "").strip()):
            return await self._login_page(
                req, 401, "That is not the master key. Log in with the gateway's master key."
            )
        headers = [
            web.set_cookie(req, SESSION_COOKIE, self.sessions.issue(), SESSION_SECONDS),
            web.clear_cookie(req, LOGIN_COOKIE),
        ]
        return await web.redirect(req, "/ui/usage", headers)

    async def _logout(self, req: HttpRequest) -> int:
        token = web.cookies(req).get(SESSION_COOKIE)
        nonce = self.sessions.verify(token)
        if nonce is not None:
            fields = await web.form(req)
            if not self.sessions.csrf_ok(nonce, fields.get("csrf")):
                return await self._refuse(
                    req, nonce, 403, "The form's security token is missing or wrong."
                )
            self.sessions.revoke(token)
        return await web.redirect(req, "/ui/login", [web.clear_cookie(req, SESSION_COOKIE)])

    async def _stylesheet(self, req: HttpRequest) -> int:
        headers = req.base_headers()
        headers.append((b"content-type", b"text/css; charset=utf-8"))
        headers.append((b"cache-control", b"max-age=3600"))
        await req.respond(200, _STYLESHEET, headers)
        return 200

    # --- pages ----------------------------------------------------------------------------

    async def _usage(self, req: HttpRequest, _: dict[str, str]) -> Page:
        days = _int(web.query(req).get("days"), DEFAULT_DAYS, 1, MAX_DAYS)
        names = {"key": await self._key_names(), "project": await self._project_names()}
        usage = await load(self.ledger, days, names)
        return Page(
            "usage.html",
            {
                "days": days,
                "choices": (1, 7, 14, 30, 90),
                "usage": usage,
                "charts": _usage_charts(usage),
            },
        )

    async def _keys(self, req: HttpRequest, _: dict[str, str]) -> Page:
        return await self._keys_page()

    async def _keys_page(
        self, *, status: int = 200, created: Any = None, error: str | None = None
    ) -> Page:
        projects = await self._project_names()
        keys = [_key_view(k, projects) for k in await self.keys.list(include_revoked=True)]
        context = {
            "keys": keys,
            "projects": projects,
            "created": created,
            "error": error,
            "now": time.time(),
        }
        return Page("keys.html", context, status)

    async def _create_key(self, req: HttpRequest, fields: dict[str, str]) -> Page:
        try:
            spec = KeySpec(
                name=fields.get("name", ""),
                limits=_limits(fields),
                env=fields.get("env", "").strip(),
                allowed_models=_models(fields),
                max_concurrent=_optional(fields, "max_concurrent", int),
                project_id=fields.get("project_id", "").strip() or None,
            )
            key, secret = await self.keys.create(spec)
        except ValueError as exc:
            return await self._keys_page(status=400, error=str(exc))
        except GatewayError as exc:
            return await self._keys_page(status=exc.http_status, error=exc.message)
        return await self._shown_once("Created", key, secret)

    async def _shown_once(self, what: str, key: admin_pb2.GatewayKey, secret: str) -> Page:
        # The secret is in this one response only (no-store): never in a URL or a redirect.
        view = _key_view(key, await self._project_names())
        return await self._keys_page(created={"what": what, "key": view, "secret": secret})

    async def _rotate_key(self, req: HttpRequest, fields: dict[str, str]) -> Page:
        try:
            grace = _optional(fields, "grace", float) or 0.0
            key, secret = await self.keys.rotate(fields.get("key_id", ""), grace)
        except ValueError as exc:
            return await self._keys_page(status=400, error=str(exc))
        except GatewayError as exc:
            return await self._keys_page(status=exc.http_status, error=exc.message)
        return await self._shown_once("Rotated", key, secret)

    async def _update_key(self, req: HttpRequest, fields: dict[str, str]) -> Page | int:
        try:
            changes = KeyUpdate(
                limits=_limits(fields),
                allowed_models=_models(fields),
                # Blank: unlimited, which KeyUpdate spells 0.
                max_concurrent=_optional(fields, "max_concurrent", int) or 0,
            )
            await self.keys.update(fields.get("key_id", ""), changes)
        except ValueError as exc:
            return await self._keys_page(status=400, error=str(exc))
        except GatewayError as exc:
            return await self._keys_page(status=exc.http_status, error=exc.message)
        return await web.redirect(req, "/ui/keys")

    async def _revoke_key(self, req: HttpRequest, fields: dict[str, str]) -> Page | int:
        try:
            await self.keys.revoke(fields.get("key_id", ""))
        except GatewayError as exc:
            return await self._keys_page(status=exc.http_status, error=exc.message)
        return await web.redirect(req, "/ui/keys")

    async def _requests(self, req: HttpRequest, _: dict[str, str]) -> Page:
        now = time.time()
        rows = await self.ledger.rows(now - MAX_DAYS * DAY, now + DAY, limit=RECENT_ROWS)
        names = await self._key_names()
        timings = {r.request_id: t for r in rows if (t := self.timings.get(r.request_id))}
        return Page("requests.html", {"rows": rows, "names": names, "timings": timings})

    async def _health(self, req: HttpRequest, _: dict[str, str]) -> Page:
        deployments = []
        for d in self.catalog.deployments.values():
            snap = self.health.snapshot(d.id)
            cooling = [
                (i, wait)
                for i, name in enumerate(d.key_names)
                if (wait := self.health.retry_in(name)) > 0
            ]
            deployments.append(
                {
                    "id": d.id,
                    "provider": d.provider_name,
                    "model": d.model,
                    "state": CircuitState(snap.state).name.lower().replace("_", "-"),
                    "retry_in": snap.retry_in,
                    "error_score": snap.error_score,
                    "latency_ms": None if snap.latency is None else snap.latency * 1000,
                    "ttft_ms": None if snap.ttft is None else snap.ttft * 1000,
                    "pool": len(d.key_names),
                    "cooling": cooling,
                }
            )
        routes = [
            {"name": r.name, "strategy": r.strategy, "deployments": [d.id for d in r.deployments]}
            for r in self.catalog.routes.values()
        ]
        return Page("health.html", {"deployments": deployments, "routes": routes})

    async def _key_names(self) -> dict[str, str]:
        return {k.id: k.name for k in await self.keys.list(include_revoked=True)}

    async def _project_names(self) -> dict[str, str]:
        return {p.id: p.name for p in await self.keys.list_projects()}


def _key_view(key: admin_pb2.GatewayKey, projects: dict[str, str]) -> dict[str, Any]:
    limits = key.limits

    def limit(name: str) -> Any:
        return getattr(limits, name) if limits.HasField(name) else None

    return {
        "id": key.id,
        "name": key.name,
        "prefix": key.prefix,
        "created": key.create_time.seconds,
        "revoked": key.revoked,
        "revoked_at": key.revoke_time.seconds if key.revoked else None,
        "rpm": limit("requests_per_minute"),
        "tpm": limit("tokens_per_minute"),
        "budget": limit("monthly_budget_usd"),
        "env": key.env,
        "project_id": key.project_id,
        "project": projects.get(key.project_id, key.project_id),
        "allowed_models": list(key.allowed_models),
        "max_concurrent": key.max_concurrent if key.HasField("max_concurrent") else None,
        "expires": key.expire_time.seconds if key.HasField("expire_time") else None,
        "expired": key.expired,
        "grace_until": key.previous_secret_expire_time.seconds
        if key.HasField("previous_secret_expire_time")
        else None,
    }


def _render(template: str, context: dict[str, Any]) -> str:
    return _env.get_template(template).render(**context)


def _usage_charts(usage: Usage) -> dict[str, Any]:
    labels = [d[5:] for d in usage.days]  # MM-DD
    days = list(usage.days.values())
    return {
        "spend": charts.bar_chart(
            "Spend per day (USD)",
            labels,
            [("spend", [t.cost_usd for t in days])],
            value_format="${:.6f}",
        ),
        "requests": charts.bar_chart(
            "Requests per day",
            labels,
            [
                ("succeeded", [t.requests - t.errors for t in days]),
                ("failed", [t.errors for t in days]),
            ],
            stacked=True,
        ),
        "tokens": charts.bar_chart(
            "Tokens per day",
            labels,
            [
                ("input", [t.input_tokens for t in days]),
                ("output", [t.output_tokens for t in days]),
            ],
            stacked=True,
        ),
    }


def _limits(fields: dict[str, str]) -> KeyLimits:
    """The form's limits; a blank field is unlimited."""
    return KeyLimits(
        requests_per_minute=_optional(fields, "rpm", int),
        tokens_per_minute=_optional(fields, "tpm", int),
        monthly_budget_usd=_optional(fields, "budget", float),
    )


def _models(fields: dict[str, str]) -> tuple[str, ...]:
    """Allowed models, separated by commas or spaces; none means any."""
    return tuple(m for m in fields.get("allowed_models", "").replace(",", " ").split() if m)


def _int(raw: str | None, default: int, low: int, high: int) -> int:
    if raw is None or not raw.isdigit():
        return default
    return min(max(int(raw), low), high)


def _optional(fields: dict[str, str], name: str, kind: type[int] | type[float]) -> Any:
    """A number field; blank means unlimited. ValueError says which field is wrong."""
    raw = fields.get(name, "").strip()
    if not raw:
        return None
    try:
        return kind(raw)
    except ValueError:
        raise ValueError(f"{name} must be a number (or blank for no limit)") from None
