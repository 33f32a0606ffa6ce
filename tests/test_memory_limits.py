"""Bounded memory (issue #13): decodes reduced to what the model needs, a decode budget shared by all
requests, screenings that hold one batch at a time, and `counterfeit screen` that streams."""

import io
import json
import sys
import threading
import weakref

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from api.app import create_app
from api.batching import Batcher
from api.pixel_budget import BudgetBusy, OverBudget, PixelBudget, shared_budget
from api.settings import Settings
from inference import images
from inference.images import ImageError, decode_cost, load_image
from inference.predictor import Prepared, images_per_call

from conftest import TINY_PHOTO_SETTINGS, image_bytes

MB = 1024 * 1024


def encode(image: Image.Image, fmt: str = "PNG", **save) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def huge_bilevel_png() -> bytes:
    """The issue's photo: a 1-bit 8,900^2 PNG, a few KB, 79 Mpx (under the 80 Mpx limit); black top-left quarter."""
    image = Image.new("1", (8900, 8900), 1)
    image.paste(0, (0, 0, 4450, 4450))
    return encode(image, optimize=True)


def known_jpeg(known_photos, index: int = 0) -> bytes:
    """The index-th (cycling) of the photos the session's model scores."""
    photos = [*known_photos["genuine"], *known_photos["counterfeit"]]
    return photos[index % len(photos)]


# --------------------------------------------------------------------------- decoding reduced

def test_a_huge_bilevel_png_decodes_reduced_to_what_the_model_needs(huge_bilevel_png):
    loaded = load_image(huge_bilevel_png, draft_to=(640, 480))
    assert (loaded.width, loaded.height, loaded.format) == (8900, 8900, "PNG")  # the original's size
    assert loaded.image.mode == "RGB" and loaded.image.size == (685, 685)  # 8900 / 13: still >= 640x480
    pixels = np.asarray(loaded.image)
    assert pixels[:300, :300].max() == 0 and pixels[-300:, -300:].min() == 255  # the same picture
    # Its peak is estimated from the header: the 1-bit frame (79 MB) and a few MB, not 317 MB of RGB.
    assert 79 * MB < decode_cost(huge_bilevel_png, draft_to=(640, 480)) < 160 * MB


def test_a_reduced_photo_is_turned_upright_by_its_exif_orientation():
    pixels = np.zeros((1200, 1600, 3), np.uint8)
    pixels[:, :800] = 255  # left half white
    image = Image.fromarray(pixels)
    exif = image.getexif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    loaded = load_image(encode(image, exif=exif), draft_to=(320, 240))
    assert (loaded.width, loaded.height) == (1200, 1600)
    assert loaded.image.size == (240, 320)  # reduced by 5, then turned
    rows = np.asarray(loaded.image).mean(axis=(1, 2))
    assert rows[:150].mean() > 200 and rows[170:].mean() < 50  # the white half is on top


@pytest.mark.parametrize("mode", ["P", "RGBA", "LA", "1", "I;16"])
def test_reducing_strip_by_strip_gives_exactly_the_whole_image_reduced(monkeypatch, mode):
    monkeypatch.setattr(images, "_STRIP_BYTES", 4 * 123 * 3 * 7)  # a few rows per strip: many strips
    rng = np.random.default_rng(0)
    if mode == "I;16":
        image = Image.fromarray(rng.integers(0, 65535, (101, 123), np.uint16))
    else:
        image = Image.fromarray(rng.integers(0, 255, (101, 123, 4), np.uint8), "RGBA").convert(mode)
    if mode == "P":
        image.info["transparency"] = 3  # palette transparency flattens on white, strip by strip too
    for factor in (2, 3, 7):
        expected = images.to_rgb(image).reduce(factor)
        assert images._reduced_rgb(image, factor).tobytes() == expected.tobytes()


def test_photos_are_reduced_only_down_to_a_target_and_decode_cost_refuses_as_load_image():
    small = image_bytes("PNG", size=(640, 480))
    assert load_image(small, draft_to=(320, 240)).image.size == (320, 240)  # 2x: reduced like a JPEG draft
    assert load_image(small, draft_to=(640, 480)).image.size == (640, 480)
    assert load_image(small).image.size == (640, 480)  # no target: full size, as training's audit wants
    with pytest.raises(ImageError) as info:
        decode_cost(b"not an image")
    assert info.value.code == "unsupported_format"


# --------------------------------------------------------------------------- the budget, with threads

