"""The HTML evaluation report: curves checked by hand, every file written, edge cases, escaping."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evaluation.evaluate import evaluate_folder, summarize, write_report
from evaluation.report import DPI, FIG_SIZE, PLOTS, write_html_report
from inference.metadata import Thresholds
from inference.metrics import (
    average_precision,
    curve_area,
    expected_calibration_error,
    precision_recall_curve,
    reliability_bins,
    roc_auc,
    roc_curve,
)

THRESHOLDS = {"low": 0.3, "high": 0.7}


def hand_metrics(rows: list[dict], **extra) -> dict:
    """A metrics dict shaped like evaluate_folder's, from hand-chosen (path, label, product, score) rows."""
    scores = np.array([r["score"] for r in rows], dtype=np.float64)
    labels = np.array([r["label"] for r in rows], dtype=np.int64)
    metrics = summarize(scores, labels, Thresholds(**THRESHOLDS))
    metrics.update(per_product={}, model={"name": "hand", "version": "v-hand-1"}, thresholds=THRESHOLDS,
                   errors=[], scores=rows)
    return {**metrics, **extra}


def synth_photos(synth_data) -> list[Path]:
    return sorted((synth_data / "test").rglob("*.jpg"))


class TagBalance(HTMLParser):
    """Fails on a closing tag that does not match the open one: the page is well formed."""

    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack.pop() == tag, f"unbalanced </{tag}>"


def assert_well_formed(page: str) -> None:
    parser = TagBalance()
    parser.feed(page)
    assert parser.stack == []


def local_links(page: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', page)


# ---------------------------------------------------------------- curves


def test_roc_curve_by_hand():
    scores, labels = [0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]
    fpr, tpr = roc_curve(scores, labels)
    # Thresholds 0.8, 0.4, 0.35, 0.1 flag: {fake}, +genuine, +fake, +genuine.
    np.testing.assert_allclose(fpr, [0, 0, 0.5, 0.5, 1])
    np.testing.assert_allclose(tpr, [0, 0.5, 0.5, 1, 1])
    assert curve_area(fpr, tpr) == pytest.approx(0.75) == roc_auc(scores, labels)


def test_roc_curve_with_ties_matches_rank_auc():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 2, 200)
    scores = np.round(np.clip(rng.normal(0.4 + 0.2 * labels, 0.2), 0, 1), 1)  # few distinct values: many ties
    fpr, tpr = roc_curve(scores, labels)
    assert np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    assert len(fpr) == len(np.unique(scores)) + 1
    assert curve_area(fpr, tpr) == pytest.approx(roc_auc(scores, labels))


def test_precision_recall_curve_by_hand():
    scores, labels = [0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1]
    recall, precision = precision_recall_curve(scores, labels)
    # Only the thresholds that add a fake count: 0.8 (1 of 1 flagged right), 0.35 (2 of 3).
    np.testing.assert_allclose(recall, [0.5, 1])
    np.testing.assert_allclose(precision, [1, 2 / 3])
    step_area = float(np.sum(np.diff(np.r_[0, recall]) * precision))
    assert step_area == pytest.approx(average_precision(np.array(scores), np.array(labels)))


@pytest.mark.parametrize("labels", [[0, 0, 0], [1, 1, 1], []])
def test_roc_curve_needs_both_classes(labels):
    with pytest.raises(ValueError, match="both"):
        roc_curve([0.2, 0.5, 0.9][: len(labels)], labels)


def test_reliability_bins_add_up_to_the_ece():
    rng = np.random.default_rng(5)
    scores = rng.random(300)
    labels = (rng.random(300) < scores**2).astype(int)
    mean_score, observed, counts = reliability_bins(scores, labels)
    assert counts.sum() == 300
    ece = float(np.sum(np.abs(observed - mean_score) * counts) / counts.sum())
    assert ece == pytest.approx(expected_calibration_error(scores, labels))


# ---------------------------------------------------------------- the report from a real evaluation


def test_report_from_a_real_evaluation(synth_data, classifier_predictor, tmp_path):
    metrics = evaluate_folder(synth_data, classifier_predictor)
    write_report(metrics, tmp_path)
    out = write_html_report(metrics, tmp_path)

    assert out == tmp_path / "report.html"
    for name in PLOTS:
        with Image.open(tmp_path / name) as image:
            assert image.format == "PNG"
            assert image.size == (FIG_SIZE[0] * DPI, FIG_SIZE[1] * DPI)
    page = out.read_text(encoding="utf-8")
    assert_well_formed(page)
    assert metrics["model"]["version"] in page and metrics["model"]["name"] in page
    assert f"{metrics['n']}</span>" in page
    for key in ("roc_auc", "pr_auc", "ece"):
        value = metrics[key]
        assert (f"{value:.3f}" if value == value else "n/a") in page
    rate = metrics["inconclusive_rate"]
    assert f"{100 * rate:.1f}%" in page
    assert "<td>product-a</td>" in page and "<td>product-b</td>" in page
    assert 'id="mistakes"' in page
    assert all((tmp_path / link).is_file() for link in local_links(page))  # plots and any thumbnails
    assert "http" not in page and "<script" not in page  # self-contained, no JS


def test_importing_the_report_does_not_import_matplotlib():
    code = "import sys, evaluation.report; print('matplotlib' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            cwd=Path(__file__).resolve().parents[1])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


# ---------------------------------------------------------------- worst mistakes


