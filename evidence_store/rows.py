"""Database rows <-> Record, Outcome and Retirement values, the same for both dialects."""

from __future__ import annotations

import json

from evidence_store.chain import canonical_text, field_values
from evidence_store.records import Outcome, Record, Retirement, phash_hex

# Column order of SELECTs and INSERTs. `case` is an SQL keyword, hence the column name case_id.
RECORD_COLUMNS = ("seq", "id", "created_at", "kind", "external_id", "subject", "location", "case_id", "note",
                  "verdict", "score", "thresholds", "model_name", "model_version", "image_sha256", "image_width",
                  "image_height", "quality", "phash", "product", "prev_hash", "record_hash")
OUTCOME_COLUMNS = ("seq", "id", "record_id", "created_at", "label", "note", "subject", "prev_hash", "record_hash")
RETIREMENT_COLUMNS = ("seq", "id", "record_id", "image_sha256", "created_at", "reason", "subject", "prev_hash",
                      "record_hash")
RECORD_SELECT = "SELECT " + ", ".join(RECORD_COLUMNS) + " FROM records"
OUTCOME_SELECT = "SELECT " + ", ".join(OUTCOME_COLUMNS) + " FROM outcomes"
RETIREMENT_SELECT = "SELECT " + ", ".join(RETIREMENT_COLUMNS) + " FROM retirements"


def record_from_row(row, outcomes: tuple[Outcome, ...] = (), retired_at: str | None = None) -> Record:
    values = dict(zip(RECORD_COLUMNS, row))
    values["case"] = values.pop("case_id")
    values["thresholds"] = json.loads(values["thresholds"])
    values["quality"] = json.loads(values["quality"])
    values["phash"] = int(values["phash"], 16)
    return Record(**values, outcomes=outcomes, retired_at=retired_at)


def record_row(record: Record) -> tuple:
    values = field_values(record)
    values["case_id"] = values.pop("case")
    # The stored JSON is the hashed JSON, so a row reads back to exactly what was hashed.
    values["thresholds"] = canonical_text(record.thresholds)
    values["quality"] = canonical_text(record.quality)
    values["phash"] = phash_hex(record.phash)
    return tuple(values[column] for column in RECORD_COLUMNS)


def outcome_from_row(row) -> Outcome:
    return Outcome(**dict(zip(OUTCOME_COLUMNS, row)))


def outcome_row(outcome: Outcome) -> tuple:
    return _plain_row(outcome, OUTCOME_COLUMNS)


def retirement_from_row(row) -> Retirement:
    return Retirement(**dict(zip(RETIREMENT_COLUMNS, row)))


def retirement_row(retirement: Retirement) -> tuple:
    return _plain_row(retirement, RETIREMENT_COLUMNS)


def _plain_row(entry: Outcome | Retirement, columns: tuple[str, ...]) -> tuple:
    values = field_values(entry)
    return tuple(values[column] for column in columns)


def insert_sql(table: str, columns: tuple[str, ...]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"
