"""The evidence store: photos as received, what the model said, and what investigations found, in one
tamper-evident chain. One class over two backends (SQLite by default, PostgreSQL for several replicas).

Writing order, so that nothing is ever half-written:
1. the original is stored (content-addressed, fsync'd) before any row exists;
2. one transaction, under the chain lock, checks the original is still there, appends the row, its
   fingerprint and the new chain head, and commits (durable when it returns);
3. if that fails, the original this call created is removed again, under the chain lock and only if no
   row refers to it; if even that fails, sweep_orphans() removes it later. A record is never without its
   original, until the retention policy retires it (retention.py); an unreferenced original is harmless.
"""

from __future__ import annotations

import heapq
import logging
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TextIO

import numpy as np

from evidence_store import dataset, export, migrations, retention
from evidence_store.blobs import Blobs, sha256_hex
from evidence_store.chain import Chained, Unreadable, entry_hash, verify_entries
from evidence_store.db import Database, Tx
from evidence_store.errors import ForeignHead, InvalidInput, NotFound, Retired, StoreUnavailable
from evidence_store.fields import checked, checked_outcome
from evidence_store.imaging import (
    Fingerprint,
    clean_copy,
    fingerprint,
    thumbnail_jpeg,
)
from evidence_store.neighbours import Neighbours, phashes_text
from evidence_store.records import (
    Head,
    Match,
    Outcome,
    Record,
    Retirement,
    VerifyReport,
    new_id,
    utc_now,
    utc_text,
)
from evidence_store.retention import RetirementRun
from evidence_store.rows import (
    OUTCOME_COLUMNS,
    OUTCOME_SELECT,
    RECORD_COLUMNS,
    RECORD_SELECT,
    RETIREMENT_COLUMNS,
    RETIREMENT_SELECT,
    insert_sql,
    outcome_from_row,
    outcome_row,
    record_from_row,
    record_row,
    retirement_from_row,
    retirement_row,
)
from evidence_store.similar import normalised
from inference.images import Limits, LoadedImage

log = logging.getLogger("counterfeit.evidence")

MAX_PAGE = 1000
_BATCH = 500  # records per read transaction when walking the whole store
_MAX_SEQ = 2 ** 63 - 1  # seqs are 64-bit signed integers in both databases


