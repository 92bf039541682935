"""The grid a prediction or a sampling run covers: square cells in a projected CRS.

The origin is snapped to multiples of the cell size so runs over neighbouring areas line
up cell for cell. A cell's value is taken at its centre; with an AREA, cells whose centre
is outside the polygons are masked.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
from rasterio.crs import CRS
from rasterio.errors import CRSError
from rasterio.features import geometry_mask
from rasterio.transform import Affine
from rasterio.warp import transform, transform_geom
from rasterio.windows import Window

from . import checks
from .errors import InputDataError

#: tolerance (in cells) below which an extent edge counts as lying on a grid line
SNAP_TOLERANCE = 1e-6


def parse_crs(crs, what: str = "CRS") -> CRS:
    """A rasterio CRS from "EPSG:3035", WKT, PROJ text or a CRS; InputDataError if unknown."""
    if isinstance(crs, CRS):
        return crs
    try:
        if crs is None or (isinstance(crs, str) and not crs.strip()):
            raise CRSError("empty")
        return CRS.from_user_input(crs)
    except CRSError:
        raise InputDataError(f"The {what} '{crs}' is not a coordinate reference system GDAL knows.") from None


def projected_crs(crs, what: str = "grid CRS") -> CRS:
    """``crs`` if it is projected with metre units, else InputDataError."""
    parsed = parse_crs(crs, what)
    if parsed.to_wkt().upper().startswith("GEOCCS") or "+proj=geocent" in (parsed.to_proj4() or ""):
        raise InputDataError(
            f"The {what} {crs} is geocentric (3D X, Y, Z from the Earth's centre), not a map projection: "
            f"choose a projected CRS in metres such as EPSG:3035 or a UTM zone."
        )
    if not parsed.is_projected:
        raise InputDataError(
            f"The {what} {crs} is not projected (its units are degrees): cells must be square in metres. "
            f"Choose a projected CRS such as EPSG:3035 (Europe, equal area) or a UTM zone."
        )
    units, factor = parsed.linear_units_factor
    if not math.isclose(factor, 1.0):
        raise InputDataError(
            f"The {what} {crs} measures in {units}, not metres: choose a CRS in metres such as EPSG:3035."
        )
    return parsed


def outline(bounds: Sequence[float], points_per_side: int = 65) -> tuple[np.ndarray, np.ndarray]:
    """The densified outline of ``bounds`` (left, bottom, right, top): ``points_per_side``
    points on each side, clockwise from the north-west corner, as (xs, ys). The one
    densifier: transforming these points bounds a rectangle's image in another CRS."""
    left, bottom, right, top = (float(v) for v in bounds)
    t = np.linspace(0.0, 1.0, max(2, int(points_per_side)))
    xs = np.concatenate(
        [left + (right - left) * t, np.full_like(t, right), right - (right - left) * t, np.full_like(t, left)]
    )
    ys = np.concatenate(
        [np.full_like(t, top), top - (top - bottom) * t, np.full_like(t, bottom), bottom + (top - bottom) * t]
    )
    return xs, ys


def outline_bounds(bounds: Sequence[float], src_crs, dst_crs, densify: int = 21):
    """(left, bottom, right, top) in ``dst_crs`` of the rectangle ``bounds`` given in
    ``src_crs``: its :func:`outline` with ``densify`` points between the corners of each side,
    transformed; the points PROJ cannot transform are left out, None when none transforms.
    For regional extents, rasterio's ``transform_bounds(densify_pts=densify)`` without its
    cost (~35 ms a call to a UTM zone in rasterio 1.3)."""
    src, dst = parse_crs(src_crs), parse_crs(dst_crs)
    xs, ys = outline(bounds, densify + 2)
    try:
        tx, ty = (np.asarray(v, dtype=np.float64) for v in transform(src, dst, xs, ys))
    except Exception:  # PROJ refuses the whole call when a point lies outside its domain
        tx, ty = np.full_like(xs, np.nan), np.full_like(ys, np.nan)
        for i, (x, y) in enumerate(zip(xs.tolist(), ys.tolist(), strict=True)):
            try:
                (tx[i],), (ty[i],) = transform(src, dst, [x], [y])
            except Exception:  # this point only
                continue
    ok = np.isfinite(tx) & np.isfinite(ty)
    if not ok.any():
        return None
    return (float(tx[ok].min()), float(ty[ok].min()), float(tx[ok].max()), float(ty[ok].max()))


