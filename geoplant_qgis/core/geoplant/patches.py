"""Sentinel-2 patches of GeoPlant surveys: GLC24 JPEG pairs and GLC25 GeoTIFFs.

* GLC24: ``.../*_patches_rgb/CD/AB/<id>.jpeg`` (3 bands) and ``.../*_patches_nir/CD/AB/
  <id>.jpeg`` (1 band), 128 x 128 px at 10 m centred on the survey, no georeferencing.
  :func:`read_glc24_patch` places them in EPSG:3035 with the patch centre at the survey
  point (lon/lat WGS84 projected with ``rasterio.warp.transform``).
* GLC25: ``SatelitePatches/PA-{train,test}/CD/AB/<id>.tiff``, 4-band int16 (red, green,
  blue, nir), nodata -1, 64 x 64 px at 10 m, LAEA Europe parameters without the EPSG code.

All patches come back as :class:`GeoPatch` (int16 ``[4, H, W]``, red, green, blue, nir).
"""

from __future__ import annotations

import fnmatch
import os
import re
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import InputDataError, OutputError
from ..files import Publication, check_outputs
from ..progress import ScaledProgress, as_progress
from .layout import (
    PATCH_BANDS,
    PatchTree,
    glc24_patch_relpath,
    glc25_patch_relpath,
    safe_join,
    write_glc25_patch,
)

GLC24 = "glc24"
GLC25 = "glc25"
#: GLC24 patches: pixel size in metres and the CRS they are placed in
GLC24_PIXEL_SIZE = 10.0
GLC24_CRS = "EPSG:3035"
_MAX_DEPTH = 4
_CD = re.compile(r"^\d{1,2}$")


@dataclass
class GeoPatch:
    """A georeferenced 4-band patch: ``data`` int16 [4, H, W] in red, green, blue, nir order."""

    data: np.ndarray
    transform: Any  # affine.Affine
    crs: object  # rasterio.crs.CRS
    nodata: float | None = None


def _walk_dirs(folder: str, depth: int = _MAX_DEPTH) -> Iterator[str]:
    """Sub-folders of ``folder`` down to ``depth`` levels, breadth first, without following links."""
    level = [folder]
    for _ in range(depth):
        nxt = []
        for parent in level:
            try:
                with os.scandir(parent) as scan:
                    entries = sorted(scan, key=lambda e: e.name)
            except OSError:
                continue
            for entry in entries:
                if entry.is_dir(follow_symlinks=False) and not _CD.match(entry.name):
                    yield entry.path
                    nxt.append(entry.path)
        level = nxt


def _is_rgb(name):
    return fnmatch.fnmatch(name.lower(), "*_patches_rgb")


def _is_nir(name):
    return fnmatch.fnmatch(name.lower(), "*_patches_nir")


def _has_cd_folders(folder: str) -> bool:
    try:
        with os.scandir(folder) as scan:
            return any(e.is_dir() and _CD.match(e.name) for e in scan)
    except OSError:
        return False


