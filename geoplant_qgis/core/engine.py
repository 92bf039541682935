"""The prediction engine's keyword API: thin wrappers over the stages of :mod:`core.predict`.

:func:`predict` builds a :class:`core.predict.PredictRequest` from its keywords and runs it
(:func:`core.predict.run`); :func:`predict_points` (probabilities) and
:func:`point_prediction` (probabilities, richness, top-K) are in :mod:`core.predict.points`.
The names scripts, tools and tests import from here stay importable.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .errors import GeoPlantError
from .predict import PredictRequest, run
from .predict.blocks import BLOCK_BUDGET_BYTES, MAX_BLOCK_CELLS, PREFETCH_DEPTH, default_block_cells
from .predict.inference import (
    MICRO_BATCH,
    MICRO_BATCH_BYTES,
    PROBABILITY_TOLERANCE,
    TOPK_GROUP,
    OutputValuesError,
    PendingRun,
    Pipeline,
)
from .predict.model import MAX_WORKERS, LoadedModel
from .predict.outputs import (
    OUTPUT_LABELS,
    PROBABILITY_NODATA,
    RICHNESS_NODATA,
    TOPK_NODATA,
    topk_sidecars,
)
from .predict.points import PointPrediction, point_prediction, predict_points
from .predict.request import DEFAULT_CELL_SIZE, DEFAULT_CRS, run_input_files
from .predict.runner import GDAL_CACHE_MB, OUTSIDE_WARNING, PredictResult


def predict(
    model_path: str | os.PathLike[str],
    raster_paths: Iterable[str | os.PathLike[str]] | str | os.PathLike[str] | None,
    *,
    mapping: Any = None,
    extent: Sequence[float] | None = None,
    extent_crs: str | None = None,
    area: Any = None,
    area_crs: str | None = None,
    crs: str | None = None,
    cell_size: float | None = None,
    top_k: int | None = 25,
    species: Any = None,
    threshold: float | None = None,
    output_richness: str | os.PathLike[str] | None = None,
    output_topk: str | os.PathLike[str] | None = None,
    output_probabilities: str | os.PathLike[str] | None = None,
    progress: Any = None,
    block_cells: int | None = None,
    threads: int | None = None,
    input_files: Mapping[str, Any] | None = None,
    max_cells: float | None = None,
    device: str | None = "auto",
    topk_mode: str | None = "fixed",
    topk_margin: int | None = 0,
) -> PredictResult:
    """Run the model over every cell of the grid and write the requested rasters.

    The keywords of :meth:`core.predict.PredictRequest.build` (``output_richness``,
    ``output_topk``, ``output_probabilities`` its ``outputs``), then
    :func:`core.predict.run`. ``extent``: (xmin, ymin, xmax, ymax) in ``extent_crs``;
    ``area``: polygon geometries in ``area_crs``; ``species``: ids or names of the
    probability bands; ``threshold``: richness counts p >= threshold; ``max_cells``: a
    larger grid is refused before anything is opened; ``device``: "auto", "cpu", "cuda",
    ... (where the model runs; a missing GPU falls back to the CPU with a warning);
    ``topk_mode`` "richness": each cell's K from its richness plus ``topk_margin`` (ranks after it -1).
    """
    request = PredictRequest.build(
        model_path,
        raster_paths,
        mapping=mapping,
        extent=extent,
        extent_crs=extent_crs,
        area=area,
        area_crs=area_crs,
        crs=crs,
        cell_size=cell_size,
        top_k=top_k,
        species=species,
        threshold=threshold,
        outputs={"richness": output_richness, "topk": output_topk, "probabilities": output_probabilities},
        block_cells=block_cells,
        threads=threads,
        input_files=input_files,
        max_cells=max_cells,
        device=device,
        topk_mode=topk_mode,
        topk_margin=topk_margin,
    )
    return run(request, progress)


__all__ = [
    "BLOCK_BUDGET_BYTES",
    "DEFAULT_CELL_SIZE",
    "DEFAULT_CRS",
    "GDAL_CACHE_MB",
    "GeoPlantError",
    "LoadedModel",
    "MAX_BLOCK_CELLS",
    "MAX_WORKERS",
    "MICRO_BATCH",
    "MICRO_BATCH_BYTES",
    "OUTPUT_LABELS",
    "OUTSIDE_WARNING",
    "OutputValuesError",
    "PREFETCH_DEPTH",
    "PROBABILITY_NODATA",
    "PROBABILITY_TOLERANCE",
    "PendingRun",
    "PointPrediction",
    "Pipeline",
    "PredictResult",
    "RICHNESS_NODATA",
    "TOPK_GROUP",
    "TOPK_NODATA",
    "default_block_cells",
    "point_prediction",
    "predict",
    "predict_points",
    "run_input_files",
    "topk_sidecars",
]
