"""Reading a probability raster from predict block by block (bands described "<name> (<id>)").

:func:`open_probabilities` reads the header once (grid, nodata, one species per band);
:func:`blocks` cuts the raster into windows of rows and groups of bands whose values fit a
fixed memory budget, so every reader here uses memory flat in the area; :func:`read_block`
reads one of them as float64 with NaN where the raster has no data; :func:`values_at` reads
the values of given cells, one window after the other.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from numpy.typing import ArrayLike

from ..errors import InputDataError
from ..predict.outputs import species_id_of_band

#: values of one block (rows x columns x bands) read at once: 4M float64 = 32 MB
BLOCK_VALUES = 4 * 1024 * 1024
#: rows of a block (a multiple of GeoTIFF's usual 256-row tiles when the width allows)
BLOCK_ROWS = 256
_SUFFIX = re.compile(r"\s*\((-?\d+)\)\s*$")


def species_name_of_band(description: str) -> str:
    """``"Quercus ilex (101)"`` -> ``"Quercus ilex"``."""
    return _SUFFIX.sub("", description or "").strip()


@dataclass(frozen=True)
class ProbabilityRaster:
    """The header of a probability raster: its grid and its species, one per band."""

    path: str
    crs: object  # rasterio CRS (None when the file has none)
    transform: object  # affine.Affine
    width: int
    height: int
    nodata: float | None
    descriptions: tuple[str, ...]
    species_ids: tuple[int, ...]

    @property
    def count(self) -> int:
        return len(self.species_ids)

    @property
    def species_names(self) -> tuple[str, ...]:
        return tuple(species_name_of_band(d) for d in self.descriptions)

    @property
    def name(self) -> str:
        return os.path.basename(self.path)


def open_probabilities(path, label: str = "PROBABILITIES") -> ProbabilityRaster:
    """The header of a probability raster written by predict; InputDataError in words when
    it cannot be read, has no band or a band that is not described ``"<name> (<id>)"``."""
    import rasterio
    from rasterio.errors import RasterioIOError

    path = os.fspath(path)
    try:
        with rasterio.open(path) as dataset:
            descriptions = tuple(d or "" for d in dataset.descriptions)
            header = dict(
                crs=dataset.crs,
                transform=dataset.transform,
                width=int(dataset.width),
                height=int(dataset.height),
                nodata=None if dataset.nodata is None else float(dataset.nodata),
            )
    except RasterioIOError as error:
        raise InputDataError(f"{label}: {path} cannot be read as a raster ({error}).") from None
    if not descriptions:
        raise InputDataError(f"{label}: {path} has no band.")
    ids = []
    for band, text in enumerate(descriptions, start=1):
        species_id = species_id_of_band(text)
        if species_id is None:
            raise InputDataError(
                f"{label}: band {band} of {os.path.basename(path)} is not a species probability band: its "
                f"description {text!r} does not end with '(<species id>)' as predict writes them. Give the "
                "probability raster written by geoplant:predict (OUTPUT_PROBABILITIES)."
            )
        ids.append(species_id)
    repeated = sorted({i for i in ids if ids.count(i) > 1})
    if repeated:
        raise InputDataError(
            f"{label}: {os.path.basename(path)} holds species {', '.join(map(str, repeated[:5]))} in more "
            "than one band."
        )
    return ProbabilityRaster(path=path, descriptions=descriptions, species_ids=tuple(ids), **header)


@dataclass(frozen=True)
class Block:
    """A window of rows (``row``, ``rows``; every column) and a group of bands
    (``bands``: 0-based band indices ``start .. stop``)."""

    row: int
    rows: int
    start: int
    stop: int

    @property
    def band_indices(self) -> list[int]:
        """1-based band numbers, as rasterio reads them."""
        return list(range(self.start + 1, self.stop + 1))


def blocks(
    height: int, width: int, count: int, budget: int = BLOCK_VALUES, row_range: tuple[int, int] | None = None
) -> Iterator[Block]:
    """Windows of rows x groups of bands covering the raster (or rows ``row_range``), each
    holding at most ``budget`` values (at least one row of one band); rows outermost, so a
    caller sees every band of a window before the next window."""
    first, last = row_range if row_range is not None else (0, height)
    rows = max(1, min(BLOCK_ROWS, budget // max(width, 1), max(last - first, 1)))
    per_group = max(1, min(count, budget // max(rows * width, 1)))
    for row in range(first, last, rows):
        n = min(rows, last - row)
        for start in range(0, count, per_group):
            yield Block(row, n, start, min(count, start + per_group))


#: how far outside [0, 1] a probability may be (float rounding) before it is refused
PROBABILITY_TOLERANCE = 1e-6


def read_block(dataset, block: Block, nodata: float | None, col_range: tuple[int, int] | None = None):
    """The block's values as float64 [bands, rows, cols], NaN where the raster has no data
    (its nodata value, or NaN)."""
    from rasterio.windows import Window

    c0, c1 = col_range if col_range is not None else (0, dataset.width)
    values = dataset.read(block.band_indices, window=Window(c0, block.row, c1 - c0, block.rows)).astype(
        np.float64, copy=False
    )
    if nodata is not None and not math.isnan(nodata):
        values[values == nodata] = np.nan
    finite = values[np.isfinite(values)]
    if finite.size:
        low, high = float(finite.min()), float(finite.max())
        if low < -PROBABILITY_TOLERANCE or high > 1 + PROBABILITY_TOLERANCE:
            raise InputDataError(
                f"{os.path.basename(dataset.name)} holds values from {low:.6g} to {high:.6g} (rows "
                f"{block.row}-{block.row + block.rows - 1}): they are not probabilities (0 to 1). Give "
                "a probability raster from geoplant:predict (OUTPUT_PROBABILITIES), or declare the "
                "raster's nodata value."
            )
    return values


def cells_of_points(raster: ProbabilityRaster, xs, ys, crs) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(row, col, inside) of the cells containing points ``xs``, ``ys`` given in ``crs``
    (transformed into the raster's CRS); ``inside`` is False for points off the raster."""
    from rasterio.warp import transform

    xs = np.asarray(xs, dtype=np.float64)
    ys = np.asarray(ys, dtype=np.float64)
    if crs is not None and raster.crs is not None and len(xs):
        from rasterio.crs import CRS

        source = crs if isinstance(crs, CRS) else CRS.from_user_input(crs)
        if source != raster.crs:
            tx, ty = transform(source, raster.crs, xs.tolist(), ys.tolist())
            xs, ys = np.asarray(tx, dtype=np.float64), np.asarray(ty, dtype=np.float64)
    inverse = ~raster.transform  # type: ignore[operator]
    cols_f, rows_f = inverse * (xs, ys)
    cols_f, rows_f = np.asarray(cols_f, dtype=np.float64), np.asarray(rows_f, dtype=np.float64)
    finite = np.isfinite(cols_f) & np.isfinite(rows_f)
    cols = np.floor(np.where(finite, cols_f, -1)).astype(np.int64)
    rows = np.floor(np.where(finite, rows_f, -1)).astype(np.int64)
    inside = finite & (cols >= 0) & (cols < raster.width) & (rows >= 0) & (rows < raster.height)
    return rows, cols, inside


