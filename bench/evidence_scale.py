"""Benchmark: the evidence store at the scale of a year at a port (default 1,000,000 records).

For each backend (SQLite; PostgreSQL where a throwaway server can be started, as the tests start one) a fresh
store is filled and measured:
  1. history: RECORDS - SAMPLE records spread over the past 365 days, written by a bulk fill that builds the
     same Record values, chain hashes (chain.entry_hash), rows (rows.record_row), fingerprints and
     embeddings as EvidenceStore.record(), committed in batches of 20,000 with the chain head advanced at
     each commit (SQLite: executemany; PostgreSQL: COPY). Not the API path: its throughput is labelled so.
     The records point at a pool of POOL real JPEG files (a million distinct 1600x1200 photos would be
     ~0.4 TB), each used by one stretch of time, as photos are; each record has a random perceptual hash,
     thumbnail and embedding of its own, as distinct photos would, so similar() is not flooded by copies;
  2. sample: SAMPLE records through the real EvidenceStore.record() (fingerprint, content-addressed fsync'd
     original, one transaction each), three photos per inspection, each photo a distinct 1600x1200 q90
     JPEG, each with an embedding: the insert throughput a live store sees;
  3. evidence verify over all records, with and without image checks (each distinct photo file hashed once),
     and with two anchored heads (published earlier: after the history and at the end);
  4. exports of every record, CSV and JSON lines;
  5. p50/p99 of 200 list queries (verdict + a 7-day window, page of 50) and of 200 similar() lookups (the
     first lookup, which loads the in-memory index, timed apart);
  6. database size per record and photo storage per inspection, with the per-year extrapolation;
  7. the retention policy retiring the oldest ~10% (older than 329 of 365 days), then verify again.

    .venv/bin/python bench/evidence_scale.py [--records N | --quick] [--backends sqlite,postgresql]
                                             [--dir SCRATCH] [--json PATH]

Everything is written under --dir (default: a new folder in /tmp) and deleted at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import shutil
import sqlite3
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # evidence_backends: the tests' throwaway PostgreSQL server and photos

from evidence_store import Head, open_store  # noqa: E402
from evidence_store.chain import entry_hash  # noqa: E402
from evidence_store.imaging import fingerprint  # noqa: E402
from evidence_store.neighbours import phashes_text  # noqa: E402
from evidence_store.records import Record, new_id, utc_text  # noqa: E402
from evidence_store.rows import RECORD_COLUMNS, insert_sql, record_row  # noqa: E402
from inference.images import Limits  # noqa: E402
from inference.phash import THUMBNAIL_SIDE  # noqa: E402

QUICK_RECORDS = 20_000
FILL_BATCH = 20_000  # records per bulk-fill transaction
PHOTOS_PER_INSPECTION = 3  # e.g. front, back and barcode of one seized item
PHOTO_SIZE, PHOTO_QUALITY = (1600, 1200), 90  # a phone photo as the app uploads it
DIM = 576  # embedding size of mobilenet_v3_small's pooled features (as bench/similar.py)
YEAR_S = 365 * 24 * 3600
RETAIN_DAYS = 329  # of 365 days of history: the oldest ~10% are retired
QUERIES = 200
VERDICTS = ("genuine", "counterfeit", "retake")
LOCATIONS = ("NLRTM gate 1", "NLRTM gate 4", "BEANR quay 7", "DEHAM terminal 2")
THRESHOLDS = {"low": 0.2, "high": 0.8}
QUALITY = {"ok": True, "reasons": [], "message": "Looks good.", "measures": {"sharpness": 812.5, "brightness": 0.48}}


# --------------------------------------------------------------------------- photos


def make_photos(count: int, seed: int) -> list[bytes]:
    """Distinct 1600x1200 q90 JPEGs from the project's photo generator: a few rendered scenes, each copy
    shifted, relit and with its own sensor-like noise (which is what makes a JPEG as large as a phone's)."""
    from evidence_backends import synth_photo

    rng = np.random.default_rng(seed)
    scenes = [np.asarray(synth_photo(product, shot, size=PHOTO_SIZE), np.int16)
              for product, shot in [(0, 0), (1, 1), (2, 2), (3, 3)]]
    noise = rng.normal(0, 3, (PHOTO_SIZE[1] + 64, PHOTO_SIZE[0] + 64, 3)).astype(np.int16)
    photos = []
    for index in range(count):
        dy, dx = rng.integers(0, 64, 2)
        pixels = np.roll(scenes[index % len(scenes)], (int(dy) - 32, int(dx) - 32), axis=(0, 1))
        pixels = pixels + noise[dy:dy + PHOTO_SIZE[1], dx:dx + PHOTO_SIZE[0]] + int(rng.integers(-12, 13))
        buffer = io.BytesIO()
        Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(buffer, "JPEG", quality=PHOTO_QUALITY)
        photos.append(buffer.getvalue())
    return photos


# --------------------------------------------------------------------------- filling


def record_fields(seq: int, rng: np.random.Generator) -> dict:
    """record() arguments of one synthetic inspection photo: three photos per inspection share a case."""
    verdict = VERDICTS[int(rng.choice(3, p=(0.6, 0.3, 0.1)))]
    inspection = seq // PHOTOS_PER_INSPECTION
    return {"kind": "inspection", "subject": f"inspector-{inspection % 40}", "verdict": verdict,
            "score": None if verdict == "retake" else float(rng.random()), "thresholds": THRESHOLDS,
            "model_name": "reference", "model_version": "3f2a9c1d0b7e4a65", "quality": QUALITY,
            "location": LOCATIONS[inspection % len(LOCATIONS)], "case": f"CASE-{inspection}", "note": None,
            "external_id": None}


def history_batch(first: int, count: int, total: int, pool: list[tuple[str, object]], start: datetime,
                  prev_hash: str, rng: np.random.Generator) -> tuple[list, list, list, str]:
    """Rows of records first..first+count-1 (of `total`, spread over the year from `start`), their
    fingerprints and embeddings, chained after prev_hash exactly as EvidenceStore.record() chains them."""
    records, fingerprints, embeddings = [], [], []
    vectors = rng.standard_normal((count, DIM), dtype=np.float32)
    for offset in range(count):
        seq = first + offset
        sha256, facts = pool[(seq - 1) * len(pool) // total]  # each pool photo covers one stretch of time
        created_at = utc_text(start + timedelta(seconds=YEAR_S * (seq - 1) / total))
        phashes = tuple(int(value) for value in rng.integers(0, 2**63, 8, dtype=np.int64))
        record = Record(seq=seq, id=new_id(), created_at=created_at, **record_fields(seq, rng),
                        image_sha256=sha256, image_width=facts.width, image_height=facts.height, phash=phashes[0],
                        prev_hash=prev_hash)
        record = replace(record, record_hash=entry_hash(prev_hash, record))
        prev_hash = record.record_hash
        records.append(record_row(record))
        fingerprints.append((seq, phashes_text(phashes), rng.bytes(THUMBNAIL_SIDE * THUMBNAIL_SIDE * 3)))
        embeddings.append((seq, seq, DIM, vectors[offset].tobytes(), created_at))
    return records, fingerprints, embeddings, prev_hash


def insert_many(tx, table: str, columns: tuple[str, ...], rows: list[tuple]) -> None:
    if tx.dialect == "sqlite":
        tx.connection.executemany(insert_sql(table, columns), rows)
        return
    with tx.connection.cursor() as cursor, cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def fill_history(store, total: int, pool_photos: list[bytes], rng: np.random.Generator) -> float:
    """Write `total` records of the past year as described in the module docstring; seconds taken."""
    limits = Limits()
    pool = []
    for data in pool_photos:  # the real files, stored as record() stores them
        store._blobs.put(_sha(data), data)
        pool.append((_sha(data), fingerprint(data, limits)))
    start = datetime.now(timezone.utc) - timedelta(seconds=YEAR_S + 3600)
    started, prev_hash = time.perf_counter(), store.head().hash
    for first in range(1, total + 1, FILL_BATCH):
        count = min(FILL_BATCH, total + 1 - first)
        records, fingerprints, embeddings, prev_hash = history_batch(first, count, total, pool, start, prev_hash, rng)
        with store._db.write() as tx:
            insert_many(tx, "records", RECORD_COLUMNS, records)
            insert_many(tx, "fingerprints", ("record_seq", "phashes", "thumbnail"), fingerprints)
            insert_many(tx, "embeddings", ("n", "record_seq", "dim", "vector", "created_at"), embeddings)
            tx.run("UPDATE chain_head SET seq = ?, hash = ? WHERE id = 1", (first + count - 1, prev_hash))
        print(f"  history: {first + count - 1:,}/{total:,} records", end="\r", flush=True)
    print()
    return time.perf_counter() - started


def _sha(data: bytes) -> str:
    from evidence_store.blobs import sha256_hex

    return sha256_hex(data)


def record_sample(store, photos: list[bytes], first_seq: int, rng: np.random.Generator) -> float:
    """Each photo through the real record() path, with an embedding; seconds taken."""
    started = time.perf_counter()
    for index, data in enumerate(photos):
        store.record(image_bytes=data, **record_fields(first_seq + index, rng),
                     embedding=rng.standard_normal(DIM, dtype=np.float32))
    return time.perf_counter() - started


# --------------------------------------------------------------------------- measuring


def timed(call, *args, **kwargs) -> tuple[object, float]:
    started = time.perf_counter()
    result = call(*args, **kwargs)
    return result, time.perf_counter() - started


def percentiles(seconds: list[float]) -> dict:
    ms = np.asarray(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 2), "p99_ms": round(float(np.percentile(ms, 99)), 2)}


def checked_verify(store, **options) -> float:
    report, seconds = timed(store.verify, **options)
    if not report.ok:
        raise SystemExit(f"verify failed ({options}): {report.first_bad}")
    return seconds


def measure_verify(store, anchors: list[Head]) -> dict:
    return {"verify_s": checked_verify(store), "verify_no_images_s": checked_verify(store, images=False),
            "verify_anchored_s": checked_verify(store, images=False, anchors=anchors)}


def measure_exports(store, folder: Path) -> dict:
    figures = {}
    for fmt in ("csv", "jsonl"):
        path = folder / f"export.{fmt}"
        with path.open("w") as out:
            counts, seconds = timed(store.export, out, format=fmt)
        figures[f"export_{fmt}_s"], figures[f"export_{fmt}_mb"] = seconds, path.stat().st_size / 1e6
        path.unlink()
    return figures


def measure_list(store, rng: np.random.Generator) -> dict:
    """Verdict + a 7-day window anywhere in the year, newest 50 first."""
    now, times = datetime.now(timezone.utc), []
    for _ in range(QUERIES):
        since = now - timedelta(days=float(rng.uniform(7, 365)))
        _, seconds = timed(store.list, verdict=VERDICTS[int(rng.integers(0, 2))], since=since,
                           until=since + timedelta(days=7), limit=50)
        times.append(seconds)
    return {f"list_{key}": value for key, value in percentiles(times).items()}


def measure_similar(store, total: int, rng: np.random.Generator) -> dict:
    ids = []
    with store._db.read() as tx:
        for seq in rng.integers(1, total + 1, QUERIES + 1):
            ids.append(tx.one("SELECT id FROM records WHERE seq = ?", (int(seq),))[0])
    _, first = timed(store.similar, ids[0])  # loads every phash and embedding into memory
    times = [timed(store.similar, record_id)[1] for record_id in ids[1:]]
    return {"similar_first_s": first, **{f"similar_{key}": value for key, value in percentiles(times).items()}}


def measure_retention(store) -> dict:
    run, seconds = timed(store.retire_originals, RETAIN_DAYS)
    report, verify_s = timed(store.verify)
    if not report.ok or report.retired != run.records:
        raise SystemExit(f"verify after retiring failed: {report.first_bad}, retired {report.retired}/{run.records}")
    return {"retire_s": seconds, "retired_records": run.records, "retired_files": run.files,
            "retired_mb": run.bytes / 1e6, "verify_after_retire_s": verify_s}


def database_bytes(store, data_dir: Path) -> int:
    """SQLite: the file, its write-ahead log folded in first; PostgreSQL: every table with its indexes."""
    if store.dialect == "sqlite":
        with contextlib.closing(sqlite3.connect(data_dir / "evidence.sqlite3")) as connection:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return sum(path.stat().st_size for path in data_dir.glob("evidence.sqlite3*"))
    tables = ("records", "outcomes", "retirements", "fingerprints", "embeddings", "chain_head", "store_identity",
              "schema_migrations")
    with store._db.read() as tx:
        return sum(tx.one("SELECT pg_total_relation_size(?)", (table,))[0] for table in tables)


def photo_storage(sample: list[bytes]) -> dict:
    """Originals per inspection and a year of 1,000,000 inspections, kept for ever or retired."""
    per_inspection = float(np.mean([len(data) for data in sample])) * PHOTOS_PER_INSPECTION
    year_tb = per_inspection * 1_000_000 / 1e12
    return {"photo_kb": per_inspection / PHOTOS_PER_INSPECTION / 1e3, "photos_per_inspection": PHOTOS_PER_INSPECTION,
            "inspection_mb": per_inspection / 1e6, "year_1m_inspections_tb": year_tb,
            "kept_after_3_years_tb": 3 * year_tb, "kept_retain_365_days_tb": year_tb,
            "kept_retain_90_days_tb": year_tb * 90 / 365}


# --------------------------------------------------------------------------- running


def measure_store(store, data_dir: Path, total: int, pool: list[bytes], sample: list[bytes]) -> dict:
    rng = np.random.default_rng(1)
    history = total - len(sample)
    fill_s = fill_history(store, history, pool, rng)
    anchors = [store.head()]  # as if published after the history
    sample_s = record_sample(store, sample, history + 1, rng)
    anchors.append(store.head())
    figures = {"records": total, "bulk_fill_records_per_s": history / fill_s,
               "record_path_records_per_s": len(sample) / sample_s}
    print("  filled; verifying", flush=True)
    figures |= measure_verify(store, anchors)
    print("  exporting", flush=True)
    figures |= measure_exports(store, data_dir)
    figures |= measure_list(store, rng)
    figures |= measure_similar(store, total, rng)
    size = database_bytes(store, data_dir)
    figures |= {"db_mb": size / 1e6, "db_bytes_per_record": size / total}
    print("  retiring", flush=True)
    return figures | measure_retention(store)


def run_backend(name: str, folder: Path, total: int, pool: list[bytes], sample: list[bytes]) -> dict:
    print(f"{name}: {total:,} records", flush=True)
    data_dir = folder / name
    try:
        with contextlib.ExitStack() as stack:
            url = stack.enter_context(_postgres()) if name == "postgresql" else None
            store = open_store(url, data_dir)
            stack.callback(store.close)
            return measure_store(store, data_dir, total, pool, sample)
    except Unavailable as exc:
        print(f"{name}: skipped: {exc}")
        return {"skipped": str(exc)}
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


class Unavailable(RuntimeError):
    pass


@contextlib.contextmanager
def _postgres():
    """A throwaway PostgreSQL server, started as the tests start one (fsync off: a test server)."""
    try:
        import psycopg  # noqa: F401

        from evidence_backends import PostgresUnavailable, throwaway_postgres
    except ImportError as exc:
        raise Unavailable(f"psycopg (the PostgreSQL driver) is not installed: {exc}") from None
    try:
        server = throwaway_postgres()
        url = server.__enter__()
    except PostgresUnavailable as exc:
        raise Unavailable(str(exc)) from None
    try:
        yield url
    finally:
        server.__exit__(None, None, None)


# --------------------------------------------------------------------------- reporting

ROWS = (  # (key, label, format)
    ("records", "records", "{:,.0f}"),
    ("bulk_fill_records_per_s", "bulk fill (same rows and hashes, batched), records/s", "{:,.0f}"),
    ("record_path_records_per_s", "record() path (1600x1200 JPEG + embedding), records/s", "{:,.1f}"),
    ("verify_s", "verify, chain + photo files, s", "{:.1f}"),
    ("verify_no_images_s", "verify --no-images, s", "{:.1f}"),
    ("verify_anchored_s", "verify --no-images with 2 anchored heads, s", "{:.1f}"),
    ("export_csv_s", "export CSV, s", "{:.1f}"),
    ("export_csv_mb", "export CSV, MB", "{:,.0f}"),
    ("export_jsonl_s", "export JSON lines, s", "{:.1f}"),
    ("export_jsonl_mb", "export JSON lines, MB", "{:,.0f}"),
    ("list_p50_ms", "list (verdict + 7 days, 50), p50 ms", "{:.1f}"),
    ("list_p99_ms", "list (verdict + 7 days, 50), p99 ms", "{:.1f}"),
    ("similar_first_s", "similar(), first call (loads the index), s", "{:.1f}"),
    ("similar_p50_ms", "similar(), p50 ms", "{:.1f}"),
    ("similar_p99_ms", "similar(), p99 ms", "{:.1f}"),
    ("db_mb", "database size, MB", "{:,.0f}"),
    ("db_bytes_per_record", "database bytes per record", "{:,.0f}"),
    ("retire_s", f"retire originals older than {RETAIN_DAYS} days, s", "{:.1f}"),
    ("retired_records", "  records retired", "{:,.0f}"),
    ("retired_files", "  photo files deleted", "{:,.0f}"),
    ("retired_mb", "  MB freed", "{:,.1f}"),
    ("verify_after_retire_s", "verify after retiring, s", "{:.1f}"),
)


def table(results: dict, photos: dict) -> str:
    names = list(results)
    lines = [f"{'':56} " + " ".join(f"{name:>12}" for name in names)]
    for key, label, fmt in ROWS:
        cells = [fmt.format(results[name][key]) if key in results[name] else "skipped" for name in names]
        lines.append(f"{label:56} " + " ".join(f"{cell:>12}" for cell in cells))
    lines.append(f"photo storage: {photos['photo_kb']:.0f} kB per photo (1600x1200 q90), "
                 f"{photos['inspection_mb']:.2f} MB per inspection of {PHOTOS_PER_INSPECTION} photos; 1,000,000 "
                 f"inspections a year: {photos['year_1m_inspections_tb']:.2f} TB a year, "
                 f"{photos['kept_after_3_years_tb']:.2f} TB kept after 3 years without retention, at most "
                 f"{photos['kept_retain_365_days_tb']:.2f} TB with a 365-day retention, "
                 f"{photos['kept_retain_90_days_tb']:.2f} TB with 90 days")
    return "\n".join(lines)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2 (argparse would print the usage first)
        self.exit(2, f"{self.prog}: error: {message}\n")


def arguments(argv=None) -> argparse.Namespace:
    parser = _Parser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000, help="records in each store (default 1,000,000)")
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_RECORDS:,} records, a smaller sample and pool")
    parser.add_argument("--backends", default="sqlite,postgresql", help="comma-separated: sqlite, postgresql")
    parser.add_argument("--sample", type=int, default=2000, help="records written through record() (default 2,000)")
    parser.add_argument("--pool", type=int, default=500, help="photo files the history points at (default 500)")
    parser.add_argument("--dir", type=Path, help="scratch folder (default: a new one in the temp folder)")
    parser.add_argument("--json", type=Path, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.quick:
        args.records, args.sample, args.pool = QUICK_RECORDS, min(args.sample, 300), min(args.pool, 100)
    backends = [name.strip() for name in args.backends.split(",") if name.strip()]
    if not backends or set(backends) - {"sqlite", "postgresql"}:
        parser.error(f"--backends takes sqlite and/or postgresql, got {args.backends!r}")
    if not (1 <= args.sample < args.records and args.pool >= 1):
        parser.error("need 1 <= --sample < --records and --pool >= 1")
    if args.dir is not None and not args.dir.is_dir():
        parser.error(f"--dir {args.dir} is not a folder")
    args.backends = backends
    return args


def main(argv=None) -> None:
    args = arguments(argv)
    folder = Path(tempfile.mkdtemp(prefix="evidence-scale-", dir=args.dir))
    try:
        print(f"making {args.pool + args.sample:,} distinct {PHOTO_SIZE[0]}x{PHOTO_SIZE[1]} q{PHOTO_QUALITY} photos",
              flush=True)
        pool, sample = make_photos(args.pool, seed=0), make_photos(args.sample, seed=1)
        results = {name: run_backend(name, folder, args.records, pool, sample) for name in args.backends}
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    photos = photo_storage(sample)
    print(table(results, photos))
    if args.json:
        machine = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()}
        args.json.write_text(json.dumps({"date": datetime.now(timezone.utc).date().isoformat(), "machine": machine,
                                         "records": args.records, "sample": args.sample, "pool": args.pool,
                                         "photos": photos, "backends": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
