"""``geoplant:sampleenvironment``: raster values at survey points or grid cells, as a GeoPlant
environmental-values CSV. Layers become paths and plain arrays here; core does the work."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterCrs,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from .base import GeoPlantAlgorithm
from .inputs import layer_file
from .limits import add_max_cells, read_max_cells
from .limits import help_text as max_cells_help
from .params import (
    crs_text,
    given,
    is_null,
    raster_paths,
    read_area,
    read_crs,
    read_extent,
    read_number,
    whole_number,
)

ID_FIELD = "surveyId"

if TYPE_CHECKING:  # imported at run time only: rasterio is not loaded with the plugin
    from ..core.extract import GridArea, Points


def add_location_parameters(alg, default_cell_size=100.0):
    """POINTS, or a grid: EXTENT / AREA + CELL_SIZE + CRS."""
    alg.addParameter(
        QgsProcessingParameterFeatureSource(
            "POINTS", alg.tr("Survey points (with a surveyId field)"), [QgsProcessing.TypeVectorPoint],
            optional=True,
        )
    )  # fmt: skip
    alg.addParameter(QgsProcessingParameterExtent("EXTENT", alg.tr("Grid extent"), optional=True))
    alg.addParameter(
        QgsProcessingParameterFeatureSource(
            "AREA", alg.tr("Grid area (polygons)"), [QgsProcessing.TypeVectorPolygon], optional=True
        )
    )
    alg.addParameter(
        QgsProcessingParameterNumber(
            "CELL_SIZE", alg.tr("Grid cell size (metres)"), QgsProcessingParameterNumber.Double,
            default_cell_size, minValue=0.001,
        )
    )  # fmt: skip
    alg.addParameter(
        QgsProcessingParameterCrs("CRS", alg.tr("Grid CRS (projected)"), "EPSG:3035", optional=True)
    )


def read_points(alg, parameters, context, feedback, integer_ids=False) -> Points | None:
    """The POINTS layer as ids + coordinates in its CRS (None when not given)."""
    if not given(parameters, "POINTS"):
        return None
    source = alg.parameterAsSource(parameters, "POINTS", context)
    if source is None:
        raise QgsProcessingException("The POINTS layer cannot be read.")
    names = source.fields().names()
    field = next((n for n in names if n.lower() == ID_FIELD.lower()), None)
    if field is None:
        raise QgsProcessingException(
            f"The POINTS layer has no '{ID_FIELD}' field (fields: {', '.join(names) or 'none'}). "
            f"Load surveys with geoplant:loadobservations or add a {ID_FIELD} field."
        )
    index = names.index(field)
    ids, xs, ys = [], [], []
    skipped = 0  # features without a usable point or id: counted and said, never dropped silently
    for feature in source.getFeatures():
        if feedback is not None and feedback.isCanceled():
            break
        geometry = feature.geometry()
        if geometry is None or geometry.isEmpty():
            skipped += 1
            continue
        point = geometry.vertexAt(0)
        value = feature.attributes()[index]
        if is_null(value) or not (math.isfinite(point.x()) and math.isfinite(point.y())):
            skipped += 1
            continue
        if integer_ids or isinstance(value, float):
            number = whole_number(value)
            if number is None or number < 0:
                raise QgsProcessingException(f"{ID_FIELD} '{value}' is not a whole number.")
            value = number
        ids.append(value)
        xs.append(point.x())
        ys.append(point.y())
    if not ids:
        raise QgsProcessingException("The POINTS layer has no point with a surveyId.")
    if skipped and feedback is not None:
        feedback.reportError(
            f"{skipped} feature(s) of POINTS were left out: no geometry, coordinates that are not "
            f"numbers, or no {ID_FIELD}.",
            False,
        )
    array = (
        np.array(ids, dtype=np.int64) if all(isinstance(i, int) for i in ids) else np.array(ids, dtype=object)
    )
    from ..core.extract import Points

    return Points(array, np.array(xs), np.array(ys), crs_text(source.sourceCrs()))


def read_grid(alg, parameters, context, feedback) -> GridArea | None:
    """The grid from EXTENT / AREA / CELL_SIZE / CRS (None when neither EXTENT nor AREA)."""
    extent, extent_crs = read_extent(alg, parameters, context)
    area, area_crs = read_area(alg, parameters, context, feedback)
    if extent is None and area is None:
        return None
    crs = read_crs(alg, parameters, context) or "EPSG:3035"
    cell_size = read_number(alg, parameters, "CELL_SIZE", context, default=100.0)
    from ..core.extract import GridArea

    return GridArea(crs, cell_size, extent, extent_crs, area, area_crs)


class SampleEnvironmentAlgorithm(GeoPlantAlgorithm):
    ALGORITHM_ID = "sampleenvironment"
    DISPLAY_NAME = "Sample environmental rasters"
    HELP = (
        "Values of RASTERS at survey POINTS (a layer with a surveyId field, e.g. from "
        "geoplant:loadobservations), or at the centres of a grid (EXTENT / AREA, CELL_SIZE, CRS), "
        "written as a GeoPlant environmental-values CSV: surveyId (or cellId, x, y) then one column "
        "per variable; nodata is left empty. A point takes the value of the pixel containing it "
        "(no interpolation), as geoplant:predict does. Variables are named by band description, "
        "else by file name (one-band rasters); MAPPING (variable=path[#band];... or a CSV file "
        "variable,path,band) adds or renames variables.\n\n" + max_cells_help()
    )
    REQUIRES = ("numpy", "rasterio")

    def initAlgorithm(self, config=None):
        add_location_parameters(self)
        self.addParameter(
            QgsProcessingParameterMultipleLayers(
                "RASTERS", self.tr("Rasters"), QgsProcessing.TypeRaster, optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterString(
                "MAPPING", self.tr("Variable mapping (variable=path[#band];... or a CSV file)"), optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterFileDestination(
                "OUTPUT", self.tr("Environmental values"), "CSV files (*.csv)"
            )
        )
        add_max_cells(self)
        self.addOutput(QgsProcessingOutputNumber("ROWS", self.tr("Rows written")))

    def execute(self, parameters, context, feedback, progress):
        from ..core.extract import sample_environment

        rasters = raster_paths(self, parameters, context)
        mapping = self.parameterAsString(parameters, "MAPPING", context) or None
        points = read_points(self, parameters, context, feedback)
        grid = None if points is not None else read_grid(self, parameters, context, feedback)
        if points is None and grid is None:
            raise QgsProcessingException("Give POINTS, or an EXTENT or an AREA for a grid.")
        output = self.parameterAsFileOutput(parameters, "OUTPUT", context)
        layers = {name: layer_file(self, parameters, context, name) for name in ("POINTS", "AREA")}
        result = sample_environment(
            output,
            rasters,
            mapping,
            points=points,
            grid=grid,
            progress=progress,
            input_files=layers,
            max_cells=read_max_cells(self, parameters, context),
        )
        return {"OUTPUT": result.path, "ROWS": result.rows}
