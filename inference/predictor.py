"""Predictor: a self-describing ONNX model file -> calibrated scores and verdicts. No torch."""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import onnxruntime as ort
from PIL import Image

from inference.align import Reference, align, to_photo
from inference.classes import COUNTERFEIT, GENUINE, INCONCLUSIVE
from inference.images import Limits, LoadedImage, load_image
from inference.metadata import ModelFileError, ModelMetadata, Thresholds
from inference.onnx_wire import WireError, content_version, external_tensors
from inference.preprocess import PreprocessSpec, normalise, preprocess
from inference.quality import MEASURED_SIZE

INPUT_NAME = "image"
LOGITS_NAME = "logits"
HEATMAP_NAME = "heatmap"  # optional output (N, h, w): counterfeit evidence per region
EMBEDDING_NAME = "embedding"  # optional output (N, D): L2-normalised features, to find the same goods again
PRODUCT_NAME = "product"  # second input of reference models, (N,) int64: the product each photo registered to
ABSOLUTE_FULL = 100.0  # an absolute heatmap is fully red at this many times a typical genuine's strongest spot
MAX_BATCH = 32  # most images in one batch; each onnxruntime call takes at most images_per_call of them

# Model-input pixels per onnxruntime call: four 640x480 images. Measured with the demo model (640x480
# input): the arena holds about 110 MB per image of the largest call (32 at once: 4.2 GB resident, 4 at
# once: 0.64 GB), and on CPU 4 at once cost the same milliseconds per image as 16 at once, within noise.
PIXELS_PER_CALL = 4 * 640 * 480


