"""``geoplant:predict``: Processing parameters -> one ``core.predict.PredictRequest``, run.

Layers become file paths, the AREA's features WKB geometries in the layer's CRS (an
``Area``), the EXTENT an ``Extent`` (all read here, in the algorithm's thread); MAPPING
keeps its text forms for ``qgis_process`` users. Every rule (EXTENT or AREA, at least one
output, ranges...) is checked by ``PredictRequest.build``, once. Loaded results get a
style: richness a continuous ramp, probabilities a 0-1 ramp, top-K the QGIS style written
next to it (``core.predict.outputs.topk_palette``, species names as labels).
"""

from __future__ import annotations

import os

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterCrs,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterString,
)

from .base import GeoPlantAlgorithm
from .device import add_device, read_device
from .device import help_text as device_help
from .inputs import layer_file
from .limits import add_max_cells, read_max_cells
from .limits import help_text as max_cells_help
from .params import (
    add_model_parameters,
    given,
    raster_paths,
    read_area,
    read_crs,
    read_extent,
    read_number,
)
from .styles import apply_on_load, band_range, named_ramp, pseudocolor, species_label, style_probability

#: TOPK_MODE's options, by name (core.predict.outputs.TOPK_MODES; no core import at load)
TOPK_MODES = ("fixed", "richness")


def read_topk_mode(parameters) -> str:
    """TOPK_MODE by name (``TOPK_MODE=richness``) or, as the enum's index, by number; other
    text is handed to core, which refuses it in words."""
    value = parameters.get("TOPK_MODE")
    if value is None or (isinstance(value, str) and not value.strip()):
        return TOPK_MODES[0]
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        index = int(value)
        if 0 <= index < len(TOPK_MODES):
            return TOPK_MODES[index]
    return str(value)


OUTPUTS = (
    ("OUTPUT_RICHNESS", "richness", "Richness (expected number of species)"),
    ("OUTPUT_TOPK", "topk", "Top-K species"),
    ("OUTPUT_PROBABILITIES", "probabilities", "Species probabilities"),
)


def _output_style(key: str, path: str):
    """The style a loaded output gets: the top-K's own .qml (species names), richness a ramp
    over its values, probabilities a 0-1 ramp."""
    if key == "topk":
        qml = os.path.splitext(path)[0] + ".qml"
        return lambda layer: os.path.exists(qml) and layer.loadNamedStyle(qml)
    if key == "probabilities":
        return style_probability

    def richness(layer):
        low, high = band_range(layer, 1)
        pseudocolor(layer, 1, low, high, named_ramp("Viridis", ("#440154", "#fde725")), species_label)

    return richness