class EvidenceStore:
    def __init__(self, db: Database, data_dir: Path, *, limits: Limits = Limits(), migrate: bool = True) -> None:
        self._db = db
        self._blobs = Blobs(Path(data_dir) / "originals")
        self._limits = limits
        # Filled from the database on the first similar(), not here: verify or export from the CLI never
        # need it, and at 100,000 embeddings it is a few hundred megabytes.
        self._neighbours = Neighbours()
        # Whether the schema has retirements (migrate() says; without it the caller vouches for the latest).
        self._retirements = True
        if migrate:
            self.migrate()

    @property
    def dialect(self) -> str:
        return self._db.dialect

    def migrate(self, target: int = migrations.LATEST) -> list[int]:
        """Apply pending schema migrations (idempotent); the versions applied now."""
        with self._guard("migrate the evidence database"), self._db.write() as tx:
            applied = migrations.apply(tx, target=target, now=utc_now())
            self._retirements = migrations.RETIREMENTS in migrations.applied_versions(tx)
            return applied

    def schema_version(self) -> int:
        with self._guard("read the schema version"), self._db.read() as tx:
            return max(migrations.applied_versions(tx), default=0)

    def close(self) -> None:
        self._db.close()

    # ------------------------------------------------------------------ writing

    def record(self, *, image_bytes: bytes, kind: str, subject: str, verdict: str, score: float | None,
               thresholds: dict, model_name: str, model_version: str, quality: dict,
               external_id: str | None = None, location: str | None = None, case: str | None = None,
               note: str | None = None, product: str | None = None, decoded: LoadedImage | None = None,
               embedding: np.ndarray | None = None) -> Record:
        """Store the photo as received and what was said about it; durable when it returns.

        `decoded`: the photo as the caller already decoded it (saves decoding it again to fingerprint it);
        `embedding`: the model's embedding of it, committed in the same transaction as the record (left out,
        with a warning, when its size differs from the embeddings already stored: the record matters more).
        ValueError (inference.images.ImageError for a photo that cannot be decoded) for bad input,
        StoreUnavailable when the disk or database cannot take it (nothing is left half-written)."""
        fields = checked(kind=kind, subject=subject, verdict=verdict, score=score, thresholds=thresholds,
                         model_name=model_name, model_version=model_version, quality=quality,
                         external_id=external_id, location=location, case=case, note=note, product=product)
        if embedding is not None:
            normalised(embedding, None)  # ValueError now, before anything is written
        facts = fingerprint(image_bytes, self._limits, decoded)
        sha256 = sha256_hex(image_bytes)
        with self._guard("store the original photo"):
            created = self._blobs.put(sha256, image_bytes)
        try:
            with self._guard("record the evidence"):
                return self._append_record(fields, sha256, facts, image_bytes, embedding)
        except BaseException:
            if created:
                self._discard_orphan(sha256)
            raise

    def _append_record(self, fields: dict, sha256: str, facts: Fingerprint, image_bytes: bytes,
                       embedding: np.ndarray | None) -> Record:
        with self._db.write() as tx:
            seq, prev_hash = tx.chain_head()
            # A failed writer may have removed this photo since step 1 (it checks for rows under this same
            # lock, and ours is not there yet): put it back before the row that needs it.
            self._blobs.put(sha256, image_bytes)
            record = _chained(Record(seq=seq + 1, id=new_id(), created_at=utc_now(), **fields, image_sha256=sha256,
                                     image_width=facts.width, image_height=facts.height, phash=facts.phashes[0]),
                              prev_hash)
            tx.run(insert_sql("records", RECORD_COLUMNS), record_row(record))
            tx.run("INSERT INTO fingerprints (record_seq, phashes, thumbnail) VALUES (?, ?, ?)",
                   (record.seq, phashes_text(facts.phashes), facts.thumbnail))
            _advance_head(tx, record.seq, record.record_hash)
            if embedding is not None and _fits(tx, embedding):  # a new record: it has no embedding yet
                _write_embedding(tx, record.seq, np.asarray(embedding, np.float32).ravel())
        return record

    def add_outcome(self, record_id: str, label: str, note: str | None, subject: str) -> Record:
        """Append what an investigation found (genuine | counterfeit | unknown); earlier outcomes stay.
        NotFound for an unknown record id. The record with all its outcomes."""
        fields = checked_outcome(label, note, subject)
        with self._guard("record the outcome"), self._db.write() as tx:
            seq, prev_hash = tx.chain_head()
            if tx.one("SELECT 1 FROM records WHERE id = ?", (record_id,)) is None:
                raise NotFound(f"No evidence record with id {record_id!r}.")
            outcome = _chained(Outcome(seq=seq + 1, id=new_id(), record_id=record_id, created_at=utc_now(),
                                       **fields), prev_hash)
            tx.run(insert_sql("outcomes", OUTCOME_COLUMNS), outcome_row(outcome))
            _advance_head(tx, outcome.seq, outcome.record_hash)
        return self.get(record_id)

    def add_embedding(self, record_id: str, vector: np.ndarray) -> None:
        """Attach the model's embedding of the record's photo (one per record, all of one size)."""
        normalised(vector, None)  # ValueError for NaN, inf or all zeros
        with self._guard("store the embedding"), self._db.write() as tx:
            tx.chain_head()  # serialises writers, so embedding numbers commit in order (see neighbours.py)
            row = tx.one("SELECT seq FROM records WHERE id = ?", (record_id,))
            if row is None:
                raise NotFound(f"No evidence record with id {record_id!r}.")
            _insert_embedding(tx, row[0], vector)

    def sweep_orphans(self, older_than_s: float = 3600) -> int:
        """Remove stored originals that no record refers to (left by failed writes or crashes) and stale
        temporary files; how many originals. Only files older than older_than_s: a younger one may belong
        to a record being written right now. Run it now and then (e.g. daily from the CLI)."""
        with self._guard("sweep the originals"):
            self._blobs.remove_stale_temporaries(older_than_s)
            hashes = list(self._blobs.older_than(older_than_s))
        return sum(self._discard_orphan(sha256) for sha256 in hashes)

    def _discard_orphan(self, sha256: str) -> bool:
        try:
            with self._db.write() as tx:
                tx.chain_head()  # the chain lock: no record can be appended while we look and delete
                if tx.one("SELECT 1 FROM records WHERE image_sha256 = ? LIMIT 1", (sha256,)) is None:
                    self._blobs.delete(sha256)
                    return True
        except Exception as exc:  # the database is down: sweep_orphans() gets it later
            log.warning("could not remove unreferenced original %s: %s", sha256, exc)
        return False

    # ------------------------------------------------------------------ the retention policy (retention.py)

    def retire_originals(self, older_than_days: int, *, dry_run: bool = False, subject: str = "retention-policy",
                         now: datetime | None = None) -> RetirementRun:
        """Delete the original photos of records created more than older_than_days ago, each retirement a
        chain entry of its own, committed before its photo is deleted; a photo a younger record shares
        stays. Records, verdicts, outcomes and fingerprints stay. dry_run: count only, change nothing.
        InvalidInput for a period that is not 1..retention.MAX_DAYS whole days."""
        days = retention.checked_days(older_than_days)
        before = retention.cutoff(days, now)
        with self._guard("retire old originals"):
            if dry_run:
                with self._db.read() as tx:
                    records, photos = retention.pending(tx, before)
                files, freed = self._unneeded_photos(photos | set(self._retired_photos_on_disk()), before)
                return RetirementRun(before, records, files, freed, dry_run=True)
            records = self._append_retirements(before, retention.reason(days), subject)
            files, freed = self._unneeded_photos(set(self._retired_photos_on_disk()), None, delete=True)
        log.info("retention policy: %d originals of records older than %d days retired, %d files (%d bytes) "
                 "deleted", records, days, files, freed)
        return RetirementRun(before, records, files, freed)

    def _append_retirements(self, before: str, reason: str, subject: str) -> int:
        """Step 1: a Retirement entry for each record created before `before` that has none; how many."""
        with self._db.read() as tx:
            last = retention.last_seq_before(tx, before)
        count, after = 0, 0
        while after < last:
            retired = self._retire_batch(after, last, before, reason, subject)
            count += len(retired)
            if len(retired) < _BATCH:
                break
            after = retired[-1]
        return count

    def _retire_batch(self, after: int, last: int, before: str, reason: str, subject: str) -> list[int]:
        """One transaction of up to _BATCH retirements of records after seq `after`; the seqs retired."""
        with self._db.write() as tx:
            seq, prev_hash = tx.chain_head()  # the chain lock first: two runs never retire one record twice
            rows = tx.all(retention.CANDIDATES, (after, last, before, _BATCH))
            for _, record_id, sha256 in rows:
                seq += 1
                entry = _chained(Retirement(seq=seq, id=new_id(), record_id=record_id, image_sha256=sha256,
                                            created_at=utc_now(), reason=reason, subject=subject), prev_hash)
                tx.run(insert_sql("retirements", RETIREMENT_COLUMNS), retirement_row(entry))
                prev_hash = entry.record_hash
            if rows:
                _advance_head(tx, seq, prev_hash)
        return [row[0] for row in rows]

    def _retired_photos_on_disk(self) -> list[str]:
        with self._db.read() as tx:
            photos = retention.retired_photos(tx)
        return [sha256 for sha256 in photos if self._blobs.exists(sha256)]

    def _unneeded_photos(self, photos: set[str], staying_from: str | None, *, delete: bool = False) -> tuple[int, int]:
        """(files, bytes) of those photos no live record shows (see retention.live_photos); deleted with
        delete=True, each batch under the chain lock, so that no record of one can be appended meanwhile."""
        ordered, files, freed = sorted(photos), 0, 0
        for start in range(0, len(ordered), _BATCH):
            chunk = ordered[start:start + _BATCH]
            with self._db.write() if delete else self._db.read() as tx:
                if delete:
                    tx.chain_head()
                live = retention.live_photos(tx, chunk, staying_from)
                for sha256 in chunk:
                    size = None if sha256 in live else self._blobs.size(sha256)
                    if size is not None:
                        files, freed = files + 1, freed + size
                        if delete:
                            self._blobs.delete(sha256)
        return files, freed

    # ------------------------------------------------------------------ reading

    def get(self, record_id: str) -> Record | None:
        with self._guard("read the evidence"), self._db.read() as tx:
            row = tx.one(RECORD_SELECT + " WHERE id = ?", (record_id,))
            return None if row is None else _with_history(tx, [row], self._retirements)[0]

    def list(self, *, since: str | datetime | None = None, until: str | datetime | None = None,
             location: str | None = None, case: str | None = None, verdict: str | None = None,
             kind: str | None = None, external_id: str | None = None, limit: int = 50,
             cursor: str | None = None) -> tuple[list[Record], str | None]:
        """Newest first; (page, cursor for the next page or None). since inclusive, until exclusive."""
        if not 1 <= limit <= MAX_PAGE:
            raise ValueError(f"limit must be between 1 and {MAX_PAGE}, got {limit}")
        where, params = _filters(since=since, until=until, location=location, case_id=case, verdict=verdict,
                                 kind=kind, external_id=external_id)
        if cursor is not None:
            where.append("seq < ?")
            params.append(_cursor_seq(cursor))
        sql = RECORD_SELECT + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY seq DESC LIMIT ?"
        with self._guard("read the evidence"), self._db.read() as tx:
            rows = tx.all(sql, (*params, limit + 1))
            page = _with_history(tx, rows[:limit], self._retirements)
        return page, (str(page[-1].seq) if len(rows) > limit else None)

    def original(self, sha256: str) -> bytes:
        """The photo exactly as received, checked against its hash: OriginalChanged if the file was altered,
        Retired if the retention policy deleted it, NotFound if there is none. Contains all its metadata
        (GPS...): for admins only."""
        with self._guard("read the original photo"):
            try:
                return self._blobs.read(sha256)
            except NotFound:
                with self._db.read() as tx:
                    when = retention.photo_retired_at(tx, sha256) if self._retirements else None
                if when is None:
                    raise
                raise Retired(retention.retired_message(f"The original photo {sha256}", when)) from None

    def thumbnail(self, sha256: str, max_side: int = 320) -> bytes:
        """An upright JPEG of the stored photo, at most max_side pixels a side, without any metadata."""
        return thumbnail_jpeg(self.original(sha256), self._limits, max_side)

    def similar(self, record_id: str, limit: int = 10, *, max_distance: float | None = None) -> list[Match]:
        """Other records (inspections and screened listings) whose photo is a near-duplicate of this one's
        (rotated, mirrored, resized, re-encoded copies; closest first), then those closest in embedding
        space (cosine distance, at most max_distance if given). Never the record itself."""
        with self._guard("search similar evidence"), self._db.read() as tx:
            row = tx.one("SELECT seq FROM records WHERE id = ?", (record_id,))
            if row is None:
                raise NotFound(f"No evidence record with id {record_id!r}.")
            self._neighbours.catch_up(tx)
            ranked = [(seq, float(bits), "near_duplicate") for seq, bits in
                      self._neighbours.near_duplicates(tx, row[0])][:limit]
            seen = {seq for seq, _, _ in ranked}
            for seq, distance in self._neighbours.embedding_neighbours(row[0], limit + len(seen)):
                if len(ranked) < limit and seq not in seen and (max_distance is None or distance <= max_distance):
                    ranked.append((seq, distance, "embedding"))
            records = _records_by_seq(tx, [seq for seq, _, _ in ranked], self._retirements)
        return [Match(records[seq], distance, kind) for seq, distance, kind in ranked if seq in records]

    # ------------------------------------------------------------------ checking and exporting

    def verify(self, *, images: bool = True, anchors: Sequence[Head] = ()) -> VerifyReport:
        """Recompute the whole chain and check every stored original (each distinct photo read once), then
        that the chain still holds each anchored head (published earlier, see heads.py). The report names the
        first entry altered, removed, or whose photo changed or went missing (a photo the retention policy
        deleted is counted as retired instead, when its Retirement entry is intact). ForeignHead for a head
        taken from another store. Signatures are the caller's to check (heads.first_bad_signature)."""
        problems: dict[str, str | None] = {}

        def image_problem(sha256: str) -> str | None:
            if sha256 not in problems:
                problems[sha256] = self._blobs.problem(sha256) if images else None
            return problems[sha256]

        with self._guard("verify the evidence"), self._db.read(snapshot=True) as tx:
            head = tx.chain_head()  # first, so in SQLite the snapshot starts here
            _check_own_heads(_store_id(tx), anchors)
            retired = retention.retired_records(tx) if self._retirements else set()
            with _chain_entries(tx, self._retirements) as entries:
                return verify_entries(entries, head, image_problem, anchors, retired)

    def head(self) -> Head:
        """The chain head now, unsigned, to be kept outside the database (see heads.py)."""
        with self._guard("read the chain head"), self._db.read() as tx:
            seq, record_hash = tx.chain_head()
            return Head(seq=seq, hash=record_hash, at=utc_now(), store=_store_id(tx))

    def export(self, out: TextIO, *, since: str | datetime | None = None, format: str = "csv",
               with_images: Path | None = None) -> dict:
        """Write records since `since` to a text stream (see export.py); photos, if asked, as metadata-free
        copies into the folder with_images (none for records whose original was retired: counted as
        images_retired). Counts of what was written."""
        if format not in export.FORMATS:
            raise ValueError(f"format must be one of {', '.join(export.FORMATS)}, got {format!r}")
        with self._guard("export the evidence"):
            images = self._image_folder(with_images) if with_images is not None else None
            if format == "csv":
                count = export.write_csv(self._iter_records(since), out, images and images.name)
            else:
                count = export.write_jsonl(self._iter_entries(since, images), out)
        counts = {"entries" if format == "jsonl" else "records": count, "images": images.written if images else 0}
        return {**counts, "images_retired": images.retired} if images and images.retired else counts

    def _image_folder(self, folder: Path) -> _ImageFolder:
        with self._db.read() as tx:
            retired = retention.retired_records(tx) if self._retirements else set()
        return _ImageFolder(Path(folder), self._clean_copy, retired)

    def to_dataset(self, out: Path, *, since: str | datetime | None = None, seed: int = 0) -> dict:
        """Confirmed photos as a training data folder (see dataset.py); counts per split and label, and of the
        confirmed records left out because their original was retired."""
        with self._guard("export the dataset"):
            layout, counts = dataset.plan(self._iter_records(since), seed=seed)
            return {**dataset.write(layout, Path(out), self._clean_copy), **counts}

    def _clean_copy(self, sha256: str) -> tuple[bytes, str]:
        return clean_copy(self._blobs.read(sha256), self._limits)

    def _iter_records(self, since) -> Iterator[Record]:
        """Every record since `since`, oldest first, a batch per read transaction."""
        after = 0
        while True:
            where, params = _filters(since=since)
            sql = RECORD_SELECT + " WHERE " + " AND ".join(["seq > ?", *where]) + " ORDER BY seq LIMIT ?"
            with self._db.read() as tx:
                batch = _with_history(tx, tx.all(sql, (after, *params, _BATCH)), self._retirements)
            yield from batch
            if len(batch) < _BATCH:
                return
            after = batch[-1].seq

    def _iter_entries(self, since, images: _ImageFolder | None) -> Iterator[Chained]:
        bound = utc_text(since) if since is not None else ""
        with self._db.read(snapshot=True) as tx, _chain_entries(tx, self._retirements) as entries:
            for entry in entries:
                if isinstance(entry, Unreadable) or entry.created_at < bound:
                    continue
                if images and isinstance(entry, Record):
                    images.name(entry)
                yield entry

    @contextmanager
    def _guard(self, doing: str):
        """Disk and database outages -> StoreUnavailable (HTTP 503); everything else as it is."""
        try:
            yield
        except (StoreUnavailable, NotFound):
            raise
        except OSError as exc:
            raise StoreUnavailable(f"Cannot {doing}: the disk refused it ({exc.strerror or exc}).") from exc
        except Exception as exc:
            if self._db.is_unavailable(exc):
                raise StoreUnavailable(f"Cannot {doing}: the evidence database is unavailable ({exc}).") from exc
            raise