class PatchDataset:
    """A GeoPlant patch folder (GLC24 or GLC25 layout), with every path kept inside it."""

    def __init__(self, folder):
        folder = os.fspath(folder)
        if not os.path.isdir(folder):
            raise InputDataError(f"Patch folder not found: {folder}")
        self.folder = os.path.realpath(folder)
        subfolders = list(_walk_dirs(self.folder))  # walked once, for the layout and the roots
        self.layout = detect_layout(self.folder, subfolders)
        self.rgb_roots: list[str] = []
        self.nir_roots: list[str] = []
        self.tiff_roots: list[str] = []
        name = os.path.basename(self.folder)
        if self.layout == GLC24:
            dirs = [self.folder, *subfolders]
            self.rgb_roots = [d for d in dirs if _is_rgb(os.path.basename(d))]
            self.nir_roots = [d for d in dirs if _is_nir(os.path.basename(d))]
            if not self.rgb_roots or not self.nir_roots:
                missing = "*_patches_nir" if self.rgb_roots else "*_patches_rgb"
                raise InputDataError(f"{self.folder} has GLC24 patches but no {missing} folder.")
        else:
            if _has_cd_folders(self.folder) and name.lower() != "satelitepatches":
                self.tiff_roots = [self.folder]
            else:
                self.tiff_roots = [d for d in subfolders if _has_cd_folders(d)]
            if not self.tiff_roots:
                raise InputDataError(f"{self.folder} has no CD/AB/<id>.tiff patch folders.")

    def resolve(self, path) -> str:
        """``path`` (relative to the dataset folder, or absolute) if it lies inside the folder."""
        path = os.fspath(path)
        if os.path.isabs(path):
            real = os.path.realpath(path)
            if os.path.commonpath([self.folder, real]) != self.folder:
                raise InputDataError(
                    f"Path {path!r} points outside the dataset folder {self.folder}; refused."
                )
            return real
        return safe_join(self.folder, path)

    def find(self, survey_id):
        """The patch file(s) of a survey: a ``.tiff`` path (GLC25), an ``(rgb, nir)`` pair
        (GLC24), or None when the dataset has no patch for it."""
        if self.layout == GLC25:
            rel = glc25_patch_relpath(survey_id)
            for root in self.tiff_roots:
                path = safe_join(root, rel)
                if os.path.isfile(path):
                    return path
            return None
        rel = glc24_patch_relpath(survey_id)
        for rgb_root in self.rgb_roots:
            rgb = safe_join(rgb_root, rel)
            if not os.path.isfile(rgb):
                continue
            for nir_root in self.nir_roots:
                nir = safe_join(nir_root, rel)
                if os.path.isfile(nir):
                    return rgb, nir
        return None

    def survey_ids(self) -> Iterator[int]:
        """Ids of the surveys with a patch (GLC24: with both JPEGs), from the file names."""
        roots = self.tiff_roots if self.layout == GLC25 else self.rgb_roots
        ext = ".tiff" if self.layout == GLC25 else ".jpeg"
        seen = set()
        for root in roots:
            for cd in sorted(os.listdir(root)):
                cd_path = os.path.join(root, cd)
                if not (_CD.match(cd) and os.path.isdir(cd_path)):
                    continue
                for _dirpath, _dirs, files in os.walk(cd_path):
                    for name in sorted(files):
                        stem, e = os.path.splitext(name)
                        if e.lower() == ext and stem.isdigit() and int(stem) not in seen:
                            if self.layout == GLC24 and self.find(int(stem)) is None:
                                continue
                            seen.add(int(stem))
                            yield int(stem)

    def read(self, survey_id, lon=None, lat=None, found=None) -> GeoPatch:
        """The survey's patch; GLC24 needs the survey position (``lon``, ``lat`` WGS84).
        ``found``: what :meth:`find` gave for it, when the caller already asked."""
        found = self.find(survey_id) if found is None else found
        if found is None:
            raise InputDataError(f"No patch for survey {survey_id} in {self.folder}.")
        if self.layout == GLC25:
            return read_glc25_patch(found)
        if lon is None or lat is None:
            raise InputDataError(f"GLC24 patch of survey {survey_id}: the survey position is needed.")
        return read_glc24_patch(found[0], found[1], lon, lat)


