"""Evidence store (issue 6): every test runs on SQLite and on PostgreSQL (see evidence_backends.py)."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import re
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from api.evidence_fields import inspection_fields, screening_fields
from evidence_store import (
    EvidenceStore,
    ForeignHead,
    InvalidInput,
    NotFound,
    OriginalChanged,
    SchemaTooNew,
    StoreUnavailable,
    heads,
    open_store,
)
from evidence_store import store as store_module
from evidence_store.chain import entry_hash
from evidence_store.migrations import MIGRATIONS
from evidence_store.records import new_id
from inference.images import ImageError

from evidence_backends import GPS, fresh_schema, jpeg_with_metadata, reencoded, synth_photo

REPO = Path(__file__).resolve().parents[1]
QUALITY = {"ok": True, "reasons": [], "message": "Looks good.", "measures": {"sharpness": 812.5, "brightness": 0.48}}


def fields(**overrides) -> dict:
    """record() arguments as the API passes them for an inspection."""
    return {"kind": "inspection", "subject": "inspector-7", "verdict": "counterfeit", "score": 0.93,
            "thresholds": {"low": 0.2, "high": 0.8}, "model_name": "demo", "model_version": "3f2a9c1d0b7e4a65",
            "quality": QUALITY, **overrides}


# --------------------------------------------------------------------------- backends


class Backend:
    """One test's database and data folder; open() gives stores on them (several = several replicas)."""

    def __init__(self, name: str, url: str | None, data_dir: Path) -> None:
        self.name, self.url, self.data_dir = name, url, data_dir
        self.stores: list[EvidenceStore] = []

    def open(self) -> EvidenceStore:
        store = open_store(self.url, self.data_dir)
        self.stores.append(store)
        return store

    def sql(self, statement: str, params: tuple = ()) -> list:
        """Run SQL behind the store's back, as someone with access to the database would."""
        if self.name == "sqlite":
            with contextlib.closing(sqlite3.connect(self.data_dir / "evidence.sqlite3")) as connection, connection:
                return connection.execute(statement, params).fetchall()
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as connection:
            cursor = connection.execute(statement.replace("?", "%s"), params or None)
            return cursor.fetchall() if cursor.description else []

    def outage(self) -> Exception:
        """The error the driver raises when the database goes away mid-transaction."""
        if self.name == "sqlite":
            error = sqlite3.OperationalError("database or disk is full")
            error.sqlite_errorcode = 13  # SQLITE_FULL
            return error
        import psycopg

        return psycopg.OperationalError("server closed the connection unexpectedly")


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request, tmp_path):
    with contextlib.ExitStack() as stack:
        url = None
        if request.param == "postgresql":
            url = stack.enter_context(fresh_schema(request.getfixturevalue("postgres_url")))
        backend = Backend(request.param, url, tmp_path / "evidence")
        yield backend
        for store in backend.stores:
            store.close()


@pytest.fixture
def store(backend) -> EvidenceStore:
    return backend.open()


@pytest.fixture(scope="module")
def photo() -> bytes:
    return jpeg_with_metadata(synth_photo(0, 0))


def blob_path(backend: Backend, sha256: str) -> Path:
    return backend.data_dir / "originals" / sha256[:2] / sha256[2:4] / sha256


# --------------------------------------------------------------------------- recording and reading


def test_a_record_keeps_the_photo_as_received_and_what_was_said(store, backend, photo):
    record = store.record(image_bytes=photo, **fields(), location="Rotterdam port, gate 4", case="CASE-17",
                          note="pallet 3")
    assert (record.seq, record.kind, record.subject, record.location, record.case) == (
        1, "inspection", "inspector-7", "Rotterdam port, gate 4", "CASE-17")
    assert record.image_sha256 == hashlib.sha256(photo).hexdigest()
    assert (record.image_width, record.image_height) == (160, 120)
    assert record.created_at.endswith("Z") and len(record.created_at) == 27
    assert store.get(record.id) == record
    assert store.get(new_id()) is None
    assert store.original(record.image_sha256) == photo  # byte for byte, GPS included (admins only)
    path = blob_path(backend, record.image_sha256)
    assert stat.S_IMODE(path.stat().st_mode) == 0o444  # write-once: read-only on disk
    again = store.record(image_bytes=photo, **fields(kind="screening", external_id="listing-9"))
    assert (again.seq, again.image_sha256, again.prev_hash) == (2, record.image_sha256, record.record_hash)
    assert list(path.parent.iterdir()) == [path]  # content-addressed: stored once, no leftovers


def test_it_records_what_the_service_answered(store, photo, classifier_predictor):
    """The classifier scores any photo (the reference model answers `retake` to this one's product)."""
    from api.batching import Batcher
    from api.settings import Settings

    batcher = Batcher(max_wait_s=0)
    try:
        _record_service_answers(store, photo, classifier_predictor, batcher, Settings(quality_min_side=96))
    finally:
        batcher.close()
    assert store.verify().ok


