"""`counterfeit serve` as a real process (what `make run` starts): the demo model answers a synth photo."""

import subprocess
import sys
import time

import httpx
import pytest
from conftest import DEMO_MODEL
from web_helpers import free_port


@pytest.fixture
def server(tmp_path):
    import os

    port = free_port()
    env = {**os.environ, "COUNTERFEIT_DATA_DIR": str(tmp_path / "evidence")}  # never the working folder
    process = subprocess.Popen([sys.executable, "-m", "counterfeit", "serve", "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):  # up to 30 s for the process to start and load the model
            if process.poll() is not None:
                pytest.fail(f"server exited: {process.stdout.read()}")
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_default_server_serves_the_demo_model(server, tmp_path):
    from training.synth import write_dataset

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


def start(args: list[str], env_extra: dict | None = None) -> tuple[subprocess.Popen, str]:
    import os
    import tempfile

    port = free_port()
    env = {**os.environ, "COUNTERFEIT_DATA_DIR": tempfile.mkdtemp(prefix="evidence-"), **(env_extra or {})}
    process = subprocess.Popen([sys.executable, "-m", "counterfeit", "serve", "--port", str(port), *args],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        if process.poll() is not None:
            pytest.fail(f"server exited: {process.stdout.read()}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            time.sleep(0.1)
    process.kill()
    pytest.fail("server did not become ready")


def wait_for(condition, seconds: float = 15.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return False


def test_sighup_reloads_the_model_file_and_keeps_serving_on_a_bad_one(model_path, synth_data, tmp_path):
    import shutil
    import signal

    from training.calibrate import recalibrate

    served = tmp_path / "model.onnx"
    shutil.copy(model_path, served)
    process, url = start(["--model", str(served)])
    try:
        old = httpx.get(f"{url}/v1/model").json()["version"]
        recalibrate(model_path, synth_data / "val", tmp_path / "new.onnx", target_precision=0.6)
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
        process.terminate()
        process.wait(timeout=30)
    assert "reload refused" in process.stdout.read()


def test_sigterm_turns_readiness_503_first_then_exits_cleanly(model_path):
    import signal

    process, url = start(["--model", str(model_path)], {"COUNTERFEIT_DRAIN_SECONDS": "2"})
    process.send_signal(signal.SIGTERM)
    assert wait_for(lambda: httpx.get(f"{url}/readyz").status_code == 503, seconds=1.5)
    assert httpx.get(f"{url}/healthz").status_code == 200  # still answering while it drains
    assert httpx.get(f"{url}/v1/model").status_code == 200
    # uvicorn re-raises the signal once it has shut down cleanly, as a well-behaved daemon does
    assert process.wait(timeout=30) in (0, -signal.SIGTERM)
    log = process.stdout.read()
    assert "Application shutdown complete" in log and "readiness is 503" in log


def test_an_open_server_refuses_to_listen_beyond_loopback(model_path):
    result = subprocess.run([sys.executable, "-m", "counterfeit", "serve", "--model", str(model_path),
                             "--host", "0.0.0.0"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "No API keys are configured: refusing to listen on 0.0.0.0" in result.stderr.strip().splitlines()[-1]


def test_an_open_loopback_server_warns(model_path):
    process, url = start(["--model", str(model_path)])
    process.terminate()
    process.wait(timeout=30)
    assert "running open: no API keys configured" in process.stdout.read()
