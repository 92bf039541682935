"""Sampling under points or a grid, written in GeoPlant's formats.

- :func:`sample_environment`: raster values at survey points (or grid cell centres) as a
  GeoPlant environmental-values CSV (``surveyId`` or ``cellId,x,y``, then one column per
  variable, nodata empty).
- :func:`extract_patches`: P x P patches around points (or cell centres) as GLC25-style
  GeoTIFFs at ``CD/AB/<id>.tiff``.

Both use :mod:`core.sampling`, the code ``geoplant:predict`` feeds its models with.
"""

from __future__ import annotations

import csv
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from .errors import InputDataError, OutputError
from .files import output_folder, temporary_sibling
from .geoplant.layout import PATCH_BANDS, glc25_patch_relpath, remove_written, write_glc25_patch
from .grid import Grid, area_bounds, area_in_crs, area_mask, area_polygons, make_grid, parse_crs
from .progress import as_progress
from .sampling import PatchSampler, PointSampler
from .sources import BandRef, _stem, find_bands, parse_mapping, raster_band_names, resolve_variables

#: points per block (values) and per block of patches
POINT_BLOCK = 1 << 16
PATCH_BLOCK = 256


@dataclass
class Points:
    """Points to sample: ids, coordinates in ``crs``."""

    ids: np.ndarray
    xs: np.ndarray
    ys: np.ndarray
    crs: str

    def __post_init__(self):
        self.ids = np.asarray(self.ids)
        self.xs = np.asarray(self.xs, dtype=np.float64)
        self.ys = np.asarray(self.ys, dtype=np.float64)
        if not (self.ids.shape == self.xs.shape == self.ys.shape) or self.ids.ndim != 1:
            raise InputDataError("Point ids and coordinates differ in number.")


@dataclass
class GridArea:
    """A grid under an extent and/or an AREA (cells whose centre is inside)."""

    crs: str = "EPSG:3035"
    cell_size: float = 100.0
    extent: tuple | None = None
    extent_crs: str | None = None
    area: Sequence | None = None  # WKB / WKT / GeoJSON geometries
    area_crs: str | None = None
    grid: Grid | None = field(default=None, init=False)

    def __post_init__(self):
        extent, extent_crs = self.extent, self.extent_crs
        if self.area:
            self.area = area_polygons(self.area)  # parsed once, not per block
        if extent is None:
            if not self.area:
                raise InputDataError("Give POINTS, or an EXTENT or an AREA to sample a grid under.")
            extent, extent_crs = area_bounds(self.area), (self.area_crs or self.crs)
        self.grid = make_grid(extent, extent_crs, self.crs, self.cell_size)
        if self.area:  # in the grid CRS once, not per block
            self.area = area_in_crs(self.area, self.area_crs, self.grid.crs)
            self.area_crs = None

    def blocks(self, cells_per_block: int) -> Iterator[Points]:
        """Cells (ids ``row * width + col``, centres) block by block, AREA-masked."""
        g = self.grid
        for window in g.blocks(g.rows_for_cells(cells_per_block)):
            xs, ys = g.window_centres(window)
            rows = np.arange(window.row_off, window.row_off + window.height, dtype=np.int64)
            ids = (rows[:, None] * g.width + np.arange(g.width, dtype=np.int64)[None, :]).ravel()
            if self.area:
                keep = area_mask(g, self.area, window=window).ravel()
                ids, xs, ys = ids[keep], xs[keep], ys[keep]
            yield Points(ids, xs, ys, g.crs)


def raster_variables(raster_paths: Sequence, mapping=None) -> dict[str, BandRef]:
    """Every band of the rasters as a named variable (its description; else the file name for
    a one-band raster; else ``<file>_<band>``), then the MAPPING's variables (which win)."""
    variables: dict[str, BandRef] = {}
    for path in raster_paths:
        path = os.fspath(path)
        descriptions = raster_band_names(path)
        for band, description in enumerate(descriptions, start=1):
            if description:
                name = description
            elif len(descriptions) == 1:
                name = _stem(path)
            else:
                name = f"{_stem(path)}_{band}"
            if name not in variables:
                variables[name] = BandRef(path, band)
    if mapping is not None and not isinstance(mapping, dict):
        mapping = parse_mapping(mapping)
    if mapping:
        variables.update(resolve_variables(list(mapping), raster_paths, mapping))
    if not variables:
        raise InputDataError("No rasters given: choose RASTERS or give a MAPPING.")
    return variables


def _format_values(values: np.ndarray) -> list[list[str]]:
    text = np.char.mod("%.9g", values.astype(np.float64))
    text[np.isnan(values)] = ""
    return text.tolist()


@dataclass
class SampleResult:
    path: str
    rows: int
    complete_rows: int
    variables: list[str]
    seconds: float