def _record_service_answers(store, photo, predictor, batcher, settings):
    from api.service import inspect_photo, screen_photos

    inspection, _ = inspect_photo(photo, predictor, batcher, settings)
    record = store.record(image_bytes=photo, **inspection_fields(inspection), subject="inspector-7")
    assert (record.verdict, record.score, record.model_version) == (
        inspection.verdict, inspection.score, inspection.model.version)
    assert record.image_sha256 == inspection.image.sha256
    assert (record.image_width, record.image_height) == (inspection.image.width, inspection.image.height)
    screenings, _ = screen_photos([photo, b"not a photo"], ["listing-1", "listing-2"], predictor, batcher, settings)
    listed = store.record(image_bytes=photo, **screening_fields(screenings.results[0], screenings), subject="s")
    assert (listed.kind, listed.external_id) == ("screening", "listing-1")
    with pytest.raises(ValueError, match="not scored"):
        screening_fields(screenings.results[1], screenings)


def test_a_record_from_already_decoded_pixels_matches_one_decoded_again(store, photo):
    """The service hands the store its decoded photo and embedding: the fingerprint must still find the
    same near-duplicates, and the embedding is committed with the record."""
    from inference.images import load_image
    from inference.phash import popcount

    decoded = load_image(photo, draft_to=(160, 120))  # the predictor's decode, bigger than the store's own
    vector = np.arange(1, 17, dtype=np.float32)
    fast = store.record(image_bytes=photo, **fields(), decoded=decoded, embedding=vector)
    slow = store.record(image_bytes=photo, **fields())
    assert (fast.image_width, fast.image_height, fast.image_sha256) == (160, 120, slow.image_sha256)
    assert popcount(np.uint64(fast.phash) ^ np.uint64(slow.phash)) <= 2
    assert slow.id in {m.record.id for m in store.similar(fast.id)}
    with pytest.raises(ValueError, match="already has"):
        store.add_embedding(fast.id, vector)  # it is there already
    # After a switch to a model with other embeddings the evidence is still kept, without the embedding.
    other_model = store.record(image_bytes=photo, **fields(), decoded=decoded, embedding=np.ones(8))
    with pytest.raises(ValueError, match="16 values"):
        store.add_embedding(other_model.id, np.ones(8))
    store.add_embedding(other_model.id, vector)  # one of the stored size can still be attached
    assert [r.id for r in store.list()[0]] == [other_model.id, slow.id, fast.id] and store.verify().ok


def test_bad_input_is_refused_before_anything_is_stored(store, backend, photo):
    with pytest.raises(ImageError):
        store.record(image_bytes=b"GIF89a not a photo", **fields())
    for bad, message in [({"kind": "audit"}, "kind"), ({"verdict": "fake"}, "verdict"), ({"score": 1.5}, "score"),
                         ({"subject": ""}, "subject"), ({"quality": {"x": float("nan")}}, "quality"),
                         ({"note": "x" * 10_001}, "note")]:
        with pytest.raises(ValueError, match=message):
            store.record(image_bytes=photo, **fields(**bad))
    assert store.list() == ([], None)
    assert not (backend.data_dir / "originals").exists() or not any((backend.data_dir / "originals").rglob("*"))


def test_list_is_newest_first_with_filters_and_cursor_pages(store, photo):
    places = ["Rotterdam", "Antwerp", "Rotterdam", "Hamburg", "Rotterdam", "Antwerp", "Rotterdam"]
    records = [store.record(image_bytes=photo, **fields(verdict=("genuine", "counterfeit")[i % 2]),
                            location=place, case=f"C{i % 3}") for i, place in enumerate(places)]
    page, cursor = store.list(limit=3)
    assert [r.seq for r in page] == [7, 6, 5] and cursor
    page, cursor = store.list(limit=3, cursor=cursor)
    assert [r.seq for r in page] == [4, 3, 2]
    page, cursor = store.list(limit=3, cursor=cursor)
    assert [r.seq for r in page] == [1] and cursor is None
    assert [r.seq for r in store.list(location="Rotterdam")[0]] == [7, 5, 3, 1]
    assert [r.seq for r in store.list(location="Rotterdam", verdict="genuine", case="C0")[0]] == [7, 1]
    assert [r.seq for r in store.list(since=records[2].created_at, until=records[5].created_at)[0]] == [5, 4, 3]
    with pytest.raises(ValueError, match="cursor"):
        store.list(cursor="abc")


@pytest.mark.parametrize("cursor", ["9223372036854775808", "99999999999999999999999", "²", "-1", "1e3", " 1", ""])
def test_a_cursor_beyond_64_bits_or_malformed_is_refused_clearly(store, photo, cursor):
    store.record(image_bytes=photo, **fields())
    with pytest.raises(InvalidInput, match="Not a cursor from a previous page"):
        store.list(cursor=cursor)
    assert [r.seq for r in store.list(cursor="9223372036854775807")[0]] == [1]  # the largest seq there can be


