"""Benchmark: photos per second of the service path for models of different recipes, side by side in one run.

Each model answers the same photos one at a time, as the API does (decode -> quality gate -> registration ->
ONNX graph), onnxruntime and OpenCV on one thread: photos per CPU-second of one core. The models take
turns, --rounds times; the fastest round of each counts, and the ratio to the first model is printed.
By default: the comparator and the reference recipe fitted on the synthetic holdout (make the first with
`counterfeit train datasets/synth-h0 --recipe comparator --out runs/synth-h0-comparator`, the second with
`counterfeit train datasets/synth-h0 --out runs/synth-h0`), on its test photos.

Run: .venv/bin/python bench/recipe_speed.py [--model A.onnx --model B.onnx] [--data DIR] [--count 60]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = (ROOT / "runs" / "synth-h0-comparator" / "model.onnx", ROOT / "runs" / "synth-h0" / "model.onnx")
DATA = ROOT / "datasets" / "synth-h0" / "test"


def photos_per_second(model: Path, files: list[Path]) -> tuple[float, int]:
    """(photos per second answering `files` one by one on one thread, how many got a score)."""
    from inference.pipeline import decode_and_prepare
    from inference.predictor import Predictor

    predictor = Predictor(model, threads=1)
    scored = 0
    start = time.perf_counter()
    for path in files:
        _, _, prepared = decode_and_prepare(path.read_bytes(), predictor)
        if prepared is not None:
            predictor.scores(prepared.array[None], [prepared.product])
            scored += 1
    return len(files) / (time.perf_counter() - start), scored


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", type=Path, action="append", help="model files (default: see above)")
    parser.add_argument("--data", type=Path, default=DATA, help="a folder of photos (searched recursively)")
    parser.add_argument("--count", type=int, default=60, help="photos per model and round")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    import cv2

    cv2.setNumThreads(1)
    models = args.model or list(MODELS)
    missing = [m for m in models if not m.is_file()]
    if missing or not args.data.is_dir():
        print(f"missing {', '.join(map(str, missing)) or args.data}: see this script's docstring", file=sys.stderr)
        return 0
    from inference.layout import image_files

    files = image_files(args.data)[: args.count]
    best = {model: (0.0, 0) for model in models}
    for _ in range(args.rounds):
        for model in models:
            rate, scored = photos_per_second(model, files)
            best[model] = max(best[model], (rate, scored))
    first = best[models[0]][0]
    for model, (rate, scored) in best.items():
        print(f"{rate:6.2f} photos/s per core ({rate / first:.2f}x)  {scored}/{len(files)} scored  {model}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
