"""`counterfeit screen MANIFEST`: manifests in (CSV, JSON lines, Parquet), rows out (JSON lines, Parquet), each
row standing alone, resumable after a real kill -9, and the fetcher's HTTP limits."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from evaluation.bulk import COLUMNS, AnswerCache
from evaluation.fetch import Fetcher, FetchError
from inference.predictor import Predictor

from conftest import TINY_PHOTO_SETTINGS

pq = pytest.importorskip("pyarrow.parquet", reason="the bulk extra (pyarrow) is not installed")

SCORED = {"genuine", "counterfeit", "inconclusive"}


@pytest.fixture(autouse=True)
def tiny_photo_settings(monkeypatch):
    """The fixtures' photos are small: the quality gate's minimum side is lowered as the API tests do."""
    for name, value in TINY_PHOTO_SETTINGS.items():
        monkeypatch.setenv(f"COUNTERFEIT_{name.upper()}", str(value))


@pytest.fixture
def photos(reference_data, tmp_path) -> list[Path]:
    """The reference model's test photos, copied beside the manifests (tmp_path/photos)."""
    folder = tmp_path / "photos"
    shutil.copytree(reference_data / "test", folder)
    return sorted(folder.rglob("*.jpg"))


def write_csv(path: Path, rows: list[dict]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def read_output(path: Path) -> list[dict]:
    if path.suffix == ".parquet":
        return [row for part in sorted(path.glob("*.parquet")) for row in pq.read_table(part).to_pylist()]
    return [json.loads(line) for line in path.read_text().splitlines()]


def by_id(rows: list[dict]) -> dict[str, dict]:
    return {row["id"]: row for row in rows}


def assert_same_answers(rows: list[dict], expected: list[dict]) -> None:
    """Same ids, verdicts, products and errors; scores equal to float rounding (onnxruntime may sum a batch
    of another size in another order)."""
    got, want = by_id(rows), by_id(expected)
    assert got.keys() == want.keys()
    for key, row in want.items():
        assert {k: got[key][k] for k in COLUMNS if k != "score"} == {k: row[k] for k in COLUMNS if k != "score"}
        assert got[key]["score"] == pytest.approx(row["score"], abs=1e-6)


def test_every_row_stands_alone(run_cli, photos, model_path, tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"not a photo")
    rows = [{"id": f"p{i}", "image": str(p.relative_to(tmp_path))} for i, p in enumerate(photos[:4])]
    rows += [{"id": "uri", "image": photos[4].as_uri()}, {"id": "broken", "image": "broken.jpg"},
             {"id": "gone", "image": "photos/none.jpg"}, {"id": "empty", "image": ""},
             {"id": "store", "image": "nosuchscheme://bucket/a.jpg"}]
    manifest = write_csv(tmp_path / "listings.csv", rows)
    code, _, err = run_cli("screen", manifest, "--model", model_path, "--output", tmp_path / "out.jsonl")
    out = by_id(read_output(tmp_path / "out.jsonl"))
    assert code == 0 and list(out) == [r["id"] for r in rows] and "screened 9 rows" in err
    assert all(list(row) == list(COLUMNS) for row in out.values())
    version = Predictor(model_path).metadata.version
    assert {row["model_version"] for row in out.values()} == {version}
    decided = [out[k] for k in ("p0", "p1", "p2", "p3", "uri") if out[k]["verdict"] in SCORED]
    assert decided and all(0 <= r["score"] <= 1 and r["product"] and len(r["sha256"]) == 64 for r in decided)
    assert out["broken"]["error"].startswith("unsupported_format: ") and out["broken"]["sha256"]
    assert out["gone"]["error"].startswith("not_found: ")
    assert out["empty"]["error"].startswith("missing_image: ")
    assert out["store"]["error"].startswith("unsupported_scheme: ")


def test_csv_jsonl_and_parquet_manifests_and_outputs_agree(run_cli, photos, model_path, tmp_path):
    rows = [{"id": str(1000 + i), "image": str(p.relative_to(tmp_path))} for i, p in enumerate(photos)]
    write_csv(tmp_path / "m.csv", rows)
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pq.write_table(__import__("pyarrow").Table.from_pylist(rows), tmp_path / "m.parquet")
    outputs = []
    for manifest, out in (("m.csv", "a.jsonl"), ("m.jsonl", "b.parquet"), ("m.parquet", "c.jsonl")):
        code, _, _ = run_cli("screen", tmp_path / manifest, "--model", model_path, "--output", tmp_path / out)
        assert code == 0
        outputs.append(read_output(tmp_path / out))
    assert len(outputs[0]) == len(photos)
    for other in outputs[1:]:
        assert_same_answers(other, outputs[0])


def test_columns_are_named_and_ids_checked_before_screening(run_cli, photos, model_path, tmp_path):
    image = str(photos[0].relative_to(tmp_path))
    write_csv(tmp_path / "named.csv", [{"listing": "a", "url": image}])
    code, _, err = run_cli("screen", tmp_path / "named.csv", "--model", model_path, "--output", tmp_path / "o.jsonl",
                           "--id-column", "listing", "--image-column", "url")
    assert code == 0 and read_output(tmp_path / "o.jsonl")[0]["id"] == "a"
    cases = {
        "nocolumn.csv": ([{"key": "a", "image": image}], "has no column 'id'"),
        "repeated.csv": ([{"id": "a", "image": image}, {"id": "a", "image": image}], "repeats the id 'a'"),
        "noid.csv": ([{"id": "", "image": image}], "row 1 has no 'id'"),
    }
    for name, (rows, message) in cases.items():
        out = tmp_path / f"{name}.jsonl"
        code, _, err = run_cli("screen", write_csv(tmp_path / name, rows), "--model", model_path, "--output", out)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and not out.exists()


@pytest.mark.parametrize("name, content, message", [
    ("long.csv", b"id,image\na," + b"x" * 200_000 + b"\n", "is not a CSV file this tool reads"),
    ("binary.csv", b"id,image\n" + bytes(range(128, 256)) * 4 + b"\n", "is not UTF-8 text"),
    ("deep.jsonl", b"[" * 100_000 + b"]" * 100_000 + b"\n", "line 1 nests too deeply"),
    ("binary.jsonl", b"\xff\xfe\x00garbage\n", "is not UTF-8 text"),
])
def test_unreadable_manifests_exit_2_in_one_line(run_cli, model_path, tmp_path, name, content, message):
    """Issue 24: each of these was a traceback and exit 1."""
    (tmp_path / name).write_bytes(content)
    out = tmp_path / "o.jsonl"
    code, _, err = run_cli("screen", tmp_path / name, "--model", model_path, "--output", out)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1 and not out.exists()


@pytest.mark.parametrize("args, message", [
    (("--output", "out.txt"), "name a .jsonl or .parquet output"),
    (("--record",), "--record works with folders"),
    (("--ray", "--output", "out.jsonl"), "--ray writes Parquet"),
])
def test_bad_options_exit_2(run_cli, photos, model_path, tmp_path, args, message):
    manifest = write_csv(tmp_path / "m.csv", [{"id": "a", "image": str(photos[0])}])
    code, _, err = run_cli("screen", manifest, "--model", model_path, *[str(tmp_path / a) if a.startswith("out")
                                                                        else a for a in args])
    assert code == 2 and message in err


def test_a_manifest_with_folders_or_a_missing_one_exits_2(run_cli, photos, model_path, tmp_path):
    manifest = write_csv(tmp_path / "m.csv", [{"id": "a", "image": str(photos[0])}])
    code, _, err = run_cli("screen", manifest, tmp_path / "photos", "--model", model_path)
    assert code == 2 and "give one manifest" in err
    code, _, err = run_cli("screen", tmp_path / "nope.jsonl", "--model", model_path)
    assert code == 2 and "no such manifest" in err


def test_parquet_without_pyarrow_exits_2(run_cli, photos, model_path, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)  # import fails, as on a serving install
    manifest = write_csv(tmp_path / "m.csv", [{"id": "a", "image": str(photos[0])}])
    code, _, err = run_cli("screen", manifest, "--model", model_path, "--output", tmp_path / "o.parquet")
    assert code == 2 and "pip install 'counterfeit-detector[bulk]'" in err


def test_every_row_failing_exits_1(run_cli, model_path, tmp_path):
    manifest = write_csv(tmp_path / "m.csv", [{"id": "a", "image": "none.jpg"}, {"id": "b", "image": "no.png"}])
    code, out, err = run_cli("screen", manifest, "--model", model_path)
    assert code == 1 and [json.loads(line)["id"] for line in out.splitlines()] == ["a", "b"] and "2 error" in err


# ---------------------------------------------------------------- resuming

def repeated_manifest(photos: list[Path], tmp_path: Path, rows: int) -> Path:
    return write_csv(tmp_path / "big.csv", [{"id": f"row-{i:04d}", "image": str(photos[i % len(photos)])}
                                            for i in range(rows)])


def count_rows_written(path: Path) -> int:
    if path.suffix == ".parquet":
        return sum(pq.read_metadata(part).num_rows for part in path.glob("*.parquet")) if path.exists() else 0
    return path.read_bytes().count(b"\n") if path.exists() else 0


def kill_after_some_rows(command: list[str], output: Path, rows: int, total: int) -> None:
    """Start the CLI and SIGKILL it once at least `rows` (and not all) are in OUTPUT."""
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while count_rows_written(output) < rows:
            assert process.poll() is None, "the screen ended before it could be killed"
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    assert rows <= count_rows_written(output) < total


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_a_kill_9_then_a_rerun_gives_every_id_once_and_the_same_answers(run_cli, photos, model_path, tmp_path,
                                                                        suffix):
    total = 240  # with --cache 0 every row is really screened: the first run lasts long enough to be killed
    manifest, output = repeated_manifest(photos, tmp_path, total), tmp_path / f"resumed{suffix}"
    args = ["screen", str(manifest), "--model", str(model_path), "--output", str(output),
            *(["--part-rows", "8"] if suffix == ".parquet" else [])]
    kill_after_some_rows([sys.executable, "-m", "counterfeit", *args, "--cache", "0"], output, 16, total)
    code, _, err = run_cli(*args)
    assert code == 0 and "skipped" in err
    code, _, _ = run_cli("screen", manifest, "--model", model_path, "--output", tmp_path / f"whole{suffix}")
    resumed, whole = read_output(output), read_output(tmp_path / f"whole{suffix}")
    assert sorted(r["id"] for r in resumed) == sorted(r["id"] for r in whole) and len(resumed) == total
    assert_same_answers(resumed, whole)


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet"])
def test_a_second_run_on_the_same_output_is_refused(run_cli, photos, model_path, tmp_path, suffix):
    """A cron relaunch overlapping a slow run wrote every id twice (issue 24): the output is locked."""
    from evaluation.bulk_output import output_lock

    manifest, output = repeated_manifest(photos, tmp_path, 3), tmp_path / f"out{suffix}"
    with output_lock(output):  # the first run, still writing
        code, _, err = run_cli("screen", manifest, "--model", model_path, "--output", output)
    assert code == 2 and "another screening is writing" in err and len(err.strip().splitlines()) == 1
    assert not output.exists()
    code, _, _ = run_cli("screen", manifest, "--model", model_path, "--output", output)
    assert code == 0 and len(read_output(output)) == 3


def test_a_torn_last_line_is_dropped_and_its_row_screened_again(run_cli, photos, model_path, tmp_path):
    manifest, output = repeated_manifest(photos, tmp_path, 6), tmp_path / "out.jsonl"
    run_cli("screen", manifest, "--model", model_path, "--output", output)
    whole = read_output(output)
    lines = output.read_text().splitlines(keepends=True)
    output.write_text("".join(lines[:3]) + lines[3][:25])  # killed while writing the 4th line
    code, _, err = run_cli("screen", manifest, "--model", model_path, "--output", output)
    assert code == 0 and "screened 3 rows" in err and "3 skipped" in err
    assert "6/6 [" in err and "photo/s" in err  # progress over the whole manifest, the skipped rows included
    assert_same_answers(read_output(output), whole)
    assert len(read_output(output)) == 6


def test_another_model_screens_again_and_rows_carry_their_version(run_cli, photos, model_path, classifier_model,
                                                                  tmp_path):
    manifest, output = repeated_manifest(photos, tmp_path, 5), tmp_path / "out.parquet"
    for model in (model_path, classifier_model, model_path):
        assert run_cli("screen", manifest, "--model", model, "--output", output)[0] == 0
    rows = read_output(output)
    versions = {Predictor(m).metadata.version for m in (model_path, classifier_model)}
    assert len(versions) == 2 and len(rows) == 10
    assert {(r["id"], r["model_version"]) for r in rows} == {(f"row-{i:04d}", v) for i in range(5) for v in versions}


def test_a_foreign_output_is_refused(run_cli, photos, model_path, tmp_path):
    manifest, output = repeated_manifest(photos, tmp_path, 2), tmp_path / "out.jsonl"
    output.write_text('{"path": "x.jpg", "score": 0.1}\n')  # a folder screen's output
    code, _, err = run_cli("screen", manifest, "--model", model_path, "--output", output)
    assert code == 2 and "not a screening row" in err


def test_repeated_photos_get_the_answers_of_unrepeated_ones(run_cli, photos, model_path, tmp_path):
    manifest = repeated_manifest(photos, tmp_path, 3 * len(photos))
    run_cli("screen", manifest, "--model", model_path, "--output", tmp_path / "cached.jsonl")
    run_cli("screen", manifest, "--model", model_path, "--output", tmp_path / "uncached.jsonl", "--cache", "0")
    assert_same_answers(read_output(tmp_path / "cached.jsonl"), read_output(tmp_path / "uncached.jsonl"))


def test_the_answer_cache_is_bounded():
    cache = AnswerCache(size=2)
    for key in ("a", "b", "c"):
        cache.put((key, "v1"), {"verdict": key})
    assert cache.get(("a", "v1")) is None and cache.get(("c", "v1")) == {"verdict": "c"}
    assert cache.get(("c", "v2")) is None  # another model version: another answer


# ---------------------------------------------------------------- fetching over HTTP

class PhotoServer(BaseHTTPRequestHandler):
    """GET /ok (a photo), /flaky (500 twice, then the photo), /missing (404), /slow (the photo, slowly,
    counting requests at once)."""

    photo = b""
    flaky_left = 0
    active = peak = 0
    lock = threading.Lock()

    def do_GET(self):  # noqa: N802 (http.server's name)
        cls = type(self)
        if self.path == "/flaky" and cls.flaky_left > 0:
            cls.flaky_left -= 1
            return self.send_error(500)
        if self.path == "/missing":
            return self.send_error(404)
        if self.path == "/trickle":  # one byte a second: every socket read is quick, the whole is not
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            try:
                for _ in range(100):
                    self.wfile.write(b"x")
                    self.wfile.flush()
                    time.sleep(1)
            except OSError:  # the client gave up, as it should
                pass
            return
        if self.path == "/slow":
            with cls.lock:
                cls.active += 1
                cls.peak = max(cls.peak, cls.active)
            time.sleep(0.2)
            with cls.lock:
                cls.active -= 1
        self.send_response(200)
        self.send_header("Content-Length", str(len(cls.photo)))
        self.end_headers()
        self.wfile.write(cls.photo)

    def log_message(self, *args):
        pass


@pytest.fixture
def photo_server(photos):
    PhotoServer.photo, PhotoServer.flaky_left, PhotoServer.peak = photos[0].read_bytes(), 2, 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), PhotoServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_http_retries_5xx_and_reports_4xx(photo_server, photos, tmp_path):
    fetcher = Fetcher(base=tmp_path, max_bytes=10_000_000, backoff_s=0.01)
    assert fetcher.fetch(f"{photo_server}/flaky") == photos[0].read_bytes()
    with pytest.raises(FetchError, match="http_404: "):
        fetcher.fetch(f"{photo_server}/missing")
    PhotoServer.flaky_left = 5
    with pytest.raises(FetchError, match=r"unreachable: HTTP 500 .*\(after 3 attempts\)"):
        Fetcher(base=tmp_path, max_bytes=10_000_000, retries=2, backoff_s=0.01).fetch(f"{photo_server}/flaky")


