"""`counterfeit catalogue list|add|remove`: the products a reference or comparator model knows. `list` is torch-free;
`add` and `remove` rebuild the model with torch (training/catalogue.py) only when they run."""

from __future__ import annotations

import sys
from pathlib import Path

from counterfeit.errors import CliError
from counterfeit.training_commands import _training_module, train_extra_needed


def cmd_catalogue_list(args) -> int:
    from inference.catalogue import catalogue_table
    from inference.metadata import ModelFileError
    from inference.predictor import Predictor

    _served_model_by_default(args)
    try:
        metadata = Predictor(args.model).metadata
    except (OSError, ModelFileError) as exc:
        raise CliError(str(exc)) from exc
    if not metadata.references:
        raise CliError(f"{args.model} is not a reference model: it scores the whole frame and has no catalogue")
    print(f"{metadata.name} (version {metadata.version}): {len(metadata.references)} products")
    print(catalogue_table(metadata))
    return 0


def _writable(out: Path, force: bool) -> None:
    """Checked before any work: a model file can be written at `out` (issue 24: a folder failed only at the end)."""
    if out.is_dir():
        raise CliError(f"{out} is a folder: give the model file's name for --out, e.g. {out / 'model.onnx'}")
    if out.exists() and not force:
        raise CliError(f"{out} exists: give another --out, or --force to replace it")
    if not out.parent.is_dir():
        raise CliError(f"no such folder for --out: {out.parent}")


def _served_model_by_default(args) -> None:
    """No MODEL given: the one `counterfeit serve` serves, as for `screen` and `evaluate`."""
    if args.model is None:
        from counterfeit.serving_commands import _default_model_path

        args.model = _default_model_path()


def cmd_catalogue_add(args) -> int:
    _served_model_by_default(args)
    _writable(args.out, args.force)
    if args.artwork is not None and not args.artwork.is_file():
        raise CliError(f"no such artwork file: {args.artwork}")
    catalogue = _training_module("catalogue")
    try:
        with train_extra_needed():
            added = catalogue.add_product(args.model, args.product, args.photos, args.out, args.artwork, args.line,
                                          args.standardisation)
    except (ValueError, catalogue.ExportError) as exc:  # CatalogueError, ModelFileError, DataError
        raise CliError(str(exc)) from exc
    _report_added(args, added, catalogue.ENOUGH_PHOTOS, catalogue.HOLDOUT_FOLDS)
    return 0


def _report_added(args, added, enough: int, folds: int) -> None:
    meta = added.metadata
    print(f"added {args.product!r} (line {meta.line_of(args.product)!r}) from {added.photos} genuine photos"
          f"{' and the artwork as its reference' if args.artwork else ''}: wrote {args.out} (version {meta.version}); "
          "the other products' statistics and scores are unchanged")
    left = [f"{added.unreadable} unreadable"] if added.unreadable else []
    left += [f"{count} registered to {product!r}" for product, count in added.elsewhere.items()]
    left += [f"{added.unregistered} registered to no product"] if added.unregistered else []
    if left:
        print("left out: " + ", ".join(left))
    how = (f"on its own photos, each scored by statistics fitted without it ({min(added.photos, folds)}-fold)"
           if args.standardisation == "own" else "as the model's products (its val genuines at training)")
    print(f"standardised {how}: centre {_rounded(added.centre)}, spread {_rounded(added.spread)}")
    if added.photos < enough:
        print(f"warning: {added.photos} photos are fewer than the {enough} that reached the target precision on "
              "real products (README, 'A catalogue a brand can grow'): expect more undecided verdicts for "
              f"{args.product!r}; add more genuine photos", file=sys.stderr)


def _rounded(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.2f}" for v in values) + "]"


def cmd_catalogue_remove(args) -> int:
    _served_model_by_default(args)
    _writable(args.out, args.force)
    catalogue = _training_module("catalogue")
    try:
        with train_extra_needed():
            meta = catalogue.remove_product(args.model, args.product, args.out)
    except (ValueError, catalogue.ExportError) as exc:
        raise CliError(str(exc)) from exc
    print(f"removed {args.product!r}: wrote {args.out} (version {meta.version}), {len(meta.references)} products left; "
          "the others' statistics and scores are unchanged")
    return 0
