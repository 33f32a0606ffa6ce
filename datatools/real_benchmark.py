"""The real-photo benchmark: genuine phone photos of grocery packages, and counterfeits made from other
photos of the same packages by print-plausible edits (datatools/edits.py). Torch-free.

Source: the Grocery Store Dataset's Packages part (Klasson, Zhang, Kjellstrom, WACV 2019, MIT licence),
laid out as SRC/dataset/{train,val,test}/Packages/<category>/<product>/*.jpg with the product's artwork in
SRC/dataset/iconic-images-and-descriptions/Packages/<category>/<product>/<product>_Iconic.jpg.

Written in the project's layout (inference/layout.py): OUT/{train,val,test}/{genuine,counterfeit}/<product>/.

- train/genuine: the product's source train photos, byte for byte, but its last TO_VAL (by name), which
  go to val; train/counterfeit stays empty (the reference recipe learns from genuine photos only).
- val: a pool of the source val photos and those last train photos, sorted by name: alternately a
  genuine (copied) and a source edited into one counterfeit, the kinds cycling (from a point that
  depends on the product's name, so that together the products cover every kind).
- test: the source test photos, sorted by name: alternately a genuine (copied) and a source edited once
  with every kind (`<stem>__<kind>.jpg`).

A photo edited into counterfeits is never a genuine anywhere, and no source photo is used twice. Edited
photos are written with the source's own JPEG quantisation tables and chroma subsampling, so that the
file format tells nothing of the label. OUT/manifest.csv lists every file with its source photo.
"""

from __future__ import annotations

import csv
import io
import shutil
import zlib
from collections import Counter
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, JpegImagePlugin

from datatools.edits import EDITS, KINDS, package_region
from datatools.synth import with_progress
from inference.classes import CLASSES, COUNTERFEIT, GENUINE
from inference.provenance import write_origin

SPLITS = ("train", "val", "test")
TO_VAL = 6  # the last this many source train photos of each product (by name) join its val pool
FALLBACK_QUALITY = 90  # JPEG quality when a source's quantisation tables cannot be reused
MANIFEST_COLUMNS = ("path", "split", "label", "product", "kind", "source", "region_method")
EXPECTED = ("SRC/dataset/{train,val,test}/Packages/<category>/<product>/*.jpg and "
            "SRC/dataset/iconic-images-and-descriptions/Packages/<category>/<product>/<product>_Iconic.jpg "
            "(the Grocery Store Dataset's Packages part)")

ATTRIBUTION = ("Grocery Store Dataset: M. Klasson, C. Zhang, H. Kjellstrom, \"A Hierarchical Grocery Store "
               "Image Dataset with Visual and Semantic Labels\", IEEE Winter Conference on Applications of "
               "Computer Vision (WACV), 2019. MIT licence (LICENSE).")


def _dataset_root(src: Path) -> Path:
    """SRC/dataset (or SRC itself when it is the dataset folder); ValueError naming the layout otherwise."""
    for root in (src / "dataset", src):
        if all((root / split / "Packages").is_dir() for split in SPLITS):
            return root
    raise ValueError(f"{src} is not the grocery packages dataset: expected {EXPECTED}")


def _products(root: Path) -> dict[str, str]:
    """product -> category, from the train split."""
    found = {}
    for folder in sorted((root / "train" / "Packages").glob("*/*")):
        if folder.is_dir() and any(folder.glob("*.jpg")):
            found[folder.name] = folder.parent.name
    if not found:
        raise ValueError(f"{root / 'train' / 'Packages'} holds no <category>/<product>/*.jpg: expected {EXPECTED}")
    return found


def _photos(root: Path, split: str, category: str, product: str) -> list[Path]:
    return sorted((root / split / "Packages" / category / product).glob("*.jpg"))


def _artwork(root: Path, category: str, product: str) -> Image.Image | None:
    folder = root / "iconic-images-and-descriptions" / "Packages" / category / product
    found = sorted(folder.glob("*_Iconic.jpg"))
    if not found:
        return None
    with Image.open(found[0]) as image:
        return image.convert("RGB")


def _check_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out} exists and is not a folder: choose a new folder")
    if out.is_dir() and any(out.iterdir()):
        raise ValueError(f"{out} already exists and is not empty: choose a new folder")


def _rng(seed: int, source: str, kind: str) -> np.random.Generator:
    """One generator per (source photo, kind): the same edit whatever the order or the products chosen."""
    return np.random.default_rng([seed, zlib.crc32(source.encode()), zlib.crc32(kind.encode())])