def detect_layout(folder, subfolders=None) -> str:
    """``"glc24"`` (``*_patches_rgb`` / ``*_patches_nir`` folders) or ``"glc25"``
    (``SatelitePatches`` or CD/AB folders of ``.tiff`` files), from folder names only.
    ``subfolders``: ``folder``'s sub-folders when the caller has already walked them."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise InputDataError(f"Patch folder not found: {folder}")
    if subfolders is None:
        subfolders = list(_walk_dirs(folder))
    own = os.path.basename(os.path.realpath(folder))
    names = [own] + [os.path.basename(d) for d in subfolders]
    if any(_is_rgb(n) or _is_nir(n) for n in names):
        return GLC24
    if any(n.lower() in ("satelitepatches", "satellitepatches") for n in names):
        return GLC25
    for d in [folder, *subfolders]:
        if _has_cd_folders(d):
            for dirpath, _dirs, files in os.walk(d):
                if any(f.lower().endswith((".tif", ".tiff")) for f in files):
                    return GLC25
                if dirpath.count(os.sep) - d.count(os.sep) > 2:
                    break
    raise InputDataError(
        f"{folder} does not look like a GeoPlant patch folder: expected *_patches_rgb and *_patches_nir "
        "folders (GLC24) or SatelitePatches/.../CD/AB/<id>.tiff (GLC25)."
    )


def _open_error(path, error) -> InputDataError:
    return InputDataError(f"Cannot read the patch {path}: {error}")


def read_glc25_patch(path) -> GeoPatch:
    """A GLC25 patch GeoTIFF as int16 [4, H, W] with its transform, CRS and nodata (-1)."""
    import rasterio
    from rasterio.errors import RasterioError, RasterioIOError

    try:
        with rasterio.open(path) as ds:
            if ds.count != 4:
                raise InputDataError(
                    f"{path} has {ds.count} band(s); a GLC25 patch has 4 (red, green, blue, nir)."
                )
            if ds.crs is None or ds.transform.is_identity:
                raise InputDataError(f"{path} is not georeferenced; a GLC25 patch carries its CRS.")
            data = ds.read()
            transform, crs = ds.transform, ds.crs
            nodata = ds.nodata if ds.nodata is not None else -1
    except (RasterioError, RasterioIOError) as error:
        raise _open_error(path, error) from None
    if data.dtype != np.int16:
        info = np.iinfo(np.int16)
        if data.size and (np.nanmin(data) < info.min or np.nanmax(data) > info.max):
            raise InputDataError(f"{path}: values do not fit the int16 GLC25 patch format.")
        data = data.astype(np.int16)
    return GeoPatch(data, transform, crs, nodata)


def _read_jpeg(path, bands: int) -> np.ndarray:
    import rasterio
    from rasterio.errors import NotGeoreferencedWarning, RasterioError, RasterioIOError

    if not os.path.isfile(path):
        raise InputDataError(f"Patch image not found: {path}")
    try:
        with rasterio.Env(GDAL_ERROR_ON_LIBJPEG_WARNING="TRUE"), warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            with rasterio.open(path) as ds:
                if ds.count != bands:
                    raise InputDataError(f"{path} has {ds.count} band(s); expected {bands}.")
                return ds.read()
    except (RasterioError, RasterioIOError) as error:
        raise InputDataError(
            f"Cannot read the patch image {path} (truncated or not a JPEG?): {error}"
        ) from None


def glc24_transform(lon: float, lat: float, width: int, height: int, pixel_size: float = GLC24_PIXEL_SIZE):
    """Affine transform in EPSG:3035 of a ``width`` x ``height`` patch centred on (lon, lat)."""
    from affine import Affine
    from rasterio.warp import transform as warp_transform

    lon, lat = float(lon), float(lat)
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise InputDataError(f"Survey position ({lon}, {lat}) is not a WGS84 longitude/latitude.")
    xs, ys = warp_transform("EPSG:4326", GLC24_CRS, [lon], [lat])
    x, y = xs[0], ys[0]
    if not (np.isfinite(x) and np.isfinite(y)):
        raise InputDataError(f"Survey position ({lon}, {lat}) cannot be placed in {GLC24_CRS}.")
    west = x - width * pixel_size / 2.0
    north = y + height * pixel_size / 2.0
    return Affine(pixel_size, 0.0, west, 0.0, -pixel_size, north)


def read_glc24_patch(rgb_path, nir_path, lon, lat) -> GeoPatch:
    """A GLC24 JPEG pair as one 4-band patch (red, green, blue, nir) in EPSG:3035, 10 m,
    centred on the survey point (``lon``, ``lat`` in WGS84). Pixel values are the JPEGs'."""
    from rasterio.crs import CRS

    rgb = _read_jpeg(os.fspath(rgb_path), 3)
    nir = _read_jpeg(os.fspath(nir_path), 1)
    if rgb.shape[1:] != nir.shape[1:]:
        raise InputDataError(
            f"The RGB ({rgb.shape[2]}x{rgb.shape[1]}) and NIR ({nir.shape[2]}x{nir.shape[1]}) images of "
            "the patch differ in size."
        )
    data = np.concatenate([rgb, nir]).astype(np.int16)
    transform = glc24_transform(lon, lat, data.shape[2], data.shape[1])
    return GeoPatch(data, transform, CRS.from_string(GLC24_CRS), None)