def test_the_budget_turns_a_decode_away_after_waiting():
    budget = PixelBudget(100)
    budget.acquire(80, wait_s=0)
    with pytest.raises(BudgetBusy):
        budget.acquire(30, wait_s=0.05)
    with pytest.raises(OverBudget):
        budget.acquire(101, wait_s=10)  # could never fit: refused at once, not after 10 s
    with budget.reserve(20, wait_s=0):  # what is left is still usable
        assert budget.used == 100
    budget.release(80)
    assert budget.used == 0


def test_a_waiting_decode_goes_ahead_as_soon_as_budget_is_freed():
    budget = PixelBudget(100)
    budget.acquire(80, wait_s=0)
    started, got = threading.Event(), threading.Event()

    def waiter():
        started.set()
        with budget.reserve(50, wait_s=60):
            got.set()

    thread = threading.Thread(target=waiter)
    thread.start()
    started.wait(10)
    assert not got.wait(0.2)  # still waiting: 80 + 50 > 100
    budget.release(80)
    thread.join(30)
    assert got.is_set() and budget.used == 0


# --------------------------------------------------------------------------- the API under the budget

@pytest.fixture
def make_client(model_path, predictor, tmp_path):
    clients = []

    def make(**settings):
        values = {"model_path": model_path, "data_dir": tmp_path / "evidence", **TINY_PHOTO_SETTINGS, **settings}
        client = TestClient(create_app(Settings(**values), predictor))  # the session's model, already loaded
        clients.append(client.__enter__())
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


def stored(client) -> int:
    return client.app.state.evidence.head().seq


def test_a_spent_budget_answers_503_server_busy_and_stores_nothing(make_client, known_photos):
    client = make_client(decode_budget_mb=16, decode_wait_s=0)
    budget = shared_budget(16 * MB)
    budget.acquire(budget.total, wait_s=0)  # other requests' decodes hold all of it
    try:
        photo = known_jpeg(known_photos)
        inspection = client.post("/v1/inspections", files={"image": ("a.jpg", photo, "image/jpeg")})
        screening = client.post("/v1/screenings", files=[("images", ("a.jpg", photo, "image/jpeg"))] * 2)
    finally:
        budget.release(budget.total)
    for answer in (inspection, screening):
        assert answer.status_code == 503 and answer.json()["error"]["code"] == "server_busy"
        assert "retry" in answer.json()["error"]["message"].lower()
        assert answer.headers["Retry-After"] == "1"
    assert stored(client) == 0
    assert client.post("/v1/inspections", files={"image": ("a.jpg", photo, "image/jpeg")}).status_code == 200


def test_a_photo_larger_than_the_whole_budget_is_refused_and_the_others_screened(make_client, known_photos):
    client = make_client(decode_budget_mb=16)
    huge = encode(Image.new("RGB", (4000, 4000), (120, 90, 60)))  # 64 MB decoded as RGB
    alone = client.post("/v1/inspections", files={"image": ("big.png", huge, "image/png")})
    assert alone.status_code == 413 and alone.json()["error"]["code"] == "too_many_pixels"
    assert "decode budget of 16 MB" in alone.json()["error"]["message"]
    files = [("images", ("big.png", huge, "image/png")), ("images", ("a.jpg", known_jpeg(known_photos), "image/jpeg"))]
    results = client.post("/v1/screenings", files=files).json()["results"]
    assert results[0]["error"]["code"] == "too_many_pixels" and results[1]["verdict"] is not None


def test_a_screening_records_each_batch_and_drops_its_decoded_photos(make_client, known_photos,
                                                                     monkeypatch):
    client = make_client(max_batch=2)
    predictor = client.app.state.slot.current
    alive, most_alive = set(), [0]
    real_load = predictor.load

    def counting_load(data, limits):
        loaded = real_load(data, limits)
        token = object()
        alive.add(id(token))
        weakref.finalize(loaded.image, alive.discard, id(token))
        most_alive[0] = max(most_alive[0], len(alive))
        return loaded

    monkeypatch.setattr(predictor, "load", counting_load)
    files = [("images", (f"{i}.jpg", known_jpeg(known_photos, i), "image/jpeg")) for i in range(7)]
    answer = client.post("/v1/screenings", files=files)
    assert answer.status_code == 200, answer.text
    assert all(result["record_id"] for result in answer.json()["results"])  # every photo recorded
    assert stored(client) == 7
    assert most_alive[0] <= 2  # never more decoded photos at once than one batch


@pytest.mark.parametrize("bad_id, why", [("L" * 201, "201 characters"), ("L-1\x00", "control character"),
                                         ("L-1\nL-2", "control character")])
