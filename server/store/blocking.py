"""The CLI's view of a backend: key management and usage queries as blocking calls.

The embedded backend has them natively (``SqliteKeyStore``'s ``*_sync`` methods and the
ledger module's query functions over the data dir: no event loop, no background task, so a
`switchboard keys list` never starts a ledger writer). The distributed backend's stores are
asynchronous; ``open_blocking`` runs them on one private event loop for the command's
lifetime and exposes the same blocking names, so every CLI command has one code path for
both backends.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from switchboard.v1 import admin_pb2

from server.config import Config, StoreConfig
from server.core.context import KeyLimits
from server.core.state import KeySpec, KeyStore, KeyTotals, KeyUpdate, UsageReader, UsageTotals
from server.store.embedded import ledger as embedded_ledger
from server.store.embedded.keys import SqliteKeyStore


class BlockingKeys(Protocol):
    """Key and project management, blocking (what the ``keys`` and ``projects`` commands call)."""

    def create_sync(self, spec: KeySpec) -> tuple[admin_pb2.GatewayKey, str]: ...
    def get_sync(self, key_id: str) -> admin_pb2.GatewayKey | None: ...
    def list_sync(self, *, include_revoked: bool = False) -> list[admin_pb2.GatewayKey]: ...
    def update_sync(self, key_id: str, changes: KeyUpdate) -> admin_pb2.GatewayKey: ...
    def rotate_sync(
        self, key_id: str, grace_seconds: float = 0.0
    ) -> tuple[admin_pb2.GatewayKey, str]: ...
    def revoke_sync(self, key_id: str) -> admin_pb2.GatewayKey: ...
    def create_project_sync(
        self, name: str, limits: KeyLimits | None = None
    ) -> admin_pb2.Project: ...
    def get_project_sync(self, project_id: str) -> admin_pb2.Project | None: ...
    def list_projects_sync(self) -> list[admin_pb2.Project]: ...
    def update_project_sync(
        self, project_id: str, *, name: str | None = None, limits: KeyLimits | None = None
    ) -> admin_pb2.Project: ...


class BlockingUsage(Protocol):
    """Ledger queries, blocking (what the ``usage`` command calls)."""

    def month_totals(
        self, year: int, month: int, *, key_id: str | None = None
    ) -> list[KeyTotals]: ...
    def usage_by(
        self,
        group: str,
        start: float,
        end: float,
        *,
        key_id: str | None = None,
        project_id: str | None = None,
    ) -> list[UsageTotals]: ...


class _EmbeddedUsage:
    """The ledger module's queries over one data dir."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir

    def month_totals(self, year: int, month: int, *, key_id: str | None = None) -> list[KeyTotals]:
        return embedded_ledger.month_totals(self.data_dir, year, month, key_id=key_id)

    def usage_by(
        self,
        group: str,
        start: float,
        end: float,
        *,
        key_id: str | None = None,
        project_id: str | None = None,
    ) -> list[UsageTotals]:
        return embedded_ledger.usage_by(
            self.data_dir, group, start, end, key_id=key_id, project_id=project_id
        )


class _OnLoop:
    """An asynchronous ``KeyStore`` and ``UsageReader`` driven from blocking code."""

    def __init__(self, runner: asyncio.Runner, keys: KeyStore, usage: UsageReader) -> None:
        self._run = runner.run
        self._keys = keys
        self._usage = usage

    def create_sync(self, spec: KeySpec) -> tuple[admin_pb2.GatewayKey, str]:
        return self._run(self._keys.create(spec))

    def get_sync(self, key_id: str) -> admin_pb2.GatewayKey | None:
        return self._run(self._keys.get(key_id))

    def list_sync(self, *, include_revoked: bool = False) -> builtins.list[admin_pb2.GatewayKey]:
        return self._run(self._keys.list(include_revoked=include_revoked))

    def update_sync(self, key_id: str, changes: KeyUpdate) -> admin_pb2.GatewayKey:
        return self._run(self._keys.update(key_id, changes))

    def rotate_sync(
        self, key_id: str, grace_seconds: float = 0.0
    ) -> tuple[admin_pb2.GatewayKey, str]:
        return self._run(self._keys.rotate(key_id, grace_seconds))

    def revoke_sync(self, key_id: str) -> admin_pb2.GatewayKey:
        return self._run(self._keys.revoke(key_id))

    def create_project_sync(self, name: str, limits: KeyLimits | None = None) -> admin_pb2.Project:
        return self._run(self._keys.create_project(name, limits))

    def get_project_sync(self, project_id: str) -> admin_pb2.Project | None:
        return self._run(self._keys.get_project(project_id))

    def list_projects_sync(self) -> builtins.list[admin_pb2.Project]:
        return self._run(self._keys.list_projects())

    def update_project_sync(
        self, project_id: str, *, name: str | None = None, limits: KeyLimits | None = None
    ) -> admin_pb2.Project:
        return self._run(self._keys.update_project(project_id, name=name, limits=limits))

    def month_totals(
        self, year: int, month: int, *, key_id: str | None = None
    ) -> builtins.list[KeyTotals]:
        return self._run(self._usage.month_totals(year, month, key_id=key_id))

    def usage_by(
        self,
        group: str,
        start: float,
        end: float,
        *,
        key_id: str | None = None,
        project_id: str | None = None,
    ) -> builtins.list[UsageTotals]:
        return self._run(
            self._usage.usage_by(group, start, end, key_id=key_id, project_id=project_id)
        )


@contextlib.contextmanager
def open_blocking(
    config: Config, store: StoreConfig, data_dir: Path
) -> Iterator[tuple[BlockingKeys, BlockingUsage]]:
    """The configured backend's keys and usage for one CLI command (``store`` is
    ``store_settings(config, env)``)."""
    if not store.distributed:
        keys = SqliteKeyStore(data_dir)
        try:
            yield keys, _EmbeddedUsage(data_dir)
        finally:
            keys.close()
        return
    from server.store.distributed.postgres import open_postgres

    assert store.database_url is not None
    with asyncio.Runner() as runner:
        pg = runner.run(open_postgres(store.database_url, store.database_schema))
        try:
            both = _OnLoop(runner, pg.keys, pg.ledger)
            yield both, both
        finally:
            runner.run(pg.aclose())
