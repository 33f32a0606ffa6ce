"""The store's values: records, outcomes, verification reports, similarity matches; rows <-> values."""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Literal

# The verdicts and outcome labels a record may hold are the shared vocabulary's (imported here for the
# store's checks, evidence_store.fields).
from inference.classes import OUTCOME_LABELS, VERDICTS  # noqa: F401

# An item (POST /v1/items): each photo is an "item_photo" record and the item's own verdict an "item"
# record (its image: the item's first photo), all with the item's id as external_id; outcomes go on the
# "item" record.
KINDS = ("inspection", "screening", "item", "item_photo")
RecordKind = Literal["inspection", "screening", "item", "item_photo"]  # = KINDS, for the API's query parameter
PROBLEMS = ("altered", "removed", "image_changed", "image_missing")
# What verify does not check, and why that is acceptable: said in every report.
NOT_COVERED = ("embeddings and similarity fingerprints (perceptual hashes, thumbnails): derived data, recomputable "
               "from the photos and the model; they only rank similar records")


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


@dataclass(frozen=True)
class Outcome:
    """What an investigation later established about a record; appended to the chain, never overwritten."""

    seq: int
    id: str
    record_id: str
    created_at: str
    label: str  # one of OUTCOME_LABELS
    note: str | None
    subject: str  # who recorded it (Principal.subject)
    prev_hash: str = ""
    record_hash: str = ""


@dataclass(frozen=True)
class Record:
    """One photo as judged: what, when, where, by whom, which model said what. Immutable once stored."""

    seq: int  # position in the chain, shared with outcomes
    id: str  # sortable: 48-bit milliseconds then 80 random bits, Crockford base32 (ULID layout)
    created_at: str  # UTC, ISO 8601, fixed width: sorts as text
    kind: str  # one of KINDS
    external_id: str | None  # the caller's listing or seller id (screenings)
    subject: str
    location: str | None
    case: str | None
    note: str | None
    verdict: str
    score: float | None
    thresholds: dict
    model_name: str
    model_version: str
    image_sha256: str
    image_width: int
    image_height: int
    quality: dict
    phash: int  # 64-bit DCT perceptual hash of the image as stored (inference.phash)
    # The catalogue product the photo was registered to (reference models; None otherwise and in records from
    # before it was kept). Hashed only when set, so older records verify as they did.
    product: str | None = None
    prev_hash: str = ""
    record_hash: str = ""
    outcomes: tuple[Outcome, ...] = field(default=())
    # When the retention policy deleted its original photo (the time of its Retirement entry); None while
    # the photo is kept. Not hashed: the Retirement entry, chained after the record, is what proves it.
    retired_at: str | None = None

    @property
    def outcome(self) -> str | None:
        """The latest outcome's label: later outcomes supersede earlier ones."""
        return self.outcomes[-1].label if self.outcomes else None

    def to_dict(self) -> dict:
        """JSON-ready; phash as 16 hex digits (JSON numbers lose bits above 2**53)."""
        data = asdict(self)
        data["phash"] = phash_hex(self.phash)
        data["outcomes"] = [asdict(o) for o in self.outcomes]
        return data


@dataclass(frozen=True)
class Retirement:
    """The retention policy deleted a record's original photo: appended to the chain before the file is
    deleted, so a photo gone with this entry is retired, and one gone without it is missing (tampering).
    The record itself (verdict, hashes, outcomes, fingerprints) stays."""

    seq: int
    id: str
    record_id: str  # the record whose original was retired
    image_sha256: str  # that record's photo, as the record hashed it
    created_at: str  # when it was retired
    reason: str  # e.g. "retention policy: originals older than 365 days"
    subject: str  # who ran the policy (e.g. cli:operator)
    prev_hash: str = ""
    record_hash: str = ""


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    checked: int  # chain entries (records and outcomes) found intact before the first bad one
    first_bad: dict | None  # {"seq", "id", "problem", "detail"}; problem is one of PROBLEMS
    head_seq: int  # the chain head as stored: publish it elsewhere to anchor the chain (see heads.py)
    head_hash: str
    anchors_checked: int = 0  # published heads (Head) found in the chain, intact
    retired: int = 0  # originals deleted by the retention policy, each with its Retirement entry intact
    not_covered: str = NOT_COVERED


@dataclass(frozen=True)
class Head:
    """The chain head as taken at one moment, to be kept outside the database (see heads.py): this store's
    chain then held `seq` entries, the newest with record_hash `hash`."""

    seq: int
    hash: str
    at: str  # UTC time it was taken, as utc_now()
    store: str  # the id of the evidence store it was taken from (32 hex digits, made when the store was)
    signature: str | None = None  # "hmac-sha256:<64 hex>" when taken with a key


@dataclass(frozen=True)
class Match:
    """Another record whose photo looks like this one's. distance: Hamming bits of the perceptual hashes for
    kind "near_duplicate" (0..12), cosine distance of the embeddings for kind "embedding" (0..2)."""

    record: Record
    distance: float
    kind: str  # near_duplicate | embedding


def utc_now() -> str:
    """Microseconds, always 27 characters, so timestamps compare correctly as text in both databases."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def utc_text(moment: str | datetime) -> str:
    """A since/until bound in the stored format; naive datetimes and strings are taken as UTC."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_id() -> str:
    """26 characters that sort by creation time (to the millisecond) and never collide in practice."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10), "big")
    return "".join(_CROCKFORD[(value >> shift) & 31] for shift in range(125, -1, -5))


def phash_hex(value: int) -> str:
    return f"{value:016x}"
