"""Identifiers: request ids and gateway key material."""

from __future__ import annotations

import hashlib
import random
import secrets

# A gateway key looks like `sb-<43 url-safe chars>`; the prefix lets secret scanners find leaks.
KEY_PREFIX = "sb-"
_bits = random.getrandbits


def new_request_id() -> str:
    """A 24-hex-character random id; cheap enough for every request.

    Ids must be unique (ledger rows of several processes share one unique index), not secret:
    96 bits from ``random``'s Mersenne Twister, seeded from the OS and reseeded in every forked
    child by the random module itself, at half the cost of an ``os.urandom`` call."""
    return f"{_bits(96):024x}"


def new_gateway_key() -> str:
    """A new gateway key secret with 256 bits of entropy."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_key(secret: str) -> str:
    """The stored form of a key. Keys are random 256-bit tokens, so a fast hash is enough:
    there is nothing to brute-force that a slow KDF would protect."""
    return hashlib.sha256(secret.encode()).hexdigest()
