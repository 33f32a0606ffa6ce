"""Tests for the synthetic packaging dataset (datatools/synth.py)."""
from __future__ import annotations

import csv
import io
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datatools import synth
from datatools.synth import DEFECT_KINDS, write_dataset

# Small frames keep the whole file fast; the artwork itself is always full size.
SMALL = {"n_train": 9, "n_val": 4, "n_test": 6, "products": 2, "image_size": (160, 120), "progress": False}
HOLDOUT = ("logo", "hologram")
MANIFEST_COLUMNS = ["path", "split", "label", "product", "defect", "jpeg_quality"]


def read_manifest(out: Path) -> list[dict[str, str]]:
    with (out / "manifest.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def file_bytes(out: Path) -> dict[str, bytes]:
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def plain(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("plain") / "data"
    return out, write_dataset(out, seed=0, **SMALL)


@pytest.fixture(scope="module")
def held_out(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("held") / "data"
    return out, write_dataset(out, seed=0, holdout=HOLDOUT, **SMALL)


# --------------------------------------------------------------------------- layout and manifest


def test_layout_counts_and_manifest_agree(plain):
    out, summary = plain
    rows = read_manifest(out)
    jpgs = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.jpg"))
    assert sorted(row["path"] for row in rows) == jpgs
    assert sorted(p.name for p in out.iterdir()) == ["ORIGIN.json", "manifest.csv", "test", "train", "val"]
    expected = {"train": {"genuine": 5, "counterfeit": 4}, "val": {"genuine": 2, "counterfeit": 2},
                "test": {"genuine": 3, "counterfeit": 3}}
    assert summary["counts"] == expected
    per_class = {(split, label): n for split, by_label in expected.items() for label, n in by_label.items()}
    assert Counter((r["split"], r["label"]) for r in rows) == per_class
    for row in rows:
        split, label, product, name = row["path"].split("/")
        assert (split, label, product) == (row["split"], row["label"], row["product"])
        assert name.startswith(f"{split}-") and name.endswith(".jpg") and len(name) == len(split) + 10
        assert (row["defect"] == "") == (label == "genuine")
    assert {p.name for p in (out / "train" / "counterfeit").iterdir()} == {"product-a", "product-b"}


def test_manifest_header_and_summary(plain):
    out, summary = plain
    with (out / "manifest.csv").open(encoding="utf-8") as handle:
        assert handle.readline().strip().split(",") == MANIFEST_COLUMNS
    assert summary == {"out": str(out), "counts": summary["counts"], "defects_train": list(DEFECT_KINDS),
                       "defects_unseen": [], "seed": 0}


def test_products_and_defects_are_spread_evenly(plain):
    rows = read_manifest(plain[0])
    for split in ("train", "val", "test"):
        for label in ("genuine", "counterfeit"):
            per_product = Counter(r["product"] for r in rows if r["split"] == split and r["label"] == label)
            assert max(per_product.values()) - min(per_product.values()) <= 1
    kinds = Counter(r["defect"] for r in rows if r["label"] == "counterfeit")
    assert set(kinds) <= set(DEFECT_KINDS)
    assert len(kinds) >= 5  # 9 counterfeits over 3 splits, each drawing kinds from a shuffled cycle
    assert max(Counter(r["defect"] for r in rows if r["split"] == "train" and r["defect"]).values()) == 1


def test_file_order_does_not_reveal_the_class(plain):
    by_index = sorted(read_manifest(plain[0]), key=lambda r: r["path"].rsplit("/", 1)[1])
    train = [r["label"] for r in by_index if r["split"] == "train"]
    assert train != sorted(train) and train != sorted(train, reverse=True)


def test_odd_split_gives_genuine_the_extra_image(tmp_path):
    summary = write_dataset(tmp_path / "d", n_train=3, n_val=2, n_test=2, products=1, image_size=(96, 72),
                            progress=False)
    assert summary["counts"]["train"] == {"genuine": 2, "counterfeit": 1}


# --------------------------------------------------------------------------- holdout


def test_holdout_keeps_kinds_out_of_training_and_writes_unseen_split(held_out):
    out, summary = held_out
    rows = read_manifest(out)
    seen = [r["defect"] for r in rows if r["split"] in ("train", "val", "test") and r["label"] == "counterfeit"]
    unseen = [r for r in rows if r["split"] == "test-unseen"]
    assert seen and not set(seen) & set(HOLDOUT)
    assert Counter(r["label"] for r in unseen) == {"genuine": 3, "counterfeit": 3}
    assert {r["defect"] for r in unseen if r["label"] == "counterfeit"} == set(HOLDOUT)
    assert (out / "test-unseen" / "genuine" / "product-a").is_dir()
    assert summary["defects_unseen"] == ["logo", "hologram"]
    assert summary["defects_train"] == [k for k in DEFECT_KINDS if k not in HOLDOUT]
    assert summary["counts"]["test-unseen"] == {"genuine": 3, "counterfeit": 3}


def test_unseen_genuine_photos_are_new(held_out):
    out, _ = held_out
    test = {p.read_bytes() for p in (out / "test" / "genuine").rglob("*.jpg")}
    unseen = {p.read_bytes() for p in (out / "test-unseen" / "genuine").rglob("*.jpg")}
    assert not test & unseen


def test_no_unseen_split_without_holdout(plain):
    assert not (plain[0] / "test-unseen").exists()
    assert "test-unseen" not in plain[1]["counts"]


# --------------------------------------------------------------------------- determinism


def test_same_seed_gives_byte_identical_files(plain, tmp_path):
    again = tmp_path / "again"
    write_dataset(again, seed=0, **SMALL)
    assert file_bytes(again) == file_bytes(plain[0])


def test_different_seed_gives_different_images(plain, tmp_path):
    other = tmp_path / "other"
    write_dataset(other, seed=1, **SMALL)
    first, second = file_bytes(plain[0]), file_bytes(other)
    shared = [path for path in first if path.endswith(".jpg") and path in second]
    assert all(first[path] != second[path] for path in shared)
    assert synth.make_product_design(0, 0) != synth.make_product_design(1, 0)


def test_worker_pool_gives_the_same_bytes(plain, tmp_path, monkeypatch):
    monkeypatch.setattr(synth, "_PARALLEL_MIN_JOBS", 1)
    pooled = tmp_path / "pooled"
    write_dataset(pooled, seed=0, **SMALL)
    assert file_bytes(pooled) == file_bytes(plain[0])


def test_product_identity_does_not_depend_on_split_sizes(plain, tmp_path):
    # Different train/val sizes and an extra product: the test split (same n_test) is unchanged
    # only if products look the same and each image depends on its own seed alone.
    resized = tmp_path / "resized"
    write_dataset(resized, seed=0, **{**SMALL, "n_train": 4, "n_val": 7})
    original = {k: v for k, v in file_bytes(plain[0]).items() if k.startswith("test/")}
    assert original and {k: v for k, v in file_bytes(resized).items() if k.startswith("test/")} == original
    designs = [synth.make_product_design(0, i) for i in range(4)]
    assert len({d.brand.text for d in designs}) == 4


# --------------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"holdout": ("font", "smudge")}, "unknown defect kind(s) 'smudge' in holdout: choose from font, colour"),
    ({"holdout": DEFECT_KINDS}, "holdout cannot contain every defect kind"),
    ({"n_train": 1}, "n_train must be at least 2"),
    ({"n_val": 0}, "n_val must be at least 2"),
    ({"n_test": -3}, "n_test must be at least 2"),
    ({"products": 0}, "products must be at least 1"),
    ({"seed": -1}, "seed must be a non-negative integer"),
    ({"image_size": (32, 480)}, "image_size must be (width, height)"),
])
def test_bad_arguments_raise_and_write_nothing(tmp_path, kwargs, message):
    out = tmp_path / "never"
    with pytest.raises(ValueError) as error:
        write_dataset(out, progress=False, **kwargs)
    assert message in str(error.value) and "\n" not in str(error.value)
    assert not out.exists()


def test_non_empty_output_folder_is_refused(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(ValueError, match="already exists and is not empty: choose a new folder"):
        write_dataset(tmp_path, **SMALL)
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_empty_existing_folder_is_accepted(tmp_path):
    write_dataset(tmp_path, n_train=2, n_val=2, n_test=2, products=1, image_size=(96, 72), progress=False)
    assert (tmp_path / "manifest.csv").is_file()


# --------------------------------------------------------------------------- nothing but pixels tells the class


def test_both_classes_share_size_mode_and_metadata(held_out):
    out, _ = held_out
    rows = read_manifest(out)
    for row in rows:
        with Image.open(out / row["path"]) as image:
            assert (image.format, image.mode, image.size) == ("JPEG", "RGB", (160, 120))
            assert not image.getexif() and "exif" not in image.info and "icc_profile" not in image.info
        assert 75 <= int(row["jpeg_quality"]) <= 95
    sizes = {label: np.mean([(out / r["path"]).stat().st_size for r in rows if r["label"] == label])
             for label in ("genuine", "counterfeit")}
    assert 0.8 < sizes["genuine"] / sizes["counterfeit"] < 1.25


def test_jpeg_quality_comes_from_the_photo_not_the_class():
    design = synth.make_product_design(0, 0)
    qualities = {}
    for label, defect in (("genuine", ""), ("counterfeit", "reprint"), ("counterfeit", "font")):
        for index in range(6):
            job = synth.ImageJob("val", index, label, 0, defect)
            qualities.setdefault(label + defect, []).append(synth.make_image(0, job, design, (96, 72))[1])
    assert len(set(map(tuple, qualities.values()))) == 1
    assert len(set(qualities["genuine"])) > 1


# --------------------------------------------------------------------------- the defects themselves


@pytest.mark.parametrize("kind", DEFECT_KINDS)
def test_every_defect_visibly_changes_the_artwork_but_keeps_the_product(kind):
    for product in range(4):
        design = synth.make_product_design(0, product)
        genuine = np.asarray(synth.render_artwork(design, 0.25), np.int16)
        for trial in range(3):
            fake = synth.counterfeit_artwork(design, kind, np.random.default_rng([product, trial]), 0.25)
            assert fake.size == synth.ARTWORK_SIZE and fake.mode == "RGB"
            diff = np.abs(genuine - np.asarray(fake, np.int16))
            clearly_changed = (diff.max(axis=2) > 20).mean()
            assert clearly_changed >= 0.001, (kind, product, trial)  # >= ~126 pixels changed by > 20 levels
            assert diff.mean() < 25, (kind, product, trial)  # different products differ far more


def test_genuine_artwork_is_deterministic_and_products_differ():
    first = synth.make_product_design(5, 1)
    assert first == synth.make_product_design(5, 1)
    assert synth.render_artwork(first).tobytes() == synth.render_artwork(synth.make_product_design(5, 1)).tobytes()
    a, b = (np.asarray(synth.render_artwork(synth.make_product_design(5, i)), np.int16) for i in (1, 2))
    assert np.abs(a - b).mean() > 10


def test_misspelling_changes_the_word_and_hologram_defect_removes_iridescence():
    design = synth.make_product_design(0, 0)
    for trial in range(10):
        rng = np.random.default_rng(trial)
        assert synth.counterfeit_design(design, "misspelling", rng).brand.text != design.brand.text
        assert synth.counterfeit_design(design, "hologram", rng).hologram.style in ("flat", "missing")


def test_photograph_frames_the_package():
    artwork = synth.render_artwork(synth.make_product_design(0, 0))
    photo = synth.photograph(artwork, np.random.default_rng(0), (320, 240))
    assert photo.size == (320, 240) and photo.mode == "RGB"
    reloaded = Image.open(io.BytesIO(synth.jpeg_bytes(photo, 80)))
    assert reloaded.size == (320, 240)


def test_import_has_no_side_effects_and_no_torch():
    code = ("import sys, datatools.synth; "
            "assert 'torch' not in sys.modules and 'matplotlib' not in sys.modules, sorted(sys.modules)")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])


def test_an_interrupted_run_leaves_nothing_behind(tmp_path, monkeypatch):
    calls = []

    def fail_on_third(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return b"jpeg", 90

    monkeypatch.setattr(synth, "make_image", fail_on_third)
    with pytest.raises(KeyboardInterrupt):
        write_dataset(tmp_path / "out", n_train=4, n_val=2, n_test=2, progress=False)
    assert list(tmp_path.iterdir()) == []
