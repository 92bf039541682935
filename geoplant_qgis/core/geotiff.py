"""Block-by-block GeoTIFF output, under a temporary name until the run succeeds.

:class:`GeoTiffWriter` writes a tiled (256 x 256 unless many bands make a tile row too
big), ZSTD-compressed (DEFLATE where GDAL lacks ZSTD; with predictor), band-interleaved
GeoTIFF with the exact CRS,
transform, nodata and band descriptions. Blocks of rows arrive in order; the writer
gathers them into whole rows of tiles so each tile is compressed and written once.
Everything goes to a hidden temporary file in the destination folder; :meth:`finish`
builds the overviews and closes it, :meth:`publish` renames it (``os.replace``) to the
user's name together with its sidecar files (species CSV, QGIS style), :meth:`discard`
deletes it. Used as a context manager, an exception discards.

Also: the disk-space check (:func:`check_disk_space`, with the estimate in the message)
and the GeoTIFF band limit (:func:`check_band_count`). The top-K sidecars and the band
naming are in :mod:`core.predict.outputs` (still importable from here).
"""

from __future__ import annotations

import functools
import math
import os
import shutil
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from .errors import OutputError
from .files import Publication, publish_together, temporary_sibling

MAX_BANDS = 65535
TILE = 256
#: memory for the row of tiles being filled (per writer)
STRIP_BUFFER_BYTES = 96 * 1024 * 1024
OVERVIEW_FACTOR = 4.0 / 3.0  # 1 + 1/4 + 1/16 + ...
# the top-K sidecars and the band naming live with the output specs; importable from here too
from .predict.outputs import (  # noqa: E402
    SPECIES_CSV_SUFFIX,
    probability_band_description,
    species_csv_text,
    species_id_of_band,
    topk_style_qml,
)

__all__ = [
    "SPECIES_CSV_SUFFIX",
    "probability_band_description",
    "species_csv_text",
    "species_id_of_band",
    "topk_style_qml",
]


@functools.lru_cache(maxsize=1)
def compression_options() -> dict:
    """ZSTD level 1 when GDAL's GTiff driver has it, else DEFLATE level 1.

    Measured on the reference benchmark's top-25 raster (1M cells, 25 int32 bands, with
    predictor and overviews): DEFLATE level 6 costs ~2.0 us per cell on one core, ZSTD
    level 1 ~0.3 us for a file ~30% larger; DEFLATE level 1 ~0.5 us, 2.5x larger. The
    writer shares two cores with the model, so the cheap codec is the right trade.
    """
    try:
        from osgeo import gdal

        options = gdal.GetDriverByName("GTiff").GetMetadataItem("DMD_CREATIONOPTIONLIST") or ""
    except Exception:  # no GDAL Python bindings: DEFLATE, which every GDAL has
        options = ""
    if "ZSTD" in options:
        return {"compress": "zstd", "zstd_level": 1}
    return {"compress": "deflate", "zlevel": 1}


def format_bytes(size: float) -> str:
    """1536 -> '1.5 KB' (powers of 1024)."""
    size = float(size)
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if abs(size) < 1024 or unit == "TB":
            return f"{int(size)} bytes" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"  # pragma: no cover


def estimate_bytes(width: int, height: int, count: int, dtype="float32", overviews: bool = True) -> int:
    """Uncompressed size of a raster, overviews included: the disk check's upper bound."""
    size = int(width) * int(height) * int(count) * np.dtype(dtype).itemsize
    return int(math.ceil(size * (OVERVIEW_FACTOR if overviews else 1.0)))


def check_band_count(count: int, what: str = "the output") -> None:
    """Refuse a raster with more bands than GeoTIFF allows (65,535)."""
    if count > MAX_BANDS:
        raise OutputError(
            f"{what} would have {count:,} bands, more than the {MAX_BANDS:,} a GeoTIFF can hold. "
            f"Select fewer species (SPECIES) or a smaller K."
        )
    if count < 1:
        raise OutputError(f"{what} would have no band.")


def _existing_folder(path: str) -> str:
    """The folder an output goes to; OutputError when it is missing or the output name itself
    is a folder (the final rename would fail, after the other outputs were published)."""
    path = os.path.abspath(path)
    folder = os.path.dirname(path)
    if not os.path.isdir(folder):
        raise OutputError(f"The output folder {folder} does not exist.")
    if os.path.isdir(path):
        raise OutputError(f"The output {path} is a folder: give the name of a file to write.")
    return folder


