"""Serving never imports torch: checked in a fresh interpreter that serves a real prediction."""

import subprocess
import sys

SCRIPT = """
import sys
from fastapi.testclient import TestClient
import counterfeit.cli, inference.evaluate, inference.screen
from inference.api import create_app
from inference.settings import Settings
settings = Settings(model_path=sys.argv[1], data_dir=sys.argv[3], quality_min_side=96)
with TestClient(create_app(settings)) as client:
    answer = client.post("/v1/inspections", files={"image": ("a.jpg", open(sys.argv[2], "rb"), "image/jpeg")})
    assert answer.status_code == 200 and answer.json()["score"] is not None, answer.text
heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision", "onnx", "training"))
print(heavy)
"""


def test_serving_path_never_imports_torch(model_path, known_photos, tmp_path):
    photo = tmp_path / "photo.jpg"  # registered and scored: the whole reference serving path runs
    photo.write_bytes(known_photos["counterfeit"][0])
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(model_path), str(photo), str(tmp_path)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
