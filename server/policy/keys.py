"""Gateway key policy shared by every key store: what a valid key request is, and the master key.

Key stores (``server.core.state.KeyStore``; backends in ``server/store``) keep keys hashed;
this module holds what does not depend on where they are kept.
"""

from __future__ import annotations

import logging
import os
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from switchboard.v1 import admin_pb2

from server.core.context import KeyLimits
from server.core.errors import FieldViolation, InvalidRequestError
from server.core.ids import new_gateway_key
from server.store.embedded.sqlite import ensure_data_dir

log = logging.getLogger(__name__)

MASTER_KEY_ENV = "SWITCHBOARD_MASTER_KEY"
MASTER_KEY_FILENAME = "master.key"
# Characters of the secret kept in clear to tell keys apart (`sb-` + 8 of 43 random chars).
PREFIX_CHARS = 11
MAX_NAME_CHARS = 100


def check_new_key(name: str, limits: KeyLimits | None) -> tuple[str, KeyLimits]:
    """The trimmed name and limits of a key to create; InvalidRequestError when invalid."""
    name = name.strip()
    if not name or len(name) > MAX_NAME_CHARS:
        raise InvalidRequestError(
            f"Invalid request: name must be 1-{MAX_NAME_CHARS} characters",
            param="name",
            field_violations=[
                FieldViolation("name", f"name must be 1-{MAX_NAME_CHARS} characters")
            ],
        )
    limits = limits or KeyLimits()
    _check_limits(limits)
    return name, limits


def _check_limits(limits: KeyLimits) -> None:
    violations = [
        FieldViolation(f"limits.{name}", f"{name} must be positive")
        for name in ("requests_per_minute", "tokens_per_minute", "monthly_budget_usd")
        if (value := getattr(limits, name)) is not None and value <= 0
    ]
    if violations:
        raise InvalidRequestError(
            f"Invalid request: {violations[0].field}: {violations[0].description}",
            param=violations[0].field,
            field_violations=violations,
        )


def limits_from_proto(limits: admin_pb2.KeyLimits) -> KeyLimits:
    """The core's KeyLimits from the contract's (unset fields stay unlimited)."""
    return KeyLimits(
        requests_per_minute=limits.requests_per_minute
        if limits.HasField("requests_per_minute")
        else None,
        tokens_per_minute=limits.tokens_per_minute
        if limits.HasField("tokens_per_minute")
        else None,
        monthly_budget_usd=limits.monthly_budget_usd
        if limits.HasField("monthly_budget_usd")
        else None,
    )


# --- the master key ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MasterKey:
    """The admin key and where it came from: ``env``, ``file`` or ``generated`` (new file)."""

    secret: str
    source: str
    path: Path | None = None

    def __repr__(self) -> str:
        return f"MasterKey(source={self.source!r}, path={self.path!r})"


def load_master_key(data_dir: Path, env: Mapping[str, str] = os.environ) -> MasterKey:
    """``SWITCHBOARD_MASTER_KEY``, else the key stored in the data dir, else a new stored one.

    A new key is written to a private temp file and hard-linked into place, so two processes
    starting together agree on one key and nobody reads a half-written file.
    """
    from_env = env.get(MASTER_KEY_ENV, "").strip()
    if from_env:
        return MasterKey(from_env, "env")
    ensure_data_dir(data_dir)
    path = data_dir / MASTER_KEY_FILENAME
    existing = _read_key_file(path)
    if existing:
        return MasterKey(existing, "file", path)
    secret = new_gateway_key()
    tmp = data_dir / f".{MASTER_KEY_FILENAME}.{os.getpid()}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(secret + "\n")
        try:
            os.link(tmp, path)
        except FileExistsError:
            existing = _read_key_file(path)
            if not existing:
                raise RuntimeError(f"{path} exists but holds no key") from None
            return MasterKey(existing, "file", path)
    finally:
        tmp.unlink(missing_ok=True)
    return MasterKey(secret, "generated", path)


def _read_key_file(path: Path) -> str | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    if path.stat().st_mode & 0o077:
        log.warning("%s is readable by other users; chmod 600 it", path)
    return text or None
