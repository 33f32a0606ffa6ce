"""The retention policy: after a set age a record's original photo is deleted; the record itself stays.

A port keeps about a year of inspections, and the originals are most of the disk. EvidenceStore.
retire_originals(days) deletes the originals of records older than that, in this order, so that nothing is
half-written:
1. under the chain lock, one transaction per 500 records appends a Retirement entry per record (the record's
   id, its photo's SHA-256, the time, the policy and who ran it) and commits;
2. then, under the chain lock again (no record of the same photo can be appended meanwhile), each retired
   photo that no live (unretired) record still refers to is deleted: originals are content-addressed, and
   two records may share one.
A crash between the two leaves retirement entries whose photos are still on disk: harmless (verify checks
them as it checks any photo), and the next run deletes them, as step 2 looks at every retired photo still
on disk. verify counts a photo gone with its Retirement entry as retired; gone without one, it is still
reported missing.

This module holds the SQL and the arithmetic; the store runs them in its transactions.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from evidence_store.db import Tx
from evidence_store.errors import InvalidInput
from evidence_store.records import utc_text

# Records whose original is still kept: no Retirement entry names them.
_LIVE = "NOT EXISTS (SELECT 1 FROM retirements t WHERE t.record_id = r.id)"
CANDIDATES = ("SELECT seq, id, image_sha256 FROM records r WHERE seq > ? AND seq <= ? AND created_at < ? AND "
              + _LIVE + " ORDER BY seq LIMIT ?")
MAX_DAYS = 365 * 100  # a century: anything longer is a typo, and the cutoff must stay after year 1


@dataclass(frozen=True)
class RetirementRun:
    """What one run of the policy did (or, in a dry run, would do)."""

    before: str  # records created before this UTC time are retired
    records: int  # records whose original was retired now
    files: int  # photo files deleted: shared photos count once, and only once no live record needs them
    bytes: int  # bytes those files took on disk
    dry_run: bool = False


def checked_days(days) -> int:
    """The retention period in whole days, 1..MAX_DAYS; InvalidInput otherwise."""
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DAYS:
        raise InvalidInput(f"the retention period must be a whole number of days from 1 to {MAX_DAYS}, got {days!r}")
    return days


def cutoff(days: int, now: datetime | None = None) -> str:
    """The creation time before which records are retired, in the stored format."""
    return utc_text((now or datetime.now(timezone.utc)) - timedelta(days=checked_days(days)))


def reason(days: int) -> str:
    return f"retention policy: originals older than {days} days"


def last_seq_before(tx: Tx, before: str) -> int:
    """The newest record created before `before` (0 if none): retiring never scans the younger ones."""
    row = tx.one("SELECT MAX(seq) FROM records WHERE created_at < ?", (before,))
    return row[0] or 0


def pending(tx: Tx, before: str) -> tuple[int, set[str]]:
    """(how many records a run would retire now, the photos they show)."""
    rows = tx.all("SELECT image_sha256, COUNT(*) FROM records r WHERE created_at < ? AND " + _LIVE
                  + " GROUP BY image_sha256", (before,))
    return sum(count for _, count in rows), {sha256 for sha256, _ in rows}


def retired_photos(tx: Tx) -> list[str]:
    return [sha256 for (sha256,) in tx.all("SELECT DISTINCT image_sha256 FROM retirements")]


def retired_records(tx: Tx) -> set[str]:
    """The ids of every record whose original was retired."""
    return {record_id for (record_id,) in tx.all("SELECT record_id FROM retirements")}


def retired_at(tx: Tx, record_ids: list[str]) -> dict[str, str]:
    """{record id: when its original was retired} for those of these records that were."""
    marks = ", ".join("?" * len(record_ids))
    return dict(tx.all(f"SELECT record_id, created_at FROM retirements WHERE record_id IN ({marks})",
                       tuple(record_ids)))


def live_photos(tx: Tx, hashes: list[str], staying_from: str | None = None) -> set[str]:
    """Those of these photos that a live record still shows; with staying_from, only records created then
    or later count as live (a dry run: the older ones would be retired first)."""
    sql = (f"SELECT DISTINCT image_sha256 FROM records r WHERE image_sha256 IN ({', '.join('?' * len(hashes))}) "
           "AND " + _LIVE)
    params = tuple(hashes)
    if staying_from is not None:
        sql, params = sql + " AND created_at >= ?", (*params, staying_from)
    return {sha256 for (sha256,) in tx.all(sql, params)}


def photo_retired_at(tx: Tx, sha256: str) -> str | None:
    """When this photo was last retired, if every record showing it has been; None if any still lives."""
    if live_photos(tx, [sha256]):
        return None
    return tx.one("SELECT MAX(created_at) FROM retirements WHERE image_sha256 = ?", (sha256,))[0]


def retired_message(what: str, when: str) -> str:
    return (f"{what} was retired on {when[:10]} by the retention policy: the photo was deleted; the record, its "
            "verdict, outcomes and hashes are kept.")
