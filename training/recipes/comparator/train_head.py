"""`make comparator`: train the comparator's head once, across many products, on real photo pairs, and ship it
(training/recipes/comparator/head.pt).

The pairs come from a real-photo benchmark folder (`counterfeit data real`, datatools/real_benchmark.py):
every product is enrolled from its train genuines (enrol.py), and each of its val and test photos,
original and under BENIGN random changes of the robustness set (glare, re-encoding, white balance, rotation,
a finger, a sticker, perspective...), is registered and compared with them as serving does. A genuine is
a benign pair, an edited photo a counterfeit one. Only the kinds of edit a person can see at these
photos' resolution train the head (VISIBLE): the others (a substituted font, a shifted element) are not in
the pixels of a 348 px photo, and teaching the head to chase them teaches it noise.

The comparisons of every photo are kept in a cache (pairs.npz), from which bench/comparator_real.py fits
one head per fold of products, never showing a head the products it is measured on.
"""

from __future__ import annotations

import argparse
import sys
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from evaluation.robustness import CHANGES
from inference.align import NotRecognised
from inference.layout import Sample, list_split
from inference.predictor import Prepared, decode, prepare, stacked
from training.recipes.comparator.fit import HEAD_FILE, enrolled_model
from training.recipes.comparator.model import EXPERTS, ComparatorHead, ComparatorModel

VISIBLE = tuple(EXPERTS)  # kinds of edit a person spots at 348 px (issue 22's test): hue, lightness, reprint
# Changes a photo may get as augmentation: the robustness set less those the quality gate answers with a
# retake (grayscale, quarter size), which never reach the model.
BENIGN = tuple(name for name in CHANGES if name not in ("grayscale", "quarter"))
STEPS = 800
BATCH = 16


class Pairs(NamedTuple):
    """Every registered photo's comparison with its product's enrolled genuines."""

    inputs: np.ndarray  # (n, head_inputs()) what the head reads
    labels: np.ndarray  # (n,) 1 counterfeit
    kinds: np.ndarray  # (n,) the edit ("" for a genuine)
    products: np.ndarray  # (n,) product name
    splits: np.ndarray  # (n,) val | test
    changes: np.ndarray  # (n,) "" for the original photo, else the benign change applied
    sources: np.ndarray  # (n,) the photo's path in DATA
    # (n,) True where registration found another product in the photo: compared with that product's genuines,
    # as serving compares it; such rows train no head and are left out of the ROC-AUC, but serving's verdicts
    # on them count (bench/comparator_real.py)
    elsewhere: np.ndarray

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(path, **self._asdict())

    @classmethod
    def load(cls, path: Path) -> Pairs:
        with np.load(path, allow_pickle=False) as saved:
            return cls(**{name: saved[name] for name in cls._fields})


def kind_of(path: Path) -> str:
    """The edit in a benchmark file's name (`<stem>__<kind>.jpg`), "" for a genuine."""
    return path.stem.split("__")[-1] if "__" in path.stem else ""


def versions(sample: Sample, spec, augment: int) -> list[tuple[str, Image.Image]]:
    """The photo as serving decodes it, and `augment` benign changes of it (seeded by its path)."""
    image = decode(sample.path.read_bytes(), spec).image
    found = [("", image)]
    for index in range(1, augment + 1):
        rng = np.random.default_rng([zlib.crc32(sample.path.as_posix().encode()), index])
        name = BENIGN[int(rng.integers(len(BENIGN)))]
        found.append((name, decode(CHANGES[name](image, rng), spec).image))
    return found


def describe_benchmark(data: Path, spec, augment: int = 1, progress: bool = True) -> Pairs:
    """Enrol every product of DATA/train, then compare each val and test photo (and its changes) with its own."""
    model, found, _ = enrolled_model(data, spec, progress)  # the head is not read: only its inputs are
    folders = [found.folders[name] for name in found.products]
    samples = [(split, s) for split in ("val", "test") for s in list_split(data, split)]

    def registered(item):
        split, sample = item
        kept = []
        for change, image in versions(sample, spec, augment):
            try:
                prepared = prepare(image, spec, found.references)
            except NotRecognised:
                continue  # serving answers retake: no comparison
            kept.append((prepared, (sample.label, kind_of(sample.path), sample.product, split, change,
                                    sample.path.relative_to(data).as_posix(), folders[prepared.product] != sample.product)))
        return kept

    rows: list[tuple[Prepared, tuple]] = []
    with ThreadPoolExecutor(2) as pool:  # OpenCV's SIFT and matching release the GIL
        for kept in tqdm(pool.map(registered, samples), total=len(samples), desc="register photos",
                         disable=not progress):
            rows.extend(kept)
    return Pairs(_head_inputs(model, [prepared for prepared, _ in rows]),
                 *(np.array(column) for column in zip(*(about for _, about in rows))))