class _ImageFolder:
    """Writes each exported photo once, as a metadata-free copy named by its hash; none for a record whose
    original was retired (its name is then "", even where a live record still shares the photo)."""

    def __init__(self, folder: Path, clean: Callable[[str], tuple[bytes, str]], retired: set[str]) -> None:
        self.folder, self._clean, self._names, self.written = folder, clean, {}, 0
        self._retired, self.retired = retired, 0  # record ids; how many records' photos were not written
        folder.mkdir(parents=True, exist_ok=True)

    def name(self, record: Record) -> str:
        if record.id in self._retired:
            self.retired += 1
            return ""
        sha256 = record.image_sha256
        if sha256 not in self._names:
            data, suffix = self._clean(sha256)
            (self.folder / f"{sha256}{suffix}").write_bytes(data)
            self._names[sha256] = f"{sha256}{suffix}"
            self.written += 1
        return self._names[sha256]


def _chained(entry: Chained, prev_hash: str) -> Chained:
    """The entry linked after prev_hash, with its own hash (chain.py)."""
    entry = replace(entry, prev_hash=prev_hash)
    return replace(entry, record_hash=entry_hash(prev_hash, entry))


def _advance_head(tx: Tx, seq: int, record_hash: str) -> None:
    tx.run("UPDATE chain_head SET seq = ?, hash = ? WHERE id = 1", (seq, record_hash))