def test_outcomes_are_appended_never_overwritten(store, photo):
    record = store.record(image_bytes=photo, **fields(), case="CASE-1")
    store.add_outcome(record.id, "counterfeit", "lab: wrong hologram", "investigator-2")
    updated = store.add_outcome(record.id, "genuine", "lab retest: the hologram was scratched", "investigator-3")
    assert [(o.seq, o.label, o.subject) for o in updated.outcomes] == [
        (2, "counterfeit", "investigator-2"), (3, "genuine", "investigator-3")]
    assert updated.outcome == "genuine" and store.get(record.id) == updated
    assert store.list()[0][0].outcomes == updated.outcomes
    with pytest.raises(NotFound):
        store.add_outcome(new_id(), "genuine", None, "investigator-2")
    with pytest.raises(KeyError):  # NotFound is a KeyError for callers that expect one
        store.add_outcome("no-such-id", "genuine", None, "investigator-2")
    with pytest.raises(ValueError, match="label"):
        store.add_outcome(record.id, "fake", None, "investigator-2")
    assert store.verify().ok and store.verify().checked == 3


# --------------------------------------------------------------------------- nothing leaves with metadata


def assert_no_metadata(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    assert not image.getexif() and "icc_profile" not in image.info and "xmp" not in image.info
    for secret in (b"PhoneMaker", b"secret-xmp", b"Exif\x00", b"GPS"):
        assert secret not in data
    return image


def test_thumbnails_are_upright_and_stripped_of_gps_and_all_metadata(store, photo):
    sideways = jpeg_with_metadata(synth_photo(1, 0, size=(200, 150)).rotate(90, expand=True), orientation=6)
    assert Image.open(io.BytesIO(sideways)).getexif().get_ifd(0x8825)[2] == GPS[2]
    record = store.record(image_bytes=sideways, **fields())
    assert (record.image_width, record.image_height) == (200, 150)  # upright: orientation 6 applied
    image = assert_no_metadata(store.thumbnail(record.image_sha256, max_side=64))
    assert image.format == "JPEG" and image.size == (64, 48)
    assert assert_no_metadata(store.thumbnail(store.record(image_bytes=photo, **fields()).image_sha256)).size == (
        160, 120)  # never enlarged
    with pytest.raises(NotFound):
        store.thumbnail("0" * 64)
    with pytest.raises(ValueError):
        store.original("../../etc/passwd")


# --------------------------------------------------------------------------- tamper evidence


def recorded(store, photo, n: int = 5) -> list:
    return [store.record(image_bytes=photo, **fields(score=0.9 + i / 100), case=f"C{i}") for i in range(n)]


def test_verify_names_an_altered_score(store, backend, photo):
    recorded(store, photo)
    backend.sql("UPDATE records SET score = 0.05 WHERE seq = 2")
    report = store.verify()
    assert not report.ok and report.checked == 1
    assert {k: report.first_bad[k] for k in ("seq", "problem")} == {"seq": 2, "problem": "altered"}
    assert report.first_bad["id"] == store.list(limit=5)[0][3].id


def test_the_recognised_product_is_kept_and_hashed_only_when_there_is_one(store, backend, photo):
    from evidence_store.chain import payload

    named = store.record(image_bytes=photo, **fields(), product="carton-front")
    unnamed = store.record(image_bytes=photo, **fields())
    assert store.get(named.id).product == "carton-front" and store.get(unnamed.id).product is None
    assert payload(named)["product"] == "carton-front"
    assert "product" not in payload(unnamed)  # hashed as records were before products were kept
    assert store.verify().ok
    backend.sql("UPDATE records SET product = 'carton-back' WHERE id = ?", (named.id,))
    report = store.verify()
    assert not report.ok and report.first_bad["id"] == named.id and report.first_bad["problem"] == "altered"


def test_verify_names_a_removed_record_and_a_removed_tail(store, backend, photo):
    records = recorded(store, photo)
    backend.sql("DELETE FROM fingerprints WHERE record_seq = 3")
    backend.sql("DELETE FROM records WHERE seq = 3")
    assert store.verify().first_bad == {"seq": 3, "id": None, "problem": "removed",
                                        "detail": "the chain jumps from seq 2 to 4: 1 entry was removed"}
    backend.sql("DELETE FROM fingerprints")
    backend.sql("DELETE FROM records WHERE seq >= 3")  # the newest ones gone: only the chain head remembers
    assert {k: store.verify().first_bad[k] for k in ("seq", "problem")} == {"seq": 3, "problem": "removed"}
    assert records[0].record_hash == store.get(records[0].id).record_hash


def test_verify_names_a_removed_or_altered_outcome(store, backend, photo):
    first, second = recorded(store, photo, 2)
    outcome = store.add_outcome(first.id, "counterfeit", "lab", "investigator-2").outcomes[0]
    store.add_outcome(second.id, "genuine", None, "investigator-2")
    backend.sql("UPDATE outcomes SET label = 'genuine' WHERE seq = 3")
    assert store.verify().first_bad["seq"] == 3 and store.verify().first_bad["problem"] == "altered"
    backend.sql("DELETE FROM outcomes WHERE id = ?", (outcome.id,))
    assert (store.verify().first_bad["seq"], store.verify().first_bad["problem"]) == (3, "removed")


def test_verify_catches_a_rewrite_with_recomputed_hashes(store, backend, photo):
    records = recorded(store, photo, 3)
    forged = store.get(records[1].id)
    forged = replace(forged, score=0.01)
    backend.sql("UPDATE records SET score = ?, record_hash = ? WHERE seq = 2",
                (0.01, entry_hash(forged.prev_hash, forged)))
    assert (store.verify().first_bad["seq"], store.verify().first_bad["problem"]) == (2, "altered")


def test_verify_names_a_changed_or_missing_original(store, backend, photo):
    other = jpeg_with_metadata(synth_photo(1, 0))
    store.record(image_bytes=photo, **fields())
    store.record(image_bytes=other, **fields())
    store.record(image_bytes=other, **fields())
    path = blob_path(backend, hashlib.sha256(other).hexdigest())
    path.chmod(0o644)
    path.write_bytes(other[:-10] + b"0123456789")  # same size, different bytes
    assert store.verify().first_bad["seq"] == 2 and store.verify().first_bad["problem"] == "image_changed"
    with pytest.raises(OriginalChanged):
        store.original(hashlib.sha256(other).hexdigest())
    assert store.verify(images=False).ok
    path.unlink()
    assert (store.verify().first_bad["seq"], store.verify().first_bad["problem"]) == (2, "image_missing")


# --------------------------------------------------------------------------- heads anchored outside the database


def truncate(backend: Backend, keep: int) -> None:
    """Remove the entries after seq `keep` and rewind the stored chain head to match, as whoever can write
    the database can: the chain checked against itself cannot tell."""
    backend.sql("DELETE FROM fingerprints WHERE record_seq > ?", (keep,))
    backend.sql("DELETE FROM records WHERE seq > ?", (keep,))
    backend.sql("UPDATE chain_head SET seq = ?, hash = (SELECT record_hash FROM records WHERE seq = ?) WHERE id = 1",
                (keep, keep))


def test_a_published_head_catches_a_truncation_with_a_rewound_chain_head(store, backend, photo):
    recorded(store, photo, 3)
    early = store.head()
    recorded(store, photo, 2)
    published = store.head()
    assert (early.seq, published.seq, published.hash) == (3, 5, store.verify().head_hash)
    truncate(backend, 3)
    assert store.verify().ok  # the limit of an unanchored chain: this is why heads are published
    report = store.verify(anchors=[early, published])
    assert (report.ok, report.checked, report.anchors_checked) == (False, 3, 1)
    assert {k: report.first_bad[k] for k in ("seq", "id", "problem")} == {"seq": 4, "id": None, "problem": "removed"}
    assert "entries 4..5 were removed" in report.first_bad["detail"]
    recorded(store, photo, 2)  # new entries where the removed ones were: seq 4 and 5 again, other hashes
    report = store.verify(anchors=[published, early])
    assert (report.first_bad["seq"], report.first_bad["problem"], report.checked) == (5, "altered", 3)
    assert "among seq 4..5" in report.first_bad["detail"]
    assert store.verify(anchors=[early]).anchors_checked == 1


def test_a_published_head_catches_a_rewrite_with_recomputed_hashes(store, backend, photo):
    first = recorded(store, photo, 1)[0]
    anchors = [store.head()]
    recorded(store, photo, 3)
    anchors.append(store.head())
    prev = first.record_hash
    for entry in store.list(limit=10)[0][::-1][1:]:  # rewrite seq 2, then re-link and re-hash 3 and 4
        forged = replace(entry, score=0.01, prev_hash=prev, outcomes=())
        prev = entry_hash(prev, forged)
        backend.sql("UPDATE records SET score = 0.01, prev_hash = ?, record_hash = ? WHERE seq = ?",
                    (forged.prev_hash, prev, entry.seq))
    backend.sql("UPDATE chain_head SET hash = ? WHERE id = 1", (prev,))
    assert store.verify().ok
    report = store.verify(anchors=anchors)
    assert (report.first_bad["seq"], report.first_bad["problem"], report.checked, report.anchors_checked) == (
        4, "altered", 1, 1)
    assert "among seq 2..4" in report.first_bad["detail"]


def test_heads_name_their_store_and_a_head_of_another_is_refused(store, backend, photo, tmp_path):
    empty = store.head()
    assert (empty.seq, empty.hash, empty.signature) == (0, "0" * 64, None) and len(empty.store) == 32
    assert store.verify(anchors=[empty]).ok
    store.record(image_bytes=photo, **fields())
    assert backend.open().head().store == empty.store  # kept in the database: every replica names it alike
    other = open_store(None, tmp_path / "other")
    try:
        foreign = other.head()
    finally:
        other.close()
    assert foreign.store != empty.store
    with pytest.raises(ForeignHead, match=f"evidence store {foreign.store}.*this one is {empty.store}"):
        store.verify(anchors=[empty, foreign])
    assert issubclass(ForeignHead, InvalidInput) and issubclass(ForeignHead, ValueError)


def test_verify_says_embeddings_are_not_covered(store, photo):
    record = store.record(image_bytes=photo, **fields(), embedding=np.ones(8))
    assert record.seq == 1 and "embeddings" in store.verify().not_covered
    assert "derived data" in store.verify().not_covered


def test_a_signed_head_checks_only_with_its_key_and_unaltered(store, photo, tmp_path):
    store.record(image_bytes=photo, **fields())
    key_file, other_file = tmp_path / "head.key", tmp_path / "other.key"
    heads.new_key(key_file)
    heads.new_key(other_file)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    with pytest.raises(InvalidInput, match="already exists"):
        heads.new_key(key_file)
    key = heads.read_key(key_file)
    head = heads.signed(store.head(), key)
    (tmp_path / "heads.jsonl").write_text(heads.head_line(head) + "\n\n" + heads.head_line(replace(head, seq=2)) + "\n")
    read = heads.read_heads(tmp_path / "heads.jsonl")
    assert [where for where, _ in read] == [f"{tmp_path / 'heads.jsonl'} line 1", f"{tmp_path / 'heads.jsonl'} line 3"]
    assert read[0][1] == head and heads.signature_ok(head, key)
    assert not heads.signature_ok(head, heads.read_key(other_file))
    problem = heads.first_bad_signature(read, key)
    assert "line 3" in problem and "edited or forged" in problem
    assert "not signed" in heads.first_bad_signature([("x", replace(head, signature=None))], key)
    (tmp_path / "pretty.json").write_text(json.dumps(json.loads(heads.head_line(head)), indent=2))
    assert heads.read_heads(tmp_path / "pretty.json") == [(str(tmp_path / "pretty.json"), head)]


@pytest.mark.parametrize("text, says", [
    ("", "holds no head"), ("{not json", "line 1 is not JSON"), ("[1, 2]", "not a JSON object"),
    ('{"seq": true, "hash": "' + "a" * 64 + '", "at": "t", "store": "' + "b" * 32 + '"}', '"seq"'),
    ('{"seq": 3, "hash": "xyz", "at": "t", "store": "' + "b" * 32 + '"}', '"hash"'),
    ('{"seq": 0, "hash": "' + "a" * 64 + '", "at": "t", "store": "' + "b" * 32 + '"}', "genesis"),
    ('{"seq": 3, "hash": "' + "a" * 64 + '", "at": "t"}', '"store"'),
])
def test_a_malformed_head_file_is_refused_naming_the_line(tmp_path, text, says):
    (tmp_path / "heads.jsonl").write_text(text)
    with pytest.raises(InvalidInput, match=re.escape(says)):
        heads.read_heads(tmp_path / "heads.jsonl")
    with pytest.raises(InvalidInput, match="cannot read"):
        heads.read_heads(tmp_path / "missing.jsonl")
    (tmp_path / "bad.key").write_text("not hex")
    with pytest.raises(InvalidInput, match="--new-key"):
        heads.read_key(tmp_path / "bad.key")


# --------------------------------------------------------------------------- nothing lost, nothing half-written


def test_a_failure_between_original_and_row_leaves_nothing_behind(store, backend, photo, monkeypatch):
    kept = store.record(image_bytes=photo, **fields())
    new_photo = jpeg_with_metadata(synth_photo(2, 0))

    def failing(*args):
        raise backend.outage()

    monkeypatch.setattr(store_module, "_advance_head", failing)
    with pytest.raises(StoreUnavailable, match="unavailable"):
        store.record(image_bytes=new_photo, **fields())
    with pytest.raises(StoreUnavailable):
        store.record(image_bytes=photo, **fields())  # its original was there before: it must stay
    monkeypatch.undo()
    assert not blob_path(backend, hashlib.sha256(new_photo).hexdigest()).exists()
    assert store.original(kept.image_sha256) == photo
    assert [r.seq for r in store.list()[0]] == [1] and store.verify().ok
    assert store.record(image_bytes=new_photo, **fields()).seq == 2 and store.verify().ok


def test_a_full_disk_is_store_unavailable_and_leaves_no_temporary_file(store, backend, photo, monkeypatch):
    def disk_full(descriptor):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("evidence_store.blobs.os.fsync", disk_full)
    with pytest.raises(StoreUnavailable, match="No space left"):
        store.record(image_bytes=photo, **fields())
    monkeypatch.undo()
    assert [p for p in (backend.data_dir / "originals").rglob("*") if p.is_file()] == []
    assert store.list() == ([], None) and store.verify().ok


def test_unreferenced_originals_are_swept(store, backend, photo):
    kept = store.record(image_bytes=photo, **fields())
    orphan = jpeg_with_metadata(synth_photo(3, 0))
    store._blobs.put(hashlib.sha256(orphan).hexdigest(), orphan)  # as a crash after step 1 would leave it
    temporary = blob_path(backend, kept.image_sha256).parent / ".incoming-crashed"
    temporary.write_bytes(b"half a photo")  # as a crash during step 1 would leave it
    assert store.sweep_orphans(older_than_s=3600) == 0  # too young: may belong to a write in progress
    assert store.sweep_orphans(older_than_s=-1) == 1
    assert not blob_path(backend, hashlib.sha256(orphan).hexdigest()).exists() and not temporary.exists()
    assert store.original(kept.image_sha256) == photo and store.verify().ok


def test_concurrent_writers_on_two_replicas_make_one_chain(backend, photo):
    replicas = [backend.open(), backend.open()]  # two store objects on one database: two API replicas
    photos = [jpeg_with_metadata(synth_photo(4, shot)) for shot in range(8)]
    errors = []

    def write(worker: int) -> None:
        try:
            for i in range(25):
                replicas[worker % 2].record(image_bytes=photos[worker], **fields(note=f"{worker}-{i}"))
        except Exception as exc:  # reported below; a thread's exception would be lost
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(worker,)) for worker in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    seqs = [row[0] for row in backend.sql("SELECT seq FROM records ORDER BY seq")]
    assert seqs == list(range(1, 201))
    report = replicas[1].verify()
    assert report.ok and report.checked == 200 and report.head_seq == 200