def check_disk_space(requests: Iterable[tuple[str, int]], free_bytes=None) -> None:
    """Refuse up front when the outputs may not fit: ``requests`` are (path, estimated bytes).

    Estimates are summed per file system (by folder device). ``free_bytes``: a function
    folder -> free bytes (tests); default ``shutil.disk_usage``.
    """
    free_of = free_bytes or (lambda folder: shutil.disk_usage(folder).free)
    by_device: dict[object, list[Any]] = {}
    for path, nbytes in requests:
        folder = _existing_folder(path)
        device: object
        try:
            device = os.stat(folder).st_dev
        except OSError:
            device = folder
        entry = by_device.setdefault(device, [folder, 0, []])
        entry[1] += int(nbytes)
        entry[2].append(os.path.basename(path))
    for folder, needed, names in by_device.values():
        free = free_of(folder)
        if needed > free:
            raise OutputError(
                f"Not enough disk space in {folder}: the outputs ({', '.join(names)}) need up to "
                f"{format_bytes(needed)} uncompressed (estimate, overviews included) and only "
                f"{format_bytes(free)} are free. Choose a smaller area, a larger cell size, fewer "
                f"species or outputs, or another folder."
            )


def overview_factors(width: int, height: int, smallest: int = 128) -> list[int]:
    """2, 4, 8... while the overview stays larger than ``smallest`` pixels."""
    factors, f = [], 2
    while math.ceil(max(width, height) / f) > smallest:
        factors.append(f)
        f *= 2
    return factors


def publish_all(writers: Sequence[GeoTiffWriter], publication: Publication | None = None) -> None:
    """Move every finished writer's file and sidecars into place together
    (:func:`.files.publish_together`): a rename that fails leaves none of them, and the
    previous files under those names as they were (a replaced raster's ``.aux.xml`` /
    ``.ovr`` go with it). ``publication``: the run's :class:`.files.Publication` the
    writers were made with; it publishes them with the run's other outputs."""
    if publication is None:
        publication = next((w.publication for w in writers if w.publication is not None), None)
    pairs = []
    try:
        for w in writers:
            pairs += w._stage()
        if publication is not None:
            publication.publish()
        else:
            publish_together(pairs)
    except OSError as error:  # a sidecar that cannot be written
        for w in writers:
            w.discard()
        raise OutputError(f"Cannot write the outputs: {error.strerror or error}.") from None
    except BaseException:
        for w in writers:
            w.discard()
        raise
    for w in writers:  # publish_together removed the replaced rasters' .aux.xml / .ovr
        w._staged = []
        w._state = "published"


