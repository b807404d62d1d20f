"""The PostgreSQL schema of the distributed backend, as numbered migrations applied on open.

``schema_migrations`` records each version applied. Opening takes a transaction-scoped
advisory lock on the schema's name first, so replicas starting at once against an empty
database queue up: the first creates everything, the others find every version recorded and
apply nothing. Each migration runs in that same transaction, so a failure leaves no half of it.

Columns mirror the embedded SQLite files (``server/store/embedded/sqlite.py`` and
``ledger.py``) so the shared row helpers (``server/store/keyrows.py``) read both: times are
Unix seconds (``float8``), money integer nano-USD, ``allowed_models`` a JSON array ('' for any).
"""

from __future__ import annotations

import asyncpg

# Append-only: never edit a migration that has shipped; entry i is version i + 1.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE projects (
        id text PRIMARY KEY,
        name text NOT NULL,
        create_time float8 NOT NULL,
        requests_per_minute bigint,
        tokens_per_minute bigint,
        monthly_budget_usd float8
    );
    CREATE INDEX projects_create_time ON projects (create_time, id);

    CREATE TABLE gateway_keys (
        id text PRIMARY KEY,
        name text NOT NULL,
        prefix text NOT NULL,
        key_hash text NOT NULL UNIQUE,
        create_time float8 NOT NULL,
        revoke_time float8,
        requests_per_minute bigint,
        tokens_per_minute bigint,
        monthly_budget_usd float8,
        env text NOT NULL DEFAULT '',
        project_id text REFERENCES projects (id),
        allowed_models text NOT NULL DEFAULT '',
        max_concurrent bigint,
        expire_time float8,
        rotate_time float8
    );
    CREATE INDEX gateway_keys_create_time ON gateway_keys (create_time, id);
    CREATE INDEX gateway_keys_project ON gateway_keys (project_id);

    -- Secrets replaced by a rotation, until their grace ends (the key's previous secrets).
    CREATE TABLE key_secrets (
        key_hash text PRIMARY KEY,
        key_id text NOT NULL REFERENCES gateway_keys (id),
        expire_time float8 NOT NULL
    );
    CREATE INDEX key_secrets_key_id ON key_secrets (key_id);

    -- One row per request. row_id is the idempotency key of a write: the caller's, or one
    -- generated when the row was recorded (row_id_generated), so a retried batch counts once.
    CREATE TABLE usage (
        id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        time float8 NOT NULL,
        request_id text NOT NULL,
        key_id text NOT NULL,
        transport text NOT NULL,
        model text NOT NULL,
        route text NOT NULL,
        provider text NOT NULL,
        upstream_model text NOT NULL,
        deployment text NOT NULL,
        stream boolean NOT NULL,
        outcome text NOT NULL,
        status integer NOT NULL,
        attempts integer NOT NULL,
        input_tokens bigint NOT NULL,
        output_tokens bigint NOT NULL,
        cached_input_tokens bigint NOT NULL,
        cache_write_tokens bigint NOT NULL,
        reasoning_tokens bigint NOT NULL,
        input_nanousd bigint NOT NULL,
        output_nanousd bigint NOT NULL,
        cached_input_nanousd bigint NOT NULL,
        cache_write_nanousd bigint NOT NULL,
        total_nanousd bigint NOT NULL,
        latency_ms float8 NOT NULL,
        row_id text NOT NULL UNIQUE,
        project_id text,
        row_id_generated boolean NOT NULL DEFAULT false
    );
    -- The usage queries: a time window (month spend, the dashboard's newest rows, which also
    -- order by id), one key's or one project's rows in a window.
    CREATE INDEX usage_time ON usage (time, id);
    CREATE INDEX usage_key_time ON usage (key_id, time);
    CREATE INDEX usage_project_time ON usage (project_id, time);

    -- A deleted response keeps its row with body NULL: its id is never reused.
    CREATE TABLE responses (
        id text PRIMARY KEY,
        key_id text NOT NULL,
        create_time float8 NOT NULL,
        body bytea
    );
    CREATE INDEX responses_create_time ON responses (create_time);
    """,
)

# pg_advisory_xact_lock(class, id): the class keeps Switchboard's locks apart from others'.
_LOCK_CLASS = 0x5B0A


async def migrate(conn: asyncpg.Connection, schema: str) -> list[int]:
    """Creates ``schema`` if missing and applies the migrations it lacks; returns the versions
    applied here (empty when another process had applied them). ``schema`` must have passed
    ``pg_pool.check_schema`` (it is put into SQL as is)."""
    applied: list[int] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", _LOCK_CLASS, schema)
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        await conn.execute(
            f"CREATE TABLE IF NOT EXISTS {schema}.schema_migrations ("
            "version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {
            row[0] for row in await conn.fetch(f"SELECT version FROM {schema}.schema_migrations")
        }
        for version, sql in enumerate(MIGRATIONS, start=1):
            if version in done:
                continue
            await conn.execute(sql)
            await conn.execute(
                f"INSERT INTO {schema}.schema_migrations (version) VALUES ($1)", version
            )
            applied.append(version)
    return applied
