"""Blocks: how many cells a block holds, and the one tiling of the grid into blocks.

The tiling itself is :func:`core.grid.tiles` (also used by extract's grid runs); here the
block size from a memory budget (:func:`default_block_cells`) and the windows of a run,
aligned to the writers' strips, the first one cut smaller (:func:`block_windows`).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from .inference import lazy_patches

if TYPE_CHECKING:
    from rasterio.windows import Window

    from ..grid import Grid
    from ..modelcard import ModelCard

#: memory one block may use (inputs + model output + outputs), bytes
BLOCK_BUDGET_BYTES = 128 * 1024 * 1024
#: reference case (1M cells, 2 cores): 32,768 and 65,536 equally fast (4.3-4.4 s), 16,384
#: 4.5 s, 5,500 5.7 s; peak RSS 4x the cells / 1x: 1.09 at 32,768, 1.19 at 65,536 (a
#: 250,000-cell run then has too few blocks to fill the pipeline)
MAX_BLOCK_CELLS = 32768
#: blocks the prefetch thread prepares ahead of the inference
PREFETCH_DEPTH = 2


def default_block_cells(card: ModelCard, cell_size: float, output_bytes: int) -> int:
    """Cells per block: what fits BLOCK_BUDGET_BYTES, between 256 and MAX_BLOCK_CELLS.

    Per cell: its inputs, alive in up to PREFETCH_DEPTH + 3 blocks at once (see
    :mod:`.runner`), and ``output_bytes`` of outputs, in up to 4 (two blocks' results, two
    queued for the writer). The model's [rows, species] output exists per micro-batch
    only. A patch input without fill is held as fine grids (with some halo), not patches.
    """
    inputs = 0
    for spec in card.inputs:
        if lazy_patches(spec):
            assert spec.pixel_size_m is not None
            inputs += int(2 * 4 * len(spec.source_names) * max(1.0, cell_size / spec.pixel_size_m) ** 2)
        else:
            inputs += 4 * math.prod(spec.tensor_shape(1))
    cell = (PREFETCH_DEPTH + 3) * inputs + 4 * int(output_bytes)
    return min(MAX_BLOCK_CELLS, max(256, BLOCK_BUDGET_BYTES // max(1, cell)))


def first_block_split(windows: list[Window], pieces: int = 4, min_cells: int = 1024) -> list[Window]:
    """The first window cut into up to ``pieces`` narrower ones: the inference cannot start
    before the first block is sampled, so a smaller first block lets it start sooner
    (patch bench: the first of 8,176 cells took 0.08 s of a 1.4 s run, both cores idle)."""
    from rasterio.windows import Window

    if len(windows) < 2:
        return windows
    first = windows[0]
    row, col, rows, cols = int(first.row_off), int(first.col_off), int(first.height), int(first.width)
    n = max(1, min(pieces, cols, rows * cols // min_cells))
    edges = [col + (cols * i) // n for i in range(n + 1)]
    return [Window(a, row, b - a, rows) for a, b in zip(edges[:-1], edges[1:], strict=True)] + windows[1:]


def block_windows(grid: Grid, block_cells: int, strip: int = 256) -> list[Window]:
    """The windows of a run, in row order: near-square tiles of about ``block_cells`` cells
    whose rows never straddle two of the writers' strips of ``strip`` rows, the first cut
    in four."""
    return first_block_split(grid.tiles(block_cells, strip))
