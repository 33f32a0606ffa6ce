"""`counterfeit`: one entry point, thin subcommands over the training and inference libraries.

Serving subcommands never import torch; training subcommands import it only when run. Bad arguments
exit 2 with one line on stderr.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from pathlib import Path

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """A user-facing error: printed as one line, exit code 2."""


class Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse prints usage + message; we print one actionable line
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_synth(sub) -> None:
    p = sub.add_parser("synth", help="write a synthetic genuine/counterfeit packaging dataset")
    p.add_argument("out", type=Path, help="folder to create (must be new or empty)")
    p.add_argument("--seed", type=int, default=0, help="random seed: the same seed writes the same files")
    p.add_argument("--products", type=int, default=3, help="number of product lines (default 3)")
    p.add_argument("--train", type=int, default=480, help="train images, both classes together (default 480)")
    p.add_argument("--val", type=int, default=160, help="val images (default 160)")
    p.add_argument("--test", type=int, default=160, help="test images (default 160)")
    p.add_argument("--holdout", default="", help="defect kinds kept out of train/val, comma-separated; "
                   "their counterfeits go to a test-unseen/ split")
    p.set_defaults(run=cmd_synth)


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train a model on DATA and export RUN/model.onnx")
    p.add_argument("data", type=Path, nargs="?", help="DATA folder with train/ and val/ (and optionally test/)")
    p.add_argument("--out", type=Path, help="RUN folder for checkpoints, metrics, model.onnx (required)")
    p.add_argument("--resume", type=Path, metavar="RUN", help="continue RUN from its last completed epoch")
    p.add_argument("--config", type=Path, help="TOML file with TrainConfig fields; flags override it")
    p.add_argument("--arch", help="torchvision architecture (default mobilenet_v3_small)")
    p.add_argument("--weights", help="none | PATH to a local state_dict | torchvision weights name (needs internet)")
    p.add_argument("--epochs", type=int, help="epochs (default 10); with --resume, the new total")
    p.add_argument("--patience", type=int, help="stop after this many epochs without val improvement (0: off)")
    p.add_argument("--image-size", help="model input WIDTHxHEIGHT in pixels (default 320x240)")
    p.add_argument("--batch-size", type=int, help="images per step (default 16)")
    p.add_argument("--lr", type=float, help="learning rate (default 1e-3)")
    p.add_argument("--target-precision", type=float, help="precision each decided verdict must reach on val (0.99)")
    p.add_argument("--workers", type=int, help="DataLoader worker processes (default 0)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default auto: a GPU when present")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--allow-data-errors", action="store_true",
                   help="train even when `counterfeit data check` finds errors (leaks, broken files, shortcuts)")
    p.set_defaults(run=cmd_train)


def _add_export(sub) -> None:
    p = sub.add_parser("export", help="export a checkpoint to a verified, self-describing ONNX file")
    p.add_argument("checkpoint", type=Path, help="RUN/checkpoint.pt")
    p.add_argument("--out", type=Path, required=True, help="MODEL.onnx to write")
    p.add_argument("--images", type=Path, help="images to verify on (default: the run's DATA/val)")
    p.set_defaults(run=cmd_export)


def _add_screen(sub) -> None:
    p = sub.add_parser("screen", help="score image files and folders; one JSON line per image")
    p.add_argument("paths", nargs="+", type=Path, help="image files and folders (searched recursively)")
    p.add_argument("--model", type=Path, help="MODEL.onnx (default: COUNTERFEIT_MODEL_PATH or the demo model)")
    p.add_argument("--output", type=Path, help="write JSON lines to this file instead of stdout")
    p.add_argument("--record", action="store_true", help="also keep every scored image in the evidence log "
                   "(COUNTERFEIT_DATA_DIR / COUNTERFEIT_DATABASE_URL)")
    p.set_defaults(run=cmd_screen)


def _add_serve(sub) -> None:
    p = sub.add_parser("serve", help="serve the HTTP API and web page")
    p.add_argument("--model", type=Path, help="MODEL.onnx (default: COUNTERFEIT_MODEL_PATH or the demo model)")
    p.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (default 8000)")
    p.set_defaults(run=cmd_serve)


def _add_calibrate(sub) -> None:
    p = sub.add_parser("calibrate", help="refit temperature and thresholds of a model file on labelled photos")
    p.add_argument("model", type=Path, help="MODEL.onnx to recalibrate (left unchanged)")
    p.add_argument("data", type=Path, help="a folder with genuine/ and counterfeit/ (or a DATA root: its val/)")
    p.add_argument("--out", type=Path, required=True, help="NEW.onnx to write")
    p.add_argument("--target-precision", type=float, help="precision each decided verdict must reach "
                   "(default: the model's training target)")
    p.set_defaults(run=cmd_calibrate)


def _add_data(sub) -> None:
    data = sub.add_parser("data", help="data tools: `counterfeit data check DATA`")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND", parser_class=Parser)
    p = data_sub.add_parser("check", help="audit a DATA folder: broken files, duplicates and leaks, balance, "
                            "shortcuts (exit 0 clean, 1 errors, 2 bad arguments)")
    p.add_argument("data", type=Path, help="DATA folder with train/ and val/ (and optionally test/)")
    p.add_argument("--report", type=Path, help="also write DIR/audit.json and DIR/report.html")
    p.add_argument("--json", action="store_true", help="print the findings as JSON instead of text")
    p.add_argument("--strict", action="store_true", help="warnings count as errors for the exit code")
    p.set_defaults(run=cmd_data_check)


def _add_evidence(sub) -> None:
    evidence = sub.add_parser("evidence", help="the evidence log: verify, export, to-dataset")
    actions = evidence.add_subparsers(dest="evidence_command", required=True, metavar="COMMAND", parser_class=Parser)
    p = actions.add_parser("verify", help="recompute the hash chain and the photos' hashes (exit 1 if altered)")
    p.add_argument("--no-images", action="store_true", help="check the chain only, not the stored photos")
    p.set_defaults(run=cmd_evidence_verify)
    p = actions.add_parser("export", help="write the log as CSV or JSON lines")
    p.add_argument("--since", help="UTC ISO time, e.g. 2026-11-01T00:00:00Z")
    p.add_argument("--format", choices=["csv", "jsonl"], default="csv")
    p.add_argument("--with-images", type=Path, metavar="DIR", help="also write the photos (metadata removed) here")
    p.add_argument("--output", type=Path, help="file to write (default: stdout)")
    p.set_defaults(run=cmd_evidence_export)
    p = actions.add_parser("to-dataset", help="confirmed outcomes as a training DATA folder, split by case")
    p.add_argument("out", type=Path, help="DATA folder to create")
    p.add_argument("--since", help="UTC ISO time")
    p.add_argument("--seed", type=int, default=0, help="seed of the case-to-split assignment")
    p.set_defaults(run=cmd_evidence_to_dataset)
    for action in actions.choices.values():
        action.add_argument("--data-dir", type=Path, help="evidence folder (default: COUNTERFEIT_DATA_DIR or ./evidence)")


def _add_keys(sub) -> None:
    keys = sub.add_parser("keys", help="API keys: `counterfeit keys new --subject S --role R`")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND", parser_class=Parser)
    p = keys_sub.add_parser("new", help="make a new API key and the hashed entry the server stores")
    p.add_argument("--subject", required=True, help="who will hold the key (a person, team or device)")
    p.add_argument("--role", required=True, choices=["inspector", "screener", "admin"], help="what it may call")
    p.set_defaults(run=cmd_keys_new)


def _add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="measure a model file on a labelled folder (default: DATA/test)")
    p.add_argument("data", type=Path, help="DATA root (its test/ is used) or a folder with genuine/ and counterfeit/")
    p.add_argument("--model", type=Path, help="MODEL.onnx (default: COUNTERFEIT_MODEL_PATH or the demo model)")
    p.add_argument("--report", type=Path, help="write DIR/metrics.json, DIR/report.html and its PNG plots")
    p.set_defaults(run=cmd_evaluate)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="counterfeit", description="Tell genuine products from counterfeits by their photos.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for add in (_add_synth, _add_data, _add_train, _add_export, _add_calibrate, _add_evaluate, _add_screen,
                _add_serve, _add_keys, _add_evidence):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except CliError as exc:
        print(f"counterfeit {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"counterfeit {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _training_module(name: str):
    """Import a training module, or explain how to install the training extra."""
    try:
        return importlib.import_module(f"training.{name}")
    except ModuleNotFoundError as exc:
        if exc.name in ("torch", "torchvision", "onnx", "matplotlib"):
            raise CliError(f"this command needs {exc.name}: pip install 'counterfeit-detector[train]'") from exc
        raise


def cmd_synth(args) -> int:
    synth = _training_module("synth")
    holdout = [k.strip() for k in args.holdout.split(",") if k.strip()]
    try:
        summary = synth.write_dataset(args.out, seed=args.seed, products=args.products, n_train=args.train,
                                      n_val=args.val, n_test=args.test, holdout=holdout)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    counts = ", ".join(f"{split} {sum(c.values())}" for split, c in summary["counts"].items())
    print(f"wrote {args.out}: {counts}", file=sys.stderr)
    return 0


def train_config_from_args(args, config_module):
    """TrainConfig from --config (if any), then explicit flags on top."""
    base = config_module.TrainConfig.from_toml(args.config).to_dict() if args.config else {}
    flags = {"arch": args.arch, "weights": args.weights, "epochs": args.epochs, "batch_size": args.batch_size,
             "lr": args.lr, "target_precision": args.target_precision, "workers": args.workers,
             "device": args.device, "seed": args.seed, "patience": args.patience}
    base.update({k: v for k, v in flags.items() if v is not None})
    if args.image_size:
        base["image_size"] = config_module.parse_image_size(args.image_size)
    base.update(data=str(args.data), out=str(args.out))
    return config_module.TrainConfig.from_dict(base)


def print_findings(findings, stream=None) -> None:
    stream = stream or sys.stderr  # looked up per call: tests and pipes may swap sys.stderr
    for finding in findings:
        print(f"{finding.severity}: [{finding.check}] {finding.message}", file=stream)
        for path in finding.files[:10]:
            print(f"    {path}", file=stream)
        if len(finding.files) > 10:
            print(f"    ... and {len(finding.files) - 10} more", file=stream)


def audit_before_training(data: Path, allow_errors: bool) -> dict:
    """The data check that opens every training run; -> a summary kept in the run's config."""
    from training.audit import audit

    result = audit(data, progress=os.environ.get("RANK", "0") == "0")
    print_findings(result.errors() + result.warnings())
    if result.errors() and not allow_errors:
        raise CliError(f"the data check found {len(result.errors())} error(s) in {data} (listed above): fix "
                       "them, or pass --allow-data-errors to train anyway")
    shortcut = result.stats.get("shortcut", {})
    return {"errors": len(result.errors()), "warnings": len(result.warnings()),
            "shortcut_auc": shortcut.get("auc")}


