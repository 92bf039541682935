"""Writing the decisions' rasters and texts under temporary names, published together.

:class:`RasterOutput` is one GeoTIFF (tiled, compressed, band descriptions and per-band
metadata tags) written window by window to a temporary name reserved in the run's
:class:`core.files.Publication`; the run publishes every output together at the end, and a
failed or cancelled run leaves nothing (the Publication removes the temporaries).
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from ..errors import OutputError
from ..files import Publication
from ..geotiff import compression_options


class RasterOutput:
    """A GeoTIFF written window by window under the temporary name ``publication`` gives."""

    def __init__(
        self,
        publication: Publication,
        path,
        *,
        like,
        count: int,
        dtype: str,
        nodata: float,
        descriptions: Sequence[str],
        band_tags: Sequence[Mapping[str, str]] | None = None,
        tags: Mapping[str, str] | None = None,
    ):
        import rasterio

        if not os.fspath(path).lower().endswith((".tif", ".tiff")):
            raise OutputError(
                f"{os.path.basename(os.fspath(path))} would be a GeoTIFF under another file type's name: "
                "give a name ending in .tif."
            )
        self.path = path
        self.tmp = publication.temporary(path)
        profile = dict(
            driver="GTiff",
            width=like.width,
            height=like.height,
            count=int(count),
            dtype=dtype,
            crs=like.crs,
            transform=like.transform,
            nodata=nodata,
            tiled=True,
            blockxsize=256,
            blockysize=256,
            interleave="band",
            bigtiff="IF_SAFER",
            **compression_options(),
        )
        if np.dtype(dtype).kind == "f":
            profile["predictor"] = 3
        try:
            self.dataset = rasterio.open(self.tmp, "w", **profile)
        except Exception as error:  # noqa: BLE001 - GDAL's reasons are many: say which file
            raise OutputError(f"Cannot create {path}: {error}") from None
        for band, text in enumerate(descriptions, start=1):
            self.dataset.set_band_description(band, text)
        for band, band_tag in enumerate(band_tags or (), start=1):
            if band_tag:
                self.dataset.update_tags(band, **{k: str(v) for k, v in band_tag.items()})
        if tags:
            self.dataset.update_tags(**{k: str(v) for k, v in tags.items()})

    def write(self, values: np.ndarray, row: int, start: int) -> None:
        """``values`` [bands, rows, all columns] into bands ``start + 1 ..`` from ``row``."""
        from rasterio.windows import Window

        bands = list(range(start + 1, start + 1 + values.shape[0]))
        window = Window(0, row, values.shape[2], values.shape[1])
        self.dataset.write(values.astype(self.dataset.dtypes[0], copy=False), bands, window=window)

    def close(self) -> None:
        if not self.dataset.closed:
            self.dataset.close()

    def __enter__(self) -> RasterOutput:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def csv_text(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """CSV text (``\\n`` line ends); floats with up to 6 significant digits, NaN as empty."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(list(header))
    for row in rows:
        writer.writerow([_cell(v) for v in row])
    return buffer.getvalue()


def _cell(value: object) -> object:
    if isinstance(value, float | np.floating):
        return "" if not np.isfinite(value) else f"{float(value):.6g}"
    if isinstance(value, np.integer):
        return int(value)
    return value
