"""open_store(): the backend a database URL names."""

from __future__ import annotations

from pathlib import Path

from evidence_store.store import EvidenceStore
from inference.images import Limits

SQLITE_FILE = "evidence.sqlite3"


def open_store(database_url: str | None, data_dir: str | Path, *, limits: Limits = Limits(),
               pool_size: int | None = None) -> EvidenceStore:
    """The evidence store for a URL, migrated to the current schema; originals go to data_dir/originals.

    None, "" or "sqlite://": SQLite in data_dir/evidence.sqlite3. "sqlite:///relative/file" or
    "sqlite:////absolute/file": SQLite there. "postgresql://user@host/db" (or postgres://,
    postgresql+psycopg://): PostgreSQL; data_dir must then be storage all replicas share."""
    data_dir = Path(data_dir)
    if not database_url or database_url.startswith("sqlite:"):
        database = _sqlite(database_url, data_dir, pool_size)
    elif database_url.partition("://")[0] in ("postgresql", "postgres", "postgresql+psycopg"):
        from evidence_store.postgres import PostgresDatabase

        database = PostgresDatabase("postgresql://" + database_url.partition("://")[2], pool_size=pool_size or 4)
    else:
        raise ValueError(f"Unsupported evidence database URL {_redacted(database_url)!r}: use sqlite:///FILE or "
                         "postgresql://USER@HOST/DB (or leave it unset for SQLite in the data folder).")
    try:
        return EvidenceStore(database, data_dir, limits=limits)
    except BaseException:
        database.close()
        raise


def _sqlite(url: str | None, data_dir: Path, pool_size: int | None):
    from evidence_store.sqlite import SqliteDatabase

    path = (url or "").removeprefix("sqlite:").removeprefix("//").removeprefix("/")
    if url and not url.startswith("sqlite://"):
        raise ValueError(f"A SQLite URL looks like sqlite:///relative/file or sqlite:////absolute/file, got {url!r}")
    return SqliteDatabase(Path(path) if path else data_dir / SQLITE_FILE, pool_size=pool_size or 8)


def _redacted(url: str) -> str:
    """The URL without its password, for error messages."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    return f"{scheme}{sep}{credentials.split(':')[0]}:***@{host}" if at and ":" in credentials else url
