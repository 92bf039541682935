"""GeoPlant folder layout: where a survey's patch lives, and the GLC25 patch writer.

Path rule (GLC24 JPEGs and GLC25 TIFFs alike): ``CD/AB/<id>.<ext>`` where CD are the
last two digits of the survey id and AB the two before them, i.e. Python's
``str(id)[-2:]`` and ``str(id)[-4:-2]`` as the GeoPlant tooling builds them. Ids with
fewer than three digits have no AB folder (``5`` -> ``5/5.tiff``), ids with three digits
a one-digit AB (``212`` -> ``12/2/212.tiff``).
"""

from __future__ import annotations

import os

import numpy as np

from ..errors import InputDataError, OutputError
from ..files import Publication, dataset_file, remove_stale, sidecars_of, temporary_sibling

#: band order and descriptions of every 4-band GeoPlant patch
PATCH_BANDS = ("red", "green", "blue", "nir")
#: the PROJ parameters of LAEA Europe (EPSG:3035); GLC25 patches carry them without the code
_LAEA_EUROPE = {"proj": "laea", "lat_0": 52.0, "lon_0": 10.0, "x_0": 4321000.0, "y_0": 3210000.0}


def _survey_digits(survey_id) -> str:
    """The decimal digits of a survey id (int, integral float such as 5000108.0, or digit string)."""
    value = None
    if isinstance(survey_id, bool):
        value = None
    elif isinstance(survey_id, int | np.integer):
        value = int(survey_id)
    elif isinstance(survey_id, float | np.floating) and float(survey_id).is_integer():
        value = int(survey_id)
    elif isinstance(survey_id, str) and survey_id.strip().isdigit():
        value = int(survey_id.strip())
    if value is None or value < 0:
        raise InputDataError(f"Survey id {survey_id!r} is not a whole non-negative number.")
    return str(value)


def _relpath(survey_id, ext: str) -> str:
    digits = _survey_digits(survey_id)
    parts = [p for p in (digits[-2:], digits[-4:-2]) if p]
    return "/".join([*parts, f"{digits}.{ext}"])


def glc25_patch_relpath(survey_id: int) -> str:
    """``"CD/AB/<id>.tiff"`` for a GLC25 Sentinel-2 patch (CD = last two digits)."""
    return _relpath(survey_id, "tiff")


def glc24_patch_relpath(survey_id: int) -> str:
    """``"CD/AB/<id>.jpeg"`` for a GLC24 RGB or NIR JPEG (CD = last two digits)."""
    return _relpath(survey_id, "jpeg")


def safe_join(root, relpath) -> str:
    """``root/relpath``, refusing anything that resolves outside ``root``.

    Absolute paths, ``..`` components and symbolic links leading out of ``root`` raise
    :class:`InputDataError`.
    """
    root_real = os.path.realpath(os.fspath(root))
    rel = os.fspath(relpath)
    if os.path.isabs(rel) or (os.path.splitdrive(rel)[0]):
        raise InputDataError(f"Path {rel!r} must be relative to the dataset folder {root_real}.")
    joined = os.path.realpath(os.path.join(root_real, rel))
    if os.path.commonpath([root_real, joined]) != root_real:
        raise InputDataError(f"Path {rel!r} points outside the dataset folder {root_real}; refused.")
    return joined


def is_laea_europe(crs) -> bool:
    """True when ``crs`` is EPSG:3035 or carries its LAEA Europe parameters without the code."""
    from rasterio.crs import CRS

    if crs is None:
        return False
    crs = CRS.from_user_input(crs)
    if crs.to_epsg() == 3035:
        return True
    params = crs.to_dict()
    for key, expected in _LAEA_EUROPE.items():
        value = params.get(key)
        if isinstance(expected, float):
            try:
                if abs(float(value) - expected) > 1e-6:
                    return False
            except (TypeError, ValueError):
                return False
        elif value != expected:
            return False
    ellps = params.get("ellps")
    datum_ok = ellps == "GRS80" or params.get("datum") == "ETRS89" or "towgs84" in params
    return bool(datum_ok) and params.get("units", "m") == "m"


def explicit_crs(crs):
    """A rasterio CRS to write: ``EPSG:3035`` itself when ``crs`` is LAEA Europe."""
    from rasterio.crs import CRS

    if crs is None:
        raise OutputError("A GeoPlant patch needs a coordinate reference system.")
    if is_laea_europe(crs):
        return CRS.from_epsg(3035)
    return CRS.from_user_input(crs)


