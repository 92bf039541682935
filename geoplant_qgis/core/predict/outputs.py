"""One spec per output kind of predict: bands, dtype, nodata, band names, sidecars, palette.

The rules every reader of predict's rasters shares live here: the probability band naming
(:func:`probability_band_description`, parsed back by :func:`species_id_of_band`), the
top-K species table (:func:`species_csv_text`), the ONE top-K palette
(:func:`topk_palette`, drawn the same by the QML written next to the raster, by
Processing's styles and by the dock) and its QGIS style (:func:`topk_style_qml`).
Pure Python: no Qt, no qgis, no rasterio.
"""

from __future__ import annotations

import colorsys
import csv
import io
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import quoteattr

#: the output kinds of predict, in the order they are written
KINDS: tuple[str, ...] = ("richness", "topk", "probabilities")
RICHNESS_NODATA = -9999.0
PROBABILITY_NODATA = -9999.0
TOPK_NODATA = -1
SPECIES_CSV_SUFFIX = "_species.csv"
#: the Processing names of predict's outputs (what a refusal names)
OUTPUT_LABELS: dict[str, str] = {
    "richness": "OUTPUT_RICHNESS",
    "topk": "OUTPUT_TOPK",
    "probabilities": "OUTPUT_PROBABILITIES",
}
_BAND_SPECIES_ID = re.compile(r"\((-?\d+)\)\s*$")
#: TOPK_MODE of predict: "fixed" (every cell its TOP_K species) or "richness" (each cell's K
#: from its expected richness, :func:`richness_k`; the ranks after it are nodata)
TOPK_MODES: tuple[str, ...] = ("fixed", "richness")


def probability_band_description(name: str, species_id: int) -> str:
    """The description of a probability band: ``"<name> (<id>)"``."""
    return f"{name} ({int(species_id)})"


def species_id_of_band(description: str | None) -> int | None:
    """The species id of a probability band's description (:func:`probability_band_description`),
    or None when it does not end with ``(<id>)``."""
    match = _BAND_SPECIES_ID.search(description or "")
    return int(match.group(1)) if match else None


def species_csv_text(species: Sequence[tuple[int, str]]) -> str:
    """The id -> name table written next to the top-K raster."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["id", "name"])
    for sid, name in species:
        writer.writerow([int(sid), name])
    return buffer.getvalue()


def palette_colour(index: int) -> str:
    """The colour of the ``index``-th species of a card: golden-ratio hues, two lightness
    levels, as ``#rrggbb``."""
    hue = (index * 0.618033988749895) % 1.0
    light = 0.45 if index % 2 == 0 else 0.6
    r, g, b = colorsys.hls_to_rgb(hue, light, 0.75)
    return f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"


def topk_palette(species: Sequence[tuple[int, str]]) -> list[tuple[int, str, str]]:
    """The top-K layer's palette: [(species id, '#rrggbb', label "name (id)")] in card order.

    The one palette of the top-K raster: the QML written next to it, Processing's style
    (:mod:`processing.styles`) and the dock all draw it from here."""
    return [
        (int(sid), palette_colour(i), probability_band_description(name, sid))
        for i, (sid, name) in enumerate(species)
    ]


def topk_style_qml(species: Sequence[tuple[int, str]], band: int = 1) -> str:
    """A QGIS style (paletted renderer on ``band``, :func:`topk_palette`) labelling each
    species id with its name. Plain QML text, no qgis import; QGIS loads
    ``<raster name>.qml`` as the layer's default style."""
    entries = "\n".join(
        f"        <paletteEntry value={quoteattr(str(sid))} color={quoteattr(colour)} "
        f'alpha="255" label={quoteattr(label)}/>'
        for sid, colour, label in topk_palette(species)
    )
    return f"""<!DOCTYPE qgis PUBLIC 'http://mrcc.com/qgis.dtd' 'SYSTEM'>
<qgis version="3.22.0" styleCategories="AllStyleCategories">
  <pipe>
    <provider>
      <resampling enabled="false" zoomedInResamplingMethod="nearestNeighbour"
        zoomedOutResamplingMethod="nearestNeighbour" maxOversampling="2"/>
    </provider>
    <rasterrenderer type="paletted" band="{int(band)}" opacity="1" alphaBand="-1" nodataColor="">
      <rasterTransparency/>
      <minMaxOrigin>
        <limits>None</limits>
        <extent>WholeRaster</extent>
        <statAccuracy>Estimated</statAccuracy>
        <cumulativeCutLower>0.02</cumulativeCutLower>
        <cumulativeCutUpper>0.98</cumulativeCutUpper>
        <stdDevFactor>2</stdDevFactor>
      </minMaxOrigin>
      <colorPalette>
{entries}
      </colorPalette>
      <colorramp type="randomcolors" name="[source]"/>
    </rasterrenderer>
    <brightnesscontrast brightness="0" contrast="0" gamma="1"/>
    <huesaturation colorizeOn="0" colorizeRed="255" colorizeGreen="128" colorizeBlue="128"
      colorizeStrength="100" grayscaleMode="0" saturation="0"/>
    <rasterresampler maxOversampling="2"/>
    <resamplingStage>resamplingFilter</resamplingStage>
  </pipe>
  <blendMode>0</blendMode>
</qgis>
"""


