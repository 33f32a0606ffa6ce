"""`counterfeit catalogue add/remove`: one product more or less in a reference or comparator model file,
without refitting the others.

A comparator (training/recipes/comparator/) is read back the same way, with its shared head; a product is
added by enrolling its registered genuine photos (enrol.py): nothing is trained or standardised.

The model file is read back into a ReferenceModel (training/recipes/reference/model.py): its per-product
buffers and shared `scale`/`shift` from the ONNX initializers, the frozen Lite0 features from the packaged
ImageNet weights (the file holds them folded into its convolutions), and checked against the file's own
scores before anything is changed. The new product's statistics are fitted by the recipe's own
fit_statistics on its registered genuine photos and appended along the product axis; every other product's
rows, and the shared scale/shift, temperature and thresholds, are copied as they are, so the other products'
scores on any photo stay bit for bit what they were.

The new product has no val photos, so its score standardisation (`centre`, `spread`) is its own: the raw
scores of its photos, each scored by statistics fitted without it (HOLDOUT_FOLDS-fold), give the centre;
the spread is theirs or the model's shared one, whichever is wider (a handful of photos understates it).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from PIL import Image

from inference.align import MIN_INLIERS, Reference, best_match, keypoints, marked, warp
from inference.catalogue import thumbnail_data_uri, with_side, without_side
from inference.images import ImageError, load_image
from inference.layout import DataError, image_files
from inference.metadata import ModelMetadata
from inference.predictor import Predictor, softmax_scores
from inference.preprocess import letterbox, normalise
from training.data import decode_frame
from training.export import TOLERANCE, ExportError, export  # noqa: F401 (ExportError: for the command)
from training.recipes.comparator.enrol import PER_PRODUCT_BUFFERS as COMPARATOR_PER_PRODUCT
from training.recipes.comparator.enrol import enrol
from training.recipes.comparator.fit import load_head
from training.recipes.comparator.model import ComparatorModel
from training.recipes.reference.fit import MASK_PHOTOS, MIN_GROUP, best_reference
from training.recipes.reference.model import PER_PRODUCT_BUFFERS, SHARED_BUFFERS, ReferenceModel
from training.recipes.reference.statistics import BATCH, fit_statistics

CATALOGUE_RECIPES = ("reference", "comparator")
# A comparator's tensors shared by all products, read from the file: its calibration. Its head (trained once,
# never refitted) is the package's (fit.load_head): check_rebuilt refuses a file made with another.
COMPARATOR_SHARED = ("scale", "shift")
HOLDOUT_FOLDS = 5  # the new product's standardisation: each photo scored by statistics fitted without it
MAX_NAME = 100  # characters of a product name
# Genuine photos from which an added product scored as well as the trained one (ROC-AUC, undecided share,
# decided precision; bench/catalogue_real.py on synth-h0, README); with 3 or 5 genuines were called
# counterfeit. `catalogue add` warns below it.
ENOUGH_PHOTOS = 10
VERIFY_PHOTOS = 4  # model inputs that check the rebuilt model against the file, and the export against torch


class CatalogueError(ValueError):
    """What the user must change: the message says what and how."""


@dataclass(frozen=True)
class Added:
    """What `catalogue add` did: the new model's metadata, the photos used and left out, and why."""

    metadata: ModelMetadata
    photos: int  # registered to the new product and fitted from
    unreadable: int  # files that are no photo this software decodes
    elsewhere: dict[str, int]  # {product: photos that registered to that (existing) product instead}
    unregistered: int  # photos that registered to nothing
    centre: list[float]  # reference models: its score standardisation; [] for a comparator (nothing fitted)
    spread: list[float]


# --------------------------------------------------------------------------- the model file as torch


