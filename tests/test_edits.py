"""Print-plausible counterfeit edits of package photos (datatools/edits.py) and the real-photo benchmark
builder (datatools/real_benchmark.py), on tiny drawn packages: no real photos needed."""

from __future__ import annotations

import csv
import io

import cv2
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from datatools.edits import EDITS, KINDS, edit_hue, edit_shift, package_region
from datatools.real_benchmark import build

PACKAGE_BOX = (40, 24, 120, 156)  # x0, y0, x1, y1 of the drawn package in a 160x180 photo
PHOTO_SIZE = (160, 180)


def _font(size: int):
    try:
        return ImageFont.load_default(size)
    except TypeError:  # Pillow < 10.1: one bitmap size
        return ImageFont.load_default()


def artwork(variant: int = 0) -> Image.Image:
    """A flat package print: a blue ground, a red band, a yellow logo, black words and fine print."""
    art = Image.new("RGB", (80, 132), (40, 90, 200))
    draw = ImageDraw.Draw(art)
    draw.rectangle((0, 86, 79, 104), fill=(200, 40, 40))
    draw.ellipse((24, 8, 56, 40), fill=(250, 220, 40))
    draw.polygon([(40, 13), (50, 34), (30, 34)], fill=(20, 20, 20))
    draw.text((6, 46), "BRAND", fill=(255, 255, 255), font=_font(14))
    for row in range(3):
        draw.text((6, 64 + 7 * row), f"fine print {row}{variant}", fill=(255, 255, 255), font=_font(7))
    draw.text((6, 110), "Juice 1L", fill=(250, 220, 40), font=_font(10))
    return art


def photo(seed: int = 0, variant: int = 0, noisy: bool = True) -> tuple[Image.Image, np.ndarray]:
    """The artwork held in front of a textured shelf -> (photo, true package mask)."""
    rng = np.random.default_rng(seed)
    width, height = PHOTO_SIZE
    if noisy:
        coarse = rng.integers(90, 170, (6, 6, 3)).astype(np.uint8)
        ground = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC).astype(np.int16)
        ground += rng.integers(-6, 7, ground.shape).astype(np.int16)
    else:
        ground = np.full((height, width, 3), 150, np.int16)
    pixels = np.clip(ground, 0, 255).astype(np.uint8)
    x0, y0, x1, y1 = PACKAGE_BOX
    pixels[y0:y1, x0:x1] = np.asarray(artwork(variant))
    mask = np.zeros((height, width), np.uint8)
    mask[y0:y1, x0:x1] = 255
    return Image.fromarray(pixels), mask


@pytest.fixture(scope="module")
def package():
    return photo()


@pytest.mark.parametrize("kind", KINDS)
def test_each_edit_changes_the_package_and_nothing_else(package, kind):
    image, mask = package
    edited = np.asarray(EDITS[kind](image, mask, np.random.default_rng(1))).astype(int)
    change = np.abs(edited - np.asarray(image)).sum(axis=2)
    assert change[mask == 0].max() == 0, "pixels outside the package changed"
    assert np.count_nonzero(change[mask > 0] > 12) >= 15, "the package did not really change"


@pytest.mark.parametrize("kind", KINDS)
def test_edits_are_deterministic_per_seed(package, kind):
    image, mask = package
    first = np.asarray(EDITS[kind](image, mask, np.random.default_rng(7)))
    again = np.asarray(EDITS[kind](image, mask, np.random.default_rng(7)))
    assert np.array_equal(first, again)


def test_another_seed_gives_another_edit(package):
    image, mask = package
    results = {np.asarray(edit_hue(image, mask, np.random.default_rng(seed))).tobytes() for seed in range(3)}
    assert len(results) > 1