def values_at(raster: ProbabilityRaster, rows: ArrayLike, cols: ArrayLike, progress=None) -> np.ndarray:
    """float64 [points, bands]: every band's value at the cells (``rows``, ``cols``: inside the
    raster), NaN where it has no data; read window by window (memory flat in the area)."""
    import rasterio

    rows_a = np.asarray(rows, dtype=np.int64)
    cols_a = np.asarray(cols, dtype=np.int64)
    out = np.full((rows_a.size, raster.count), np.nan, dtype=np.float64)
    if not rows_a.size:
        return out
    first, last = int(rows_a.min()), int(rows_a.max()) + 1
    with rasterio.open(raster.path) as dataset:
        for block in blocks(raster.height, raster.width, raster.count, row_range=(first, last)):
            here = np.flatnonzero((rows_a >= block.row) & (rows_a < block.row + block.rows))
            if not here.size:
                continue
            if progress is not None:
                progress.check_cancelled()
            values = read_block(dataset, block, raster.nodata)
            out[here, block.start : block.stop] = values[:, rows_a[here] - block.row, cols_a[here]].T
    return out


def cell_area_m2(raster: ProbabilityRaster, label: str = "PROBABILITIES") -> float:
    """The area of one cell in square metres; a raster in a geographic CRS (degrees: cells
    of unequal area) or without a CRS is refused in words."""
    crs = raster.crs
    if crs is None:
        raise InputDataError(
            f"{label}: {raster.name} has no coordinate reference system, so its cell areas are unknown."
        )
    if crs.is_geographic:  # type: ignore[attr-defined]
        raise InputDataError(
            f"{label}: {raster.name} is in a geographic CRS (degrees), where cells have unequal areas. "
            "Predict on a projected grid in metres (e.g. CRS EPSG:3035) to measure areas."
        )
    try:
        factor = float(crs.linear_units_factor[1])  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - units unknown to PROJ: assume metres
        factor = 1.0
    t = raster.transform
    return abs(t.a * t.e - t.b * t.d) * factor * factor  # type: ignore[attr-defined]
