"""Data audit: each planted problem gives exactly the finding it should; a clean synth set gives none."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datatools import audit as audit_module
from datatools.audit import AuditResult, Finding, audit, exit_code
from datatools.audit_report import write_report
from datatools.synth import jpeg_bytes
from inference import phash
from inference.layout import DataError

from conftest import image_bytes


def jpegs(root: Path, split: str, label: str) -> list[Path]:
    return sorted((root / split / label).rglob("*.jpg"))


def rel(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


def serious(result: AuditResult) -> set[tuple[str, str, frozenset]]:
    """Errors and warnings as (check, severity, files): what a test can compare exactly."""
    return {(f.check, f.severity, frozenset(f.files)) for f in result.findings if f.severity != "info"}


def finding_for(result: AuditResult, *files: str) -> Finding:
    return next(f for f in result.findings if set(f.files) == set(files))


def copy_of(synth_data: Path, tmp_path: Path) -> Path:
    root = tmp_path / "data"
    shutil.copytree(synth_data, root)
    return root


def encode(image: Image.Image, fmt: str, **save) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **save)
    return buffer.getvalue()


# --------------------------------------------------------------------------- a clean set


@pytest.fixture(scope="module")
def clean_result(synth_data) -> AuditResult:
    return audit(synth_data, progress=False, workers=1)


def test_clean_synth_set_has_no_warning_and_no_error(clean_result):
    assert serious(clean_result) == set()
    assert exit_code(clean_result, strict=True) == 0
    assert clean_result.stats["counts"] == {"train": {"genuine": 8, "counterfeit": 8},
                                            "val": {"genuine": 4, "counterfeit": 4},
                                            "test": {"genuine": 4, "counterfeit": 4}}
    assert clean_result.stats["duplicates"]["groups"] == 0  # different photos of one product never match
    assert clean_result.stats["shortcut"]["auc"] < audit_module.SHORTCUT_WARNING_AUC
    assert set(clean_result.stats["shortcut"]["feature_auc"]) == set(audit_module.FEATURE_ORDER)


def test_parallel_audit_matches_serial(synth_data, clean_result, monkeypatch):
    monkeypatch.setattr(audit_module, "PARALLEL_MIN_FILES", 0)
    assert audit(synth_data, progress=False, workers=2).findings == clean_result.findings


def test_missing_split_or_class_folder_is_a_data_error(synth_data, tmp_path):
    root = copy_of(synth_data, tmp_path)
    shutil.rmtree(root / "val" / "counterfeit")  # allowed: a recipe that needs val counterfeits says so
    audit(root, progress=False)
    shutil.rmtree(root / "val" / "genuine")
    with pytest.raises(DataError, match="Missing class folder"):
        audit(root, progress=False)
    shutil.rmtree(root / "val")
    with pytest.raises(DataError, match="Missing split folder"):
        audit(root, progress=False)


def test_test_split_is_optional(synth_data, tmp_path):
    root = copy_of(synth_data, tmp_path)
    shutil.rmtree(root / "test")
    result = audit(root, progress=False)
    assert result.stats["splits"] == ["train", "val"] and serious(result) == set()


# --------------------------------------------------------------------------- planted problems


@pytest.fixture(scope="module")
def planted(synth_data, tmp_path_factory) -> tuple[Path, dict[str, str], AuditResult]:
    """A copy of the synth set with one of each problem; returns root, the planted paths, the audit."""
    root = tmp_path_factory.mktemp("audit") / "planted"
    shutil.copytree(synth_data, root)
    train_genuine, train_fake = jpegs(root, "train", "genuine"), jpegs(root, "train", "counterfeit")
    val_genuine, val_fake = jpegs(root, "val", "genuine"), jpegs(root, "val", "counterfeit")
    paths = {"truncated": train_genuine[0], "empty": train_fake[0].parent / "empty.jpg",
             "png_named_jpg": val_genuine[0], "text": val_fake[0].parent / "notes.jpg",
             "tiff": val_fake[0].parent / "scan.png", "readme": root / "train" / "genuine" / "readme.txt",
             "leak_source": train_genuine[1], "leak_copy": root / "test" / "genuine" / "product-a" / "from-train.jpg",
             "rotated_source": train_genuine[2], "rotated_copy": train_fake[0].parent / "rotated.jpg",
             "duplicate_source": val_fake[0], "duplicate_copy": val_fake[0].parent / "copy.jpg"}
    data = paths["truncated"].read_bytes()
    paths["truncated"].write_bytes(data[: len(data) // 2])
    paths["empty"].write_bytes(b"")
    paths["png_named_jpg"].write_bytes(encode(Image.open(paths["png_named_jpg"]), "PNG"))
    paths["text"].write_text("lot numbers to check: 4411, 4412\n")
    paths["tiff"].write_bytes(image_bytes("TIFF"))
    paths["readme"].write_text("photos from the March shoot\n")
    source = Image.open(paths["leak_source"])
    paths["leak_copy"].write_bytes(encode(source.resize((120, 90)), "JPEG", quality=60))
    rotated = Image.open(paths["rotated_source"]).transpose(Image.Transpose.ROTATE_90)
    paths["rotated_copy"].write_bytes(encode(rotated, "JPEG", quality=92))
    shutil.copyfile(paths["duplicate_source"], paths["duplicate_copy"])
    names = {key: rel(root, path) for key, path in paths.items()}
    return root, names, audit(root, progress=False, workers=1)


def test_planted_problems_give_exactly_their_findings(planted):
    _, p, result = planted
    assert serious(result) == {
        ("files", "error", frozenset({p["truncated"]})),
        ("files", "error", frozenset({p["empty"]})),
        ("files", "error", frozenset({p["text"]})),
        ("files", "error", frozenset({p["tiff"]})),
        ("files", "warning", frozenset({p["png_named_jpg"]})),
        ("files", "warning", frozenset({p["readme"]})),
        ("duplicates", "error", frozenset({p["leak_source"], p["leak_copy"]})),
        ("duplicates", "error", frozenset({p["rotated_source"], p["rotated_copy"]})),
        ("duplicates", "warning", frozenset({p["duplicate_source"], p["duplicate_copy"]})),
    }
    assert exit_code(result, strict=False) == 1


@pytest.mark.parametrize("key, words", [
    ("truncated", ["cannot be decoded", "truncated or corrupt JPEG"]),
    ("empty", ["cannot be decoded", "empty (0 bytes)"]),
    ("text", ["cannot be decoded", "text, not an image"]),
    ("tiff", ["cannot be decoded", "TIFF", "unsupported"]),
    ("png_named_jpg", ["named .jpg", "PNG data", "extension mismatch"]),
    ("readme", ["ignored, not an image suffix"]),
])
def test_file_findings_say_what_is_wrong(planted, key, words):
    _, p, result = planted
    message = finding_for(result, p[key]).message
    assert p[key] in message
    for word in words:
        assert word in message


def test_duplicate_findings_name_the_leak_and_the_edit(planted):
    _, p, result = planted
    leak = finding_for(result, p["leak_source"], p["leak_copy"]).message
    assert "train and test" in leak and "leak" in leak and "resized 160×120 vs 120×90" in leak
    assert p["leak_source"] in leak and p["leak_copy"] in leak
    relabelled = finding_for(result, p["rotated_source"], p["rotated_copy"]).message
    assert "labelled both genuine and counterfeit in train" in relabelled and "rotated 90°" in relabelled
    within = finding_for(result, p["duplicate_source"], p["duplicate_copy"]).message
    assert "2 copies of the same photo in val/counterfeit (identical files)" in within


def test_strict_exit_code_counts_warnings():
    warning = Finding("balance", "warning", "val is imbalanced.")
    error = Finding("files", "error", "1 file cannot be decoded.", ("train/genuine/a.jpg",))
    info = Finding("balance", "info", "Images per split.")
    assert [exit_code(AuditResult("d", [info]), strict) for strict in (False, True)] == [0, 0]
    assert [exit_code(AuditResult("d", [info, warning]), strict) for strict in (False, True)] == [0, 1]
    assert [exit_code(AuditResult("d", [warning, error]), strict) for strict in (False, True)] == [1, 1]
    assert AuditResult("d", [info, warning, error]).errors() == [error]
    assert AuditResult("d", [info, warning, error]).warnings() == [warning]


def test_report_has_json_and_html_with_duplicate_thumbnails(planted, tmp_path):
    _, p, result = planted
    write_report(result, tmp_path / "report")
    saved = json.loads((tmp_path / "report" / "audit.json").read_text(encoding="utf-8"))
    assert saved == json.loads(json.dumps(result.to_dict()))
    assert [(f["check"], f["severity"], f["message"], tuple(f["files"])) for f in saved["findings"]] == [
        (f.check, f.severity, f.message, f.files) for f in result.findings]
    assert saved["summary"] == {"errors": 6, "warnings": 3, "info": sum(f.severity == "info" for f in result.findings)}
    page = (tmp_path / "report" / "report.html").read_text(encoding="utf-8")
    assert page.count("data:image/jpeg;base64,") == 6  # three duplicate pairs
    assert p["leak_copy"] in page and p["rotated_copy"] in page


# --------------------------------------------------------------------------- shortcuts


def test_format_shortcut_is_an_error_naming_the_formats(synth_data, tmp_path):
    root = copy_of(synth_data, tmp_path)
    for split in ("train", "val", "test"):
        for path in jpegs(root, split, "counterfeit"):  # the same kind of content, saved as PNG
            path.with_suffix(".png").write_bytes(encode(Image.open(path), "PNG"))
            path.unlink()
    result = audit(root, progress=False)
    assert serious(result) == {("shortcut", "error", frozenset())}
    message = result.errors()[0].message
    assert "ROC-AUC 1.00" in message
    assert "format: counterfeit are PNG (16/16), genuine are JPEG (16/16)" in message
    assert result.stats["shortcut"]["feature_auc"]["format"] == 1.0


def test_size_shortcut_is_an_error_naming_the_sizes(synth_data, tmp_path):
    root = copy_of(synth_data, tmp_path)
    with (root / "manifest.csv").open(encoding="utf-8") as handle:
        quality = {row["path"]: int(row["jpeg_quality"]) for row in csv.DictReader(handle)}
    for split in ("train", "val", "test"):
        for path in jpegs(root, split, "counterfeit"):  # same encoder, same quality, only smaller
            path.write_bytes(jpeg_bytes(Image.open(path).resize((128, 96)), quality[rel(root, path)]))
    result = audit(root, progress=False)
    assert serious(result) == {("shortcut", "error", frozenset())}
    assert "image size: counterfeit are 128×96 (16/16), genuine are 160×120 (16/16)" in result.errors()[0].message
    assert result.stats["shortcut"]["feature_auc"]["format"] == 0.5


# --------------------------------------------------------------------------- building blocks


@pytest.mark.parametrize("quality", [20, 50, 75, 90, 95])
def test_jpeg_quality_estimate_recovers_the_libjpeg_quality(quality):
    image = Image.open(io.BytesIO(image_bytes("JPEG", quality=quality)))
    assert audit_module.estimate_jpeg_quality(image.quantization) == quality


@pytest.mark.parametrize("transpose, name", [
    (Image.Transpose.ROTATE_90, "rotated 90°"), (Image.Transpose.ROTATE_180, "rotated 180°"),
    (Image.Transpose.ROTATE_270, "rotated 270°"), (Image.Transpose.FLIP_LEFT_RIGHT, "mirrored"),
    (Image.Transpose.FLIP_TOP_BOTTOM, "mirrored and rotated 180°"), (Image.Transpose.TRANSPOSE, None),
    (Image.Transpose.TRANSVERSE, None),
])
def test_near_duplicates_survive_rotation_mirroring_and_reencoding(synth_data, tmp_path, transpose, name):
    original = jpegs(synth_data, "train", "genuine")[3]
    edited = tmp_path / "edited.jpg"
    edited.write_bytes(encode(Image.open(original).transpose(transpose).resize((90, 120) if transpose in (
        Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_270, Image.Transpose.TRANSPOSE,
        Image.Transpose.TRANSVERSE) else (120, 90)), "JPEG", quality=70))
    facts = [audit_module.inspect_file(original, "a"), audit_module.inspect_file(edited, "b")]
    phashes = np.array([f.phashes for f in facts], np.uint64)
    side = audit_module.THUMBNAIL_SIDE
    thumbnails = np.frombuffer(b"".join(f.thumbnail for f in facts), np.uint8).reshape(2, side, side, 3)
    [(i, j, bits, variant)] = audit_module.near_duplicate_pairs(phashes, thumbnails)
    assert (i, j) == (0, 1) and bits <= audit_module.CANDIDATE_BITS
    assert name is None or audit_module.DIHEDRAL_NAMES[variant] == name


def plain_background_photo(artwork: Image.Image, dx: int, dy: int, angle: float, seed: int) -> Image.Image:
    """A box photographed on a plain grey background, as another generator makes them: every photo alike."""
    rng = np.random.default_rng(seed)
    frame = Image.new("RGB", (640, 480), (200, 200, 200))
    box = artwork.convert("RGB").resize((300, 300 * artwork.height // artwork.width))
    mask = Image.new("L", box.size, 255).rotate(angle, expand=True)
    frame.paste(box.rotate(angle, expand=True), (170 + dx, 60 + dy), mask)
    noisy = np.asarray(frame, np.float32) + rng.normal(0, 3, (480, 640, 3))  # sensor noise, levels
    return Image.open(io.BytesIO(encode(Image.fromarray(noisy.clip(0, 255).astype(np.uint8)), "JPEG", quality=90)))


@pytest.fixture(scope="module")
def alike(synth_data, tmp_path_factory) -> tuple[Path, dict[str, str], AuditResult]:
    """The synth set plus, on plain backgrounds, a genuine in train and a counterfeit of the same product in
    test taken alike (moved 6-8 px, turned 0-1 deg): different photos. Plus a 5%-cropped copy of one of them
    in val: a leak."""
    from datatools.synth import counterfeit_artwork, make_product_design, render_artwork

    root = tmp_path_factory.mktemp("alike") / "data"
    shutil.copytree(synth_data, root)
    design = make_product_design(0, 0)
    fake = counterfeit_artwork(design, "colour", np.random.default_rng(2))
    photos = {"train/genuine/product-a/plain-1.jpg": plain_background_photo(render_artwork(design), 0, 0, 0, 1),
              "test/counterfeit/product-a/plain-2.jpg": plain_background_photo(fake, 8, 0, 0, 2),
              "test/counterfeit/product-a/plain-3.jpg": plain_background_photo(fake, 6, 4, 1, 3)}
    for name, photo in photos.items():
        (root / name).write_bytes(encode(photo, "JPEG", quality=90))
    cropped = photos["test/counterfeit/product-a/plain-3.jpg"].crop((16, 12, 624, 468)).resize((640, 480))
    (root / "val/counterfeit/product-a/cropped.jpg").write_bytes(encode(cropped, "JPEG", quality=80))
    return root, photos, audit(root, progress=False, workers=1)


def test_photos_taken_alike_are_not_duplicates_but_a_crop_is(alike):
    """Another generator's genuine and counterfeit photos of one product, on plain backgrounds, were called
    'the same photo' (thumbnails 0.95-0.98 alike); only copies of one capture are duplicates."""
    _, photos, result = alike
    duplicates = [f for f in result.findings if f.check == "duplicates"]
    assert [set(f.files) for f in duplicates] == [{"test/counterfeit/product-a/plain-3.jpg",
                                                   "val/counterfeit/product-a/cropped.jpg"}]
    assert "test and val" in duplicates[0].message or "val and test" in duplicates[0].message
    assert result.stats["duplicates"]["alike_not_same_capture"] >= 2


def test_same_capture_tells_copies_from_photos_taken_alike(synth_data):
    from datatools.synth import make_product_design, render_artwork

    photo = plain_background_photo(render_artwork(make_product_design(0, 0)), 0, 0, 0, 1)
    reopened = lambda data: Image.open(io.BytesIO(data)).convert("RGB")  # noqa: E731
    copies = [reopened(encode(photo, "JPEG", quality=30)), reopened(encode(photo.resize((213, 160)), "JPEG", quality=30)),
              reopened(encode(photo.crop((32, 24, 608, 456)), "JPEG", quality=80))]
    for copy in copies:
        assert phash.same_capture(photo, copy, 0)
    assert phash.same_capture(photo, photo.transpose(Image.Transpose.ROTATE_90), 1)
    retaken = plain_background_photo(render_artwork(make_product_design(0, 0)), 8, 5, 1, 7)
    assert not phash.same_capture(photo, retaken, 0)


def test_popcount_without_numpy_bitwise_count(monkeypatch):
    values = np.array([0, 1, 0xFF, 2**63, 2**64 - 1], np.uint64)
    expected = [0, 1, 8, 1, 64]
    assert phash.popcount(values).tolist() == expected
    monkeypatch.delattr(np, "bitwise_count", raising=False)
    assert phash.popcount(values).tolist() == expected


def test_imbalance_and_stray_folders_are_warnings(synth_data, tmp_path):
    root = copy_of(synth_data, tmp_path)
    for path in jpegs(root, "val", "counterfeit")[1:]:
        path.unlink()
    (root / "train" / "unsorted").mkdir()
    result = audit(root, progress=False)
    assert serious(result) == {("balance", "warning", frozenset()),
                               ("files", "warning", frozenset({"train/unsorted/"}))}
    assert "val is imbalanced: 1 counterfeit vs 4 genuine" in result.warnings()[-1].message
    assert exit_code(result, strict=False) == 0 and exit_code(result, strict=True) == 1


def test_exif_orientation_and_camera_are_noted(synth_data, tmp_path):
    root = copy_of(synth_data, tmp_path)
    photo = jpegs(root, "train", "genuine")[0]
    exif = Image.Exif()
    exif[0x0112], exif[0x010F], exif[0x0110] = 6, "Canon", "EOS 80D"  # orientation: rotate 90° when shown
    photo.write_bytes(encode(Image.open(photo), "JPEG", quality=90, exif=exif.tobytes()))
    result = audit(root, progress=False)
    note = finding_for(result, rel(root, photo))
    assert note.severity == "info" and "EXIF orientation tag on 1 image; 1 of them" in note.message
    facts = audit_module.inspect_file(photo, "p")
    assert (facts.width, facts.height, facts.camera, facts.exif) == (120, 160, "Canon EOS 80D", True)


def test_audit_runs_without_torch(synth_data, tmp_path):
    """The audit must work from a serving install: numpy and Pillow only."""
    script = ("import sys; from pathlib import Path; from datatools.audit import audit; "
              "from datatools.audit_report import write_report; "
              "write_report(audit(sys.argv[1], progress=False), Path(sys.argv[2])); "
              "heavy = ('torch', 'torchvision', 'onnx', 'matplotlib'); "
              "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))")
    done = subprocess.run([sys.executable, "-c", script, str(synth_data), str(tmp_path)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
