"""What the store needs from a database, and a small connection pool shared by both dialects.

The store writes its SQL once, with `?` placeholders; a Tx runs it on one connection inside one
transaction, translating placeholders where the driver wants `%s`.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

from evidence_store.errors import StoreUnavailable


class Tx(ABC):
    """One transaction on one connection."""

    dialect: str

    def __init__(self, connection) -> None:
        self.connection = connection

    def all(self, sql: str, params: tuple = ()) -> list[tuple]:
        return list(self._execute(sql, params).fetchall())

    def one(self, sql: str, params: tuple = ()) -> tuple | None:
        return self._execute(sql, params).fetchone()

    def run(self, sql: str, params: tuple = ()) -> None:
        self._execute(sql, params)

    @abstractmethod
    def _execute(self, sql: str, params: tuple):
        """A cursor that has run sql."""

    @abstractmethod
    def stream(self, sql: str, params: tuple = ()) -> Iterator[tuple]:
        """Rows one by one without holding them all in memory."""

    @abstractmethod
    def chain_head(self) -> tuple[int, str]:
        """(seq, hash) of the newest chain entry; in a write transaction, locked until commit."""

    @abstractmethod
    def lock_migrations(self) -> None:
        """Make concurrent migrators wait for this transaction."""


class Database(ABC):
    """A backend: transactions on pooled connections, and which of its errors mean 'unavailable'."""

    dialect: str

    @abstractmethod
    def is_unavailable(self, error: BaseException) -> bool:
        """True for the driver's errors that mean 'down, full or locked', not 'wrong SQL or data'."""

    @abstractmethod
    def read(self, *, snapshot: bool = False) -> AbstractContextManager[Tx]:
        """A read transaction; with snapshot, every statement sees the same committed state."""

    @abstractmethod
    def write(self) -> AbstractContextManager[Tx]:
        """A write transaction, committed on exit, rolled back on error."""

    @abstractmethod
    def close(self) -> None:
        ...


class Pool:
    """At most `size` connections, each used by one thread at a time, kept for reuse while healthy.

    Waiting longer than `timeout` for a free connection is StoreUnavailable: a request that cannot get a
    connection in that time should fail fast with 503 instead of piling up behind the others."""

    def __init__(self, connect: Callable[[], object], *, size: int, timeout: float,
                 healthy: Callable[[object], bool], close: Callable[[object], None]) -> None:
        self._connect, self._healthy, self._close_one = connect, healthy, close
        self._slots = threading.BoundedSemaphore(size)
        self._idle: list = []
        self._lock = threading.Lock()
        self._timeout = timeout
        self._closed = False

    @contextmanager
    def connection(self):
        if self._closed:
            raise StoreUnavailable("The evidence store is closed.")
        if not self._slots.acquire(timeout=self._timeout):
            raise StoreUnavailable(f"No database connection became free within {self._timeout:g} s.")
        connection = None
        try:
            connection = self._take() or self._connect()
            yield connection
        finally:
            if connection is not None:
                self._give_back(connection)
            self._slots.release()

    def close(self) -> None:
        with self._lock:
            self._closed, idle, self._idle = True, self._idle, []
        for connection in idle:
            self._close_one(connection)

    def _take(self):
        with self._lock:
            return self._idle.pop() if self._idle else None

    def _give_back(self, connection) -> None:
        with self._lock:
            keep = not self._closed and self._healthy(connection)
            if keep:
                self._idle.append(connection)
        if not keep:
            self._close_one(connection)
