"""Threshold rules: the cut-off that turns a species' probabilities into presence/absence.

A cell is *present* when ``p >= threshold``. The rules:

- ``fixed``: the THRESHOLD given;
- ``max_tss``: the cut-off maximising the true skill statistic, sensitivity + specificity - 1;
- ``equal_sens_spec``: the cut-off where sensitivity and specificity are closest
  (ties: the higher TSS);
- ``max_kappa``: the cut-off maximising Cohen's kappa.

The data-driven rules search exhaustively over the candidate cut-offs, which are the
distinct probabilities of the species at the surveys (any other cut-off gives the same
classification of the surveys as the next candidate above it). Every score is one exact
division of whole numbers, so equal scores are equal floats; among equal scores the
**lowest** cut-off wins (the more inclusive map: a planner would rather survey a cell than
miss a species). A species needs at least one presence and one absence among the surveys.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import InputDataError

RULES: tuple[str, ...] = ("fixed", "max_tss", "equal_sens_spec", "max_kappa")
DATA_DRIVEN: tuple[str, ...] = ("max_tss", "equal_sens_spec", "max_kappa")


def check_rule(rule) -> str:
    """The rule's name (case and spaces ignored); InputDataError naming the choices."""
    name = str(rule).strip().lower() if rule is not None else ""
    if name not in RULES:
        raise InputDataError(f"RULE must be one of {', '.join(RULES)}; got {str(rule)!r}.")
    return name


@dataclass(frozen=True)
class Threshold:
    """A rule's cut-off for one species and how it classifies the surveys.

    ``threshold`` is NaN (and ``note`` says why) when the rule could not choose one."""

    rule: str
    threshold: float
    presences: int
    absences: int
    sensitivity: float = math.nan
    specificity: float = math.nan
    tss: float = math.nan
    kappa: float = math.nan
    note: str = ""

    @property
    def usable(self) -> bool:
        return not math.isnan(self.threshold)


def confusion(labels, probabilities, cutoffs) -> tuple[np.ndarray, np.ndarray, int, int]:
    """(true positives, false positives) [len(cutoffs)] at each cut-off (present: p >= t),
    and the numbers of presences and absences. NaN probabilities must be removed first."""
    y = np.asarray(labels, dtype=bool)
    p = np.asarray(probabilities, dtype=np.float64)
    t = np.asarray(cutoffs, dtype=np.float64)
    present = np.sort(p[y])
    absent = np.sort(p[~y])
    tp = present.size - np.searchsorted(present, t, side="left")
    fp = absent.size - np.searchsorted(absent, t, side="left")
    return tp.astype(np.int64), fp.astype(np.int64), int(present.size), int(absent.size)


def _scores(tp: np.ndarray, fp: np.ndarray, n1: int, n0: int) -> dict[str, np.ndarray]:
    """Sensitivity, specificity, TSS and kappa, each one division of exact whole numbers."""
    tp = tp.astype(np.int64)
    fp = fp.astype(np.int64)
    fn = n1 - tp
    tn = n0 - fp
    sens = tp / n1
    spec = tn / n0
    tss = (tp * n0 + tn * n1 - n1 * n0) / (n1 * n0)
    # Cohen's kappa = 2 (TP TN - FN FP) / ((TP + FP)(FP + TN) + (TP + FN)(FN + TN))
    num = 2 * (tp * tn - fn * fp)
    den = (tp + fp) * (fp + tn) + (tp + fn) * (fn + tn)
    with np.errstate(invalid="ignore", divide="ignore"):
        kappa = np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)
    # |sens - spec| as one division too: |TP N0 - TN N1| / (N1 N0)
    gap = np.abs(tp * n0 - tn * n1) / (n1 * n0)
    return {"sensitivity": sens, "specificity": spec, "tss": tss, "kappa": kappa, "gap": gap}


def _at(scores: dict[str, np.ndarray], i: int) -> tuple[float, float, float, float]:
    """(sensitivity, specificity, tss, kappa) at candidate ``i``."""
    sens, spec, tss, kappa = (float(scores[k][i]) for k in ("sensitivity", "specificity", "tss", "kappa"))
    return sens, spec, tss, kappa


def choose(rule: str, labels, probabilities, threshold: float | None = None) -> Threshold:
    """The cut-off of ``rule`` for one species from its ``labels`` (present at the survey)
    and ``probabilities`` there (NaN: no data, left out). ``threshold``: the ``fixed`` rule's
    value. With surveys, the fixed threshold is scored too."""
    rule = check_rule(rule)
    y = np.asarray(labels, dtype=bool).ravel()
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    keep = np.isfinite(p)
    y, p = y[keep], p[keep]
    n1, n0 = int(y.sum()), int((~y).sum())
    if rule == "fixed":
        if threshold is None:
            raise InputDataError("The fixed rule needs a THRESHOLD (a probability, e.g. 0.5).")
        if n1 == 0 or n0 == 0:
            return Threshold(rule, float(threshold), n1, n0)
        tp, fp, _, _ = confusion(y, p, [threshold])
        s = _scores(tp, fp, n1, n0)
        return Threshold(
            rule,
            float(threshold),
            n1,
            n0,
            *_at(s, 0),
        )
    if n1 == 0 or n0 == 0:
        why = "no presence" if n1 == 0 else "no absence"
        return Threshold(
            rule,
            math.nan,
            n1,
            n0,
            note=f"{why} among the {n1 + n0} surveys with a value: {rule} needs both; "
            "the band is nodata (255)",
        )
    candidates = np.unique(p)  # ascending: the first best is the lowest cut-off
    tp, fp, _, _ = confusion(y, p, candidates)
    s = _scores(tp, fp, n1, n0)
    if rule == "max_tss":
        best = int(np.argmax(s["tss"]))
    elif rule == "max_kappa":
        best = int(np.argmax(s["kappa"]))
    else:  # equal_sens_spec: the smallest gap, then the higher TSS, then the lowest cut-off
        order = np.lexsort((np.arange(candidates.size), -s["tss"], s["gap"]))
        best = int(order[0])
    return Threshold(
        rule,
        float(candidates[best]),
        n1,
        n0,
        *_at(s, best),
    )
