"""How large a grid request may be: refused up front, with the numbers and what to do instead.

A grid of 35,000 x 35,000 cells (1.2e9) is days of work and hundreds of GB; the algorithms
used to accept it and sit at 0 %. Every grid-based run (``geoplant:predict``,
``geoplant:sampleenvironment``, ``geoplant:extractpatches``, and the dock's live
estimate) now calls :func:`check_grid` as soon as the grid's width and height are known,
before any array of all cells exists and before any output is opened.

The limit: the ``MAX_CELLS`` parameter (core: ``max_cells=``), else the environment variable
(``GEOPLANT_MAX_CELLS``; ``GEOPLANT_MAX_PATCHES`` for patches), else the default that fits
a desktop: 50,000,000 cells (a raster grid, a CSV row per cell) or 1,000,000 patches (one
file each). Pure Python: no numpy, Qt or qgis.
"""

from __future__ import annotations

import math
import os

from .errors import InputDataError

#: default limit of a grid's cells for predict and sampleenvironment
DEFAULT_MAX_CELLS = 50_000_000
#: default limit for extractpatches, where every cell is a patch file
DEFAULT_MAX_PATCHES = 1_000_000
#: what "no limit" (inf) means where a finite number is needed
NO_LIMIT = 10**15
ENV_MAX_CELLS = "GEOPLANT_MAX_CELLS"
ENV_MAX_PATCHES = "GEOPLANT_MAX_PATCHES"

#: "nice" cell sizes suggested: these mantissas times a power of ten
_NICE = (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0)


def _names(patches: bool) -> tuple[int, str]:
    return (DEFAULT_MAX_PATCHES, ENV_MAX_PATCHES) if patches else (DEFAULT_MAX_CELLS, ENV_MAX_CELLS)


def _as_limit(value, what: str) -> float:
    try:
        number = float(str(value).replace(",", "").replace("_", "").strip())
    except (TypeError, ValueError):
        number = float("nan")
    if math.isnan(number) or number < 1:
        raise InputDataError(f"{what} must be a number of cells of 1 or more, not '{value}'.")
    return number


def default_max_cells(patches: bool = False) -> float:
    """The default limit: ``$GEOPLANT_MAX_CELLS`` (``$GEOPLANT_MAX_PATCHES`` for patches) when
    set to a valid number, else :data:`DEFAULT_MAX_CELLS` / :data:`DEFAULT_MAX_PATCHES`.
    Never raises (the Processing parameters' defaults come from here at load time)."""
    try:
        # a finite number: a Processing parameter's default cannot be infinite
        return min(resolve_max_cells(None, patches), float(NO_LIMIT))
    except InputDataError:
        return _names(patches)[0]


def resolve_max_cells(max_cells=None, patches: bool = False) -> float:
    """``max_cells`` when given (a number >= 1; ``math.inf``: no limit), else the default
    (:func:`default_max_cells`); a bad value, or a bad environment variable, is an
    :class:`InputDataError`."""
    if max_cells is not None:
        return _as_limit(max_cells, "MAX_CELLS")
    default, env = _names(patches)
    text = os.environ.get(env, "").strip()
    return _as_limit(text, f"The environment variable {env}") if text else default


def smallest_cell_size(width: int, height: int, cell_size: float, max_cells: float) -> float | None:
    """The smallest round cell size (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8 times a power of ten)
    whose snapped grid over the same ground (``width`` x ``height`` cells of ``cell_size``)
    has at most ``max_cells`` cells, one row and one column of snapping included."""
    ground_w, ground_h = float(width) * float(cell_size), float(height) * float(cell_size)
    if not (math.isfinite(ground_w) and math.isfinite(ground_h)) or ground_w <= 0 or ground_h <= 0:
        return None

    def cells_at(size: float) -> float:
        return (math.ceil(ground_w / size - 1e-9) + 1) * (math.ceil(ground_h / size - 1e-9) + 1)

    guess = float(cell_size) * math.sqrt(float(width) * float(height) / max(float(max_cells), 1.0))
    exponent = math.floor(math.log10(max(guess, 1e-300)))
    for _ in range(400):
        for mantissa in _NICE:
            size = mantissa * 10.0**exponent
            if size >= guess and cells_at(size) <= max_cells:
                return size
        exponent += 1
        if 10.0**exponent > 10 * max(ground_w, ground_h):
            return None
    return None