def test_hue_turns_the_main_ink_by_at_least_10_degrees(package):
    image, mask = package
    edited = edit_hue(image, mask, np.random.default_rng(3))
    before = cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2HSV_FULL).astype(int)
    after = cv2.cvtColor(np.asarray(edited), cv2.COLOR_RGB2HSV_FULL).astype(int)
    x0, y0, x1, y1 = PACKAGE_BOX
    ink = np.zeros(mask.shape, bool)  # the blue ground, well inside the package, away from its drawings
    ink[y0 + 6:y0 + 10, x0 + 6:x1 - 6] = True
    ink[y1 - 10:y1 - 6, x0 + 6:x1 - 6] = True
    turned = np.abs((after[..., 0] - before[..., 0] + 128) % 256 - 128) * 360 / 256
    assert np.median(turned[ink]) >= 10


def test_shift_moves_an_element(package):
    image, mask = package
    plain = np.asarray(image).copy()
    x0, y0, x1, y1 = PACKAGE_BOX
    plain[y0:y1, x0:x1] = (40, 90, 200)
    plain[y0 + 50:y0 + 70, x0 + 25:x0 + 55] = (250, 220, 40)  # one element on a plain package
    edited = np.asarray(edit_shift(Image.fromarray(plain), mask, np.random.default_rng(2)))

    def centre(pixels):
        ys, xs = np.nonzero((pixels[..., 0] > 200) & (pixels[..., 2] < 120))
        return np.array([xs.mean(), ys.mean()])

    size = np.sqrt(np.count_nonzero(mask))
    assert np.linalg.norm(centre(edited) - centre(plain)) >= 0.02 * size


def _iou(found: np.ndarray, truth: np.ndarray) -> float:
    found, truth = found > 0, truth > 0
    return np.count_nonzero(found & truth) / np.count_nonzero(found | truth)


def test_package_region_registers_the_artwork():
    image, mask = photo(seed=4)
    found, method = package_region(image, artwork())
    assert method == "artwork"
    assert found.shape == mask.shape and found.dtype == np.uint8
    assert _iou(found, mask) >= 0.7


def test_package_region_falls_back_to_grabcut_without_artwork():
    image, mask = photo(seed=5, noisy=False)
    found, method = package_region(image, None)
    assert method == "grabcut"
    assert np.count_nonzero((found > 0) & (mask > 0)) >= 0.6 * np.count_nonzero(mask)
    assert np.count_nonzero((found > 0) & (mask == 0)) <= 0.2 * np.count_nonzero(found)


# --------------------------------------------------------------------------- the benchmark builder

PRODUCTS = {"Fake-Apple-Juice": ("Juice", 3), "Fake-Oat-Milk": ("Milk", 0)}  # product: (category, val photos)


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=75)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def grocery(tmp_path_factory):
    """A tiny source tree in the Grocery Store Dataset's layout: 2 products, 8 train photos each, val
    photos for one of them only, 4 test photos, an iconic image each, and a LICENSE."""
    src = tmp_path_factory.mktemp("grocery") / "grocery-packages"
    seed = 0
    for product, (category, n_val) in PRODUCTS.items():
        for split, count in (("train", 8), ("val", n_val), ("test", 4)):
            folder = src / "dataset" / split / "Packages" / category / product
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                seed += 1
                (folder / f"{product}_{index + 1:03d}.jpg").write_bytes(_jpeg(photo(seed, variant=index % 3)[0]))
        iconic = src / "dataset" / "iconic-images-and-descriptions" / "Packages" / category / product
        iconic.mkdir(parents=True)
        page = Image.new("RGB", (120, 160), (255, 255, 255))
        page.paste(artwork(), (20, 14))
        page.save(iconic / f"{product}_Iconic.jpg", quality=90)
    (src / "LICENSE").write_text("MIT License\n")
    return src


