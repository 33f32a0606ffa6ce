"""`counterfeit evidence …` and `counterfeit screen --record`: the log from the command line."""

import csv
import json
import sqlite3
import stat

import pytest


@pytest.fixture
def logged(run_cli, synth_data, classifier_model, tmp_path, monkeypatch, database_url):
    """An evidence log (SQLite, or PostgreSQL plus the photo folder) holding the fixture's test photos. Screened
    by the classifier, the fastest to load: the log is under test here (the reference model's is in
    test_reference.py)."""
    monkeypatch.setenv("COUNTERFEIT_DATA_DIR", str(tmp_path / "evidence"))
    if database_url:
        monkeypatch.setenv("COUNTERFEIT_DATABASE_URL", database_url)
    code, _, err = run_cli("screen", synth_data / "test", "--model", classifier_model, "--record",
                           "--output", tmp_path / "out.jsonl")
    assert code == 0, err
    return tmp_path / "evidence", database_url


def tamper(logged, statement: str) -> None:
    """Change the log behind the store's back, as someone with access to the database could."""
    folder, url = logged
    if url is None:
        with sqlite3.connect(folder / "evidence.sqlite3") as db:
            db.execute(statement)
        return
    import psycopg

    with psycopg.connect(url, autocommit=True) as db:
        db.execute(statement)


def test_screen_record_keeps_every_image(logged, tmp_path):
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert len(lines) == 8 and all(line["record_id"] for line in lines)


def test_verify_passes_then_names_the_altered_record(run_cli, logged):
    code, out, _ = run_cli("evidence", "verify")
    assert code == 0 and out.startswith("ok: 8 entries intact")
    tamper(logged, "UPDATE records SET score = 0.999 WHERE seq = 3")
    code, out, _ = run_cli("evidence", "verify")
    assert code == 1 and "ALTERED: entry seq 3" in out and "altered" in out


def csv_rows(path) -> list[dict]:
    """An export's CSV rows, below its '#' verification line."""
    with path.open() as handle:
        assert handle.readline().startswith("# counterfeit evidence export; verification: ")
        return list(csv.DictReader(handle))


def test_export_csv_and_jsonl(run_cli, logged, tmp_path):
    code, _, _ = run_cli("evidence", "export", "--output", tmp_path / "log.csv", "--with-images", tmp_path / "img")
    rows = csv_rows(tmp_path / "log.csv")
    assert code == 0 and len(rows) == 8 and len(list((tmp_path / "img").iterdir())) >= 1
    screened = {json.loads(line)["record_id"]: json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()}
    assert all(row["product"] == (screened[row["id"]].get("product") or "") for row in rows)  # none: a classifier
    code, out, _ = run_cli("evidence", "export", "--format", "jsonl")
    header, *entries = out.splitlines()
    assert code == 0 and len(entries) == 8 and all("seq" in json.loads(line) for line in entries)
    assert json.loads(header)["counterfeit_evidence_export"]["verified"] == "intact"


def test_a_damaged_log_is_exported_with_a_warning_and_exit_1(run_cli, logged, tmp_path):
    """Issue 24: an edited row was exported with exit 0 and not a word."""
    tamper(logged, "UPDATE records SET score = 0.999 WHERE seq = 3")
    code, out, err = run_cli("evidence", "export", "--format", "jsonl")
    verification = json.loads(out.splitlines()[0])["counterfeit_evidence_export"]
    assert code == 1 and verification["verified"] == "damaged" and verification["first_bad"]["seq"] == 3
    assert "the log is DAMAGED: entry seq 3" in err and "--allow-damaged" in err
    code, _, err = run_cli("evidence", "export", "--output", tmp_path / "log.csv", "--allow-damaged")
    assert code == 0 and "DAMAGED" in err
    assert (tmp_path / "log.csv").read_text().startswith("# counterfeit evidence export; verification: DAMAGED at "
                                                         "entry seq 3")