def read_model(path: Path) -> tuple[torch.nn.Module, Predictor]:
    """A reference or comparator model file -> (the model it was exported from, its Predictor).
    CatalogueError for a file that has no catalogue."""
    try:
        predictor = Predictor(path)  # every check serving makes: version, signature, no external data
    except (OSError, ValueError) as exc:
        raise CatalogueError(str(exc)) from exc
    metadata = predictor.metadata
    if metadata.train_config.get("recipe") not in CATALOGUE_RECIPES or not metadata.references:
        raise CatalogueError(f"{path} is not a reference or comparator model (recipe "
                             f"{metadata.train_config.get('recipe')!r}): only those have a catalogue.")
    model = _empty(len(metadata.references), metadata, pretrained=True)
    if isinstance(model, ComparatorModel):
        load_head(model)
    _load_initializers(model, onnx.load_model_from_string(path.read_bytes()), path)
    return model.eval(), predictor


def _recipe(metadata: ModelMetadata) -> str:
    return metadata.train_config.get("recipe")


def _empty(products: int, metadata: ModelMetadata, pretrained: bool) -> torch.nn.Module:
    spec = metadata.preprocess
    model_class = ComparatorModel if _recipe(metadata) == "comparator" else ReferenceModel
    return model_class(products, (spec.width, spec.height), spec.mean, spec.std, pretrained=pretrained)


def _buffers(model: torch.nn.Module) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(per-product tensors, tensors shared by all products) of a catalogue model, by state-dict name."""
    if isinstance(model, ComparatorModel):
        return COMPARATOR_PER_PRODUCT, COMPARATOR_SHARED
    return PER_PRODUCT_BUFFERS, SHARED_BUFFERS


def _load_initializers(model: torch.nn.Module, proto: onnx.ModelProto, path: Path) -> None:
    found = {init.name: init for init in proto.graph.initializer}
    tensors = model.state_dict(keep_vars=True)
    for name in (part for names in _buffers(model) for part in names):
        buffer = tensors[name]
        if name not in found:
            raise CatalogueError(f"{path} lacks the {name!r} tensor of its recipe: re-export it with "
                                 "`counterfeit export`.")
        values = torch.from_numpy(numpy_helper.to_array(found[name]).copy())
        if values.dim() == 1 and buffer.dim() == 2:  # files from before the per-product standardisation
            values = values.expand_as(buffer)
        if values.shape != buffer.shape:
            raise CatalogueError(f"{path}: {name} has shape {tuple(values.shape)}, its metadata implies "
                                 f"{tuple(buffer.shape)}.")
        with torch.no_grad():
            buffer.copy_(values.to(buffer.dtype))


@torch.no_grad()
def check_rebuilt(model: torch.nn.Module, predictor: Predictor, images: np.ndarray, products: np.ndarray) -> None:
    """The rebuilt model must score as the file does, or the file was made by other features than these."""
    expected = predictor.scores(images, products)
    got = softmax_scores(model(torch.from_numpy(images), torch.from_numpy(products))[0].numpy(),
                         predictor.metadata.temperature, 1)
    if not float(np.abs(got - expected).max()) <= TOLERANCE:
        raise CatalogueError(f"{predictor.path} does not score as the model rebuilt from it ({np.abs(got - expected).max():.1e}"
                             " apart): it was made by another version of its recipe; retrain it.")


# --------------------------------------------------------------------------- photos and artwork


def read_photos(folder: Path, metadata: ModelMetadata) -> tuple[list[Image.Image], int]:
    """The photos under `folder`, decoded as serving decodes them and letterboxed to the model input
    -> (frames, files that could not be decoded)."""
    frames, unreadable = [], 0
    for path in image_files(folder):
        try:
            frames.append(decode_frame(path, metadata.preprocess))
        except (DataError, OSError):
            unreadable += 1
    return frames, unreadable


def artwork_reference(path: Path, name: str, metadata: ModelMetadata) -> tuple[Reference, Image.Image]:
    """The printed artwork (a print file or a clean image of the design) as the product's reference ->
    (reference with all its keypoints: a clean image has no background, its frame)."""
    try:
        frame = letterbox(load_image(path.read_bytes()).image, metadata.preprocess)
    except (ImageError, OSError) as exc:
        raise CatalogueError(f"cannot read the artwork {path}: {exc}; give a PNG or JPEG of the design") from exc
    points, descriptors = keypoints(frame)
    if len(points) < 2 * MIN_INLIERS:
        raise CatalogueError(f"the artwork {path} has only {len(points)} distinct features at the model's input "
                             f"size ({metadata.preprocess.width}x{metadata.preprocess.height}); give the front of "
                             "the package, filling the image, with its lettering and pictures")
    return Reference(name, points, descriptors), frame


def _photo_reference(name: str, frames: list[Image.Image], described: list) -> tuple[Reference, Image.Image]:
    """Of the photos, the one the others confirm most, with the keypoints they confirm (as training does)."""
    index, reference = best_reference(name, described[: MASK_PHOTOS + 1])
    return reference, frames[index]


def _marked_with(references: tuple[Reference, ...], new: Reference, described: list) -> list[Reference]:
    """The model's references and the new product's (last), shared keypoints marked as training marks them
    (training/recipes/reference/fit.py): the known products' by the new photos; the new product's by the
    known products' references, which stand for their photos, which the model file does not keep."""
    return [*(marked(reference, described) for reference in references),
            marked(new, [(reference.points, reference.descriptors) for reference in references])]


