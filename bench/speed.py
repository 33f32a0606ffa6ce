"""Benchmark (issue 15): the reference recipe's per-photo pipeline, previous vs current, side by side in one run.

The previous pipeline is the `inference/` package of a baseline commit (default e6d3aa5), extracted with
`git archive` into a temporary folder; the current one is this working tree's. Each runs in its own
subprocess (PYTHONPATH picks the package) on the same photos, one photo at a time on one thread, through
decode -> quality gate -> registration + preprocessing -> ONNX graph: photos/s per core. With --auc, both
also score every photo of a labelled folder and the ROC-AUC of each is printed (retakes are left out, as
`counterfeit evaluate` does). Run with `make bench`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO_MODEL = ROOT / "inference" / "demo" / "model.onnx"
SYNTH_MODEL = ROOT / "runs" / "synth-h0" / "model.onnx"
SYNTH_DATA = ROOT / "datasets" / "synth-h0"


# --------------------------------------------------------------------------- worker (runs in a subprocess)


def score_photos(model: str, files: list[str], mode: str) -> dict:
    """Score each photo with the `inference` package on PYTHONPATH: its score, or None when it is retaken
    (quality gate, or no product registered), with the wall and CPU seconds the loop took. Modes:
    "serial": one photo at a time, one thread everywhere (CPU seconds = one core's work);
    "screen": as `counterfeit screen` scored folders before issue 15, photos prepared one after another and
    scored a few at a time, onnxruntime on all cores; "overlapped": the same, photos prepared on a thread
    per core while the graph runs (OpenCV and onnxruntime release the GIL), as evaluation/bulk.py does.
    Only API that both pipelines have is used."""
    from concurrent.futures import ThreadPoolExecutor

    from inference.predictor import Predictor, images_per_call

    predictor = Predictor(model, threads=1 if mode == "serial" else 0)
    blobs = [Path(f).read_bytes() for f in files]  # read before timing: the disk is not the pipeline
    batch = 1 if mode == "serial" else images_per_call(predictor.spec.size, 32)
    pool = ThreadPoolExecutor(os.cpu_count() or 1) if mode == "overlapped" else None
    scores: list = []
    _scored(predictor, [p for p in [_prepared(predictor, blobs[0])] if p is not None])  # first-call costs
    wall, cpu = time.perf_counter(), time.process_time()
    for start in range(0, len(blobs), batch):
        chunk = blobs[start : start + batch]
        prepared = list(pool.map(lambda data: _prepared(predictor, data), chunk) if pool else map(
            lambda data: _prepared(predictor, data), chunk))
        ready = [p for p in prepared if p is not None]
        found = iter(_scored(predictor, ready))
        scores += [None if p is None else float(next(found)) for p in prepared]
    import inference

    return {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu, "scores": scores,
            "package": str(Path(inference.__file__).parent)}


def _prepared(predictor, data: bytes):
    """The model input of one photo, or None when the pipeline answers 'retake'."""
    from inference.align import NotRecognised
    from inference.quality import check

    loaded = predictor.load(data)
    if not check(loaded.image, (loaded.width, loaded.height)).ok:
        return None
    try:
        return predictor.prepare(loaded.image)
    except NotRecognised:
        return None


def _scored(predictor, ready: list):
    import numpy as np

    if not ready:
        return []
    return predictor.scores(np.stack([p.array for p in ready]), np.array([p.product for p in ready]))


# --------------------------------------------------------------------------- driver


def extract_baseline(commit: str, into: Path) -> Path:
    """The baseline commit's inference/ package under `into` (git archive: reads objects, changes nothing)."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "inference"], capture_output=True, check=False)
    if archive.returncode != 0:
        sys.exit(f"cannot read commit {commit}: {archive.stderr.decode().strip()}")
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(into, filter="data")
    return into


def run_worker(package_root: Path, model: Path, files: list[Path], mode: str) -> dict:
    """score_photos in a fresh interpreter whose `inference` is the one under package_root."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as listing:
        json.dump([str(f) for f in files], listing)
    env = {**os.environ, "PYTHONPATH": str(package_root)}
    if mode == "serial":  # numpy's BLAS would otherwise spread the descriptor matching over every core
        env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    try:
        done = subprocess.run([sys.executable, __file__, "--worker", str(model), listing.name, mode], env=env,
                              capture_output=True, text=True, check=False)
    finally:
        os.unlink(listing.name)
    if done.returncode != 0:
        sys.exit(f"worker failed ({package_root}):\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def side_by_side(baseline: Path, model: Path, files: list[Path], modes: tuple[str, str],
                 rounds: int) -> tuple[dict, dict]:
    """(previous, current) runs, alternated `rounds` times so that both see the same machine load; each
    keeps its fastest round (wall and CPU seconds alike)."""
    runs: tuple[list, list] = ([], [])
    for _ in range(rounds):
        runs[0].append(run_worker(baseline, model, files, modes[0]))
        runs[1].append(run_worker(ROOT, model, files, modes[1]))
    return tuple({**found[0], "wall": min(r["wall"] for r in found), "cpu": min(r["cpu"] for r in found)}
                 for found in runs)


def labelled_photos(folder: Path) -> tuple[list[Path], list[int]]:
    from inference.layout import list_labelled, resolve_labelled

    samples = list_labelled(resolve_labelled(folder, "test"))
    return [s.path for s in samples], [s.label for s in samples]


def auc_of(scores: list, labels: list[int]) -> tuple[float, int]:
    """ROC-AUC over the scored photos (retakes left out) and how many were retaken."""
    import numpy as np

    from inference.metrics import roc_auc

    kept = [(s, y) for s, y in zip(scores, labels) if s is not None]
    values, truth = np.array([s for s, _ in kept]), np.array([y for _, y in kept])
    return roc_auc(values, truth), len(scores) - len(kept)


def compare(name, model: Path, baseline: Path, files: list[Path], labels, args) -> None:
    """One model, the same photos through both pipelines: photos/s per core (one thread, photos per CPU
    second), photos/s on all cores (previous: prepared one after another; current: overlapped), the
    ratios and, with --auc, the ROC-AUC of each."""
    n = len(files)
    old, new = side_by_side(baseline, model, files, ("serial", "serial"), args.rounds)
    print(f"{name}: {n} photos, per core: previous {n / old['cpu']:.2f}, current {n / new['cpu']:.2f} photos per "
          f"CPU-second: {old['cpu'] / new['cpu']:.2f}x (wall, one thread: {n / old['wall']:.2f} vs "
          f"{n / new['wall']:.2f} photos/s: {old['wall'] / new['wall']:.2f}x)")
    if args.auc:
        (old_auc, old_retakes), (new_auc, new_retakes) = auc_of(old["scores"], labels), auc_of(new["scores"], labels)
        print(f"{name}: ROC-AUC previous {old_auc:.4f} ({old_retakes} retakes), current {new_auc:.4f} "
              f"({new_retakes} retakes): difference {new_auc - old_auc:+.4f}")
        return
    old, new = side_by_side(baseline, model, files, ("screen", "overlapped"), args.rounds)
    print(f"{name}: {n} photos, all {os.cpu_count()} cores: previous {n / old['wall']:.2f}, current "
          f"{n / new['wall']:.2f} photos/s: {old['wall'] / new['wall']:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", default="e6d3aa5", help="commit whose inference/ is the previous pipeline")
    parser.add_argument("--model", type=Path, action="append", help="model file(s) (default: the demo model and "
                        "runs/synth-h0/model.onnx when present)")
    parser.add_argument("--data", type=Path, default=SYNTH_DATA, help="labelled photos (a DATA root: its test/)")
    parser.add_argument("--count", type=int, default=60, help="photos timed per pipeline (0: all)")
    parser.add_argument("--rounds", type=int, default=2, help="alternated runs per pipeline; the fastest counts")
    parser.add_argument("--auc", action="store_true", help="score all photos of --data once and print ROC-AUC "
                        "(instead of the all-cores figures)")
    args = parser.parse_args()
    models = args.model or [DEMO_MODEL] + ([SYNTH_MODEL] if SYNTH_MODEL.is_file() else [])
    files, labels = photos_for(args.data)
    if args.auc:
        args.rounds = 1
    elif args.count:
        files, labels = files[: args.count], labels[: args.count]
    with tempfile.TemporaryDirectory() as tmp:
        baseline = extract_baseline(args.baseline, Path(tmp))
        for model in models:
            compare(model.relative_to(ROOT) if model.is_relative_to(ROOT) else model, model,
                    baseline, files, labels, args)


def photos_for(data: Path) -> tuple[list[Path], list[int]]:
    """Labelled photos of `data`, or of a small synth set written to a temporary folder when it is absent,
    interleaved genuine/counterfeit so that a --count prefix holds both."""
    if not data.is_dir():
        from datatools.synth import write_dataset

        data = Path(tempfile.mkdtemp()) / "synth"
        write_dataset(data, seed=0, products=3, n_train=2, n_val=2, n_test=40, progress=False)
    files, labels = labelled_photos(data)
    order = sorted(range(len(files)), key=lambda i: (labels[:i].count(labels[i]), labels[i]))
    return [files[i] for i in order], [labels[i] for i in order]


if __name__ == "__main__":
    if sys.argv[1:2] == ["--worker"]:
        print(json.dumps(score_photos(sys.argv[2], json.load(open(sys.argv[3])), sys.argv[4])))
    else:
        main()