def test_to_dataset_writes_confirmed_outcomes_split_by_case(run_cli, logged, tmp_path):
    from evidence_store import open_store

    store = open_store(logged[1], logged[0])
    records, _ = store.list(limit=50)
    for index, record in enumerate(records):
        store.add_outcome(record.id, "counterfeit" if index % 2 else "genuine", "lab", "qa")
    store.close()
    code, out, _ = run_cli("evidence", "to-dataset", tmp_path / "data")
    assert code == 0
    images = list((tmp_path / "data").rglob("*.*"))
    assert len([p for p in images if p.suffix in (".jpg", ".png")]) == 8
    assert {p.parent.name for p in images if p.suffix in (".jpg", ".png")} == {"genuine", "counterfeit"}


def test_missing_log_exits_2(run_cli, tmp_path):
    code, _, err = run_cli("evidence", "verify", "--data-dir", tmp_path / "nothing")
    assert code == 2 and "no evidence log" in err


def test_a_published_head_catches_what_verify_alone_cannot(run_cli, logged, tmp_path):
    code, out, _ = run_cli("evidence", "head")
    head = json.loads(out)
    assert code == 0 and out.count("\n") == 1 and head["seq"] == 8 and set(head) == {"seq", "hash", "at", "store"}
    (tmp_path / "heads.jsonl").write_text(out)
    tamper(logged, "DELETE FROM fingerprints WHERE record_seq > 6")  # the newest two removed...
    tamper(logged, "DELETE FROM records WHERE seq > 6")
    tamper(logged, "UPDATE chain_head SET seq = 6, hash = (SELECT record_hash FROM records WHERE seq = 6)")  # ...hidden
    code, out, err = run_cli("evidence", "verify")
    assert code == 0 and out.startswith("ok: 6 entries intact") and "unanchored" in out  # the chain alone: fooled
    assert "embeddings" in err and "derived data" in err
    code, out, _ = run_cli("evidence", "verify", "--head", tmp_path / "heads.jsonl")
    assert code == 1 and out.count("\n") == 1
    assert out.startswith("ALTERED: entry seq 7 (id None): removed:") and "entries 7..8 were removed" in out


def test_signed_heads_check_with_their_key_only(run_cli, logged, tmp_path):
    key = tmp_path / "head.key"
    assert run_cli("evidence", "head", "--new-key", key)[0] == 0 and stat.S_IMODE(key.stat().st_mode) == 0o600
    code, _, err = run_cli("evidence", "head", "--new-key", key)
    assert code == 2 and "already exists" in err
    first = run_cli("evidence", "head", "--key", key)[1]
    (tmp_path / "heads.jsonl").write_text(first + run_cli("evidence", "head", "--key", key)[1])
    assert json.loads(first)["signature"].startswith("hmac-sha256:")
    code, out, _ = run_cli("evidence", "verify", "--head", tmp_path / "heads.jsonl", "--key", key)
    assert code == 0 and "2 anchored heads found intact" in out
    edited = json.loads(first) | {"at": "2020-01-01T00:00:00.000000Z"}
    (tmp_path / "edited.json").write_text(json.dumps(edited))
    code, out, _ = run_cli("evidence", "verify", "--head", tmp_path / "heads.jsonl", "--head", tmp_path / "edited.json",
                           "--key", key)
    assert code == 1 and out.startswith(f"BAD SIGNATURE: {tmp_path / 'edited.json'} line 1 (seq 8")
    code, _, err = run_cli("evidence", "verify", "--key", key)
    assert code == 2 and "--head" in err


@pytest.mark.parametrize("content, says", [
    (None, "cannot read the head file"),
    ("not json\n", "line 1 is not JSON"),
    ('{"seq": 8, "hash": "' + "a" * 64 + '", "at": "2026-01-01T00:00:00Z", "store": "' + "b" * 32 + '"}\n',
     "is of evidence store " + "b" * 32),
])
def test_an_unreadable_head_or_one_of_another_store_exits_2(run_cli, logged, tmp_path, content, says):
    if content is not None:
        (tmp_path / "heads.jsonl").write_text(content)
    code, out, err = run_cli("evidence", "verify", "--head", tmp_path / "heads.jsonl")
    assert code == 2 and out == "" and err.count("\n") == 1 and says in err
