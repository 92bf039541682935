"""Points: the probabilities of every species at arbitrary points (the dock's identify,
evaluation against surveys), through the same model, inputs and inference stages."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ..errors import InputDataError
from .inference import OutputValuesError
from .inputs import Inputs
from .model import LoadedModel
from .request import DEFAULT_CRS


def predict_points(
    model_path: str | os.PathLike[str] | LoadedModel,
    raster_paths: Iterable[str | os.PathLike[str]] | None,
    xs: Any,
    ys: Any,
    crs: Any,
    mapping: Mapping[str, Any] | str | None = None,
    *,
    batch: int = 4096,
) -> np.ndarray:
    """Probabilities of every species of the card at arbitrary points: float32 [N, S].

    ``model_path``: an ONNX file, or a :class:`.model.LoadedModel` already read.

    ``xs``, ``ys`` in ``crs``; rows of points where an input has no data are NaN. Patch
    inputs are cut in the card's grid CRS (else EPSG:3035) when ``crs`` is geographic.
    """
    from rasterio.warp import transform

    from ..grid import parse_crs

    model = model_path if isinstance(model_path, LoadedModel) else LoadedModel(model_path)
    card = model.card
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
    out = np.full((len(xs), len(card.species)), np.nan, dtype=np.float32)
    if not len(xs):
        return out
    post = model.pipeline(None, probabilities=True)
    try:
        inputs = Inputs(card, raster_paths, mapping, sample_crs, post.graph_normalises)
    except BaseException:
        post.close()
        raise
    try:
        for start in range(0, len(xs), batch):
            stop = min(start + batch, len(xs))
            feeds, valid = inputs.prepare(xs[start:stop], ys[start:stop])
            if valid.any():
                try:
                    probs = post.run(feeds)["probabilities"]
                except OutputValuesError as error:
                    raise error.at(f"the points {start + 1}-{stop}") from None
                out[start:stop][valid] = probs
    finally:
        inputs.close()
        post.close()
    return out
