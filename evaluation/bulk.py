"""Bulk screening of manifest rows: one output row per manifest row, each standing alone (a bad image is a
row with an error, never a stopped run). `Screener.screen` is the per-row logic of both the local command
and the Ray path (evaluation/ray_screen.py), so the two answer alike row for row."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from evaluation.fetch import Fetcher, FetchError
from evaluation.manifest import Row
from inference.classes import RETAKE
from inference.images import ImageError, Limits
from inference.pipeline import decode_and_prepare
from inference.predictor import MAX_BATCH, Predictor, Prepared, images_per_call, stacked
from inference.quality import QualityThresholds

# The output's columns, in order (JSON lines keys, Parquet schema: evaluation/bulk_output.py).
COLUMNS = ("id", "image", "sha256", "verdict", "score", "product", "model", "model_version", "error", "reason")
DEFAULT_CACHE = 4096  # answers kept for repeated photos; about 200 bytes each


class AnswerCache:
    """The last `size` answers keyed by (image sha256, model version): a photo repeated in a manifest (same
    bytes) is answered without decoding or scoring it again. The pipeline is deterministic, so an answer
    from the cache is the one the photo would get anyway. Thread-safe; size 0 keeps nothing."""

    def __init__(self, size: int = DEFAULT_CACHE) -> None:
        self.size = size
        self._answers: OrderedDict[tuple[str, str], dict] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> dict | None:
        with self._lock:
            answer = self._answers.get(key)
            if answer is not None:
                self._answers.move_to_end(key)
            return answer

    def put(self, key: tuple[str, str], answer: dict) -> None:
        if self.size <= 0:
            return
        with self._lock:
            self._answers[key] = answer
            self._answers.move_to_end(key)
            while len(self._answers) > self.size:
                self._answers.popitem(last=False)


@dataclass
class _Checked:
    row: dict  # the output row so far
    prepared: Prepared | None = None  # set when the photo is to be scored


class Screener:
    """Screens batches of manifest rows with one model: fetch, decode, quality gate and registration in
    `threads` threads, then one onnxruntime call per batch."""

    def __init__(self, predictor: Predictor, fetcher: Fetcher, *, limits: Limits = Limits(),
                 thresholds: QualityThresholds = QualityThresholds(), cache: AnswerCache | None = None,
                 threads: int = 2) -> None:
        self.predictor, self.fetcher, self.limits, self.thresholds = predictor, fetcher, limits, thresholds
        self.cache = cache if cache is not None else AnswerCache()
        self.model = {"model": predictor.metadata.name, "model_version": predictor.metadata.version}
        self.batch_size = images_per_call(predictor.spec.size, MAX_BATCH)
        self._pool = ThreadPoolExecutor(max(1, threads), thread_name_prefix="screen")

    @property
    def version(self) -> str:
        return self.model["model_version"]

    def screen(self, rows: Sequence[Row]) -> list[dict]:
        """One output row (COLUMNS) per manifest row, in order."""
        checked = list(self._pool.map(self._check, rows))
        ready = [item for item in checked if item.prepared is not None]
        if ready:
            for item, score in zip(ready, self.predictor.scores(*stacked([i.prepared for i in ready]))):
                prediction = self.predictor.decide(float(score))
                item.row.update(score=prediction.score, verdict=prediction.verdict)
                self.cache.put((item.row["sha256"], self.version), _answer(item.row))
        return [item.row for item in checked]

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def _check(self, manifest_row: Row) -> _Checked:
        row = dict.fromkeys(COLUMNS) | {"id": manifest_row.id, "image": manifest_row.image} | self.model
        try:
            data = self.fetcher.fetch(manifest_row.image)
        except FetchError as exc:
            return _Checked({**row, "error": str(exc)})
        row["sha256"] = hashlib.sha256(data).hexdigest()
        cached = self.cache.get((row["sha256"], self.version))
        if cached is not None:
            return _Checked({**row, **cached})
        return self._prepare(row, data)

    def _prepare(self, row: dict, data: bytes) -> _Checked:
        try:
            _, quality, prepared = decode_and_prepare(data, self.predictor, self.limits, self.thresholds)
        except ImageError as exc:
            return _Checked({**row, "error": f"{exc.code}: {exc.message}"})
        if prepared is None:
            row.update(verdict=RETAKE, reason=",".join(quality.reasons))
            self.cache.put((row["sha256"], self.version), _answer(row))
            return _Checked(row)
        return _Checked({**row, "product": self.predictor.product_of(prepared)}, prepared)


def _answer(row: dict) -> dict:
    """What a repeated photo shares with its first sighting."""
    return {key: row[key] for key in ("verdict", "score", "product", "reason")}


def batched(rows: Iterable[Row], size: int) -> Iterator[list[Row]]:
    iterator = iter(rows)
    while batch := list(islice(iterator, size)):
        yield batch


def screen_rows(rows: Iterable[Row], screener: Screener) -> Iterator[list[dict]]:
    """Output rows a batch at a time (one model call each): memory does not grow with the manifest."""
    for batch in batched(rows, screener.batch_size):
        yield screener.screen(batch)


def not_done(rows: Iterable[Row], done: set[str]) -> Iterator[Row]:
    """Rows whose id is not in `done` (already in the output for this model version)."""
    return (row for row in rows if row.id not in done)


def manifest_screener(predictor: Predictor, manifest: Path, limits: Limits, thresholds: QualityThresholds, *,
                      cache: int = DEFAULT_CACHE, threads: int = 2, **fetch_options) -> Screener:
    """The Screener of a manifest's rows, as the local command, the Ray actors and the bench build it: locations
    fetched relative to the manifest's folder (or as URLs) within the upload limit, then decoded under
    `limits` and gated by `thresholds` as the API does. fetch_options: Fetcher's (timeout_s, per_host)."""
    fetcher = Fetcher(base=Path(manifest).resolve().parent, max_bytes=limits.max_bytes, **fetch_options)
    return Screener(predictor, fetcher, limits=limits, thresholds=thresholds, cache=AnswerCache(cache),
                    threads=threads)
