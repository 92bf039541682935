"""Predict on a Dask cluster: the request's grid cut into tiles, one Dask task per tile.

:func:`run_on_cluster` is the one entry point (the command line's ``--scheduler``)::

    from geoplant_qgis.core.cluster import run_on_cluster
    result = run_on_cluster(request, "local:2")        # or "tcp://host:8786"

One job per module: :mod:`.deps` (dask and distributed, optional), :mod:`.tiles` (the
tiling, aligned to the engine's blocks and the writers' strips), :mod:`.manifest` (the
work folder, the request's fingerprint, finished tiles and their checksums),
:mod:`.worker` (a tile through the core engine, one cached pipeline per worker process),
:mod:`.assemble` (tile files -> the outputs, published together), :mod:`.driver` (the
scheduler, the tasks, faults and resume). Importing this package imports neither dask nor
distributed; see docs/cluster.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..predict.request import PredictRequest
    from ..predict.runner import PredictResult


def run_on_cluster(
    request: PredictRequest, scheduler: str, progress: Any = None, tile_cells: int | None = None
) -> PredictResult:
    """Run ``request`` on a Dask scheduler ("tcp://host:port") or a local cluster ("local:N");
    outputs identical to :func:`core.predict.run` (:func:`.driver.run_on_cluster`)."""
    from .driver import run_on_cluster as _run

    return _run(request, scheduler, progress, tile_cells)


__all__ = ["run_on_cluster"]
