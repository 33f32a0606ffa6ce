"""Shared fixtures: tiny synthetic data and one tiny trained model, made once per test session."""

from __future__ import annotations

import contextlib
import io
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
DEMO_MODEL = REPO / "inference" / "demo" / "model.onnx"


def image_bytes(fmt: str = "JPEG", size=(96, 72), mode: str = "RGB", seed: int = 0, **save) -> bytes:
    """A small random-texture image encoded in memory."""
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1, "CMYK": 4}[mode]
    pixels = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    image = Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode)
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save)
    return buffer.getvalue()


# The fixtures' photos are 160x120 to keep the suite fast; the quality gate's default minimum size is
# meant for real photos, so API tests lower it to this.
TINY_PHOTO_SETTINGS = {"quality_min_side": 96}


@pytest.fixture(scope="session")
def synth_data(tmp_path_factory) -> Path:
    """A tiny dataset from the real generator: 2 product lines, 160x120 photos."""
    from datatools.synth import write_dataset

    root = tmp_path_factory.mktemp("data") / "synth"
    write_dataset(root, seed=1, products=2, n_train=16, n_val=8, n_test=8, image_size=(160, 120), progress=False)
    return root


# ---------------------------------------------------------------- the session's fitted models
# One small fit per recipe per session, shared by every test that needs a fitted model. A test fits a
# model of its own only where the fit itself is what it tests.

@pytest.fixture(scope="session")
def classifier_run(synth_data, tmp_path_factory) -> Path:
    """The classifier recipe, one epoch at 64x48: enough to exercise every stage, not to detect anything."""
    from training.config import TrainConfig
    from training.train import fit

    run = tmp_path_factory.mktemp("runs") / "classifier"
    fit(TrainConfig(data=str(synth_data), out=str(run), recipe="classifier", epochs=1, image_size=(64, 48),
                    batch_size=8), progress=False)
    return run


@pytest.fixture(scope="session")
def classifier_model(classifier_run) -> Path:
    return classifier_run / "model.onnx"


@pytest.fixture(scope="session")
def classifier_predictor(classifier_model):
    from inference.predictor import Predictor

    return Predictor(classifier_model)


# Registration needs photos a little larger than synth_data's 160x120.
REFERENCE_SIZE = (320, 240)


@pytest.fixture(scope="session")
def reference_data(tmp_path_factory) -> Path:
    """Photos of the 2 products the reference model knows, 320x240; test-unseen/ holds a defect its val
    never shows. The recipe learns from genuines alone, so train/counterfeit/ is left empty."""
    from datatools.synth import write_dataset

    root = tmp_path_factory.mktemp("reference") / "synth"
    write_dataset(root, seed=2, products=2, n_train=24, n_val=16, n_test=8, holdout=["misspelling"],
                  image_size=REFERENCE_SIZE, progress=False)
    for fake in (root / "train" / "counterfeit").rglob("*.jpg"):
        fake.unlink()
    return root


@pytest.fixture(scope="session")
def reference_run(reference_data, tmp_path_factory) -> tuple[Path, dict]:
    """The reference recipe (the default) fitted on reference_data -> (run folder, fit summary)."""
    from training.config import TrainConfig
    from training.train import fit

    run = tmp_path_factory.mktemp("runs") / "reference"
    config = TrainConfig(data=str(reference_data), out=str(run), image_size=REFERENCE_SIZE)
    assert config.recipe == "reference"  # the default
    return run, fit(config, progress=False)


@pytest.fixture(scope="session")
def reference_model(reference_run) -> Path:
    return reference_run[0] / "model.onnx"


@pytest.fixture(scope="session")
def reference_predictor(reference_model):
    from inference.predictor import Predictor

    return Predictor(reference_model)


# The default recipe's model: what the API, CLI and server tests serve. It knows reference_data's products
# only: any other photo (random pixels, synth_data's) is answered `retake` / `not_recognised`.

@pytest.fixture(scope="session")
def model_path(reference_model) -> Path:
    return reference_model


@pytest.fixture(scope="session")
def predictor(reference_predictor):
    return reference_predictor


def model_folder(model: Path, tmp_path: Path) -> Path:
    """A model folder of the test's own (tmp_path/models), holding a copy of `model` as model.onnx."""
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(model, folder / "model.onnx")
    return folder


@pytest.fixture
def model_dir(model_path, tmp_path):
    """A model folder of the test's own, holding a copy of the session's default model as model.onnx."""
    return model_folder(model_path, tmp_path)


@pytest.fixture(scope="session")
def known_photos(reference_data, predictor) -> dict[str, list[bytes]]:
    """reference_data's test photos (320x240 JPEGs) that the API scores rather than answer `retake` (sharp
    enough under TINY_PHOTO_SETTINGS, registered to their product) -> {"genuine": [...], "counterfeit": [...]}.
    What API tests send when they need a verdict: synth blurs some photos, and random pixels are no product."""
    from api.settings import Settings
    from inference.pipeline import decode_and_prepare

    settings = Settings(**TINY_PHOTO_SETTINGS)
    found = {}
    for label in ("genuine", "counterfeit"):
        photos = [path.read_bytes() for path in sorted((reference_data / "test" / label).rglob("*.jpg"))]
        found[label] = [photo for photo in photos if decode_and_prepare(photo, predictor, settings.limits,
                                                                settings.quality_thresholds)[2] is not None]
        assert len(found[label]) >= 2, f"too few scored {label} photos in reference_data/test"
    return found


@pytest.fixture
def run_cli(capsys):
    """Run `counterfeit ARGS` in-process -> (exit code, stdout, stderr)."""
    from counterfeit.cli import main

    def run(*args: str):
        try:
            code = main([str(a) for a in args])
        except SystemExit as exc:  # argparse exits on bad arguments
            code = exc.code
        out, err = capsys.readouterr()
        return code, out, err

    return run



def ctrl_c_in_epoch(monkeypatch, epoch: int) -> None:
    """Make training raise KeyboardInterrupt as epoch `epoch` starts, as a Ctrl-C would."""
    import training.train as train

    real_epoch, calls = train.train_one_epoch, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == epoch:
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(train, "train_one_epoch", interrupted)


@pytest.fixture(scope="session")
def postgres_url():
    """A throwaway local PostgreSQL server for the session (or COUNTERFEIT_TEST_DATABASE_URL's)."""
    pytest.importorskip("psycopg", reason="psycopg (the PostgreSQL driver) is not installed")
    from evidence_backends import PostgresUnavailable, postgres_server

    with contextlib.ExitStack() as stack:
        try:
            url = stack.enter_context(postgres_server())
        except PostgresUnavailable as exc:
            pytest.skip(f"PostgreSQL: {exc}")
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request):
    """None (SQLite in the data folder) or a fresh PostgreSQL schema: API tests run against both."""
    if request.param == "sqlite":
        yield None
        return
    from evidence_backends import fresh_schema

    with fresh_schema(request.getfixturevalue("postgres_url")) as url:
        yield url
