"""Evidence store: inspections and screenings kept as evidence (issue 6).

What was photographed (the original bytes, content-addressed and write-once), when, where, by whom and
which model said what, plus what investigations later found, in a tamper-evident hash chain over SQLite
(default) or PostgreSQL (several replicas). Torch-free, like all of inference/.

    store = open_store(settings.database_url, settings.data_dir)
    record = store.record(image_bytes=data, **inspection_fields(inspection), subject=principal.subject)
"""

from evidence_store.errors import (
    EvidenceError,
    ForeignHead,
    InvalidInput,
    NotFound,
    OriginalChanged,
    SchemaTooNew,
    StoreUnavailable,
)
from evidence_store.fields import inspection_fields, screen_line_fields, screening_fields
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
    VerifyReport,
)
from evidence_store.store import EvidenceStore

__all__ = [
    "EvidenceError", "EvidenceStore", "ForeignHead", "Head", "InvalidInput", "KINDS", "Match", "NOT_COVERED",
    "NotFound", "OUTCOME_LABELS", "OriginalChanged", "Outcome", "PROBLEMS", "Record", "SchemaTooNew",
    "StoreUnavailable", "VerifyReport", "inspection_fields", "open_store", "screen_line_fields", "screening_fields",
]
