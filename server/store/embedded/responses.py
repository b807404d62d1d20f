"""The embedded ``ResponseStore``: stored responses in ``<data dir>/responses.db`` (SQLite).

One row per response: its id (primary key), the key that made it, when, and the
``switchboard.v1.StoredResponse`` message serialised. Every lookup filters on the key as well as
the id, so another key's response is simply not found. The work runs in a thread (bodies hold
whole conversations), on one connection behind a lock.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

from switchboard.v1 import chat_pb2

from server.store.embedded import sqlite as store


class SqliteResponseStore:
    """Implements ``server.core.state.ResponseStore`` over SQLite."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._conn = store.connect(data_dir, store.RESPONSES)
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SqliteResponseStore({str(self.data_dir)!r})"

    async def put(self, key_id: str, response: chat_pb2.StoredResponse) -> None:
        """Inserts the response (a duplicate id is an error: ids are never reused)."""
        body = response.SerializeToString()
        created = float(response.created or time.time())
        await asyncio.to_thread(
            self._execute,
            "INSERT INTO responses VALUES (?, ?, ?, ?)",
            (response.id, key_id, created, body),
        )

    async def get(self, key_id: str, response_id: str) -> chat_pb2.StoredResponse | None:
        """The key's response with this id, or None."""
        rows = await asyncio.to_thread(
            self._execute,
            "SELECT body FROM responses WHERE id = ? AND key_id = ?",
            (response_id, key_id),
        )
        if not rows:
            return None
        body = rows[0][0]
        assert isinstance(body, bytes)
        return chat_pb2.StoredResponse.FromString(body)

    async def delete(self, key_id: str, response_id: str) -> bool:
        """Deletes the key's response with this id; False when there was none."""
        rows = await asyncio.to_thread(
            self._execute,
            "DELETE FROM responses WHERE id = ? AND key_id = ? RETURNING id",
            (response_id, key_id),
        )
        return bool(rows)

    async def aclose(self) -> None:
        """Closes the connection."""
        with self._lock:
            self._conn.close()

    def _execute(self, sql: str, params: tuple[object, ...]) -> list[tuple[object, ...]]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()
