"""Evidence store: inspections and screenings kept as evidence (issue 6).

What was photographed (the original bytes, content-addressed and write-once), when, where, by whom and
which model said what, plus what investigations later found, in a tamper-evident hash chain over SQLite
(default) or PostgreSQL (several replicas). Torch-free, and knows nothing of HTTP.

    store = open_store(settings.database_url, settings.data_dir)
    record = store.record(image_bytes=data, kind="inspection", verdict=..., score=..., subject=...)
    # api/evidence_fields.py builds these arguments from the API's answers
"""

from evidence_store.errors import (
    EvidenceError,
    ForeignHead,
    InvalidInput,
    NotFound,
    OriginalChanged,
    Retired,
    SchemaTooNew,
    StoreUnavailable,
)
from evidence_store.fields import screen_line_fields
from evidence_store.opening import open_store
from evidence_store.records import (
    KINDS,
    NOT_COVERED,
    OUTCOME_LABELS,
    PROBLEMS,
    Head,
    Match,
    Outcome,
    Record,
    Retirement,
    VerifyReport,
)
from evidence_store.store import EvidenceStore

__all__ = [
    "EvidenceError", "EvidenceStore", "ForeignHead", "Head", "InvalidInput", "KINDS", "Match", "NOT_COVERED",
    "NotFound", "OUTCOME_LABELS", "OriginalChanged", "Outcome", "PROBLEMS", "Record", "Retired", "Retirement", "SchemaTooNew",
    "StoreUnavailable", "VerifyReport", "open_store", "screen_line_fields",
]
