"""`counterfeit`: one entry point, thin subcommands over the training and inference libraries.

Serving subcommands never import torch; training subcommands import it only when run. Bad arguments
exit 2 with one line on stderr.
"""

from __future__ import annotations

import argparse
import sys
from importlib import metadata
from pathlib import Path

from counterfeit import __version__
from counterfeit.catalogue_commands import cmd_catalogue_add, cmd_catalogue_list, cmd_catalogue_remove
from counterfeit.errors import EXIT_INTERRUPTED, EXIT_USAGE, CliError
from counterfeit.evidence_commands import (
    cmd_evidence_export,
    cmd_evidence_head,
    cmd_evidence_retire,
    cmd_evidence_to_dataset,
    cmd_evidence_verify,
)
from counterfeit.serving_commands import (
    cmd_evaluate,
    cmd_keys_new,
    cmd_screen,
    cmd_serve,
)
from counterfeit.training_commands import (
    cmd_calibrate,
    cmd_data_check,
    cmd_export,
    cmd_synth,
    cmd_train,
)


class Parser(argparse.ArgumentParser):
    """argparse, with one actionable line per error that names the help of the command at fault."""

    has_commands = False  # True once sub-commands are added: only a command's own parser knows its options

    def error(self, message: str):  # argparse prints usage + message; we print one actionable line
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def add_subparsers(self, **kwargs):
        self.has_commands = True
        return super().add_subparsers(**kwargs)

    def parse_known_args(self, args=None, namespace=None):
        # A sub-command's unknown option is reported by that sub-command, so the error points to
        # `counterfeit train --help` rather than the top-level help, which does not list it.
        parsed, extra = super().parse_known_args(args, namespace)
        if extra and not self.has_commands:
            self.error(f"unrecognized arguments: {' '.join(extra)}")
        return parsed, extra


def existing_folder(text: str) -> Path:
    """argparse type of a folder that must already exist: a typo fails at once, in one line."""
    path = Path(text)
    if not path.is_dir():
        raise argparse.ArgumentTypeError(f"no such folder: {path}" if not path.exists() else f"not a folder: {path}")
    return path


def retention_days(text: str) -> int:
    """argparse type of a retention period: whole days, 1 to a century."""
    from evidence_store.retention import MAX_DAYS

    if not text.strip().isascii() or not text.strip().isdigit() or not 1 <= int(text) <= MAX_DAYS:
        raise argparse.ArgumentTypeError(f"must be a whole number of days from 1 to {MAX_DAYS}, "
                                         f"got {text!r}")
    return int(text)


def package_version() -> str:
    """The installed distribution's version; the source tree's when run without installing."""
    try:
        return metadata.version("counterfeit-detector")
    except metadata.PackageNotFoundError:
        return __version__


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
    from training.recipes import recipe_help, recipe_names, train_options  # the registry alone: no torch

    p = sub.add_parser("train", help="train a model on DATA and export RUN/model.onnx")
    p.add_argument("data", type=existing_folder, nargs="?",
                   help="DATA folder with train/ and val/ (and optionally test/)")
    p.add_argument("--out", type=Path, help="RUN folder for checkpoints, metrics, model.onnx (required)")
    p.add_argument("--resume", type=Path, metavar="RUN", help="continue RUN from its last completed epoch")
    p.add_argument("--config", type=Path, help="TOML file with TrainConfig fields; flags override it")
    p.add_argument("--recipe", choices=recipe_names(), help=recipe_help())
    for option in train_options():
        p.add_argument(option.flag, type=option.type, choices=option.choices, help=option.help)
    p.add_argument("--allow-data-errors", action="store_true",
                   help="train even when `counterfeit data check` finds errors (leaks, broken files, shortcuts)")
    p.set_defaults(run=cmd_train)


def _add_export(sub) -> None:
    p = sub.add_parser("export", help="export a checkpoint to a verified, self-describing ONNX file")
    p.add_argument("checkpoint", type=Path, help="a RUN folder (its checkpoint.pt) or a checkpoint file")
    p.add_argument("--out", type=Path, help="MODEL.onnx to write (default: RUN/model.onnx)")
    p.add_argument("--images", type=existing_folder, help="images to verify on (default: the run's DATA/val)")
    p.set_defaults(run=cmd_export)


