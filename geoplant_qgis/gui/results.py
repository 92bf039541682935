"""Result layers of a run: added to a group named after the run, styled; and read back at a point.

- richness: continuous colour ramp stretched to the band's values (min..max), legend in species;
- top-K: one paletted layer per rank band (rank 1 shown, the others one click away), each
  labelled with species names in core's one top-K palette;
- probabilities: one layer per species band, a 0-1 ramp.

Every result layer carries custom properties (:data:`KIND_PROPERTY`, :data:`RUN_PROPERTY`,
:data:`BAND_PROPERTY`), written into the project with the layer: after a project is reopened
:func:`project_run_outputs` finds the runs again from the layers themselves, not from the
panel's memory.

Also :func:`identify_outputs`, the "What grows here?" read-out of the output rasters.
Main thread only (it creates QGIS layers).
"""

from __future__ import annotations

import math
import os

import numpy as np
from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsPalettedRasterRenderer,
    QgsProject,
    QgsRaster,
    QgsRasterBandStats,
    QgsRasterLayer,
)
from qgis.PyQt.QtGui import QColor

from ..core.predict.outputs import species_id_of_band
from ..processing.styles import named_ramp, pseudocolor, species_label, style_probability

RICHNESS = "richness"
TOPK = "topk"
PROBABILITIES = "probabilities"
#: more probability bands than this are not added one layer each (the file is still written)
MAX_PROBABILITY_LAYERS = 30
#: more top-K ranks than this are not added one layer each (the file holds them all)
MAX_RANK_LAYERS = 50
#: custom properties of a result layer (saved in the project with the layer)
KIND_PROPERTY = "geoplant/kind"  # "richness" | "topk" | "probabilities"
RUN_PROPERTY = "geoplant/run"  # the run's name (its id: unique in its folder)
BAND_PROPERTY = "geoplant/band"  # the band the layer shows
SPECIES_PROPERTY = "geoplant/species"  # "id\tname\n..." of the model (top-K labels after a reopen)


def unique_values(path: str, band: int = 1, nodata=None) -> list[int]:
    """Distinct values of an integer band, read block by block."""
    return unique_values_per_band(path, [band], nodata)[band]


def unique_values_per_band(path: str, bands=None, nodata=None) -> dict[int, list[int]]:
    """{band: distinct values} of integer bands (default all), one pass block by block."""
    import rasterio

    with rasterio.open(path) as ds:
        bands = list(bands or range(1, ds.count + 1))
        nodata = ds.nodata if nodata is None else nodata
        values = {b: set() for b in bands}
        for _, window in ds.block_windows(1):
            data = ds.read(bands, window=window)
            for b, plane in zip(bands, data, strict=True):
                values[b].update(int(v) for v in np.unique(plane))
    for found in values.values():
        if nodata is not None:
            found.discard(int(nodata))
    return {b: sorted(v) for b, v in values.items()}


def _topk_renderer(layer, band, present, palette):
    classes = []
    for sid in present:
        colour, label = palette.get(sid, ("#808080", str(sid)))
        classes.append(QgsPalettedRasterRenderer.Class(sid, QColor(colour), label))
    renderer = QgsPalettedRasterRenderer(layer.dataProvider(), int(band), classes)
    layer.setRenderer(renderer)
    return renderer


def style_top_species(layer, names: dict[int, str], path: str | None = None, band: int = 1, present=None):
    """One rank band as a paletted layer: one class per species present in that band,
    labelled by name, in core's one top-K palette (:func:`core.predict.outputs.topk_palette`,
    the colours of the QML written next to the raster and of Processing's style)."""
    from ..core.predict.outputs import topk_palette

    path = path or layer.source()
    present = unique_values(path, band) if present is None else present
    palette = {sid: (colour, label) for sid, colour, label in topk_palette(list(names.items()))}
    return _topk_renderer(layer, band, present, palette)


def style_richness_stretched(layer):
    """The richness ramp from the band's minimum to its maximum (a 12.8-26.5 area is not
    flat), legend in species."""
    stats = layer.dataProvider().bandStatistics(1, QgsRasterBandStats.Min | QgsRasterBandStats.Max)
    low, high = float(stats.minimumValue), float(stats.maximumValue)
    if not (math.isfinite(low) and math.isfinite(high)):
        low, high = 0.0, 1.0
    if not high > low:
        low, high = low - 0.5, low + 0.5
    return pseudocolor(
        layer, 1, low, high, named_ramp("Viridis", ("#440154", "#fde725")), species_label, suffix=" species"
    )


