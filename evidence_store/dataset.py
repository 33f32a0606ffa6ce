"""Confirmed outcomes -> a training data folder: DATA/{train,val,test}/{genuine,counterfeit}/<sha256>.<ext>.

- Only records whose latest outcome is genuine or counterfeit (a later 'unknown' withdraws a label), and
  whose original photo is still kept (the retention policy's retired ones are counted as retired_skipped).
- Each photo once (by SHA-256); a photo labelled both ways is left out and counted as a conflict.
- Split by case: all photos of one case land in the same split, so a model is never tested on a case it
  trained on. A record without a case is a group of its own. Groups sharing a photo are merged.
- A group's split comes from a hash of (seed, group): deterministic, and stable as new cases arrive, so
  re-exporting later never moves an old case from train to test.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterable
from pathlib import Path

from evidence_store.records import Record
from inference.classes import CLASSES
from inference.grouping import connected_groups
from inference.layout import SPLITS

SPLIT_FRACTIONS = {"train": 0.7, "val": 0.15, "test": 0.15}


def plan(records: Iterable[Record], *, seed: int) -> tuple[dict[tuple[str, str], list[str]], dict]:
    """{(split, label): [sha256, ...]} and counts of what was left out and why."""
    labels: dict[str, set[str]] = defaultdict(set)
    groups: dict[str, set[str]] = defaultdict(set)
    confirmed = retired = 0
    for record in records:
        # An item's outcome labels the item, not the photo its record shows: a counterfeit carton may
        # have one edited side and genuine-looking others.
        if record.outcome in CLASSES and record.kind != "item":
            if record.retired_at is not None:
                retired += 1
                continue
            confirmed += 1
            labels[record.image_sha256].add(record.outcome)
            groups[record.image_sha256].add(_group(record))
    root = connected_groups(groups.values())
    layout: dict[tuple[str, str], list[str]] = {(split, label): [] for split in SPLITS for label in CLASSES}
    conflicts = 0
    for sha256 in sorted(labels):
        if len(labels[sha256]) > 1:
            conflicts += 1
            continue
        split = _split_of(root[next(iter(groups[sha256]))], seed)
        layout[(split, next(iter(labels[sha256])))].append(sha256)
    counts = {"confirmed_records": confirmed, "images": len(labels) - conflicts, "conflicts_skipped": conflicts,
              "duplicates_skipped": confirmed - len(labels), "retired_skipped": retired,
              "groups": len(set(root.values()))}
    return layout, counts


def write(layout: dict[tuple[str, str], list[str]], out: Path,
          clean_copy: Callable[[str], tuple[bytes, str]]) -> dict:
    """Write every planned photo (clean_copy(sha256) -> metadata-free bytes, suffix); counts per split."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty: export a dataset into a new folder.")
    counts: dict[str, dict[str, int]] = {split: {label: 0 for label in CLASSES} for split in SPLITS}
    for (split, label), hashes in layout.items():
        folder = out / split / label
        folder.mkdir(parents=True, exist_ok=True)
        for sha256 in hashes:
            data, suffix = clean_copy(sha256)
            (folder / f"{sha256}{suffix}").write_bytes(data)
            counts[split][label] += 1
    return counts


def _group(record: Record) -> str:
    return f"case:{record.case}" if record.case else f"record:{record.id}"


def _split_of(group: str, seed: int) -> str:
    point = int.from_bytes(hashlib.sha256(f"{seed}:{group}".encode()).digest()[:8], "big") / 2**64
    edge = 0.0
    for split, fraction in SPLIT_FRACTIONS.items():
        edge += fraction
        if point < edge:
            return split
    return SPLITS[-1]
