"""PostgreSQL backend (psycopg 3): several API replicas can share one database and still write one chain.

Appends serialise on the chain head row (SELECT ... FOR UPDATE, held until commit), so replicas take
turns at the chain: each sees the previous entry's hash before writing the next. Migrations serialise on
a transaction-level advisory lock. Connections come from a small pool; a broken one (server restarted)
is dropped and the next call connects afresh.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from evidence_store.db import Database, Pool, Tx

_MIGRATION_LOCK = 0x65766964656E6365 & 0x7FFFFFFFFFFFFFFF  # "evidence": any fixed bigint, the same everywhere


class PostgresTx(Tx):
    dialect = "postgresql"

    def __init__(self, connection, *, writing: bool) -> None:
        super().__init__(connection)
        self.writing = writing

    def _execute(self, sql: str, params: tuple):
        # The store's SQL has `?` placeholders and no literal `?` or `%`.
        return self.connection.execute(sql.replace("?", "%s"), params or None)

    def stream(self, sql: str, params: tuple = ()) -> Iterator[tuple]:
        # A server-side cursor: rows arrive in batches of itersize, not all at once.
        with self.connection.cursor(name=f"stream_{uuid.uuid4().hex}") as cursor:
            cursor.itersize = 1000
            cursor.execute(sql.replace("?", "%s"), params or None)
            yield from cursor

    def chain_head(self) -> tuple[int, str]:
        lock = " FOR UPDATE" if self.writing else ""
        return self.one("SELECT seq, hash FROM chain_head WHERE id = 1" + lock)

    def lock_migrations(self) -> None:
        self.run("SELECT pg_advisory_xact_lock(?)", (_MIGRATION_LOCK,))


class PostgresDatabase(Database):
    dialect = "postgresql"

    def __init__(self, url: str, *, pool_size: int = 4, timeout: float = 10.0) -> None:
        import psycopg  # only needed for this backend: `pip install psycopg[binary]`

        self._psycopg = psycopg
        self._url = url
        self._timeout = timeout
        self._pool = Pool(self._connect, size=pool_size, timeout=timeout, healthy=self._healthy,
                          close=lambda connection: connection.close())

    def is_unavailable(self, error: BaseException) -> bool:
        # OperationalError covers refused connections, restarts, disk full and out-of-resources errors.
        return isinstance(error, self._psycopg.OperationalError)

    def _connect(self):
        return self._psycopg.connect(self._url, autocommit=True, connect_timeout=max(1, int(self._timeout)))

    def _healthy(self, connection) -> bool:
        idle = self._psycopg.pq.TransactionStatus.IDLE
        return not connection.closed and not connection.broken and connection.info.transaction_status == idle

    @contextmanager
    def read(self, *, snapshot: bool = False) -> Iterator[PostgresTx]:
        with self._pool.connection() as connection, connection.transaction():
            if snapshot:  # verify and export walk the chain as of one moment
                connection.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield PostgresTx(connection, writing=False)

    @contextmanager
    def write(self) -> Iterator[PostgresTx]:
        with self._pool.connection() as connection, connection.transaction():
            yield PostgresTx(connection, writing=True)

    def close(self) -> None:
        self._pool.close()
