"""The store's similarity search: in-memory indexes kept in step with the database.

The indexes are filled from the database on the store's first search and then catch up before each
search with whatever was committed since (by this process or by another replica sharing the database): records
by seq and embeddings by their number, both of which commit in increasing order because they are
written under the chain lock.
"""

from __future__ import annotations

import threading

import numpy as np

from evidence_store.db import Tx
from evidence_store.similar import EmbeddingIndex, PhashIndex
from inference.phash import CANDIDATE_BITS, THUMBNAIL_SIDE, near_duplicate_pairs

MAX_CANDIDATES = 256  # hash matches confirmed per search: the closest ones


def phashes_text(phashes: tuple[int, ...]) -> str:
    return "".join(f"{value:016x}" for value in phashes)


def phashes_from_text(text: str) -> tuple[int, ...]:
    return tuple(int(text[i:i + 16], 16) for i in range(0, len(text), 16))


class Neighbours:
    def __init__(self) -> None:
        self.phashes = PhashIndex()
        self.embeddings = EmbeddingIndex()
        self._record_seq = 0  # the newest record in the phash index
        self._embedding_n = 0  # the newest embedding in the embedding index
        self._lock = threading.Lock()

    def catch_up(self, tx: Tx) -> None:
        with self._lock:
            seqs, hashes = [], []
            for seq, phash in tx.stream("SELECT seq, phash FROM records WHERE seq > ? ORDER BY seq",
                                        (self._record_seq,)):
                seqs.append(seq)
                hashes.append(int(phash, 16))
            if seqs:
                self.phashes.add(seqs, hashes)
                self._record_seq = seqs[-1]
            for n, seq, vector in tx.stream("SELECT n, record_seq, vector FROM embeddings WHERE n > ? ORDER BY n",
                                            (self._embedding_n,)):
                self.embeddings.add(seq, np.frombuffer(vector, np.float32))
                self._embedding_n = n

    def near_duplicates(self, tx: Tx, seq: int) -> list[tuple[int, int]]:
        """(seq, Hamming bits) of other records whose photo is a copy of record seq's, closest first:
        hash candidates within CANDIDATE_BITS, confirmed by their thumbnails as the data audit does."""
        query = tx.one("SELECT phashes, thumbnail FROM fingerprints WHERE record_seq = ?", (seq,))
        with self._lock:
            found = self.phashes.within(phashes_from_text(query[0]), CANDIDATE_BITS, limit=MAX_CANDIDATES + 1)
        candidates = [other for other, _ in found if other != seq][:MAX_CANDIDATES]
        if not candidates:
            return []
        rows = {row[0]: row[1:] for row in tx.all(
            "SELECT record_seq, phashes, thumbnail FROM fingerprints WHERE record_seq IN "
            f"({', '.join('?' * len(candidates))})", tuple(candidates))}
        candidates = [other for other in candidates if other in rows]
        fingerprints = [query] + [rows[other] for other in candidates]
        hashes = np.array([phashes_from_text(text) for text, _ in fingerprints], np.uint64)
        side = THUMBNAIL_SIDE
        thumbnails = np.stack([np.frombuffer(bytes(t), np.uint8).reshape(side, side, 3) for _, t in fingerprints])
        pairs = near_duplicate_pairs(hashes, thumbnails)
        matches = [(candidates[j - 1], bits) for i, j, bits, _ in pairs if i == 0]
        return sorted(matches, key=lambda match: (match[1], match[0]))

    def embedding_neighbours(self, seq: int, k: int) -> list[tuple[int, float]]:
        """(seq, cosine distance) of the k records whose embeddings are closest to record seq's."""
        with self._lock:
            vector = self.embeddings.vector(seq)
            return [] if vector is None else self.embeddings.nearest(vector, k, exclude=seq)