# --------------------------------------------------------------------------- schema migrations


def as_version_1_software(monkeypatch) -> None:
    """The record columns of schema 1 (no product): what software of that time read and wrote."""
    import evidence_store.rows as rows
    import evidence_store.store as store

    columns = tuple(column for column in rows.RECORD_COLUMNS if column != "product")
    monkeypatch.setattr(rows, "RECORD_COLUMNS", columns)
    monkeypatch.setattr(store, "RECORD_COLUMNS", columns)
    monkeypatch.setattr(store, "RECORD_SELECT", "SELECT " + ", ".join(columns) + " FROM records")


def test_a_version_1_database_is_upgraded_to_the_latest(backend, photo, monkeypatch):
    from evidence_store import migrations

    with monkeypatch.context() as then:
        as_version_1_software(then)
        old = EvidenceStore(_bare_database(backend), backend.data_dir, migrate=False)
        backend.stores.append(old)
        assert old.migrate(target=1) == [1] and old.schema_version() == 1
        record = old.record(image_bytes=photo, **fields(), case="OLD-1")
        old.add_outcome(record.id, "counterfeit", "before the upgrade", "investigator-2")
        with pytest.raises(Exception, match="embeddings") as missing:
            old.add_embedding(record.id, np.ones(8))  # no embeddings table at version 1: a bug, not an outage
        assert not isinstance(missing.value, StoreUnavailable)
    upgraded = backend.open()  # open_store migrates
    assert upgraded.schema_version() == migrations.LATEST
    assert [v for (v,) in backend.sql("SELECT version FROM schema_migrations ORDER BY version")] == list(
        range(1, migrations.LATEST + 1))
    assert upgraded.migrate() == [] and upgraded.get(record.id).outcome == "counterfeit"
    upgraded.add_embedding(record.id, np.ones(8))
    copy = upgraded.record(image_bytes=reencoded(photo), **fields())
    assert [m.record.id for m in upgraded.similar(copy.id)] == [record.id]  # v1 fingerprints still serve
    assert upgraded.get(record.id).product is None  # not kept then; its hash never covered one
    named = upgraded.record(image_bytes=photo, **fields(), product="carton-front")
    assert upgraded.get(named.id).product == "carton-front"
    assert upgraded.verify().ok and len(upgraded.head().store) == 32  # an id for the store's published heads
    backend.sql("INSERT INTO schema_migrations (version, name, applied_at) VALUES (99, 'future', 'x')")
    with pytest.raises(SchemaTooNew):
        backend.open()


