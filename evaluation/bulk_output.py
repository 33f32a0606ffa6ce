"""Where bulk screening writes: JSON lines appended to a file, or a folder of Parquet part files; both
resumable. Reopened, an output says which ids it already holds for a model version, so a rerun screens only
the rest, and a kill (even kill -9) loses at most the rows not yet written.

- JSON lines: rows are appended and flushed a batch at a time. A kill mid-write leaves a torn last line,
  which is cut off before appending again.
- Parquet: each part file is written to a temporary name and renamed, so a part is whole or absent; a kill
  loses at most the rows buffered for the next part. Leftover temporary files are removed on reopening."""

from __future__ import annotations

import json
import os
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from evaluation.bulk import COLUMNS
from evaluation.manifest import require_pyarrow
from evaluation.screen import outcome

OUTPUT_SUFFIXES = (".jsonl", ".ndjson", ".parquet")
PART_ROWS = 1024  # rows per Parquet part: what a kill may lose at most, and about 100 kB per part
STRING_COLUMNS = tuple(c for c in COLUMNS if c != "score")


class OutputError(ValueError):
    """The output cannot be resumed or written (not one of ours, or unwritable)."""


def parquet_schema():
    import pyarrow as pa

    return pa.schema([(c, pa.float64() if c == "score" else pa.string()) for c in COLUMNS])


@contextmanager
def output_lock(path: Path | None):
    """Hold an exclusive lock on `--output PATH` for the run: a second run on the same output (a cron
    relaunch overlapping a slow run) is refused with OutputError, rather than writing every id twice. The
    lock is the kernel's (flock on PATH's hidden .lock file beside it): it is released when the process
    ends, however it ends, so a kill -9 leaves nothing to clean up."""
    if path is None:
        yield
        return
    import fcntl

    path = Path(path)
    if not path.parent.is_dir():
        raise OutputError(f"no such folder for --output: {path.parent}")
    lock = path.with_name(f".{path.name}.lock")
    with open(lock, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputError(f"another screening is writing {path} (it holds {lock.name}): wait for it to finish, "
                              "or give another --output") from None
        yield


def open_output(path: Path | None, part_rows: int = PART_ROWS):
    """The output for `--output PATH` (by suffix), or JSON lines on stdout for None (not resumable)."""
    if path is None:
        return StreamOutput(sys.stdout)
    suffix = Path(path).suffix.lower()
    if suffix == ".parquet":
        return ParquetOutput(Path(path), part_rows)
    if suffix in (".jsonl", ".ndjson"):
        return JsonlOutput(Path(path))
    raise OutputError(f"--output {path}: name a .jsonl or .parquet output (rows as JSON lines, or a folder of "
                      "Parquet part files)")


class StreamOutput:
    def __init__(self, out: TextIO) -> None:
        self.out = out

    def done_ids(self, version: str) -> set[str]:
        return set()

    def write(self, rows: list[dict]) -> None:
        self.out.write("".join(json.dumps(row) + "\n" for row in rows))
        self.out.flush()

    def close(self) -> None:
        pass


class JsonlOutput(StreamOutput):
    def __init__(self, path: Path) -> None:
        self.path = path
        self.out = None

    def done_ids(self, version: str) -> set[str]:
        """Ids already written for this model version; a torn last line is cut off first."""
        if not self.path.exists():
            return set()
        done, good_end = set(), 0
        with self.path.open("rb") as handle:
            for number, line in enumerate(handle, start=1):
                row = _parsed(line)
                if row is None and line.endswith(b"\n"):
                    raise OutputError(f"{self.path} line {number} is not a screening row: not an output of "
                                      "`counterfeit screen MANIFEST`? Choose another --output")
                if row is None:
                    break  # a torn last line: the run was killed while writing it
                good_end += len(line)
                if row.get("model_version") == version:
                    done.add(row["id"])
        _truncate(self.path, good_end)
        return done

    def write(self, rows: list[dict]) -> None:
        if self.out is None:
            self.out = _open_for_append(self.path)
        super().write(rows)

    def close(self) -> None:
        if self.out is not None:
            self.out.close()


def _parsed(line: bytes) -> dict | None:
    """The row on a complete line, or None for a torn or foreign one."""
    if not line.endswith(b"\n"):
        return None
    try:
        row = json.loads(line)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return row if isinstance(row, dict) and "id" in row else None


def _truncate(path: Path, size: int) -> None:
    if path.stat().st_size != size:
        with path.open("r+b") as handle:
            handle.truncate(size)


def _open_for_append(path: Path) -> TextIO:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return path.open("a", encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc


class ParquetOutput:
    def __init__(self, folder: Path, part_rows: int = PART_ROWS) -> None:
        self.pq = require_pyarrow()
        self.folder, self.part_rows = folder, part_rows
        self.buffer: list[dict] = []

    def done_ids(self, version: str) -> set[str]:
        """Ids in the part files for this model version; leftover temporary files are removed."""
        if self.folder.exists() and not self.folder.is_dir():
            raise OutputError(f"{self.folder} is a file; a Parquet output is a folder of part files")
        done: set[str] = set()
        for tmp in self.folder.glob(".*.tmp"):
            tmp.unlink()
        for part in sorted(self.folder.glob("*.parquet")):
            table = self.pq.read_table(part, columns=["id", "model_version"])
            ids, versions = table.column("id").to_pylist(), table.column("model_version").to_pylist()
            done.update(i for i, v in zip(ids, versions) if v == version)
        return done

    def write(self, rows: list[dict]) -> None:
        self.buffer += rows
        while len(self.buffer) >= self.part_rows:
            self._write_part(self.buffer[: self.part_rows])
            self.buffer = self.buffer[self.part_rows :]

    def close(self) -> None:
        if self.buffer:
            self._write_part(self.buffer)
            self.buffer = []

    def _write_part(self, rows: list[dict]) -> None:
        import pyarrow as pa

        self.folder.mkdir(parents=True, exist_ok=True)
        # time first, so parts list in the order written; the random tail keeps parallel writers apart
        name = f"part-{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.parquet"
        tmp = self.folder / f".{name}.tmp"  # hidden from readers of *.parquet until whole
        try:
            self.pq.write_table(pa.Table.from_pylist(rows, schema=parquet_schema()), tmp)
            os.replace(tmp, self.folder / name)
        except OSError as exc:
            raise OutputError(f"cannot write {self.folder}: {exc.strerror or exc}") from exc
        finally:
            tmp.unlink(missing_ok=True)


def parquet_counts(folder: Path, version: str, exclude: set[str]) -> dict[str, int]:
    """Rows per verdict (and 'error') in a Parquet output for one model version, leaving out the ids in
    `exclude` (those there before this run)."""
    pq = require_pyarrow()
    counts: dict[str, int] = {}
    for part in sorted(Path(folder).glob("*.parquet")):
        table = pq.read_table(part, columns=["id", "model_version", "verdict", "error"]).to_pylist()
        for row in table:
            if row["model_version"] == version and row["id"] not in exclude:
                counts[outcome(row)] = counts.get(outcome(row), 0) + 1
    return counts
