"""The retention policy (evidence_store/retention.py): old originals are deleted, each deletion a chain entry;
verify tells a retired photo from a missing one. Every test runs on SQLite and on PostgreSQL."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from datetime import datetime, timedelta, timezone

import pytest
import test_evidence
from fastapi.testclient import TestClient
from test_evidence import blob_path, fields

from evidence_store import InvalidInput, Retired, retention

from evidence_backends import jpeg_with_metadata, synth_photo

backend, store = test_evidence.backend, test_evidence.store  # the evidence tests' fixtures: both backends
DAY = timedelta(days=1)


@pytest.fixture(scope="module")
def photos() -> list[bytes]:
    return [jpeg_with_metadata(synth_photo(product, 0)) for product in range(5)]


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def old_and_young(store, old: list[bytes], young: list[bytes], **extra) -> tuple[list, datetime, list]:
    """Records of the `old` photos, then the moment that divides them from the records of the `young` ones."""
    older = [store.record(image_bytes=data, **fields(), **extra) for data in old]
    divide = datetime.now(timezone.utc)
    return older, divide, [store.record(image_bytes=data, **fields(), **extra) for data in young]


def retire(store, divide: datetime, **options):
    """Retire what was recorded before `divide`, as a 1-day policy would a day later."""
    return store.retire_originals(1, now=divide + DAY, **options)


def test_retired_originals_are_gone_and_verify_counts_them(store, backend, photos):
    older, divide, younger = old_and_young(store, photos[:3], photos[3:])
    store.add_outcome(older[0].id, "counterfeit", "lab", "investigator-2")
    run = retire(store, divide)
    assert (run.records, run.files, run.bytes, run.dry_run) == (3, 3, sum(map(len, photos[:3])), False)
    assert not any(blob_path(backend, r.image_sha256).exists() for r in older)
    assert all(blob_path(backend, r.image_sha256).exists() for r in younger)
    report = store.verify()
    assert (report.ok, report.retired, report.checked, report.head_seq) == (True, 3, 9, 9)
    assert store.verify(images=False).ok
    kept = store.get(older[0].id)
    assert kept.retired_at and kept.verdict == "counterfeit" and kept.outcome == "counterfeit"
    assert kept.record_hash == older[0].record_hash and store.get(younger[0].id).retired_at is None
    with pytest.raises(Retired, match=r"retired on \d{4}-\d\d-\d\d by the retention policy"):
        store.original(older[1].image_sha256)
    with pytest.raises(Retired):
        store.thumbnail(older[1].image_sha256)
    assert retire(store, divide).records == 0  # each record is retired once
    again = store.record(image_bytes=photos[0], **fields())  # the same photo, inspected anew: kept again
    assert store.original(again.image_sha256) == photos[0] and store.verify().ok


def test_a_photo_deleted_without_a_retirement_is_still_missing(store, backend, photos):
    older, divide, younger = old_and_young(store, photos[:2], photos[2:4])
    retire(store, divide)
    blob_path(backend, younger[1].image_sha256).unlink()
    report = store.verify()
    assert not report.ok and report.first_bad["problem"] == "image_missing"
    assert (report.first_bad["seq"], report.first_bad["id"]) == (younger[1].seq, younger[1].id)


def test_a_photo_a_younger_record_shares_is_kept_until_it_retires_too(store, backend, photos):
    older, divide, younger = old_and_young(store, [photos[0], photos[1]], [photos[0]])
    run = retire(store, divide)
    assert (run.records, run.files, run.bytes) == (2, 1, len(photos[1]))
    assert blob_path(backend, sha(photos[0])).exists() and not blob_path(backend, sha(photos[1])).exists()
    assert store.original(sha(photos[0])) == photos[0]  # the young record still needs it
    assert store.verify().ok and store.verify().retired == 2
    later = retire(store, datetime.now(timezone.utc))
    assert (later.records, later.files) == (1, 1) and not blob_path(backend, sha(photos[0])).exists()
    assert store.verify().retired == 3


def test_tampering_with_a_retirement_is_caught(store, backend, photos):
    older, divide, _ = old_and_young(store, photos[:2], photos[2:3])
    retire(store, divide)
    seqs = [seq for (seq,) in backend.sql("SELECT seq FROM retirements ORDER BY seq")]
    backend.sql("UPDATE retirements SET created_at = '2020-01-01T00:00:00.000000Z' WHERE seq = ?", (seqs[0],))
    report = store.verify()
    assert (report.ok, report.first_bad["seq"], report.first_bad["problem"]) == (False, seqs[0], "altered")
    backend.sql("DELETE FROM retirements WHERE seq = ?", (seqs[0],))  # as if the photo had never been retired
    report = store.verify()
    assert (report.first_bad["id"], report.first_bad["problem"]) == (older[0].id, "image_missing")
    assert store.verify(images=False).first_bad == {
        "seq": seqs[0], "id": None, "problem": "removed", "detail": f"the chain jumps from seq {seqs[0] - 1} to "
        f"{seqs[1]}: 1 entry was removed"}


def test_a_retirement_pointed_at_another_record_is_caught(store, backend, photos):
    older, divide, younger = old_and_young(store, photos[:1], photos[1:2])
    retire(store, divide)
    backend.sql("UPDATE retirements SET record_id = ?", (younger[0].id,))  # hide that young record's photo's loss
    blob_path(backend, younger[0].image_sha256).unlink()
    report = store.verify()
    assert not report.ok and report.first_bad["id"] == older[0].id and report.first_bad["problem"] == "image_missing"


def test_a_crash_between_entry_and_deletion_is_finished_by_the_next_run(store, backend, photos, monkeypatch):
    older, divide, _ = old_and_young(store, photos[:2], photos[2:3])

    def crash(*args, **kwargs):
        raise KeyboardInterrupt  # the process dies after step 1 committed

    monkeypatch.setattr(store, "_unneeded_photos", crash)
    with pytest.raises(KeyboardInterrupt):
        retire(store, divide)
    monkeypatch.undo()
    assert all(blob_path(backend, r.image_sha256).exists() for r in older)  # harmless: photos still there
    assert store.verify().ok and store.verify().retired == 2
    run = retire(store, divide)
    assert (run.records, run.files) == (0, 2) and not any(blob_path(backend, r.image_sha256).exists() for r in older)
    assert store.verify().ok


def test_a_dry_run_changes_nothing_and_says_what_a_run_would(store, backend, photos):
    _, divide, _ = old_and_young(store, [photos[0], photos[1], photos[1]], [photos[0], photos[2]])
    head = store.head()
    preview = retire(store, divide, dry_run=True)
    assert preview.dry_run and (preview.records, preview.files, preview.bytes) == (3, 1, len(photos[1]))
    assert (store.head().seq, store.head().hash) == (head.seq, head.hash)  # nothing appended
    assert store.verify().retired == 0 and backend.sql("SELECT COUNT(*) FROM retirements")[0][0] == 0
    assert all(blob_path(backend, sha(p)).exists() for p in photos[:3])
    run = retire(store, divide)
    assert (run.records, run.files, run.bytes, run.dry_run) == (3, 1, len(photos[1]), False)


def test_a_store_from_before_retirements_migrates_and_retires(backend, photos):
    from evidence_store import EvidenceStore

    old = EvidenceStore(test_evidence._bare_database(backend), backend.data_dir, migrate=False)
    backend.stores.append(old)
    assert old.migrate(target=5) == [1, 2, 3, 4, 5]
    older, divide, _ = old_and_young(old, photos[:2], photos[2:3])
    assert old.get(older[0].id).retired_at is None and old.verify().ok  # schema 5: no retirements table yet
    upgraded = backend.open()
    assert upgraded.schema_version() == 6 and retire(upgraded, divide).records == 2
    assert upgraded.verify().ok and upgraded.verify().retired == 2 and upgraded.get(older[0].id).retired_at


def test_a_bad_retention_period_is_refused(store):
    for days in (0, -1, 1.5, True, "30", retention.MAX_DAYS + 1):
        with pytest.raises(InvalidInput, match="whole number of days"):
            store.retire_originals(days)


def test_exports_and_datasets_say_a_photo_was_retired(store, photos, tmp_path):
    older, divide, younger = old_and_young(store, photos[:2], photos[2:3])
    for record in older + younger:
        store.add_outcome(record.id, "genuine", None, "investigator-2")
    retire(store, divide)
    out = io.StringIO()
    assert store.export(out, format="csv", with_images=tmp_path / "images") == {
        "records": 3, "images": 1, "images_retired": 2}
    rows = {row["id"]: row for row in csv.DictReader(io.StringIO(out.getvalue()))}
    assert rows[older[0].id]["retired_at"] and rows[older[0].id]["image_file"] == ""
    assert rows[younger[0].id]["retired_at"] == "" and rows[younger[0].id]["image_file"]
    out = io.StringIO()
    assert store.export(out, format="jsonl", with_images=tmp_path / "again")["images_retired"] == 2
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    retirements = [line for line in lines if line["type"] == "retirement"]
    assert {line["record_id"] for line in retirements} == {r.id for r in older}
    assert retirements[0]["image_sha256"] == older[0].image_sha256 and "retention policy" in retirements[0]["reason"]
    counts = store.to_dataset(tmp_path / "data")
    assert counts["retired_skipped"] == 2 and counts["images"] == 1 and counts["confirmed_records"] == 1


# --------------------------------------------------------------------------- the command line and the API


@pytest.fixture
def evidence_env(backend, monkeypatch):
    monkeypatch.setenv("COUNTERFEIT_DATA_DIR", str(backend.data_dir))
    if backend.url:
        monkeypatch.setenv("COUNTERFEIT_DATABASE_URL", backend.url)
    monkeypatch.delenv("COUNTERFEIT_EVIDENCE_RETAIN_ORIGINALS_DAYS", raising=False)
    return backend


def days_later(monkeypatch, days: int) -> None:
    """The retention policy's clock, `days` days ahead: what is recorded now is then that old."""
    real = datetime

    class Later(datetime):
        @classmethod
        def now(cls, tz=None):
            return real.now(tz) + timedelta(days=days)

    monkeypatch.setattr(retention, "datetime", Later)