class GeoTiffWriter:
    """One output GeoTIFF written block by block under a temporary name.

    ``write(array, row_off, col_off=0)`` takes ``[count, rows, cols]`` (or ``[rows, cols]``
    for one band) in increasing row order: a row of tiles must not straddle two strips of
    ``tile_h`` rows (the engine's tiles are powers of two high, as ``tile_h`` is).
    ``sidecars``: {final path: text} written next to the raster at :meth:`publish` (via
    temporary names too). ``publication``: a :class:`.files.Publication` the raster and its
    sidecars are registered with (their folder made if needed, and removed again with the
    run's other new folders when the run fails); then :func:`publish_all` takes it.
    """

    def __init__(
        self,
        path,
        *,
        width: int,
        height: int,
        count: int,
        dtype,
        crs,
        transform,
        nodata,
        descriptions: Sequence[str] | None = None,
        resampling: str = "nearest",
        overviews: bool = True,
        sidecars: dict[str, str] | None = None,
        buffer_bytes: int = STRIP_BUFFER_BYTES,
        publication: Publication | None = None,
    ):
        self.path = os.path.abspath(os.fspath(path))
        self.width, self.height, self.count = int(width), int(height), int(count)
        self.dtype = np.dtype(dtype)
        self.crs, self.transform, self.nodata = crs, transform, nodata
        self.descriptions = list(descriptions) if descriptions is not None else None
        self.resampling = resampling
        self.overviews = overviews
        self.sidecars = dict(sidecars or {})
        check_band_count(self.count, os.path.basename(self.path))
        if self.descriptions is not None and len(self.descriptions) != self.count:
            raise ValueError("one description per band")
        self.publication = publication
        self._sidecar_tmp: dict[str, str] = {}
        if publication is None:
            _existing_folder(self.path)
            for target in self.sidecars:
                _existing_folder(target)
            self.tmp_path = temporary_sibling(self.path)
        else:
            for target in self.sidecars:
                if os.path.isdir(target):
                    raise OutputError(f"The output {target} is a folder: give the name of a file to write.")
            self.tmp_path = publication.temporary(self.path)
            # sidecars: temporary names reserved now (written at publish; removed with the
            # run's temporaries when it fails)
            self._sidecar_tmp = {t: publication.temporary(t) for t in self.sidecars}
        row_bytes = self.width * self.count * self.dtype.itemsize
        tile_h = TILE
        while tile_h > 16 and row_bytes * tile_h > buffer_bytes:
            tile_h //= 2
        self.tile_h = tile_h
        self._buffer: np.ndarray | None = None
        self._strip = 0  # first row of the strip in the buffer
        self._dataset: Any = None  # a rasterio dataset while open
        self._state = "new"  # new -> open -> finished -> published | discarded
        self._staged: list[str] = []  # sidecars' temporary files (removed by discard)

    # -- lifecycle ---------------------------------------------------------------------
    def open(self) -> GeoTiffWriter:
        import rasterio

        profile = dict(
            driver="GTiff",
            width=self.width,
            height=self.height,
            count=self.count,
            dtype=self.dtype.name,
            crs=self.crs,
            transform=self.transform,
            nodata=self.nodata,
            tiled=True,
            blockxsize=TILE,
            blockysize=self.tile_h,
            predictor=3 if self.dtype.kind == "f" else 2,
            **compression_options(),
            interleave="band",
            bigtiff="IF_SAFER",
            num_threads=1,
        )
        try:
            self._dataset = rasterio.open(self.tmp_path, "w", **profile)
        except Exception as error:
            self._remove_tmp()
            raise OutputError(f"Cannot create {self.path}: {error}") from None
        if self.descriptions is not None:
            for band, text in enumerate(self.descriptions, start=1):
                self._dataset.set_band_description(band, text)
        self._state = "open"
        return self

    def write(self, array: np.ndarray, row_off: int, col_off: int = 0) -> None:
        if self._state != "open":
            raise RuntimeError("writer is not open")
        array = np.asarray(array)
        if array.ndim == 2:
            array = array[None]
        _, rows, cols = array.shape
        if row_off < self._strip:
            raise ValueError("blocks must arrive in row order, each row of tiles inside one strip")
        row = row_off
        while row < row_off + rows:
            if row >= self._strip + self.tile_h:
                self._flush()
                self._strip = (row // self.tile_h) * self.tile_h
            if self._buffer is None:
                strip_rows = min(self.tile_h, self.height - self._strip)
                self._buffer = np.full((self.count, strip_rows, self.width), self.nodata, dtype=self.dtype)
            stop = min(row_off + rows, self._strip + self.tile_h)
            self._buffer[:, row - self._strip : stop - self._strip, col_off : col_off + cols] = array[
                :, row - row_off : stop - row_off
            ]
            row = stop

    def _flush(self) -> None:
        if self._buffer is None:
            return
        from rasterio.windows import Window

        rows = self._buffer.shape[1]
        self._dataset.write(self._buffer, window=Window(0, self._strip, self.width, rows))
        self._buffer = None

    def finish(self) -> None:
        """Write the last strip, build the overviews, close the temporary file."""
        from rasterio.enums import Resampling

        if self._state != "open":
            raise RuntimeError("writer is not open")
        self._flush()
        factors = overview_factors(self.width, self.height) if self.overviews else []
        if factors:
            self._dataset.build_overviews(factors, Resampling[self.resampling])
            self._dataset.update_tags(ns="rio_overview", resampling=self.resampling)
        self._dataset.close()
        self._dataset = None
        self._state = "finished"

    def publish(self) -> str:
        """Rename the finished file (and write its sidecars) under the user's name."""
        publish_all([self], self.publication)
        return self.path

    def _stage(self) -> list[tuple[str, str]]:
        """Sidecars written to temporary names; every (temporary, final) pair to rename."""
        if self._state != "finished":
            raise RuntimeError("finish() first")
        pairs = []
        for target, text in self.sidecars.items():
            tmp = self._sidecar_tmp.get(target) or temporary_sibling(target)
            self._staged.append(tmp)
            with open(tmp, "w", encoding="utf-8", newline="") as handle:
                handle.write(text)
            pairs.append((tmp, target))
        return pairs + [(self.tmp_path, self.path)]

    def discard(self) -> None:
        """Close and delete the temporary file (a failed or cancelled run)."""
        if self._dataset is not None:
            try:
                self._dataset.close()
            except Exception:  # the file is deleted anyway
                pass
            self._dataset = None
        self._buffer = None
        self._remove_tmp()
        if self._state != "published":
            self._state = "discarded"

    def _remove_tmp(self) -> None:
        for path in (self.tmp_path, self.tmp_path + ".aux.xml", self.tmp_path + ".ovr", *self._staged):
            try:
                os.remove(path)
            except FileNotFoundError:
                pass

    def __enter__(self) -> GeoTiffWriter:
        return self.open() if self._state == "new" else self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            self.discard()
            return
        if self._state == "open":
            try:
                self.finish()
                self.publish()
            except BaseException:
                self.discard()
                raise
