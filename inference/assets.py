"""Files shipped inside the package: the demo model and the sample photos that validate every model."""

from __future__ import annotations

from pathlib import Path

DEMO_DIR = Path(__file__).resolve().parent / "demo"
DEMO_MODEL = DEMO_DIR / "model.onnx"
# Synthetic photos of the demo model's products (demo/samples/README.md).
SAMPLES_DIR = DEMO_DIR / "samples"