def _add_screen(sub) -> None:
    about = ("score image files and folders, or a listing manifest (.csv, .jsonl, .parquet: an id and an image "
             "location per row); one row per image, progress on stderr "
             "(exit 0; 1 when every image failed; 2 for bad arguments)")
    p = sub.add_parser("screen", help=about, description=about)
    p.add_argument("paths", nargs="+", type=Path,
                   help="image files and folders (searched recursively), or one manifest (by its suffix)")
    p.add_argument("--model", type=Path, help="MODEL.onnx (default: COUNTERFEIT_MODEL_PATH or the demo model)")
    p.add_argument("--output", type=Path, help="folders: write JSON lines to this file (written whole, or not at "
                   "all) instead of stdout. Manifests: OUT.jsonl or OUT.parquet (a folder of part files); "
                   "rerun with the same output to resume: ids already there for this model version are skipped")
    p.add_argument("--record", action="store_true",
                   help="also keep every image screened (scored, or retake) in the evidence log "
                   "(COUNTERFEIT_DATA_DIR / COUNTERFEIT_DATABASE_URL); folders only")
    bulk = p.add_argument_group("manifests")
    bulk.add_argument("--id-column", default="id", help="the manifest's id column (default: id)")
    bulk.add_argument("--image-column", default="image", help="the manifest's image column: a path (relative "
                      "to the manifest's folder), file://, http(s):// or an fsspec URL (default: image)")
    bulk.add_argument("--threads", type=int, default=2, help="photos fetched and decoded at once (default 2)")
    bulk.add_argument("--cache", type=int, default=4096, metavar="N",
                      help="answers kept for photos repeated in the manifest, by sha256 (default 4096; 0: none)")
    bulk.add_argument("--per-host", type=int, default=4, help="concurrent HTTP requests per host (default 4)")
    bulk.add_argument("--http-timeout", type=float, default=15.0,
                      help="seconds per HTTP attempt, the whole download (default 15)")
    bulk.add_argument("--allow-local", type=existing_folder, metavar="DIR",
                      help="rows may name local files (paths, file://) only inside DIR (default: the manifest's "
                           "folder); regular files only")
    bulk.add_argument("--part-rows", type=int, default=1024, metavar="N",
                      help="Parquet output: rows per part file, the most a kill can lose (default 1024)")
    bulk.add_argument("--ray", nargs="?", const="", metavar="ADDRESS",
                      help="screen on a Ray cluster (the 'ray' extra): ADDRESS, or RAY_ADDRESS, or a local Ray; "
                      "writes --output OUT.parquet. Put it after the manifest, or write --ray=ADDRESS")
    bulk.add_argument("--workers", type=int, default=2,
                      help="Ray: actors screening at once, each with its own copy of the model (default 2)")
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
    p.add_argument("data", type=existing_folder,
                   help="a folder with genuine/ and counterfeit/ (or a DATA root: its val/)")
    p.add_argument("--out", type=Path, required=True, help="NEW.onnx to write")
    p.add_argument("--target-precision", type=float, help="precision each decided verdict must reach "
                   "(default: the model's training target)")
    p.add_argument("--items", action="store_true", help="also fit how POST /v1/items combines an item's "
                   "photos, on items formed from each product folder's photos (counterfeit items: one side edited)")
    p.set_defaults(run=cmd_calibrate)