def test_replicas_starting_together_migrate_once(backend):
    opened, errors = [], []

    def start() -> None:
        try:
            opened.append(backend.open())
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(opened) == 3
    assert backend.sql("SELECT COUNT(*) FROM schema_migrations")[0][0] == len(MIGRATIONS)


def _bare_database(backend: Backend):
    if backend.name == "sqlite":
        from evidence_store.sqlite import SqliteDatabase

        return SqliteDatabase(backend.data_dir / "evidence.sqlite3")
    from evidence_store.postgres import PostgresDatabase

    return PostgresDatabase(backend.url)


# --------------------------------------------------------------------------- similar photos


def test_similar_finds_copies_of_a_photo_but_not_other_photos(backend, photo):
    store, other_replica = backend.open(), backend.open()
    original = store.record(image_bytes=photo, **fields(), case="CASE-1")
    copies = [reencoded(photo, transpose=Image.Transpose.ROTATE_90, quality=60),
              reencoded(photo, transpose=Image.Transpose.FLIP_LEFT_RIGHT, scale=0.75),
              reencoded(photo, fmt="PNG")]
    listed = [other_replica.record(image_bytes=copy, **fields(kind="screening", external_id=f"listing-{i}"))
              for i, copy in enumerate(copies)]
    for product, shot in [(0, 1), (0, 2), (1, 0), (2, 0)]:  # the same product in other shots; other products
        store.record(image_bytes=jpeg_with_metadata(synth_photo(product, shot)), **fields())
    matches = store.similar(original.id)
    assert {m.record.id for m in matches} == {r.id for r in listed}
    assert all(m.kind == "near_duplicate" and 0 <= m.distance <= 12 for m in matches)
    assert [m.distance for m in matches] == sorted(m.distance for m in matches)
    assert original.id in {m.record.id for m in other_replica.similar(listed[0].id)}
    assert len(store.similar(original.id, limit=2)) == 2
    with pytest.raises(NotFound):
        store.similar(new_id())


