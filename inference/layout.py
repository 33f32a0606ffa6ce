"""The data layout users bring: DATA/{train,val,test}/{genuine,counterfeit}/[product line/]image.

Listing is torch-free so evaluation and calibration can run from a serving install.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from inference.classes import CLASSES
from inference.images import IMAGE_SUFFIXES

SPLITS = ("train", "val", "test")


class DataError(ValueError):
    """The data folder is unusable as given; the message names the path and the fix."""


@dataclass(frozen=True)
class Sample:
    path: Path
    label: int  # index into CLASSES
    product: str  # product line: the sub-folder under the class folder, "" when files sit directly there


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def list_split(root: str | Path, split: str, optional: tuple[str, ...] = ()) -> list[Sample]:
    """All image files of DATA/split, sorted; a missing or empty split or class folder is a DataError,
    except for the classes named in `optional` (the reference recipe learns from genuines alone)."""
    split_dir = Path(root) / split
    if not split_dir.is_dir():
        raise DataError(f"Missing split folder {split_dir}: expected {split_dir}/{{{','.join(CLASSES)}}}/...")
    return list_labelled(split_dir, optional)


def list_labelled(folder: Path, optional: tuple[str, ...] = ()) -> list[Sample]:
    """All images of a folder holding one sub-folder per class (those in `optional` may be empty or absent)."""
    missing = [folder / name for name in CLASSES if not (folder / name).is_dir() and name not in optional]
    if missing:
        raise DataError(f"Missing class folder {missing[0]}: put the {missing[0].name} photos there.")
    samples = []
    for label, name in enumerate(CLASSES):
        class_dir = folder / name
        files = image_files(class_dir) if class_dir.is_dir() else []
        if not files and name not in optional:
            raise DataError(f"Empty class folder {class_dir}: it has no {'/'.join(IMAGE_SUFFIXES)} images.")
        samples += [Sample(path, label, _product_line(class_dir, path)) for path in files]
    return samples


def resolve_labelled(path: str | Path, default_split: str) -> Path:
    """A folder with class sub-folders: `path` itself, or `path/default_split` for a DATA root."""
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"No such folder: {path}")
    if any((path / name).is_dir() for name in CLASSES):
        return path
    if (path / default_split).is_dir():
        return path / default_split
    raise DataError(f"{path} holds neither {'/'.join(CLASSES)} folders nor a {default_split}/ split.")


def _product_line(class_dir: Path, path: Path) -> str:
    parts = path.relative_to(class_dir).parts
    return parts[0] if len(parts) > 1 else ""