def test_http_and_local_reads_stop_at_the_size_limit(photo_server, photos, tmp_path):
    fetcher = Fetcher(base=tmp_path, max_bytes=100)
    for location in (f"{photo_server}/ok", str(photos[0])):
        with pytest.raises(FetchError, match="too_large: "):
            fetcher.fetch(location)


def test_http_timeout_is_a_deadline_for_the_whole_attempt(photo_server, tmp_path):
    fetcher = Fetcher(base=tmp_path, max_bytes=10_000_000, timeout_s=1.0, retries=1, backoff_s=0.01)
    start = time.monotonic()
    with pytest.raises(FetchError, match=r"unreachable: .*(deadline|timed out).*\(after 2 attempts\)"):
        fetcher.fetch(f"{photo_server}/trickle")
    assert time.monotonic() - start < 6  # 2 attempts of 1 s each (was 100 s a try: 1 byte a second)


def test_local_reads_stay_in_the_allowed_folder_and_read_regular_files_only(photos, tmp_path):
    """Seller-written rows: no /etc/passwd, no `..`, no /proc, no /dev/zero, no FIFO (issue 24)."""
    fetcher = Fetcher(base=tmp_path, max_bytes=10_000_000)
    assert fetcher.fetch(str(photos[0].relative_to(tmp_path))) == photos[0].read_bytes()
    for location in ("file:///etc/passwd", "../outside.jpg", "/proc/self/environ", "/dev/zero"):
        with pytest.raises(FetchError, match="outside_allowed: "):
            fetcher.fetch(location)
    (tmp_path / "escape.jpg").symlink_to("/etc/passwd")  # a link inside that points outside
    with pytest.raises(FetchError, match="outside_allowed: "):
        fetcher.fetch("escape.jpg")
    os.mkfifo(tmp_path / "fifo.jpg")
    with pytest.raises(FetchError, match="not_a_file: "):
        fetcher.fetch("fifo.jpg")  # was a hang for ever
    wide = Fetcher(base=tmp_path, max_bytes=1000, allow_local=Path("/"))
    with pytest.raises(FetchError, match="not_a_file: "):
        wide.fetch("file:///dev/zero")  # was 5 GB of memory, then a MemoryError
    with pytest.raises(FetchError, match="too_large: "):
        wide.fetch(str(photos[0]))