def test_similar_finds_embedding_neighbours_across_replicas(backend, photo):
    store, other_replica = backend.open(), backend.open()
    records = [store.record(image_bytes=jpeg_with_metadata(synth_photo(p, 3)), **fields()) for p in range(4)]
    rng = np.random.default_rng(0)
    base = rng.standard_normal(16).astype(np.float32)
    vectors = [base, base + 0.1 * rng.standard_normal(16), base + 0.5 * rng.standard_normal(16), -base]
    for record, vector in zip(records, vectors):
        other_replica.add_embedding(record.id, vector)
    store.similar(records[0].id)  # loads the index; the next embedding arrives afterwards
    extra = store.record(image_bytes=jpeg_with_metadata(synth_photo(5, 3)), **fields())
    other_replica.add_embedding(extra.id, base * 3)  # same direction: distance 0
    matches = store.similar(records[0].id, limit=3)
    assert [(m.record.id, m.kind) for m in matches] == [(extra.id, "embedding"), (records[1].id, "embedding"),
                                                       (records[2].id, "embedding")]
    assert matches[0].distance == pytest.approx(0, abs=1e-5) and matches[1].distance < matches[2].distance
    assert [m.record.id for m in store.similar(records[0].id, max_distance=0.05)] == [extra.id, records[1].id]
    with pytest.raises(ValueError, match="already has"):
        store.add_embedding(records[0].id, base)
    with pytest.raises(ValueError, match="16 values"):
        store.add_embedding(store.record(image_bytes=photo, **fields()).id, np.ones(8))
    with pytest.raises(NotFound):
        store.add_embedding(new_id(), base)