def band_descriptions(path: str) -> list[str]:
    import rasterio

    with rasterio.open(path) as ds:
        return [d or f"band {i + 1}" for i, d in enumerate(ds.descriptions)]


def tag_layer(layer, kind: str, run_name: str, band: int = 1, names: dict[int, str] | None = None) -> None:
    """The layer's custom properties: what it is, of which run, which band (saved with the project)."""
    layer.setCustomProperty(KIND_PROPERTY, kind)
    layer.setCustomProperty(RUN_PROPERTY, run_name)
    layer.setCustomProperty(BAND_PROPERTY, int(band))
    if kind == TOPK and names:
        layer.setCustomProperty(SPECIES_PROPERTY, "\n".join(f"{i}\t{n}" for i, n in names.items()))


def add_run_layers(run_name: str, outputs: dict, names: dict[int, str] | None = None, project=None):
    """Add the outputs of a run (``{"richness"|"topk"|"probabilities": path}``) as styled,
    tagged layers (:func:`tag_layer`).

    Returns ``(group, layers)`` where ``layers`` maps "richness", "top1", "top2"… and
    "probability:<band description>" to the layers added, in the group ``run_name`` at
    the top of the layer tree (rank 1 and richness first; ranks 2.. in a sub-group).
    """
    from ..core.predict.outputs import topk_palette

    project = project or QgsProject.instance()
    names = dict(names or {})
    root = project.layerTreeRoot()
    group = root.insertGroup(0, run_name)
    layers = {}

    def add(key, layer, kind, band=1, where=None):
        tag_layer(layer, kind, run_name, band, names)
        project.addMapLayer(layer, False)
        (where or group).addLayer(layer)
        layers[key] = layer

    path = outputs.get(RICHNESS)
    if path and os.path.exists(path):
        layer = QgsRasterLayer(path, f"{run_name} richness")
        if layer.isValid():
            style_richness_stretched(layer)
            add("richness", layer, RICHNESS)
    path = outputs.get(TOPK)
    if path and os.path.exists(path):
        present = unique_values_per_band(path)
        palette = {sid: (colour, label) for sid, colour, label in topk_palette(list(names.items()))}
        ranks = sorted(present)[:MAX_RANK_LAYERS]
        sub = None
        for rank in ranks:
            title = f"{run_name} top species" if rank == 1 else f"{run_name} top species rank {rank}"
            layer = QgsRasterLayer(path, title)
            if not layer.isValid():
                continue
            _topk_renderer(layer, rank, present[rank], palette)
            if rank > 1 and sub is None:
                sub = group.addGroup(f"{run_name} top species, ranks 2–{ranks[-1]}")
                sub.setExpanded(False)
            add(f"top{rank}", layer, TOPK, rank, sub if rank > 1 else None)
    path = outputs.get(PROBABILITIES)
    if path and os.path.exists(path):
        for band, description in enumerate(band_descriptions(path)[:MAX_PROBABILITY_LAYERS], start=1):
            layer = QgsRasterLayer(path, f"{run_name} p {description}")
            if layer.isValid():
                style_probability(layer, band)
                add(f"probability:{description}", layer, PROBABILITIES, band)
    # the first layer shows; the others are one click away
    for node in group.findLayers()[1:]:
        node.setItemVisibilityChecked(False)
    if group.findGroups():
        group.findGroups()[0].setItemVisibilityChecked(False)
        for node in group.findGroups()[0].findLayers():
            node.setItemVisibilityChecked(True)  # shown as soon as the sub-group is ticked
    return group, layers


