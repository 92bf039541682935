"""Reading Processing parameters into the plain data core takes (paths, tuples, WKB).

Shared by the algorithms so that EXTENT, AREA, CRS and raster layers mean the same
everywhere. Everything here runs in the algorithm's thread; core never sees a QGIS object.
"""

from __future__ import annotations

import math
import os
import re

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingParameterFile,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterString,
)

from ..core.bundled import default_model_path
from ..core.errors import GeoPlantError


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
    """A raster layer's file (or GDAL dataset name) for core; refuses non-GDAL layers
    (the rule of :func:`geoplant_qgis.layers.raster_layer_path`, shared with the dock)."""
    from ..core.errors import InputDataError
    from ..layers import raster_layer_path as layer_path

    try:
        return layer_path(layer)
    except InputDataError as error:
        raise QgsProcessingException(str(error)) from None


def raster_paths(alg, parameters, context, name="RASTERS") -> list[str]:
    """The files of a multiple-raster-layers parameter."""
    return [raster_layer_path(layer) for layer in alg.parameterAsLayerList(parameters, name, context)]


def read_extent(alg, parameters, context, name="EXTENT"):
    """(xmin, ymin, xmax, ymax) and its CRS text, or (None, None) when not given or empty."""
    if not given(parameters, name):
        return None, None
    problem = _extent_problem(alg, parameters, name, context)
    if problem:
        raise QgsProcessingException(problem)
    rect = alg.parameterAsExtent(parameters, name, context)
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
    """The CRS as text, None when not given; a CRS given but invalid (or not in metres) is refused,
    never replaced by a default."""
    if not given(parameters, name):
        return None
    problem = _crs_problem(alg, parameters, name, context)
    if problem:
        raise QgsProcessingException(problem)
    return crs_text(alg.parameterAsCrs(parameters, name, context))


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


# --- parameter values checked before a run: one plain sentence per problem ---------------------

_EXTENT_TEXT = re.compile(r"^\s*([^\[\]]*?)\s*(?:\[(.*)\])?\s*$", re.S)


def _number_problem(definition, value) -> str | None:
    from ..core import checks

    name = definition.name()
    integer = definition.dataType() == QgsProcessingParameterNumber.Integer
    rules = {
        "CELL_SIZE": lambda v: checks.cell_size(v, name),
        "PIXEL_SIZE": lambda v: checks.cell_size(v, name),
        "THRESHOLD": lambda v: checks.threshold(v, name),
        "SIZE": lambda v: checks.number(v, name, minimum=1, maximum=4096, integer=True, what="pixels"),
    }
    if name == "TOP_K":
        low = max(0, int(definition.minimum()))
        rules[name] = lambda v: checks.number(
            v, name, minimum=low, maximum=checks.MAX_TOP_K, integer=True,
            what=f"{'0 for none, ' if low == 0 else ''}up to the model's number of species",
        )  # fmt: skip
    rule = rules.get(name)
    if rule is None:
        low, high = definition.minimum(), definition.maximum()
        if integer:
            low, high = max(low, -(2**31)), min(high, 2**31 - 1)
        low = low if low > -1e300 else None
        high = high if high < 1e300 else None

        def rule(v):
            return checks.number(v, name, minimum=low, maximum=high, integer=integer)

    try:
        rule(value)
    except GeoPlantError as error:
        return str(error)
    return None


def _crs_problem(alg, parameters, name, context) -> str | None:
    """An invalid CRS, or one whose units are not metres (every CRS parameter here is the CRS
    of a grid or of patches, in metres)."""
    from qgis.core import QgsUnitTypes

    value = parameters.get(name)
    shown = value if isinstance(value, str) else crs_text(value) or str(value)
    crs = alg.parameterAsCrs(parameters, name, context)
    if crs is None or not crs.isValid():
        return (
            f"{name} '{shown}' is not a coordinate reference system QGIS knows. Give a projected CRS in "
            f"metres as 'EPSG:<code>', e.g. EPSG:3035 (Europe, equal area) or EPSG:32631 (UTM zone 31N)."
        )
    if crs.isGeographic() or crs.mapUnits() == QgsUnitTypes.DistanceDegrees:
        return (
            f"{name} {crs.authid() or shown} is not projected (its units are degrees): cells must be square "
            f"in metres. Choose a projected CRS such as EPSG:3035 (Europe, equal area) or a UTM zone."
        )
    if "+proj=geocent" in crs.toProj() or crs.toWkt().upper().startswith("GEOCCS"):
        return (
            f"{name} {crs.authid() or shown} is geocentric (3D X, Y, Z from the Earth's centre), not a map "
            f"projection: choose a projected CRS in metres such as EPSG:3035 or a UTM zone."
        )
    if crs.mapUnits() != QgsUnitTypes.DistanceMeters:
        units = QgsUnitTypes.toString(crs.mapUnits())
        return (
            f"{name} {crs.authid() or shown} measures in {units}, not metres: choose a CRS in metres "
            f"such as EPSG:3035."
        )
    return None