def test_screening_ids_are_checked_before_anything_is_scored_or_stored(make_client, known_photos, bad_id, why):
    client = make_client()
    files = [("images", ("a.jpg", known_jpeg(known_photos), "image/jpeg"))] * 2
    answer = client.post("/v1/screenings", files=files, data={"ids": ["L-0", bad_id]})
    assert answer.status_code == 422, answer.text
    assert answer.json()["error"]["code"] == "invalid_id" and why in answer.json()["error"]["message"]
    assert "ids[1]" in answer.json()["error"]["message"]
    assert stored(client) == 0
    assert client.post("/v1/screenings", files=files, data={"ids": ["L-0", "L" * 200]}).status_code == 200


# --------------------------------------------------------------------------- model calls of bounded size

def test_model_calls_are_bounded_in_pixels_not_only_in_count():
    assert images_per_call((640, 480), 32) == 4
    assert images_per_call((320, 240), 32) == 16
    assert images_per_call((64, 48), 32) == 32 and images_per_call((64, 48), 8) == 8
    assert images_per_call((4000, 3000), 32) == 1


def test_the_batcher_scores_a_large_batch_in_several_calls():
    calls = []

    class Model:
        def scores_and_embeddings(self, batch, products):
            calls.append(len(batch))
            return np.zeros(len(batch)), None

    batcher = Batcher(max_batch=8, max_wait_s=1.0)
    try:
        with batcher.expecting(8):
            futures = [batcher.submit(Model(), Prepared(np.zeros((3, 480, 640), np.float32))) for _ in range(8)]
            assert [future.result(timeout=30)[0] for future in futures] == [0.0] * 8
    finally:
        batcher.close()
    assert sum(calls) == 8 and max(calls) <= 4


# --------------------------------------------------------------------------- counterfeit screen

@pytest.fixture
def photo_folder(known_photos, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for index in range(5):
        (folder / f"{index}.jpg").write_bytes(known_jpeg(known_photos, index))
    return folder


def test_screen_scores_in_calls_of_images_per_call(run_cli, predictor, model_path, photo_folder, monkeypatch):
    import inference.predictor
    from inference.predictor import Predictor

    width, height = predictor.spec.size
    monkeypatch.setattr(inference.predictor, "PIXELS_PER_CALL", 2 * width * height)  # 2 images of the model
    sizes = []
    real_scores = Predictor.scores
    monkeypatch.setattr(Predictor, "scores", lambda self, batch, *rest: sizes.append(len(batch))
                        or real_scores(self, batch, *rest))
    code, out, _ = run_cli("screen", photo_folder, "--model", model_path)
    assert code == 0 and len(out.splitlines()) == 5
    assert sizes == [2, 2, 1]


def test_screen_exits_1_when_every_file_failed(run_cli, model_path, tmp_path):
    folder = tmp_path / "broken"
    folder.mkdir()
    for name in ("a.jpg", "b.png"):
        (folder / name).write_bytes(b"not a photo")
    code, out, err = run_cli("screen", folder, "--model", model_path, "--output", tmp_path / "out.jsonl")
    assert code == 1 and "2 error" in err
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 2  # the lines still say why


def test_screen_shows_progress_on_stderr_when_writing_to_stdout(run_cli, model_path, photo_folder):
    code, out, err = run_cli("screen", photo_folder, "--model", model_path)
    assert code == 0 and len(out.splitlines()) == 5
    assert all(json.loads(line)["path"] for line in out.splitlines())  # stdout holds only the JSON lines
    assert "5/5" in err and "photo" in err


def test_screen_writes_each_line_before_the_next_photo_is_screened(run_cli, model_path, photo_folder, monkeypatch):
    import evaluation.screen

    written_before = []

    def one_at_a_time(files, predictor, limits=None, gate=None):
        for path in files:
            written_before.append(sys.stdout.getvalue().count("\n"))
            yield {"path": str(path), "error": "spy", "model": {}}

    monkeypatch.setattr(evaluation.screen, "screen_files", one_at_a_time)
    code, out, _ = run_cli("screen", photo_folder, "--model", model_path)
    assert written_before == [0, 1, 2, 3, 4] and len(out.splitlines()) == 5


def test_screen_names_a_missing_folder_in_one_line(run_cli, model_path, tmp_path):
    code, _, err = run_cli("screen", tmp_path / "nowhere", "--model", model_path)
    assert code == 2 and err.strip() == f"counterfeit screen: error: no such folder: {tmp_path / 'nowhere'}"
