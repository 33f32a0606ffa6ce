"""SQLite backend (the default): one file, WAL, synchronous=FULL, one writer at a time.

Connections come from a small pool, each used by one thread at a time, so the API's threadpool can read
concurrently (WAL readers never block the writer or each other). Writers queue on a process-wide lock
before BEGIN IMMEDIATE: in-process writers then wait in order instead of spinning in SQLite's busy
handler, and BEGIN IMMEDIATE (with busy_timeout) still serialises writers in other processes, such as a
second server worker or the CLI exporting while the server runs.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from evidence_store.db import Database, Pool, Tx
from evidence_store.errors import StoreUnavailable

# Primary result codes (https://sqlite.org/rescode.html) that mean the database cannot serve right now:
# BUSY, LOCKED, NOMEM, READONLY, IOERR, CORRUPT, FULL, CANTOPEN, PROTOCOL, NOTADB.
_OUTAGES = {5, 6, 7, 8, 10, 11, 13, 14, 15, 26}


class SqliteTx(Tx):
    dialect = "sqlite"

    def _execute(self, sql: str, params: tuple):
        return self.connection.execute(sql, params)

    def stream(self, sql: str, params: tuple = ()) -> Iterator[tuple]:
        yield from self.connection.execute(sql, params)

    def chain_head(self) -> tuple[int, str]:
        # Inside BEGIN IMMEDIATE this transaction already holds the database's only write lock.
        return self.one("SELECT seq, hash FROM chain_head WHERE id = 1")

    def lock_migrations(self) -> None:
        pass  # BEGIN IMMEDIATE holds the write lock


class SqliteDatabase(Database):
    dialect = "sqlite"

    def __init__(self, path: Path, *, pool_size: int = 8, timeout: float = 30.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._timeout = timeout
        self._writer = threading.Lock()
        self._pool = Pool(self._connect, size=pool_size, timeout=timeout,
                          healthy=lambda connection: not connection.in_transaction, close=lambda c: c.close())

    def is_unavailable(self, error: BaseException) -> bool:
        # Busy, locked, disk full, I/O error, cannot open, corrupt: outages. Integrity errors and SQL errors
        # (SQLITE_ERROR: no such table...) are bugs and propagate as they are.
        if not isinstance(error, sqlite3.DatabaseError):
            return False
        code = getattr(error, "sqlite_errorcode", None)
        if code is None:  # raised without a code (by hand): trust the class
            return isinstance(error, sqlite3.OperationalError)
        return code & 0xFF in _OUTAGES

    def _connect(self) -> sqlite3.Connection:
        # isolation_level=None: no implicit transactions; each read and write says BEGIN itself.
        connection = sqlite3.connect(self.path, timeout=self._timeout, isolation_level=None,
                                     check_same_thread=False)
        _use_wal(connection, self._timeout)
        connection.execute("PRAGMA synchronous = FULL")  # a commit is on disk when it returns
        connection.execute("PRAGMA foreign_keys = ON")
        connection.execute(f"PRAGMA busy_timeout = {int(self._timeout * 1000)}")
        return connection

    @contextmanager
    def read(self, *, snapshot: bool = False) -> Iterator[SqliteTx]:
        # In WAL mode every read transaction is a snapshot already.
        with self._pool.connection() as connection:
            connection.execute("BEGIN")
            try:
                yield SqliteTx(connection)
            finally:
                _rollback(connection)

    @contextmanager
    def write(self) -> Iterator[SqliteTx]:
        if not self._writer.acquire(timeout=self._timeout):
            raise StoreUnavailable(f"The evidence database stayed busy for {self._timeout:g} s.")
        try:
            with self._pool.connection() as connection:
                connection.execute("BEGIN IMMEDIATE")
                try:
                    yield SqliteTx(connection)
                    connection.execute("COMMIT")
                except BaseException:
                    _rollback(connection)
                    raise
        finally:
            self._writer.release()

    def close(self) -> None:
        self._pool.close()


def _use_wal(connection: sqlite3.Connection, timeout: float) -> None:
    """WAL mode is a property of the file: set once, by the first connection. Switching to it needs a lock
    that SQLite does not wait for (busy_timeout does not apply), so replicas opening a new database
    together retry here instead of failing with 'database is locked'."""
    deadline = time.monotonic() + timeout
    while connection.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        try:
            connection.execute("PRAGMA journal_mode = WAL")
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


def _rollback(connection: sqlite3.Connection) -> None:
    if connection.in_transaction:
        connection.execute("ROLLBACK")
