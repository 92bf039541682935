"""How good are species predictions at presence-absence surveys.

The GeoLifeCLEF / GeoPlant benchmark metric is the samples-averaged F1 of the top-K set:
for each survey the K species with the highest scores are the prediction, and
``F1 = 2 TP / (K + number of species observed)``; the score is the mean over surveys.
Species observed in a survey but absent from the model still count as misses.

Also: recall@K, micro and macro ROC AUC (rank based, ties counted half, as the
Mann-Whitney statistic), a reliability diagram, and the naive baseline that predicts the
K species most frequent in the training surveys everywhere. Pure numpy; the HTML report's
charts (ROC curves, reliability diagram, F1 per survey) are drawn by matplotlib as inline
SVG (:mod:`.evaluate_charts`); the report and the per-survey table are :mod:`.evaluate_report`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np

from .errors import InputDataError
from .evaluate_charts import roc_data
from .evaluate_report import report_html, table_csv, write_report_html, write_table_csv  # noqa: F401
from .files import Publication

DEFAULT_K = 25


# ----------------------------------------------------------------------------- sets


def _check_k(k, name: str = "TOP_K") -> int:
    """K of the top-K set: a whole number from 1 (InputDataError in words otherwise)."""
    from .checks import MAX_TOP_K, number

    return number(
        k, name, minimum=1, maximum=MAX_TOP_K, integer=True, what="the size of the top-K set, e.g. 25"
    )


def top_k_indices(scores, k: int) -> np.ndarray:
    """[N, min(k, S)] column indices by decreasing score; ties go to the lower column index."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2:
        raise InputDataError(f"Scores must be a [surveys, species] table; got shape {scores.shape}.")
    k = _check_k(k, "K")
    k = min(k, scores.shape[1])
    order = np.argsort(-scores, axis=1, kind="stable")
    return order[:, :k]


def _as_id_sets(lists) -> list[np.ndarray]:
    return [np.unique(np.asarray(list(s), dtype=np.int64)) for s in lists]


def _mean_recall(recall: np.ndarray) -> float:
    """Mean over the surveys with an observation (NaN recall: nothing observed)."""
    return float(np.nanmean(recall)) if np.isfinite(recall).any() else float("nan")


def set_scores(true_lists, predicted_lists) -> dict:
    """Per-survey TP, F1 and recall of predicted id sets against observed id sets.

    ``F1 = 2 TP / (|predicted| + |observed|)`` (1.0 when both are empty, as sklearn's
    ``zero_division=1``; 0 when one is); ``recall = TP / |observed|`` (NaN when nothing
    was observed). Returns arrays ``tp``, ``n_true``, ``n_pred``, ``f1``, ``recall``.
    """
    true_sets = _as_id_sets(true_lists)
    pred_sets = _as_id_sets(predicted_lists)
    if len(true_sets) != len(pred_sets):
        raise InputDataError(f"{len(true_sets)} surveys but {len(pred_sets)} predictions.")
    tp = np.array(
        [np.intersect1d(t, p, assume_unique=True).size for t, p in zip(true_sets, pred_sets, strict=True)]
    )
    n_true = np.array([t.size for t in true_sets])
    n_pred = np.array([p.size for p in pred_sets])
    denom = n_true + n_pred
    with np.errstate(invalid="ignore", divide="ignore"):
        f1 = np.where(denom > 0, 2.0 * tp / np.maximum(denom, 1), 1.0)
        recall = np.where(n_true > 0, tp / np.maximum(n_true, 1), np.nan)
    return {"tp": tp, "n_true": n_true, "n_pred": n_pred, "f1": f1.astype(np.float64), "recall": recall}


def _check_margin(margin) -> int:
    from .checks import MAX_TOP_K, number

    return int(
        number(
            0 if margin is None else margin,
            "TOPK_MARGIN",
            minimum=-MAX_TOP_K,
            maximum=MAX_TOP_K,
            integer=True,
            what="species added to each survey's rounded richness to make its K, e.g. 0 or 2",
        )
    )


