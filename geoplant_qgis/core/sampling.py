"""Raster values at points and patches around points, read in bulk.

:class:`PointSampler` gives the value of the source pixel containing each point (no
interpolation); :class:`PatchSampler` gives P x P windows of r-metre pixels in a projected
CRS, north up, centred on each point. Both open each file once, read one window per
source file per :meth:`sample` call (all the bands of that file in the one read) and
gather values with numpy; points are transformed to each source's CRS with
``rasterio.warp.transform``. Points spread over a huge area are split into spatial chunks
so memory stays bounded. Nodata (nodata value, GDAL masks, NaN) and outside-the-raster
come back as NaN in float32 arrays.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.enums import MaskFlags
from rasterio.transform import Affine
from rasterio.warp import transform
from rasterio.windows import Window

from .errors import InputDataError
from .grid import outline_bounds, parse_crs, projected_crs
from .patchgrid import Patches, PatchSelection
from .sources import BandRef
from .warp import (  # noqa: F401  (re-exported: the resampling's old home)
    WARP_LATTICE,
    WARP_MAX_ERROR,
    WARP_STRIP_PIXELS,
    source_pixels,
    warp_nearest,
    warp_pixels,
)

__all__ = [
    "Footprint",
    "PatchSampler",
    "PatchSelection",
    "Patches",
    "PointSampler",
    "source_pixels",
    "warp_nearest",
    "warp_pixels",
]

#: largest source window (pixels x bands) read at once; bigger spans are read tile by tile
MAX_WINDOW_VALUES = 1 << 23
#: largest resampled patch grid (pixels x channels) per chunk of points
MAX_FINE_VALUES = 1 << 25
#: more distinct sub-pixel offsets than this among the patches of a chunk: gather pixel by pixel
MAX_PHASES = 8
#: patch pixels per batch when they are gathered one by one (unaligned scattered points)
GATHER_PIXELS = 1 << 22


def _as_xy(xs, ys) -> tuple[np.ndarray, np.ndarray]:
    xs = np.asarray(xs, dtype=np.float64).ravel()
    ys = np.asarray(ys, dtype=np.float64).ravel()
    if xs.shape != ys.shape:
        raise ValueError(f"xs and ys differ in length ({xs.size} and {ys.size})")
    return xs, ys


def _tile_groups(a: np.ndarray, b: np.ndarray, tile: float) -> list[np.ndarray]:
    """Indices of the points grouped by (a // tile, b // tile), each group spatially compact."""
    ka = np.floor((a - a.min()) / tile).astype(np.int64)
    kb = np.floor((b - b.min()) / tile).astype(np.int64)
    key = ka * (int(kb.max()) + 1) + kb
    order = np.argsort(key, kind="stable")
    _, starts = np.unique(key[order], return_index=True)
    return np.split(order, starts[1:])


class _Source:
    """One raster file open for the sampler's lifetime, with the bands it must read."""

    def __init__(self, path: str, bands: list[int]):
        try:
            self.ds = rasterio.open(path)
        except rasterio.errors.RasterioIOError as error:
            raise InputDataError(f"Cannot open the raster '{path}': {error}") from None
        self.path = path
        self.bands = bands
        if any(b < 1 or b > self.ds.count for b in bands):
            bad = [b for b in bands if b < 1 or b > self.ds.count]
            self.ds.close()
            raise InputDataError(
                f"The raster '{path}' has {self.ds.count} band(s); there is no band {bad[0]}."
            )
        if self.ds.crs is None:
            self.ds.close()
            raise InputDataError(f"The raster '{path}' has no CRS: it cannot be placed on the map.")
        self.crs = self.ds.crs
        self.transform = self.ds.transform
        self.inverse = ~self.transform
        self.width, self.height = self.ds.width, self.ds.height
        self.nodata = [self._nodata_in_dtype(self.ds.nodatavals[b - 1], b) for b in bands]
        flags = [self.ds.mask_flag_enums[b - 1] for b in bands]
        self.need_masks = any(MaskFlags.per_dataset in f or MaskFlags.alpha in f for f in flags)

    def _nodata_in_dtype(self, value, band):
        """The nodata value as the band's dtype, or None if it cannot occur in that dtype."""
        if value is None:
            return None
        dtype = np.dtype(self.ds.dtypes[band - 1])
        if dtype.kind == "f":
            return None if math.isnan(value) else dtype.type(value)
        if not float(value).is_integer():
            return None
        info = np.iinfo(dtype)
        return dtype.type(int(value)) if info.min <= value <= info.max else None

    def close(self):
        self.ds.close()

    def read(self, window: Window) -> np.ndarray:
        """float32 [bands, h, w] of ``window`` (inside the raster), NaN where nodata or masked."""
        data = self.ds.read(self.bands, window=window)
        invalid = np.zeros(data.shape, dtype=bool)
        for i, nodata in enumerate(self.nodata):
            if nodata is not None:
                invalid[i] |= data[i] == nodata
        if data.dtype.kind == "f":
            invalid |= np.isnan(data)
        if self.need_masks:
            invalid |= self.ds.read_masks(self.bands, window=window) == 0
        out = data.astype(np.float32, copy=False)
        if invalid.any():
            if out is data:
                out = out.copy()
            out[invalid] = np.nan
        return out

    def values_at(self, sx: np.ndarray, sy: np.ndarray, pixels=None) -> np.ndarray:
        """float32 [n, bands]: the pixel containing each point (given in the source CRS).

        ``pixels``: :meth:`pixels_of` these points, when already computed for a source on
        the same pixel grid (the climate rasters of a model share theirs)."""
        out = np.full((sx.size, len(self.bands)), np.nan, dtype=np.float32)
        idx, rows, cols = self.pixels_of(sx, sy) if pixels is None else pixels
        if idx.size == 0:
            return out
        span = (int(rows.max() - rows.min()) + 1) * (int(cols.max() - cols.min()) + 1) * len(self.bands)
        if span <= MAX_WINDOW_VALUES:
            groups: list = [slice(None)]
        else:
            tile = max(1, int(math.sqrt(MAX_WINDOW_VALUES / len(self.bands))))
            groups = _tile_groups(rows.astype(np.float64), cols.astype(np.float64), tile)
        for g in groups:
            r, c = rows[g], cols[g]
            r0, c0 = int(r.min()), int(c.min())
            window = Window(c0, r0, int(c.max()) - c0 + 1, int(r.max()) - r0 + 1)
            data = self.read(window)
            out[idx[g]] = data[:, r - r0, c - c0].T
        return out

    @property
    def pixel_grid(self) -> tuple:
        """What :meth:`pixels_of` depends on: sources with equal keys share pixel indices."""
        return (self.transform, self.width, self.height)

    def pixels_of(self, sx: np.ndarray, sy: np.ndarray):
        """(positions of the points inside the raster, their rows, their columns)."""
        if sx.size == 0:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, empty
        cols_f, rows_f = self.inverse * (sx, sy)
        with np.errstate(invalid="ignore"):
            inside = (cols_f >= 0) & (cols_f < self.width) & (rows_f >= 0) & (rows_f < self.height)
        idx = np.flatnonzero(inside)
        cols = np.floor(cols_f[idx]).astype(np.int64)
        rows = np.floor(rows_f[idx]).astype(np.int64)
        # floating point may put a point at exactly width/height after the comparison above
        np.clip(cols, 0, self.width - 1, out=cols)
        np.clip(rows, 0, self.height - 1, out=rows)
        return idx, rows, cols

    def window_for_bounds(self, bounds, halo: int = 1) -> Window | None:
        """The raster window covering ``bounds`` (in the source CRS) plus ``halo`` pixels,
        clipped to the raster; None when they do not overlap."""
        left, bottom, right, top = bounds
        cols, rows = self.inverse * (
            np.array([left, right, left, right]),
            np.array([top, top, bottom, bottom]),
        )
        if not (np.all(np.isfinite(cols)) and np.all(np.isfinite(rows))):
            return None
        c0 = max(0, math.floor(cols.min()) - halo)
        r0 = max(0, math.floor(rows.min()) - halo)
        c1 = min(self.width, math.ceil(cols.max()) + halo)
        r1 = min(self.height, math.ceil(rows.max()) + halo)
        if c1 <= c0 or r1 <= r0:
            return None
        return Window(c0, r0, c1 - c0, r1 - r0)


@dataclass(frozen=True)
class Footprint:
    """Where one source file of a sampler has pixels (for skipping cells none reaches)."""

    path: str
    crs: CRS
    #: the source is in the sampler's CRS (no transformation needed)
    same_crs: bool
    #: (left, bottom, right, top) of the raster's corners, in its CRS
    bounds: tuple[float, float, float, float]
    inverse: Affine
    width: int
    height: int

    def contains(self, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
        """bool: which points (in the source's CRS) fall on one of its pixels."""
        c, r = self.inverse * (xs, ys)
        with np.errstate(invalid="ignore"):
            return (c >= 0) & (c < self.width) & (r >= 0) & (r < self.height)


class _Sampler:
    """Shared by both samplers: files opened once, bands grouped by file."""

    def __init__(self, refs: Sequence[BandRef], crs):
        refs = list(refs)
        if not refs:
            raise InputDataError("Nothing to sample: no raster bands were given.")
        self.refs = refs
        self.crs = parse_crs(crs)
        self.sources: list[_Source] = []
        # for each source: (its bands' positions in the source read, the output channels they fill)
        self.routes: list[tuple[np.ndarray, np.ndarray]] = []
        by_path: dict[str, list[int]] = {}
        for ref in refs:
            bands = by_path.setdefault(str(ref.path), [])
            if ref.band not in bands:
                bands.append(int(ref.band))
        try:
            for path, bands in by_path.items():
                source = _Source(path, bands)
                self.sources.append(source)
                positions, channels = [], []
                for channel, ref in enumerate(refs):
                    if str(ref.path) == path:
                        positions.append(bands.index(ref.band))
                        channels.append(channel)
                self.routes.append((np.array(positions), np.array(channels)))
        except BaseException:
            self.close()
            raise
        self._same_crs = [s.crs == self.crs for s in self.sources]

    def footprints(self) -> list[Footprint]:
        """Where each source file (in :attr:`sources` order) has pixels."""
        result = []
        for source, same in zip(self.sources, self._same_crs, strict=True):
            cx, cy = source.transform * (
                np.array([0, source.width, 0, source.width], dtype=np.float64),
                np.array([0, 0, source.height, source.height], dtype=np.float64),
            )
            bounds = (float(cx.min()), float(cy.min()), float(cx.max()), float(cy.max()))
            result.append(
                Footprint(source.path, source.crs, same, bounds, source.inverse, source.width, source.height)
            )
        return result

    def _to_sources(self, xs, ys):
        """Points in each source's CRS, transformed once per distinct CRS."""
        cache: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        result = []
        for source, same in zip(self.sources, self._same_crs, strict=True):
            if same:
                result.append((xs, ys))
                continue
            key = source.crs.to_wkt()
            if key not in cache:
                sx, sy = transform(self.crs, source.crs, xs, ys)
                cache[key] = (np.asarray(sx, dtype=np.float64), np.asarray(sy, dtype=np.float64))
            result.append(cache[key])
        return result

    def close(self):
        for source in self.sources:
            source.close()
        self.sources = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class PointSampler(_Sampler):
    """Values of the source pixels containing points given in ``crs``."""

    def sample(self, xs, ys) -> np.ndarray:
        """float32 [N, len(refs)], NaN where nodata or outside the source."""
        xs, ys = _as_xy(xs, ys)
        out = np.full((xs.size, len(self.refs)), np.nan, dtype=np.float32)
        if xs.size == 0:
            return out
        # pixel indices once per CRS and pixel grid, not once per file
        shared: dict[tuple, tuple] = {}
        for source, (sx, sy), (positions, channels) in zip(
            self.sources, self._to_sources(xs, ys), self.routes, strict=True
        ):
            key = (id(sx), source.pixel_grid)
            if key not in shared:
                shared[key] = source.pixels_of(sx, sy)
            values = source.values_at(sx, sy, shared[key])
            out[:, channels] = values[:, positions]
        return out


class PatchSampler(_Sampler):
    """``size`` x ``size`` windows of ``pixel_size_m`` pixels in the projected ``crs``,
    north up (first row northmost), centred on each point."""

    def __init__(self, refs: Sequence[BandRef], size: int, pixel_size_m: float, crs):
        """Patch pixels are exactly those point sampling of their centres gives
        (:func:`warp_nearest`)."""
        projected_crs(crs, "patch CRS")
        if int(size) != size or size < 1:
            raise InputDataError(f"The patch size must be a positive whole number of pixels, not {size}.")
        if not pixel_size_m or not math.isfinite(pixel_size_m) or pixel_size_m <= 0:
            raise InputDataError(
                f"The patch pixel size must be a positive number of metres, not {pixel_size_m}."
            )
        super().__init__(refs, crs)
        self.size = int(size)
        self.r = float(pixel_size_m)
        self.half = self.size * self.r / 2.0
        offsets = (np.arange(self.size) - self.size / 2.0 + 0.5) * self.r
        self._dx = offsets  # pixel column j: x + dx[j]
        self._dy = -offsets  # pixel row i: y + dy[i] (north first)

    def sample(self, xs, ys) -> np.ndarray:
        """float32 [N, C, P, P], NaN where nodata or outside the source."""
        patches = self.patches(xs, ys)
        out = np.empty((patches.n, len(self.refs), self.size, self.size), dtype=np.float32)
        patches.copy_to(out)
        return out

    def patches(self, xs, ys, pre=None) -> Patches:
        """The patches at the points, not yet copied: :attr:`Patches.valid` tells which have
        no nodata pixel, :meth:`Patches.copy_to` writes (some of) them into a buffer.
        ``pre``: applied in place to the resampled pixels first (see :class:`Patches`)."""
        xs, ys = _as_xy(xs, ys)
        p, c = self.size, len(self.refs)
        patches = Patches(xs.size, c, p, pre)
        if xs.size == 0:
            return patches
        width = (xs.max() - xs.min()) / self.r + p
        height = (ys.max() - ys.min()) / self.r + p
        if width * height * c <= MAX_FINE_VALUES:
            self._sample_chunk(xs, ys, np.arange(xs.size), patches)
            return patches
        tile_px = max(p, int(math.sqrt(MAX_FINE_VALUES / c)) - p)
        for idx in _tile_groups(xs, -ys, tile_px * self.r):
            self._sample_chunk(xs[idx], ys[idx], idx, patches)
        return patches

    def _sample_chunk(self, xs, ys, idx, patches) -> None:
        # sub-pixel offset of each patch's north-west corner on the r-metre lattice
        ex, ey = (xs - self.half) / self.r, (ys + self.half) / self.r
        phase_x = np.round(ex - np.floor(ex), 6) % 1.0
        phase_y = np.round(ey - np.floor(ey), 6) % 1.0
        phases, inverse = np.unique(np.stack([phase_x, phase_y], axis=1), axis=0, return_inverse=True)
        inverse = inverse.ravel()
        if len(phases) > MAX_PHASES:
            patches.add_array(idx, self._gather(xs, ys))
            return
        if len(phases) == 1:
            patches.add_lattice(idx, *self._resample(xs, ys))
            return
        for k in range(len(phases)):
            sub = np.flatnonzero(inverse == k)
            patches.add_lattice(idx[sub], *self._resample(xs[sub], ys[sub]))

    def _resample(self, xs, ys) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Patches whose corners all sit on one r-metre lattice: one halo'd read and one
        nearest-neighbour reprojection per source onto that lattice. Returns the fine grid
        [C, H, W] and each patch's top-left (row, col) in it."""
        p, r = self.size, self.r
        lefts, tops = xs - self.half, ys + self.half
        gx0, gy0 = float(lefts.min()), float(tops.max())
        cols = np.rint((lefts - gx0) / r).astype(np.int64)
        rows = np.rint((gy0 - tops) / r).astype(np.int64)
        width, height = int(cols.max()) + p, int(rows.max()) + p
        fine_transform = Affine(r, 0.0, gx0, 0.0, -r, gy0)
        fine = np.full((len(self.refs), height, width), np.nan, dtype=np.float32)
        bounds = (gx0, gy0 - height * r, gx0 + width * r, gy0)
        # per CRS and pixel grid: the source window and its pixel map, computed once for all
        # the files on that grid (one file per band)
        shared: dict[tuple, tuple] = {}
        for source, same, (positions, channels) in zip(
            self.sources, self._same_crs, self.routes, strict=True
        ):
            if same and self._copy_aligned(source, fine, positions, channels, gx0, gy0):
                continue
            key = (source.crs.to_wkt(), source.pixel_grid)
            if key not in shared:
                src_bounds = bounds if same else outline_bounds(bounds, self.crs, source.crs)
                window = None if src_bounds is None else source.window_for_bounds(src_bounds)
                strips = None
                if window is not None:
                    window_shape = (int(window.height), int(window.width))
                    strips = warp_pixels(
                        source.ds.window_transform(window), source.crs, window_shape, (height, width),
                        fine_transform, self.crs,
                    )  # fmt: skip
                shared[key] = (window, strips)
            window, strips = shared[key]
            if window is None:
                continue
            data = source.read(window)
            transform_ = source.ds.window_transform(window)
            dst = warp_nearest(data, transform_, source.crs, fine.shape[1:], fine_transform, self.crs, strips)
            fine[channels] = dst[positions]
        return fine, rows, cols

    def _copy_aligned(self, source, fine, positions, channels, gx0, gy0) -> bool:
        """When the source is north up on the patch lattice itself (same CRS, r-metre pixels,
        origin a whole number of pixels away), nearest-neighbour resampling is the identity:
        copy the overlapping pixels into ``fine`` instead of warping. False otherwise."""
        t, r = source.transform, self.r
        if (
            t.b != 0
            or t.d != 0
            or not math.isclose(t.a, r, rel_tol=1e-9)
            or not math.isclose(-t.e, r, rel_tol=1e-9)
        ):
            return False
        col0, row0 = (gx0 - t.c) / r, (t.f - gy0) / r
        if abs(col0 - round(col0)) > 1e-6 or abs(row0 - round(row0)) > 1e-6:
            return False
        col0, row0 = int(round(col0)), int(round(row0))
        height, width = fine.shape[1:]
        c0, r0 = max(0, col0), max(0, row0)
        c1, r1 = min(source.width, col0 + width), min(source.height, row0 + height)
        if c1 > c0 and r1 > r0:
            data = source.read(Window(c0, r0, c1 - c0, r1 - r0))
            fine[channels, r0 - row0 : r1 - row0, c0 - col0 : c1 - col0] = data[positions]
        return True

    def _gather(self, xs, ys) -> np.ndarray:
        """Patches not on a common lattice: every patch pixel centre sampled as a point,
        in spatially compact batches."""
        p, c = self.size, len(self.refs)
        out = np.empty((xs.size, c, p, p), dtype=np.float32)
        order = np.lexsort((xs, np.floor(-ys / (p * self.r * 16))))
        batch = max(1, GATHER_PIXELS // (p * p))
        for start in range(0, xs.size, batch):
            idx = order[start : start + batch]
            px = (xs[idx, None, None] + self._dx[None, None, :]).repeat(p, axis=1)
            py = (ys[idx, None, None] + self._dy[None, :, None]).repeat(p, axis=2)
            px, py = px.ravel(), py.ravel()
            values = np.full((px.size, c), np.nan, dtype=np.float32)
            for source, (sx, sy), (positions, channels) in zip(
                self.sources, self._to_sources(px, py), self.routes, strict=True
            ):
                values[:, channels] = source.values_at(sx, sy)[:, positions]
            out[idx] = values.reshape(idx.size, p, p, c).transpose(0, 3, 1, 2)
        return out