def encode_like(image: Image.Image, source: Image.Image) -> bytes:
    """JPEG bytes of `image` with the source file's quantisation tables and chroma subsampling (Pillow's
    quality='keep' for a new image), or quality FALLBACK_QUALITY when the source carries none."""
    buffer = io.BytesIO()
    tables = getattr(source, "quantization", None)
    if source.format == "JPEG" and tables:
        options = {"qtables": tables, "subsampling": JpegImagePlugin.get_sampling(source)}
        if source.info.get("progressive"):
            options["progressive"] = True
    else:
        options = {"quality": FALLBACK_QUALITY}
    image.convert("RGB").save(buffer, "JPEG", **options)
    return buffer.getvalue()


class _Writer:
    def __init__(self, root: Path, dataset: Path):
        self.root, self.dataset, self.rows = root, dataset, []

    def source(self, path: Path) -> str:
        return path.relative_to(self.dataset).as_posix()

    def copy(self, path: Path, split: str, product: str, name: str) -> None:
        """Train genuines byte for byte; val and test genuines decoded and saved once more, exactly as the
        counterfeits beside them are (encode_like), so that one more JPEG generation is no cue to a verdict."""
        target = self.root / split / GENUINE / product / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if split == "train":
            shutil.copyfile(path, target)
        else:
            with Image.open(path) as source:
                target.write_bytes(encode_like(source.convert("RGB"), source))
        self._row(target, split, GENUINE, product, "", path, "")

    def edited(self, data: bytes, split: str, product: str, name: str, kind: str, path: Path, method: str) -> None:
        target = self.root / split / COUNTERFEIT / product / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        self._row(target, split, COUNTERFEIT, product, kind, path, method)

    def _row(self, target, split, label, product, kind, path, method) -> None:
        self.rows.append({"path": target.relative_to(self.root).as_posix(), "split": split, "label": label,
                          "product": product, "kind": kind, "source": self.source(path), "region_method": method})


def _counterfeits(writer: _Writer, path: Path, artwork, kinds: Sequence[str], split: str, product: str,
                  name_of, seed: int) -> str:
    """Edit one source photo once per kind; -> the region method used."""
    with Image.open(path) as source:
        source.load()
        photo = source.convert("RGB")
        mask, method = package_region(photo, artwork)
        for kind in kinds:
            edited = EDITS[kind](photo, mask, _rng(seed, writer.source(path), kind))
            writer.edited(encode_like(edited, source), split, product, name_of(kind), kind, path, method)
    return method


def _plan(root: Path, products: dict[str, str]) -> list[tuple[str, str, list[Path], list[Path], list[Path]]]:
    """Per product: (product, category, train genuines, val pool, test photos)."""
    plan = []
    for product, category in products.items():
        train = _photos(root, "train", category, product)
        if len(train) <= TO_VAL:
            raise ValueError(f"{product} has {len(train)} train photos: at least {TO_VAL + 1} are needed")
        pool = sorted(_photos(root, "val", category, product) + train[-TO_VAL:], key=lambda p: (p.name, p.parts))
        plan.append((product, category, train[:-TO_VAL], pool, _photos(root, "test", category, product)))
    return plan


def _val_name(root: Path, path: Path, kind: str = "") -> str:
    split = path.relative_to(root).parts[0]
    return f"{split}-{path.stem}{'__' + kind if kind else ''}.jpg"


