"""The training loop as ML engineers rely on it: resume, early stopping, DDP, TensorBoard."""

import json
import subprocess
import sys

import pytest
import torch

from training.config import TrainConfig
from training.train import fit, resume_config

from conftest import ctrl_c_in_epoch

TINY = {"recipe": "classifier", "image_size": (64, 48), "batch_size": 8}


def epochs_logged(run) -> list[int]:
    return [json.loads(line)["epoch"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def test_resume_after_ctrl_c_matches_the_uninterrupted_run(synth_data, tmp_path, monkeypatch):
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    fit(TrainConfig(data=str(synth_data), out=str(straight), epochs=2, **TINY), progress=False)
    with monkeypatch.context() as patch:
        ctrl_c_in_epoch(patch, 2)
        with pytest.raises(KeyboardInterrupt):
            fit(TrainConfig(data=str(synth_data), out=str(resumed), epochs=2, **TINY), progress=False)
    assert epochs_logged(resumed) == [1]
    fit(resume_config(resumed), progress=False, resume=True)
    assert epochs_logged(resumed) == [1, 2]
    a = torch.load(straight / "last.pt", weights_only=True)["model"]
    b = torch.load(resumed / "last.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)  # bit-identical to the uninterrupted run


def test_resume_can_extend_a_finished_run(synth_data, tmp_path):
    run = tmp_path / "run"
    fit(TrainConfig(data=str(synth_data), out=str(run), epochs=1, **TINY), progress=False)
    summary = fit(resume_config(run, epochs=2), progress=False, resume=True)
    assert epochs_logged(run) == [1, 2] and (run / "model.onnx").is_file()
    assert json.loads((run / "config.json").read_text())["epochs"] == 2 and summary["best"]["epoch"] in (1, 2)


def test_resume_without_a_run_is_a_clear_error(tmp_path, run_cli):
    code, _, err = run_cli("train", "--resume", tmp_path / "nothing")
    assert code == 2 and "Cannot resume" in err and "last.pt does not exist" in err


def test_early_stopping_stops_after_patience(synth_data, tmp_path, monkeypatch):
    import training.train as train

    # A val metric that never improves after epoch 1 makes the stopping rule observable.
    monkeypatch.setattr(train, "is_better", lambda metrics, best: best is None)
    run = tmp_path / "run"
    summary = fit(TrainConfig(data=str(synth_data), out=str(run), epochs=6, patience=2, **TINY), progress=False)
    assert epochs_logged(run) == [1, 2, 3] and summary["best"]["epoch"] == 1


def test_tensorboard_logs_when_installed(synth_data, tmp_path):
    pytest.importorskip("tensorboard")
    run = tmp_path / "run"
    fit(TrainConfig(data=str(synth_data), out=str(run), epochs=1, **TINY), progress=False)
    assert list((run / "tensorboard").glob("events.out.tfevents.*"))


def test_ddp_with_two_cpu_processes(synth_data, tmp_path):
    run = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "counterfeit",
               "train", str(synth_data), "--out", str(run), "--recipe", "classifier", "--epochs", "2",
               "--image-size", "64x48"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert epochs_logged(run) == [1, 2]  # written once, by rank 0
    assert (run / "model.onnx").is_file() and "best epoch" in result.stderr