@pytest.fixture(scope="module")
def built(grocery, tmp_path_factory):
    out = tmp_path_factory.mktemp("built") / "real"
    summary = build(grocery, out, seed=0)
    with (out / "manifest.csv").open(encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return out, summary, rows


def test_build_writes_the_layout(built, grocery):
    out, summary, rows = built
    for split in ("train", "val", "test"):
        for product in PRODUCTS:
            assert any((out / split / "genuine" / product).glob("*.jpg"))
    assert (out / "train" / "counterfeit").is_dir() and not any((out / "train" / "counterfeit").iterdir())
    assert all((out / split / "counterfeit" / product).is_dir() for split in ("val", "test") for product in PRODUCTS)
    assert (out / "LICENSE").read_text() == "MIT License\n"
    assert "Klasson" in (out / "README.md").read_text()
    assert list(rows[0]) == ["path", "split", "label", "product", "kind", "source", "region_method"]
    assert {r["path"] for r in rows} == {p.relative_to(out).as_posix() for p in out.rglob("*.jpg")}
    # train keeps all but its last 6 photos; those join val, where half are copied and half edited
    assert summary["counts"]["train"] == {"genuine": 4, "counterfeit": 0}
    assert summary["counts"]["val"] == {"genuine": 5 + 3, "counterfeit": 4 + 3}
    assert summary["counts"]["test"] == {"genuine": 4, "counterfeit": 4 * len(KINDS)}
    for row in rows:
        if row["label"] == "genuine" and row["split"] == "train":  # copied byte for byte
            assert (out / row["path"]).read_bytes() == (grocery / "dataset" / row["source"]).read_bytes()
        elif row["label"] == "genuine":  # one more JPEG generation, like the counterfeits: no cue in the files
            copy, source = (Image.open(path) for path in (out / row["path"], grocery / "dataset" / row["source"]))
            assert copy.quantization == source.quantization and copy.size == source.size
            assert (out / row["path"]).read_bytes() != (grocery / "dataset" / row["source"]).read_bytes()


def test_build_uses_an_edited_photo_nowhere_else(built):
    _, _, rows = built
    genuine = [r["source"] for r in rows if r["label"] == "genuine"]
    edited = {r["source"] for r in rows if r["label"] == "counterfeit"}
    assert len(genuine) == len(set(genuine))
    assert not edited & set(genuine)
    assert all(r["region_method"] in ("artwork", "grabcut") for r in rows if r["label"] == "counterfeit")


def test_build_covers_every_kind_in_test(built):
    out, summary, rows = built
    for product in PRODUCTS:
        kinds = {r["kind"] for r in rows if r["split"] == "test" and r["product"] == product and r["kind"]}
        assert kinds == set(KINDS)
    names = [r["path"].rsplit("/", 1)[1] for r in rows if r["split"] == "test" and r["label"] == "counterfeit"]
    assert all(name.rsplit("__", 1)[1][:-4] in KINDS for name in names)
    edited = Image.open(out / next(r["path"] for r in rows if r["label"] == "counterfeit"))
    assert edited.format == "JPEG" and edited.size == PHOTO_SIZE


def test_build_is_deterministic_and_selects_products(built, grocery, tmp_path):
    out, _, _ = built
    again = tmp_path / "again"
    summary = build(grocery, again, seed=0, products=["Fake-Oat-Milk"])
    assert summary["products"] == ["Fake-Oat-Milk"]
    for path in again.rglob("*.jpg"):
        assert path.read_bytes() == (out / path.relative_to(again)).read_bytes()


def test_build_rejects_a_folder_that_is_not_the_dataset(tmp_path, grocery):
    with pytest.raises(ValueError, match="Packages"):
        build(tmp_path, tmp_path / "out")
    with pytest.raises(ValueError, match="unknown product"):
        build(grocery, tmp_path / "out", products=["Nope"])


def test_cli_data_real(run_cli, grocery, tmp_path):
    code, _, err = run_cli("data", "real", grocery, tmp_path / "out", "--seed", "1", "--products", "Fake-Oat-Milk")
    assert code == 0 and "wrote" in err
    assert (tmp_path / "out" / "manifest.csv").is_file()
    code, _, err = run_cli("data", "real", tmp_path / "out", tmp_path / "other")
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "not the grocery packages dataset" in err