def build(src: str | Path, out: str | Path, seed: int = 0, products: Sequence[str] | None = None,
          progress: bool = False) -> dict:
    """Write the benchmark to OUT (a new or empty folder) from the dataset at SRC; -> a summary dict.

    ValueError, before anything is written, when SRC is not the dataset, a product is unknown, or OUT
    is not empty."""
    src, out = Path(src), Path(out)
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not src.is_dir():
        raise ValueError(f"{src} is not a folder: expected {EXPECTED}")
    root = _dataset_root(src)
    known = _products(root)
    if products:
        unknown = [p for p in products if p not in known]
        if unknown:
            raise ValueError(f"unknown product(s) {', '.join(unknown)}: choose from {', '.join(known)}")
        known = {p: known[p] for p in known if p in set(products)}
    _check_out(out)
    plan = _plan(root, known)
    licence = next((p for p in (src / "LICENSE", root / "LICENSE", root.parent / "LICENSE") if p.is_file()), None)

    partial = out.with_name(f".{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        writer = _Writer(partial, root)
        (partial / "train" / COUNTERFEIT).mkdir(parents=True)
        products_planned = with_progress(plan, progress, f"real benchmark {out.name}", unit="product")
        for product, category, train, pool, test in products_planned:
            artwork = _artwork(root, category, product)
            cycle = zlib.crc32(product.encode()) % len(KINDS)  # each product starts the kinds elsewhere
            for path in train:
                writer.copy(path, "train", product, path.name)
            for index, path in enumerate(pool):
                if index % 2 == 0:
                    writer.copy(path, "val", product, _val_name(root, path))
                else:
                    kind = KINDS[cycle % len(KINDS)]
                    cycle += 1
                    _counterfeits(writer, path, artwork, [kind], "val", product,
                                  lambda k, p=path: _val_name(root, p, k), seed)
            for index, path in enumerate(test):
                if index % 2 == 0:
                    writer.copy(path, "test", product, path.name)
                else:
                    _counterfeits(writer, path, artwork, KINDS, "test", product,
                                  lambda k, p=path: f"{p.stem}__{k}.jpg", seed)
        _check_sources(writer.rows)
        _write_manifest(partial / "manifest.csv", writer.rows)
        write_origin(partial, photos="real", counterfeits="edited", made_by=f"counterfeit data real --seed {seed}")
        if licence is not None:
            shutil.copyfile(licence, partial / "LICENSE")
        summary = _summary(out, seed, writer.rows, licence is not None)
        (partial / "README.md").write_text(_readme(summary), encoding="utf-8")
        if out.is_dir():
            out.rmdir()  # checked empty above
        partial.rename(out)
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    return summary


def _check_sources(rows: list[dict]) -> None:
    """The promise of the benchmark: an edited photo's source is never a genuine, and no genuine is
    copied twice."""
    genuine = Counter(r["source"] for r in rows if r["label"] == GENUINE)
    edited = {r["source"] for r in rows if r["label"] == COUNTERFEIT}
    if any(count > 1 for count in genuine.values()) or edited & set(genuine):
        raise RuntimeError("a source photo was used twice")  # a bug in the plan above, never the data's fault


def _write_manifest(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, MANIFEST_COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(sorted(rows, key=lambda r: r["path"]))


def _summary(out: Path, seed: int, rows: list[dict], licence: bool) -> dict:
    counts = {split: {label: 0 for label in CLASSES} for split in SPLITS}
    kinds = {split: {kind: 0 for kind in KINDS} for split in SPLITS}
    for row in rows:
        counts[row["split"]][row["label"]] += 1
        if row["kind"]:
            kinds[row["split"]][row["kind"]] += 1
    sources = {}
    for row in rows:
        if row["label"] == COUNTERFEIT:
            sources[row["source"]] = row["region_method"]
    return {"out": str(out), "seed": seed, "products": sorted({r["product"] for r in rows}), "counts": counts,
            "kinds": kinds, "region_methods": dict(sorted(Counter(sources.values()).items())),
            "edited_sources": len(sources), "licence_copied": licence}


def _readme(summary: dict) -> str:
    counts = summary["counts"]
    table = "\n".join(f"| {split} | {counts[split][GENUINE]} | {counts[split][COUNTERFEIT]} |" for split in SPLITS)
    methods = ", ".join(f"{name} {count}" for name, count in summary["region_methods"].items())
    return f"""# Real-photo benchmark: grocery packages

Real phone photographs of {len(summary['products'])} grocery packages, and counterfeits made from other photos of
the same packages by print-plausible edits. Built by `counterfeit data real SRC OUT --seed {summary['seed']}`
(datatools/real_benchmark.py, datatools/edits.py).

## Source and licence

{ATTRIBUTION}
The photos are copied or edited from that dataset; keep `LICENSE` and this attribution with any copy.

## How it was built

- `train/genuine/<product>/`: the product's source train photos, byte for byte, except its last {TO_VAL} by name.
  `train/counterfeit/` is empty: the reference recipe learns from genuine photos only.
- `val/`: the source val photos and those last {TO_VAL} train photos, sorted by name; alternately copied as a
  genuine and edited into one counterfeit (the kinds cycle, from a product-dependent start). Names:
  `<source split>-<stem>[__<kind>].jpg`.
- `test/`: the source test photos, sorted by name; alternately copied as a genuine and edited once with every
  kind (`<stem>__<kind>.jpg`).
- A photo edited into counterfeits is never a genuine anywhere. Edits change only the package's print: its
  region is the product's artwork registered to the photo (SIFT, RANSAC homography) or, where that fails,
  GrabCut from the middle of the frame (`region_method` in the manifest; edited sources: {methods}).
- Kinds: {', '.join(KINDS)} (see datatools/edits.py for what each changes and by how much).
- Edited photos are saved with the source file's JPEG quantisation tables and chroma subsampling; so are
  the val and test genuines (decoded and saved once more), so that both classes have been through the
  same number of JPEG generations. Train genuines are byte copies.
- `manifest.csv`: path, split, label, product, kind, source (path in the source dataset), region_method.

| split | genuine | counterfeit |
| --- | --- | --- |
{table}
"""
