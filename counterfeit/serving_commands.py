"""Commands that need only a model file: screen, evaluate, serve, keys. No torch."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from counterfeit.errors import CliError
from counterfeit.evidence_commands import open_evidence, recorded


def _predictor(model_path: Path | None):
    from inference.metadata import ModelFileError
    from inference.predictor import Predictor
    from inference.settings import Settings

    try:
        return Predictor(model_path or Settings().model_path)
    except ModelFileError as exc:
        raise CliError(str(exc)) from exc


def cmd_screen(args) -> int:
    from inference.screen import find_images, screen_files, write_jsonl

    try:
        files = find_images(args.paths)
    except FileNotFoundError as exc:
        raise CliError(str(exc)) from exc
    predictor = _predictor(args.model)
    records = screen_files(files, predictor)
    if args.record:
        records = recorded(records, predictor, open_evidence(None, create=True))
    if args.output is None:
        counts = write_jsonl(records, sys.stdout)
    else:
        counts = _write_file_atomically(args.output, records, len(files))
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "no images"
    print(f"screened {len(files)} files: {summary}", file=sys.stderr)
    return 0


def _write_file_atomically(path: Path, records, total: int) -> dict:
    from tqdm import tqdm

    from inference.screen import write_jsonl

    tmp = path.with_name(path.name + ".tmp")
    try:
        with tmp.open("w") as out:
            counts = write_jsonl(tqdm(records, total=total, unit="img", desc="screen"), out)
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise CliError(f"cannot write {path}: {exc.strerror or exc}") from exc
    return counts


def cmd_evaluate(args) -> int:
    from inference.evaluate import evaluate_folder, write_report
    from inference.layout import DataError

    if args.robustness or args.changes:
        return _evaluate_robustness(args)
    predictor = _predictor(args.model)
    try:
        metrics = evaluate_folder(args.data, predictor)
    except DataError as exc:
        raise CliError(str(exc)) from exc
    keys = ("n", "roc_auc", "pr_auc", "accuracy_decided", "inconclusive_rate", "ece")
    print("  ".join(f"{k} {metrics[k]:.4g}" for k in keys))
    for error in metrics["errors"]:
        print(f"skipped {error['path']}: {error['error']}", file=sys.stderr)
    if args.report:
        write_report(metrics, args.report)
        print(f"wrote {_html_report(metrics, args.report)}", file=sys.stderr)
    return 0


def _evaluate_robustness(args) -> int:
    from pydantic import ValidationError

    from inference.layout import DataError, list_labelled, resolve_labelled
    from inference.robustness import evaluate_robustness, format_table, parse_changes, write_report
    from inference.settings import Settings

    if not args.robustness:
        raise CliError("--changes needs --robustness")
    try:
        changes = parse_changes(args.changes)
        samples = list_labelled(resolve_labelled(args.data, "test"))
        settings = Settings()  # the served quality gate: COUNTERFEIT_QUALITY_* as the server reads them
    except ValidationError as exc:
        raise CliError(f"invalid setting: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}") from exc
    except (ValueError, DataError) as exc:
        raise CliError(str(exc)) from exc
    report = evaluate_robustness(samples, _predictor(args.model), settings, changes)
    print(format_table(report))
    if args.report:
        print(f"wrote {write_report(report, args.report)}", file=sys.stderr)
    return 0


def _html_report(metrics: dict, report_dir: Path) -> Path:
    from inference.report import write_html_report

    try:
        return write_html_report(metrics, report_dir)
    except ModuleNotFoundError as exc:
        if exc.name != "matplotlib":
            raise
        raise CliError("metrics.json is written; the plots need matplotlib: pip install "
                       "'counterfeit-detector[report]'") from exc


def cmd_serve(args) -> int:
    from pydantic import ValidationError

    from inference.metadata import ModelFileError
    from inference.server import serve
    from inference.settings import Settings

    overrides = {"model_path": args.model, "host": args.host, "port": args.port}
    try:
        serve(Settings(**{k: v for k, v in overrides.items() if v is not None}))
    except ValidationError as exc:
        raise CliError(f"invalid setting: {exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}") from exc
    except (ValueError, ModelFileError) as exc:
        raise CliError(str(exc)) from exc
    return 0


def cmd_keys_new(args) -> int:
    from inference.auth import key_entry_json, new_key

    key, entry = new_key(args.subject, args.role)
    print(f"API key for {args.subject} ({args.role}), shown once; hand it over securely:\n  {key}\n"
          f"Add this entry to the COUNTERFEIT_API_KEYS JSON list of the server:\n  {key_entry_json(entry)}")
    return 0
