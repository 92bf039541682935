"""What a run will cost before it starts: cells, bytes on disk, expected time.

Pure Python on numpy and onnxruntime (no Qt, no qgis); the dock shows these numbers live
while the user changes the area, the cell size and the outputs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from .geotiff import MAX_BANDS, estimate_bytes, format_bytes
from .limits import DEFAULT_MAX_CELLS, default_max_cells, over_limit_message

#: past this many cells the dock warns that the run would be refused: geoplant:predict's
#: default MAX_CELLS (:mod:`core.limits`; $GEOPLANT_MAX_CELLS changes it at run time)
DEFAULT_CELL_LIMIT = DEFAULT_MAX_CELLS
#: past this many seconds the dock warns that the run is long
DEFAULT_SECONDS_LIMIT = 3600.0


def grid_size(extent, extent_crs, crs, cell_size: float) -> tuple[int, int, int]:
    """(width, height, cells) of the engine's snapped grid over ``extent`` (xmin, ymin, xmax, ymax).

    The very grid ``geoplant:predict`` will use (:func:`core.grid.make_grid`); raises
    :class:`InputDataError` for an empty extent, a non-projected CRS or a bad cell size.
    """
    from .grid import make_grid

    grid = make_grid(extent, extent_crs, crs, cell_size)
    return grid.width, grid.height, grid.width * grid.height


def output_bands(richness: bool, top_k: int, probabilities: int) -> int:
    """Number of 4-byte bands written per cell for the chosen outputs."""
    return (1 if richness else 0) + max(int(top_k), 0) + max(int(probabilities), 0)


def output_bytes(cells: int, richness: bool, top_k: int, probabilities: int) -> int:
    """Upper bound of the bytes the outputs take on disk (uncompressed, with overviews).

    The GeoTIFFs are compressed, so the real size is usually smaller; this is the number
    the engine checks against free disk space.
    """
    # every band is 4 bytes (float32 richness and probabilities, int32 top-K ids)
    return estimate_bytes(int(cells), 1, output_bands(richness, top_k, probabilities), "float32")


def time_model(model_path: str, batch: int = 256, repeats: int = 3, threads: int | None = None) -> float:
    """Seconds per cell of the model alone, measured on random inputs of ``batch`` rows, in
    a session made like every other (:func:`core.predict.model.seconds_per_row`).

    The first call (warm-up, graph optimisation) is not counted; the best of ``repeats``
    timed calls is used. Raises :class:`ModelCardError` when onnxruntime cannot load it.
    """
    from .predict.model import seconds_per_row

    return seconds_per_row(model_path, batch=batch, repeats=repeats, threads=threads)


@dataclass(frozen=True)
class Estimate:
    """What a run will cost."""

    width: int
    height: int
    cells: int
    bytes: int
    seconds: float | None
    warnings: tuple[str, ...] = ()
    #: the message geoplant:predict would refuse this run with (None: within MAX_CELLS)
    refusal: str | None = None


def expected_seconds(cells: int, seconds_per_cell: float | None, overhead: float = 1.25) -> float | None:
    """Expected run time: the model's time for every cell, times a reading/writing overhead.

    The engine is meant to keep the model the bottleneck (efficiency >= 0.7 in the
    benchmarks), so 1.25x the model alone is the expectation for a typical run.
    """
    if seconds_per_cell is None:
        return None
    return float(cells) * float(seconds_per_cell) * overhead


#: sampleenvironment: seconds per cell, plus per variable (CSV formatting included); measured
#: on 2 shared cores: 1,000,000 cells x 5 variables in 13 s
SAMPLE_SECONDS_PER_CELL = (3e-6, 2e-6)
#: extractpatches: seconds per patch file, plus per pixel and band (read, warp, write);
#: measured: 64 x 64 x 4 patches at 5.7 ms each on 2 shared cores
PATCH_SECONDS = (1e-3, 3e-7)


def sample_costs(cells: int, variables: int) -> tuple[int, float]:
    """(bytes, seconds) of a sampleenvironment CSV of ``cells`` rows and ``variables`` columns:
    id, x, y (~40 characters) and up to ~12 per value; the time from :data:`SAMPLE_SECONDS_PER_CELL`."""
    per_cell, per_value = SAMPLE_SECONDS_PER_CELL
    variables = max(int(variables), 0)
    return int(cells) * (40 + 12 * variables), float(cells) * (per_cell + per_value * variables)


def patch_costs(patches: int, size: int, bands: int, bytes_per_value: int = 2) -> tuple[int, float]:
    """(bytes, seconds) of ``patches`` patch files of ``size`` x ``size`` pixels and ``bands``
    bands, uncompressed (an upper bound: LZW makes them smaller), at least one 4 KB file-system
    block and a 1 KB header each; the time from :data:`PATCH_SECONDS`."""
    values = int(size) * int(size) * max(int(bands), 1)
    per_file = max(4096, values * int(bytes_per_value) + 1024)
    fixed, per_value = PATCH_SECONDS
    return int(patches) * per_file, float(patches) * (fixed + per_value * values)


def estimate_run(
    width: int,
    height: int,
    *,
    richness: bool = True,
    top_k: int = 0,
    probabilities: int = 0,
    seconds_per_cell: float | None = None,
    cell_limit: float | None = None,
    seconds_limit: float = DEFAULT_SECONDS_LIMIT,
    free_bytes: int | None = None,
    cell_size: float | None = None,
) -> Estimate:
    """Cells, bytes and seconds of a grid of ``width`` x ``height`` cells, with warnings.

    ``cell_limit``: past it the first warning is the very message ``geoplant:predict``
    refuses the run with (:func:`core.limits.over_limit_message`; default: predict's default
    MAX_CELLS, $GEOPLANT_MAX_CELLS included); ``cell_size`` lets it suggest a cell size."""
    cells = int(width) * int(height)
    size = output_bytes(cells, richness, top_k, probabilities)
    seconds = expected_seconds(cells, seconds_per_cell)
    warnings = []
    limit = default_max_cells() if cell_limit is None else cell_limit
    refusal = over_limit_message(width, height, cell_size, limit, bytes_needed=size, seconds=seconds)
    if refusal:
        warnings.append(refusal)
    if seconds is not None and seconds > seconds_limit:
        warnings.append(f"The run may take about {format_duration(seconds)}.")
    if free_bytes is not None and size > free_bytes:
        warnings.append(
            f"The outputs may need up to {format_bytes(size)} but only {format_bytes(free_bytes)} is free."
        )
    for what, bands in (("top-K", int(top_k)), ("probabilities", int(probabilities))):
        if bands > MAX_BANDS:  # the limit is per file: each output is its own GeoTIFF
            warnings.append(
                f"The {what} raster would have {bands:,} bands: a GeoTIFF holds at most "
                f"{MAX_BANDS:,} bands. Choose fewer species or a smaller TOP_K."
            )
    return Estimate(int(width), int(height), cells, size, seconds, tuple(warnings), refusal)


def format_duration(seconds: float | None) -> str:
    """75 -> '1 min 15 s'; None -> 'unknown'."""
    if seconds is None or not math.isfinite(seconds):
        return "unknown"
    seconds = max(float(seconds), 0.0)
    if seconds < 1:
        return "under 1 s"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"