def cmd_data_check(args) -> int:
    audit = _training_module("audit")
    from inference.layout import DataError

    try:
        result = audit.audit(args.data, progress=not args.json)
    except DataError as exc:
        raise CliError(str(exc)) from exc
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, allow_nan=False))
    else:
        print_findings(result.findings, sys.stdout)
        print(f"{len(result.errors())} error(s), {len(result.warnings())} warning(s) in {args.data}")
    if args.report:
        audit.write_report(result, args.report)
        print(f"wrote {args.report}/report.html", file=sys.stderr)
    return audit.exit_code(result, args.strict)


def cmd_train(args) -> int:
    config_module, train = _training_module("config"), _training_module("train")
    if args.resume is None and (args.data is None or args.out is None):
        raise CliError("give DATA and --out RUN to train, or --resume RUN to continue a run")
    args.out = args.out or args.resume
    try:
        if args.resume:
            config = train.resume_config(args.resume, args.epochs)
        else:
            config = train_config_from_args(args, config_module)
            config.extra["data_audit"] = audit_before_training(args.data, args.allow_data_errors)
        summary = train.fit(config, resume=args.resume is not None)
    except KeyboardInterrupt:
        print(f"counterfeit train: interrupted; the last completed epoch is in {args.out}/last.pt and the best "
              f"in {args.out}/checkpoint.pt (export it with: counterfeit export {args.out}/checkpoint.pt "
              f"--out MODEL.onnx)", file=sys.stderr)
        return EXIT_INTERRUPTED
    except ValueError as exc:  # DataError, WeightsError, config errors: all say what to fix
        raise CliError(str(exc)) from exc
    if "model" not in summary:  # a non-zero rank of a torchrun job: rank 0 reports
        return 0
    best = summary["best"]
    print(f"best epoch {best['epoch']}: val ROC-AUC {best['roc_auc']:.4f}, accuracy {best['accuracy']:.3f}; "
          f"wrote {summary['model']} (version {summary['version']})", file=sys.stderr)
    return 0


