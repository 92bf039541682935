"""Argument checks shared by every entry point (core API, Processing, the dock).

Pure Python (no numpy, no Qt): each check returns the value in the type the caller needs,
or raises :class:`InputDataError` with one plain sentence that names the argument, says
what was given and what to give instead.
"""

from __future__ import annotations

import math

from .errors import InputDataError

#: a cell (or patch pixel) smaller than a millimetre or larger than 1,000 km is a mistake
MIN_CELL_SIZE = 0.001
MAX_CELL_SIZE = 1_000_000.0
#: columns or rows of a grid: GDAL's raster size limit
MAX_GRID_SIDE = 2**31 - 1
#: at most this many top-K bands (a GeoTIFF's band limit)
MAX_TOP_K = 65_535


def _shown(value) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _fmt(value: float) -> str:
    """1000000 -> '1,000,000', 0.001 -> '0.001'."""
    if float(value).is_integer() and abs(value) < 1e15:
        return f"{int(value):,}"
    return f"{value:g}"


def number(
    value,
    name: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    above: float | None = None,
    integer: bool = False,
    what: str = "",
):
    """``value`` as a finite float (or int with ``integer``) in [minimum, maximum] (and >
    ``above``); else InputDataError. ``what`` describes the expected value in words (e.g.
    "a cell size in metres"), used in the message."""
    kind = "a whole number" if integer else "a number"
    if minimum is not None and maximum is not None:
        allowed = f"{kind} from {_fmt(minimum)} to {_fmt(maximum)}"
    elif above is not None and maximum is not None:
        allowed = f"{kind} above {_fmt(above)} and at most {_fmt(maximum)}"
    elif minimum is not None:
        allowed = f"{kind} of at least {_fmt(minimum)}"
    elif above is not None:
        allowed = f"{kind} above {_fmt(above)}"
    else:
        allowed = kind
    hint = f" ({what})" if what else ""
    message = f"{name} must be {allowed}{hint}; got {_shown(value)}."
    if isinstance(value, bool) or value is None:
        raise InputDataError(message)
    try:
        number_ = float(value.strip() if isinstance(value, str) else value)
    except (TypeError, ValueError, OverflowError):
        raise InputDataError(message) from None
    if not math.isfinite(number_):
        raise InputDataError(message)
    if integer and not number_.is_integer():
        raise InputDataError(message)
    if (minimum is not None and number_ < minimum) or (maximum is not None and number_ > maximum):
        raise InputDataError(message)
    if above is not None and number_ <= above:
        raise InputDataError(message)
    return int(number_) if integer else number_


def cell_size(value, name: str = "CELL_SIZE") -> float:
    """A grid cell size in metres, between MIN_CELL_SIZE and MAX_CELL_SIZE."""
    return number(value, name, minimum=MIN_CELL_SIZE, maximum=MAX_CELL_SIZE, what="metres, e.g. 100")


def top_k(value, n_species: int | None = None, name: str = "TOP_K") -> int:
    """A whole number of species from 0 (none) to MAX_TOP_K (values above the model's number
    of species are allowed: the caller clamps them)."""
    upto = f"the model's {n_species:,} species" if n_species else "the model's number of species"
    return number(value, name, minimum=0, maximum=MAX_TOP_K, integer=True, what=f"0 for none, up to {upto}")


def threshold(value, name: str = "THRESHOLD") -> float | None:
    """A probability in (0, 1], or None."""
    if value is None:
        return None
    return number(value, name, above=0.0, maximum=1.0, what="a probability, e.g. 0.5")


def extent_problem(coordinates, name: str = "EXTENT") -> str | None:
    """What is wrong with ``coordinates`` = (xmin, ymin, xmax, ymax), in words; None if nothing."""
    try:
        values = list(coordinates)
    except TypeError:
        values = None
    if values is None or len(values) != 4:
        return (
            f"{name} must be four numbers (xmin, ymin, xmax, ymax); got {_shown(coordinates)}. "
            f"Give a rectangle, e.g. '3700000,3800000,2600000,2700000 [EPSG:3035]' in QGIS's "
            f"'xmin,xmax,ymin,ymax [CRS]' form."
        )
    labels = ("xmin", "ymin", "xmax", "ymax")
    parsed = []
    for label, value in zip(labels, values, strict=True):
        try:
            parsed.append(float(value.strip() if isinstance(value, str) else value))
        except (TypeError, ValueError, OverflowError):
            return f"{name}: {label} is {_shown(value)}, not a number. Give four finite coordinates."
    for label, value in zip(labels, parsed, strict=True):
        if math.isnan(value):
            return f"{name}: {label} is not a number (NaN). Give four finite coordinates."
        if math.isinf(value):
            return f"{name}: {label} is infinite ({value}). Give four finite coordinates."
    xmin, ymin, xmax, ymax = parsed
    shown = f"xmin {xmin:g}, ymin {ymin:g}, xmax {xmax:g}, ymax {ymax:g}"
    if xmin > xmax or ymin > ymax:
        which = " and ".join(
            t for t, bad in (("xmin > xmax", xmin > xmax), ("ymin > ymax", ymin > ymax)) if bad
        )
        return (
            f"{name} is inverted ({which}: {shown}). Give the smaller coordinate first; in QGIS's text "
            f"form the order is 'xmin,xmax,ymin,ymax [CRS]', not xmin,ymin,xmax,ymax."
        )
    if xmin == xmax and ymin == ymax:
        return (
            f"{name} is a single point ({shown}): it has no area. "
            f"Give a rectangle with xmin < xmax and ymin < ymax."
        )
    if xmin == xmax:
        return (
            f"{name} is a vertical line (xmin = xmax = {xmin:g}): it has no area. "
            f"Give a rectangle with xmin < xmax and ymin < ymax."
        )
    if ymin == ymax:
        return (
            f"{name} is a horizontal line (ymin = ymax = {ymin:g}): it has no area. "
            f"Give a rectangle with xmin < xmax and ymin < ymax."
        )
    return None


def extent(coordinates, name: str = "EXTENT") -> tuple[float, float, float, float]:
    """(xmin, ymin, xmax, ymax) as floats, or InputDataError from :func:`extent_problem`."""
    problem = extent_problem(coordinates, name)
    if problem:
        raise InputDataError(problem)
    xmin, ymin, xmax, ymax = (float(v.strip() if isinstance(v, str) else v) for v in coordinates)
    return xmin, ymin, xmax, ymax


def grid_side(span: float, cell: float, what: str) -> None:
    """Refuse a grid whose ``span`` / ``cell`` (computed in float) cannot be a raster side."""
    cells = span / cell if cell > 0 else math.inf
    if not math.isfinite(cells) or cells > MAX_GRID_SIDE:
        count = "too many" if not math.isfinite(cells) else f"{cells:.3g}"
        raise InputDataError(
            f"A cell size of {cell:g} m gives {count} cells across the {what} of the extent "
            f"({span:.6g} m), more than a raster can hold ({MAX_GRID_SIDE:,}). Choose a larger CELL_SIZE "
            f"or a smaller extent."
        )