def richness_top_k(scores, k: int, margin: int = 0, top=None) -> tuple[list[np.ndarray], np.ndarray]:
    """GeoPlant's "Top-K estimation": each row's top-K set with its own K, the row's
    expected richness (the sum of its scores) rounded plus ``margin``, from 1 to ``k``
    (:func:`.predict.outputs.richness_k`, predict's TOPK_MODE "richness"). ``top``: the
    rows' :func:`top_k_indices` when the caller has them already. Returns
    ([column indices by decreasing score, one array per row], K per row)."""
    from .predict.outputs import richness_k

    scores = np.asarray(scores, dtype=np.float64)
    top = top_k_indices(scores, k) if top is None else np.asarray(top)
    ks = richness_k(scores.sum(axis=1), _check_margin(margin), top.shape[1])
    return [row[:n] for row, n in zip(top, ks.tolist(), strict=True)], ks


def f1_at_k(true_lists, species_ids, scores, k: int = DEFAULT_K) -> float:
    """Samples-averaged F1 of the top-``k`` set (the GeoLifeCLEF metric)."""
    species_ids = np.asarray(species_ids, dtype=np.int64)
    pred = species_ids[top_k_indices(scores, k)]
    return float(set_scores(true_lists, list(pred))["f1"].mean())


# ----------------------------------------------------------------------------- AUC


def _average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, tied values sharing their mean rank."""
    order = np.argsort(values, kind="mergesort")
    sorted_values = values[order]
    starts = np.r_[0, np.flatnonzero(sorted_values[1:] != sorted_values[:-1]) + 1]
    ends = np.r_[starts[1:], len(values)]
    mean_rank = (starts + ends + 1) / 2.0  # ranks starts+1..ends
    ranks = np.empty(len(values), dtype=np.float64)
    ranks[order] = np.repeat(mean_rank, ends - starts)
    return ranks


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve (Mann-Whitney U / (n1 n0)); NaN without both classes."""
    labels = np.asarray(labels, dtype=bool).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if labels.shape != scores.shape:
        raise InputDataError(f"{labels.size} labels but {scores.size} scores.")
    n1 = int(labels.sum())
    n0 = labels.size - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    ranks = _average_ranks(scores)
    return float((ranks[labels].sum() - n1 * (n1 + 1) / 2.0) / (n1 * n0))


