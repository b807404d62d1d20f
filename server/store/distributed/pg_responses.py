"""The distributed ``ResponseStore``: stored responses in PostgreSQL's ``responses`` table.

One row per response: its id (primary key), the key that made it, when, and the
``switchboard.v1.StoredResponse`` message serialised, as in the embedded store
(``server/store/embedded/responses.py``). Every lookup filters on the key as well as the id, so
another key's response is simply not found. A delete clears the body but keeps the row, so an
id, once used, is never accepted again (the primary key refuses it).
"""

from __future__ import annotations

import time

import asyncpg
from switchboard.v1 import chat_pb2

from server.core.errors import FailedPreconditionError
from server.store.distributed.pg_pool import PoolHandle, reachable

STORE = "the response store"


class PgResponseStore:
    """Implements ``server.core.state.ResponseStore`` over PostgreSQL."""

    def __init__(self, handle: PoolHandle) -> None:
        self._handle = handle
        self._pool = handle.pool
        self._closed = False

    def __repr__(self) -> str:
        return f"PgResponseStore({self._handle!r})"

    async def put(self, key_id: str, response: chat_pb2.StoredResponse) -> None:
        """Inserts the response; an id used before (even if deleted since) is refused."""
        body = response.SerializeToString()
        created = float(response.created or time.time())
        try:
            with reachable(STORE):
                await self._pool.execute(
                    "INSERT INTO responses (id, key_id, create_time, body) VALUES ($1, $2, $3, $4)",
                    response.id,
                    key_id,
                    created,
                    body,
                )
        except asyncpg.UniqueViolationError:
            raise FailedPreconditionError(
                f"A response with the id {response.id!r} was stored before.", param="id"
            ) from None

    async def get(self, key_id: str, response_id: str) -> chat_pb2.StoredResponse | None:
        """The key's response with this id, or None."""
        with reachable(STORE):
            body = await self._pool.fetchval(
                "SELECT body FROM responses WHERE id = $1 AND key_id = $2 AND body IS NOT NULL",
                response_id,
                key_id,
            )
        return None if body is None else chat_pb2.StoredResponse.FromString(body)

    async def delete(self, key_id: str, response_id: str) -> bool:
        """Deletes the key's response with this id; False when there was none."""
        with reachable(STORE):
            deleted = await self._pool.fetchval(
                "UPDATE responses SET body = NULL "
                "WHERE id = $1 AND key_id = $2 AND body IS NOT NULL RETURNING id",
                response_id,
                key_id,
            )
        return deleted is not None

    async def aclose(self) -> None:
        """Releases the shared pool."""
        if not self._closed:
            self._closed = True
            await self._handle.release()
