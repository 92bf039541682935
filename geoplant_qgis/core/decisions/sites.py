"""Site statistics: per site and species, what a probability raster says under a polygon.

A site's cells are those whose **centre** lies inside its polygon (rasterio's rasterize
rule without ``all_touched``). :func:`site_statistics` reads only the rows and columns
around each site, block by block (memory flat in the area; overlapping sites each see
their cells), and gathers per species the cells with data, the sum and maximum of the
probabilities and the cells with ``p >= threshold``; and per cell the expected richness
(the sum of all species' probabilities, over cells where every band has data): its count,
sum, minimum, maximum and a fine histogram (:data:`RICHNESS_BINS` equal bins over
``[0, species]``) from which the report draws its chart.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputDataError
from .rasters import ProbabilityRaster, blocks, read_block

RICHNESS_BINS = 4096


@dataclass
class SiteStats:
    """What the raster says under one site (arrays are per species, in band order)."""

    label: str
    species: int
    cells: np.ndarray = field(init=False)  # cells with data
    total: np.ndarray = field(init=False)  # sum of p
    maximum: np.ndarray = field(init=False)
    above: np.ndarray = field(init=False)  # cells with p >= threshold
    centres: int = 0  # cells whose centre is inside
    richness_cells: int = 0
    richness_sum: float = 0.0
    richness_min: float = math.inf
    richness_max: float = -math.inf
    richness_hist: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.cells = np.zeros(self.species, dtype=np.int64)
        self.total = np.zeros(self.species, dtype=np.float64)
        self.maximum = np.full(self.species, -np.inf, dtype=np.float64)
        self.above = np.zeros(self.species, dtype=np.int64)
        self.richness_hist = np.zeros(RICHNESS_BINS, dtype=np.int64)

    @property
    def mean(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(self.cells > 0, self.total / np.maximum(self.cells, 1), np.nan)

    @property
    def max_probability(self) -> np.ndarray:
        return np.where(self.cells > 0, self.maximum, np.nan)

    @property
    def richness_mean(self) -> float:
        return self.richness_sum / self.richness_cells if self.richness_cells else math.nan

    def richness_histogram(self, bins: int = 20) -> tuple[np.ndarray, np.ndarray]:
        """(counts, edges) of the per-cell richness in about ``bins`` bins over its range,
        re-binned from the fine histogram (edges on multiples of its bin width)."""
        if not self.richness_cells:
            return np.zeros(0, dtype=np.int64), np.zeros(1)
        width = self.species / RICHNESS_BINS
        first = int(np.flatnonzero(self.richness_hist)[0])
        last = int(np.flatnonzero(self.richness_hist)[-1]) + 1
        step = max(1, math.ceil((last - first) / bins))
        groups = range(first, last, step)
        counts = np.array([self.richness_hist[g : g + step].sum() for g in groups], dtype=np.int64)
        edges = np.array([g * width for g in groups] + [min(last, groups[-1] + step) * width])
        return counts, edges


def _window_of(raster: ProbabilityRaster, shape) -> tuple[int, int, int, int] | None:
    """(row0, row1, col0, col1) of the raster cells a polygon's bounds touch, or None."""
    from rasterio.features import bounds

    xmin, ymin, xmax, ymax = bounds(shape)
    inverse = ~raster.transform  # type: ignore[operator]
    corners = [inverse * (x, y) for x in (xmin, xmax) for y in (ymin, ymax)]
    cols = [c for c, _ in corners]
    rows = [r for _, r in corners]
    c0, c1 = max(0, math.floor(min(cols))), min(raster.width, math.ceil(max(cols)))
    r0, r1 = max(0, math.floor(min(rows))), min(raster.height, math.ceil(max(rows)))
    if c0 >= c1 or r0 >= r1:
        return None
    return r0, r1, c0, c1


def site_statistics(
    raster: ProbabilityRaster, sites: Sequence[tuple[str, dict]], threshold: float, progress=None
) -> list[SiteStats]:
    """:class:`SiteStats` of every site: ``sites`` are (label, GeoJSON-like polygon in the
    raster's CRS)."""
    import rasterio
    from rasterio.features import geometry_mask
    from rasterio.windows import Window

    out = []
    species = raster.count
    with rasterio.open(raster.path) as dataset:
        for number, (label, shape) in enumerate(sites, start=1):
            stats = SiteStats(label=label, species=species)
            out.append(stats)
            window = _window_of(raster, shape)
            if window is None:
                continue
            r0, r1, c0, c1 = window
            width = c1 - c0
            mask = richness = incomplete = None
            for block in blocks(raster.height, width, species, row_range=(r0, r1)):
                if progress is not None:
                    progress.check_cancelled()
                if block.start == 0:  # a new window of rows: its mask, a fresh richness
                    transform = dataset.window_transform(Window(c0, block.row, width, block.rows))
                    mask = geometry_mask(
                        [shape],
                        out_shape=(block.rows, width),
                        transform=transform,
                        invert=True,
                        all_touched=False,
                    )
                    stats.centres += int(mask.sum())
                    richness = np.zeros((block.rows, width), dtype=np.float64)
                    incomplete = ~mask
                if not mask.any():  # type: ignore[union-attr]
                    continue
                values = read_block(dataset, block, raster.nodata, col_range=(c0, c1))
                inside = values[:, mask]  # [bands, cells inside]
                valid = ~np.isnan(inside)
                stats.cells[block.start : block.stop] += valid.sum(axis=1)
                stats.total[block.start : block.stop] += np.where(valid, inside, 0.0).sum(axis=1)
                with np.errstate(invalid="ignore"):
                    stats.maximum[block.start : block.stop] = np.fmax(
                        stats.maximum[block.start : block.stop],
                        np.nanmax(np.where(valid, inside, -np.inf), axis=1),
                    )
                    stats.above[block.start : block.stop] += (inside >= threshold).sum(axis=1)
                richness += np.where(np.isnan(values), 0.0, values).sum(axis=0)  # type: ignore[operator]
                incomplete |= np.isnan(values).any(axis=0)  # type: ignore[operator]
                if block.stop == species:  # every band of the window seen: its cells' richness
                    cells = richness[~incomplete]  # type: ignore[index, operator]
                    if cells.size:
                        stats.richness_cells += int(cells.size)
                        stats.richness_sum += float(cells.sum())
                        stats.richness_min = min(stats.richness_min, float(cells.min()))
                        stats.richness_max = max(stats.richness_max, float(cells.max()))
                        which = np.clip(
                            (cells / species * RICHNESS_BINS).astype(np.int64), 0, RICHNESS_BINS - 1
                        )
                        stats.richness_hist += np.bincount(which, minlength=RICHNESS_BINS)
            if progress is not None:
                progress.set_progress(10 + 80 * number / len(sites))
    return out


def check_sites(sites: Sequence[tuple[str, object]]) -> None:
    if not sites:
        raise InputDataError(
            "AREA holds no polygon: give a polygon layer with one feature per site "
            "(a 'name' field labels them)."
        )