def test_cli_retire(run_cli, evidence_env, store, photos, monkeypatch):
    older = [store.record(image_bytes=data, **fields()) for data in photos[:2]]
    code, out, _ = run_cli("evidence", "retire", "--older-than-days", "30", "--dry-run")
    assert code == 0 and out.startswith("would retire the originals of 0 records") and "dry run" in out
    days_later(monkeypatch, 31)
    code, out, _ = run_cli("evidence", "retire", "--older-than-days", "30", "--dry-run")
    assert code == 0 and "of 2 records" in out and "2 photo files" in out
    assert all(blob_path(evidence_env, r.image_sha256).exists() for r in older)
    monkeypatch.setenv("COUNTERFEIT_EVIDENCE_RETAIN_ORIGINALS_DAYS", "30")  # the setting is the default period
    code, out, _ = run_cli("evidence", "retire")
    assert code == 0 and out.startswith("retired the originals of 2 records") and out.count("\n") == 1
    assert f"{sum(map(len, photos[:2]))} bytes" in out
    code, out, _ = run_cli("evidence", "verify")
    assert code == 0 and out.startswith("ok: 4 entries intact; 2 originals retired by the retention policy")


@pytest.mark.parametrize("args, says", [
    (["--older-than-days", "0"], "whole number of days"),
    (["--older-than-days", "ten"], "whole number of days"),
    (["--older-than-days", "-5"], "whole number of days"),
    ([], "no retention period"),
])
def test_cli_retire_refuses_a_bad_period(run_cli, evidence_env, store, args, says):
    code, out, err = run_cli("evidence", "retire", *args)
    assert code == 2 and out == "" and err.count("\n") == 1 and says in err


def test_the_api_answers_410_for_a_retired_photo(evidence_env, store, photos):
    from api.app import create_app
    from api.auth import new_key
    from api.settings import Settings

    (admin, entry) = new_key("admin-1", "admin")
    older, divide, younger = old_and_young(store, photos[:1], photos[:1])  # one photo, shared
    retire(store, divide)
    settings = Settings(api_keys=[entry], data_dir=evidence_env.data_dir, database_url=evidence_env.url)
    with TestClient(create_app(settings)) as client:
        headers = {"X-API-Key": admin}
        for what in ("original", "thumbnail"):
            gone = client.get(f"/v1/inspections/{older[0].id}/{what}", headers=headers)
            assert gone.status_code == 410 and gone.json()["error"]["code"] == "retired"
            assert "by the retention policy" in gone.json()["error"]["message"]
            assert client.get(f"/v1/inspections/{younger[0].id}/{what}", headers=headers).status_code == 200
        record = client.get(f"/v1/inspections/{older[0].id}", headers=headers).json()
        assert record["retired_at"] and record["verdict"] == "counterfeit"
        report = client.get("/v1/admin/evidence/verify", headers=headers).json()
        assert report["ok"] and report["retired"] == 1

