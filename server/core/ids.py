"""Identifiers: request ids and gateway key material."""

from __future__ import annotations

import hashlib
import os
import random
import secrets
import time

# A gateway key looks like `sb-<43 url-safe chars>`, or `sb-<env>-<43 url-safe chars>` for a
# key with an environment label; the prefix lets secret scanners find leaks.
KEY_PREFIX = "sb-"
# A generator of our own, not the ``random`` module's shared one: anything in the process that
# seeds that one (a library's ``random.seed(0)``, Hypothesis replaying an example) would make ids
# repeat. Seeded from the OS, and again in every forked child, as ``random`` does its own.
_rng = random.Random()
os.register_at_fork(after_in_child=_rng.seed)
_bits = _rng.getrandbits


def new_request_id() -> str:
    """A 24-hex-character random id; cheap enough for every request.

    Ids must be unique (ledger rows of several processes share one unique index), not secret:
    96 bits from a Mersenne Twister seeded from the OS, at half the cost of an ``os.urandom``
    call."""
    return f"{_bits(96):024x}"


def new_row_id() -> str:
    """A ledger row's unique id: 16 hex characters of the wall clock in nanoseconds, then 16
    random ones (32 in all).

    Time first, so the ids a ledger inserts sort after the ones it holds: every insert into the
    row id's unique index lands on its rightmost page. With random ids each insert lands on a
    page of its own, anywhere in an index that grows by a million rows every few minutes of
    load; a batch of 1,000 rows then cost SQLite 17 us of CPU per row on a new file and 37 us
    at 400,000 rows, against 8 us flat (``bench/ledger_write.py``). PostgreSQL's B-tree has the
    same right-edge fast path. The random half keeps ids of rows recorded in the same
    nanosecond by different processes apart."""
    return f"{time.time_ns():016x}{_bits(64):016x}"


def new_gateway_key(env: str = "") -> str:
    """A new gateway key secret with 256 bits of entropy, labelled ``sb-<env>-`` when ``env``
    is given (letters and digits only, so the label ends at the first ``-``)."""
    label = f"{KEY_PREFIX}{env}-" if env else KEY_PREFIX
    return label + secrets.token_urlsafe(32)


def hash_key(secret: str) -> str:
    """The stored form of a key. Keys are random 256-bit tokens, so a fast hash is enough:
    there is nothing to brute-force that a slow KDF would protect."""
    return hashlib.sha256(secret.encode()).hexdigest()
