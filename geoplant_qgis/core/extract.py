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
import re
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from .errors import InputDataError, OutputError
from .estimate import patch_costs, sample_costs
from .files import Publication, dataset_file
from .geoplant.layout import PATCH_BANDS, PatchTree, _write_tiff, glc25_patch_relpath, write_glc25_patch
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
    grid: Grid = field(init=False)

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
        for window in g.tiles(cells_per_block, max_rows=g.height, whole_rows=True):
            xs, ys = g.window_centres(window)
            rows = np.arange(window.row_off, window.row_off + window.height, dtype=np.int64)
            ids = (rows[:, None] * g.width + np.arange(g.width, dtype=np.int64)[None, :]).ravel()
            if self.area:
                keep = area_mask(g, self.area, window=window).ravel()
                ids, xs, ys = ids[keep], xs[keep], ys[keep]
            yield Points(ids, xs, ys, g.crs)


def _check_grid_limit(grid: GridArea, max_cells, costs, progress, patches: bool = False) -> None:
    """Refuse a grid beyond the limit (:func:`core.limits.check_grid`) before any block is
    computed or any output opened; else log the estimate. ``costs(cells)``: (bytes, seconds).
    The grid's bounding box counts (an AREA's outside cells are walked through too)."""
    from .estimate import format_duration
    from .geotiff import format_bytes
    from .limits import check_grid

    g = grid.grid
    cells = check_grid(
        g.width,
        g.height,
        g.cell_size,
        max_cells,
        bytes_needed=lambda n: costs(n)[0],
        seconds=lambda n: costs(n)[1],
        patches=patches,
    )
    size, seconds = costs(cells)
    progress.info(
        f"Grid: {g.width:,} x {g.height:,} = {cells:,} cells of {g.cell_size:g} m in {g.crs}; "
        f"estimated up to {format_bytes(size)} on disk and about {format_duration(seconds)}."
    )


