"""Dynamic batching: concurrent callers share onnxruntime calls and each gets its own answer."""

import threading
import time

import numpy as np

from api.batching import Batcher
from inference.predictor import Prepared


def test_concurrent_requests_are_batched_and_answered_in_place(classifier_predictor):
    sizes = []
    batcher = Batcher(max_batch=8, max_wait_s=0.2, on_batch=sizes.append)
    arrays = np.random.default_rng(0).normal(size=(8, 3, 48, 64)).astype(np.float32)
    expected = classifier_predictor.scores(arrays)
    got = [None] * 8

    def call(i):
        got[i] = batcher.score(classifier_predictor, Prepared(arrays[i]))[0]

    with batcher.expecting(8):  # as 8 requests in flight announce themselves
        threads = [threading.Thread(target=call, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    batcher.close()
    assert np.allclose(got, expected, atol=1e-6)  # each caller got its own row
    assert sum(sizes) == 8 and max(sizes) > 1  # and at least some shared a call


def test_a_lone_request_does_not_wait_for_company(classifier_predictor):
    batcher = Batcher(max_batch=32, max_wait_s=5.0)  # a window no test could sit through
    array = np.zeros((3, 48, 64), np.float32)
    start = time.perf_counter()
    with batcher.expecting():
        assert 0 <= batcher.score(classifier_predictor, Prepared(array))[0] <= 1
    assert time.perf_counter() - start < 2.0
    batcher.close()


def test_a_failing_model_fails_only_its_own_callers(classifier_predictor):
    class Broken:
        def scores_and_embeddings(self, batch, products):
            raise RuntimeError("boom")

    batcher = Batcher(max_batch=4, max_wait_s=0.05)
    bad = batcher.submit(Broken(), Prepared(np.zeros((3, 48, 64), np.float32)))  # type: ignore[arg-type]
    good = batcher.submit(classifier_predictor, Prepared(np.zeros((3, 48, 64), np.float32)))
    assert isinstance(bad.exception(timeout=5), RuntimeError)
    score, embedding = good.result(timeout=5)
    assert 0 <= score <= 1 and embedding.shape == (576,)
    batcher.close()
