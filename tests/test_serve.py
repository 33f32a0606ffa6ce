"""`counterfeit serve` as a real process (what `make run` starts): the demo model answers a synth photo."""

import socket
import subprocess
import sys
import time

import httpx
import pytest
from conftest import DEMO_MODEL


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def server():
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "counterfeit", "serve", "--port", str(port)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
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
    write_dataset(tmp_path / "photos", seed=5, products=1, n_train=2, n_val=2, n_test=2, progress=False)
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
