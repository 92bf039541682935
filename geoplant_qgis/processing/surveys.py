"""Presence-absence surveys from a Processing parameter: a CSV path or a point layer (shared
by geoplant:evaluate and the decision algorithms)."""

from __future__ import annotations

import os

from ..core.errors import InputDataError
from .inputs import layer_file
from .params import crs_text, is_null, whole_number


def read_surveys(alg, parameters, name, context, progress):
    """(DataFrame surveyId, x, y, speciesIds; CRS text) from a presence-absence CSV (as
    :func:`core.evaluate.surveys_from_csv` reads it, EPSG:4326) or a loadobservations layer."""
    from qgis.core import QgsVectorLayer

    from ..core.evaluate import surveys_from_csv

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


def _whole(token) -> int:
    number = whole_number(token)
    if number is None:
        raise InputDataError(f"species id {str(token)!r} is not a whole number")
    return number


def _parse_ids(value) -> list[int]:
    """speciesIds as written by loadobservations ("12 57 311"), a list, or one id."""
    if is_null(value):
        return []
    if isinstance(value, list | tuple):
        return [_whole(v) for v in value]
    text = str(value).strip().strip("[]")
    if not text or text.upper() == "NULL":
        return []
    return [_whole(t) for t in text.replace(",", " ").split()]


def surveys_from_layer(layer):
    """A point layer (loadobservations: one point per survey with speciesIds, or one per row with
    speciesId) -> (DataFrame surveyId, x, y, speciesIds, the layer's CRS as text).

    Features without a geometry or a surveyId are skipped; their count is in
    ``frame.attrs["skipped"]``."""
    import pandas as pd

    names = layer.fields().names()
    if "surveyId" not in names:
        raise InputDataError(
            f"The layer '{layer.name()}' has no surveyId field; load it with geoplant:loadobservations."
        )
    per_survey = "speciesIds" in names
    if not per_survey and "speciesId" not in names:
        raise InputDataError(
            f"The layer '{layer.name()}' has neither a speciesIds nor a speciesId field: evaluation needs "
            "the species observed in each survey."
        )
    species_field = "speciesIds" if per_survey else "speciesId"
    rows = {}
    skipped = 0
    for feature in layer.getFeatures():
        geometry = feature.geometry()
        value = feature["surveyId"]
        if geometry is None or geometry.isEmpty() or is_null(value):
            skipped += 1
            continue
        try:
            sid = _whole(value)
        except InputDataError:
            raise InputDataError(
                f"The layer '{layer.name()}' has surveyId {str(value)!r}, which is not a whole number."
            ) from None
        point = geometry.asPoint() if not geometry.isMultipart() else geometry.asMultiPoint()[0]
        entry = rows.setdefault(sid, [point.x(), point.y(), set()])
        try:
            entry[2].update(_parse_ids(feature[species_field]))
        except InputDataError as error:
            raise InputDataError(f"The layer '{layer.name()}', survey {sid}: {error}.") from None
    frame = pd.DataFrame(
        [(sid, x, y, sorted(s)) for sid, (x, y, s) in sorted(rows.items())],
        columns=["surveyId", "x", "y", "speciesIds"],
    )
    frame.attrs["skipped"] = skipped
    return frame, crs_text(layer.crs())
