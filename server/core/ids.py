"""Identifiers: request ids and gateway key material."""

from __future__ import annotations

import hashlib
import os
import secrets

# A gateway key looks like `sb-<43 url-safe chars>`; the prefix lets secret scanners find leaks.
KEY_PREFIX = "sb-"


def new_request_id() -> str:
    """A 24-hex-character random id; cheap enough for every request."""
    return os.urandom(12).hex()


def new_gateway_key() -> str:
    """A new gateway key secret with 256 bits of entropy."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(secret: str) -> str:
    """The stored form of a key. Keys are random 256-bit tokens, so a fast hash is enough:
    there is nothing to brute-force that a slow KDF would protect."""
    return hashlib.sha256(secret.encode()).hexdigest()
