"""The files behind layer parameters, so that core can refuse an output that is one of them."""

from __future__ import annotations

from .params import given


def layer_file(alg, parameters, context, name: str) -> str | None:
    """The source (file, with any ``|layername=``) of the layer given as ``name``, or None
    when it is not given or not a file layer (core's ``files.dataset_file`` reads it)."""
    if not given(parameters, name):
        return None
    try:
        layer = alg.parameterAsVectorLayer(parameters, name, context)
    except Exception:  # noqa: BLE001 - not a vector layer: nothing to protect
        layer = None
    if layer is None:
        try:
            layer = alg.parameterAsLayer(parameters, name, context)
        except Exception:  # noqa: BLE001
            layer = None
    if layer is None:
        return None
    from qgis.core import QgsProviderRegistry

    try:  # ogr / gdal / delimitedtext...: the file; memory layers and databases: none
        path = QgsProviderRegistry.instance().decodeUri(layer.providerType(), layer.source()).get("path")
    except Exception:  # noqa: BLE001
        path = None
    return str(path) if path else None
