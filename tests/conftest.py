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
    from training.synth import write_dataset

    root = tmp_path_factory.mktemp("data") / "synth"
    write_dataset(root, seed=1, products=2, n_train=16, n_val=8, n_test=8, image_size=(160, 120), progress=False)
    return root


@pytest.fixture(scope="session")
def trained_run(synth_data, tmp_path_factory) -> Path:
    """One epoch at 64x48: enough to exercise every stage, not to detect anything."""
    from training.config import TrainConfig
    from training.train import fit

    run = tmp_path_factory.mktemp("runs") / "tiny"
    fit(TrainConfig(data=str(synth_data), out=str(run), recipe="classifier", epochs=1, image_size=(64, 48),
                    batch_size=8), progress=False)
    return run


@pytest.fixture(scope="session")
def model_path(trained_run) -> Path:
    return trained_run / "model.onnx"


@pytest.fixture
def model_dir(model_path, tmp_path):
    """A model folder of the test's own, holding a copy of the session's model as model.onnx."""
    folder = tmp_path / "models"
    folder.mkdir()
    shutil.copy(model_path, folder / "model.onnx")
    return folder


@pytest.fixture(scope="session")
def predictor(model_path):
    from inference.predictor import Predictor

    return Predictor(model_path)


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
