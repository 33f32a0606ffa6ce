"""The audit as files: audit.json for machines, report.html for people (one self-contained page).

Duplicate groups are shown as thumbnails embedded as base64 JPEG data URIs, so the page can be mailed
or attached to a ticket on its own. numpy + Pillow only, like the audit.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING

from inference.images import ImageError, load_image

if TYPE_CHECKING:
    from datatools.audit import AuditResult, Finding

THUMBNAIL_PIXELS = (160, 160)
MAX_DUPLICATE_GROUPS = 100  # a page with thousands of groups is unreadable; audit.json has them all
MAX_THUMBNAILS_PER_GROUP = 8
_SEVERITY_ORDER = {"error": 0, "warning": 1, "info": 2}
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 75em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
.error { background: #fde2e1; } .warning { background: #fff4d6; } .info { background: #eef5ff; }
figure { display: inline-block; margin: 0.3em; text-align: center; font-size: 0.8em; max-width: 170px; }
figure img { border: 1px solid #999; } .group { margin-bottom: 1.2em; }
"""


def write_report(result: AuditResult, report_dir: Path) -> None:
    """report_dir/audit.json and report_dir/report.html; the folder is created if needed."""
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    (report_dir / "audit.json").write_text(json.dumps(result.to_dict(), indent=2, ensure_ascii=False) + "\n",
                                           encoding="utf-8")
    (report_dir / "report.html").write_text(render_html(result), encoding="utf-8")


def render_html(result: AuditResult) -> str:
    findings = sorted(result.findings, key=lambda f: _SEVERITY_ORDER.get(f.severity, 3))
    duplicates = [f for f in result.findings if f.check == "duplicates"]
    summary = ", ".join(_plural(n, noun) for n, noun in ((len(result.errors()), "error"),
                        (len(result.warnings()), "warning"), (result.stats.get("images", 0), "image")))
    sections = [
        f"<h1>Data audit</h1><p><code>{_e(result.root)}</code>: {_e(summary)}.</p>",
        "<h2>Findings</h2>" + _findings_table(findings),
        "<h2>Images per split</h2>" + _counts_table(result.stats.get("counts", {})),
        "<h2>Per class</h2>" + _classes_table(result.stats.get("classes", {})),
        "<h2>Metadata shortcut</h2>" + _shortcut_table(result.stats.get("shortcut", {})),
        "<h2>Duplicate groups</h2>" + _duplicate_gallery(Path(result.root), duplicates),
    ]
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Data audit</title>"
            f"<style>{_STYLE}</style></head><body>{''.join(sections)}</body></html>\n")


def _plural(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _e(value) -> str:
    return html.escape(str(value))


def _table(headers: list[str], rows: list[list], row_classes: list[str] | None = None) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(f"<tr class='{_e(cls)}'>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>"
                   for row, cls in zip(rows, row_classes or [""] * len(rows)))
    return f"<table><tr>{head}</tr>{body}</table>"


def _findings_table(findings: list[Finding]) -> str:
    rows = [[_e(f.severity), _e(f.check), _e(f.message), _e(len(f.files) or "")] for f in findings]
    return _table(["severity", "check", "finding", "files"], rows, [f.severity for f in findings])


def _counts_table(counts: dict) -> str:
    classes = list(next(iter(counts.values()), {}))
    rows = [[_e(split)] + [_e(per_class[c]) for c in classes] for split, per_class in counts.items()]
    return _table(["split"] + classes, rows)


def _classes_table(classes: dict) -> str:
    def tally(values: dict) -> str:
        return _e(", ".join(f"{key} {n}" for key, n in values.items()))

    rows = [[_e(label), _e(c["images"]), tally(c["formats"]), tally(c["modes"]), tally(c["sizes"]),
             _e(f"{c['file_size']['min']:,} / {c['file_size']['median']:,.0f} / {c['file_size']['max']:,}")]
            for label, c in classes.items()]
    return _table(["class", "images", "formats", "colour modes", "sizes (commonest)", "bytes min / median / max"],
                  rows)


def _shortcut_table(shortcut: dict) -> str:
    auc = shortcut.get("auc")
    head = f"<p>{_e(shortcut.get('model', ''))}: ROC-AUC {_e('n/a' if auc is None else f'{auc:.3f}')}.</p>"
    feature_auc, importance = shortcut.get("feature_auc", {}), shortcut.get("importance", {})
    rows = [[_e(name), _e("n/a" if value is None else f"{value:.3f}"), _e(f"{importance.get(name, 0):.0%}")]
            for name, value in sorted(feature_auc.items(), key=lambda item: -(item[1] or 0))]
    return head + _table(["feature", "ROC-AUC alone (out-of-fold)", "importance in the full tree"], rows)


def _duplicate_gallery(root: Path, findings: list[Finding]) -> str:
    if not findings:
        return "<p>None found.</p>"
    groups = []
    for finding in findings[:MAX_DUPLICATE_GROUPS]:
        figures = "".join(_figure(root, path) for path in finding.files[:MAX_THUMBNAILS_PER_GROUP])
        groups.append(f"<div class='group {_e(finding.severity)}'><p>{_e(finding.message)}</p>{figures}</div>")
    more = len(findings) - MAX_DUPLICATE_GROUPS
    return "".join(groups) + (f"<p>{more} more groups in audit.json.</p>" if more > 0 else "")


def _figure(root: Path, path: str) -> str:
    uri = thumbnail_data_uri(root / path)
    image = f"<img src='{uri}' alt='{_e(path)}'>" if uri else "<p>(unreadable)</p>"
    return f"<figure>{image}<figcaption>{_e(path)}</figcaption></figure>"


def thumbnail_data_uri(path: Path) -> str:
    """A small upright JPEG of the photo as a data: URI, or "" if it cannot be read now."""
    try:
        image = load_image(path.read_bytes(), draft_to=THUMBNAIL_PIXELS).image
    except (OSError, ImageError):
        return ""
    image.thumbnail(THUMBNAIL_PIXELS)
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=80)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
