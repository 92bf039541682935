"""Nearest-neighbour resampling onto a projected lattice, exact to the source pixel.

:func:`source_pixels` finds the source pixel containing each destination pixel centre
(interpolated on a lattice, exact where it matters); :func:`warp_nearest` resamples a
source window with it. Used by :class:`core.sampling.PatchSampler`.
"""

from __future__ import annotations

import numpy as np
from rasterio.transform import Affine
from rasterio.warp import transform

#: destination pixels between exactly transformed lattice points (see source_pixels)
WARP_LATTICE = 32
#: interpolation error (source pixels) above which every pixel is transformed exactly
WARP_MAX_ERROR = 1e-3
#: destination pixels resampled at a time (bounds warp_nearest's temporary arrays)
WARP_STRIP_PIXELS = 1 << 20


def _exact_source_coords(src_inverse, src_crs, dst_transform, dst_crs, rows, cols):
    """Fractional source (col, row) of destination pixel centres (rows, cols), exactly."""
    x, y = dst_transform * (cols + 0.5, rows + 0.5)
    with np.errstate(invalid="ignore"):
        sx, sy = transform(dst_crs, src_crs, np.ravel(x), np.ravel(y))
    c, r = src_inverse * (np.asarray(sx, dtype=np.float64), np.asarray(sy, dtype=np.float64))
    return np.reshape(c, np.shape(x)), np.reshape(r, np.shape(x))


def _lattice(n: int, step: int) -> np.ndarray:
    return np.unique(np.r_[np.arange(0, n, step), n - 1])


def _interpolate(values: np.ndarray, at: np.ndarray, n: int, axis: int) -> np.ndarray:
    """Linear interpolation along ``axis`` from lattice positions ``at`` to 0 .. n - 1."""
    if len(at) == 1:
        return np.repeat(values, n, axis=axis)
    x = np.arange(n)
    i = np.clip(np.searchsorted(at, x, side="right") - 1, 0, len(at) - 2)
    t = (x - at[i]) / (at[i + 1] - at[i])
    lo, hi = np.take(values, i, axis=axis), np.take(values, i + 1, axis=axis)
    shape = [1, 1]
    shape[axis] = n
    t = t.reshape(shape)
    return lo + (hi - lo) * t