def _register(frames: list[Image.Image], described: list, references: list[Reference],
              names: list[str]) -> tuple[list[Image.Image], dict[str, int], int]:
    """Each photo registered as serving registers it, against every product and the new one (last)
    -> (the new product's photos in its frame, {other product: photos that went there}, none)."""
    mine, elsewhere, none = [], {}, 0
    for frame, (points, descriptors) in zip(frames, described):
        found = best_match(points, descriptors, references)
        if found is None:
            none += 1
        elif found.product == len(references) - 1:
            mine.append(warp(frame, found.homography))
        else:
            elsewhere[names[found.product]] = elsewhere.get(names[found.product], 0) + 1
    return mine, elsewhere, none


# --------------------------------------------------------------------------- the new product's statistics


def _single(model: ReferenceModel, metadata: ModelMetadata) -> ReferenceModel:
    """A one-product model sharing `model`'s frozen features, to fit one product's statistics into."""
    scratch = _empty(1, metadata, pretrained=False)
    scratch.features = model.features
    return scratch.eval()


def _inputs(frames: list[Image.Image], metadata: ModelMetadata) -> torch.Tensor:
    return torch.from_numpy(np.stack([normalise(frame, metadata.preprocess) for frame in frames]))


@torch.no_grad()
def held_out_raw(model: ReferenceModel, metadata: ModelMetadata, name: str, frames: list[Image.Image]) -> torch.Tensor:
    """(N, 4) raw scores of the photos, each from statistics fitted on the other folds' photos only: what a
    genuine photo the statistics never saw scores, which is what serving meets."""
    folds, raw = min(len(frames), HOLDOUT_FOLDS), []
    for fold in range(folds):
        held = frames[fold::folds]
        scratch = _single(model, metadata)
        fit_statistics(scratch, {name: [f for i, f in enumerate(frames) if i % folds != fold]},
                       metadata.preprocess, progress=False)
        for start in range(0, len(held), BATCH):
            batch = _inputs(held[start : start + BATCH], metadata)
            raw.append(scratch.raw_scores(batch, torch.zeros(len(batch), dtype=torch.int64)))
    return torch.cat(raw)


def fit_product(model: ReferenceModel, metadata: ModelMetadata, name: str, frames: list[Image.Image],
                standardisation: str = "own") -> ReferenceModel:
    """One product's statistics (one-product model) from its registered photos, standardised by its own held-out
    scores ("own") or as the model's products are ("shared")."""
    try:
        product = _single(model, metadata)
        fit_statistics(product, {name: frames}, metadata.preprocess, progress=False)
        raw = held_out_raw(model, metadata, name, frames) if standardisation == "own" else None
    except DataError as exc:
        raise CatalogueError(str(exc)) from exc
    standardise(product, model, raw)
    return product