def _fits(tx: Tx, vector: np.ndarray) -> bool:
    """Whether the embedding has the size of those stored. After a switch to a model with other embeddings
    the evidence is still kept, without it: similar() then finds the record by its photo hash only."""
    stored = tx.one("SELECT dim FROM embeddings LIMIT 1")
    if stored is None or stored[0] == np.asarray(vector).size:
        return True
    log.warning("embedding of %d values not stored: this evidence store holds %d-value embeddings (from an "
                "earlier model)", np.asarray(vector).size, stored[0])
    return False


def _insert_embedding(tx: Tx, record_seq: int, vector: np.ndarray) -> None:
    """The vector as the model gave it; ValueError when the record has one or the size differs."""
    values = np.asarray(vector, np.float32).ravel()
    _check_embedding(tx, record_seq, len(values))
    _write_embedding(tx, record_seq, values)


def _write_embedding(tx: Tx, record_seq: int, values: np.ndarray) -> None:
    """Under the chain lock, so embedding numbers commit in order (see neighbours.py)."""
    (number,) = tx.one("SELECT COALESCE(MAX(n), 0) + 1 FROM embeddings")
    tx.run("INSERT INTO embeddings (n, record_seq, dim, vector, created_at) VALUES (?, ?, ?, ?, ?)",
           (number, record_seq, len(values), values.tobytes(), utc_now()))


