"""geoplant:evaluate's report charts and per-species table: ROC curves (micro and a few
species), the reliability diagram and F1 per survey, drawn by matplotlib as inline SVG
(:mod:`.decisions.charts`, the same library as the area report).

:func:`roc_data` gathers, in :func:`.evaluate.evaluate`, what the charts need and the
:class:`.evaluate.Evaluation` does not keep (the presence matrix): the micro-averaged ROC
curve, the curves of the species with the most presences, every species' AUC.
"""

from __future__ import annotations

import html
import math

import numpy as np

#: points kept on a drawn ROC curve
ROC_POINTS = 400
#: species with their own curve (those with the most presences)
ROC_SPECIES = 4
#: rows of the per-species AUC table in the report (by presences)
AUC_ROWS = 50


def roc_curve(labels, scores, points: int = ROC_POINTS) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rates, true positive rates) from the highest cut-off to the lowest,
    one point per distinct score (ties move both rates at once), thinned to about ``points``."""
    y = np.asarray(labels, dtype=bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    n1, n0 = int(y.sum()), int((~y).sum())
    if n1 == 0 or n0 == 0:
        return np.array([0.0, 1.0]), np.array([0.0, 1.0])
    order = np.argsort(-s, kind="mergesort")
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(s[1:] != s[:-1]), s.size - 1]  # the last index of each distinct score
    tp = np.cumsum(y)[last]
    fp = (last + 1) - tp
    fpr = np.r_[0.0, fp / n0]
    tpr = np.r_[0.0, tp / n1]
    if fpr.size > points:
        keep = np.unique(np.r_[np.linspace(0, fpr.size - 1, points).astype(np.int64), fpr.size - 1])
        fpr, tpr = fpr[keep], tpr[keep]
    return fpr, tpr


def roc_data(presence, probabilities, species_ids) -> dict:
    """What the report draws: ``roc_micro`` (fpr, tpr over every survey x species pair),
    ``roc_species`` [(id, fpr, tpr, auc)] of the :data:`ROC_SPECIES` species with the most
    presences (and absences), ``species_auc`` [(id, presences, absences, auc)] of every species."""
    from .evaluate import roc_auc

    presence = np.asarray(presence, dtype=bool)
    probs = np.asarray(probabilities, dtype=np.float64)
    ids = np.asarray(species_ids, dtype=np.int64)
    n1 = presence.sum(axis=0)
    n0 = presence.shape[0] - n1
    table = []
    for j in range(ids.size):
        auc = roc_auc(presence[:, j], probs[:, j]) if n1[j] and n0[j] else math.nan
        table.append((int(ids[j]), int(n1[j]), int(n0[j]), auc))
    both = [j for j in np.argsort(-n1, kind="stable").tolist() if n1[j] and n0[j]]
    curves = []
    for j in both[:ROC_SPECIES]:
        fpr, tpr = roc_curve(presence[:, j], probs[:, j])
        curves.append((int(ids[j]), fpr, tpr, table[j][3]))
    return {"roc_micro": roc_curve(presence, probs), "roc_species": curves, "species_auc": table}


def _fmt(x) -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.4f}"


def figures_html(result) -> str:
    """The report's three charts (ROC curves, reliability diagram, F1 per survey) as figures."""
    from .decisions import charts

    extra = result.extra
    curves = []
    if "roc_micro" in extra:
        fpr, tpr = extra["roc_micro"]
        curves.append((f"micro (AUC {_fmt(result.auc_micro)})", fpr, tpr))
    for sid, fpr, tpr, auc in extra.get("roc_species", []):
        curves.append((f"species {sid} (AUC {_fmt(auc)})", fpr, tpr))
    k = result.k
    series = [("model", result.per_survey["f1"])]
    if "f1_richness_k" in result.per_survey:
        series.append(("model, K from richness", result.per_survey["f1_richness_k"]))
    if result.baseline is not None and "baseline_f1" in result.per_survey:
        series.append(("naive baseline", result.per_survey["baseline_f1"]))
    return "".join(
        [
            "<figure>" + charts.roc_curves(curves) + "</figure>",
            "<figure>" + charts.reliability(result.reliability) + "</figure>",
            "<figure>" + charts.histograms(series, f"F1@{k} per survey", f"F1@{k}") + "</figure>",
        ]
    )


def species_auc_html(result) -> str:
    """The per-species AUC table (species with the most presences first)."""
    rows = sorted(result.extra.get("species_auc", []), key=lambda r: (-r[1], r[0]))
    if not rows:
        return ""
    shown = rows[:AUC_ROWS]
    body = "".join(
        f"<tr><td>{sid}</td><td>{n1}</td><td>{n0}</td><td>{html.escape(_fmt(auc))}</td></tr>"
        for sid, n1, n0, auc in shown
    )
    more = f" ({len(shown)} of {len(rows)}, most presences first)" if len(rows) > len(shown) else ""
    return (
        f"<h2>AUC per species{more}</h2><table><tr><th>species id</th><th>presences</th>"
        f"<th>absences</th><th>AUC</th></tr>{body}</table>"
    )
