"""Presence-absence surveys from a Processing parameter: a CSV path or a point layer (shared
by the decision algorithms; the same reading as geoplant:evaluate's)."""

from __future__ import annotations

import os

from ..core.errors import InputDataError
from .inputs import layer_file


def read_surveys(alg, parameters, name, context, progress):
    """(DataFrame surveyId, x, y, speciesIds; CRS text) from a presence-absence CSV (as
    :func:`core.evaluate.surveys_from_csv` reads it, EPSG:4326) or a loadobservations layer."""
    from qgis.core import QgsVectorLayer

    from ..core.evaluate import surveys_from_csv
    from .evaluate import surveys_from_layer

    value = parameters.get(name)
    if isinstance(value, str) and value.lower().endswith(".csv"):
        if not os.path.isfile(value):
            raise InputDataError(f"{name}: file not found: {value}")
        return surveys_from_csv(value, progress=progress), "EPSG:4326"
    layer = alg.parameterAsLayer(parameters, name, context)
    if layer is None:
        raise InputDataError(f"{name} cannot be read: give a presence-absence CSV or a point layer.")
    source = layer.source().split("|")[0]
    if source.lower().endswith(".csv") and (
        not isinstance(layer, QgsVectorLayer) or not layer.isSpatial() or layer.providerType() != "ogr"
    ):
        return surveys_from_csv(source, progress=progress), "EPSG:4326"
    if not isinstance(layer, QgsVectorLayer) or not layer.isSpatial():
        raise InputDataError(f"{name} must be a point layer or a presence-absence CSV.")
    frame, crs = surveys_from_layer(layer)
    if frame.attrs.get("skipped"):
        progress.warning(
            f"{name}: {frame.attrs['skipped']} feature(s) without a point or a surveyId were left out."
        )
    return frame, crs


def input_file(alg, parameters, context, name):
    """The file behind a CSV-or-layer parameter, for :func:`core.files.check_outputs`."""
    value = parameters.get(name)
    if isinstance(value, str) and value.lower().endswith(".csv"):
        return value
    return layer_file(alg, parameters, context, name)
