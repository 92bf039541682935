"""Result layers of a run: added to a group named after the run, styled; and read back at a point.

- richness: continuous colour ramp, legend in species;
- probabilities: one layer per species band, a 0-1 ramp;
- top-K: the rank-1 band as a paletted layer labelled with species names.

Also :func:`identify_outputs`, the "What grows here?" read-out of the output rasters.
Main thread only (it creates QGIS layers).
"""

from __future__ import annotations

import os

import numpy as np
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsPalettedRasterRenderer,
    QgsProject,
    QgsRaster,
    QgsRasterLayer,
)
from qgis.PyQt.QtGui import QColor

from ..core.predict.outputs import species_id_of_band
from ..processing.styles import style_probability, style_richness

RICHNESS = "richness"
TOPK = "topk"
PROBABILITIES = "probabilities"
#: more probability bands than this are not added one layer each (the file is still written)
MAX_PROBABILITY_LAYERS = 30


def unique_values(path: str, band: int = 1, nodata=None) -> list[int]:
    """Distinct values of an integer band, read block by block."""
    import rasterio

    values = set()
    with rasterio.open(path) as ds:
        nodata = ds.nodata if nodata is None else nodata
        for _, window in ds.block_windows(band):
            data = ds.read(band, window=window)
            values.update(int(v) for v in np.unique(data))
    if nodata is not None:
        values.discard(int(nodata))
    return sorted(values)


def style_top_species(layer, names: dict[int, str], path: str | None = None):
    """Band 1 (rank 1) as a paletted layer: one class per species present, labelled by name,
    in core's one top-K palette (:func:`core.predict.outputs.topk_palette`, the colours of
    the QML written next to the raster and of Processing's style)."""
    from ..core.predict.outputs import topk_palette

    path = path or layer.source()
    present = unique_values(path, 1)
    palette = {sid: (colour, label) for sid, colour, label in topk_palette(list(names.items()))}
    classes = []
    for sid in present:
        colour, label = palette.get(sid, ("#808080", str(sid)))
        classes.append(QgsPalettedRasterRenderer.Class(sid, QColor(colour), label))
    renderer = QgsPalettedRasterRenderer(layer.dataProvider(), 1, classes)
    layer.setRenderer(renderer)
    return renderer


def band_descriptions(path: str) -> list[str]:
    import rasterio

    with rasterio.open(path) as ds:
        return [d or f"band {i + 1}" for i, d in enumerate(ds.descriptions)]


def add_run_layers(run_name: str, outputs: dict, names: dict[int, str] | None = None, project=None):
    """Add the outputs of a run (``{"richness"|"topk"|"probabilities": path}``) as styled layers.

    Returns ``(group, layers)`` where ``layers`` maps "richness", "top1" and
    "probability:<band description>" to the layers added, in the group ``run_name`` at
    the top of the layer tree.
    """
    project = project or QgsProject.instance()
    names = dict(names or {})
    root = project.layerTreeRoot()
    group = root.insertGroup(0, run_name)
    layers = {}

    def add(key, layer):
        project.addMapLayer(layer, False)
        group.addLayer(layer)
        layers[key] = layer

    path = outputs.get(RICHNESS)
    if path and os.path.exists(path):
        layer = QgsRasterLayer(path, f"{run_name} richness")
        if layer.isValid():
            style_richness(layer)
            add("richness", layer)
    path = outputs.get(TOPK)
    if path and os.path.exists(path):
        layer = QgsRasterLayer(path, f"{run_name} top species")
        if layer.isValid():
            style_top_species(layer, names, path)
            add("top1", layer)
    path = outputs.get(PROBABILITIES)
    if path and os.path.exists(path):
        for band, description in enumerate(band_descriptions(path)[:MAX_PROBABILITY_LAYERS], start=1):
            layer = QgsRasterLayer(path, f"{run_name} p {description}")
            if layer.isValid():
                style_probability(layer, band)
                add(f"probability:{description}", layer)
    # the first layer shows; the others are one click away
    for node in group.findLayers()[1:]:
        node.setItemVisibilityChecked(False)
    return group, layers


def _value_at(path, point, point_crs):
    """All band values of the raster ``path`` at ``point`` (None where nodata/outside)."""
    layer = QgsRasterLayer(path, "identify")
    if not layer.isValid():
        return None
    if point_crs is not None and point_crs.isValid() and point_crs != layer.crs():
        transform = QgsCoordinateTransform(point_crs, layer.crs(), QgsProject.instance())
        point = transform.transform(point)
    if not layer.extent().contains(point):
        return None
    results = layer.dataProvider().identify(point, QgsRaster.IdentifyFormatValue).results()
    return [results.get(b) for b in range(1, layer.bandCount() + 1)]


def identify_outputs(point, point_crs: QgsCoordinateReferenceSystem, outputs: dict, names: dict[int, str]):
    """What the output rasters say at ``point``.

    ``{"richness": float or None, "species": [(id, name, p or None)]}``.

    Returns None when the point is outside the outputs or on a nodata cell.
    """
    richness = None
    species = []
    found = False
    path = outputs.get(RICHNESS)
    if path and os.path.exists(path):
        values = _value_at(path, point, point_crs)
        if values and values[0] is not None:
            found = True
            richness = float(values[0])
    probabilities = {}
    path = outputs.get(PROBABILITIES)
    if path and os.path.exists(path):
        values = _value_at(path, point, point_crs)
        if values:
            for description, value in zip(band_descriptions(path), values, strict=False):
                if value is None:
                    continue
                found = True
                sid = species_id_of_band(description)
                probabilities[sid if sid is not None else description] = float(value)
    path = outputs.get(TOPK)
    if path and os.path.exists(path):
        values = _value_at(path, point, point_crs)
        for value in values or []:
            if value is None or int(value) < 0:
                continue
            found = True
            sid = int(value)
            species.append((sid, names.get(sid, str(sid)), probabilities.get(sid)))
    if not species and probabilities:
        for key, p in sorted(probabilities.items(), key=lambda kv: -kv[1]):
            sid = key if isinstance(key, int) else None
            species.append((sid, names.get(sid, str(key)), p))
    if not found:
        return None
    return {"richness": richness, "species": species}