# --------------------------------------------------------------------------- exports


def test_csv_export_with_stripped_images(store, photo, tmp_path):
    first = store.record(image_bytes=photo, **fields(), location="Rotterdam", case="CASE-1")
    store.add_outcome(first.id, "counterfeit", "lab", "investigator-2")
    second = store.record(image_bytes=jpeg_with_metadata(synth_photo(1, 0), orientation=3), **fields())
    out = io.StringIO()
    counts = store.export(out, format="csv", with_images=tmp_path / "images")
    assert counts == {"records": 2, "images": 2}
    import csv

    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert [r["id"] for r in rows] == [first.id, second.id]
    assert rows[0]["outcome"] == "counterfeit" and json.loads(rows[0]["thresholds"]) == {"low": 0.2, "high": 0.8}
    assert rows[0]["location"] == "Rotterdam" and rows[1]["case"] == ""
    for row in rows:
        exported = (tmp_path / "images" / row["image_file"]).read_bytes()
        assert_no_metadata(exported)
    later = io.StringIO()
    assert store.export(later, since=second.created_at)["records"] == 1
    with pytest.raises(ValueError, match="format"):
        store.export(io.StringIO(), format="xml")


def test_jsonl_export_can_be_verified_without_this_software(store, photo):
    first = store.record(image_bytes=photo, **fields(), note="naïve café ✓")
    store.add_outcome(first.id, "counterfeit", None, "investigator-2")
    store.record(image_bytes=photo, **fields(score=None, verdict="retake"))
    out = io.StringIO()
    assert store.export(out, format="jsonl") == {"entries": 3, "images": 0}
    prev = "0" * 64
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    for line in lines:
        claimed, linked = line.pop("record_hash"), line.pop("prev_hash")
        text = json.dumps(line, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
        assert linked == prev and hashlib.sha256((prev + text).encode()).hexdigest() == claimed
        prev = claimed
    assert [line["type"] for line in lines] == ["record", "outcome", "record"]
    assert prev == store.verify().head_hash


def test_dataset_splits_by_case_without_duplicates(store, tmp_path):
    def add(product, shot, case, *labels):
        record = store.record(image_bytes=jpeg_with_metadata(synth_photo(product, shot)), **fields(), case=case)
        for label in labels:
            store.add_outcome(record.id, label, None, "investigator-2")
        return record

    for case in range(12):
        for shot in range(2):
            add(case % 4, 10 * case + shot, f"CASE-{case}", ("genuine", "counterfeit")[case % 2])
    add(0, 0, "CASE-0", "genuine")  # photo of CASE-0 shot 0 again: a duplicate, same label
    add(5, 1, None, "counterfeit", "unknown")  # withdrawn: the latest outcome wins
    add(5, 2, None)  # never confirmed
    add(5, 3, None, "genuine")  # no case: a group of its own
    conflict = jpeg_with_metadata(synth_photo(6, 0))
    for label in ("genuine", "counterfeit"):
        store.add_outcome(store.record(image_bytes=conflict, **fields()).id, label, None, "investigator-2")
    counts = store.to_dataset(tmp_path / "data", seed=3)
    files = sorted(p.relative_to(tmp_path / "data").as_posix() for p in (tmp_path / "data").rglob("*.*"))
    assert counts["images"] == len(files) == 25 and counts["conflicts_skipped"] == 1
    assert counts["duplicates_skipped"] == 2  # the CASE-0 copy and the second conflicting record
    assert sum(n for split in ("train", "val", "test") for n in counts[split].values()) == 25
    splits_of_case: dict[str, set[str]] = {}
    for record in store.list(limit=100)[0]:
        name = f"{record.image_sha256}.jpg"
        where = {f.split("/")[0] for f in files if f.endswith(name)}
        if record.case and where:
            splits_of_case.setdefault(record.case, set()).update(where)
    assert len(splits_of_case) == 12 and all(len(s) == 1 for s in splits_of_case.values())
    assert len({next(iter(s)) for s in splits_of_case.values()}) >= 2  # cases do spread over splits
    assert_no_metadata((tmp_path / "data" / files[0]).read_bytes())
    store.to_dataset(tmp_path / "again", seed=3)
    assert files == sorted(p.relative_to(tmp_path / "again").as_posix() for p in (tmp_path / "again").rglob("*.*"))
    with pytest.raises(ValueError, match="not empty"):
        store.to_dataset(tmp_path / "data")


# --------------------------------------------------------------------------- opening


def test_open_store_urls(tmp_path, photo):
    default = open_store(None, tmp_path / "a")
    default.close()
    assert (tmp_path / "a" / "evidence.sqlite3").is_file()
    absolute = open_store(f"sqlite:///{tmp_path}/b/store.db", tmp_path / "a")
    absolute.close()
    assert (tmp_path / "b" / "store.db").is_file()
    with pytest.raises(ValueError, match=r"mysql://root:\*\*\*@db"):
        open_store("mysql://root:hunter2@db/evidence", tmp_path)


def test_an_unreachable_database_is_store_unavailable(tmp_path):
    (tmp_path / "a-folder").mkdir()
    with pytest.raises(StoreUnavailable, match="unavailable"):
        open_store(f"sqlite:///{tmp_path}/a-folder", tmp_path)  # a folder, not a database file
    pytest.importorskip("psycopg")
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(StoreUnavailable, match="unavailable"):
        open_store(f"postgresql://evidence@127.0.0.1:{port}/postgres", tmp_path)


def test_sqlite_is_durable_and_checks_foreign_keys(tmp_path):
    store = open_store(None, tmp_path)
    try:
        with store._db.read() as tx:
            assert tx.one("PRAGMA journal_mode")[0] == "wal"
            assert tx.one("PRAGMA synchronous")[0] == 2  # FULL
            assert tx.one("PRAGMA foreign_keys")[0] == 1
    finally:
        store.close()


def test_the_store_imports_neither_torch_nor_training(tmp_path, photo):
    script = ("import sys; from evidence_store import open_store; s = open_store(None, sys.argv[1]); "
              "s.verify(); print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'training')))")
    result = subprocess.run([sys.executable, "-c", script, str(tmp_path)], capture_output=True, text=True,
                            timeout=60, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