@dataclass(frozen=True)
class Grid:
    """``width`` x ``height`` cells of ``cell_size`` metres; (left, top) is the north-west corner."""

    crs: str
    cell_size: float
    left: float
    top: float
    width: int
    height: int

    @property
    def transform(self) -> Affine:
        return Affine(self.cell_size, 0.0, self.left, 0.0, -self.cell_size, self.top)

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """(left, bottom, right, top)."""
        return (
            self.left,
            self.top - self.height * self.cell_size,
            self.left + self.width * self.cell_size,
            self.top,
        )

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns)."""
        return (self.height, self.width)

    @property
    def n_cells(self) -> int:
        return self.width * self.height

    def cell_centres(self, row_start: int, row_stop: int, col_start: int = 0, col_stop: int | None = None):
        """Centres of the cells in rows [row_start, row_stop) x columns [col_start, col_stop),
        as two float64 1-D arrays in row-major order (x varies fastest)."""
        if col_stop is None:
            col_stop = self.width
        cols = np.arange(col_start, col_stop, dtype=np.float64)
        rows = np.arange(row_start, row_stop, dtype=np.float64)
        xs = self.left + (cols + 0.5) * self.cell_size
        ys = self.top - (rows + 0.5) * self.cell_size
        return np.tile(xs, len(rows)), np.repeat(ys, len(cols))

    def window_centres(self, window: Window):
        """:meth:`cell_centres` of a rasterio Window of this grid."""
        r0, c0 = int(window.row_off), int(window.col_off)
        return self.cell_centres(r0, r0 + int(window.height), c0, c0 + int(window.width))

    def window_transform(self, window: Window) -> Affine:
        return self.transform * Affine.translation(window.col_off, window.row_off)

    def tiles(self, cells: int, max_rows: int = 256, whole_rows: bool = False) -> list[Window]:
        """This grid cut into windows of about ``cells`` cells (:func:`tiles`)."""
        return tiles(self.height, self.width, cells, max_rows, whole_rows)

    def blocks(self, rows_per_block: int) -> Iterator[Window]:
        """Full-width bands of ``rows_per_block`` rows (the last one shorter), north to south."""
        rows = max(1, int(rows_per_block))
        yield from tiles(self.height, self.width, rows * self.width, rows, whole_rows=True)

    def rows_for_cells(self, cells_per_block: int) -> int:
        """How many full rows hold about ``cells_per_block`` cells (at least one)."""
        return max(1, int(cells_per_block) // max(1, self.width))


def tiles(height: int, width: int, cells: int, max_rows: int = 256, whole_rows: bool = False) -> list[Window]:
    """The one tiling of a grid of ``height`` x ``width`` cells: windows of about ``cells``
    cells in row order, covering it once.

    ``whole_rows``: full-width bands of ``cells // width`` rows (at most ``max_rows``; at
    least one), for outputs written row after row. Otherwise near-square tiles: a patch
    model reads and warps a window of the block plus half a patch on every side, which for
    a one-row strip is several times the block itself. Their height is a power of two no
    larger than ``max_rows`` (a writer's strip height, also a power of two), so a row of
    tiles never straddles two of the writer's strips.
    """
    cells = max(1, int(cells))
    height, width = int(height), int(width)
    if whole_rows:
        rows = max(1, min(int(max_rows), cells // max(1, width)))
        cols = width
    else:
        rows = 1
        while rows * 2 <= min(math.isqrt(cells), max_rows):
            rows *= 2
        cols = min(width, max(1, cells // min(rows, max(1, height))))
        if cols == width:  # the whole width fits: use the budget for more rows
            while rows * 2 <= max_rows and rows * 2 * width <= cells:
                rows *= 2
    return [
        Window(c, r, min(cols, width - c), min(rows, height - r))
        for r in range(0, height, rows)
        for c in range(0, width, cols)
    ]


def make_grid(extent, extent_crs=None, crs="EPSG:3035", cell_size: float = 100.0) -> Grid:
    """The snapped grid covering ``extent`` = (xmin, ymin, xmax, ymax) given in ``extent_crs``
    (default: ``crs``). The extent is transformed with densified edges, then widened to the
    next multiples of ``cell_size``."""
    cell_size = checks.cell_size(cell_size)
    xmin, ymin, xmax, ymax = checks.extent(extent)
    target = projected_crs(crs)
    source = target if extent_crs is None else parse_crs(extent_crs, "extent CRS")
    if source != target:
        try:
            transformed = outline_bounds((xmin, ymin, xmax, ymax), source, target)
        except Exception as error:  # PROJ errors come in several types
            raise InputDataError(f"The extent cannot be transformed to {crs}: {error}") from None
        if transformed is None or transformed[0] >= transformed[2] or transformed[1] >= transformed[3]:
            raise InputDataError(f"The extent is outside the area where {crs} is defined.")
        xmin, ymin, xmax, ymax = transformed
    # the cell counts in float first: a tiny cell size must be refused, not overflow
    checks.grid_side(xmax - xmin, cell_size, "width")
    checks.grid_side(ymax - ymin, cell_size, "height")
    c0 = math.floor(xmin / cell_size + SNAP_TOLERANCE)
    c1 = math.ceil(xmax / cell_size - SNAP_TOLERANCE)
    r0 = math.floor(ymin / cell_size + SNAP_TOLERANCE)
    r1 = math.ceil(ymax / cell_size - SNAP_TOLERANCE)
    width, height = max(1, c1 - c0), max(1, r1 - r0)
    crs_text = crs if isinstance(crs, str) else target.to_string()
    return Grid(crs_text, cell_size, c0 * cell_size, r1 * cell_size, int(width), int(height))


def as_geojson(geometry):
    """GeoJSON-like dict from a dict, an object with __geo_interface__, GeoJSON text, WKT or WKB."""
    if isinstance(geometry, dict):
        if geometry.get("type") == "Feature":
            return geometry.get("geometry")
        return geometry
    if hasattr(geometry, "__geo_interface__"):
        return geometry.__geo_interface__
    if isinstance(geometry, str) and geometry.lstrip().startswith("{"):
        try:
            return as_geojson(json.loads(geometry))
        except ValueError:
            raise InputDataError("An AREA geometry is not valid GeoJSON.") from None
    from osgeo import ogr  # GDAL's bindings, shipped with QGIS and rasterio's GDAL

    try:  # OGR raises or returns None, whichever mode the process put it in
        if isinstance(geometry, bytes | bytearray | memoryview):
            geom = ogr.CreateGeometryFromWkb(bytes(geometry))
        elif isinstance(geometry, str):
            geom = ogr.CreateGeometryFromWkt(geometry)
        else:
            raise InputDataError(f"An AREA geometry has an unsupported type: {type(geometry).__name__}.")
    except RuntimeError:
        geom = None
    if geom is None:
        raise InputDataError("An AREA geometry is not valid WKB/WKT.")
    return json.loads(geom.GetLinearGeometry().ExportToJson())


def area_polygons(geometries) -> list[dict]:
    """The polygons of an AREA as GeoJSON-like dicts, parsed once. ``geometries``: WKB bytes,
    WKT/GeoJSON text, GeoJSON-like dicts, a single one or a list; collections are opened,
    anything but (multi)polygons dropped. No polygon at all: :class:`InputDataError`."""
    if isinstance(geometries, dict | str | bytes | bytearray | memoryview) or hasattr(
        geometries, "__geo_interface__"
    ):
        geometries = [geometries]
    shapes = []
    for g in geometries:
        gj = as_geojson(g)
        if gj and gj.get("type") == "GeometryCollection":
            shapes.extend(gj.get("geometries", []))
        elif gj:
            shapes.append(gj)
    shapes = [s for s in shapes if s.get("type") in ("Polygon", "MultiPolygon")]
    if not shapes:
        raise InputDataError("The AREA has no polygons.")
    return shapes


def area_bounds(shapes) -> tuple[float, float, float, float]:
    """(xmin, ymin, xmax, ymax) of polygons from :func:`area_polygons`, in their CRS."""
    from rasterio.features import bounds

    boxes = np.array([bounds(s) for s in shapes], dtype=np.float64)
    return (boxes[:, 0].min(), boxes[:, 1].min(), boxes[:, 2].max(), boxes[:, 3].max())


def area_in_crs(geometries, geometries_crs, crs) -> list[dict]:
    """The polygons (as :func:`area_polygons` takes them) in ``crs``: transformed once, so
    that callers masking many windows do not transform them again for each."""
    shapes = area_polygons(geometries)
    if geometries_crs is None:
        return shapes
    source, target = parse_crs(geometries_crs, "AREA CRS"), parse_crs(crs)
    return shapes if source == target else [transform_geom(source, target, s) for s in shapes]


def area_mask(grid: Grid, geometries, geometries_crs=None, window: Window | None = None) -> np.ndarray:
    """Boolean array over the grid (or ``window`` of it), True where the cell centre is
    inside one of the polygons. ``geometries``: as :func:`area_polygons` takes them, in
    ``geometries_crs`` (default: the grid's CRS); for many windows, pass
    :func:`area_in_crs`'s result once and no CRS."""
    shapes = area_in_crs(geometries, geometries_crs, grid.crs)
    if window is None:
        window = Window(0, 0, grid.width, grid.height)
    out_shape = (int(window.height), int(window.width))
    return geometry_mask(
        shapes, out_shape=out_shape, transform=grid.window_transform(window), all_touched=False, invert=True
    )
