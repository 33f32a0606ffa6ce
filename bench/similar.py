"""Benchmark: the evidence store's in-memory similarity search (evidence_store/similar.py).

Inserts N random float32 embeddings (default 100,000 x 576, the size of mobilenet_v3_small's pooled
features) and N random 64-bit perceptual hashes, then times Q queries of each (default 200): the k
nearest embeddings by cosine distance, and every hash within 12 bits of any of a query's 8 rotation/mirror
variants. Goal: p99 under 50 ms. Query vectors are stored ones plus noise, so each has a true neighbour.
Run: .venv/bin/python bench/similar.py [--n N] [--dim D] [--queries Q] [--k K]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from evidence_store.similar import EmbeddingIndex, PhashIndex
from inference.phash import CANDIDATE_BITS


def percentiles(seconds: list[float]) -> str:
    ms = np.asarray(seconds) * 1000
    return f"p50 {np.percentile(ms, 50):6.2f} ms   p99 {np.percentile(ms, 99):6.2f} ms   max {ms.max():6.2f} ms"


def fill(n: int, dim: int, rng: np.random.Generator) -> tuple[EmbeddingIndex, PhashIndex, np.ndarray, float]:
    """Both indexes with n entries, appended in batches of 1,000 as catch-up from the database does."""
    embeddings, phashes = EmbeddingIndex(), PhashIndex()
    vectors = rng.standard_normal((n, dim), dtype=np.float32)
    hashes = rng.integers(0, 2**63, n, dtype=np.uint64) * np.uint64(2) + rng.integers(0, 2, n, dtype=np.uint64)
    started = time.perf_counter()
    for seq in range(n):
        embeddings.add(seq + 1, vectors[seq])
    for start in range(0, n, 1000):
        phashes.add(range(start + 1, min(start + 1000, n) + 1), hashes[start:start + 1000].tolist())
    return embeddings, phashes, vectors, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000, help="stored embeddings and hashes")
    parser.add_argument("--dim", type=int, default=576, help="embedding size")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--k", type=int, default=10, help="neighbours per embedding query")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    embeddings, phashes, vectors, fill_s = fill(args.n, args.dim, rng)
    print(f"{args.n:,} embeddings of {args.dim} float32 ({args.n * args.dim * 4 / 1e6:.0f} MB) and hashes "
          f"inserted in {fill_s:.2f} s")
    picks = rng.integers(0, args.n, args.queries)
    embedding_times, found = [], 0
    for pick in picks:
        query = vectors[pick] + 0.1 * rng.standard_normal(args.dim, dtype=np.float32)
        started = time.perf_counter()
        result = embeddings.nearest(query, args.k)
        embedding_times.append(time.perf_counter() - started)
        found += result[0][0] == pick + 1
    hash_times = []
    for pick in picks:
        variants = rng.integers(0, 2**63, 8, dtype=np.uint64).tolist()
        started = time.perf_counter()
        phashes.within(variants, CANDIDATE_BITS)
        hash_times.append(time.perf_counter() - started)
    print(f"embedding top-{args.k} ({args.queries} queries): {percentiles(embedding_times)}   "
          f"true neighbour first: {found}/{args.queries}")
    print(f"phash within {CANDIDATE_BITS} bits x 8 variants:   {percentiles(hash_times)}")


if __name__ == "__main__":
    main()
