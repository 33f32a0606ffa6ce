"""`counterfeit evidence …`: take and check published chain heads, verify, export, turn confirmed outcomes
into training data, and retire old originals (the retention policy)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from counterfeit.errors import CliError


def recorded(records, predictor, store):
    """Pass screening records through, keeping each screened image (scored, or retake) in the evidence log."""
    import getpass

    from evidence_store import screen_line_fields

    thresholds, subject = predictor.metadata.thresholds.to_dict(), f"cli:{getpass.getuser()}"
    try:
        for record in records:
            if "error" not in record:
                fields = screen_line_fields(record, thresholds, record["model"])
                stored = store.record(image_bytes=Path(record["path"]).read_bytes(), subject=subject, **fields)
                record = {**record, "record_id": stored.id}
            yield record
    finally:
        store.close()


def open_evidence(data_dir: Path | None, create: bool = False):
    """The configured evidence store (COUNTERFEIT_DATABASE_URL / COUNTERFEIT_DATA_DIR), or --data-dir's."""
    from api.settings import Settings
    from evidence_store import EvidenceError, open_store

    settings = Settings()
    folder = data_dir or settings.data_dir
    url = settings.database_url.get_secret_value() if settings.database_url else None
    if url is None and not create and not (folder / "evidence.sqlite3").is_file():
        raise CliError(f"no evidence log in {folder}: pass --data-dir or set COUNTERFEIT_DATA_DIR")
    try:
        return open_store(url, folder)
    except (EvidenceError, ValueError) as exc:
        raise CliError(str(exc)) from exc


def cmd_evidence_head(args) -> int:
    """Print the chain head as one JSON line to publish or file (signed with --key); or make a key."""
    from evidence_store import heads

    if args.new_key:
        _refused_as_cli_error(heads.new_key, args.new_key)
        print(f"wrote a new head-signing key to {args.new_key} (readable by you only): keep it off the evidence "
              "server; sign with `counterfeit evidence head --key FILE`", file=sys.stderr)
        return 0
    key = _refused_as_cli_error(heads.read_key, args.key) if args.key else None
    store = open_evidence(args.data_dir)
    try:
        head = store.head()
    finally:
        store.close()
    print(heads.head_line(heads.signed(head, key) if key else head))
    return 0


def cmd_evidence_verify(args) -> int:
    from evidence_store import NOT_COVERED, heads

    anchored, key = _anchored_heads(args.head or [], args.key)
    forged = key and heads.first_bad_signature(anchored, key)
    if forged:
        print(f"BAD SIGNATURE: {forged}")
        return 1
    store = open_evidence(args.data_dir)
    try:
        report = _refused_as_cli_error(store.verify, images=not args.no_images,
                                       anchors=[head for _, head in anchored])
    finally:
        store.close()
    print(f"not covered: {NOT_COVERED}", file=sys.stderr)
    if report.ok:
        retired = f"; {report.retired} originals retired by the retention policy" if report.retired else ""
        print(f"ok: {report.checked} entries intact{retired}; head seq {report.head_seq} hash {report.head_hash}; "
              + (f"{report.anchors_checked} anchored heads found intact" if anchored else
                 "unanchored (no --head): removing the newest entries and rewinding the stored head would not show"))
        return 0
    bad = report.first_bad
    print(f"ALTERED: entry seq {bad['seq']} (id {bad['id']}): {bad['problem']}: {bad.get('detail', '')}; "
          f"{report.checked} entries before it are intact")
    return 1


def _anchored_heads(paths: list[Path], key_path: Path | None) -> tuple[list, bytes | None]:
    """The heads of every --head file, each with where it was read; and the --key to check them with."""
    from evidence_store import heads

    if key_path and not paths:
        raise CliError("--key checks the signatures of published heads: pass them with --head HEADS.jsonl")
    anchored = [pair for path in paths for pair in _refused_as_cli_error(heads.read_heads, path)]
    return anchored, _refused_as_cli_error(heads.read_key, key_path) if key_path else None