def _check_embedding(tx: Tx, record_seq: int, dim: int) -> None:
    if tx.one("SELECT 1 FROM embeddings WHERE record_seq = ?", (record_seq,)) is not None:
        raise ValueError("This record already has an embedding.")
    other = tx.one("SELECT dim FROM embeddings LIMIT 1")
    if other is not None and other[0] != dim:
        raise ValueError(f"Embeddings here have {other[0]} values; this one has {dim}.")


def _filters(*, since=None, until=None, **equal) -> tuple[list[str], list]:
    where, params = [], []
    if since is not None:
        where.append("created_at >= ?")
        params.append(utc_text(since))
    if until is not None:
        where.append("created_at < ?")
        params.append(utc_text(until))
    for column, value in equal.items():
        if value is not None:
            where.append(f"{column} = ?")
            params.append(value)
    return where, params


def _cursor_seq(cursor: str) -> int:
    text = str(cursor)
    # ASCII digits only (str.isdigit() also takes "²"), and within the 64-bit seq column: a larger number
    # would overflow the driver rather than match nothing.
    if not re.fullmatch(r"[0-9]{1,19}", text) or int(text) > _MAX_SEQ:
        raise InvalidInput(f"Not a cursor from a previous page: {text[:40]!r}. Pass back `next_cursor` as it "
                           "was returned, or leave the cursor out for the first page.")
    return int(text)