def _check_patch_count(count: int, costs: tuple[int, float], max_cells) -> None:
    """Refuse more POINTS than the patch limit (each is a file), with the numbers."""
    from .estimate import format_duration
    from .geotiff import format_bytes
    from .limits import resolve_max_cells

    limit = resolve_max_cells(max_cells, patches=True)
    if count > limit:
        size, seconds = costs
        raise InputDataError(
            f"{count:,} points would be {count:,} patch files, more than {limit:,.0f} (MAX_CELLS, "
            f"or $GEOPLANT_MAX_PATCHES): up to {format_bytes(size)} on disk and about "
            f"{format_duration(seconds)}. Cut patches for fewer points at a time (a selection, or "
            "the layer split into parts run in batch), a smaller SIZE, or raise MAX_CELLS."
        )


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
    input_files=None,
    max_cells=None,
) -> SampleResult:
    """Values of the pixel containing each point (or cell centre) for every variable, as a
    GeoPlant environmental-values CSV. ``variables``: names to resolve by the model-card
    rules (default: every band of ``raster_paths`` plus the MAPPING's variables).

    ``input_files``: {label: path} of other files the run reads (the POINTS / AREA
    layers' files). An OUTPUT that is one of them, a raster, or the MAPPING file is refused
    before anything starts; the CSV is written under a temporary name and published at the
    end (a failed or cancelled run leaves a previous file as it was).

    ``max_cells``: a grid of more cells is refused before anything is written, with the
    numbers (:func:`core.limits.check_grid`; default $GEOPLANT_MAX_CELLS, else 50,000,000);
    POINTS are not limited (they are already in memory)."""
    from .files import Publication, check_outputs
    from .predict.request import run_input_files

    progress = as_progress(progress)
    start = time.perf_counter()
    if not isinstance(output_csv, str | os.PathLike) or not os.fspath(output_csv):
        raise OutputError(f"The output must be the path of a .csv file, not {output_csv!r:.80}.")
    if raster_paths is None:
        raster_paths = ()
    elif isinstance(raster_paths, str | os.PathLike):
        raster_paths = [raster_paths]
    check_outputs({"OUTPUT": output_csv}, run_input_files(None, raster_paths, mapping, input_files))
    if not os.fspath(output_csv).lower().endswith((".csv", ".txt")):
        raise OutputError(
            f"The output {os.path.basename(os.fspath(output_csv))} would be a CSV table under another "
            "file type's name: give a name ending in .csv."
        )
    if variables:
        refs_by_name = resolve_variables(list(variables), raster_paths, mapping)
    else:
        refs_by_name = raster_variables(raster_paths, mapping)
    names = list(refs_by_name)
    if points is None and grid is None:
        raise InputDataError("Give POINTS, or an EXTENT or an AREA to sample a grid under.")
    if points is None:
        assert grid is not None
        _check_grid_limit(grid, max_cells, lambda cells: sample_costs(cells, len(names)), progress)
    final = os.path.abspath(os.fspath(output_csv))
    rows = complete = some = 0
    with Publication(progress) as publication:
        tmp = publication.temporary(final)
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
            assert grid is not None
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
                some += int((~np.isnan(values).all(axis=1)).sum()) if values.shape[1] else 0
                done += len(ids) if points is not None else 0
                if points is None:
                    done = min(total, int(block.ids[-1]) + 1) if block.ids.size else done
                progress.set_progress(100.0 * done / max(total, 1))
        progress.check_cancelled()
        publication.publish()
    seconds = time.perf_counter() - start
    progress.info(
        f"Sampled {len(names)} variable(s) at {rows} {'point' if points is not None else 'cell'}(s) "
        f"in {seconds:.1f} s; {complete} with every value, {rows - complete} with some nodata."
    )
    if rows and not some:
        progress.warning(
            f"None of the {rows} {'point' if points is not None else 'cell'}(s) has a value in any raster: "
            "the rasters do not cover them (check the rasters' extent and CRS, and the points' or area's)."
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


def _write_patch(path, data, transform, crs, as_int16: bool, tree: PatchTree) -> str:
    """A patch of any band count (the GLC25 writer takes only 4 bands), written under the
    temporary name ``tree`` gives it."""
    final = os.path.abspath(path)
    if as_int16:
        array, dtype, nodata = np.where(np.isnan(data), -1, data).astype(np.int16), "int16", -1
    else:
        array, dtype, nodata = data.astype(np.float32), "float32", float("nan")  # type: ignore[assignment]
    profile = dict(
        driver="GTiff", width=array.shape[2], height=array.shape[1], count=array.shape[0], dtype=dtype,
        crs=parse_crs(crs), transform=transform, nodata=nodata, compress="lzw", interleave="pixel",
    )  # fmt: skip
    _write_tiff(tree.temporary(final), final, array, profile, descriptions=None)
    return final


def _refuse_raster_in_tree(folder, raster, requested) -> None:
    """Refuse, before anything starts, an output folder where a requested patch would take
    the name of the raster the patches are cut from (``OUTPUT_FOLDER/CD/AB/<id>.tiff``)."""
    raster_file = dataset_file(raster)
    if raster_file is None or not os.path.exists(raster_file):
        return
    real = os.path.realpath(raster_file)
    rel = os.path.relpath(real, os.path.realpath(folder)).replace(os.sep, "/")
    match = re.fullmatch(r"(?:\d{1,2}/){1,2}(\d+)\.tiff", rel, re.IGNORECASE)
    if match is None or rel.startswith(".."):
        return
    sid = int(match.group(1))
    if glc25_patch_relpath(sid).lower() == rel.lower() and requested(sid):
        raise OutputError(
            f"OUTPUT_FOLDER ({folder}) would get a patch {rel} that is the RASTER the patches are cut "
            f"from ({raster_file}): the run would overwrite it. Choose another OUTPUT_FOLDER."
        )


def _check_patch_arguments(size, pixel_size, bands):
    """:func:`extract_patches`' numbers checked in one place: (size, pixel_size, bands)."""
    from . import checks

    size = checks.number(size, "SIZE", minimum=1, maximum=4096, integer=True, what="pixels, e.g. 64")
    pixel_size = checks.cell_size(pixel_size, "PIXEL_SIZE")
    if bands is not None:
        if isinstance(bands, int | str):
            bands = [bands]
        bands = [
            checks.number(b, "BANDS", minimum=1, maximum=65_535, integer=True, what="band numbers")
            for b in bands
        ]
    return size, pixel_size, bands


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
    max_cells=None,
) -> PatchResult:
    """``size`` x ``size`` patches of ``pixel_size`` m pixels in ``crs`` (the grid's CRS in grid
    mode), centred on each point, written as ``output_folder/CD/AB/<id>.tiff`` (GLC25 layout:
    int16 with nodata -1 for integer rasters, float32 with NaN otherwise). Patches without a
    single valid pixel (outside the raster or all nodata) are skipped and counted.

    ``max_cells``: a grid of more cells (a patch file each) is refused before anything is
    written, with the numbers (:func:`core.limits.check_grid`; default $GEOPLANT_MAX_PATCHES,
    else 1,000,000); POINTS are not limited (they are already in memory)."""
    import rasterio

    progress = as_progress(progress)
    start = time.perf_counter()
    size, pixel_size, bands = _check_patch_arguments(size, pixel_size, bands)
    path = os.fspath(raster_path)
    band_list = patch_bands(path, bands)
    with rasterio.open(path) as ds:
        kinds = {np.dtype(ds.dtypes[b - 1]).kind for b in band_list}
        ints = all(k in "iu" for k in kinds)
        raster_files = [path, *ds.files]  # a VRT's sources are inputs too
    if points is None and grid is None:
        raise InputDataError("Give POINTS, or an EXTENT or an AREA to cut patches under.")
    patch_crs = grid.grid.crs if grid is not None and points is None else crs
    if points is None:
        assert grid is not None
        value_bytes = 2 if ints else 4
        _check_grid_limit(
            grid, max_cells, lambda n: patch_costs(n, size, len(band_list), value_bytes), progress, True
        )
    else:
        _check_patch_count(points.ids.size, patch_costs(points.ids.size, size, len(band_list)), max_cells)
    folder = os.path.abspath(os.fspath(output_folder))
    refs = [BandRef(path, b) for b in band_list]
    use_layout = len(refs) == len(PATCH_BANDS) and ints
    skipped = 0
    half = size * pixel_size / 2.0
    if points is not None:
        ids = points.ids

        def requested(sid):
            return bool(np.any(ids == sid))
    else:
        assert grid is not None
        n_cells = grid.grid.n_cells

        def requested(sid):
            return 0 <= sid < n_cells

    _refuse_raster_in_tree(folder, path, requested)
    # every patch goes to a temporary name in its CD/AB folder; all are renamed into place
    # together at the end; a failure or a cancel removes them and the folders this run made
    with Publication(progress) as publication, PatchSampler(refs, size, pixel_size, patch_crs) as sampler:
        tree = PatchTree(folder, publication, inputs={"RASTER": raster_files})
        if points is not None:
            xs, ys = points.xs, points.ys
            if parse_crs(points.crs) != sampler.crs:
                from rasterio.warp import transform

                xs, ys = (np.asarray(v) for v in transform(points.crs, sampler.crs, xs, ys))
            total = points.ids.size
            blocks: Iterator[Points] = (
                Points(
                    points.ids[s : s + PATCH_BLOCK],
                    xs[s : s + PATCH_BLOCK],
                    ys[s : s + PATCH_BLOCK],
                    patch_crs,
                )
                for s in range(0, total, PATCH_BLOCK)
            )
        else:
            assert grid is not None
            total = grid.grid.n_cells
            blocks = grid.blocks(PATCH_BLOCK)
        done = 0
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
                transform_ = rasterio.transform.Affine(pixel_size, 0.0, x - half, 0.0, -pixel_size, y + half)
                if use_layout:
                    filled = np.where(np.isnan(data), -1, data).astype(np.int16)
                    write_glc25_patch(target, filled, transform_, patch_crs, nodata=-1, into=tree)
                else:
                    _write_patch(target, data, transform_, patch_crs, ints, tree)
            done += block.ids.size
            if points is None and block.ids.size:
                done = int(block.ids[-1]) + 1
            progress.set_progress(100.0 * min(done, total) / max(total, 1))
        progress.check_cancelled()
        publication.publish()
        written = tree.paths
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
