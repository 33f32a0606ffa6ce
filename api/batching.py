"""Dynamic batching: concurrent requests share one onnxruntime call.

Request threads put prepared photos on a queue and wait; one worker thread takes the first item,
waits up to `max_wait_s` for more (up to `max_batch`), runs them as one batch and hands each caller its
row. A batch of 8 costs far less than 8 calls of 1, so throughput holds up under load.

The worker only waits while other requests are on their way (announced with `expecting()` before
they start decoding): a lone request is scored at once, without the wait.

A batch is scored in onnxruntime calls of at most `images_per_call` images: onnxruntime keeps the
largest call's activations in its memory arena for the life of the process, so the size of one call,
not the batch, sets the server's memory.
"""

from __future__ import annotations

import queue
import threading
import time
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from inference.predictor import MAX_BATCH, Predictor, Prepared, images_per_call, stacked


@dataclass
class _Item:
    predictor: Predictor  # the model that prepared this photo must also score it
    prepared: Prepared
    future: Future = field(default_factory=Future)


class Batcher:
    def __init__(self, max_batch: int = MAX_BATCH, max_wait_s: float = 0.004,
                 on_batch: Callable[[int], None] | None = None) -> None:
        self.max_batch, self.max_wait_s = max_batch, max_wait_s
        self.on_batch = on_batch  # e.g. a metrics histogram of batch sizes
        self._queue: queue.Queue[_Item | None] = queue.Queue()
        self._expected = 0  # requests between expecting() and their score: what a batch may still get
        self._expected_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="batcher", daemon=True)
        self._thread.start()

    @contextmanager
    def expecting(self, count: int = 1):
        """Announce `count` photos that will be submitted within this block (e.g. once decoded)."""
        with self._expected_lock:
            self._expected += count
        try:
            yield
        finally:
            with self._expected_lock:
                self._expected -= count

    def submit(self, predictor: Predictor, prepared: Prepared) -> Future:
        """Queue one prepared photo; the future gives (calibrated score, embedding or None)."""
        item = _Item(predictor, prepared)
        self._queue.put(item)
        return item.future

    def score(self, predictor: Predictor, prepared: Prepared) -> tuple[float, np.ndarray | None]:
        """(Calibrated score, embedding or None) of one prepared photo; blocks until its batch has run."""
        return self.submit(predictor, prepared).result()

    def close(self) -> None:
        """Finish what is queued, then stop the worker."""
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch, stop = self._collect(first)
            self._score_batch(batch)
            if stop:
                return

    def _collect(self, first: _Item) -> tuple[list[_Item], bool]:
        batch, deadline = [first], time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch:
            others_coming = self._expected > len(batch)  # announced, still decoding, not yet queued
            timeout = max(0.0, deadline - time.monotonic()) if others_coming else 0.0
            try:
                item = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return batch, True
            batch.append(item)
        return batch, False

    def _score_batch(self, batch: list[_Item]) -> None:
        # Items preprocessed for different models (during a reload) are scored by their own model.
        for predictor in {id(item.predictor): item.predictor for item in batch}.values():
            group = [item for item in batch if item.predictor is predictor]
            try:
                height, width = group[0].prepared.array.shape[-2:]
                per_call = images_per_call((width, height), self.max_batch)
                for start in range(0, len(group), per_call):
                    self._score_call(predictor, group[start : start + per_call])
            except Exception as exc:  # delivered to each waiting request, which answers 500
                for item in group:
                    if not item.future.done():
                        item.future.set_exception(exc)

    def _score_call(self, predictor: Predictor, items: list[_Item]) -> None:
        scores, embeddings = predictor.scores_and_embeddings(*stacked([item.prepared for item in items]))
        if self.on_batch is not None:
            self.on_batch(len(items))
        for index, item in enumerate(items):
            item.future.set_result((float(scores[index]), None if embeddings is None else embeddings[index]))
