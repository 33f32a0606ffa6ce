"""Bulk screening of image files: one JSON line per image, errors included, in a stable order."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Iterator, TextIO

from inference.align import NotRecognised
from inference.classes import RETAKE
from inference.images import IMAGE_SUFFIXES, ImageError, Limits
from inference.layout import image_files
from inference.pipeline import decode_and_prepare
from inference.predictor import MAX_BATCH, Predictor, Prepared, images_per_call, stacked
from inference.quality import NOT_RECOGNISED, QualityThresholds


def find_images(paths: Iterable[str | Path]) -> list[Path]:
    """Files named directly, plus image files (by suffix) anywhere under named folders; sorted per folder."""
    found: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            found += image_files(path)
        elif path.is_file():
            found.append(path)
        else:
            kind = "file" if path.suffix.lower() in IMAGE_SUFFIXES else "folder"
            raise FileNotFoundError(f"no such {kind}: {path}")
    return found


def screen_files(files: list[Path], predictor: Predictor, limits: Limits = Limits(),
                 gate: QualityThresholds | None = None) -> Iterator[dict]:
    """Yield one record per file, in order: {"path", "score", "verdict", "model"} (reference models add the
    recognised "product"), {"path", "error"}, or {"path", "verdict": "retake", "reason", "message"} for a
    photo that cannot be judged: one a reference model finds none of its products in, and with `gate` (the
    quality thresholds: `counterfeit screen` answers as the API does) one the quality gate turns away.
    Without `gate` every decodable photo is scored (evaluation measures the model itself).

    Files are decoded and scored a few at a time (one onnxruntime call, images_per_call of them), and
    each record is yielded before the next files are read: memory does not grow with the number of files."""
    model = {"name": predictor.metadata.name, "version": predictor.metadata.version}
    batch = images_per_call(predictor.spec.size, MAX_BATCH)
    for start in range(0, len(files), batch):
        chunk = files[start : start + batch]
        prepared = [_prepare(path, predictor, limits, gate) for path in chunk]
        ready = [item for item in prepared if isinstance(item, Prepared)]
        scores = iter(predictor.scores(*stacked(ready)) if ready else [])
        for path, item in zip(chunk, prepared):
            if isinstance(item, Prepared):
                prediction = predictor.decide(float(next(scores)))
                product = {"product": predictor.product_of(item)} if predictor.aligns else {}
                yield {"path": str(path), "score": prediction.score, "verdict": prediction.verdict, **product,
                       "model": model}
            else:
                yield {"path": str(path), **item, "model": model}


def _prepare(path: Path, predictor: Predictor, limits: Limits, gate: QualityThresholds | None) -> Prepared | dict:
    """The model input, or the record fields saying why there is none."""
    try:
        data = path.read_bytes()
        if gate is None:
            return predictor.prepare(predictor.load(data, limits).image)
        _, quality, prepared = decode_and_prepare(data, predictor, limits, gate)
    except ImageError as exc:
        return {"error": exc.message}
    except OSError as exc:
        return {"error": f"Could not read the file: {exc.strerror or exc}"}
    except NotRecognised as exc:
        return {"verdict": RETAKE, "reason": NOT_RECOGNISED, "message": str(exc)}
    if prepared is None:
        return {"verdict": RETAKE, "reason": ",".join(quality.reasons), "message": quality.message}
    return prepared


def write_jsonl(records: Iterable[dict], out: TextIO) -> dict[str, int]:
    """Write records as JSON lines; return counts per verdict (and 'error')."""
    counts: dict[str, int] = {}
    for record in records:
        out.write(json.dumps(record) + "\n")
        counts[outcome(record)] = counts.get(outcome(record), 0) + 1
    return counts


def outcome(record: dict) -> str:
    """What a screening record (a line of a folder screening, or a manifest's output row) counts as in a
    summary: its verdict, or "error"."""
    return "error" if record.get("error") else record["verdict"]
