"""Serving never imports torch: checked in a fresh interpreter that serves a real prediction."""

import subprocess
import sys

SCRIPT = """
import sys
from fastapi.testclient import TestClient
import counterfeit.cli, evaluation.evaluate, evaluation.screen
from api.app import create_app
from api.settings import Settings
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


TORCH_FREE_PACKAGES = ("inference", "api", "evaluation", "evidence_store", "datatools", "counterfeit")
BOUNDARY_SCRIPT = """
import importlib, pkgutil, sys
for package in sys.argv[1:]:
    root = importlib.import_module(package)
    for module in pkgutil.walk_packages(root.__path__, package + "."):
        if not module.name.endswith("__main__"):  # running it is not importing it
            importlib.import_module(module.name)
print(sorted(m for m in sys.modules if m.split(".")[0] in ("torch", "torchvision", "training")))
"""


def test_the_torch_boundary_is_the_training_package():
    # Every module of every package but training/ imports without torch: the boundary is a package
    # boundary, not a comment. (training/ alone may import torch; its registry and stamp.py do not.)
    result = subprocess.run([sys.executable, "-c", BOUNDARY_SCRIPT, *TORCH_FREE_PACKAGES],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