def shared_standardisation(model: ReferenceModel) -> tuple[torch.Tensor, torch.Tensor]:
    """(centre, spread) of the val genuines, as training stored it in every row: the median row, which is
    the training's as long as most products were trained rather than added."""
    return model.centre.float().median(0).values, model.spread.float().median(0).values


def standardise(product: ReferenceModel, model: ReferenceModel, raw: torch.Tensor | None) -> None:
    """Set the one-product model's standardisation: the shared one (raw None), or its own from its held-out
    raw scores: their mean, and their spread or the shared one, whichever is wider."""
    centre, spread = shared_standardisation(model)
    if raw is not None:
        centre, spread = raw.mean(0), torch.maximum(raw.std(0), spread)
    product.centre.copy_(centre)
    product.spread.copy_(spread)


# --------------------------------------------------------------------------- growing and shrinking


def with_rows(model: torch.nn.Module, metadata: ModelMetadata, rows: list[tuple[torch.nn.Module, int]]) -> torch.nn.Module:
    """A model whose product i is product rows[i][1] of model rows[i][0]; shared tensors and features from `model`."""
    grown = _empty(len(rows), metadata, pretrained=False)
    grown.features = model.features
    per_product, shared = _buffers(model)
    mine, theirs = grown.state_dict(keep_vars=True), [source.state_dict(keep_vars=True) for source, _ in rows]
    theirs_shared = model.state_dict(keep_vars=True)
    with torch.no_grad():
        for name in per_product:
            mine[name].copy_(torch.stack([state[name][index] for state, (_, index) in zip(theirs, rows)]))
        for name in shared:
            mine[name].copy_(theirs_shared[name])
    if isinstance(model, ComparatorModel):
        grown.head = model.head
    return grown.eval()


def enrol_product(model: ComparatorModel, metadata: ModelMetadata, frames: list[Image.Image],
                  reference: Reference) -> ComparatorModel:
    """One product enrolled into a one-product comparator sharing `model`'s features: nothing is trained."""
    product = _empty(1, metadata, pretrained=False)
    product.features = model.features
    try:
        enrol(product, [frames], [reference], metadata.preprocess)
    except ValueError as exc:
        raise CatalogueError(str(exc)) from exc
    return product.eval()


# --------------------------------------------------------------------------- add and remove


def add_product(path: Path, name: str, photos: Path, out: Path, artwork: Path | None = None,
                line: str | None = None, standardisation: str = "own") -> Added:
    """`counterfeit catalogue add`: write `out`, the model at `path` plus product `name`."""
    model, predictor = read_model(path)
    metadata = predictor.metadata
    names = [reference.product for reference in metadata.references]
    _check_name(name, names)
    frames, unreadable = read_photos(photos, metadata)
    described = [keypoints(frame) for frame in frames]
    if len(frames) < MIN_GROUP and artwork is None:
        raise CatalogueError(f"{photos} holds {len(frames)} readable photo(s); give at least {MIN_GROUP} genuine photos "
                             "of the product's front, filling most of the frame")
    reference, frame = (artwork_reference(artwork, name, metadata) if artwork is not None
                        else _photo_reference(name, frames, described))
    references = _marked_with(metadata.references, reference, described)
    mine, elsewhere, none = _register(frames, described, references, names)
    if len(mine) < MIN_GROUP:
        raise CatalogueError(_too_few(len(mine), len(frames), elsewhere, none, artwork is not None))
    images, products = _known_inputs(metadata, frames=mine)
    check_rebuilt(model, predictor, images, products)
    product = (enrol_product(model, metadata, mine, reference) if isinstance(model, ComparatorModel)
               else fit_product(model, metadata, name, mine, standardisation))
    grown = with_rows(model, metadata, [*((model, i) for i in range(len(names))), (product, 0)])
    catalogue = {**metadata.catalogue, name: {"photos": len(mine), "reference_image": thumbnail_data_uri(frame)}}
    updated = replace(metadata, version="", references=tuple(references), catalogue=catalogue,
                      product_lines=with_side(metadata.product_lines, line or name, name),
                      metrics=_metrics(metadata.metrics, [*names, name]))
    new_index = np.full(len(images), len(names), np.int64)
    written = export(grown, updated, out, np.concatenate([images, images]), products=np.concatenate([products, new_index]))
    standardised = ([], []) if isinstance(product, ComparatorModel) else (product.centre[0].tolist(),
                                                                        product.spread[0].tolist())
    return Added(written, len(mine), unreadable, elsewhere, none, *standardised)