def sample_environment(
    output_csv,
    raster_paths: Sequence = (),
    mapping=None,
    points: Points | None = None,
    grid: GridArea | None = None,
    variables: Sequence[str] | None = None,
    progress=None,
) -> SampleResult:
    """Values of the pixel containing each point (or cell centre) for every variable, as a
    GeoPlant environmental-values CSV. ``variables``: names to resolve by the model-card
    rules (default: every band of ``raster_paths`` plus the MAPPING's variables)."""
    progress = as_progress(progress)
    start = time.perf_counter()
    if variables:
        refs_by_name = resolve_variables(list(variables), raster_paths, mapping)
    else:
        refs_by_name = raster_variables(raster_paths, mapping)
    names = list(refs_by_name)
    if points is None and grid is None:
        raise InputDataError("Give POINTS, or an EXTENT or an AREA to sample a grid under.")
    final = os.path.abspath(os.fspath(output_csv))
    output_folder(final)
    tmp = temporary_sibling(final)
    rows = complete = 0
    try:
        if points is not None:
            header = ["surveyId", *names]
            crs = points.crs
            total = points.ids.size

            def blocks():
                for s in range(0, total, POINT_BLOCK):
                    yield Points(
                        points.ids[s : s + POINT_BLOCK],
                        points.xs[s : s + POINT_BLOCK],
                        points.ys[s : s + POINT_BLOCK],
                        points.crs,
                    )
        else:
            header = ["cellId", "x", "y", *names]
            crs = grid.grid.crs
            total = grid.grid.n_cells

            def blocks():
                yield from grid.blocks(POINT_BLOCK)

        with (
            open(tmp, "w", newline="", encoding="utf-8") as f,
            PointSampler(list(refs_by_name.values()), crs) as sampler,
        ):
            writer = csv.writer(f)
            writer.writerow(header)
            done = 0
            for block in blocks():
                progress.check_cancelled()
                values = sampler.sample(block.xs, block.ys)
                text = _format_values(values)
                ids = [str(i) for i in block.ids.tolist()]
                if points is not None:
                    writer.writerows([i, *v] for i, v in zip(ids, text, strict=True))
                else:
                    xs = np.char.mod("%.3f", block.xs).tolist()
                    ys = np.char.mod("%.3f", block.ys).tolist()
                    writer.writerows([i, x, y, *v] for i, x, y, v in zip(ids, xs, ys, text, strict=True))
                rows += len(ids)
                complete += int((~np.isnan(values).any(axis=1)).sum())
                done += len(ids) if points is not None else 0
                if points is None:
                    done = min(total, int(block.ids[-1]) + 1) if block.ids.size else done
                progress.set_progress(100.0 * done / max(total, 1))
        os.replace(tmp, final)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    seconds = time.perf_counter() - start
    progress.info(
        f"Sampled {len(names)} variable(s) at {rows} {'point' if points is not None else 'cell'}(s) "
        f"in {seconds:.1f} s; {complete} with every value, {rows - complete} with some nodata."
    )
    return SampleResult(final, rows, complete, names, seconds)


def patch_bands(raster_path, bands: Sequence[int] | None = None) -> list[int]:
    """Band numbers to cut: ``bands`` (checked), else those described red, green, blue, nir."""
    path = os.fspath(raster_path)
    descriptions = raster_band_names(path)
    if bands:
        bad = [b for b in bands if not 1 <= int(b) <= len(descriptions)]
        if bad:
            raise InputDataError(f"The raster has {len(descriptions)} band(s); there is no band {bad[0]}.")
        return [int(b) for b in bands]
    found = []
    for name, ref in find_bands(PATCH_BANDS, [path]).items():
        if ref is None:
            described = ", ".join(d or "(none)" for d in descriptions)
            raise InputDataError(
                f"No band of the raster is described '{name}' (descriptions: {described}). "
                f"Choose the BANDS to cut (red, green, blue, nir in that order for GeoPlant models)."
            )
        found.append(ref.band)
    return found


def _write_patch(path, data, transform, crs, as_int16: bool) -> str:
    """A patch of any band count (the GLC25 writer takes only 4 bands)."""
    import rasterio

    final = os.path.abspath(path)
    output_folder(final)
    tmp = temporary_sibling(final)
    if as_int16:
        array, dtype, nodata = np.where(np.isnan(data), -1, data).astype(np.int16), "int16", -1
    else:
        array, dtype, nodata = data.astype(np.float32), "float32", float("nan")
    profile = dict(
        driver="GTiff", width=array.shape[2], height=array.shape[1], count=array.shape[0], dtype=dtype,
        crs=parse_crs(crs), transform=transform, nodata=nodata, compress="lzw", interleave="pixel",
    )  # fmt: skip
    try:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(array)
        os.replace(tmp, final)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return final


