"""The caller-supplied fields of a record: checked and normalised before anything is stored or hashed."""

from __future__ import annotations

import json
import math

import numpy as np

from evidence_store.records import KINDS, OUTCOME_LABELS, VERDICTS

MAX_TEXT = 1_000  # subject, location, case, external id, model name/version
MAX_NOTE = 10_000


def screen_line_fields(line: dict, thresholds: dict, model: dict) -> dict:
    """record() keyword arguments for one line of `counterfeit screen` (evaluation.screen.screen_files): a
    scored photo, or a retake (no score) with its reason."""
    if "error" in line:
        raise ValueError(f"{line['path']} was not screened ({line['error']}): there is nothing to record.")
    quality = {}
    if "reason" in line:
        quality = {"ok": False, "reasons": line["reason"].split(","), "message": line.get("message", "")}
    return {"kind": "screening", "external_id": line["path"], "verdict": line["verdict"], "score": line.get("score"),
            "thresholds": thresholds, "model_name": model["name"], "model_version": model["version"],
            "quality": quality, "product": line.get("product")}


def checked(*, kind: str, subject: str, verdict: str, score: float | None, thresholds: dict, model_name: str,
            model_version: str, quality: dict, external_id: str | None, location: str | None, case: str | None,
            note: str | None, product: str | None = None) -> dict:
    """The fields as stored: ValueError naming the first bad one."""
    _one_of("kind", kind, KINDS)
    _one_of("verdict", verdict, VERDICTS)
    return {"kind": kind, "subject": _text("subject", subject, required=True), "verdict": verdict,
            "score": _score(score), "thresholds": plain("thresholds", thresholds),
            "model_name": _text("model_name", model_name, required=True),
            "model_version": _text("model_version", model_version, required=True),
            "quality": plain("quality", quality), "external_id": _text("external_id", external_id),
            "location": _text("location", location), "case": _text("case", case),
            "note": _text("note", note, limit=MAX_NOTE), "product": _text("product", product)}


def checked_outcome(label: str, note: str | None, subject: str) -> dict:
    _one_of("label", label, OUTCOME_LABELS)
    return {"label": label, "note": _text("note", note, limit=MAX_NOTE), "subject": _text("subject", subject, required=True)}


def plain(name: str, value) -> dict:
    """A JSON object of plain Python values (numpy scalars and tuples converted), finite numbers only."""
    if not isinstance(value, dict):
        raise ValueError(f"{name} must be a dict, got {type(value).__name__}")
    try:
        return json.loads(json.dumps(value, default=_numpy_value, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must hold only JSON values with finite numbers: {exc}") from None


def _numpy_value(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"{type(value).__name__} is not JSON")


def _one_of(name: str, value, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def _score(score) -> float | None:
    if score is None:
        return None
    score = float(score)  # 1 and 1.0 must hash alike: the database hands back a float
    if not (math.isfinite(score) and 0.0 <= score <= 1.0):
        raise ValueError(f"score must be between 0 and 1, got {score}")
    return score


def _text(name: str, value, *, required: bool = False, limit: int = MAX_TEXT) -> str | None:
    if value is None or value == "":
        if required:
            raise ValueError(f"{name} is required")
        return None  # an empty form field means "not given"
    if not isinstance(value, str):
        raise ValueError(f"{name} must be text, got {type(value).__name__}")
    if len(value) > limit or "\x00" in value:
        raise ValueError(f"{name} must be at most {limit} characters, without NUL")
    return value
