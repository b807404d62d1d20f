"""Every configured secret, and ``scrub``: text with each of them removed in any form.

The composition root registers the provider keys (every key of every pool) and the master key
once at startup (``register``). ``scrub`` then replaces, in any text, each secret as an upstream
may echo it: as is, URL-encoded, base64 (standard or URL-safe, with or without padding), and
masked the way providers print keys in their errors (a prefix and the last four
characters around a run of ``*``, ``.``, ``x`` or ``•``); plus anything shaped like a well-known
key or a bearer token, configured or not. Everything that can carry upstream text to a caller
or a log goes through it at the edge (error messages, codes, params, gRPC error details, log
lines); it is only called on error paths, so its cost does not matter per request.
"""

from __future__ import annotations

import base64
import re
import threading
import urllib.parse
from collections.abc import Iterable

REDACTED = "[redacted]"
# Secrets shorter than this are not scrubbed as substrings: they would match ordinary words.
MIN_SECRET_CHARS = 8

# Shapes of provider keys and bearer tokens an upstream might echo back, configured or not.
KEY_SHAPES = re.compile(
    r"(?i)\bbearer\s+\S+"
    r"|\b(?:sk|pk|rk|gsk|xai|csk|sb|fw|nvapi|hf|or|r8)[-_][A-Za-z0-9_\-\.\*]{8,}"
    r"|\bAIza[0-9A-Za-z_\-]{20,}"
)
_MASK = r"[*.x•·…]{3,}"

_lock = threading.Lock()
_secrets: set[str] = set()
_pattern: re.Pattern[str] | None = None


def register(*secrets: str) -> None:
    """Adds secrets to scrub from every text that leaves the gateway."""
    global _pattern
    fresh = {s for s in secrets if s and len(s) >= MIN_SECRET_CHARS} - _secrets
    if not fresh:
        return
    with _lock:
        _secrets.update(fresh)
        _pattern = _compile(_secrets)


def registered() -> frozenset[str]:
    """The registered secrets (tests use it; never log it)."""
    return frozenset(_secrets)


def scrub(text: str, extra: Iterable[str] = ()) -> str:
    """``text`` without any registered (or ``extra``) secret in any form, nor anything shaped
    like a key."""
    if not text:
        return text
    pattern = _pattern
    extra = [s for s in extra if s and len(s) >= MIN_SECRET_CHARS and s not in _secrets]
    if extra:
        pattern = _compile([*_secrets, *extra])
    if pattern is not None:
        text = pattern.sub(REDACTED, text)
    return KEY_SHAPES.sub(REDACTED, text)


def _forms(secret: str) -> set[str]:
    raw = secret.encode()
    b64 = base64.b64encode(raw).decode()
    b64url = base64.urlsafe_b64encode(raw).decode()
    forms = {
        secret,
        urllib.parse.quote(secret, safe=""),
        urllib.parse.quote_plus(secret),
        b64,
        b64.rstrip("="),
        b64url,
        b64url.rstrip("="),
    }
    return {f for f in forms if len(f) >= MIN_SECRET_CHARS}


def _compile(secrets: Iterable[str]) -> re.Pattern[str] | None:
    alternatives: set[str] = set()
    masked: set[str] = set()
    for secret in secrets:
        alternatives.update(re.escape(f) for f in _forms(secret))
        if len(secret) >= 12:
            # `sk-proj-abcd****…****wxyz`: some head of the key, a mask, its last four.
            masked.add(rf"{re.escape(secret[:3])}\S*?{_MASK}\S*?{re.escape(secret[-4:])}")
    if not alternatives:
        return None
    # Longest first, so a key is replaced whole rather than through a shorter form inside it.
    ordered = sorted(alternatives, key=len, reverse=True)
    return re.compile("|".join([*ordered, *sorted(masked)]))