def topk_sidecars(path: str | os.PathLike[str]) -> list[str]:
    """The files written next to a top-K raster: its species table and its QGIS style."""
    stem = os.path.splitext(os.path.abspath(os.fspath(path)))[0]
    return [stem + SPECIES_CSV_SUFFIX, stem + ".qml"]


def richness_k(richness: Any, margin: int, top_k: int) -> Any:
    """Each cell's K in TOPK_MODE "richness": its richness rounded to the nearest whole number
    (halves to even, as numpy's ``rint``) plus ``margin``, kept between 1 and ``top_k``;
    ``top_k`` where the richness is not a number. int64 array, the shape of ``richness``."""
    import numpy as np

    values = np.asarray(richness, dtype=np.float64)
    finite = np.isfinite(values)
    k = np.rint(np.where(finite, values, 0.0)) + int(margin)
    k = np.clip(k, 1, max(1, int(top_k))).astype(np.int64)
    return np.where(finite, k, int(top_k))


def mask_topk_by_richness(topk: Any, richness: Any, margin: int) -> Any:
    """``topk`` [cells, K] (species ids by rank) with the ranks after each cell's
    :func:`richness_k` set to :data:`TOPK_NODATA`, in place; returned."""
    import numpy as np

    if topk.ndim != 2 or not topk.shape[1]:
        return topk
    k = richness_k(richness, margin, topk.shape[1])
    topk[np.arange(topk.shape[1])[None, :] >= k[:, None]] = TOPK_NODATA
    return topk


def output_files(outputs: Mapping[str, str]) -> dict[str, list[str]]:
    """{label: [output, its sidecars...]} of predict's outputs (for ``files.check_outputs``)."""
    from ..files import RASTER_SIDECARS

    files = {}
    for kind, path in outputs.items():
        names = [path, *(path + s for s in RASTER_SIDECARS)]
        if kind == "topk":
            names += topk_sidecars(path)
        files[OUTPUT_LABELS[kind]] = names
    return files


@dataclass(frozen=True)
class OutputSpec:
    """One output raster of predict: what the writer needs, and the sidecars it publishes."""

    kind: str
    path: str
    count: int
    dtype: str
    nodata: float
    resampling: str
    descriptions: tuple[str, ...]
    sidecars: Mapping[str, str] = field(default_factory=dict)

    @property
    def bytes_per_cell(self) -> int:
        """Bytes of one cell over every band (every dtype here is 4 bytes)."""
        return 4 * self.count

    def writer_options(self) -> dict[str, object]:
        """The keyword arguments of :class:`core.geotiff.GeoTiffWriter` besides the grid."""
        return {
            "count": self.count,
            "dtype": self.dtype,
            "nodata": self.nodata,
            "resampling": self.resampling,
            "descriptions": list(self.descriptions),
            "sidecars": dict(self.sidecars),
        }

    def writer(self, grid: Any, publication: Any) -> Any:
        """This output's :class:`core.geotiff.GeoTiffWriter` on ``grid`` (a
        :class:`core.grid.Grid`), registered with ``publication``; not opened yet."""
        from ..geotiff import GeoTiffWriter

        return GeoTiffWriter(
            self.path,
            width=grid.width,
            height=grid.height,
            crs=grid.crs,
            transform=grid.transform,
            publication=publication,
            **self.writer_options(),  # type: ignore[arg-type]
        )


def output_specs(
    outputs: Mapping[str, str],
    species: Sequence[tuple[int, str]],
    kept: Sequence[tuple[int, str]],
    top_k: int,
    threshold: float | None,
) -> dict[str, OutputSpec]:
    """{kind: OutputSpec} of the requested ``outputs`` ({kind: path}). ``species``: every
    (id, name) of the card (the top-K's table and palette); ``kept``: those of the
    probability bands, in band order."""
    specs: dict[str, OutputSpec] = {}
    if "richness" in outputs:
        label = "richness" if threshold is None else f"species with p >= {threshold:g}"
        specs["richness"] = OutputSpec(
            "richness", outputs["richness"], 1, "float32", RICHNESS_NODATA, "average", (label,)
        )
    if "topk" in outputs:
        stem = os.path.splitext(outputs["topk"])[0]
        table = [(int(sid), name) for sid, name in species]
        specs["topk"] = OutputSpec(
            "topk",
            outputs["topk"],
            top_k,
            "int32",
            TOPK_NODATA,
            "nearest",
            tuple(f"rank {i}" for i in range(1, top_k + 1)),
            {stem + SPECIES_CSV_SUFFIX: species_csv_text(table), stem + ".qml": topk_style_qml(table)},
        )
    if "probabilities" in outputs:
        specs["probabilities"] = OutputSpec(
            "probabilities",
            outputs["probabilities"],
            len(kept),
            "float32",
            PROBABILITY_NODATA,
            "average",
            tuple(probability_band_description(name, sid) for sid, name in kept),
        )
    return specs