def cmd_export(args) -> int:
    export = _training_module("export")
    try:
        metadata = export.export_checkpoint(args.checkpoint, args.out, args.images)
    except (ValueError, export.ExportError) as exc:
        raise CliError(str(exc)) from exc
    print(f"wrote {args.out} (version {metadata.version}), verified against torch", file=sys.stderr)
    return 0


def cmd_calibrate(args) -> int:
    calibrate = _training_module("calibrate")
    from inference.metadata import ModelFileError

    if args.target_precision is not None and not 0.5 <= args.target_precision < 1:
        raise CliError(f"--target-precision must be in [0.5, 1), got {args.target_precision}")
    try:
        meta = calibrate.recalibrate(args.model, args.data, args.out, args.target_precision)
    except (ValueError, ModelFileError) as exc:
        raise CliError(str(exc)) from exc
    print(f"wrote {args.out} (version {meta.version}): temperature {meta.temperature:.3f}, "
          f"thresholds low {meta.thresholds.low:.4f} high {meta.thresholds.high:.4f}", file=sys.stderr)
    return 0


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
        records = _recorded(records, predictor, _open_evidence(None, create=True))
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


def _html_report(metrics: dict, report_dir: Path) -> Path:
    from inference.report import write_html_report

    try:
        return write_html_report(metrics, report_dir)
    except ModuleNotFoundError as exc:
        if exc.name != "matplotlib":
            raise
        raise CliError(f"metrics.json is written; the plots need matplotlib: pip install "
                       f"'counterfeit-detector[report]'") from exc


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