def test_worst_mistakes_have_thumbnails_most_confident_first(synth_data, tmp_path):
    photos = synth_photos(synth_data)
    rows = [{"path": str(photos[i % len(photos)]), "label": i % 2, "product": "p", "score": 0.45 if i % 2 else 0.55}
            for i in range(20)]  # every photo a little wrong...
    rows[0].update(label=0, score=0.95)  # ...these two badly so, and decided wrong
    rows[1].update(label=1, score=0.02)
    rows.append({"path": str(tmp_path / "gone.jpg"), "label": 0, "product": "p", "score": 0.9})
    page = write_html_report(hand_metrics(rows), tmp_path).read_text(encoding="utf-8")

    thumbs = sorted((tmp_path / "mistakes").glob("*.jpg"))
    assert [t.name for t in thumbs] == [f"{i:02d}.jpg" for i in range(1, 13) if i != 3]  # 12 at most; 3 is gone
    for thumb in thumbs:
        with Image.open(thumb) as image:
            assert image.format == "JPEG" and max(image.size) <= 200
    cards = re.findall(r'<figure class="mistake">(.*?)</figure>', page)
    assert len(cards) == 12
    assert rows[1]["path"] in cards[0] and "score 0.0200" in cards[0] and "said <b>genuine</b>" in cards[0]
    assert rows[0]["path"] in cards[1] and "truly <b>genuine</b>" in cards[1] and "said <b>counterfeit</b>" in cards[1]
    assert "gone.jpg" in cards[2] and "no preview" in cards[2]  # the photo moved since: a row, no picture
    assert all((tmp_path / link).is_file() for link in local_links(page))

    rows = [dict(rows[0])]  # the same folder again with one mistake: no stale thumbnails from before
    write_html_report(hand_metrics(rows), tmp_path)
    assert [t.name for t in (tmp_path / "mistakes").glob("*.jpg")] == ["01.jpg"]


def test_no_mistakes_and_no_errors(synth_data, tmp_path):
    photos = synth_photos(synth_data)[:4]
    rows = [{"path": str(p), "label": i % 2, "product": "p", "score": 0.9 if i % 2 else 0.1}
            for i, p in enumerate(photos)]
    page = write_html_report(hand_metrics(rows), tmp_path).read_text(encoding="utf-8")
    assert "No image's score leans towards the wrong class" in page
    assert "None: every file was read" in page
    assert not list((tmp_path / "mistakes").glob("*.jpg"))


# ---------------------------------------------------------------- edge cases


def _one_class(synth_data):
    return [{"path": str(p), "label": 0, "product": "p", "score": s}
            for p, s in zip(synth_photos(synth_data), (0.1, 0.2, 0.8))]


@pytest.mark.parametrize("case", ["one class", "no scores", "nulls from metrics.json"])
def test_undefined_metrics_show_na_and_every_plot_is_written(case, synth_data, tmp_path):
    rows = [] if case == "no scores" else _one_class(synth_data)
    metrics = hand_metrics(rows)
    if case == "nulls from metrics.json":
        metrics.update(roc_auc=None, pr_auc=None)
    else:
        assert metrics["roc_auc"] != metrics["roc_auc"]  # NaN: the case we mean to test
    page = write_html_report(metrics, tmp_path).read_text(encoding="utf-8")

    assert_well_formed(page)
    assert '<span class="num">n/a</span>' in page
    assert not re.search(r"\bnan\b", page, re.IGNORECASE)
    for name in PLOTS:
        with Image.open(tmp_path / name) as image:
            image.verify()


# ---------------------------------------------------------------- escaping


def test_paths_and_names_are_escaped(synth_data, tmp_path):
    evil = tmp_path / "photos" / "<script>alert(1)</script>"
    evil.mkdir(parents=True)
    photo = evil / "a&b<script>.jpg"
    shutil.copy(synth_photos(synth_data)[0], photo)
    rows = [{"path": str(photo), "label": 0, "product": "<b>line</b>", "score": 0.9},
            {"path": str(synth_photos(synth_data)[1]), "label": 1, "product": "<b>line</b>", "score": 0.8}]
    metrics = hand_metrics(rows, model={"name": "<i>m</i>", "version": '"v"'},
                           errors=[{"path": "<script>x</script>.jpg", "error": "bad <img src=x>"}])
    metrics["per_product"] = {"<b>line</b>": hand_metrics(rows)}
    page = write_html_report(metrics, tmp_path / "report").read_text(encoding="utf-8")

    assert "<script" not in page and "<b>line</b>" not in page and "<i>m</i>" not in page
    assert "<img src=x>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;/a&amp;b&lt;script&gt;.jpg" in page
    assert "&lt;b&gt;line&lt;/b&gt;" in page and "&lt;i&gt;m&lt;/i&gt;" in page and "&quot;v&quot;" in page
    assert_well_formed(page)
    assert (tmp_path / "report" / "mistakes" / "01.jpg").is_file()


def test_bootstrap_interval_narrows_with_more_photos():
    from inference.metrics import bootstrap_interval

    rng = np.random.default_rng(0)
    few_labels, many_labels = np.array([0, 0, 1, 1]), np.repeat([0, 1], 200)
    few = bootstrap_interval(np.array([0.1, 0.2, 0.8, 0.9]), few_labels)
    many = bootstrap_interval(rng.normal(many_labels, 0.8), many_labels)
    assert few == (1.0, 1.0)  # perfectly separated photos stay so in every resample: the note says how few
    assert 0.7 < many[0] < many[1] < 0.9 and many[1] - many[0] < 0.1
    assert all(np.isnan(bootstrap_interval(np.array([0.1, 0.2]), np.array([0, 0]))))