@dataclass
class ExportResult:
    """What :func:`export_patches` wrote."""

    paths: list  # the GeoTIFFs, at <output>/CD/AB/<id>.tiff
    vrt: str  # <output>/patches.vrt
    survey_ids: list
    missing: int = 0  # surveys of the metadata without a patch in the dataset
    outside: int = 0  # patches left out by the extent / area


def _centres_lonlat(patch: GeoPatch):
    from rasterio.warp import transform as warp_transform

    h, w = patch.data.shape[1:]
    x, y = patch.transform * (w / 2.0, h / 2.0)
    lons, lats = warp_transform(patch.crs, "EPSG:4326", [x], [y])
    return lons[0], lats[0]


def _inside(lon, lat, bounds, predicate) -> bool:
    if bounds is not None:
        lon_min, lat_min, lon_max, lat_max = bounds
        if not (lon_min <= lon <= lon_max and lat_min <= lat <= lat_max):
            return False
    if predicate is not None:
        return bool(np.asarray(predicate(np.array([lon]), np.array([lat])))[0])
    return True


def build_vrt(paths, vrt_path, into=None, sources=None) -> str:
    """A mosaic VRT of same-CRS 4-band patches, written under a temporary name.

    ``into``: the run's :class:`~core.files.Publication`, which publishes the VRT with the
    patches; without it the VRT is renamed into place at once. ``sources``: {final name:
    temporary name} when the patches are still under their temporary names: the VRT is
    built from those and names the final ones.
    """
    final = os.path.abspath(os.fspath(vrt_path))
    if into is None:
        with Publication() as publication:
            build_vrt(paths, final, publication, sources)
            publication.publish()
        return final
    tmp = into.temporary(final)
    _write_vrt(tmp, final, paths, sources)
    return final


def _write_vrt(tmp: str, final: str, paths, sources) -> None:
    from osgeo import gdal

    paths = [os.fspath(p) for p in paths]
    names = {}
    if sources:
        names = {os.path.basename(sources[p]): os.path.basename(p) for p in paths if p in sources}
        paths = [sources.get(p, p) for p in paths]
    used = gdal.GetUseExceptions()
    gdal.UseExceptions()
    try:
        vrt = gdal.BuildVRT(tmp, paths, srcNodata=-1, VRTNodata=-1)
        if vrt is None:
            raise RuntimeError(gdal.GetLastErrorMsg())
        interpretations = (gdal.GCI_RedBand, gdal.GCI_GreenBand, gdal.GCI_BlueBand, gdal.GCI_Undefined)
        for band, name in enumerate(PATCH_BANDS, start=1):
            vrt.GetRasterBand(band).SetDescription(name)
            vrt.GetRasterBand(band).SetColorInterpretation(interpretations[band - 1])
        vrt.FlushCache()
        vrt = None
        if names:
            _rename_sources(tmp, names)
    except Exception as error:
        raise OutputError(f"Cannot build the mosaic {final}: {error}") from None
    finally:
        if not used:
            gdal.DontUseExceptions()


_SOURCE = re.compile(r"(<SourceFilename[^>]*>)([^<]*)(</SourceFilename>)")


def _rename_sources(vrt_path: str, names: dict) -> None:
    """In the VRT ``vrt_path``, each source named by a temporary (``names``: temporary base
    name -> final base name) renamed to its final name."""

    def final(match):
        folder, sep, base = match.group(2).rpartition("/")
        if not sep:
            folder, sep, base = match.group(2).rpartition("\\")
        return match.group(1) + folder + sep + names.get(base, base) + match.group(3)

    with open(vrt_path, encoding="utf-8") as handle:
        text = handle.read()
    with open(vrt_path, "w", encoding="utf-8") as handle:
        handle.write(_SOURCE.sub(final, text))


