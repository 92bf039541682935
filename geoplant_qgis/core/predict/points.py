"""Points: the probabilities of every species at arbitrary points (the dock's identify,
evaluation against surveys), through the same model, inputs and inference stages, and
with :func:`point_prediction` predict's post-processing too (richness with the same
THRESHOLD rule, top-K, in the same graph)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputDataError
from .inference import OutputValuesError
from .inputs import Inputs
from .model import LoadedModel
from .outputs import TOPK_NODATA, mask_topk_by_richness
from .request import DEFAULT_CRS


@dataclass(frozen=True)
class PointPrediction:
    """What :func:`point_prediction` gives for N points.

    ``probabilities``: float32 [N, S], every species of the card in card order (NaN rows
    where an input has no data). ``richness``: float32 [N], as predict's richness raster:
    the sum of probabilities, or with ``threshold`` the number of species with
    p >= threshold (NaN where no data; None for a softmax model without threshold).
    ``topk``: int32 [N, K] species ids by decreasing probability, ties in card order
    (-1 where no data, and in TOPK_MODE "richness" after each point's K; None when K is 0).
    """

    probabilities: np.ndarray
    richness: np.ndarray | None
    topk: np.ndarray | None
    threshold: float | None = None


def point_prediction(
    model_path: str | os.PathLike[str] | LoadedModel,
    raster_paths: Iterable[str | os.PathLike[str]] | None,
    xs: Any,
    ys: Any,
    crs: Any,
    mapping: Mapping[str, Any] | str | None = None,
    *,
    threshold: float | None = None,
    top_k: int = 0,
    topk_mode: str | None = "fixed",
    topk_margin: int | None = 0,
    richness: bool = True,
    batch: int = 4096,
    device: str | None = "auto",
    progress: Any = None,
) -> PointPrediction:
    """Probabilities, richness and top-K of every species of the card at arbitrary points,
    computed by predict's post-processing graph (:class:`.inference.Pipeline`), so a point
    gets the values predict writes for the cell it is the centre of.

    ``model_path``: an ONNX file, or a :class:`.model.LoadedModel` already read.
    ``xs``, ``ys`` in ``crs``; patch inputs are cut in the card's grid CRS (else
    EPSG:3035) when ``crs`` is geographic. ``threshold``: richness counts p >= threshold
    (None: the sum of probabilities); ``top_k``: K of the top-K (0: none; at most the
    model's species); ``topk_mode`` / ``topk_margin``: as predict's TOPK_MODE and
    TOPK_MARGIN; ``richness=False``: no richness computed. ``device``: where the model
    runs ("auto", "cpu", "cuda", ...: :class:`.model.Execution`; a LoadedModel keeps its
    own); the provider that ran and any CPU fallback are said through ``progress``.
    """
    from rasterio.warp import transform

    from .. import checks
    from ..grid import parse_crs
    from .request import _topk_mode

    if isinstance(model_path, LoadedModel):
        model = model_path
    else:
        model = LoadedModel(model_path, device=device, progress=progress)
    card = model.card
    threshold = checks.threshold(threshold)
    k = min(checks.top_k(0 if top_k is None else top_k), len(card.species))
    mode, margin = _topk_mode(topk_mode, topk_margin)
    if not k:
        mode = "fixed"
    softmax_sum = card.output.activation == "softmax" and threshold is None
    if mode == "richness" and softmax_sum:
        raise InputDataError(
            "TOPK_MODE 'richness' takes each point's K from its richness, but this model's output is a "
            "softmax (its probabilities sum to 1). Give a THRESHOLD or use TOPK_MODE 'fixed'."
        )
    with_richness = (richness and not softmax_sum) or mode == "richness"
    xs = np.asarray(xs, dtype=np.float64).ravel()
    ys = np.asarray(ys, dtype=np.float64).ravel()
    if xs.shape != ys.shape:
        raise InputDataError("xs and ys must have the same length.")
    sample_crs = crs
    if any(s.kind == "patch" for s in card.inputs) and parse_crs(crs, "points' CRS").is_geographic:
        sample_crs = card.grid.crs if card.grid else DEFAULT_CRS
        if len(xs):
            tx, ty = transform(crs, sample_crs, xs.tolist(), ys.tolist())
            xs, ys = np.asarray(tx), np.asarray(ty)
    probabilities = np.full((len(xs), len(card.species)), np.nan, dtype=np.float32)
    rich = np.full(len(xs), np.nan, dtype=np.float32) if with_richness else None
    topk = np.full((len(xs), k), TOPK_NODATA, dtype=np.int32) if k else None
    result = PointPrediction(probabilities, rich if richness else None, topk, threshold)
    if not len(xs):
        return result
    post = model.pipeline(None, top_k=k, richness=with_richness, threshold=threshold, probabilities=True)
    try:
        inputs = Inputs(card, raster_paths, mapping, sample_crs, post.graph_normalises)
    except BaseException:
        post.close()
        raise
    try:
        for start in range(0, len(xs), batch):
            stop = min(start + batch, len(xs))
            feeds, valid = inputs.prepare(xs[start:stop], ys[start:stop])
            if not valid.any():
                continue
            try:
                out = post.run(feeds)
            except OutputValuesError as error:
                raise error.at(f"the points {start + 1}-{stop}") from None
            if mode == "richness" and "topk" in out:
                mask_topk_by_richness(out["topk"], out["richness"], margin)
            probabilities[start:stop][valid] = out["probabilities"]
            if rich is not None:
                rich[start:stop][valid] = out["richness"]
            if topk is not None:
                topk[start:stop][valid] = out["topk"]
    finally:
        inputs.close()
        post.close()
    return result


def predict_points(
    model_path: str | os.PathLike[str] | LoadedModel,
    raster_paths: Iterable[str | os.PathLike[str]] | None,
    xs: Any,
    ys: Any,
    crs: Any,
    mapping: Mapping[str, Any] | str | None = None,
    *,
    batch: int = 4096,
    device: str | None = "auto",
    progress: Any = None,
) -> np.ndarray:
    """Probabilities of every species of the card at arbitrary points: float32 [N, S]
    (:func:`point_prediction`'s ``probabilities``; use that function for richness and
    top-K by predict's rules).

    ``model_path``: an ONNX file, or a :class:`.model.LoadedModel` already read.

    ``xs``, ``ys`` in ``crs``; rows of points where an input has no data are NaN. Patch
    inputs are cut in the card's grid CRS (else EPSG:3035) when ``crs`` is geographic.
    """
    return point_prediction(
        model_path,
        raster_paths,
        xs,
        ys,
        crs,
        mapping,
        richness=False,
        batch=batch,
        device=device,
        progress=progress,
    ).probabilities