def _add_data(sub) -> None:
    data = sub.add_parser("data", help="data tools: `counterfeit data check DATA`, `counterfeit data real SRC OUT`")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND", parser_class=Parser)
    p = data_sub.add_parser("check", help="audit a DATA folder: broken files, duplicates and leaks, balance, "
                            "shortcuts (exit 0 clean, 1 errors, 2 bad arguments)")
    p.add_argument("data", type=existing_folder, help="DATA folder with train/ and val/ (and optionally test/)")
    p.add_argument("--report", type=Path, help="also write DIR/audit.json and DIR/report.html")
    p.add_argument("--json", action="store_true", help="print the findings as JSON instead of text")
    p.add_argument("--strict", action="store_true", help="warnings count as errors for the exit code")
    p.set_defaults(run=cmd_data_check)
    from counterfeit.training_commands import cmd_data_real

    about = ("build the real-photo benchmark: genuine phone photos of grocery packages and counterfeits made from "
             "other photos of them by print-plausible edits (ink hue or lightness, reprint, font, logo, misspelling, "
             "shifted element), in the DATA layout with manifest.csv, LICENSE and README.md")
    p = data_sub.add_parser("real", help=about, description=about)
    p.add_argument("src", type=existing_folder,
                   help="the Grocery Store Dataset's packages folder (holding dataset/ and LICENSE)")
    p.add_argument("out", type=Path, help="DATA folder to create (must be new or empty)")
    p.add_argument("--seed", type=int, default=0, help="random seed of the edits: the same seed writes the same files")
    p.add_argument("--products", default="", help="only these products, comma-separated (default: all)")
    p.set_defaults(run=cmd_data_real)


def _add_evidence(sub) -> None:
    evidence = sub.add_parser("evidence", help="the evidence log: head, verify, export, to-dataset, retire")
    actions = evidence.add_subparsers(dest="evidence_command", required=True, metavar="COMMAND", parser_class=Parser)
    p = actions.add_parser("head", help="print the chain head as one JSON line, to publish or file outside the "
                           "database (verify --head checks it later)")
    keys = p.add_mutually_exclusive_group()
    keys.add_argument("--key", type=Path, metavar="KEYFILE", help="sign the head (HMAC-SHA256) with this key file")
    keys.add_argument("--new-key", type=Path, metavar="KEYFILE", help="make a new key file (mode 0600) and exit")
    p.set_defaults(run=cmd_evidence_head)
    p = actions.add_parser("verify", help="recompute the hash chain and the photos' hashes (exit 1 if altered)")
    p.add_argument("--no-images", action="store_true", help="check the chain only, not the stored photos")
    p.add_argument("--head", type=Path, action="append", metavar="HEADS.jsonl", help="heads published earlier "
                   "(`evidence head` lines; repeatable): the chain must still hold each one's entry and hash")
    p.add_argument("--key", type=Path, metavar="KEYFILE", help="also check the heads' signatures with this key file")
    p.set_defaults(run=cmd_evidence_verify)
    p = actions.add_parser("export", help="write the log as CSV or JSON lines")
    p.add_argument("--since", help="UTC ISO time, e.g. 2026-11-01T00:00:00Z")
    p.add_argument("--format", choices=["csv", "jsonl"], default="csv")
    p.add_argument("--with-images", type=Path, metavar="DIR", help="also write the photos (metadata removed) here")
    p.add_argument("--output", type=Path, help="file to write (default: stdout)")
    p.add_argument("--allow-damaged", action="store_true", help="export a log that fails verification (exit 0); "
                   "the header and a warning still say so")
    p.set_defaults(run=cmd_evidence_export)
    p = actions.add_parser("to-dataset", help="confirmed outcomes as a training DATA folder, split by case")
    p.add_argument("out", type=Path, help="DATA folder to create")
    p.add_argument("--since", help="UTC ISO time")
    p.add_argument("--seed", type=int, default=0, help="seed of the case-to-split assignment")
    p.set_defaults(run=cmd_evidence_to_dataset)
    p = actions.add_parser("retire", help="the retention policy: delete the original photos of records older than "
                           "N days (each deletion a chain entry; records, verdicts and hashes stay); run it daily")
    p.add_argument("--older-than-days", type=retention_days, metavar="N", help="retention period in days (default: "
                   "COUNTERFEIT_EVIDENCE_RETAIN_ORIGINALS_DAYS)")
    p.add_argument("--dry-run", action="store_true", help="say what would be retired and freed; change nothing")
    p.set_defaults(run=cmd_evidence_retire)
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
    p.add_argument("data", type=existing_folder,
                   help="DATA root (its test/ is used) or a folder with genuine/ and counterfeit/")
    p.add_argument("--model", type=Path, help="MODEL.onnx (default: COUNTERFEIT_MODEL_PATH or the demo model)")
    p.add_argument("--report", type=Path, help="write DIR/metrics.json, DIR/report.html and its PNG plots "
                   "(with --robustness: DIR/robustness.json)")
    p.add_argument("--robustness", action="store_true",
                   help="instead of the metrics, answer every photo unchanged and under benign changes (glare, "
                   "sharpening, resizing, re-encoding, grayscale, white balance, exposure, rotation, mild motion "
                   "blur, a finger or sticker, perspective, a curved surface) as the server would, quality gate "
                   "included; print per change the genuines called counterfeit (goal <= 1%%) and the "
                   "counterfeits still caught (goal: within 5 points of unchanged)")
    p.add_argument("--changes", metavar="NAME,NAME",
                   help="with --robustness: only these changes (default: all; an unknown name lists them)")
    p.set_defaults(run=cmd_evaluate)


