"""`evaluate --report`: the metrics dict of evaluate_folder -> plots and one self-contained report.html.

A reader who never opens metrics.json should still see how good the model is, where its scores are
honest probabilities, which product lines are weak and which photos it gets most confidently wrong.

matplotlib is imported only when plots are drawn: it belongs to an optional extra, and importing this
module (e.g. from the CLI) must stay cheap and work on a serving install. A missing matplotlib
surfaces as ModuleNotFoundError(name="matplotlib") before any file is written.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

import numpy as np

from inference.classes import CLASSES, COUNTERFEIT, GENUINE, SCORED_VERDICTS
from inference.images import ImageError, load_image
from inference.metadata import Thresholds
from inference.metrics import ECE_BINS, precision_recall_curve, reliability_bins, roc_curve, score_bins
from inference.predictor import verdict_for

FIG_SIZE = (5, 4)  # inches; at DPI below: 500x400 px, readable in a browser column without scaling
DPI = 100
MAX_MISTAKES = 12
THUMB_BOX = (200, 200)  # thumbnails fit in this box (px), aspect kept
MISTAKES_DIR = "mistakes"
CLASS_COLORS = {GENUINE: "tab:blue", COUNTERFEIT: "tab:red"}

# The headline table: (metrics key, name, how to format, one line for a non-specialist).
HEADLINE = (
    ("roc_auc", "ROC-AUC", "3f",
     "Chance that a random counterfeit scores higher than a random genuine item (0.5 = coin flip, 1 = perfect)."),
    ("pr_auc", "PR-AUC (average precision)", "3f",
     "How well counterfeits are ranked above genuine items, averaged over all recall levels (1 = perfect)."),
    ("inconclusive_rate", "Inconclusive share", "pct",
     "Photos whose score fell between the two thresholds: no verdict, a human has to look."),
    ("accuracy_decided", "Accuracy (decided)", "pct", "Correct verdicts among the photos that got a verdict."),
    ("precision_decided", "Precision (decided)", "pct", "When it says counterfeit, how often it is right."),
    ("recall_decided", "Recall (decided)", "pct", "Of the counterfeits that got a verdict, the share flagged."),
    ("ece", "ECE", "3f",
     "Average gap between the score and the observed counterfeit rate (0 = scores are honest probabilities)."),
    ("n", "Images", "int", "Photos scored (files that could not be read are listed at the end, not counted)."),
)


def write_html_report(metrics: dict, report_dir: Path) -> Path:
    """DIR/report.html with its plots (DIR/*.png) and mistake thumbnails (DIR/mistakes/NN.jpg)."""
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    scores, labels = _score_arrays(metrics)
    plots = write_plots(metrics, scores, labels, report_dir)
    mistakes = write_mistake_thumbnails(worst_mistakes(metrics), report_dir)
    page = render_html(metrics, [p.name for p in plots], mistakes)
    out = report_dir / "report.html"
    out.write_text(page, encoding="utf-8")
    return out


def _score_arrays(metrics: dict) -> tuple[np.ndarray, np.ndarray]:
    rows = metrics.get("scores", [])
    return (np.array([r["score"] for r in rows], dtype=np.float64),
            np.array([r["label"] for r in rows], dtype=np.int64))


def _thresholds(metrics: dict) -> Thresholds:
    return Thresholds(low=metrics["thresholds"]["low"], high=metrics["thresholds"]["high"])


# ---------------------------------------------------------------- plots


def write_plots(metrics: dict, scores: np.ndarray, labels: np.ndarray, report_dir: Path) -> list[Path]:
    """Every plot is always written, with a note instead of a curve where it is undefined, so the HTML
    never shows a broken image."""
    paths = []
    for name, (draw, _) in PLOTS.items():
        figure, axes = _new_figure()
        draw(axes, scores, labels, metrics)
        paths.append(report_dir / name)
        figure.savefig(paths[-1], dpi=DPI)
    return paths


def _new_figure():
    # A bare Figure on an Agg canvas: no pyplot, so no GUI backend, no global figure list to leak
    # into, and nothing changed for whoever else uses matplotlib in this process.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=FIG_SIZE, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure, figure.add_subplot()


def _note(axes, title: str, message: str) -> None:
    axes.set_title(title)
    axes.text(0.5, 0.5, message, ha="center", va="center", wrap=True, transform=axes.transAxes)
    axes.set_axis_off()


def _plot_roc(axes, scores, labels, metrics) -> None:
    try:
        fpr, tpr = roc_curve(scores, labels)
    except ValueError as exc:
        return _note(axes, "ROC curve", str(exc))
    axes.plot(fpr, tpr, color="tab:purple", lw=2, label=f"model (AUC = {_fmt(metrics.get('roc_auc'), '3f')})")
    axes.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="chance (AUC = 0.5)")
    _unit_square(axes, "False positive rate\n(genuine flagged as counterfeit)",
                 "True positive rate\n(counterfeits flagged)")
    axes.set_title("ROC curve")
    axes.legend(loc="lower right")


def _plot_pr(axes, scores, labels, metrics) -> None:
    try:
        recall, precision = precision_recall_curve(scores, labels)
    except ValueError as exc:
        return _note(axes, "Precision-recall curve", str(exc))
    # Step plot: the precision reached up to each recall level (starting from the first threshold's).
    axes.step(np.r_[0.0, recall], np.r_[precision[0], precision], where="pre", color="tab:purple", lw=2,
              label=f"model (AP = {_fmt(metrics.get('pr_auc'), '3f')})")
    base_rate = float(np.mean(labels == 1))
    axes.axhline(base_rate, color="grey", ls="--", lw=1, label=f"chance (share of counterfeits = {base_rate:.2f})")
    _unit_square(axes, "Recall (share of counterfeits flagged)", "Precision (flagged that are counterfeit)")
    axes.set_title("Precision-recall curve (counterfeit = positive)")
    axes.legend(loc="lower left")


def _plot_reliability(axes, scores, labels, metrics) -> None:
    title = f"Reliability (ECE = {_fmt(metrics.get('ece'), '3f')})"
    if not len(scores):
        return _note(axes, title, "No images were scored.")
    mean_score, observed, _ = reliability_bins(scores, labels)
    # Counts on a second axis, drawn behind: a bin of 2 images is not evidence of anything.
    count_axes = axes.twinx()
    edges = np.arange(ECE_BINS) / ECE_BINS
    bin_counts = np.bincount(score_bins(scores, ECE_BINS), minlength=ECE_BINS)
    count_axes.bar(edges, bin_counts, width=1 / ECE_BINS, align="edge", color="lightgrey", edgecolor="white")
    count_axes.set_ylabel("images per score bin", color="grey")
    axes.set_zorder(count_axes.get_zorder() + 1)
    axes.patch.set_visible(False)
    axes.plot([0, 1], [0, 1], color="grey", ls="--", lw=1, label="perfectly calibrated")
    axes.plot(mean_score, observed, "o-", color="tab:purple", label="model (one point per bin)")
    _unit_square(axes, "Mean score in bin (predicted P(counterfeit))", "Observed counterfeit rate")
    axes.set_title(title)
    axes.legend(loc="upper left")


def _plot_histogram(axes, scores, labels, metrics) -> None:
    thresholds = _thresholds(metrics)
    axes.axvspan(thresholds.low, thresholds.high, color="gold", alpha=0.25, label="inconclusive band")
    edges = np.linspace(0, 1, 21)
    for label, name in enumerate(CLASSES):
        axes.hist(scores[labels == label], bins=edges, histtype="stepfilled", alpha=0.45, lw=1.5,
                  color=CLASS_COLORS[name], edgecolor=CLASS_COLORS[name],
                  label=f"truly {name} ({int((labels == label).sum())} images)")
    for value, which in ((thresholds.low, "low"), (thresholds.high, "high")):
        axes.axvline(value, color="black", ls=":", lw=1)
        axes.annotate(f"{which} {value:.2f}", (value, 1.0), xycoords=("data", "axes fraction"),
                      ha="center", va="bottom", fontsize=8)
    axes.set_xlim(0, 1)
    axes.set_xlabel("Score (calibrated P(counterfeit))")
    axes.set_ylabel("Images")
    axes.set_title("Score distribution by true class", pad=14)
    axes.legend(loc="best", fontsize=8)


def _plot_confusion(axes, scores, labels, metrics) -> None:
    confusion = metrics["confusion"]
    counts = np.array([[confusion[truth][verdict] for verdict in SCORED_VERDICTS] for truth in CLASSES])
    axes.imshow(counts, cmap="Blues", vmin=0, vmax=max(int(counts.max()), 1), aspect="auto")
    dark = counts > counts.max() / 2
    for (row, col), count in np.ndenumerate(counts):
        axes.text(col, row, str(count), ha="center", va="center", fontsize=14,
                  color="white" if dark[row, col] else "black")
    axes.set_xticks(range(len(SCORED_VERDICTS)), [f"said {v}" for v in SCORED_VERDICTS])
    axes.set_yticks(range(len(CLASSES)), [f"truly {c}" for c in CLASSES])
    axes.set_xlabel("Verdict (images)")
    axes.set_title("Confusion matrix")


def _unit_square(axes, xlabel: str, ylabel: str) -> None:
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1.02)
    axes.set_xlabel(xlabel)
    axes.set_ylabel(ylabel)
    axes.grid(alpha=0.3)


# file name -> (how to draw it, what it shows, for the HTML caption)
PLOTS = {
    "roc.png": (_plot_roc, "Counterfeits caught against genuine items flagged, over every possible threshold."),
    "pr.png": (_plot_pr, "Of the images flagged, the share truly counterfeit, as more counterfeits are caught."),
    "reliability.png": (_plot_reliability,
                        "Scores against reality: on the diagonal, a score of 0.8 means 80% of such items are fakes."),
    "histogram.png": (_plot_histogram, "Where each true class scores; the shaded band gets no verdict."),
    "confusion.png": (_plot_confusion, "True class against verdict, in images."),
}


# ---------------------------------------------------------------- worst mistakes


def _wrongness(row: dict) -> float:
    """How far the score leans to the wrong class: the score of a genuine item, 1 - score of a fake."""
    return row["score"] if row["label"] == 0 else 1.0 - row["score"]


def worst_mistakes(metrics: dict, limit: int = MAX_MISTAKES) -> list[dict]:
    """Images whose score leans to the wrong class, most confidently wrong first, each with its verdict.

    Leaning, not only decided, wrong: a fake scored 0.3 inside a wide inconclusive band is still a photo
    the model misreads, and the verdict column shows which of them were actually decided wrong.
    """
    thresholds = _thresholds(metrics)
    wrong = [r for r in metrics.get("scores", []) if _wrongness(r) > 0.5]
    wrong.sort(key=lambda r: (-_wrongness(r), str(r["path"])))
    return [{**r, "verdict": verdict_for(float(r["score"]), thresholds)} for r in wrong[:limit]]


def write_mistake_thumbnails(mistakes: list[dict], report_dir: Path) -> list[dict]:
    """Each mistake plus `thumbnail` (path relative to report_dir) or `preview_error`."""
    folder = report_dir / MISTAKES_DIR
    folder.mkdir(exist_ok=True)
    for stale in folder.glob("[0-9][0-9].jpg"):  # an earlier report's, into the same folder
        stale.unlink()
    return [{**m, **_thumbnail(Path(m["path"]), folder / f"{i:02d}.jpg")} for i, m in enumerate(mistakes, 1)]


def _thumbnail(source: Path, out: Path) -> dict:
    try:
        image = load_image(source.read_bytes(), draft_to=THUMB_BOX).image
    except (OSError, ImageError) as exc:  # moved or changed since scoring: the row still says what it was
        return {"preview_error": getattr(exc, "message", None) or str(exc)}
    image.thumbnail(THUMB_BOX)
    image.save(out, "JPEG", quality=85)
    return {"thumbnail": f"{MISTAKES_DIR}/{out.name}"}


# ---------------------------------------------------------------- HTML


def _fmt(value, kind: str) -> str:
    """A metric for people: undefined ones (NaN here, None once through metrics.json) read "n/a"."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if kind == "pct":
        return f"{100 * value:.1f}%"
    if kind == "int":
        return str(int(value))
    return f"{value:.3f}"


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _table(header: list[str], rows: list[list[str]], cls: str = "") -> str:
    """An HTML table; cells are already-escaped HTML."""
    head = "".join(f"<th>{h}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def render_html(metrics: dict, plot_names: list[str], mistakes: list[dict]) -> str:
    sections = (_header_section(metrics), _summary_section(metrics), _plots_section(plot_names),
                _confusion_section(metrics), _products_section(metrics), _mistakes_section(mistakes),
                _errors_section(metrics.get("errors", [])))
    title = f"Evaluation report: {_e(metrics['model']['name'])}"
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
            f"<style>{CSS}</style></head><body><main>\n" + "\n".join(sections) + "\n</main></body></html>\n")


def _header_section(metrics: dict) -> str:
    model, thresholds = metrics["model"], metrics["thresholds"]
    return (f"<h1>Evaluation report: {_e(model['name'])}</h1>"
            f'<p class="meta">Model <b>{_e(model["name"])}</b>, version <code>{_e(model["version"])}</code>. '
            f"Verdict <i>counterfeit</i> when score &ge; {thresholds['high']:.4g}, <i>genuine</i> when "
            f"score &le; {thresholds['low']:.4g}, <i>inconclusive</i> in between. "
            "The score is the calibrated probability that the item is counterfeit.</p>")


def _summary_section(metrics: dict) -> str:
    rows = [[_e(name), f'<span class="num">{_e(_fmt(metrics.get(key), kind))}</span>', _e(why)]
            for key, name, kind, why in HEADLINE]
    return "<h2>Summary</h2>" + _table(["Metric", "Value", "What it means"], rows, "summary")


def _plots_section(plot_names: list[str]) -> str:
    figures = "".join(f'<figure><img src="{_e(name)}" alt="{_e(PLOTS[name][1])}" width="{FIG_SIZE[0] * DPI}">'
                      f"<figcaption>{_e(PLOTS[name][1])}</figcaption></figure>" for name in plot_names)
    return f'<h2>Plots</h2><div class="plots">{figures}</div>'


def _confusion_section(metrics: dict) -> str:
    confusion = metrics["confusion"]
    rows = [[f"<b>truly {_e(truth)}</b>"] + [str(confusion[truth][v]) for v in SCORED_VERDICTS]
            + [str(sum(confusion[truth].values()))] for truth in CLASSES]
    header = ["", *(f"said {_e(v)}" for v in SCORED_VERDICTS), "total"]
    return "<h2>Confusion matrix (images)</h2>" + _table(header, rows, "confusion")


def _products_section(metrics: dict) -> str:
    products = metrics.get("per_product", {})
    if not products:
        return "<h2>Per product line</h2><p>No product lines (all images sit directly in the class folders).</p>"
    rows = [[_e(name or "(no product line)")] + [_e(_fmt(m.get(key), kind)) for key, _, kind, _ in HEADLINE]
            for name, m in products.items()]
    header = ["Product line", *(_e(name) for _, name, _, _ in HEADLINE)]
    return ("<h2>Per product line</h2><p>A weak line can hide behind a good overall figure.</p>"
            + _table(header, rows, "products"))


def _mistakes_section(mistakes: list[dict]) -> str:
    heading = '<h2 id="mistakes">Worst mistakes</h2>'
    if not mistakes:
        return heading + "<p>No image's score leans towards the wrong class.</p>"
    cards = "".join(_mistake_card(m) for m in mistakes)
    return (heading + f"<p>The {len(mistakes)} images the model is most confidently wrong about: genuine items "
            "with the highest scores, counterfeits with the lowest (every score on the wrong side of 0.5; the "
            "verdict says whether it was decided wrong or left inconclusive).</p>"
            f'<div class="mistakes">{cards}</div>')


def _mistake_card(mistake: dict) -> str:
    if "thumbnail" in mistake:
        picture = f'<img src="{_e(mistake["thumbnail"])}" alt="{_e(Path(mistake["path"]).name)}">'
    else:
        picture = f'<div class="nopreview">no preview: {_e(mistake["preview_error"])}</div>'
    truth = CLASSES[mistake["label"]]
    # 4 decimals: with 3, a wrong-side 0.49996 would print as a right-looking 0.500.
    return (f'<figure class="mistake">{picture}<figcaption><code>{_e(mistake["path"])}</code><br>'
            f"truly <b>{_e(truth)}</b>, score {float(mistake['score']):.4f}, "
            f"said <b>{_e(mistake['verdict'])}</b></figcaption></figure>")


def _errors_section(errors: list[dict]) -> str:
    heading = "<h2>Files that could not be read</h2>"
    if not errors:
        return heading + "<p>None: every file was read and scored.</p>"
    items = "".join(f"<li><code>{_e(e['path'])}</code>: {_e(e['error'])}</li>" for e in errors)
    return heading + f"<p>{len(errors)} file(s), left out of every metric above:</p><ul>{items}</ul>"


CSS = """
body { font-family: system-ui, sans-serif; color: #222; background: #fff; margin: 0; }
main { max-width: 1100px; margin: 0 auto; padding: 1em 2em 3em; }
h1 { font-size: 1.6em; } h2 { margin-top: 1.8em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
table.products td:not(:first-child), table.confusion td:not(:first-child) { text-align: right; }
.num { font-variant-numeric: tabular-nums; font-weight: bold; }
.meta { color: #444; }
.plots { display: flex; flex-wrap: wrap; gap: 1em; }
figure { margin: 0; }
.plots figure { max-width: 500px; }
.plots img { max-width: 100%; height: auto; border: 1px solid #eee; }
.plots figcaption { font-size: 0.85em; color: #555; }
.mistakes { display: grid; grid-template-columns: repeat(auto-fill, minmax(210px, 1fr)); gap: 1em; }
.mistake img { max-width: 200px; display: block; }
.mistake figcaption { font-size: 0.85em; word-break: break-all; }
.nopreview { width: 200px; height: 100px; background: #eee; font-size: 0.8em; padding: 0.3em; }
"""