@dataclass
class PatchResult:
    folder: str
    paths: list[str]
    skipped: int
    seconds: float


def extract_patches(
    output_folder,
    raster_path,
    bands: Sequence[int] | None = None,
    size: int = 64,
    pixel_size: float = 10.0,
    points: Points | None = None,
    grid: GridArea | None = None,
    crs="EPSG:3035",
    progress=None,
) -> PatchResult:
    """``size`` x ``size`` patches of ``pixel_size`` m pixels in ``crs`` (the grid's CRS in grid
    mode), centred on each point, written as ``output_folder/CD/AB/<id>.tiff`` (GLC25 layout:
    int16 with nodata -1 for integer rasters, float32 with NaN otherwise). Patches without a
    single valid pixel (outside the raster or all nodata) are skipped and counted."""
    import rasterio

    progress = as_progress(progress)
    start = time.perf_counter()
    path = os.fspath(raster_path)
    band_list = patch_bands(path, bands)
    with rasterio.open(path) as ds:
        kinds = {np.dtype(ds.dtypes[b - 1]).kind for b in band_list}
        ints = all(k in "iu" for k in kinds)
    if points is None and grid is None:
        raise InputDataError("Give POINTS, or an EXTENT or an AREA to cut patches under.")
    patch_crs = grid.grid.crs if points is None else crs
    size = int(size)
    if size < 1 or size > 4096:
        raise InputDataError(f"SIZE must be between 1 and 4096 pixels, not {size}.")
    folder = os.path.abspath(os.fspath(output_folder))
    refs = [BandRef(path, b) for b in band_list]
    use_layout = len(refs) == len(PATCH_BANDS) and ints
    written: list[str] = []
    skipped = 0
    half = size * pixel_size / 2.0
    with PatchSampler(refs, size, pixel_size, patch_crs) as sampler:
        if points is not None:
            xs, ys = points.xs, points.ys
            if parse_crs(points.crs) != sampler.crs:
                from rasterio.warp import transform

                xs, ys = (np.asarray(v) for v in transform(points.crs, sampler.crs, xs, ys))
            total = points.ids.size
            blocks = (
                Points(
                    points.ids[s : s + PATCH_BLOCK],
                    xs[s : s + PATCH_BLOCK],
                    ys[s : s + PATCH_BLOCK],
                    patch_crs,
                )
                for s in range(0, total, PATCH_BLOCK)
            )
        else:
            total = grid.grid.n_cells
            blocks = grid.blocks(PATCH_BLOCK)
        done = 0
        try:
            for block in blocks:
                progress.check_cancelled()
                patches = sampler.sample(block.xs, block.ys)
                if ints:
                    info = np.iinfo(np.int16)
                    with np.errstate(invalid="ignore"):
                        out_of_range = (patches < info.min) | (patches > info.max)
                    if out_of_range.any():
                        raise OutputError(
                            f"Raster values {np.nanmin(patches):g}..{np.nanmax(patches):g} do not fit "
                            f"GeoPlant's int16 patches; rescale the raster first."
                        )
                for k, sid in enumerate(block.ids.tolist()):
                    data = patches[k]
                    if np.isnan(data).all():
                        skipped += 1
                        continue
                    target = os.path.join(folder, glc25_patch_relpath(int(sid)))
                    x, y = block.xs[k], block.ys[k]
                    transform_ = rasterio.transform.Affine(
                        pixel_size, 0.0, x - half, 0.0, -pixel_size, y + half
                    )
                    if use_layout:
                        filled = np.where(np.isnan(data), -1, data).astype(np.int16)
                        written.append(write_glc25_patch(target, filled, transform_, patch_crs, nodata=-1))
                    else:
                        written.append(_write_patch(target, data, transform_, patch_crs, ints))
                done += block.ids.size
                if points is None and block.ids.size:
                    done = int(block.ids[-1]) + 1
                progress.set_progress(100.0 * min(done, total) / max(total, 1))
        except BaseException:
            # a cancelled or failed run leaves none of its patches behind
            remove_written(written, folder)
            raise
    seconds = time.perf_counter() - start
    progress.info(
        f"Wrote {len(written)} patch(es) of {len(refs)} band(s), {size} x {size} px at {pixel_size:g} m "
        f"({patch_crs}) to {folder} in {seconds:.1f} s"
        + (
            f"; skipped {skipped} without any valid pixel (outside the raster or all nodata)."
            if skipped
            else "."
        )
    )
    if not written and skipped:
        progress.warning("No patch has a valid pixel: check the points, the extent and the raster.")
    return PatchResult(folder, written, skipped, seconds)


__all__ = [
    "GridArea",
    "PatchResult",
    "Points",
    "SampleResult",
    "extract_patches",
    "patch_bands",
    "raster_variables",
    "sample_environment",
]