def write_glc25_patch(path, data, transform, crs, nodata=-1, into=None) -> str:
    """Write a GLC25-style patch: 4-band int16 GeoTIFF (red, green, blue, nir).

    ``data`` is ``[4, H, W]`` and must fit int16. The CRS is written explicitly (the
    ``EPSG:3035`` code when it is LAEA Europe). The file is written under a temporary
    name in the destination folder; returns the final path. ``into``: the run's
    :class:`PatchTree` (or a :class:`~core.files.Publication`), which names the temporary
    and publishes it with the run's other outputs; without it the patch is renamed into
    place at once.
    """
    from affine import Affine

    array = np.asarray(data)
    if array.ndim != 3 or array.shape[0] != len(PATCH_BANDS):
        raise OutputError(f"A GeoPlant patch has 4 bands (red, green, blue, nir); got shape {array.shape}.")
    if array.dtype != np.int16:
        info = np.iinfo(np.int16)
        if array.size and (not np.all(np.isfinite(array)) if array.dtype.kind == "f" else False):
            raise OutputError("A GeoPlant patch cannot hold NaN or infinite values; use the nodata value.")
        if array.size and (array.min() < info.min or array.max() > info.max):
            raise OutputError(
                f"Patch values {array.min()}..{array.max()} do not fit the int16 GeoPlant patch format."
            )
        if array.dtype.kind == "f" and array.size and not np.all(np.equal(np.mod(array, 1), 0)):
            raise OutputError("A GeoPlant patch holds whole numbers (int16); got fractional values.")
        array = array.astype(np.int16)
    if not isinstance(transform, Affine):
        transform = Affine(*transform)
    out_crs = explicit_crs(crs)
    final = os.path.abspath(os.fspath(path))
    profile = {
        "driver": "GTiff",
        "width": array.shape[2],
        "height": array.shape[1],
        "count": 4,
        "dtype": "int16",
        "crs": out_crs,
        "transform": transform,
        "nodata": nodata,
        "compress": "lzw",
        "interleave": "pixel",
    }
    if into is not None:
        _write_tiff(into.temporary(final), final, array, profile)
        return final
    with Publication() as publication:
        _write_tiff(publication.temporary(final), final, array, profile)
        publication.publish()
    return final


def _write_tiff(tmp: str, final: str, array, profile, descriptions=PATCH_BANDS) -> None:
    """``array`` as the GeoTIFF ``tmp`` (the temporary of the patch ``final``)."""
    import rasterio

    try:
        with rasterio.open(tmp, "w", **profile) as dst:
            dst.write(array)
            for band, name in enumerate(descriptions or (), start=1):
                dst.set_band_description(band, name)
    except OutputError:
        raise
    except Exception as error:
        raise OutputError(f"Cannot write the patch {final}: {error}") from None


def _key(path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


class PatchTree:
    """One run's patches under ``root`` (``CD/AB/<id>.tiff``), written under temporary names
    in their own CD/AB folders and published together with the run's other outputs.

    ``publication``: the run's :class:`~core.files.Publication` (it creates the folders,
    removes the stale temporaries of killed runs in each folder it uses, and at the end
    renames every patch into place, or removes every temporary and the folders it made).
    ``inputs`` ({label: path, dataset name or list of them}): files the run reads; a patch
    name that is one of them or one of their sidecars (links, ``..`` and case resolved: the
    same file) is refused. ``input_folders`` ({label: folder}): folders read; a patch inside one is refused.
    """

    def __init__(self, root, publication, inputs=None, input_folders=None, label="OUTPUT_FOLDER"):
        self.root = os.path.abspath(os.fspath(root))
        self.publication = publication
        self.label = label
        self._tmp: dict[str, str] = {}
        self._files: dict[tuple[int, int], tuple[str, str]] = {}
        self._folders: dict[tuple[int, int], tuple[str, str]] = {}
        self._checked: set[str] = set()
        # temporaries that killed runs left anywhere in the tree (CD/AB folders this run
        # may not write into): removed once, up front
        remove_stale(self.root, getattr(publication, "progress", None), depth=2)
        for name, sources in (inputs or {}).items():
            for source in [sources] if isinstance(sources, str | os.PathLike) else sources or ():
                path = dataset_file(source) if source else None
                if path is None:
                    continue
                for candidate in (path, *sidecars_of(path)):
                    key = _key(candidate)
                    if key is not None:
                        self._files.setdefault(key, (name, path))
        for name, folder in (input_folders or {}).items():
            key = _key(folder)
            if key is not None:
                self._folders.setdefault(key, (name, os.path.realpath(folder)))

    def check_folder(self, folder) -> None:
        """Refuse ``folder`` (a patch folder of this run) inside one of ``input_folders``."""
        folder = os.path.abspath(os.fspath(folder))
        if folder in self._checked or not self._folders:
            return
        probe = os.path.realpath(folder)
        while True:
            key = _key(probe)
            found = self._folders.get(key) if key is not None else None
            if found is not None:
                where = f"{self.label} ({folder})"
                if folder != self.root:
                    where = f"{self.label}'s folder {folder}"
                raise OutputError(
                    f"{where} is inside {found[0]} ({found[1]}): the run would write into its own "
                    f"input. Choose another {self.label}, outside it."
                )
            parent = os.path.dirname(probe)
            if parent == probe:
                break
            probe = parent
        self._checked.add(folder)

    def temporary(self, final) -> str:
        """The temporary name to write the patch ``final`` under (its folder made if needed)."""
        final = os.path.abspath(os.fspath(final))
        tmp = self._tmp.get(final)
        if tmp is not None:
            return tmp  # the same id twice: the last patch wins, one file
        self.check_folder(os.path.dirname(final))
        try:
            st = os.stat(final)
        except OSError:
            st = None
        if st is not None:
            found = self._files.get((st.st_dev, st.st_ino))
            if found is not None:
                raise OutputError(
                    f"{self.label} patch {final} is the same file as {found[0]} ({found[1]}): the run "
                    f"would overwrite it. Choose another {self.label}."
                )
            if os.path.isdir(final):
                raise OutputError(f"{final} is a folder where a patch goes: choose another {self.label}.")
        self.publication.folder(final)
        tmp = temporary_sibling(final)
        self.publication.add(tmp, final)
        self._tmp[final] = tmp
        return tmp

    @property
    def paths(self) -> list[str]:
        """The final names of the patches written so far."""
        return list(self._tmp)

    @property
    def temporaries(self) -> dict[str, str]:
        """{final name: temporary name} of the patches written so far."""
        return dict(self._tmp)
