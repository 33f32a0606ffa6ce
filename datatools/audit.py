"""Data audit: catch broken files, leaks and shortcuts before a model learns them.

Public counterfeit datasets are full of traps: every counterfeit a PNG screenshot and every genuine a
camera JPEG, "fakes" made by rotating or shrinking genuine photos, the same photo in train and test.
`audit(DATA)` reads every file once and reports four checks as `Finding`s:

- files: every image decodes exactly as training will decode it; contents match the extension.
- duplicates: byte-identical files and near-duplicates (re-encoded, resized, rotated, mirrored copies)
  across splits or labels (errors: a leak) or within one split and label (warnings).
- balance: images per split and class, sizes, formats, colour modes and file sizes per class.
- shortcut: a small cross-validated decision tree on file metadata alone (format, size, file size, JPEG
  quality, EXIF, camera, colour mode, chroma subsampling); a high out-of-fold ROC-AUC means the label
  can be told from how files were made rather than what they show.

numpy + Pillow only (no torch), so the audit also runs from a serving install.
"""

from __future__ import annotations

import hashlib
import io
import math
import multiprocessing
import os
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, JpegImagePlugin

from inference.classes import CLASSES, COUNTERFEIT, GENUINE
from inference.grouping import connected_groups
from inference.images import (
    ALLOWED_FORMATS,
    IMAGE_SUFFIXES,
    ImageError,
    load_image,
    sniff_format,
)
from inference.layout import SPLITS, list_split
from inference.metrics import roc_auc
from inference.phash import (
    CANDIDATE_BITS,
    DIHEDRAL_NAMES,
    MIN_CAPTURE_CORRELATION,
    MIN_THUMBNAIL_CORRELATION,
    THUMBNAIL_SIDE,
    dihedral_phashes,
    near_duplicate_pairs,
    same_capture,
)

ERROR, WARNING, INFO = "error", "warning", "info"

# JPEGs are decoded in draft mode (DCT scaling) to no less than this, several times the thumbnail side,
# so a JPEG and its PNG copy give the same thumbnail (a 1/8-scale decode is blurrier than box averaging).
DECODE_SIDE = 128
SHORTCUT_WARNING_AUC = 0.75
SHORTCUT_ERROR_AUC = 0.95
# A shortcut must also beat chance by this many standard errors of the AUC under no signal, so a
# handful of files cannot raise one by luck (with 1,000 files per class the AUC threshold decides).
SHORTCUT_MIN_Z = 3.0
IMBALANCE_RATIO = 3  # a class under 1/3 of the other in a split is a warning
PARALLEL_MIN_FILES = 64  # below this, starting worker processes costs more than it saves
_LISTED_FILES = 5  # file names quoted in a message; Finding.files has them all

_SUFFIX_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".webp": "WEBP"}
_SAMPLING_NAMES = {0: "4:4:4", 1: "4:2:2", 2: "4:2:0"}
# Formats training refuses, named by their signatures so a message can say what the file really is.
_FOREIGN_SIGNATURES = ((b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"BM", "BMP"), (b"GIF8", "GIF"),
                       (b"%PDF", "PDF"), (b"8BPS", "PSD"), (b"\x00\x00\x01\x00", "ICO"))
_EXIF_MAKE, _EXIF_MODEL, _EXIF_ORIENTATION = 0x010F, 0x0110, 0x0112
# libjpeg's standard luminance quantization table (JPEG Annex K), natural row-major order as Pillow gives it.
_STD_LUMINANCE = (16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
                  14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
                  18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
                  49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99)


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Finding:
    check: str  # "files" | "duplicates" | "balance" | "shortcut"
    severity: str  # "error" | "warning" | "info"
    message: str  # one readable sentence, specific (counts, names)
    files: tuple[str, ...] = ()  # paths involved, relative to the DATA root, forward slashes


@dataclass
class AuditResult:
    root: str
    findings: list[Finding]
    stats: dict = field(default_factory=dict)

    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == ERROR]

    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == WARNING]

    def to_dict(self) -> dict:
        summary = {"errors": len(self.errors()), "warnings": len(self.warnings()),
                   "info": sum(f.severity == INFO for f in self.findings)}
        findings = [{**asdict(f), "files": list(f.files)} for f in self.findings]
        return _jsonable({"root": self.root, "summary": summary, "findings": findings, "stats": self.stats})