def _refused_as_cli_error(call, *args, **kwargs):
    """call(...), with input the evidence library refuses (a bad head, key or file) as one CLI error line."""
    from evidence_store import InvalidInput

    try:
        return call(*args, **kwargs)
    except InvalidInput as exc:
        raise CliError(str(exc)) from exc


def cmd_evidence_export(args) -> int:
    """The log verified while it is exported (issue 24: a damaged store was exported without a word): the
    verification is the export's first line, a warning on stderr, and exit 1 unless --allow-damaged."""
    store = open_evidence(args.data_dir)
    try:
        report = _refused_as_cli_error(store.verify, images=args.with_images is not None)
        header = export_header(report, args.format)
        if args.output is None:
            sys.stdout.write(header)
            counts = store.export(sys.stdout, since=args.since, format=args.format, with_images=args.with_images)
        else:
            with args.output.open("w") as out:
                out.write(header)
                counts = store.export(out, since=args.since, format=args.format, with_images=args.with_images)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    finally:
        store.close()
    print("exported " + ", ".join(f"{n} {k}" for k, n in counts.items()), file=sys.stderr)
    if report.ok:
        return 0
    bad = report.first_bad
    print(f"warning: the log is DAMAGED: entry seq {bad['seq']} (id {bad['id']}): {bad['problem']}; the export "
          "says so in its first line" + ("" if args.allow_damaged else " (--allow-damaged to exit 0)"), file=sys.stderr)
    return 0 if args.allow_damaged else 1


def export_header(report, format: str) -> str:
    """The export's first line: the verification result. JSON lines: an object without `seq` (every entry
    has one); CSV: a line starting with '#', before the column names."""
    verification = {"verified": "intact" if report.ok else "damaged", "entries_checked": report.checked,
                    "head_seq": report.head_seq, "head_hash": report.head_hash, "first_bad": report.first_bad}
    if format == "jsonl":
        return json.dumps({"counterfeit_evidence_export": verification}, sort_keys=True) + "\n"
    bad = report.first_bad
    state = "intact" if report.ok else f"DAMAGED at entry seq {bad['seq']} ({bad['problem']})"
    return (f"# counterfeit evidence export; verification: {state}; {report.checked} entries checked; "
            f"head seq {report.head_seq} hash {report.head_hash}\n")


def cmd_evidence_to_dataset(args) -> int:
    if args.out.exists() and any(args.out.iterdir()):
        raise CliError(f"{args.out} already exists and is not empty: choose a new folder")
    store = open_evidence(args.data_dir)
    try:
        counts = store.to_dataset(args.out, since=args.since, seed=args.seed)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    finally:
        store.close()
    print(json.dumps(counts, indent=2))
    print(f"next: counterfeit data check {args.out} && counterfeit train {args.out} --out RUN", file=sys.stderr)
    return 0


def cmd_evidence_retire(args) -> int:
    """The retention policy: delete the originals of records older than --older-than-days (default: the
    evidence_retain_originals_days setting), each deletion a chain entry; records, verdicts and hashes stay."""
    import getpass

    from api.settings import Settings

    days = args.older_than_days if args.older_than_days is not None else Settings().evidence_retain_originals_days
    if days is None:
        raise CliError("no retention period: pass --older-than-days N or set COUNTERFEIT_EVIDENCE_RETAIN_ORIGINALS_DAYS")
    store = open_evidence(args.data_dir)
    try:
        run = _refused_as_cli_error(store.retire_originals, days, dry_run=args.dry_run, subject=f"cli:{getpass.getuser()}")
    finally:
        store.close()
    verb = "would retire" if run.dry_run else "retired"
    print(f"{verb} the originals of {run.records} records created before {run.before} (older than {days} days): "
          f"{run.files} photo files, {run.bytes} bytes ({run.bytes / 1e6:.1f} MB) freed"
          + (" (dry run: nothing changed)" if run.dry_run else ""))
    return 0