class PredictAlgorithm(GeoPlantAlgorithm):
    ALGORITHM_ID = "predict"
    DISPLAY_NAME = "Predict species distributions"
    REQUIRES = ("onnxruntime", "onnx", "google.protobuf")  # dependencies.MODEL_RUN_DEPENDENCIES
    HELP = (
        "Runs a GeoPlant ONNX model (with its geoplant-onnx/1 card) over every cell of a grid and "
        "writes GeoTIFFs.\n\n"
        "MODEL: the .onnx model (default: the bundled demo model). RASTERS: the rasters holding the "
        "model's variables: a band whose description is the variable's name, or a one-band raster "
        "named after it (case, '_', '-' and spaces ignored). MAPPING (optional) overrides: "
        "'variable=path[#band]' pairs separated by ';', or a CSV file variable,path,band.\n\n"
        "EXTENT or AREA (polygons: cells whose centre is outside are nodata). CRS and CELL_SIZE: "
        "the grid, projected, in metres (default: the model card's grid, else EPSG:3035 and 100 m); "
        "its origin is snapped to multiples of the cell size. A cell is nodata where any input "
        "has no data.\n\n"
        "Outputs (at least one): richness (float32, the sum of probabilities, or with THRESHOLD the "
        "number of species with p >= THRESHOLD; softmax models need THRESHOLD), top-K (int32, K "
        "bands of species ids by decreasing probability, ties in card order, with a CSV of names "
        "and a QGIS style), probabilities (float32, one band per species). Richness and top-K always "
        "cover every species of the model; SPECIES (ids or names, comma separated; default all) "
        "chooses which probability bands are written, in the order given. Files appear under their "
        "names only when the run succeeds.\n\n"
        "TOPK_MODE: fixed (default: every cell gets its TOP_K species) or richness (GeoPlant's 'Top-K "
        "estimation': each cell's K is its richness rounded to a whole number, plus TOPK_MARGIN, kept "
        "from 1 to TOP_K; the ranks after it are nodata, -1). The richness is the one of the "
        "richness output (the sum of probabilities, or with THRESHOLD the number of species with "
        "p >= THRESHOLD), computed even when that raster is not written; softmax models need "
        "THRESHOLD. TOPK_MARGIN: a whole number (default 0, may be negative). The top-K raster keeps "
        "its TOP_K bands and names.\n\n" + max_cells_help() + "\n\n" + device_help()
    )

    def initAlgorithm(self, config=None):
        add_model_parameters(self, "Model (.onnx)", "Environmental rasters")
        self.addParameter(QgsProcessingParameterExtent("EXTENT", self.tr("Extent"), optional=True))
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                "AREA", self.tr("Area (polygons)"), [QgsProcessing.TypeVectorPolygon], optional=True
            )
        )
        self.addParameter(QgsProcessingParameterCrs("CRS", self.tr("Grid CRS (projected)"), optional=True))
        self.addParameter(
            QgsProcessingParameterNumber(
                "CELL_SIZE",
                self.tr("Cell size (metres)"),
                QgsProcessingParameterNumber.Double,
                optional=True,
                minValue=0.0,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                "TOP_K",
                self.tr("K most probable species (0 = none)"),
                QgsProcessingParameterNumber.Integer,
                defaultValue=25,
                minValue=0,
            )
        )
        self.addParameter(
            QgsProcessingParameterEnum(
                "TOPK_MODE", self.tr("K of each cell's top-K (fixed: TOP_K; richness: from its richness)"),
                options=list(TOPK_MODES), allowMultiple=False, defaultValue="fixed", optional=False,
                usesStaticStrings=True,
            )
        )  # fmt: skip
        self.addParameter(
            QgsProcessingParameterNumber(
                "TOPK_MARGIN",
                self.tr("Margin added to each cell's rounded richness (TOPK_MODE richness)"),
                QgsProcessingParameterNumber.Integer,
                defaultValue=0,
            )
        )
        self.addParameter(
            QgsProcessingParameterString(
                "SPECIES",
                self.tr("Species of the probability bands (ids or names, comma separated; default all)"),
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                "THRESHOLD",
                self.tr("Presence threshold (richness counts p >= threshold)"),
                QgsProcessingParameterNumber.Double,
                optional=True,
                minValue=0.0,
                maxValue=1.0,
            )
        )
        for name, _, label in OUTPUTS:
            self.addParameter(
                QgsProcessingParameterRasterDestination(
                    name, self.tr(label), optional=True, createByDefault=False
                )
            )
        add_max_cells(self)
        add_device(self)
        self.addOutput(QgsProcessingOutputNumber("CELLS", self.tr("Cells")))
        self.addOutput(QgsProcessingOutputNumber("VALID_CELLS", self.tr("Valid cells")))
        self.addOutput(QgsProcessingOutputNumber("SECONDS", self.tr("Seconds")))

    def execute(self, parameters, context, feedback, progress):
        """The parameters read into one :class:`core.predict.PredictRequest` (checked there,
        once), then run."""
        from ..core.predict import Area, Extent, PredictRequest, run

        model = self.parameterAsFile(parameters, "MODEL", context)
        if not model:
            raise QgsProcessingException("Choose a MODEL (.onnx file with a geoplant card).")
        extent, extent_crs = read_extent(self, parameters, context)
        area, area_crs = read_area(self, parameters, context, feedback)
        paths = {}
        for name, key, _ in OUTPUTS:
            if not given(parameters, name):
                continue
            path = self.parameterAsOutputLayer(parameters, name, context)
            if not path:
                continue
            if os.path.splitext(path)[1].lower() not in (".tif", ".tiff"):
                raise QgsProcessingException(f"{name} must be a GeoTIFF (.tif) file, not {path}.")
            paths[key] = path
        request = PredictRequest.build(
            model,
            raster_paths(self, parameters, context, "RASTERS"),
            mapping=self.parameterAsString(parameters, "MAPPING", context) or None,  # its text forms
            extent=None if extent is None else Extent(*extent, extent_crs),
            area=None if area is None else Area(tuple(area), area_crs),
            crs=read_crs(self, parameters, context),
            cell_size=read_number(self, parameters, "CELL_SIZE", context),
            top_k=read_number(self, parameters, "TOP_K", context, default=0),
            species=self.parameterAsString(parameters, "SPECIES", context) or None,
            threshold=read_number(self, parameters, "THRESHOLD", context),
            outputs=paths,
            input_files={"AREA": layer_file(self, parameters, context, "AREA")},
            max_cells=read_max_cells(self, parameters, context),
            topk_mode=read_topk_mode(parameters),
            topk_margin=read_number(self, parameters, "TOPK_MARGIN", context, default=0),
            device=read_device(self, parameters, context),
        )
        result = run(request, progress)

        outputs = {"CELLS": result.cells, "VALID_CELLS": result.valid_cells, "SECONDS": result.seconds}
        for name, key, label in OUTPUTS:
            path = result.outputs.get(key)
            outputs[name] = path
            if path and apply_on_load(context, path, _output_style(key, path)):
                context.layerToLoadOnCompletionDetails(path).name = label
        return outputs
