"""The tamper-evident hash chain: how an entry's hash is computed, and how a stored chain is checked.

Records, outcomes and retirements (the retention policy deleting a record's original photo) share one
sequence (seq 1..n). Each entry's hash is
    record_hash = SHA-256(prev_hash as ASCII hex + canonical JSON of its immutable fields)
where prev_hash is the previous entry's record_hash (GENESIS for seq 1) and canonical JSON has sorted keys,
no whitespace, UTF-8 and no NaN. The fields include seq, id, created_at and image_sha256, so changing,
renumbering, reordering or re-pointing an entry at another photo changes its hash; removing one breaks
the sequence or the next entry's link. The chain head (seq, hash of the last entry) is stored as well, so
removing the newest entries is caught too, unless the stored head is rewound along with them.

That, and a rewrite of the whole chain with recomputed hashes, is the limit of a chain checked against
itself: whoever can write the database can do both. Heads kept outside the database (heads.py) close it:
verify_entries(anchors=...) checks that the chain still holds each anchored head's entry and hash.

A retired record's photo may be gone from disk: verify counts it as retired, not missing, when its
Retirement entry is in the chain after it, names the same photo and is intact. Removing or editing that
entry shows as an altered entry or, once the photo is gone, as the record's missing photo.

Not covered: the embeddings and similarity fingerprints (perceptual hashes, thumbnails) kept beside the
records. They are derived data, recomputable from the original photo (whose SHA-256 is chained) and the
model (named in the record); altering them can only change which records similar() ranks close.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, fields

from evidence_store.records import Head, Outcome, Record, Retirement, VerifyReport, phash_hex

GENESIS = "0" * 64
_UNHASHED = ("prev_hash", "record_hash", "outcomes", "retired_at")


@dataclass(frozen=True)
class Unreadable:
    """A stored row that cannot even be decoded into a record or outcome (edited by hand)."""

    seq: int
    id: str


Entry = Record | Outcome | Retirement | Unreadable
Chained = Record | Outcome | Retirement


def canonical_text(value) -> str:
    """Sorted keys, no whitespace, no NaN: the one JSON text of a value."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def field_values(entry) -> dict:
    """{field: value} of a dataclass value, shallow. dataclasses.asdict deep-copies every dict: with it, verify
    of 1,000,000 records took 60 s instead of 26 (2 cores, SQLite, no image checks; docs/evidence-scale.md)."""
    return {name: getattr(entry, name) for name in _field_names(type(entry))}


@functools.cache
def _field_names(kind: type) -> tuple[str, ...]:
    return tuple(field.name for field in fields(kind))


def payload(entry: Chained) -> dict:
    """The immutable fields of an entry, as hashed. phash as hex: JSON numbers lose bits above 2**53."""
    values = {key: value for key, value in field_values(entry).items() if key not in _UNHASHED}
    if isinstance(entry, Record):
        if entry.product is None:  # not kept before schema 5, nor for models without a catalogue
            del values["product"]
        return {"type": "record", **values, "phash": phash_hex(entry.phash)}
    return {"type": "outcome" if isinstance(entry, Outcome) else "retirement", **values}


def entry_hash(prev_hash: str, entry: Chained) -> str:
    return hashlib.sha256(prev_hash.encode("ascii") + canonical_text(payload(entry)).encode("utf-8")).hexdigest()


def verify_entries(entries: Iterable[Entry], head: tuple[int, str], image_problem: Callable[[str], str | None],
                   anchors: Sequence[Head] = (), retired: Collection[str] = ()) -> VerifyReport:
    """Walk entries in seq order; the report names the first one altered, removed or whose image is not
    the one recorded, then the first anchored head (published earlier) the chain no longer holds.
    image_problem(sha256) -> None | "image_missing" | "image_changed"; retired: the ids of the records that
    a Retirement entry names (each is checked when the walk reaches it)."""
    wanted, found = {anchor.seq for anchor in anchors}, {0: (GENESIS, None)}
    expected, prev, previous_id = 1, GENESIS, None
    photos = _Photos(image_problem, retired)
    for entry in entries:
        bad = _entry_problem(entry, expected, prev, previous_id) or photos.problem(entry)
        if bad:
            return _report(bad, head, bad["seq"] - 1)
        if entry.seq in wanted:
            found[entry.seq] = (entry.record_hash, entry.id)
        expected, prev, previous_id = expected + 1, entry.record_hash, entry.id
    bad = _head_problem(expected - 1, prev, previous_id, head)
    if bad:
        return _report(bad, head, bad["seq"] - 1)
    bad, vouched, matched = _anchor_problem(sorted(anchors, key=lambda anchor: anchor.seq), found, expected - 1)
    return _report(bad, head, vouched if bad else expected - 1, matched, photos.retired)


