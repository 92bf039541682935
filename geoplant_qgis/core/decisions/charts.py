"""The reports' charts, drawn by matplotlib (which QGIS's Python carries) as inline SVG.

Figures are made with ``matplotlib.figure.Figure`` and its SVG canvas directly: no pyplot,
no global backend switch (QGIS desktop and other plugins keep theirs), text kept as text
(``svg.fonttype = none``: small, searchable) and stable ids (``svg.hashsalt``). Each
function returns one ``<svg>`` element, without the XML header, to put inside HTML.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike

_RC = {"svg.fonttype": "none", "svg.hashsalt": "geoplant", "font.size": 9, "axes.titlesize": 10}
BLUE, GREEN, RED, GREY = "#3b6ea5", "#2a7f62", "#c0392b", "#999999"


def _figure(width: float = 4.6, height: float = 3.0):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _unit_square(ax, xlabel: str, ylabel: str, title: str) -> None:
    """Square axes from 0 to 1 on both sides (ROC curves, reliability diagrams)."""
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_aspect("equal")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)


def to_svg(figure) -> str:
    """The figure as one ``<svg>`` element (XML header and doctype dropped)."""
    from matplotlib import rc_context
    from matplotlib.backends.backend_svg import FigureCanvasSVG

    buffer = io.StringIO()
    with rc_context(_RC):
        FigureCanvasSVG(figure)
        figure.savefig(buffer, format="svg")
    text = buffer.getvalue()
    start = text.find("<svg")
    text = re.sub(r"<metadata>.*?</metadata>", "", text[start:], flags=re.S)
    return re.sub(r"<!--.*?-->", "", text, flags=re.S).strip()


def histogram_counts(counts: ArrayLike, edges: ArrayLike, title: str, xlabel: str, ylabel="cells") -> str:
    """Bars of precomputed ``counts`` between ``edges``."""
    from matplotlib import rc_context

    with rc_context(_RC):
        fig = _figure()
        ax = fig.add_subplot()
        edges_a = np.asarray(edges, dtype=float)
        counts_a = np.asarray(counts)
        if counts_a.size:
            ax.bar(
                edges_a[:-1], counts_a, width=np.diff(edges_a), align="edge", color=BLUE, edgecolor="white"
            )
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        return to_svg(fig)


def histograms(series: Sequence[tuple[str, Sequence[float]]], title: str, xlabel: str, bins: int = 20) -> str:
    """Histograms of values in [0, 1], one per (label, values): filled bars for one series,
    outlines in their own colour and dash for several (overlaid filled bars hide one another,
    and two equal series would show as one)."""
    from matplotlib import rc_context

    styles = zip((BLUE, RED, GREEN, GREY), ("-", "--", ":", "-."), strict=True)
    with rc_context(_RC):
        fig = _figure()
        ax = fig.add_subplot()
        for (label, values), (colour, dash) in zip(series, styles, strict=False):
            v = np.asarray(values, dtype=float)
            v = v[np.isfinite(v)]
            if len(series) == 1:
                ax.hist(v, bins=bins, range=(0.0, 1.0), color=colour, label=label, edgecolor="white")
            else:
                ax.hist(
                    v,
                    bins=bins,
                    range=(0.0, 1.0),
                    histtype="step",
                    linewidth=1.8,
                    linestyle=dash,
                    color=colour,
                    label=label,
                )
        ax.set_title(title)
        ax.set_xlabel(xlabel)
        ax.set_ylabel("surveys")
        if len(series) > 1:
            ax.legend()
        return to_svg(fig)


def ranges(
    labels: Sequence[str],
    means: Sequence[float],
    lows: Sequence[float],
    highs: Sequence[float],
    title: str,
    ylabel: str,
) -> str:
    """One bar per label (its mean) with a line from its minimum to its maximum."""
    from matplotlib import rc_context

    with rc_context(_RC):
        fig = _figure(max(4.6, 0.5 * len(labels) + 1.5), 3.2)
        ax = fig.add_subplot()
        x = np.arange(len(labels))
        m = np.asarray(means, dtype=float)
        lo = np.asarray(lows, dtype=float)
        hi = np.asarray(highs, dtype=float)
        ax.bar(x, np.nan_to_num(m), color=GREEN)
        ok = np.isfinite(m) & np.isfinite(lo) & np.isfinite(hi)
        if ok.any():
            ax.errorbar(
                x[ok], m[ok], yerr=[m[ok] - lo[ok], hi[ok] - m[ok]], fmt="none", ecolor="#333", capsize=3
            )
        ax.set_xticks(
            x,
            [str(s) for s in labels],
            rotation=30 if len(labels) > 4 else 0,
            ha="right" if len(labels) > 4 else "center",
        )
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        return to_svg(fig)


def roc_curves(
    curves: Sequence[tuple[str, Sequence[float], Sequence[float]]], title: str = "ROC curves"
) -> str:
    """ROC curves: (label, false positive rates, true positive rates), the first one bold."""
    from matplotlib import rc_context

    with rc_context(_RC):
        fig = _figure(4.2, 4.0)
        ax = fig.add_subplot()
        ax.plot([0, 1], [0, 1], color=GREY, linestyle="--", linewidth=1)
        for i, (label, fpr, tpr) in enumerate(curves):
            ax.plot(
                fpr, tpr, linewidth=2.2 if i == 0 else 1.2, label=label, color="#222222" if i == 0 else None
            )
        _unit_square(ax, "false positive rate", "true positive rate", title)
        if curves:
            ax.legend(loc="lower right", fontsize=7)
        return to_svg(fig)


def reliability(rel: dict, title: str = "reliability diagram") -> str:
    """Observed frequency vs mean predicted probability per bin, bars shaded by their pairs."""
    from matplotlib import rc_context

    with rc_context(_RC):
        fig = _figure(4.2, 4.0)
        ax = fig.add_subplot()
        ax.plot([0, 1], [0, 1], color=GREY, linestyle="--", linewidth=1, label="perfect calibration")
        lower = np.asarray(rel["lower"], dtype=float)
        upper = np.asarray(rel["upper"], dtype=float)
        count = np.asarray(rel["count"], dtype=float)
        observed = np.asarray(rel["observed"], dtype=float)
        mean = np.asarray(rel["mean_predicted"], dtype=float)
        has = count > 0
        ax.bar(
            lower[has],
            observed[has],
            width=(upper - lower)[has],
            align="edge",
            color=GREEN,
            alpha=0.45,
            edgecolor="white",
            label="observed per bin",
        )
        ax.plot(
            mean[has],
            observed[has],
            color=RED,
            marker="o",
            markersize=3,
            linewidth=1.6,
            label="mean predicted vs observed",
        )
        _unit_square(ax, "predicted probability", "observed frequency", title)
        ax.legend(loc="upper left", fontsize=7)
        return to_svg(fig)