def macro_auc(presence, scores) -> tuple[float, int]:
    """Mean per-species AUC over species with both presences and absences, and their count."""
    presence = np.asarray(presence, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    values = [roc_auc(presence[:, j], scores[:, j]) for j in range(presence.shape[1])]
    values = [v for v in values if not math.isnan(v)]
    return (float(np.mean(values)) if values else float("nan")), len(values)


# ----------------------------------------------------------------------------- calibration


def reliability_bins(presence, probabilities, n_bins: int = 10) -> dict:
    """Reliability diagram over all (survey, species) pairs: equal-width bins on [0, 1].

    Returns ``lower``, ``upper``, ``count``, ``mean_predicted``, ``observed`` (fraction of
    presences; NaN in empty bins) and ``ece`` (expected calibration error).
    """
    y = np.asarray(presence, dtype=bool).ravel()
    p = np.asarray(probabilities, dtype=np.float64).ravel()
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    which = np.clip(np.searchsorted(edges, p, side="right") - 1, 0, n_bins - 1)
    count = np.bincount(which, minlength=n_bins)
    sum_p = np.bincount(which, weights=p, minlength=n_bins)
    sum_y = np.bincount(which, weights=y.astype(np.float64), minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_p = np.where(count > 0, sum_p / np.maximum(count, 1), np.nan)
        observed = np.where(count > 0, sum_y / np.maximum(count, 1), np.nan)
    total = max(int(count.sum()), 1)
    ece = float(np.nansum(count / total * np.abs(mean_p - observed)))
    return {
        "lower": edges[:-1],
        "upper": edges[1:],
        "count": count,
        "mean_predicted": mean_p,
        "observed": observed,
        "ece": ece,
    }


# ----------------------------------------------------------------------------- baseline


def most_frequent_species(train_lists, k: int = DEFAULT_K) -> np.ndarray:
    """The ``k`` species ids present in the most training surveys (ties: smaller id first)."""
    flat = np.concatenate(_as_id_sets(train_lists) or [np.empty(0, np.int64)])
    if flat.size == 0:
        raise InputDataError("The training surveys hold no species; the naive baseline needs some.")
    ids, counts = np.unique(flat.astype(np.int64), return_counts=True)
    order = np.lexsort((ids, -counts))
    return ids[order[:k]]


# ----------------------------------------------------------------------------- all together


@dataclass
class Evaluation:
    k: int
    n_surveys: int
    n_species: int
    f1: float
    recall: float
    auc_micro: float
    auc_macro: float
    auc_macro_species: int
    reliability: dict
    per_survey: dict  # arrays: surveyId, n_true, tp, f1, recall, top-k ids
    unknown_species: int  # observed species the model does not know
    baseline: dict | None = None  # f1, recall, species (ids)
    extra: dict = field(default_factory=dict)
    #: the same F1 / recall with each survey's K from its expected richness (richness_top_k)
    topk_margin: int = 0
    f1_richness: float = float("nan")
    recall_richness: float = float("nan")
    mean_richness_k: float = float("nan")

    def summary(self) -> dict:
        out = {
            "k": self.k,
            "surveys": self.n_surveys,
            "species": self.n_species,
            f"f1_at_{self.k}": self.f1,
            f"recall_at_{self.k}": self.recall,
            "f1_at_richness_k": self.f1_richness,
            "recall_at_richness_k": self.recall_richness,
            "richness_k_margin": self.topk_margin,
            "richness_k_mean": self.mean_richness_k,
            "auc_micro": self.auc_micro,
            "auc_macro": self.auc_macro,
            "auc_macro_species": self.auc_macro_species,
            "ece": self.reliability["ece"],
            "unknown_observed_species": self.unknown_species,
        }
        if self.baseline is not None:
            out[f"baseline_f1_at_{self.k}"] = self.baseline["f1"]
            out[f"baseline_recall_at_{self.k}"] = self.baseline["recall"]
            out["f1_ratio_to_baseline"] = self.f1 / self.baseline["f1"] if self.baseline["f1"] > 0 else None
        return out


def evaluate(
    survey_ids,
    true_lists,
    species_ids,
    probabilities,
    k: int = DEFAULT_K,
    train_lists=None,
    n_bins: int = 10,
    topk_margin: int = 0,
) -> Evaluation:
    """All metrics of ``probabilities`` [N, S] (columns = ``species_ids``) at N surveys.

    F1 and recall with the fixed ``k``, and side by side with each survey's K from its
    expected richness plus ``topk_margin`` (:func:`richness_top_k`).

    Surveys whose row holds NaN (no data under them) are left out; it is an error when
    none is left.
    """
    probs = np.asarray(probabilities, dtype=np.float64)
    species_ids = np.asarray(species_ids, dtype=np.int64)
    survey_ids = np.asarray(survey_ids)
    true_lists = list(true_lists)
    if probs.ndim != 2 or probs.shape[1] != species_ids.size:
        raise InputDataError(
            f"Probabilities of shape {probs.shape} do not match the {species_ids.size} species of the model."
        )
    if not (len(true_lists) == len(survey_ids) == probs.shape[0]):
        raise InputDataError(
            f"{len(survey_ids)} surveys, {len(true_lists)} species lists "
            f"and {probs.shape[0]} prediction rows."
        )
    k = _check_k(k)
    topk_margin = _check_margin(topk_margin)
    valid = ~np.isnan(probs).any(axis=1)
    if not valid.any():
        raise InputDataError("No survey has predictions (all surveys fall on nodata or outside the rasters).")
    probs = probs[valid]
    survey_ids = survey_ids[valid]
    true_lists = [tl for tl, v in zip(true_lists, valid, strict=True) if v]
    true_sets = _as_id_sets(true_lists)
    top_columns = top_k_indices(probs, k)
    top = species_ids[top_columns]
    scores = set_scores(true_sets, list(top))
    richness_columns, richness_ks = richness_top_k(probs, k, topk_margin, top=top_columns)
    by_richness = set_scores(true_sets, [species_ids[c] for c in richness_columns])
    column = {int(s): j for j, s in enumerate(species_ids)}
    presence = np.zeros(probs.shape, dtype=bool)
    unknown = 0
    for i, t in enumerate(true_sets):
        for s in t.tolist():
            j = column.get(s)
            if j is None:
                unknown += 1
            else:
                presence[i, j] = True
    roc = roc_data(presence, probs, species_ids)  # every species' AUC, once (as macro_auc would)
    aucs = [auc for *_, auc in roc["species_auc"] if not math.isnan(auc)]
    auc_m, auc_n = (float(np.mean(aucs)) if aucs else float("nan")), len(aucs)
    result = Evaluation(
        k=int(k),
        n_surveys=int(len(true_sets)),
        n_species=int(species_ids.size),
        f1=float(scores["f1"].mean()),
        recall=_mean_recall(scores["recall"]),
        auc_micro=roc_auc(presence, probs),
        auc_macro=auc_m,
        auc_macro_species=auc_n,
        reliability=reliability_bins(presence, probs, n_bins),
        per_survey={
            "surveyId": survey_ids,
            "n_observed": scores["n_true"],
            "true_positives": scores["tp"],
            "f1": scores["f1"],
            "recall": scores["recall"],
            "predicted_richness": probs.sum(axis=1),
            "top_k": [" ".join(map(str, row)) for row in top.tolist()],
            "richness_k": richness_ks,
            "f1_richness_k": by_richness["f1"],
            "recall_richness_k": by_richness["recall"],
        },
        unknown_species=unknown,
        extra={"dropped_surveys": int((~valid).sum()), **roc},
        topk_margin=topk_margin,
        f1_richness=float(by_richness["f1"].mean()),
        recall_richness=_mean_recall(by_richness["recall"]),
        mean_richness_k=float(richness_ks.mean()),
    )
    if train_lists is not None:
        naive = most_frequent_species(train_lists, k)
        base = set_scores(true_sets, [naive] * len(true_sets))
        result.baseline = {
            "f1": float(base["f1"].mean()),
            "recall": _mean_recall(base["recall"]),
            "species": naive.tolist(),
        }
        result.per_survey["baseline_f1"] = base["f1"]
    return result


# ----------------------------------------------------------------------------- end to end


def surveys_from_csv(path, progress=None):
    """A presence-absence CSV -> DataFrame surveyId, x, y (lon, lat in EPSG:4326), speciesIds."""
    from .geoplant.observations import aggregate_surveys

    frame = aggregate_surveys(path, progress=progress)
    if len(frame) and not any(len(s) for s in frame["speciesIds"]):
        raise InputDataError(
            f"{os.path.basename(os.fspath(path))} lists no species (no speciesId column or no values): "
            "evaluation needs presence-absence surveys with their species."
        )
    return frame.rename(columns={"lon": "x", "lat": "y"})[["surveyId", "x", "y", "speciesIds"]]


def sample_prediction_rasters(paths, xs, ys, crs) -> tuple[np.ndarray, np.ndarray]:
    """Probability rasters written by predict (bands "<name> (<id>)") sampled at points.

    Returns (species ids [S], float32 [N, S]; NaN where a raster has no data).
    """
    from .geotiff import species_id_of_band
    from .sampling import PointSampler
    from .sources import BandRef, raster_band_names

    refs, ids = [], []
    for path in paths:
        for band, text in enumerate(raster_band_names(path), start=1):
            species_id = species_id_of_band(text)
            if species_id is None:
                raise InputDataError(
                    f"Band {band} of {os.path.basename(path)} is not a species probability band: its "
                    f"description {text!r} does not end with '(<species id>)' as predict writes them."
                )
            refs.append(BandRef(os.fspath(path), band))
            ids.append(species_id)
    if not refs:
        raise InputDataError("PREDICTIONS holds no raster band.")
    if len(set(ids)) != len(ids):
        raise InputDataError("PREDICTIONS holds the same species more than once.")
    values = PointSampler(refs, crs).sample(xs, ys)
    return np.asarray(ids, dtype=np.int64), values


def evaluate_surveys(
    surveys,
    crs,
    *,
    model=None,
    rasters=(),
    mapping=None,
    predictions=None,
    k: int = DEFAULT_K,
    train_lists=None,
    output_report=None,
    output_table=None,
    title="GeoPlant evaluation",
    progress=None,
    input_files=None,
    device="auto",
    topk_margin: int = 0,
) -> Evaluation:
    """Evaluate a model (predicting at the surveys) or prediction rasters against surveys.

    ``surveys``: DataFrame with surveyId, x, y (in ``crs``) and speciesIds (lists). Either
    ``predictions`` (probability raster paths) or ``model`` (+ ``rasters``/``mapping``).
    Writes the HTML report and the per-survey CSV when paths are given: both or neither,
    under temporary names published together at the end. ``input_files``: {label: path}
    of the other files the run reads (the SURVEYS and TRAIN_SURVEYS files): an output that
    is one of them, or an input above, or the other output, is refused before anything
    starts (:func:`check_evaluate_outputs`). ``device``: where the model runs ("auto",
    "cpu", "cuda", ...; CPU fallback with a warning). ``topk_margin``: the margin of the
    F1 with each survey's K from its expected richness (:func:`richness_top_k`).
    """
    from .progress import as_progress

    progress = as_progress(progress)
    k = _check_k(k)
    topk_margin = _check_margin(topk_margin)
    check_evaluate_outputs(
        output_report,
        output_table,
        model=model,
        rasters=rasters,
        mapping=mapping,
        predictions=predictions,
        input_files=input_files,
    )
    if len(surveys) == 0:
        raise InputDataError("SURVEYS holds no survey.")
    xs = surveys["x"].to_numpy(np.float64)
    ys = surveys["y"].to_numpy(np.float64)
    progress.set_progress(5)
    if predictions:
        species_ids, probs = sample_prediction_rasters(predictions, xs, ys, crs)
        source = f"prediction rasters: {', '.join(os.path.basename(os.fspath(p)) for p in predictions)}"
    elif model:
        from .engine import LoadedModel, predict_points

        # the card read once, for the ids and the run
        loaded = LoadedModel(model, device=device, progress=progress)
        species_ids = np.asarray([s.id for s in loaded.card.species], dtype=np.int64)
        progress.info(f"Predicting {len(species_ids)} species at {len(xs)} surveys with {model}")
        probs = predict_points(loaded, list(rasters), xs, ys, crs, mapping=mapping)
        source = f"model {os.path.basename(os.fspath(model))}"
    else:
        raise InputDataError("Give a MODEL (with its RASTERS) or PREDICTIONS to evaluate.")
    progress.check_cancelled()
    progress.set_progress(70)
    result = evaluate(
        surveys["surveyId"].to_numpy(),
        list(surveys["speciesIds"]),
        species_ids,
        probs,
        k,
        train_lists,
        topk_margin=topk_margin,
    )
    dropped = result.extra.get("dropped_surveys", 0)
    if dropped:
        progress.warning(f"{dropped} survey(s) fall on nodata or outside the rasters and were left out.")
    line = f"F1@{k} {result.f1:.4f}, recall@{k} {result.recall:.4f}, AUC micro {result.auc_micro:.4f}"
    line += (
        f"; with K from the expected richness ({topk_margin:+d}, mean K "
        f"{result.mean_richness_k:.1f}): F1 {result.f1_richness:.4f}"
    )
    if result.baseline is not None:
        line += f"; naive baseline F1@{k} {result.baseline['f1']:.4f}"
    progress.info(line + f" ({result.n_surveys} surveys)")
    if output_table or output_report:
        with Publication(progress) as publication:
            if output_table:
                publication.write_text(publication.temporary(output_table), table_csv(result))
            if output_report:
                html = report_html(result, title, notes={"predictions from": source})
                publication.write_text(publication.temporary(output_report), html)
            progress.check_cancelled()
            publication.publish()
    progress.set_progress(100)
    return result


def check_evaluate_outputs(
    output_report=None,
    output_table=None,
    *,
    model=None,
    rasters=(),
    mapping=None,
    predictions=None,
    input_files=None,
) -> None:
    """Refuse OUTPUT_REPORT / OUTPUT_TABLE when one is the other, or a file the run reads:
    SURVEYS / TRAIN_SURVEYS (``input_files``), the MODEL, RASTERS, the MAPPING file and its
    rasters, the PREDICTIONS rasters (with their sidecars)."""
    from .engine import run_input_files
    from .files import check_outputs

    outputs = {k: v for k, v in (("OUTPUT_REPORT", output_report), ("OUTPUT_TABLE", output_table)) if v}
    if not outputs:
        return
    extra = {"PREDICTIONS": list(predictions or [])}
    extra.update(input_files or {})
    check_outputs(outputs, run_input_files(model, rasters, mapping, extra))