SERVED_MODEL_HELP = ("MODEL.onnx, a reference or comparator model (default: the one `counterfeit serve` serves: "
                     "COUNTERFEIT_MODEL_PATH, else the demo model)")


def _add_catalogue(sub) -> None:
    catalogue = sub.add_parser("catalogue", help="the products a reference model knows: list, add, remove")
    actions = catalogue.add_subparsers(dest="catalogue_command", required=True, metavar="COMMAND", parser_class=Parser)
    p = actions.add_parser("list", help="the model's products, their product lines, photo counts, reference images")
    p.add_argument("model", type=Path, nargs="?", help=SERVED_MODEL_HELP)
    p.set_defaults(run=cmd_catalogue_list)
    p = actions.add_parser("add", help="add one product from its genuine photos without refitting the others "
                           "(their scores stay identical)")
    p.add_argument("model", type=Path, nargs="?", help=SERVED_MODEL_HELP)
    p.add_argument("--product", required=True, help="the new product's name")
    p.add_argument("--photos", required=True, type=existing_folder,
                   help="folder of genuine photos of its front, filling most of the frame (at least 3; 10 or more "
                   "reach the target precision more often)")
    p.add_argument("--artwork", type=Path, help="the printed artwork (print file or clean image of the design) "
                   "as its reference, instead of the best of its photos")
    p.add_argument("--line", help="the product line it is a side of (default: its own name)")
    p.add_argument("--standardisation", choices=("own", "shared"), default="own",
                   help="its score standardisation: own (default; from its photos, each scored by statistics "
                   "fitted without it) or shared (the model's, fitted on the training's val genuines)")
    p.add_argument("--out", required=True, type=Path, help="NEW.onnx to write")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.set_defaults(run=cmd_catalogue_add)
    p = actions.add_parser("remove", help="remove one product; the others' scores stay identical")
    p.add_argument("model", type=Path, nargs="?", help=SERVED_MODEL_HELP)
    p.add_argument("--product", required=True, help="the product to remove")
    p.add_argument("--out", required=True, type=Path, help="NEW.onnx to write")
    p.add_argument("--force", action="store_true", help="replace --out if it exists")
    p.set_defaults(run=cmd_catalogue_remove)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="counterfeit", description="Tell genuine products from counterfeits by their photos.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=Parser)
    for add in (_add_synth, _add_data, _add_train, _add_export, _add_calibrate, _add_evaluate, _add_screen,
                _add_serve, _add_keys, _add_evidence, _add_catalogue):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except CliError as exc:
        end_progress_bars()
        print(f"counterfeit {args.command}: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        end_progress_bars()
        print(f"counterfeit {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def end_progress_bars() -> None:
    """Close the progress bars a failure left open (a bar still held by the code that raised), so that the
    error starts on a line of its own, not after the bar's last `\\r`."""
    tqdm = sys.modules.get("tqdm")
    for bar in list(getattr(getattr(tqdm, "tqdm", None), "_instances", ())):
        bar.close()


if __name__ == "__main__":
    sys.exit(main())