def remove_product(path: Path, name: str, out: Path) -> ModelMetadata:
    """`counterfeit catalogue remove`: write `out`, the model at `path` without product `name`."""
    model, predictor = read_model(path)
    metadata = predictor.metadata
    names = [reference.product for reference in metadata.references]
    if name not in names:
        raise CatalogueError(f"the model has no product {name!r}; it has {', '.join(names)}")
    if len(names) == 1:
        raise CatalogueError(f"{name!r} is the model's only product: a model needs at least one")
    kept = [i for i, other in enumerate(names) if other != name]
    images, products = _known_inputs(metadata)
    check_rebuilt(model, predictor, images, products)
    shrunk = with_rows(model, metadata, [(model, i) for i in kept])
    updated = replace(metadata, version="", references=tuple(metadata.references[i] for i in kept),
                      product_lines=without_side(metadata.product_lines, name),
                      catalogue={p: e for p, e in metadata.catalogue.items() if p != name},
                      metrics=_metrics(metadata.metrics, [names[i] for i in kept]))
    return export(shrunk, updated, out, images, products=np.arange(len(images)) % len(kept))


def _check_name(name: str, names: list[str]) -> None:
    if not name.strip() or len(name) > MAX_NAME or not name.isprintable():
        raise CatalogueError(f"--product must be a printable name of 1 to {MAX_NAME} characters; got {name!r}")
    if name in names:
        raise CatalogueError(f"the model already has a product {name!r}: remove it first "
                             "(`counterfeit catalogue remove`) or choose another name")


def _too_few(registered: int, readable: int, elsewhere: dict[str, int], none: int, artwork: bool) -> str:
    """Why a product cannot be added: which photos went where."""
    parts = [f"only {registered} of {readable} readable photos register to the new product's "
             f"{'artwork' if artwork else 'reference photo'} (at least {MIN_GROUP} are needed)"]
    if elsewhere:
        parts.append("; these look like products the model has: " +
                     ", ".join(f"{product} ({count})" for product, count in elsewhere.items()))
    if none:
        parts.append(f"; {none} register to nothing (photograph the front, filling most of the frame, in focus)")
    return "".join(parts)


def _metrics(metrics: dict, names: list[str]) -> dict:
    """The training metrics, with the product list brought up to date (val figures are the training's)."""
    return {**metrics, "products": names} if "products" in metrics else dict(metrics)


def _known_inputs(metadata: ModelMetadata, frames: list[Image.Image] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Model inputs for the rebuilt-model and export checks, with the current products' indices: their
    reference images where the file has them, else the given frames (photos of any product exercise the
    same arithmetic), else smooth noise."""
    chosen = [*_reference_frames(metadata), *frames][:VERIFY_PHOTOS]
    if not chosen:
        rng = np.random.default_rng(0)
        spec = metadata.preprocess
        coarse = Image.fromarray(rng.integers(0, 256, (spec.height // 8, spec.width // 8, 3), np.uint8))
        chosen = [coarse.resize(spec.size, Image.Resampling.BILINEAR)]
    images = _inputs(chosen, metadata).numpy()
    return images, np.arange(len(images), dtype=np.int64) % len(metadata.references)


def _reference_frames(metadata: ModelMetadata) -> list[Image.Image]:
    """The products' reference images from the file, in product order, letterboxed to the model input."""
    found = []
    for reference in metadata.references:
        uri = metadata.catalogue.get(reference.product, {}).get("reference_image")
        if uri is None:
            break  # indices must follow product order
        data = base64.b64decode(uri.split(",", 1)[1])
        found.append(letterbox(load_image(data).image, metadata.preprocess))
    return found
