"""Gateway key policy shared by every key store: what a valid key request is, and the master key.

Key stores (``server.core.state.KeyStore``; backends in ``server/store``) keep keys hashed;
this module holds what does not depend on where they are kept.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import logging
import os
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from switchboard.v1 import admin_pb2

from server.core.context import KeyLimits
from server.core.errors import FieldViolation, InvalidRequestError
from server.core.ids import new_gateway_key
from server.core.state import KeySpec, KeyUpdate
from server.store.embedded.sqlite import ensure_data_dir

log = logging.getLogger(__name__)

MASTER_KEY_ENV = "SWITCHBOARD_MASTER_KEY"
MASTER_KEY_FILENAME = "master.key"
# Random characters of the secret kept in clear after its label (`sb-` or `sb-<env>-`), to
# tell keys apart.
PREFIX_RANDOM_CHARS = 8
MAX_NAME_CHARS = 100
# An environment label: lower-case letters and digits (no `-`: the label ends at the first).
ENV_PATTERN = re.compile(r"[a-z0-9]{1,16}")
MAX_ALLOWED_MODELS = 100
MAX_MODEL_CHARS = 200


def key_prefix(secret: str, env: str) -> str:
    """What is kept of a secret in clear: its label and the first random characters."""
    label = 3 + (len(env) + 1 if env else 0)
    return secret[: label + PREFIX_RANDOM_CHARS]


def _invalid(field: str, description: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"Invalid request: {field}: {description}",
        param=field,
        field_violations=[FieldViolation(field, description)],
    )


def check_name(name: str, field: str = "name") -> str:
    """The trimmed name of a key or project; InvalidRequestError when empty or too long."""
    name = name.strip()
    if not name or len(name) > MAX_NAME_CHARS:
        raise _invalid(field, f"{field} must be 1-{MAX_NAME_CHARS} characters")
    return name


def check_new_key(name: str, limits: KeyLimits | None) -> tuple[str, KeyLimits]:
    """The trimmed name and limits of a key to create; InvalidRequestError when invalid."""
    limits = limits or KeyLimits()
    name = check_name(name)
    check_limits(limits)
    return name, limits


def check_key_spec(spec: KeySpec, now: float) -> KeySpec:
    """The spec of a key to create, normalised (names trimmed, models de-duplicated);
    InvalidRequestError naming the first invalid field. The project's existence is the
    store's to check."""
    name, limits = check_new_key(spec.name, spec.limits)
    if spec.env and not ENV_PATTERN.fullmatch(spec.env):
        raise _invalid("env", "env must be 1-16 lower-case letters or digits")
    if spec.expires_at is not None and spec.expires_at <= now:
        raise _invalid("expire_time", "expire_time must be in the future")
    return dataclasses.replace(
        spec,
        name=name,
        limits=limits,
        allowed_models=check_allowed_models(spec.allowed_models),
        max_concurrent=_check_max_concurrent(spec.max_concurrent),
        project_id=spec.project_id or None,
    )


def check_key_update(changes: KeyUpdate) -> KeyUpdate:
    """``changes`` normalised; InvalidRequestError naming the first invalid field. An expiry
    in the past is allowed here: it expires the key at once."""
    if changes.limits is not None:
        check_limits(changes.limits)
    if changes.max_concurrent is not None and changes.max_concurrent < 0:
        raise _invalid("max_concurrent", "max_concurrent must be positive (0: unlimited)")
    if changes.expires_at is not None and changes.expires_at < 0:
        raise _invalid("expire_time", "expire_time must not be negative (0: never)")
    return dataclasses.replace(
        changes,
        name=None if changes.name is None else check_name(changes.name),
        allowed_models=None
        if changes.allowed_models is None
        else check_allowed_models(changes.allowed_models),
    )


def check_allowed_models(models: Sequence[str]) -> tuple[str, ...]:
    """Trimmed, de-duplicated (first occurrence kept) model patterns."""
    out = tuple(dict.fromkeys(m.strip() for m in models))
    if len(out) > MAX_ALLOWED_MODELS:
        raise _invalid("allowed_models", f"at most {MAX_ALLOWED_MODELS} models")
    for model in out:
        if not model or len(model) > MAX_MODEL_CHARS:
            raise _invalid("allowed_models", f"each model must be 1-{MAX_MODEL_CHARS} characters")
    return out


def _check_max_concurrent(value: int | None) -> int | None:
    if value is not None and value <= 0:
        raise _invalid("max_concurrent", "max_concurrent must be positive")
    return value


def model_allowed(allowed: Sequence[str], *names: str) -> bool:
    """Whether any of ``names`` (the model the caller sent, the route it resolved to) matches
    a pattern of ``allowed`` (exact, or ``fnmatch`` when it has ``*``); empty allows all."""
    if not allowed:
        return True
    for pattern in allowed:
        if "*" in pattern or "?" in pattern or "[" in pattern:
            if any(fnmatch.fnmatchcase(name, pattern) for name in names if name):
                return True
        elif pattern in names:
            return True
    return False


def check_limits(limits: KeyLimits) -> None:
    """InvalidRequestError when a limit is set but not positive."""
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


def limits_to_proto(limits: KeyLimits, into: admin_pb2.KeyLimits) -> None:
    """Fills the contract's KeyLimits from the core's (None stays unset)."""
    if limits.requests_per_minute is not None:
        into.requests_per_minute = limits.requests_per_minute
    if limits.tokens_per_minute is not None:
        into.tokens_per_minute = limits.tokens_per_minute
    if limits.monthly_budget_usd is not None:
        into.monthly_budget_usd = limits.monthly_budget_usd


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
