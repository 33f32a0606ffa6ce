"""What a model was trained and validated on, kept in its file (metadata key "provenance") so that
GET /v1/model, every answer's `model` and the page can say it.

A model whose thresholds were never set on real photos is a demo: its verdicts are not evidence, and the
page says so in a banner and gives no seizure advice. Whether photos are real is known from the dataset
folder: the generators of this project write ORIGIN.json there (`counterfeit synth`: synthetic photos and
counterfeits; `counterfeit data real`: real photos, counterfeits edited from them). A folder without it
holds photos someone collected: real photos, as they came.
"""

from __future__ import annotations

import json
from pathlib import Path

from inference.classes import CLASSES
from inference.layout import DataError, list_labelled

ORIGIN_FILE = "ORIGIN.json"
PHOTO_ORIGINS = ("synthetic", "real")
COUNTERFEIT_ORIGINS = ("synthetic", "edited", "collected", "none")
_COLLECTED = {"photos": "real", "counterfeits": "collected", "made_by": "collected by the user"}
_MAX_ORIGIN_BYTES = 4096  # the file is a few lines; a bigger one is not ours


def write_origin(root: Path, *, photos: str, counterfeits: str, made_by: str) -> None:
    """Say in `root` what made this dataset (the generators call it once, at the end)."""
    if photos not in PHOTO_ORIGINS or counterfeits not in COUNTERFEIT_ORIGINS:
        raise ValueError(f"photos must be one of {PHOTO_ORIGINS}, counterfeits one of {COUNTERFEIT_ORIGINS}")
    origin = {"photos": photos, "counterfeits": counterfeits, "made_by": made_by}
    (Path(root) / ORIGIN_FILE).write_text(json.dumps(origin, indent=2) + "\n", encoding="utf-8")


def read_origin(root: Path) -> dict:
    """What made the dataset under `root` (or above it, for a split folder); collected photos when unsaid."""
    for folder in (Path(root), Path(root).parent):
        path = folder / ORIGIN_FILE
        if path.is_file() and path.stat().st_size <= _MAX_ORIGIN_BYTES:
            try:
                origin = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(origin, dict) and origin.get("photos") in PHOTO_ORIGINS:
                return {key: str(origin.get(key, _COLLECTED[key])) for key in _COLLECTED}
    return dict(_COLLECTED)


def describe_split(folder: Path, *, counterfeits: str | None = None) -> dict:
    """{data, photos, counterfeits, made_by, genuine, counterfeit} of one labelled folder; `counterfeits`
    overrides the origin's word (e.g. "edited" when the trainer edited val genuines into fakes)."""
    folder = Path(folder)
    if not folder.is_dir():  # exported away from its data: nothing can be said of it, so not "real"
        return {"data": str(folder), "photos": "unknown", "counterfeits": "unknown", "made_by": "unknown"}
    try:
        samples = list_labelled(folder, optional=CLASSES)
    except DataError:
        samples = []
    counts = {name: sum(1 for s in samples if s.label == index) for index, name in enumerate(CLASSES)}
    origin = read_origin(folder)
    if counterfeits is not None:
        origin["counterfeits"] = counterfeits
    if not counts[CLASSES[1]] and counterfeits is None:
        origin["counterfeits"] = "none"
    return {"data": str(folder), **origin, **counts}


def provenance(train: Path, val: Path, *, val_counterfeits: str | None = None) -> dict:
    """The model file's record of its training and validation data."""
    return {"trained_on": describe_split(train), "validated_on": describe_split(val, counterfeits=val_counterfeits)}


def validated_on_real_photos(record: dict | None) -> bool:
    """True only when the file says its thresholds were set on real photos."""
    validated = (record or {}).get("validated_on") or {}
    return validated.get("photos") == "real"


def demo_notice(record: dict | None) -> str | None:
    """What the page's banner says about a model not validated on real photos (None: nothing to say)."""
    if validated_on_real_photos(record):
        return None
    if not record:
        return "Unknown model: the file does not say what it was validated on. Not for real goods."
    return "Demo model: synthetic photos only, not for real goods."