@torch.no_grad()
def _head_inputs(model: ComparatorModel, prepared: list[Prepared]) -> np.ndarray:
    parts = [model.head_input(*map(torch.from_numpy, stacked(prepared[i : i + BATCH])))[0]
             for i in range(0, len(prepared), BATCH)]
    return torch.cat(parts).numpy()


def training_rows(pairs: Pairs, products) -> np.ndarray:
    """Rows of these products that train a head: genuines and the visible kinds of edit, registered to their
    own product."""
    visible = np.isin(pairs.kinds, ("", *VISIBLE))
    return np.isin(pairs.products, list(products)) & visible & ~pairs.elsewhere


def fit_head(inputs: np.ndarray, labels: np.ndarray, kinds: np.ndarray, steps: int = STEPS,
             seed: int = 0) -> ComparatorHead:
    """A head trained on comparisons: each expert a logistic regression (binary cross-entropy, classes
    balanced, AdamW) of the genuines against the counterfeits of its kind (all counterfeits where the kind is
    not known)."""
    torch.manual_seed(seed)
    head = ComparatorHead()
    x, y = torch.from_numpy(inputs).float(), torch.from_numpy(labels).float()
    head.mean.copy_(x.mean(0))
    head.std.copy_(x.std(0) + 1e-6)
    z = ((x - head.mean) / head.std).detach()
    for row, kind in enumerate(EXPERTS):
        rows = torch.from_numpy((labels == 0) | (kinds == kind) | (kinds == ""))
        weight, bias = _logistic(z[rows] * head.reads[row], y[rows], steps)
        with torch.no_grad():
            head.weight[row], head.bias[row] = weight, bias
    return head.eval().requires_grad_(False)


def _logistic(x: torch.Tensor, y: torch.Tensor, steps: int) -> tuple[torch.Tensor, torch.Tensor]:
    linear = torch.nn.Linear(x.shape[1], 1)
    optimizer = torch.optim.AdamW(linear.parameters(), lr=3e-3, weight_decay=1e-2)
    balance = (y == 0).sum() / (y == 1).sum().clamp_min(1)
    for _ in range(steps):
        loss = torch.nn.functional.binary_cross_entropy_with_logits(linear(x).squeeze(1), y, pos_weight=balance)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return linear.weight.detach()[0], linear.bias.detach()[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="a real-photo benchmark folder (`counterfeit data real SRC OUT`)")
    parser.add_argument("--cache", type=Path, default=Path("runs/comparator/pairs.npz"),
                        help="comparisons of every photo, computed once (delete it to recompute)")
    parser.add_argument("--out", type=Path, default=HEAD_FILE)
    parser.add_argument("--augment", type=int, default=1, help="benign changes of each photo (default 1)")
    parser.add_argument("--image-size", type=int, default=320, help="model input side in pixels (default 320)")
    args = parser.parse_args(argv)
    pairs = load_or_describe(args.data, args.cache, args.image_size, args.augment)
    rows = training_rows(pairs, set(pairs.products.tolist()))
    head = fit_head(pairs.inputs[rows], pairs.labels[rows], pairs.kinds[rows])
    provenance = {"data": args.data.name, "products": sorted(set(pairs.products.tolist())),
                  "pairs": int(rows.sum()), "kinds": list(VISIBLE), "augment": args.augment}
    torch.save({"head": head.state_dict(), "provenance": provenance}, args.out)
    print(f"wrote {args.out}: trained on {rows.sum()} real photo pairs of {len(provenance['products'])} products",
          file=sys.stderr)
    return 0


def load_or_describe(data: Path, cache: Path, side: int, augment: int) -> Pairs:
    from inference.preprocess import PreprocessSpec

    if cache.is_file():
        print(f"using {cache} (delete it to recompute)", file=sys.stderr)
        return Pairs.load(cache)
    pairs = describe_benchmark(data, PreprocessSpec(side, side), augment)
    pairs.save(cache)
    return pairs


if __name__ == "__main__":
    sys.exit(main())
