"""One tile through the core engine, in a Dask worker process.

:func:`run_tile` is the task. A worker process keeps ONE planned run per request
(:class:`core.predict.runner.Plan` made once by ``Plan.make``: the onnxruntime pipeline
with its sessions, the samplers of the inputs), keyed by the model file (path, size,
modification time) and the request's fingerprint; each tile reuses it with its own
windows and writers. Tasks in one process take turns on it (a lock): the pipeline
already uses every core.

A tile's files are written under temporary names in the work folder and renamed when
complete (:func:`core.files.publish_together`), so a task run twice (its worker died, the
scheduler ran it elsewhere) or killed half-way never leaves half a tile under a tile name.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from ..files import Publication
from ..geotiff import GeoTiffWriter
from .manifest import sha256_file, tile_path

if TYPE_CHECKING:
    from ..predict.request import PredictRequest
    from ..predict.runner import Plan
    from .tiles import Tile

#: GDAL block cache of a tile, MB (as core.predict.runner)
GDAL_CACHE_MB = 64

_LOCK = threading.Lock()
_CACHE: dict[tuple[Any, ...], Plan] = {}


class TileWriter(GeoTiffWriter):
    """A GeoTIFF of one tile, written with the grid's row and column numbers."""

    def __init__(self, path: str, row: int, col: int, **options: Any):
        super().__init__(path, **options)
        self.row0, self.col0 = int(row), int(col)

    def write(self, array: np.ndarray, row_off: int, col_off: int = 0) -> None:
        super().write(array, row_off - self.row0, col_off - self.col0)


def _model_key(path: str) -> tuple[Any, ...]:
    st = os.stat(path)
    return (os.path.abspath(path), st.st_size, st.st_mtime_ns)


def cached_plan(request: PredictRequest, digest: str) -> Plan:
    """This process's plan of ``request`` (made on first use; another request's is closed)."""
    from ..predict.runner import Plan
    from ..progress import Progress

    key = (*_model_key(request.model), digest)
    plan = _CACHE.get(key)
    if plan is None:
        close_cached()
        plan = Plan.make(request, Progress())
        plan.publication.discard()  # nothing was written under the whole run's names
        _CACHE[key] = plan
    return plan


def close_cached() -> None:
    """Close the cached plans (their samplers and inference workers)."""
    while _CACHE:
        _, plan = _CACHE.popitem()
        try:
            plan.inputs.close()
        finally:
            plan.pipeline.close()


def cached_count() -> int:
    """How many plans this process holds (tests: one per worker)."""
    return len(_CACHE)


def run_tile(request: PredictRequest, tile: Tile, folder: str, digest: str, log: str | None = None) -> dict:
    """Compute ``tile`` of ``request`` into its files in ``folder``; {"key", "files": {kind:
    sha256}, "valid", "seconds", "pid"}."""
    import rasterio
    from rasterio.windows import Window

    from ..predict.runner import stream

    started = time.perf_counter()
    if log:
        _log(log, f"start {tile.key} {os.getpid()}")
    with _LOCK:
        base = cached_plan(request, digest)
        grid = request.grid
        transform = grid.window_transform(Window(tile.col, tile.row, tile.cols, tile.rows))
        writers: dict[str, GeoTiffWriter] = {}
        for kind, spec in base.specs.items():
            options = spec.writer_options()
            options.pop("sidecars", None)  # the species CSV and QML: written once, by the driver
            writers[kind] = TileWriter(
                tile_path(folder, tile, kind),
                tile.row,
                tile.col,
                width=tile.cols,
                height=tile.rows,
                crs=grid.crs,
                transform=transform,
                overviews=False,
                **options,  # type: ignore[arg-type]
            )
        windows = [Window(c, r, cols, rows) for r, c, rows, cols in tile.windows]
        plan = dataclasses.replace(base, writers=writers, windows=windows, publication=Publication())
        try:
            with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
                valid = stream(plan)
                for writer in writers.values():
                    writer.finish()
                for writer in writers.values():
                    writer.publish()  # temporary name -> tile name, atomically
        except BaseException:
            for writer in writers.values():
                writer.discard()
            raise
    files = {kind: sha256_file(w.path) for kind, w in writers.items()}
    if log:
        _log(log, f"done {tile.key} {os.getpid()}")
    return {
        "key": tile.key,
        "files": files,
        "valid": int(valid),
        "seconds": time.perf_counter() - started,
        "pid": os.getpid(),
    }


def _log(path: str, line: str) -> None:
    """One line appended to the executions log (tests and benchmarks count task runs)."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")


__all__ = ["TileWriter", "cached_count", "cached_plan", "close_cached", "run_tile"]
