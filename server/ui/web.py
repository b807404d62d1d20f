"""The HTTP pieces the dashboard needs on top of the shim's ``HttpRequest``: cookies, forms,
query strings, and HTML responses with the headers that keep a page with a secret on it safe."""

from __future__ import annotations

from urllib.parse import parse_qs

from server.http_shim.asgi import Headers, HttpRequest

# Forms are a few fields; anything bigger is not one of ours.
MAX_FORM_BYTES = 16 * 1024
FORM_TIMEOUT = 10.0

# No script runs on these pages (the charts are SVG drawn on the server); styles are the
# stylesheet plus the charts' own inline <style>.
_SECURITY_HEADERS: Headers = [
    (
        b"content-security-policy",
        b"default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        b"form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    # A page may show a new key's secret: never kept by a cache or the browser's history.
    (b"cache-control", b"no-store"),
]


def cookies(req: HttpRequest) -> dict[str, str]:
    """The request's cookies (the first of a repeated name wins)."""
    raw = req.header(b"cookie") or ""
    out: dict[str, str] = {}
    for part in raw.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep and name and name not in out:
            out[name] = value.strip().strip('"')
    return out


def query(req: HttpRequest) -> dict[str, str]:
    """The query string's parameters (last value of a repeated name)."""
    raw = req.scope.get("query_string", b"").decode("latin-1")
    return {k: v[-1] for k, v in parse_qs(raw).items()}


async def form(req: HttpRequest) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body's fields (last value of a name)."""
    body = await req.body(MAX_FORM_BYTES, FORM_TIMEOUT)
    fields = parse_qs(body.decode("utf-8", "replace"), keep_blank_values=True)
    return {k: v[-1] for k, v in fields.items()}


def set_cookie(req: HttpRequest, name: str, value: str, max_age: int) -> tuple[bytes, bytes]:
    """A ``Set-Cookie`` header: HttpOnly, SameSite=Strict, scoped to /ui; Secure over TLS."""
    parts = [f"{name}={value}", "Path=/ui", f"Max-Age={max_age}", "HttpOnly", "SameSite=Strict"]
    if req.scope.get("scheme") == "https":
        parts.append("Secure")
    return (b"set-cookie", "; ".join(parts).encode("latin-1"))


def clear_cookie(req: HttpRequest, name: str) -> tuple[bytes, bytes]:
    return set_cookie(req, name, "", 0)


async def html(req: HttpRequest, status: int, body: str, headers: Headers | None = None) -> int:
    """Sends an HTML page with the security headers."""
    all_headers = req.base_headers()
    all_headers.append((b"content-type", b"text/html; charset=utf-8"))
    all_headers.extend(_SECURITY_HEADERS)
    all_headers.extend(headers or ())
    await req.respond(status, body.encode("utf-8"), all_headers)
    return status


async def redirect(req: HttpRequest, location: str, headers: Headers | None = None) -> int:
    """A 303 to ``location`` (a path of ours), so that a reload does not repeat a POST."""
    all_headers = req.base_headers()
    all_headers.append((b"location", location.encode("ascii")))
    all_headers.extend(_SECURITY_HEADERS)
    all_headers.extend(headers or ())
    await req.respond(303, b"", all_headers)
    return 303
