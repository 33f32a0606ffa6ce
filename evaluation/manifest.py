"""Listing manifests for bulk screening: rows of (id, image location) streamed from CSV, JSON lines or Parquet.

The format is told by the file's suffix. Rows are read a few at a time (never the whole manifest): a
manifest of millions of rows costs no more memory than one of ten."""

from __future__ import annotations

import csv
import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

MANIFEST_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
PARQUET_BATCH_ROWS = 4096  # rows per Parquet read: a few hundred kB of ids and locations


class ManifestError(ValueError):
    """The manifest as a whole cannot be screened (missing file or column, an id missing or repeated)."""


class MissingExtra(RuntimeError):
    """An optional dependency (pyarrow, ray, fsspec) is not installed."""


@dataclass(frozen=True)
class Row:
    id: str
    image: str  # as the manifest gives it: a path (relative to the manifest's folder) or a URL; "" when missing


def manifest_format(path: Path) -> str | None:
    """"csv", "jsonl" or "parquet" for a manifest file name; None for anything else (an image, a folder)."""
    return MANIFEST_FORMATS.get(Path(path).suffix.lower())


def require_pyarrow():
    """pyarrow.parquet, or MissingExtra saying how to install it (the `bulk` extra)."""
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise MissingExtra("Parquet needs pyarrow, which is not installed: pip install 'counterfeit-detector[bulk]' "
                           "(or use .csv / .jsonl)") from exc
    return pq


def read_rows(path: Path, id_column: str = "id", image_column: str = "image") -> Iterator[Row]:
    """The manifest's rows, in order. ManifestError for a row without an id (the output and resume are
    keyed by it); a row without an image location comes with image "" (screened as an error row)."""
    for number, record in enumerate(_records(Path(path), (id_column, image_column)), start=1):
        yield to_row(record, number, id_column, image_column)


def to_row(record: dict, number: int, id_column: str, image_column: str) -> Row:
    if not isinstance(record, dict):
        raise ManifestError(f"manifest row {number} is not an object with columns {id_column!r} and {image_column!r}")
    key, image = record.get(id_column), record.get(image_column)
    if key is None or str(key).strip() == "":
        raise ManifestError(f"manifest row {number} has no {id_column!r}: every row needs an id (the output and "
                            "resuming are keyed by it); choose the column with --id-column")
    return Row(id=str(key), image="" if image is None else str(image).strip())


def _records(path: Path, columns: tuple[str, str]) -> Iterator[dict]:
    kind = manifest_format(path)
    if not path.is_file():
        raise ManifestError(f"no such manifest: {path}")
    if kind == "csv":
        return _csv_records(path, columns)
    if kind == "jsonl":
        return _jsonl_records(path)
    return _parquet_records(path, columns)


def _csv_records(path: Path, columns: tuple[str, str]) -> Iterator[dict]:
    with path.open(newline="", encoding="utf-8-sig") as handle:  # -sig: spreadsheets often write a BOM
        reader = csv.DictReader(handle)
        with _readable(path, "a CSV file"):
            _check_columns(path, reader.fieldnames or [], columns)
        while True:
            with _readable(path, "a CSV file"):
                record = next(reader, None)
            if record is None:
                return
            yield record


@contextmanager
def _readable(path: Path, what: str):
    """A manifest that is not text (binary, another encoding) or has a field over the csv module's limit
    (128 KiB) -> ManifestError naming the file, not a traceback (issue 24)."""
    try:
        yield
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{path.name} is not UTF-8 text (byte {exc.start} of a read): save it as UTF-8 "
                            f"{what}") from exc
    except csv.Error as exc:  # e.g. "field larger than field limit (131072)"
        raise ManifestError(f"{path.name} is not {what} this tool reads: {exc}") from exc


def _jsonl_records(path: Path) -> Iterator[dict]:
    with path.open(encoding="utf-8") as handle:
        for number, line in _lines(path, handle):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as exc:
                raise ManifestError(f"{path.name} line {number} is not JSON ({exc.msg}): one object per line, "
                                    'e.g. {"id": "a1", "image": "https://…/a1.jpg"}') from exc
            except RecursionError:  # 100,000 nested arrays: no manifest row is built like that
                raise ManifestError(f"{path.name} line {number} nests too deeply: one flat object per line, "
                                    'e.g. {"id": "a1", "image": "https://…/a1.jpg"}') from None


def _lines(path: Path, handle) -> Iterator[tuple[int, str]]:
    number = 0
    while True:
        with _readable(path, "a JSON lines file"):
            line = handle.readline()
        if not line:
            return
        number += 1
        yield number, line


def _parquet_records(path: Path, columns: tuple[str, str]) -> Iterator[dict]:
    pq = require_pyarrow()
    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several kinds for a file that is no Parquet
        raise ManifestError(f"{path.name} is not a readable Parquet file: {exc}") from exc
    _check_columns(path, parquet.schema_arrow.names, columns)
    for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS, columns=list(columns)):
        yield from batch.to_pylist()


def _check_columns(path: Path, names, columns: tuple[str, str]) -> None:
    missing = [c for c in columns if c not in names]
    if missing:
        raise ManifestError(f"{path.name} has no column {missing[0]!r} (it has: {', '.join(names) or 'none'}); "
                            "name the columns with --id-column / --image-column")


def count_rows(path: Path, id_column: str, image_column: str, done: set[str]) -> tuple[int, int]:
    """One streamed pass -> (rows, rows whose id is in `done`). ManifestError for a missing or repeated id,
    before anything is screened: a repeated id would make resuming ambiguous."""
    seen: set[str] = set()
    skipped = 0
    for number, row in enumerate(read_rows(path, id_column, image_column), start=1):
        if row.id in seen:
            raise ManifestError(f"manifest row {number} repeats the id {row.id!r}: ids must be unique (the output "
                                "and resuming are keyed by them)")
        seen.add(row.id)
        skipped += row.id in done
    return len(seen), skipped