def project_run_outputs(project=None) -> list[dict]:
    """The runs whose result layers are in the project, found from the layers' custom
    properties: ``[{"name", "outputs": {kind: path}, "names": {id: name}, "layers": [...]}]``,
    the run highest in the layer tree (the latest added) first. Files that no longer exist
    are left out."""
    project = project or QgsProject.instance()
    order = {node.layerId(): i for i, node in enumerate(project.layerTreeRoot().findLayers())}
    runs: dict[str, dict] = {}
    for layer in project.mapLayers().values():
        kind = layer.customProperty(KIND_PROPERTY)
        name = layer.customProperty(RUN_PROPERTY)
        if kind not in (RICHNESS, TOPK, PROBABILITIES) or not name:
            continue
        path = layer.source().split("|")[0]
        if not os.path.exists(path):
            continue
        run = runs.setdefault(
            str(name), {"name": str(name), "outputs": {}, "names": {}, "layers": [], "rank": 10**9}
        )
        run["outputs"].setdefault(str(kind), path)
        run["layers"].append(layer)
        run["rank"] = min(run["rank"], order.get(layer.id(), 10**9))
        text = layer.customProperty(SPECIES_PROPERTY)
        if text:
            for line in str(text).splitlines():
                sid, _, species = line.partition("\t")
                try:
                    run["names"][int(sid)] = species
                except ValueError:
                    pass
    return sorted(runs.values(), key=lambda run: run["rank"])


def _layer_at(path, point, point_crs):
    layer = QgsRasterLayer(path, "identify")
    if not layer.isValid():
        return None, None
    if point_crs is not None and point_crs.isValid() and point_crs != layer.crs():
        transform = QgsCoordinateTransform(point_crs, layer.crs(), QgsProject.instance())
        point = transform.transform(point)
    if not layer.extent().contains(point):
        return None, None
    return layer, point


def _value_at(path, point, point_crs):
    """All band values of the raster ``path`` at ``point`` (None where nodata/outside)."""
    layer, point = _layer_at(path, point, point_crs)
    if layer is None:
        return None
    results = layer.dataProvider().identify(point, QgsRaster.IdentifyFormatValue).results()
    return [results.get(b) for b in range(1, layer.bandCount() + 1)]


def cell_centre(path, point, point_crs):
    """(x, y, crs text) of the centre of the cell of raster ``path`` under ``point``, None outside."""
    layer, point = _layer_at(path, point, point_crs)
    if layer is None:
        return None
    extent = layer.extent()
    dx = extent.width() / layer.width()
    dy = extent.height() / layer.height()
    col = min(int((point.x() - extent.xMinimum()) / dx), layer.width() - 1)
    row = min(int((extent.yMaximum() - point.y()) / dy), layer.height() - 1)
    crs = layer.crs()
    return (
        extent.xMinimum() + (col + 0.5) * dx,
        extent.yMaximum() - (row + 0.5) * dy,
        crs.authid() or crs.toWkt(),
    )


def identify_outputs(point, point_crs: QgsCoordinateReferenceSystem, outputs: dict, names: dict[int, str]):
    """What the output rasters say at ``point``.

    ``{"richness": float or None, "species": [(id, name, p or None)], "cell": (x, y, crs)}``:
    the top-K order when there is a top-K raster, p from the probability raster where it
    has the species; ``cell`` is the centre of the output cell (where the run sampled).

    Returns None when the point is outside the outputs or on a nodata cell.
    """
    richness = None
    species = []
    found = False
    cell = None
    path = outputs.get(RICHNESS)
    if path and os.path.exists(path):
        values = _value_at(path, point, point_crs)
        if values and values[0] is not None:
            found = True
            richness = float(values[0])
            cell = cell_centre(path, point, point_crs)
    probabilities = {}
    path = outputs.get(PROBABILITIES)
    if path and os.path.exists(path):
        values = _value_at(path, point, point_crs)
        if values:
            for description, value in zip(band_descriptions(path), values, strict=False):
                if value is None:
                    continue
                found = True
                cell = cell or cell_centre(path, point, point_crs)
                sid = species_id_of_band(description)
                probabilities[sid if sid is not None else description] = float(value)
    path = outputs.get(TOPK)
    if path and os.path.exists(path):
        values = _value_at(path, point, point_crs)
        for value in values or []:
            if value is None or int(value) < 0:
                continue
            found = True
            cell = cell or cell_centre(path, point, point_crs)
            sid = int(value)
            species.append((sid, names.get(sid, str(sid)), probabilities.get(sid)))
    if not species and probabilities:
        for key, p in sorted(probabilities.items(), key=lambda kv: -kv[1]):
            sid = key if isinstance(key, int) else None
            species.append((sid, names.get(sid, str(key)), p))
    if not found:
        return None
    return {"richness": richness, "species": species, "cell": cell}


__all__ = [
    "KIND_PROPERTY",
    "RUN_PROPERTY",
    "add_run_layers",
    "identify_outputs",
    "project_run_outputs",
    "style_richness_stretched",
    "style_top_species",
    "tag_layer",
]