def _store_id(tx: Tx) -> str:
    return tx.one("SELECT store_id FROM store_identity WHERE id = 1")[0]


def _check_own_heads(store_id: str, anchors: Sequence[Head]) -> None:
    for anchor in anchors:
        if anchor.store != store_id:
            raise ForeignHead(f"the head of seq {anchor.seq} taken at {anchor.at} is of evidence store "
                              f"{anchor.store}, this one is {store_id}: check it against the store it was taken "
                              "from (if it was taken from this one, the store's id was changed: treat that as "
                              "tampering)")


def _with_history(tx: Tx, rows: list[tuple], retirements: bool) -> list[Record]:
    """Records of these rows, each with its outcomes in chain order and, if its original was retired, when
    (with retirements: the schema has them). Two queries per 500 records."""
    by_record: dict[str, list[Outcome]] = {}
    retired: dict[str, str] = {}
    ids = [row[1] for row in rows]
    for start in range(0, len(ids), _BATCH):
        chunk = ids[start:start + _BATCH]
        sql = OUTCOME_SELECT + f" WHERE record_id IN ({', '.join('?' * len(chunk))}) ORDER BY seq"
        for row in tx.all(sql, tuple(chunk)):
            by_record.setdefault(row[2], []).append(outcome_from_row(row))
        if retirements:
            retired.update(retention.retired_at(tx, chunk))
    return [record_from_row(row, tuple(by_record.get(row[1], ())), retired.get(row[1])) for row in rows]