def _format_size(size: float) -> str:
    return f"{size:,.0f}" if size >= 1 else f"{size:g}"


def over_limit_message(
    width: int,
    height: int,
    cell_size: float | None,
    max_cells: float,
    *,
    bytes_needed: int | None = None,
    seconds: float | None = None,
    patches: bool = False,
) -> str | None:
    """The refusal text for a grid of ``width`` x ``height`` cells beyond ``max_cells``, with
    the numbers (cells, disk, time, the limit) and what to do instead; None when it fits."""
    from .estimate import format_duration
    from .geotiff import format_bytes

    cells = int(width) * int(height)  # Python ints: no overflow whatever the sizes
    if cells <= max_cells:
        return None
    default, env = _names(patches)
    unit = "patches, one file each," if patches else "cells"
    limit = f"{max_cells:,.0f}"
    text = (
        f"This request is too large: the grid of {int(width):,} x {int(height):,} = {cells:,} {unit} "
        f"is more than {limit} (MAX_CELLS, the limit for one run)."
    )
    costs = []
    if bytes_needed is not None:
        costs.append(f"write up to {format_bytes(int(bytes_needed))}")
    if seconds is not None and math.isfinite(seconds):
        costs.append(f"take about {format_duration(seconds)}")
    if costs:
        text += f" It would {' and '.join(costs)} (estimated)."
    todo = []
    if cell_size:
        size = smallest_cell_size(width, height, cell_size, max_cells)
        if size is not None:
            ground_w, ground_h = float(width) * float(cell_size), float(height) * float(cell_size)
            fits = math.ceil(ground_w / size - 1e-9) * math.ceil(ground_h / size - 1e-9)
            todo.append(
                f"a larger CELL_SIZE: {_format_size(size)} m or more "
                f"(about {fits:,} {'patches' if patches else 'cells'})"
            )
    todo.append("a smaller area")
    tiles = math.ceil(cells / max_cells)
    todo.append(
        f"the area split into {tiles:,} or more tiles of at most {limit} cells, run one after the other "
        "(Processing's 'Run as Batch Process', or qgis_process in a loop)"
    )
    text += " Instead, choose " + ", ".join(todo[:-1]) + f", or {todo[-1]}."
    text += (
        f" If this machine has the disk and the time, raise MAX_CELLS (default {default:,}; "
        f"the environment variable {env} changes the default)."
    )
    return text


def check_grid(
    width: int,
    height: int,
    cell_size: float | None,
    max_cells=None,
    *,
    bytes_needed=None,
    seconds=None,
    patches: bool = False,
) -> int:
    """Refuse a grid of ``width`` x ``height`` cells beyond the limit (:func:`resolve_max_cells`
    of ``max_cells``) with an :class:`InputDataError` saying the numbers and what to do.
    ``bytes_needed`` and ``seconds`` are numbers, or callables of the cell count evaluated
    only for the message (timing a model is not free). Returns the number of cells."""
    limit = resolve_max_cells(max_cells, patches)
    cells = int(width) * int(height)
    if cells <= limit:
        return cells

    def value(v):
        if callable(v):
            try:
                return v(cells)
            except Exception:  # noqa: BLE001 - an estimate that fails is left out of the message
                return None
        return v

    raise InputDataError(
        over_limit_message(
            width,
            height,
            cell_size,
            limit,
            bytes_needed=value(bytes_needed),
            seconds=value(seconds),
            patches=patches,
        )
    )


__all__ = [
    "DEFAULT_MAX_CELLS",
    "DEFAULT_MAX_PATCHES",
    "ENV_MAX_CELLS",
    "ENV_MAX_PATCHES",
    "check_grid",
    "default_max_cells",
    "over_limit_message",
    "resolve_max_cells",
    "smallest_cell_size",
]
