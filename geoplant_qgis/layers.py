"""One rule for every QGIS-side caller: which file (or GDAL dataset name) a raster layer reads.

Used by Processing (``processing.params.raster_layer_path``) and the dock alike, so both accept
the same layers: GeoTIFFs and other files, GeoPackage rasters and ``/vsizip/`` datasets (passed
to GDAL as they are); web services, memory and other non-GDAL layers are refused in plain words.
"""

from __future__ import annotations

from qgis.core import QgsProviderRegistry, QgsRasterLayer

from .core.errors import InputDataError


def raster_layer_path(layer) -> str:
    """A raster layer's file (or GDAL dataset name) for core; :class:`InputDataError` for a
    layer GDAL cannot read as a file."""
    if layer is None:
        raise InputDataError("No raster layer chosen.")
    if layer.providerType() != "gdal":
        raise InputDataError(
            f"The raster layer '{layer.name()}' is not a file GDAL can read (provider "
            f"'{layer.providerType()}'); save it as a GeoTIFF first."
        )
    source = layer.source()
    parts = QgsProviderRegistry.instance().decodeUri("gdal", source)
    if parts.get("layerName") or parts.get("vsiPrefix"):
        return source  # GDAL dataset names (GPKG rasters, /vsizip/...) are passed as they are
    return parts.get("path") or source


def raster_layer_path_or_none(layer) -> str | None:
    """:func:`raster_layer_path`, or None for a layer that is not a GDAL raster (the dock's lists)."""
    if not isinstance(layer, QgsRasterLayer):
        return None
    try:
        return raster_layer_path(layer)
    except InputDataError:
        return None