def _recorded(records, predictor, store):
    """Pass screening records through, keeping each scored image in the evidence log on the way."""
    import getpass

    meta, subject = predictor.metadata, f"cli:{getpass.getuser()}"
    thresholds = {"low": meta.thresholds.low, "high": meta.thresholds.high}
    try:
        for record in records:
            if "error" not in record:
                stored = store.record(image_bytes=Path(record["path"]).read_bytes(), kind="screening",
                                      external_id=record["path"], subject=subject, verdict=record["verdict"],
                                      score=record["score"], thresholds=thresholds, model_name=meta.name,
                                      model_version=meta.version, quality={})
                record = {**record, "record_id": stored.id}
            yield record
    finally:
        store.close()


def _open_evidence(data_dir: Path | None, create: bool = False):
    """The configured evidence store (COUNTERFEIT_DATABASE_URL / COUNTERFEIT_DATA_DIR), or --data-dir's."""
    from inference.evidence import EvidenceError, open_store
    from inference.settings import Settings

    settings = Settings()
    folder = data_dir or settings.data_dir
    url = settings.database_url.get_secret_value() if settings.database_url else None
    if url is None and not create and not (folder / "evidence.sqlite3").is_file():
        raise CliError(f"no evidence log in {folder}: pass --data-dir or set COUNTERFEIT_DATA_DIR")
    try:
        return open_store(url, folder)
    except (EvidenceError, ValueError) as exc:
        raise CliError(str(exc)) from exc


def cmd_evidence_verify(args) -> int:
    store = _open_evidence(args.data_dir)
    report = store.verify(images=not args.no_images)
    store.close()
    if report.ok:
        print(f"ok: {report.checked} entries intact; head seq {report.head_seq} hash {report.head_hash}")
        return 0
    bad = report.first_bad
    print(f"ALTERED: entry seq {bad['seq']} (id {bad['id']}): {bad['problem']}: {bad.get('detail', '')}; "
          f"{report.checked} entries before it are intact")
    return 1


def cmd_evidence_export(args) -> int:
    store = _open_evidence(args.data_dir)
    try:
        if args.output is None:
            counts = store.export(sys.stdout, since=args.since, format=args.format, with_images=args.with_images)
        else:
            with args.output.open("w") as out:
                counts = store.export(out, since=args.since, format=args.format, with_images=args.with_images)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    finally:
        store.close()
    print("exported " + ", ".join(f"{n} {k}" for k, n in counts.items()), file=sys.stderr)
    return 0


def cmd_evidence_to_dataset(args) -> int:
    if args.out.exists() and any(args.out.iterdir()):
        raise CliError(f"{args.out} already exists and is not empty: choose a new folder")
    store = _open_evidence(args.data_dir)
    try:
        counts = store.to_dataset(args.out, since=args.since, seed=args.seed)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    finally:
        store.close()
    print(json.dumps(counts, indent=2))
    print(f"next: counterfeit data check {args.out} && counterfeit train {args.out} --out RUN", file=sys.stderr)
    return 0


def cmd_keys_new(args) -> int:
    from inference.auth import key_entry_json, new_key

    key, entry = new_key(args.subject, args.role)
    print(f"API key for {args.subject} ({args.role}), shown once; hand it over securely:\n  {key}\n"
          f"Add this entry to the COUNTERFEIT_API_KEYS JSON list of the server:\n  {key_entry_json(entry)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
