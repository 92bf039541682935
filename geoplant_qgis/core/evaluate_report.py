"""evaluate's outputs: the per-survey table as CSV and the self-contained HTML report.

The report holds the metrics, fixed K against K from each survey's expected richness,
the charts of :mod:`.evaluate_charts` and the reliability bins; both are written under a
temporary name and renamed at the end (:func:`core.files.write_text`).
"""

from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING

from .evaluate_charts import figures_html, species_auc_html
from .files import write_text

if TYPE_CHECKING:
    from .evaluate import Evaluation


def table_csv(result: Evaluation) -> str:
    """The per-survey table as CSV text."""
    import pandas as pd

    return pd.DataFrame(result.per_survey).to_csv(index=False, float_format="%.6g")


def write_table_csv(path, result: Evaluation) -> str:
    """The per-survey table as CSV (temporary name, renamed at the end)."""
    return write_text(path, table_csv(result))


def _fmt(x, digits=4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{x:.{digits}f}" if isinstance(x, float) else str(x)


def report_html(result: Evaluation, title: str = "GeoPlant evaluation", notes: dict | None = None) -> str:
    """A self-contained HTML report (metrics table, F1 histogram, reliability diagram)."""
    k = result.k
    rows = [
        (f"F1@{k} (samples-averaged, GeoLifeCLEF metric)", _fmt(result.f1)),
        (f"recall@{k}", _fmt(result.recall)),
        ("AUC micro", _fmt(result.auc_micro)),
        (
            f"AUC macro ({result.auc_macro_species} species with presences and absences)",
            _fmt(result.auc_macro),
        ),
        ("expected calibration error", _fmt(result.reliability["ece"])),
        ("surveys evaluated", str(result.n_surveys)),
        ("species in the model", str(result.n_species)),
        ("observed species unknown to the model (count as misses)", str(result.unknown_species)),
        ("surveys without predictions (left out)", str(result.extra.get("dropped_surveys", 0))),
    ]
    if result.baseline is not None:
        base = result.baseline["f1"]
        rows += [
            (f"naive baseline F1@{k} (the {k} most frequent training species everywhere)", _fmt(base)),
            (f"naive baseline recall@{k}", _fmt(result.baseline["recall"])),
            ("model / baseline F1", _fmt(result.f1 / base, 2) if base > 0 else "n/a"),
        ]
    for key, value in (notes or {}).items():
        rows.append((str(key), str(value)))
    table = "".join(f"<tr><th>{html.escape(a)}</th><td>{html.escape(b)}</td></tr>" for a, b in rows)
    compare = _k_comparison_html(result)
    rel = result.reliability
    rel_rows = "".join(
        f"<tr><td>{lo:.1f}-{hi:.1f}</td><td>{c}</td><td>{_fmt(m, 3)}</td><td>{_fmt(o, 3)}</td></tr>"
        for lo, hi, c, m, o in zip(
            rel["lower"], rel["upper"], rel["count"], rel["mean_predicted"], rel["observed"], strict=True
        )
    )
    # charts by matplotlib (.evaluate_charts): ROC curves, reliability diagram, F1 per survey
    figures = [figures_html(result), species_auc_html(result)]
    return (
        "<!DOCTYPE html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>body{{font-family:sans-serif;margin:2em;max-width:70em}}"
        "table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}"
        "figure{display:inline-block;margin:1em}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><table>{table}</table>{compare}"
        f"<h2>Plots</h2>{''.join(figures)}"
        "<h2>Reliability bins</h2><table><tr><th>bin</th><th>pairs</th><th>mean predicted</th>"
        f"<th>observed</th></tr>{rel_rows}</table></body></html>"
    )


def _k_comparison_html(result: Evaluation) -> str:
    """Fixed K and K from each survey's expected richness, side by side (F1, recall, mean K)."""
    k, margin = result.k, result.topk_margin
    fixed_k = min(k, result.n_species)
    rows = [
        ("F1 (samples-averaged)", _fmt(result.f1), _fmt(result.f1_richness)),
        ("recall", _fmt(result.recall), _fmt(result.recall_richness)),
        ("mean K per survey", str(fixed_k), _fmt(result.mean_richness_k, 2)),
    ]
    body = "".join(
        f"<tr><th>{html.escape(a)}</th><td>{html.escape(b)}</td><td>{html.escape(c)}</td></tr>"
        for a, b, c in rows
    )
    richness_head = (
        f"K from the expected richness (sum of probabilities rounded, {margin:+d}, from 1 to {fixed_k})"
    )
    return (
        "<h2>Fixed K vs K from the expected richness</h2><table><tr><th></th>"
        f"<th>fixed K = {fixed_k}</th><th>{html.escape(richness_head)}</th></tr>{body}</table>"
    )


def write_report_html(path, result: Evaluation, title: str = "GeoPlant evaluation", notes=None) -> str:
    return write_text(path, report_html(result, title, notes))
