"""`counterfeit serve` as a real process (what `make run` starts): the demo model answers a synth photo."""

import subprocess
import sys
import time

import httpx
import pytest

from conftest import DEMO_MODEL
from server_process import ServerProcess


@pytest.fixture
def server(tmp_path):
    """`counterfeit serve` without --model: the committed demo model."""
    process = ServerProcess([], tmp_path / "evidence")
    try:
        yield process.wait_ready().url
    finally:
        process.stop()


def test_default_server_serves_the_demo_model(server, tmp_path):
    from datatools.synth import write_dataset

    assert DEMO_MODEL.is_file(), "the demo model must be committed: make demo-model"
    # The demo model knows the products of `counterfeit synth --seed 0`: a new photo of its first one.
    write_dataset(tmp_path / "photos", seed=0, products=1, n_train=2, n_val=2, n_test=2, progress=False)
    photo = next((tmp_path / "photos" / "test" / "genuine").rglob("*.jpg"))  # a 640x480 phone-like photo
    answer = httpx.post(f"{server}/v1/inspections", files={"image": ("p.jpg", photo.read_bytes(), "image/jpeg")})
    assert answer.status_code == 200, answer.text
    assert answer.json()["model"]["name"] == "demo"
    assert answer.json()["verdict"] in {"genuine", "counterfeit", "inconclusive"}
    assert httpx.post(f"{server}/v1/inspections", files={"image": ("x.jpg", b"nope", "image/jpeg")}).status_code == 415


def test_serve_refuses_a_missing_model_in_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "counterfeit", "serve", "--model", str(tmp_path / "none.onnx")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.strip() == f"counterfeit serve: error: Model file not found: {tmp_path / 'none.onnx'}"


# The tests below serve the classifier's model, the fastest to load: they are about the process (signals,
# reloads, warnings); the default recipe's model is the demo model served above.

def wait_for(condition, seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_sighup_reloads_the_model_file_and_keeps_serving_on_a_bad_one(classifier_model, synth_data, tmp_path):
    import shutil
    import signal

    from training.calibrate import recalibrate

    served = tmp_path / "model.onnx"
    shutil.copy(classifier_model, served)
    server = ServerProcess(["--model", str(served)], tmp_path / "evidence").wait_ready()
    process, url = server.process, server.url
    try:
        old = httpx.get(f"{url}/v1/model").json()["version"]
        recalibrate(classifier_model, synth_data / "val", tmp_path / "new.onnx", target_precision=0.6)
        shutil.copy(tmp_path / "new.onnx", served)
        process.send_signal(signal.SIGHUP)
        assert wait_for(lambda: httpx.get(f"{url}/v1/model").json()["version"] != old)
        new = httpx.get(f"{url}/v1/model").json()["version"]
        served.write_bytes(b"truncated")
        process.send_signal(signal.SIGHUP)
        time.sleep(1.0)
        assert httpx.get(f"{url}/v1/model").json()["version"] == new  # the bad file was refused
        assert httpx.get(f"{url}/readyz").status_code == 200
    finally:
        log = server.stop()
    assert "reload refused" in log


def test_sigterm_turns_readiness_503_first_then_exits_cleanly(classifier_model, tmp_path):
    import signal

    server = ServerProcess(["--model", str(classifier_model)], tmp_path / "evidence",
                           {"COUNTERFEIT_DRAIN_SECONDS": "2"}).wait_ready()
    process, url = server.process, server.url
    process.send_signal(signal.SIGTERM)
    assert wait_for(lambda: httpx.get(f"{url}/readyz").status_code == 503, seconds=1.5)
    assert httpx.get(f"{url}/healthz").status_code == 200  # still answering while it drains
    assert httpx.get(f"{url}/v1/model").status_code == 200
    # uvicorn re-raises the signal once it has shut down cleanly, as a well-behaved daemon does
    assert process.wait(timeout=30) in (0, -signal.SIGTERM)
    log = server.output()
    assert "Application shutdown complete" in log and "readiness is 503" in log


def test_ctrl_c_stops_the_server_cleanly_with_exit_0(classifier_model, tmp_path):
    """Ctrl-C is how `make run` says to stop the server: no "interrupted", no exit 130 (make's "Error 130")."""
    import signal

    server = ServerProcess(["--model", str(classifier_model)], tmp_path / "evidence").wait_ready()
    server.process.send_signal(signal.SIGINT)
    assert server.process.wait(timeout=30) == 0, server.output()
    log = server.output()
    assert "Application shutdown complete" in log and "interrupted" not in log


def test_an_open_server_refuses_to_listen_beyond_loopback(classifier_model):
    result = subprocess.run([sys.executable, "-m", "counterfeit", "serve", "--model", str(classifier_model),
                             "--host", "0.0.0.0"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "No API keys are configured: refusing to listen on 0.0.0.0" in result.stderr.strip().splitlines()[-1]


def test_an_open_loopback_server_warns(classifier_model, tmp_path):
    server = ServerProcess(["--model", str(classifier_model)], tmp_path / "evidence").wait_ready()
    assert "running open: no API keys configured" in server.stop()