_IMAGE_DETAILS = {"image_missing": "its original photo is missing from the store",
                  "image_changed": "its original photo no longer has the SHA-256 it was recorded with"}


class _Photos:
    """Each record's photo, and each retirement against the record it retires: a retired record's photo may
    be gone (not may be altered), provided its Retirement entry follows, names that photo, and is intact."""

    def __init__(self, image_problem: Callable[[str], str | None], retired: Collection[str]) -> None:
        self._image_problem, self._retired = image_problem, set(retired)
        self._photo_of: dict[str, str] = {}  # retired record id -> its photo, as the walk met the record
        self.retired = 0

    def problem(self, entry: Entry) -> dict | None:
        if isinstance(entry, Record):
            problem = self._image_problem(entry.image_sha256)
            if entry.id in self._retired:
                self._photo_of[entry.id] = entry.image_sha256
                problem = None if problem == "image_missing" else problem
            return problem and _bad(entry.seq, entry.id, problem, _IMAGE_DETAILS[problem])
        if isinstance(entry, Retirement):
            if self._photo_of.get(entry.record_id) != entry.image_sha256:
                return _bad(entry.seq, entry.id, "altered", f"it retires record {entry.record_id}, but no earlier "
                            "record of the chain has that id and photo")
            self.retired += 1
        return None


def _entry_problem(entry: Entry, expected: int, prev: str, previous_id: str | None) -> dict | None:
    if entry.seq > expected:
        return _bad(expected, None, "removed", f"the chain jumps from seq {expected - 1} to {entry.seq}: "
                    f"{entry.seq - expected} entr{'y was' if entry.seq - expected == 1 else 'ies were'} removed")
    if entry.seq < expected:
        return _bad(entry.seq, entry.id, "altered", f"seq {entry.seq} is used twice")
    if isinstance(entry, Unreadable) or entry_hash(entry.prev_hash, entry) != entry.record_hash:
        return _bad(entry.seq, entry.id, "altered", "its stored fields do not match its hash")
    if entry.prev_hash != prev:
        # Both rows match their own hashes but do not link: the earlier one was rewritten along with a
        # recomputed hash (or this one's link was); the earlier is the more likely target, name it.
        if entry.seq == 1:
            return _bad(1, entry.id, "altered", "the first entry does not start from the genesis hash")
        return _bad(entry.seq - 1, previous_id, "altered", f"its hash is not the one entry {entry.seq} was "
                    "chained to: it was rewritten and re-hashed")
    return None


def _head_problem(last_seq: int, last_hash: str, last_id: str | None, head: tuple[int, str]) -> dict | None:
    head_seq, head_hash = head
    if last_seq < head_seq:
        return _bad(last_seq + 1, None, "removed", f"the chain head says {head_seq} entries were written; "
                    f"entries {last_seq + 1}..{head_seq} are gone")
    if last_seq > head_seq:
        return _bad(head_seq + 1, None, "altered", f"entries after the chain head (seq {head_seq}) were added "
                    "outside the store")
    if last_seq and last_hash != head_hash:
        return _bad(last_seq, last_id, "altered", "the newest entry was rewritten and re-hashed: its hash is not "
                    "the chain head's")
    return None


def _anchor_problem(anchors: Sequence[Head], found: dict[int, tuple[str, str | None]],
                    last_seq: int) -> tuple[dict | None, int, int]:
    """(the first anchored head, in seq order, the chain no longer holds, or None; the seq up to which the
    last matching head vouches for the chain; how many heads matched)."""
    vouched = 0
    for matched, anchor in enumerate(anchors):
        if anchor.seq > last_seq:
            return _bad(last_seq + 1, None, "removed", f"the head taken at {anchor.at} anchors seq {anchor.seq}, but "
                        f"the chain ends at seq {last_seq}: entries {last_seq + 1}..{anchor.seq} were removed and "
                        "the stored chain head rewound"), last_seq, matched
        stored_hash, entry_id = found[anchor.seq]
        if stored_hash != anchor.hash:
            return _bad(anchor.seq, entry_id, "altered", f"its hash is not the one anchored by the head taken at "
                        f"{anchor.at}: an entry among seq {vouched + 1}..{anchor.seq} was rewritten and the chain "
                        "re-hashed after it"), vouched, matched
        vouched = anchor.seq
    return None, vouched, len(anchors)


def _bad(seq: int, entry_id: str | None, problem: str, detail: str) -> dict:
    return {"seq": seq, "id": entry_id, "problem": problem, "detail": detail}


def _report(bad: dict | None, head: tuple[int, str], checked: int, anchors_checked: int = 0,
            retired: int = 0) -> VerifyReport:
    return VerifyReport(ok=bad is None, checked=checked, first_bad=bad, head_seq=head[0], head_hash=head[1],
                        anchors_checked=anchors_checked, retired=retired)