def exit_code(result: AuditResult, strict: bool) -> int:
    """0 when nothing is wrong, 1 on errors; with strict, warnings count as errors."""
    return 1 if result.errors() or (strict and result.warnings()) else 0


def _jsonable(value):
    """numpy scalars -> Python numbers, NaN -> None, so json.dumps gives strict JSON."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer, np.bool_)):
        return value.item()
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    return value


# --------------------------------------------------------------------------- the audit


@dataclass(frozen=True)
class Entry:
    """One image file of the data folder, by its place in the layout."""

    path: str  # relative to the DATA root, forward slashes
    split: str
    label: str  # a CLASSES name


def audit(root: str | Path, *, progress: bool = True, workers: int | None = None) -> AuditResult:
    """Audit DATA/{train,val[,test]}/{genuine,counterfeit}/...; a missing split or class folder is a DataError."""
    started = time.perf_counter()
    root = Path(root)
    entries, splits = collect(root)
    facts = inspect_all(root, entries, progress=progress, workers=workers)
    inspected = time.perf_counter()
    findings = file_findings(root, splits, facts)
    duplicates, duplicate_stats = duplicate_findings(root, entries, facts)
    deduplicated = time.perf_counter()
    balance, shape_stats = balance_findings(splits, entries, facts)
    shortcut, shortcut_stats = shortcut_findings(entries, facts)
    finished = time.perf_counter()
    timing = {"inspect_s": inspected - started, "duplicates_s": deduplicated - inspected,
              "shortcut_s": finished - deduplicated, "total_s": finished - started,
              "images_per_s": len(entries) / max(finished - started, 1e-9)}
    stats = {"splits": splits, "images": len(entries), **shape_stats, "duplicates": duplicate_stats,
             "shortcut": shortcut_stats, "timing": timing}
    return AuditResult(str(root), findings + duplicates + balance + shortcut, _jsonable(stats))


def collect(root: Path) -> tuple[list[Entry], list[str]]:
    """Image files of train, val and (if present) test, split by split, as training lists them."""
    splits = [split for split in SPLITS if split in ("train", "val") or (root / split).is_dir()]
    entries = []
    for split in splits:
        # list_split raises the project's DataError for a missing or empty split or class folder. Train's
        # counterfeits may be missing (the reference and comparator recipes learn from genuines alone), and
        # val's (the comparator then edits val genuines into counterfeits; the other recipes say they need them).
        optional = (COUNTERFEIT,) if split in ("train", "val") else ()
        entries += [Entry(_relative(root, s.path), split, CLASSES[s.label]) for s in list_split(root, split, optional)]
    return entries, splits


def _relative(root: Path, path: Path) -> str:
    return path.relative_to(root).as_posix()


# --------------------------------------------------------------------------- reading files


@dataclass
class FileFacts:
    """What one read of a file tells: identity, decodability, how it was made, its perceptual hashes."""

    path: str
    file_size: int
    sha256: str
    sniffed: str | None  # the format its signature claims, if an allowed one
    problem: str = ""  # why it cannot be decoded; "" when it decodes
    format: str = ""
    width: int = 0  # upright, as training sees it
    height: int = 0
    mode: str = ""
    exif: bool = False
    orientation: int = 0  # EXIF orientation tag, 0 when absent
    camera: str = ""  # EXIF make and model
    jpeg_quality: float = math.nan
    subsampling: str = ""
    progressive: bool = False
    phashes: tuple[int, ...] = ()  # 64-bit DCT hash of each of the 8 dihedral variants (inference.phash)
    thumbnail: bytes = b""  # THUMBNAIL_SIDE^2 RGB pixels, upright as stored, to confirm near-duplicates


def inspect_file(path: Path, relative: str) -> FileFacts:
    """Read the file once: SHA-256, a draft-mode decode (as training decodes it), header metadata, hashes."""
    data = path.read_bytes()
    facts = FileFacts(relative, len(data), hashlib.sha256(data).hexdigest(), sniff_format(data))
    try:
        # The same decoder and limits as training; draft mode makes JPEGs decode at 1/2..1/8 scale.
        loaded = load_image(data, draft_to=(DECODE_SIDE, DECODE_SIDE))
    except ImageError as error:
        facts.problem = decode_problem(data, error)
        return facts
    facts.format, facts.width, facts.height = loaded.format, loaded.width, loaded.height
    _read_header(data, facts)
    facts.phashes = dihedral_phashes(loaded.image)
    facts.thumbnail = loaded.image.resize((THUMBNAIL_SIDE, THUMBNAIL_SIDE), Image.Resampling.BOX).tobytes()
    return facts


def _inspect_task(task: tuple[str, str]) -> FileFacts:
    return inspect_file(Path(task[0]), task[1])


def inspect_all(root: Path, entries: list[Entry], *, progress: bool, workers: int | None) -> list[FileFacts]:
    """inspect_file over all entries, in order, in a process pool when there are enough of them."""
    tasks = [(str(root / entry.path), entry.path) for entry in entries]
    workers = workers or os.cpu_count() or 1
    if workers <= 1 or len(tasks) < PARALLEL_MIN_FILES:
        return list(_with_progress(map(_inspect_task, tasks), len(tasks), progress))
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    chunksize = max(1, min(64, len(tasks) // (workers * 8)))
    # The pool is started before the progress bar, whose monitor thread should not be forked.
    with context.Pool(workers) as pool:
        return list(_with_progress(pool.imap(_inspect_task, tasks, chunksize=chunksize), len(tasks), progress))


def _with_progress(results, total: int, enabled: bool):
    if not enabled:
        return results
    try:
        from tqdm import tqdm
    except ImportError:  # tqdm is a nicety; the audit works without it
        return results
    return tqdm(results, total=total, desc="audit", unit="img")


def _read_header(data: bytes, facts: FileFacts) -> None:
    """How the file was made, from its header: the pixels were already decoded by load_image."""
    with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as image:
        facts.mode = image.mode
        try:
            exif = image.getexif()
            facts.orientation = int(exif.get(_EXIF_ORIENTATION) or 0)
            names = (str(exif.get(tag) or "").strip("\x00 ") for tag in (_EXIF_MAKE, _EXIF_MODEL))
            facts.camera = " ".join(name for name in names if name)
            facts.exif = len(exif) > 0
        except Exception:  # a corrupt EXIF block: training ignores it too (see inference.images)
            facts.exif = True
        if image.format == "JPEG":
            facts.jpeg_quality = estimate_jpeg_quality(getattr(image, "quantization", None))
            facts.subsampling = _SAMPLING_NAMES.get(JpegImagePlugin.get_sampling(image), "")
            facts.progressive = bool(image.info.get("progressive") or image.info.get("progression"))


def estimate_jpeg_quality(quantization: dict | None) -> float:
    """The libjpeg quality (1..100) whose scaled standard luminance table is closest to the file's; NaN if none."""
    if not quantization or len(quantization.get(0, ())) != 64:
        return math.nan
    table = np.asarray(quantization[0], np.int64)
    qualities = np.arange(1, 101)
    # libjpeg's jpeg_quality_scaling, then (std * scale + 50) / 100 clamped to 1..255 (jcparam.c).
    scale = np.where(qualities < 50, 5000 // qualities, 200 - 2 * qualities)
    candidates = np.clip((np.asarray(_STD_LUMINANCE)[None, :] * scale[:, None] + 50) // 100, 1, 255)
    return float(qualities[np.argmin(np.abs(candidates - table).sum(axis=1))])


def decode_problem(data: bytes, error: ImageError) -> str:
    """Why a file cannot be decoded, in a few words that say what the file really is."""
    if error.code == "empty_image":
        return "empty (0 bytes)"
    if error.code == "corrupt_image":
        return f"truncated or corrupt {sniff_format(data) or 'image'}"
    if error.code != "unsupported_format":
        return error.message  # over the size or pixel limits training decodes under
    foreign = next((name for signature, name in _FOREIGN_SIGNATURES if data.startswith(signature)), None)
    if foreign is None and data[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1", b"ftypavif"):
        foreign = "HEIC/AVIF"
    if foreign:
        return f"{foreign} data, an unsupported format (only {', '.join(ALLOWED_FORMATS)})"
    return "text, not an image" if _looks_like_text(data) else "not an image"


def _looks_like_text(data: bytes) -> bool:
    try:
        data[:4096].decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


# --------------------------------------------------------------------------- check 1: files


def file_findings(root: Path, splits: list[str], facts: list[FileFacts]) -> list[Finding]:
    """Undecodable files (errors), extension mismatches and ignored files (warnings), header notes (info)."""
    findings = _ignored_findings(root, splits)
    broken: dict[str, list[str]] = defaultdict(list)
    mismatched: dict[tuple[str, str], list[str]] = defaultdict(list)
    for fact in facts:
        if fact.problem:
            broken[fact.problem].append(fact.path)
        elif _SUFFIX_FORMATS.get(Path(fact.path).suffix.lower()) != fact.format:
            mismatched[(fact.format, Path(fact.path).suffix.lower())].append(fact.path)
    for problem, paths in broken.items():
        them = "it" if len(paths) == 1 else "them"
        findings.append(Finding("files", ERROR, f"{_count(paths, 'file')} cannot be decoded, {problem}: "
                                f"{_names(paths)}. Training stops on {them}: fix or delete {them}.", tuple(paths)))
    for (real, suffix), paths in mismatched.items():
        findings.append(Finding("files", WARNING, f"{_count(paths, 'file')} named {suffix} but holding {real} data "
                                f"(extension mismatch): {_names(paths)}.", tuple(paths)))
    return findings + _header_notes([f for f in facts if not f.problem])


def _ignored_findings(root: Path, splits: list[str]) -> list[Finding]:
    """Files training will not see: other suffixes in class folders, anything beside the class folders."""
    ignored, stray = [], []
    for split in splits:
        for item in sorted((root / split).iterdir()):
            if item.name not in CLASSES:
                stray.append(_relative(root, item) + ("/" if item.is_dir() else ""))
        for name in CLASSES:
            ignored += [_relative(root, p) for p in sorted((root / split / name).rglob("*"))
                        if p.is_file() and p.suffix.lower() not in IMAGE_SUFFIXES]
    findings = []
    if ignored:
        findings.append(Finding("files", WARNING, f"{_count(ignored, 'file')} in class folders ignored, not an image "
                                f"suffix ({'/'.join(IMAGE_SUFFIXES)}): {_names(ignored)}.", tuple(ignored)))
    if stray:
        findings.append(Finding("files", WARNING, f"{_count(stray, 'item')} beside the class folders "
                                f"({'/'.join(CLASSES)}) ignored by training: {_names(stray)}.", tuple(stray)))
    return findings


def _header_notes(facts: list[FileFacts]) -> list[Finding]:
    """Info: colour modes, and EXIF orientation tags that rotate photos when loaded."""
    modes = Counter(f.mode for f in facts)
    notes = [Finding("files", INFO, f"Colour modes of the {_count(facts, 'decodable image')}: {_tally(modes)}.")]
    tagged = [f.path for f in facts if f.orientation]
    rotating = [f.path for f in facts if f.orientation not in (0, 1)]
    if tagged:
        notes.append(Finding("files", INFO, f"EXIF orientation tag on {_count(tagged, 'image')}; {len(rotating)} "
                             "of them are turned upright when loaded (viewers that ignore the tag show them turned).",
                             tuple(rotating)))
    return notes


# --------------------------------------------------------------------------- check 2: duplicates


def duplicate_findings(root: Path, entries: list[Entry], facts: list[FileFacts]) -> tuple[list[Finding], dict]:
    """Groups of identical or near-duplicate photos: across splits or labels an error, else a warning."""
    decoded = [i for i, f in enumerate(facts) if f.phashes]
    phashes = np.array([facts[i].phashes for i in decoded], np.uint64).reshape(len(decoded), 8)
    side = THUMBNAIL_SIDE
    thumbnails = np.frombuffer(b"".join(facts[i].thumbnail for i in decoded), np.uint8).reshape(-1, side, side, 3)
    similar = [(decoded[i], decoded[j], bits, variant)
               for i, j, bits, variant in near_duplicate_pairs(phashes, thumbnails)]
    pairs = _same_captures(root, facts, similar)
    found = {(i, j) for i, j, _, _ in pairs}
    pairs += [pair for pair in _identical_pairs(decoded, facts) if pair[:2] not in found]
    groups = _connected_groups(pairs)
    group_of = {i: number for number, group in enumerate(groups) for i in group}
    pairs_of = defaultdict(list)
    for pair in pairs:
        pairs_of[group_of[pair[0]]].append(pair)
    findings = [_group_finding(group, entries, facts, pairs_of[n]) for n, group in enumerate(groups)]
    stats = {"candidate_bits": CANDIDATE_BITS, "min_thumbnail_correlation": MIN_THUMBNAIL_CORRELATION,
             "min_capture_correlation": MIN_CAPTURE_CORRELATION,
             "alike_not_same_capture": len(similar) - len(found), "pairs": len(pairs), "groups": len(groups),
             "identical_groups": sum(len({facts[i].sha256 for i in group}) == 1 for group in groups),
             "files_in_groups": len(group_of), "leaks": sum(f.severity == ERROR for f in findings)}
    return findings, stats


def _same_captures(root: Path, facts: list[FileFacts], pairs: list[tuple[int, int, int, int]]):
    """The near-duplicate pairs that are copies of one capture, not two photos taken alike (inference.phash
    step 3). Only these few files are decoded again, as inspect_file decoded them."""
    images: dict[int, Image.Image] = {}

    def image(i: int) -> Image.Image:
        if i not in images:
            data = (root / facts[i].path).read_bytes()
            images[i] = load_image(data, draft_to=(DECODE_SIDE, DECODE_SIDE)).image
        return images[i]

    return [pair for pair in pairs if facts[pair[0]].sha256 == facts[pair[1]].sha256
            or same_capture(image(pair[0]), image(pair[1]), pair[3])]


def _identical_pairs(decoded: list[int], facts: list[FileFacts]) -> list[tuple[int, int, int, int]]:
    """Byte-identical files, whatever their pixels (a flat image has no usable thumbnail correlation)."""
    first_with: dict[str, int] = {}
    pairs = []
    for i in decoded:
        if facts[i].sha256 in first_with:
            pairs.append((first_with[facts[i].sha256], i, 0, 0))
        first_with.setdefault(facts[i].sha256, i)
    return pairs


def _connected_groups(pairs: list[tuple[int, int, int, int]]) -> list[list[int]]:
    """Files linked by the pairs, directly or through others: each group sorted, in order of first file."""
    groups: dict[int, list[int]] = defaultdict(list)
    for i, root in sorted(connected_groups((i, j) for i, j, _, _ in pairs).items()):
        groups[root].append(i)
    return sorted(groups.values())


def _group_finding(group: list[int], entries: list[Entry], facts: list[FileFacts], pairs) -> Finding:
    splits = list(dict.fromkeys(entries[i].split for i in group))
    labels = list(dict.fromkeys(entries[i].label for i in group))
    paths = tuple(facts[i].path for i in group)
    how = _how_copied(facts, pairs)
    if len(labels) > 1:
        where = f"in {' and '.join(splits)}" if len(splits) > 1 else f"in {splits[0]}"
        return Finding("duplicates", ERROR, f"The same photo is labelled both genuine and counterfeit {where} "
                       f"({how}): {_names(paths)}.", paths)
    if len(splits) > 1:
        return Finding("duplicates", ERROR, f"The same photo is in both {' and '.join(splits)} ({how}), a leak "
                       f"that inflates {splits[-1]} scores: {_names(paths)}.", paths)
    return Finding("duplicates", WARNING, f"{len(paths)} copies of the same photo in {splits[0]}/{labels[0]} "
                   f"({how}): {_names(paths)}.", paths)


def _how_copied(facts: list[FileFacts], pairs) -> str:
    """'identical files' or 'near-duplicates: ...' naming the edits seen between the group's pairs."""
    edits = set()
    for i, j, _, variant in pairs:
        a, b = facts[i], facts[j]
        if a.sha256 == b.sha256:
            continue
        edits.add("re-encoded")
        if variant:
            edits.add(DIHEDRAL_NAMES[variant])
        if sorted((a.width, a.height)) != sorted((b.width, b.height)):
            edits.add(f"resized {a.width}×{a.height} vs {b.width}×{b.height}")
    return "near-duplicates: " + ", ".join(sorted(edits)) if edits else "identical files"


# --------------------------------------------------------------------------- check 3: balance and shape


def balance_findings(splits: list[str], entries: list[Entry], facts: list[FileFacts]) -> tuple[list[Finding], dict]:
    counts = {split: {label: 0 for label in CLASSES} for split in splits}
    for entry in entries:
        counts[entry.split][entry.label] += 1
    summary = "; ".join(f"{s}: " + ", ".join(f"{n} {label}" for label, n in c.items()) for s, c in counts.items())
    findings = [Finding("balance", INFO, f"Images per split: {summary}.")]
    for split, per_class in counts.items():
        small, large = sorted(per_class, key=per_class.get)
        if split == "train" and per_class[COUNTERFEIT] == 0:
            findings.append(Finding("balance", INFO, "train has no counterfeits: the default reference recipe "
                                    "learns from genuines alone; --recipe classifier needs both classes."))
        elif per_class[small] * IMBALANCE_RATIO < per_class[large]:
            findings.append(Finding("balance", WARNING, f"{split} is imbalanced: {per_class[small]} {small} vs "
                                    f"{per_class[large]} {large} (under 1/{IMBALANCE_RATIO} of the other class)."))
    classes = _class_shapes(entries, facts)
    findings.append(Finding("balance", INFO, "Per class: " + "; ".join(
        f"{label} {_tally(c['formats'])}, most often {next(iter(c['sizes']), 'n/a')}, "
        f"median {_kb(c['file_size']['median'])}" for label, c in classes.items()) + "."))
    return findings, {"counts": counts, "classes": classes}


def _class_shapes(entries: list[Entry], facts: list[FileFacts]) -> dict:
    """Per class: formats, colour modes, the 10 commonest sizes, file sizes (decodable files only)."""
    shapes = {}
    for label in CLASSES:
        mine = [f for e, f in zip(entries, facts) if e.label == label and not f.problem]
        sizes = np.array([f.file_size for f in mine] or [0])
        shapes[label] = {
            "images": len(mine),
            "formats": dict(Counter(f.format for f in mine).most_common()),
            "modes": dict(Counter(f.mode for f in mine).most_common()),
            "sizes": dict(Counter(f"{f.width}×{f.height}" for f in mine).most_common(10)),
            "file_size": {"min": int(sizes.min()), "median": float(np.median(sizes)), "max": int(sizes.max())},
        }
    return shapes


# --------------------------------------------------------------------------- check 4: metadata shortcuts

# How each file was made, never what it shows. Order = priority when features tie: the first named is
# usually the cause (PNG files also have no JPEG quality and no chroma subsampling).
NUMERIC_FEATURES = ("width", "height", "aspect", "file_size", "bytes_per_pixel", "jpeg_quality")
CATEGORICAL_FEATURES = ("format", "mode", "subsampling", "progressive", "exif", "camera")
FEATURE_ORDER = ("format", "width", "height", "aspect", "mode", "file_size", "bytes_per_pixel", "jpeg_quality",
                 "subsampling", "progressive", "exif", "camera")
_SIZE_FEATURES = ("width", "height", "aspect")  # described together, as W×H
_MAX_CATEGORIES = 16  # one-hot columns per categorical feature; rarer values get none (all zeros)
TREE_DEPTH = 3
CV_FOLDS = 5


def metadata_features(fact: FileFacts) -> dict:
    """The metadata of one decodable file, readable values (they appear in messages)."""
    pixels = max(fact.width * fact.height, 1)
    return {
        "format": fact.format, "width": fact.width, "height": fact.height,
        "aspect": round(fact.width / max(fact.height, 1), 3), "mode": fact.mode,
        "file_size": fact.file_size, "bytes_per_pixel": fact.file_size / pixels,
        "jpeg_quality": -1.0 if math.isnan(fact.jpeg_quality) else fact.jpeg_quality,  # -1: not a JPEG
        "subsampling": fact.subsampling or "none", "progressive": "progressive" if fact.progressive else "baseline",
        "exif": "EXIF" if fact.exif else "no EXIF", "camera": fact.camera or "no camera tag",
    }


def shortcut_findings(entries: list[Entry], facts: list[FileFacts]) -> tuple[list[Finding], dict]:
    rows = [(metadata_features(f), int(e.label == COUNTERFEIT)) for e, f in zip(entries, facts) if not f.problem]
    labels = np.array([y for _, y in rows])
    per_class = np.bincount(labels, minlength=2) if len(rows) else np.zeros(2, int)
    if per_class.min() < 3:
        return [Finding("shortcut", INFO, "Shortcut audit skipped: it needs at least 3 decodable images per "
                        "class.")], {"auc": math.nan}
    features = [r for r, _ in rows]
    columns, owners = _design_matrix(features)
    oof = cross_validated_scores(columns, labels)
    auc = roc_auc(oof, labels)
    feature_auc = {name: roc_auc(cross_validated_scores(columns[:, owners == name], labels), labels)
                   for name in FEATURE_ORDER}
    importance = _importances(fit_tree(columns, labels, TREE_DEPTH, _min_leaf(len(labels))), owners)
    z = (auc - 0.5) / math.sqrt((len(labels) + 1) / (12 * per_class[0] * per_class[1]))
    stats = {"auc": auc, "z": z, "model": f"depth-{TREE_DEPTH} decision tree, {CV_FOLDS}-fold CV, out-of-fold",
             "images": len(labels), "feature_auc": feature_auc, "importance": importance}
    return [_shortcut_finding(auc, z, features, labels, feature_auc, importance)], stats


def _shortcut_finding(auc, z, features, labels, feature_auc, importance) -> Finding:
    if auc >= SHORTCUT_WARNING_AUC and z >= SHORTCUT_MIN_Z:
        severity = ERROR if auc >= SHORTCUT_ERROR_AUC else WARNING
        evidence = "; ".join(describe_feature(group, features, labels)
                             for group in _driving_groups(feature_auc, importance))
        return Finding("shortcut", severity, f"The label can be predicted from file metadata alone (out-of-fold "
                       f"ROC-AUC {auc:.2f}, decision tree on format, size, file size, JPEG quality, EXIF, camera, "
                       f"colour mode, subsampling): {evidence}. A model can learn this shortcut instead of the "
                       "product: make genuine and counterfeit files the same way.")
    note = f", not significantly above chance with {len(labels)} images" if auc >= SHORTCUT_WARNING_AUC else ""
    return Finding("shortcut", INFO, f"No metadata shortcut found: file metadata predicts the label with "
                   f"out-of-fold ROC-AUC {auc:.2f}{note}.")


def _driving_groups(feature_auc: dict, importance: dict, limit: int = 3) -> list[str]:
    """The strongest single features (size features as one), else the tree's most important ones."""
    strong = [n for n in FEATURE_ORDER if feature_auc[n] >= SHORTCUT_WARNING_AUC]
    ranked = sorted(strong, key=lambda n: -feature_auc[n]) or sorted(importance, key=lambda n: -importance[n])
    groups = dict.fromkeys("size" if name in _SIZE_FEATURES else name for name in ranked)
    return list(groups)[:limit]


def _design_matrix(features: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Numeric columns as they are, categorical ones one-hot; owners[c] names the feature of column c."""
    columns, owners = [], []
    for name in FEATURE_ORDER:
        values = [row[name] for row in features]
        if name in NUMERIC_FEATURES:
            columns.append(np.asarray(values, np.float64))
            owners.append(name)
            continue
        for category, _ in Counter(values).most_common(_MAX_CATEGORIES):
            columns.append(np.array([v == category for v in values], np.float64))
            owners.append(name)
    return np.stack(columns, axis=1), np.array(owners)


def _min_leaf(n: int) -> int:
    return max(3, n // 100)  # a leaf of 1% of the data: a shortcut must hold for many files


def cross_validated_scores(columns: np.ndarray, labels: np.ndarray, folds: int = CV_FOLDS) -> np.ndarray:
    """Out-of-fold counterfeit probabilities of a depth-limited tree, stratified folds, fixed seed."""
    folds = int(min(folds, np.bincount(labels).min()))
    rng = np.random.default_rng(0)
    fold_of = np.empty(len(labels), int)
    for label in (0, 1):
        members = rng.permutation(np.flatnonzero(labels == label))
        fold_of[members] = np.arange(len(members)) % folds
    scores = np.empty(len(labels))
    for fold in range(folds):
        held = fold_of == fold
        tree = fit_tree(columns[~held], labels[~held], TREE_DEPTH, _min_leaf(int((~held).sum())))
        scores[held] = predict_tree(tree, columns[held])
    return scores


@dataclass
class TreeNode:
    value: float  # fraction of counterfeit among the training rows that reach this node
    column: int = -1  # -1: a leaf
    threshold: float = 0.0  # rows with column <= threshold go left
    gain: float = 0.0  # impurity decrease times rows, for feature importances
    left: TreeNode | None = None
    right: TreeNode | None = None


def fit_tree(columns: np.ndarray, labels: np.ndarray, depth: int, min_leaf: int) -> TreeNode:
    """A CART classification tree (Gini impurity), grown to `depth` with leaves of at least min_leaf rows."""
    node = TreeNode(float(labels.mean()))
    if depth == 0 or labels.min() == labels.max():
        return node
    split = _best_split(columns, labels, min_leaf)
    if split is None:
        return node
    node.column, node.threshold, node.gain = split
    left = columns[:, node.column] <= node.threshold
    node.left = fit_tree(columns[left], labels[left], depth - 1, min_leaf)
    node.right = fit_tree(columns[~left], labels[~left], depth - 1, min_leaf)
    return node


def _best_split(columns: np.ndarray, labels: np.ndarray, min_leaf: int) -> tuple[int, float, float] | None:
    """(column, threshold, gain) of the split that lowers the summed Gini impurity most, or None."""
    n, best = len(labels), None
    parent = n * _gini(labels.sum(), n)
    for column in range(columns.shape[1]):
        order = np.argsort(columns[:, column], kind="stable")
        values, positives = columns[order, column], np.cumsum(labels[order])
        left_n = np.arange(1, n)  # rows 0..k-1 go left for a threshold between k-1 and k
        valid = (values[1:] != values[:-1]) & (left_n >= min_leaf) & (n - left_n >= min_leaf)
        if not valid.any():
            continue
        left_pos = positives[:-1]
        impurity = left_n * _gini(left_pos, left_n) + (n - left_n) * _gini(positives[-1] - left_pos, n - left_n)
        k = int(np.argmin(np.where(valid, impurity, np.inf)))
        gain = parent - impurity[k]
        if gain > 1e-9 and (best is None or gain > best[2] + 1e-9):  # ties keep the earlier (priority) feature
            best = (column, float((values[k] + values[k + 1]) / 2), float(gain))
    return best


def _gini(positives, count):
    share = positives / count
    return 2 * share * (1 - share)


def predict_tree(node: TreeNode, columns: np.ndarray) -> np.ndarray:
    if node.left is None or node.right is None:
        return np.full(len(columns), node.value)
    left = columns[:, node.column] <= node.threshold
    scores = np.empty(len(columns))
    scores[left] = predict_tree(node.left, columns[left])
    scores[~left] = predict_tree(node.right, columns[~left])
    return scores


def _importances(tree: TreeNode, owners: np.ndarray) -> dict[str, float]:
    """Each feature's share of the tree's total impurity decrease (0 for unused features)."""
    totals = dict.fromkeys(FEATURE_ORDER, 0.0)
    stack = [tree]
    while stack:
        node = stack.pop()
        if node.left is not None and node.right is not None:
            totals[str(owners[node.column])] += node.gain
            stack += [node.left, node.right]
    whole = sum(totals.values()) or 1.0
    return {name: value / whole for name, value in totals.items()}


def describe_feature(group: str, features: list[dict], labels: np.ndarray) -> str:
    """A feature's values per class in words, e.g. 'format: counterfeit are PNG (16/16), genuine are JPEG (16/16)'."""
    parts = []
    for label_index, label in ((1, COUNTERFEIT), (0, GENUINE)):
        rows = [row for row, y in zip(features, labels) if y == label_index]
        if group == "size" or group in CATEGORICAL_FEATURES:
            key = "size" if group == "size" else group
            values = [f"{r['width']}×{r['height']}" if key == "size" else str(r[key]) for r in rows]
            top, count = Counter(values).most_common(1)[0]
            parts.append(f"{label} {'are' if count == len(rows) else 'mostly'} {top} ({count}/{len(rows)})")
        else:
            parts.append(f"{label} {_numeric_range(group, [r[group] for r in rows])}")
    title = {"size": "image size", "file_size": "file size", "bytes_per_pixel": "bytes per pixel",
             "jpeg_quality": "JPEG quality", "subsampling": "chroma subsampling", "mode": "colour mode"}
    return f"{title.get(group, group)}: {', '.join(parts)}"


def _numeric_range(name: str, values: list[float]) -> str:
    if name == "jpeg_quality":
        values = [v for v in values if v >= 0]
        if not values:
            return "not JPEG"
    low, median, high = np.min(values), np.median(values), np.max(values)
    show = {"file_size": _kb, "bytes_per_pixel": lambda v: f"{v:.2f}", "aspect": lambda v: f"{v:.2f}"}
    fmt = show.get(name, lambda v: f"{v:.0f}")
    return f"{fmt(low)}–{fmt(high)} (median {fmt(median)})"


# --------------------------------------------------------------------------- wording helpers


def _count(items, noun: str) -> str:
    n = len(items)
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _names(paths) -> str:
    paths = list(paths)
    shown = ", ".join(paths[:_LISTED_FILES])
    return shown + (f" and {len(paths) - _LISTED_FILES} more" if len(paths) > _LISTED_FILES else "")


def _tally(counter: Counter | dict) -> str:
    return ", ".join(f"{key or '?'} {n}" for key, n in Counter(counter).most_common())


def _kb(size: float) -> str:
    return f"{size / 1000:.1f} kB"
