"""The tiling of a cluster run: the request's grid cut into tiles of whole engine blocks.

A single-machine run (:mod:`core.predict.runner`) walks the grid's block windows
(:func:`core.predict.blocks.block_windows`: near-square blocks whose rows never straddle
the writers' strips, the first one cut in four). A cluster run uses the SAME windows and
groups them into tiles: a tile is a rectangle of the grid on the same snapped origin,
whose height is a multiple of 256 rows (the GeoTIFF tile size, so of every writer's strip)
and whose width is a multiple of the blocks' width (of 256 columns too when the blocks
divide 256). Every block then lies in exactly one tile and is computed exactly as in a
single-machine run: same cells, same micro-batches, same values.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..geotiff import STRIP_BUFFER_BYTES, TILE
from ..predict.blocks import block_windows, default_block_cells

if TYPE_CHECKING:
    from ..predict.request import PredictRequest

#: cells per tile by default: 1024 x 1024 (about 4 s of the reference MLP on 2 cores)
DEFAULT_TILE_CELLS = 1024 * 1024

#: (row, col, rows, cols) in grid cells
WindowTuple = tuple[int, int, int, int]


@dataclass(frozen=True)
class Tile:
    """One task: ``rows`` x ``cols`` cells from (``row``, ``col``), and the engine's block
    windows inside it, in grid coordinates and row order."""

    row: int
    col: int
    rows: int
    cols: int
    windows: tuple[WindowTuple, ...]

    @property
    def key(self) -> str:
        """A stable name: ``r<row>-c<col>`` (in the manifest, the tile files, the task key)."""
        return f"r{self.row:07d}-c{self.col:07d}"

    @property
    def cells(self) -> int:
        return self.rows * self.cols


@dataclass(frozen=True)
class Layout:
    """The tiles of a run, row by row, and what they were cut from."""

    tiles: tuple[Tile, ...]
    tile_rows: int
    tile_cols: int
    block_cells: int
    strip: int


def strip_rows(width: int, count: int, itemsize: int = 4) -> int:
    """The strip height :class:`core.geotiff.GeoTiffWriter` picks for a raster of ``width``
    columns and ``count`` bands (256, halved while a strip exceeds its buffer)."""
    row_bytes = int(width) * int(count) * int(itemsize)
    tile_h = TILE
    while tile_h > 16 and row_bytes * tile_h > STRIP_BUFFER_BYTES:
        tile_h //= 2
    return tile_h


def layout(request: PredictRequest, tile_cells: int | None = None) -> Layout:
    """The tiles of ``request``'s grid (about ``tile_cells`` cells each, default
    :data:`DEFAULT_TILE_CELLS`), made of the single-machine run's block windows."""
    grid = request.grid
    specs = request.output_specs()
    block_cells = request.block_cells or default_block_cells(
        request.card, grid.cell_size, sum(s.bytes_per_cell for s in specs.values())
    )
    import numpy as np

    strip = min(
        (strip_rows(grid.width, s.count, np.dtype(s.dtype).itemsize) for s in specs.values()), default=TILE
    )
    windows = [
        (int(w.row_off), int(w.col_off), int(w.height), int(w.width))
        for w in block_windows(grid, block_cells, strip)
    ]
    unsplit = grid.tiles(block_cells, strip)[0]
    block_rows, block_cols = int(unsplit.height), int(unsplit.width)
    side = math.sqrt(max(1, int(tile_cells or DEFAULT_TILE_CELLS)))
    # rows: whole GeoTIFF tiles (256, a multiple of every strip and of the blocks' height)
    step_rows = math.lcm(TILE, block_rows)
    tile_rows = max(1, round(side / step_rows)) * step_rows
    # columns: whole blocks, and whole GeoTIFF tiles when that costs no more than 2x
    step_cols = math.lcm(TILE, block_cols)
    if step_cols > 2 * max(side, block_cols):
        step_cols = block_cols
    tile_cols = max(1, round(side / step_cols)) * step_cols
    by_tile: dict[tuple[int, int], list[WindowTuple]] = {}
    for w in windows:
        r, c, rows, cols = w
        key = (r // tile_rows * tile_rows, c // tile_cols * tile_cols)
        if r + rows > key[0] + tile_rows or c + cols > key[1] + tile_cols:  # pragma: no cover
            raise AssertionError(f"block {w} straddles tiles of {tile_rows} x {tile_cols}")
        by_tile.setdefault(key, []).append(w)
    tiles = tuple(
        Tile(r, c, min(tile_rows, grid.height - r), min(tile_cols, grid.width - c), tuple(by_tile[(r, c)]))
        for r, c in sorted(by_tile)
    )
    return Layout(tiles, tile_rows, tile_cols, block_cells, strip)


__all__ = ["DEFAULT_TILE_CELLS", "Layout", "Tile", "layout", "strip_rows"]