def source_pixels(src_transform, src_crs, src_shape, dst_shape, dst_transform, dst_crs):
    """(rows, cols) int64 [H, W]: the source pixel containing the centre of each destination
    pixel (transformed to the source CRS), -1 where it falls outside the source.

    Exact, but without transforming every pixel (PROJ costs ~0.25 us a point, GDAL's exact
    warp as much): the centres are transformed on a lattice every WARP_LATTICE pixels and
    interpolated bilinearly in between. The interpolation error is bounded from exact
    transforms at the middles of the lattice's edges and cells; it is small between map
    projections (measured ~2e-5 source pixel for 32 pixels of 10 m, UTM and EPSG:3035).
    Only the pixels whose interpolated position lies within 4x that bound of a source pixel
    edge, where it could pick the wrong neighbour, are transformed exactly. A transformation
    that is not smooth enough there (error over WARP_MAX_ERROR pixels, or lattice points that
    do not transform) is done pixel by pixel.
    """
    height, width = dst_shape
    inverse = ~src_transform
    lr, lc = _lattice(height, WARP_LATTICE), _lattice(width, WARP_LATTICE)
    grid_r, grid_c = np.meshgrid(lr, lc, indexing="ij")
    c_lat, r_lat = _exact_source_coords(inverse, src_crs, dst_transform, dst_crs, grid_r, grid_c)
    exact_everywhere = not (np.isfinite(c_lat).all() and np.isfinite(r_lat).all())
    if not exact_everywhere:
        col_f = _interpolate(_interpolate(c_lat, lc, width, 1), lr, height, 0)
        row_f = _interpolate(_interpolate(r_lat, lc, width, 1), lr, height, 0)
        # Bilinear interpolation reproduces constant, linear and xy terms, so its error is
        # about f_xx x (h - x) / 2 + f_yy y (k - y) / 2: at most the error at the middle of
        # a horizontal lattice edge plus that at the middle of a vertical one. (The middle
        # of a cell alone can miss it: for conformal pairs, UTM to UTM or Web Mercator, f_xx
        # and f_yy nearly cancel there; measured 5x below the true maximum.)
        mr, mc = (lr[:-1] + lr[1:]) // 2, (lc[:-1] + lc[1:]) // 2

        def worst(at_r, at_c) -> float:  # largest error at these lattice points (NaN kept)
            if not (len(at_r) and len(at_c)):
                return 0.0
            pr, pc = np.meshgrid(at_r, at_c, indexing="ij")
            c_at, r_at = _exact_source_coords(inverse, src_crs, dst_transform, dst_crs, pr, pc)
            with np.errstate(invalid="ignore"):
                return float(np.max([np.abs(c_at - col_f[pr, pc]), np.abs(r_at - row_f[pr, pc])]))

        error = float(np.max([worst(lr, mc) + worst(mr, lc), worst(mr, mc)]))
        exact_everywhere = not error <= WARP_MAX_ERROR  # (NaN included)
    if exact_everywhere:
        all_r, all_c = np.meshgrid(np.arange(height), np.arange(width), indexing="ij")
        col_f, row_f = _exact_source_coords(inverse, src_crs, dst_transform, dst_crs, all_r, all_c)
    else:
        # magnitudes of ~1e5 pixels carry ~1e-11 of float64 rounding: a floor under the margin
        margin = 4.0 * error + 1e-9
        near_edge = (np.abs(col_f - np.round(col_f)) < margin) | (np.abs(row_f - np.round(row_f)) < margin)
        redo_r, redo_c = np.nonzero(near_edge)
        if len(redo_r):
            col_f[redo_r, redo_c], row_f[redo_r, redo_c] = _exact_source_coords(
                inverse, src_crs, dst_transform, dst_crs, redo_r, redo_c
            )
    with np.errstate(invalid="ignore"):
        inside = (col_f >= 0) & (col_f < src_shape[1]) & (row_f >= 0) & (row_f < src_shape[0])
    rows = np.where(inside, np.floor(np.where(inside, row_f, 0)), -1).astype(np.int64)
    cols = np.where(inside, np.floor(np.where(inside, col_f, 0)), -1).astype(np.int64)
    return rows, cols


def warp_pixels(src_transform, src_crs, src_shape, dst_shape, dst_transform, dst_crs) -> list:
    """:func:`source_pixels` by strips of destination rows (``[(first row, rows, cols)]``):
    it holds a few float64 arrays of a strip's size, not of the whole grid's."""
    height, width = dst_shape
    step = max(1, WARP_STRIP_PIXELS // max(1, width))
    strips = []
    for top in range(0, height, step):
        rows_here = min(step, height - top)
        strip_transform = dst_transform * Affine.translation(0, top)
        rows, cols = source_pixels(
            src_transform, src_crs, src_shape, (rows_here, width), strip_transform, dst_crs
        )
        strips.append((top, rows, cols))
    return strips


def warp_nearest(data, src_transform, src_crs, dst_shape, dst_transform, dst_crs, strips=None):
    """Nearest-neighbour resampling of float32 ``data`` [bands, h, w] (NaN = nodata) onto a
    ``dst_shape`` grid: each destination pixel takes the source pixel containing its centre
    (:func:`source_pixels`, exact); float32 [bands, *dst_shape], NaN where no source pixel.
    ``strips``: :func:`warp_pixels` of this very source window and grid, when already known
    (sources sharing a pixel grid, e.g. one file per Sentinel-2 band).

    Our own rather than GDAL's warper: GDAL's exact transformation (errorThreshold=0) cost
    6x its default 1/8-pixel approximation and most of the demo's prediction time, and
    rasterio 1.3's ``reproject`` always approximates.
    """
    if strips is None:
        strips = warp_pixels(src_transform, src_crs, data.shape[1:], dst_shape, dst_transform, dst_crs)
    out = np.full((data.shape[0], *dst_shape), np.nan, dtype=np.float32)
    for top, rows, cols in strips:
        inside = rows >= 0
        out[:, top : top + len(rows)][:, inside] = data[:, rows[inside], cols[inside]]
    return out