def _records_by_seq(tx: Tx, seqs: list[int], retirements: bool) -> dict[int, Record]:
    if not seqs:
        return {}
    rows = tx.all(RECORD_SELECT + f" WHERE seq IN ({', '.join('?' * len(seqs))})", tuple(seqs))
    return {record.seq: record for record in _with_history(tx, rows, retirements)}


@contextmanager
def _chain_entries(tx: Tx, retirements: bool) -> Iterator[Iterator[Chained | Unreadable]]:
    """Records, outcomes and retirements (with retirements: the schema has them) merged in seq order,
    streamed; the streams are closed on exit, inside the transaction, even when the reader stops early
    (verify stops at the first bad entry)."""
    tables = [(RECORD_SELECT, record_from_row), (OUTCOME_SELECT, outcome_from_row)]
    if retirements:
        tables.append((RETIREMENT_SELECT, retirement_from_row))
    streams = [tx.stream(select + " ORDER BY seq") for select, _ in tables]
    try:
        yield heapq.merge(*[_decoded(stream, decode) for stream, (_, decode) in zip(streams, tables)],
                          key=lambda entry: entry.seq)
    finally:
        for stream in streams:
            stream.close()


def _decoded(rows: Iterator[tuple], decode) -> Iterator[Chained | Unreadable]:
    for row in rows:
        try:
            yield decode(row)
        except (TypeError, ValueError, KeyError):  # a hand-edited row: bad JSON, bad hex
            yield Unreadable(seq=row[0], id=row[1])
