"""Versioned schema migrations: an ordered list of plain SQL steps, applied once each, in order.

`schema_migrations` records which versions a database has. Applying is idempotent and runs in one
transaction under a lock (SQLite: the write lock; PostgreSQL: an advisory lock), so replicas starting
together migrate once. A database migrated by newer code is refused rather than written to.

Each step is written once with {INT}/{REAL}/{BLOB} type placeholders and rendered per dialect; a step
that must differ between dialects gives a dict {dialect: sql} instead. Never edit a released step:
append a new one.
"""

from __future__ import annotations

from dataclasses import dataclass

from evidence_store.chain import GENESIS
from evidence_store.errors import SchemaTooNew

_TYPES = {
    "sqlite": {"INT": "INTEGER", "REAL": "REAL", "BLOB": "BLOB"},
    "postgresql": {"INT": "BIGINT", "REAL": "DOUBLE PRECISION", "BLOB": "BYTEA"},
}


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str | dict[str, str]

    def statements(self, dialect: str) -> list[str]:
        text = self.sql[dialect] if isinstance(self.sql, dict) else self.sql.format(**_TYPES[dialect])
        return [statement.strip() for statement in text.split(";") if statement.strip()]


_IDENTITY_TABLE = "CREATE TABLE store_identity (id {INT} PRIMARY KEY CHECK (id = 1), store_id TEXT NOT NULL)"

MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "records, outcomes and the chain head", f"""
        CREATE TABLE chain_head (
            id {{INT}} PRIMARY KEY CHECK (id = 1),
            seq {{INT}} NOT NULL,
            hash TEXT NOT NULL
        );
        INSERT INTO chain_head (id, seq, hash) VALUES (1, 0, '{GENESIS}');
        CREATE TABLE records (
            seq {{INT}} PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            created_at TEXT NOT NULL,
            kind TEXT NOT NULL,
            external_id TEXT,
            subject TEXT NOT NULL,
            location TEXT,
            case_id TEXT,
            note TEXT,
            verdict TEXT NOT NULL,
            score {{REAL}},
            thresholds TEXT NOT NULL,
            model_name TEXT NOT NULL,
            model_version TEXT NOT NULL,
            image_sha256 TEXT NOT NULL,
            image_width {{INT}} NOT NULL,
            image_height {{INT}} NOT NULL,
            quality TEXT NOT NULL,
            phash TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            record_hash TEXT NOT NULL
        );
        CREATE INDEX records_created_at ON records (created_at);
        CREATE INDEX records_case ON records (case_id, seq);
        CREATE INDEX records_location ON records (location, seq);
        CREATE INDEX records_image ON records (image_sha256);
        CREATE TABLE outcomes (
            seq {{INT}} PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            record_id TEXT NOT NULL REFERENCES records (id),
            created_at TEXT NOT NULL,
            label TEXT NOT NULL,
            note TEXT,
            subject TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            record_hash TEXT NOT NULL
        );
        CREATE INDEX outcomes_record ON outcomes (record_id, seq);
        CREATE TABLE fingerprints (
            record_seq {{INT}} PRIMARY KEY REFERENCES records (seq),
            phashes TEXT NOT NULL,
            thumbnail {{BLOB}} NOT NULL
        )
    """),
    Migration(2, "embeddings for similarity search", """
        CREATE TABLE embeddings (
            n {INT} PRIMARY KEY,
            record_seq {INT} NOT NULL UNIQUE REFERENCES records (seq),
            dim {INT} NOT NULL,
            vector {BLOB} NOT NULL,
            created_at TEXT NOT NULL
        )
    """),
    Migration(3, "records by listing or seller id", """
        CREATE INDEX records_external_id ON records (external_id, seq)
    """),
    # A random id, made once per store, that published heads name: a head is checked against its own store.
    Migration(4, "the store's id, named by published chain heads", {
        "sqlite": _IDENTITY_TABLE.format(**_TYPES["sqlite"]) + """;
            INSERT INTO store_identity (id, store_id) VALUES (1, lower(hex(randomblob(16))))""",
        "postgresql": _IDENTITY_TABLE.format(**_TYPES["postgresql"]) + """;
            INSERT INTO store_identity (id, store_id) VALUES (1, md5(random()::text || clock_timestamp()::text))""",
    }),
    # Records from before keep NULL: their hashes never covered a product (chain.payload).
    Migration(5, "the catalogue product each photo was recognised as", """
        ALTER TABLE records ADD COLUMN product TEXT
    """),
    # Chain entries of their own (seq shared with records and outcomes, see chain.py); one per record at most.
    Migration(6, "retirements: originals deleted by the retention policy", """
        CREATE TABLE retirements (
            seq {INT} PRIMARY KEY,
            id TEXT NOT NULL UNIQUE,
            record_id TEXT NOT NULL UNIQUE REFERENCES records (id),
            image_sha256 TEXT NOT NULL,
            created_at TEXT NOT NULL,
            reason TEXT NOT NULL,
            subject TEXT NOT NULL,
            prev_hash TEXT NOT NULL,
            record_hash TEXT NOT NULL
        );
        CREATE INDEX retirements_image ON retirements (image_sha256)
    """),
)
RETIREMENTS = 6  # the schema version that has the retirements table
LATEST = MIGRATIONS[-1].version

_CREATE_TABLE = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)"""


def applied_versions(tx) -> list[int]:
    tx.run(_CREATE_TABLE)
    return sorted(version for (version,) in tx.all("SELECT version FROM schema_migrations"))


def apply(tx, *, target: int = LATEST, now: str) -> list[int]:
    """Bring the database inside transaction `tx` to `target`; the versions applied now (often none)."""
    tx.lock_migrations()
    done = applied_versions(tx)
    if done and done[-1] > LATEST:
        raise SchemaTooNew(f"The evidence database is at schema version {done[-1]}; this software knows up to "
                           f"{LATEST}. Upgrade the software: it must not write to a newer schema.")
    applied = []
    for migration in MIGRATIONS:
        if migration.version in done or migration.version > target:
            continue
        for statement in migration.statements(tx.dialect):
            tx.run(statement)
        tx.run("INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
               (migration.version, migration.name, now))
        applied.append(migration.version)
    return applied
