"""`counterfeit evidence …` and `counterfeit screen --record`: the log from the command line."""

import csv
import json
import sqlite3

import pytest


@pytest.fixture
def logged(run_cli, synth_data, model_path, tmp_path, monkeypatch, database_url):
    """An evidence log (SQLite, or PostgreSQL plus the photo folder) holding the fixture's test photos."""
    monkeypatch.setenv("COUNTERFEIT_DATA_DIR", str(tmp_path / "evidence"))
    if database_url:
        monkeypatch.setenv("COUNTERFEIT_DATABASE_URL", database_url)
    code, _, err = run_cli("screen", synth_data / "test", "--model", model_path, "--record",
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


def test_export_csv_and_jsonl(run_cli, logged, tmp_path):
    code, _, _ = run_cli("evidence", "export", "--output", tmp_path / "log.csv", "--with-images", tmp_path / "img")
    rows = list(csv.DictReader((tmp_path / "log.csv").open()))
    assert code == 0 and len(rows) == 8 and len(list((tmp_path / "img").iterdir())) >= 1
    code, out, _ = run_cli("evidence", "export", "--format", "jsonl")
    assert code == 0 and len(out.splitlines()) == 8


def test_to_dataset_writes_confirmed_outcomes_split_by_case(run_cli, logged, tmp_path):
    from inference.evidence import open_store

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
