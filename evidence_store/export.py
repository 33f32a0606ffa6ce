"""Exports for investigators: CSV (one row per record) or JSON Lines (the chain itself, verifiable).

JSON Lines has one line per chain entry, records and outcomes, in seq order. Each line is the entry's
hashed fields plus prev_hash and record_hash, so anyone can re-check an export without this software:
    record_hash == sha256(prev_hash + canonical JSON of the line without prev_hash and record_hash)
with canonical JSON = sorted keys, separators (",", ":"), UTF-8 (see chain.py). A record's `product` is in
the line (and hashed) only when it was recognised as one.
Photos, when exported, are metadata-free copies named <sha256>.jpg or .png in a folder of their own.
Once the retention policy has deleted a record's original, its JSON Lines entries still verify (a
"retirement" line, chained like the others, says when) and its CSV row has `retired_at` set and no image_file.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable
from dataclasses import asdict
from typing import TextIO

from evidence_store.chain import Chained, canonical_text, payload
from evidence_store.records import Record

FORMATS = ("csv", "jsonl")
CSV_COLUMNS = ("seq", "id", "created_at", "kind", "external_id", "subject", "location", "case", "note", "verdict",
               "score", "thresholds", "model_name", "model_version", "image_sha256", "image_width", "image_height",
               "quality", "phash", "product", "prev_hash", "record_hash", "outcome", "outcomes", "image_file",
               "retired_at")


def write_csv(records: Iterable[Record], out: TextIO, image_file: Callable[[Record], str] | None = None) -> int:
    """One row per record; dicts and the outcome history as canonical JSON. The number of rows."""
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    count = 0
    for record in records:
        values = record.to_dict()
        values["thresholds"], values["quality"] = canonical_text(record.thresholds), canonical_text(record.quality)
        values["outcome"] = record.outcome or ""
        values["outcomes"] = canonical_text([asdict(o) for o in record.outcomes])
        values["image_file"] = image_file(record) if image_file else ""
        writer.writerow(["" if values[column] is None else values[column] for column in CSV_COLUMNS])
        count += 1
    return count


def write_jsonl(entries: Iterable[Chained], out: TextIO) -> int:
    """One line per chain entry. The number of lines."""
    count = 0
    for entry in entries:
        line = {**payload(entry), "prev_hash": entry.prev_hash, "record_hash": entry.record_hash}
        out.write(canonical_text(line) + "\n")
        count += 1
    return count