def _extent_problem(alg, parameters, name, context) -> str | None:
    from qgis.core import QgsCoordinateReferenceSystem

    from ..core import checks

    value = parameters.get(name)
    if isinstance(value, str):
        match = _EXTENT_TEXT.match(value)
        numbers = match.group(1).split(",") if match else []
        if match and len(numbers) == 4:
            xmin, xmax, ymin, ymax = numbers
            problem = checks.extent_problem((xmin, ymin, xmax, ymax), name)
            if problem:
                return f"{problem} (given: '{value.strip()}')"
            crs = (match.group(2) or "").strip()
            if crs and not QgsCoordinateReferenceSystem(crs).isValid():
                return (
                    f"The CRS of {name}, '{crs}', is not a coordinate reference system QGIS knows. Give the "
                    f"extent as 'xmin,xmax,ymin,ymax [EPSG:<code>]' with a valid code, e.g. [EPSG:3035] or "
                    f"[EPSG:4326]."
                )
            return None
        if match and len(numbers) > 1:
            return (
                f"{name} '{value.strip()}' has {len(numbers)} numbers; give four: "
                f"'xmin,xmax,ymin,ymax [CRS]', e.g. '3700000,3800000,2600000,2700000 [EPSG:3035]'."
            )
    rect = alg.parameterAsExtent(parameters, name, context)
    if rect is None or rect.isNull():
        return (
            f"{name} '{value}' is neither 'xmin,xmax,ymin,ymax [CRS]' (e.g. "
            f"'3700000,3800000,2600000,2700000 [EPSG:3035]') nor a layer with an extent."
        )
    return checks.extent_problem((rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum()), name)


def _bands_problem(name, value) -> str | None:
    values = value if isinstance(value, list | tuple) else re.split(r"[;,\s]+", str(value).strip())
    for v in values:
        number = whole_number(v)
        if number is None or number < 1:
            return f"{name} must be band numbers (whole numbers from 1, e.g. 1;2;3;4); got {v!r}."
    return None


def parameter_problem(alg, parameters, context) -> str | None:
    """The first parameter value that cannot be right, in words (its name, what was given and
    what to give), or None. Values computed from expressions (QgsProperty) are left to the run."""
    from qgis.core import (
        QgsProcessingParameterBand,
        QgsProcessingParameterCrs,
        QgsProcessingParameterExtent,
        QgsProperty,
    )

    for definition in alg.parameterDefinitions():
        name = definition.name()
        if not given(parameters, name) or isinstance(parameters.get(name), QgsProperty):
            continue
        value = parameters[name]
        problem = None
        if isinstance(definition, QgsProcessingParameterNumber):
            problem = _number_problem(definition, value)
        elif isinstance(definition, QgsProcessingParameterCrs):
            problem = _crs_problem(alg, parameters, name, context)
        elif isinstance(definition, QgsProcessingParameterExtent):
            problem = _extent_problem(alg, parameters, name, context)
        elif isinstance(definition, QgsProcessingParameterBand):
            problem = _bands_problem(name, value)
        elif isinstance(definition, QgsProcessingParameterFile):
            problem = _file_problem(definition, value)
        elif isinstance(definition, QgsProcessingParameterMultipleLayers | QgsProcessingParameterRasterLayer):
            problem = _layer_files_problem(name, value, context)
        if problem:
            return problem
    return None


def _file_problem(definition, value) -> str | None:
    """A file parameter given as a path: it exists, is not a folder (unless a folder is
    asked for), and has the extension asked for."""
    if not isinstance(value, str) or not value.strip():
        return None
    path, name = value.strip(), definition.name()
    if definition.behavior() == QgsProcessingParameterFile.Folder:
        return None if os.path.isdir(path) else f"{name}: the folder {path} does not exist."
    if os.path.isdir(path):
        return f"{name}: {path} is a folder; give a file."
    if not os.path.exists(path):
        return f"{name}: the file {path} does not exist."
    extension = definition.extension()
    if extension and not path.lower().endswith("." + extension.lower()):
        hint = " (decompress it first)" if path.lower().endswith((".gz", ".zip", ".bz2", ".xz")) else ""
        return f"{name}: {os.path.basename(path)} is not a .{extension} file{hint}."
    return None


def _layer_files_problem(name, value, context) -> str | None:
    """A layer parameter given as file names (qgis_process, scripts): each names a file or a
    GDAL dataset, or a layer of the project."""
    values = value if isinstance(value, list | tuple) else [value]
    project = context.project() if context is not None else None
    for item in values:
        if not isinstance(item, str) or not item.strip():
            continue
        text = item.strip()
        if project is not None and (project.mapLayer(text) is not None or project.mapLayersByName(text)):
            continue
        path = text.split("|", 1)[0]
        if text.startswith("/vsi") or ":" in path[2:] or "://" in text:
            continue  # a GDAL dataset name: GDAL says whether it opens
        if os.path.isdir(path):
            return f"{name}: {path} is a folder; give raster files."
        if not os.path.exists(path):
            return f"{name}: the file {path} does not exist (and no layer of the project has that name)."
    return None


def read_number(alg, parameters, name, context, default=None):
    """A number parameter as int (Integer) or float, checked by :func:`parameter_problem`'s
    rules; ``default`` when not given. Never wraps around (parameterAsInt does: 99999999999 -> 0)."""
    definition = alg.parameterDefinition(name)
    if given(parameters, name):
        value = parameters[name]
    elif definition.defaultValue() is not None:
        value = definition.defaultValue()
    else:
        return default
    from qgis.core import QgsProperty

    if isinstance(value, QgsProperty):
        value = alg.parameterAsDouble(parameters, name, context)
    problem = _number_problem(definition, value)
    if problem:
        raise QgsProcessingException(problem)
    number = float(value.strip() if isinstance(value, str) else value)
    return int(number) if definition.dataType() == QgsProcessingParameterNumber.Integer else number