def export_patches(folder, output_folder, metadata=None, bounds=None, predicate=None, progress=None):
    """Write every patch of a GeoPlant dataset folder as a georeferenced 4-band GeoTIFF.

    Output: ``<output_folder>/CD/AB/<id>.tiff`` (GLC25 layout, EPSG:3035 stated, band
    descriptions red, green, blue, nir) and ``<output_folder>/patches.vrt``. GLC24 JPEG
    pairs need ``metadata`` (a PA/PO CSV) for the survey positions; GLC25 patches use it,
    when given, to choose the surveys. ``bounds`` (lon/lat box) and ``predicate(lons,
    lats) -> bool mask`` select the surveys by position. Every file is written under a
    temporary name and all are renamed into place together at the end: a failed or
    cancelled run removes what it wrote (and the folders it made) and leaves the files of
    an earlier export as they were. Returns an :class:`ExportResult`.
    """
    from .observations import survey_table

    progress = as_progress(progress)
    dataset = PatchDataset(folder)
    progress.info(f"{dataset.folder}: {dataset.layout.upper()} patch layout.")
    output_folder = os.path.abspath(os.fspath(output_folder))
    vrt_path = os.path.join(output_folder, "patches.vrt")
    inputs = {"METADATA": metadata} if metadata is not None else {}
    # outputs that are inputs are refused before anything starts
    PatchTree(output_folder, None, inputs, {"INPUT": dataset.folder}).check_folder(output_folder)
    check_outputs({"OUTPUT_FOLDER's patches.vrt": vrt_path}, inputs)
    if metadata is not None:
        table = survey_table(metadata, progress=ScaledProgress(progress, 0, 20), bounds=bounds)
        attrs = table.attributes
        lons, lats = attrs["lon"].to_numpy(), attrs["lat"].to_numpy()
        # the AREA test once for every survey, not once per survey
        inside = np.asarray(predicate(lons, lats), dtype=bool) if predicate is not None else None
        candidates = list(zip(attrs["surveyId"].tolist(), lons.tolist(), lats.tolist(), strict=True))
    elif dataset.layout == GLC24:
        raise InputDataError(
            "GLC24 patches carry no georeferencing: give the metadata CSV with the survey positions."
        )
    else:
        candidates = [(sid, None, None) for sid in dataset.survey_ids()]
        inside = None
    ids = []
    missing = outside = 0
    with Publication(progress) as publication:
        tree = PatchTree(output_folder, publication, inputs, {"INPUT": dataset.folder})
        for i, (survey_id, lon, lat) in enumerate(candidates):
            progress.check_cancelled()
            if lon is not None and inside is not None and not inside[i]:
                outside += 1
                continue
            found = dataset.find(survey_id)
            if found is None:
                missing += 1
                continue
            patch = dataset.read(survey_id, lon, lat, found=found)
            if lon is None:
                c_lon, c_lat = _centres_lonlat(patch)
                if not _inside(c_lon, c_lat, bounds, predicate):
                    outside += 1
                    continue
            target = os.path.join(output_folder, glc25_patch_relpath(survey_id))
            write_glc25_patch(target, patch.data, patch.transform, patch.crs, nodata=-1, into=tree)
            ids.append(int(survey_id))
            progress.set_progress(20 + 75 * (i + 1) / max(len(candidates), 1))
        if missing:
            progress.info(f"{missing} survey(s) of the metadata have no patch in {dataset.folder}.")
        if outside:
            progress.info(f"{outside} patch(es) outside the extent / area left out.")
        written = tree.paths
        if not written:
            raise InputDataError(
                "No patch to load: none of the surveys has a patch inside the extent / area."
            )
        progress.check_cancelled()
        vrt = build_vrt(written, vrt_path, into=publication, sources=tree.temporaries)
        progress.check_cancelled()
        publication.publish()
    progress.set_progress(100)
    progress.info(f"{len(written)} patch(es) written to {output_folder}.")
    return ExportResult(written, vrt, ids, missing, outside)
