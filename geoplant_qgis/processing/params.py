"""Reading Processing parameters into the plain data core takes (paths, tuples, WKB).

Shared by the algorithms so that EXTENT, AREA, CRS and raster layers mean the same
everywhere. Everything here runs in the algorithm's thread; core never sees a QGIS object.
"""

from __future__ import annotations

import math

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingParameterFile,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterString,
    QgsProviderRegistry,
)

from ..core.bundled import default_model_path


def given(parameters, name) -> bool:
    """True when the parameter has a value (an empty string or list counts as not given)."""
    value = parameters.get(name)
    if isinstance(value, str):
        return bool(value.strip())
    if isinstance(value, list | tuple):
        return bool(value)
    return value is not None


def is_null(value) -> bool:
    """None or a NULL QVariant (a feature attribute without a value)."""
    return value is None or (hasattr(value, "isNull") and value.isNull())


def whole_number(value) -> int | None:
    """``value`` (12, 12.0, "12") as an int when it is a finite whole number, else None."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return int(number) if math.isfinite(number) and number.is_integer() else None


def crs_text(crs) -> str | None:
    """'EPSG:xxxx' when the CRS has an authority id, else its WKT; None when invalid."""
    if crs is None or not crs.isValid():
        return None
    return crs.authid() or crs.toWkt()


def raster_layer_path(layer) -> str:
    """A raster layer's file (or GDAL dataset name) for core; refuses non-GDAL layers."""
    if layer.providerType() != "gdal":
        raise QgsProcessingException(
            f"The raster layer '{layer.name()}' is not a file GDAL can read (provider "
            f"'{layer.providerType()}'); save it as a GeoTIFF first."
        )
    source = layer.source()
    parts = QgsProviderRegistry.instance().decodeUri("gdal", source)
    if parts.get("layerName") or parts.get("vsiPrefix"):
        return source  # GDAL dataset names (GPKG rasters, /vsizip/...) are passed as they are
    return parts.get("path") or source


def raster_paths(alg, parameters, context, name="RASTERS") -> list[str]:
    """The files of a multiple-raster-layers parameter."""
    return [raster_layer_path(layer) for layer in alg.parameterAsLayerList(parameters, name, context)]


def read_extent(alg, parameters, context, name="EXTENT"):
    """(xmin, ymin, xmax, ymax) and its CRS text, or (None, None) when not given or empty."""
    if not given(parameters, name):
        return None, None
    rect = alg.parameterAsExtent(parameters, name, context)
    if rect.isNull() or rect.isEmpty():
        return None, None
    extent = (rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum())
    return extent, crs_text(alg.parameterAsExtentCrs(parameters, name, context))


def read_area(alg, parameters, context, feedback=None, name="AREA"):
    """The polygons of a layer as WKB and the layer's CRS text, or (None, None) when not given."""
    if not given(parameters, name):
        return None, None
    source = alg.parameterAsSource(parameters, name, context)
    if source is None:
        raise QgsProcessingException(f"The {name} layer cannot be read.")
    polygons = []
    for feature in source.getFeatures():
        if feedback is not None and feedback.isCanceled():
            break
        geometry = feature.geometry()
        if geometry is not None and not geometry.isEmpty():
            polygons.append(bytes(geometry.asWkb()))
    if not polygons:
        raise QgsProcessingException(f"The {name} layer has no polygon.")
    return polygons, crs_text(source.sourceCrs())


def read_crs(alg, parameters, context, name="CRS") -> str | None:
    return crs_text(alg.parameterAsCrs(parameters, name, context)) if given(parameters, name) else None


def add_model_parameters(alg, model_label: str, rasters_label: str, model_optional: bool = False) -> None:
    """MODEL (default: the bundled demo model), RASTERS and MAPPING, the same in every algorithm
    that runs a model."""
    alg.addParameter(
        QgsProcessingParameterFile(
            "MODEL",
            alg.tr(model_label),
            behavior=QgsProcessingParameterFile.File,
            extension="onnx",
            defaultValue=default_model_path(),
            optional=model_optional,
        )
    )
    alg.addParameter(
        QgsProcessingParameterMultipleLayers(
            "RASTERS", alg.tr(rasters_label), QgsProcessing.TypeRaster, optional=True
        )
    )
    alg.addParameter(
        QgsProcessingParameterString(
            "MAPPING", alg.tr("Variable mapping (variable=path[#band];... or CSV file)"), optional=True
        )
    )