def images_per_call(input_size: tuple[int, int], max_batch: int) -> int:
    """Images per onnxruntime call for a model input of (width, height): PIXELS_PER_CALL worth, 1 to max_batch."""
    return max(1, min(max_batch, PIXELS_PER_CALL // (input_size[0] * input_size[1])))


@dataclass(frozen=True)
class Prepared:
    """One photo as the model takes it."""

    array: np.ndarray  # (3, H, W) float32
    product: int = 0  # reference models: index of the product it was registered to
    homography: np.ndarray | None = None  # reference models: reference frame -> letterboxed photo (3, 3)


def stacked(prepared: Sequence[Prepared]) -> tuple[np.ndarray, np.ndarray]:
    """Prepared photos as the inputs of one model call: (arrays (N, 3, H, W), products (N,) int64)."""
    return np.stack([p.array for p in prepared]), np.array([p.product for p in prepared], np.int64)


def decode(data: bytes, spec: PreprocessSpec, limits: Limits = Limits()) -> LoadedImage:
    """Image bytes decoded for a model of this input size, as serving does: no larger than the model and the
    quality gate need (JPEGs at a reduced DCT scale, huge images reduced as they are decoded)."""
    return load_image(data, limits=limits, draft_to=decoded_size(spec))


def decoded_size(spec: PreprocessSpec) -> tuple[int, int]:
    """The smallest (width, height) photos are decoded at for this model: what the model and the quality
    gate (inference.quality.MEASURED_SIZE) need, whichever is larger."""
    return max(spec.width, MEASURED_SIZE[0]), max(spec.height, MEASURED_SIZE[1])


def prepare(image: Image.Image, spec: PreprocessSpec, references: Sequence[Reference] = ()) -> Prepared:
    """The one way a decoded photo becomes model input, in training and in serving: letterboxed and
    normalised; with references, first registered into its product's reference frame."""
    if not references:
        return Prepared(preprocess(image, spec))
    frame, registration = align(image, list(references), spec)
    return Prepared(normalise(frame, spec), registration.product, registration.homography)


@dataclass(frozen=True)
class Prediction:
    score: float  # calibrated probability that the item is counterfeit
    verdict: str  # genuine | counterfeit | inconclusive


def verdict_for(score: float, thresholds: Thresholds) -> str:
    if score >= thresholds.high:
        return COUNTERFEIT
    if score <= thresholds.low:
        return GENUINE
    return INCONCLUSIVE


def softmax_scores(logits: np.ndarray, temperature: float, positive_index: int) -> np.ndarray:
    """Calibrated P(class positive_index) from raw logits (N, C)."""
    scaled = logits.astype(np.float64) / temperature
    scaled -= scaled.max(axis=1, keepdims=True)  # for exp's sake; softmax is shift-invariant
    probs = np.exp(scaled)
    return probs[:, positive_index] / probs.sum(axis=1)


class Predictor:
    """Loads MODEL.onnx once; thread-safe (onnxruntime sessions may be run concurrently)."""

    def __init__(self, path: str | Path, *, threads: int = 0) -> None:
        self.path = Path(path)
        model_bytes = _read_model(self.path)
        _refuse_external_data(model_bytes, self.path)  # before onnxruntime, which would open those files
        self.file_sha256 = hashlib.sha256(model_bytes).hexdigest()
        self.session = _open_session(model_bytes, self.path, threads)
        self.metadata = ModelMetadata.from_props(self.session.get_modelmeta().custom_metadata_map)
        _check_signature(self.session, self.metadata, self.path)
        _check_version(model_bytes, self.metadata, self.path)
        self.outputs = frozenset(o.name for o in self.session.get_outputs())  # asked per batch: computed once
        self._counterfeit_index = self.metadata.classes.index(COUNTERFEIT)

    @property
    def spec(self):
        return self.metadata.preprocess

    def load(self, data: bytes, limits: Limits = Limits()) -> LoadedImage:
        """Decode image bytes for this model (JPEG decoded no larger than the model needs)."""
        return decode(data, self.spec, limits)

    @property
    def aligns(self) -> bool:
        """Whether photos are registered to a product's reference before scoring (reference models)."""
        return bool(self.metadata.references)

    def product_of(self, prepared: Prepared) -> str | None:
        """The catalogue product a prepared photo was registered to (reference models), else None."""
        return self.metadata.references[prepared.product].product if self.aligns else None

    def prepare(self, image: Image.Image) -> Prepared:
        """A decoded photo -> the model's input; inference.align.NotRecognised when a reference model
        finds none of its products in it."""
        return prepare(image, self.spec, self.metadata.references)

    def _feeds(self, batch: np.ndarray, products: np.ndarray | None) -> dict[str, np.ndarray]:
        if not self.aligns:
            return {INPUT_NAME: batch}
        products = np.zeros(len(batch), np.int64) if products is None else np.asarray(products, np.int64)
        return {INPUT_NAME: batch, PRODUCT_NAME: products}

    def logits(self, batch: np.ndarray, products: np.ndarray | None = None) -> np.ndarray:
        """Raw logits (N, C) for preprocessed arrays (N, 3, H, W), in chunks of MAX_BATCH."""
        products = None if products is None else np.asarray(products)
        chunks = []
        for start in range(0, len(batch), MAX_BATCH):
            part = slice(start, start + MAX_BATCH)
            feeds = self._feeds(batch[part], None if products is None else products[part])
            chunks.append(self.session.run([LOGITS_NAME], feeds)[0])
        return np.concatenate(chunks) if chunks else np.zeros((0, len(self.metadata.classes)), np.float32)

    def scores(self, batch: np.ndarray, products: np.ndarray | None = None) -> np.ndarray:
        return softmax_scores(self.logits(batch, products), self.metadata.temperature, self._counterfeit_index)

    @property
    def has_embedding(self) -> bool:
        return EMBEDDING_NAME in self.outputs

    def scores_and_embeddings(self, batch: np.ndarray,
                              products: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        """Calibrated scores and, when the model has them, embeddings, from one onnxruntime call."""
        if not self.has_embedding:
            return self.scores(batch, products), None
        logits, embeddings = self.session.run([LOGITS_NAME, EMBEDDING_NAME], self._feeds(batch, products))
        return softmax_scores(logits, self.metadata.temperature, self._counterfeit_index), embeddings

    @property
    def has_heatmap(self) -> bool:
        return HEATMAP_NAME in self.outputs

    def explain(self, prepared: Prepared) -> tuple[float, bytes, np.ndarray | None]:
        """(calibrated score, heatmap PNG over the letterboxed photo, embedding or None) for one prepared
        photo. A reference model's heatmap is computed in its product's frame and mapped back onto the photo."""
        if not self.has_heatmap:
            raise ModelFileError(f"{self.path.name} has no '{HEATMAP_NAME}' output: re-export it to get heatmaps.")
        names = [LOGITS_NAME, HEATMAP_NAME] + ([EMBEDDING_NAME] if self.has_embedding else [])
        logits, heatmap, *embedding = self.session.run(names, self._feeds(prepared.array[None], [prepared.product]))
        score = float(softmax_scores(logits, self.metadata.temperature, self._counterfeit_index)[0])
        where = heatmap[0] if prepared.homography is None else to_photo(heatmap[0], prepared.homography,
                                                                           self.spec.size)
        # Reference and comparator heatmaps are in units of what a typical genuine photo's strongest spot
        # shows: drawn on that absolute scale, a clean photo is not painted red (issue 23).
        return score, heatmap_png(where, self.spec.size, absolute=self.aligns), embedding[0][0] if embedding else None

    def predict(self, images: Sequence[Image.Image]) -> list[Prediction]:
        if not images:
            return []
        scores = self.scores(*stacked([self.prepare(image) for image in images]))
        return [self.decide(float(score)) for score in scores]

    def decide(self, score: float) -> Prediction:
        return Prediction(score=score, verdict=verdict_for(score, self.metadata.thresholds))


def heatmap_png(heatmap: np.ndarray, size: tuple[int, int], absolute: bool = False) -> bytes:
    """A (h, w) map of counterfeit evidence -> RGBA PNG of `size`: red where the evidence is strongest,
    transparent where there is none, so a client can lay it straight over the photo.

    absolute: the map is in units of a typical genuine photo's strongest spot (reference and comparator
    models); only what goes beyond it is marked, on a log scale up to ABSOLUTE_FULL times it. Otherwise (a
    classifier's map has no such unit) the map is stretched between its own weakest and strongest spots."""
    if absolute:
        scaled = np.clip(np.log(np.maximum(np.nan_to_num(heatmap, nan=0.0), 1.0)) / np.log(ABSOLUTE_FULL), 0, 1)
    else:
        positive = np.clip(heatmap, 0, None)
        # Where, not how much. A flat map (evidence everywhere alike, or none) points nowhere: transparent.
        spread = float(positive.max() - positive.min())
        scaled = (positive - positive.min()) / spread if spread > 1e-6 else np.zeros_like(positive)
    alpha = Image.fromarray((scaled * 200).astype(np.uint8)).resize(size, Image.Resampling.BILINEAR)
    overlay = Image.new("RGBA", size, (230, 30, 30, 0))
    overlay.putalpha(alpha)
    buffer = io.BytesIO()
    overlay.save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def _read_model(path: Path) -> bytes:
    if path.is_dir():
        raise ModelFileError(f"{path} is a folder, not a model file: give the .onnx file in it, e.g. "
                             f"{path / 'model.onnx'}")
    if not path.is_file():
        raise ModelFileError(f"Model file not found: {path}")
    data = path.read_bytes()
    if not data:
        raise ModelFileError(f"Model file is empty: {path}")
    return data


def _refuse_external_data(model_bytes: bytes, path: Path) -> None:
    """A model is one self-contained file. Tensors stored outside it would make onnxruntime read files
    named by the model (from the server's working folder, for a model loaded from bytes): refused."""
    try:
        external = external_tensors(model_bytes)
    except WireError as exc:
        raise ModelFileError(f"{path} is not a loadable ONNX model ({exc}).") from exc
    if external:
        raise ModelFileError(f"{path}: {external} of its tensors keep their data in external files; a model must be "
                             "one self-contained file. Export it again with `counterfeit export` (it embeds all data).")


def _check_version(model_bytes: bytes, metadata: ModelMetadata, path: Path) -> None:
    """The version must be the file's content hash (inference/onnx_wire.py), so that every answer and every
    evidence record names exactly the model that produced it."""
    try:
        actual = content_version(model_bytes)
    except WireError as exc:
        raise ModelFileError(f"{path}: cannot compute its content version: {exc}.") from exc
    if actual != metadata.version:
        raise ModelFileError(f"{path}: the file's content does not match its version {metadata.version!r} (the "
                             f"content hashes to {actual!r}), so it was changed after export: re-export it "
                             "(`counterfeit export`) or re-calibrate it (`counterfeit calibrate`); do not edit "
                             "a model file by hand.")


def _open_session(model_bytes: bytes, path: Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads  # 0 = onnxruntime's default (one per core)
    options.log_severity_level = 3  # errors only: its warnings are not actionable for users
    # Idle intra-op threads sleep instead of spinning: registration (OpenCV) of other photos runs on the
    # same cores meanwhile, in the server and in bulk screening. 40 photos on 2 cores, demo model, photos
    # prepared in parallel threads: 4.8-5.3 vs 6.8-6.9 CPU seconds, 25-28 vs 30-34 s (issue 15).
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    try:
        return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for bad files
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{path} is not a loadable ONNX model ({first_line[:200]}).") from exc


def _check_signature(session: ort.InferenceSession, metadata: ModelMetadata, path: Path) -> None:
    inputs = {i.name: i for i in session.get_inputs()}
    outputs = {o.name for o in session.get_outputs()}
    if (PRODUCT_NAME in inputs) != bool(metadata.references):
        has = "the input but no references" if PRODUCT_NAME in inputs else "references but no such input"
        raise ModelFileError(f"{path}: an input {PRODUCT_NAME!r} goes with product references in the "
                             f"metadata; this file has {has}. Re-export it with `counterfeit export`.")
    if INPUT_NAME not in inputs or LOGITS_NAME not in outputs:
        raise ModelFileError(
            f"{path} must have an input {INPUT_NAME!r} and an output {LOGITS_NAME!r}; "
            f"it has inputs {sorted(inputs)} and outputs {sorted(outputs)}."
        )
    shape = inputs[INPUT_NAME].shape
    expected = [3, metadata.preprocess.height, metadata.preprocess.width]
    if list(shape[1:]) != expected:
        raise ModelFileError(f"{path}: input shape {shape} does not match its metadata (N, {expected}).")
