"""Tile files -> the run's outputs: core's writers fed strip by strip, then published together.

The outputs are made by the same :class:`core.geotiff.GeoTiffWriter` as a single-machine
run, with the same options (tiling, compression, nodata, band descriptions, overviews,
sidecars), under temporary names registered with one :class:`core.files.Publication`;
:func:`core.predict.publish.finish_and_publish` builds the overviews and moves every file
into place together. The tiles' values are copied as they are, in row order: each strip
of the writer takes that strip's rows of every tile of the row of tiles.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ..files import Publication
from ..geotiff import GeoTiffWriter
from ..predict.publish import discard, finish_and_publish
from .manifest import tile_path

if TYPE_CHECKING:
    from ..predict.request import PredictRequest
    from .tiles import Tile


def output_writers(request: PredictRequest, publication: Publication) -> dict[str, GeoTiffWriter]:
    """The run's writers, exactly as :meth:`core.predict.runner.Plan.make` makes them."""
    writers = {}
    for kind, spec in request.output_specs().items():
        publication.folder(spec.path)
        writers[kind] = spec.writer(request.grid, publication)
    return writers


def assemble(
    request: PredictRequest, tiles: Sequence[Tile], folder: str, progress: Any, start: float = 90.0
) -> None:
    """Copy every tile file of ``folder`` into the outputs and publish them together; a
    failure or a cancel leaves the user's files as they were (the tiles stay)."""
    import rasterio
    from rasterio.windows import Window

    publication = Publication(progress)
    writers: dict[str, GeoTiffWriter] = {}
    try:
        writers = output_writers(request, publication)
        for writer in writers.values():
            writer.open()
        bands = sorted({t.row for t in tiles})
        for done, row in enumerate(bands):
            progress.check_cancelled()
            band = sorted((t for t in tiles if t.row == row), key=lambda t: t.col)
            for kind, writer in writers.items():
                sources = [rasterio.open(tile_path(folder, t, kind)) for t in band]
                try:
                    rows = band[0].rows
                    for top in range(0, rows, writer.tile_h):
                        height = min(writer.tile_h, rows - top)
                        for tile, source in zip(band, sources, strict=True):
                            block = source.read(window=Window(0, top, tile.cols, height))
                            writer.write(block, tile.row + top, tile.col)
                finally:
                    for source in sources:
                        source.close()
            progress.set_progress(start + (100.0 - start) * 0.5 * (done + 1) / len(bands))
        finish_and_publish(list(writers.values()), progress)
    except BaseException:
        discard(list(writers.values()))
        publication.discard()
        raise


__all__ = ["assemble", "output_writers"]
