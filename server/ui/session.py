"""Dashboard sessions: HMAC-signed tokens derived from the master key, and their CSRF tokens.

The cookie holds ``<expiry>.<nonce>.<mac>``: when it expires, a random nonce, and an
HMAC-SHA256 over both under a key derived from the master key. It never carries the master key
or anything it could be recovered from. Being signed rather than looked up, a session is valid
on every worker and replica that shares the master key, and changing the master key ends every
session at once. Logout clears the cookie and remembers the nonce (in this process) until the
token would have expired anyway.

A form's CSRF token is an HMAC of the session's nonce under the same key: only a page rendered
for this session can carry it, and a POST without it (or with another session's) is refused.
The login form has no session yet; its token is bound the same way to a short-lived random
``pre-session`` cookie set with the form.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable

SESSION_COOKIE = "sb_ui_session"
LOGIN_COOKIE = "sb_ui_login"
SESSION_SECONDS = 8 * 3600
LOGIN_SECONDS = 1800
# Logged-out sessions remembered per process; past this the oldest are dropped (they expire).
_MAX_REVOKED = 10_000


class Sessions:
    """Issues and checks session, login and CSRF tokens for one master key."""

    def __init__(self, master_key: str, *, clock: Callable[[], float] = time.time) -> None:
        # A key of its own: a leaked session MAC says nothing about the master key itself.
        self._key = hmac.new(
            master_key.encode(), b"switchboard dashboard session v1", hashlib.sha256
        ).digest()
        self._master = master_key.encode()
        self._clock = clock
        self._revoked: dict[str, float] = {}

    def is_master_key(self, candidate: str) -> bool:
        """Constant-time comparison with the master key."""
        return hmac.compare_digest(candidate.encode(), self._master)

    def issue(self, seconds: int = SESSION_SECONDS) -> str:
        """A new session token valid for ``seconds``."""
        return self._sign(seconds, b"session")

    def verify(self, token: str | None) -> str | None:
        """The session's nonce when ``token`` is a live session, else None."""
        nonce = self._check(token, b"session")
        if nonce is None or nonce in self._revoked:
            return None
        return nonce

    def revoke(self, token: str | None) -> None:
        """Ends a session in this process (logout)."""
        nonce = self._check(token, b"session")
        if nonce is None or token is None:
            return
        now = self._clock()
        for old in [n for n, until in self._revoked.items() if until <= now]:
            del self._revoked[old]
        while len(self._revoked) >= _MAX_REVOKED:
            del self._revoked[next(iter(self._revoked))]
        self._revoked[nonce] = float(token.split(".", 1)[0])

    def issue_login(self) -> str:
        """A pre-session token for the login form's cookie."""
        return self._sign(LOGIN_SECONDS, b"login")

    def verify_login(self, token: str | None) -> str | None:
        """The pre-session's nonce when ``token`` is a live login token, else None."""
        return self._check(token, b"login")

    def csrf(self, nonce: str) -> str:
        """The CSRF token of forms rendered for the session (or pre-session) ``nonce``."""
        return self._mac(b"csrf", nonce.encode())[:32]

    def csrf_ok(self, nonce: str, given: str | None) -> bool:
        return given is not None and hmac.compare_digest(self.csrf(nonce), given)

    def _sign(self, seconds: int, purpose: bytes) -> str:
        expiry = str(int(self._clock()) + seconds)
        nonce = secrets.token_urlsafe(18)
        payload = f"{expiry}.{nonce}"
        return f"{payload}.{self._mac(purpose, payload.encode())}"

    def _check(self, token: str | None, purpose: bytes) -> str | None:
        if not token or token.count(".") != 2:
            return None
        expiry, nonce, mac = token.split(".")
        if not hmac.compare_digest(self._mac(purpose, f"{expiry}.{nonce}".encode()), mac):
            return None
        if not expiry.isdigit() or int(expiry) <= self._clock():
            return None
        return nonce

    def _mac(self, purpose: bytes, payload: bytes) -> str:
        return hmac.new(self._key, purpose + b"\0" + payload, hashlib.sha256).hexdigest()