def test_a_row_outside_the_folder_fails_alone(run_cli, photos, model_path, tmp_path):
    manifest = write_csv(tmp_path / "m.csv", [{"id": "ok", "image": str(photos[0].relative_to(tmp_path))},
                                              {"id": "zero", "image": "/dev/zero"},
                                              {"id": "passwd", "image": "file:///etc/passwd"}])
    code, _, _ = run_cli("screen", manifest, "--model", model_path, "--output", tmp_path / "o.jsonl")
    rows = by_id(read_output(tmp_path / "o.jsonl"))
    assert code == 0 and rows["ok"]["error"] is None
    assert rows["zero"]["error"].startswith("outside_allowed: ") and rows["passwd"]["error"].startswith("outside_")
    code, _, _ = run_cli("screen", manifest, "--model", model_path, "--output", tmp_path / "wide.jsonl",
                         "--allow-local", "/")
    rows = by_id(read_output(tmp_path / "wide.jsonl"))
    assert rows["zero"]["error"].startswith("not_a_file: ") and rows["passwd"]["error"].startswith("unsupported_format: ")


def test_http_requests_per_host_are_capped(photo_server, tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    fetcher = Fetcher(base=tmp_path, max_bytes=10_000_000, per_host=2)
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(fetcher.fetch, [f"{photo_server}/slow"] * 6))
    assert PhotoServer.peak == 2


def test_a_manifest_of_urls(run_cli, photo_server, model_path, tmp_path):
    manifest = write_csv(tmp_path / "web.csv", [{"id": "a", "image": f"{photo_server}/ok"},
                                                {"id": "b", "image": f"{photo_server}/missing"}])
    code, _, _ = run_cli("screen", manifest, "--model", model_path, "--output", tmp_path / "o.jsonl")
    rows = by_id(read_output(tmp_path / "o.jsonl"))
    assert code == 0 and rows["a"]["error"] is None and rows["a"]["verdict"]
    assert rows["b"]["error"].startswith("http_404: ")
