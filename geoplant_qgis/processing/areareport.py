"""geoplant:areareport — per candidate site, the species expected and how sure (thin adapter).

Reads the AREA's features (label: a ``name`` field when there is one, else the feature id)
as WKB and hands them, with a probability raster's path or a model and its rasters, to
:mod:`geoplant_qgis.core.decisions.areareport`.
"""

from __future__ import annotations

from qgis.core import (
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingParameterCrs,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
)

from .base import GeoPlantAlgorithm
from .device import add_device, read_device
from .device import help_text as device_help
from .inputs import layer_file
from .params import (
    add_model_parameters,
    crs_text,
    given,
    is_null,
    raster_layer_path,
    raster_paths,
    read_crs,
    read_number,
)


def read_sites(alg, parameters, context, progress, name="AREA"):
    """[(label, WKB)] of the AREA's polygons and their CRS text; a ``name`` field labels a site
    (case ignored; empty values fall back to the feature id)."""
    source = alg.parameterAsSource(parameters, name, context)
    if source is None:
        raise QgsProcessingException(f"The {name} layer cannot be read.")
    field = next((f for f in source.fields().names() if f.lower() == "name"), None)
    sites, skipped, seen = [], 0, {}
    for feature in source.getFeatures():
        progress.check_cancelled()
        geometry = feature.geometry()
        if geometry is None or geometry.isEmpty():
            skipped += 1
            continue
        value = feature[field] if field else None
        label = str(feature.id()) if field is None or is_null(value) or not str(value).strip() else str(value)
        if label in seen:
            label = f"{label} (feature {feature.id()})"
        seen[label] = True
        sites.append((label, bytes(geometry.asWkb())))
    if skipped:
        progress.warning(f"{name}: {skipped} feature(s) without a geometry were left out.")
    return sites, crs_text(source.sourceCrs())


class AreaReportAlgorithm(GeoPlantAlgorithm):
    ALGORITHM_ID = "areareport"
    DISPLAY_NAME = "Area report: species expected per site"
    REQUIRES = ("numpy", "rasterio", "matplotlib")  # MODEL_RUN_DEPENDENCIES too when MODEL is used
    HELP = (
        "For each site of AREA (one polygon per feature, labelled by a 'name' field when there is one, "
        "else by the feature id): the species expected and how sure. A site's cells are the cells whose "
        "centre lies inside its polygon.\n\n"
        "Probabilities come from PROBABILITIES (a probability raster from 'Predict', bands '<name> (<id>)', "
        "in a projected CRS so that areas are true) or, when it is empty, from MODEL run on RASTERS "
        "(MAPPING, CRS, CELL_SIZE as in 'Predict') under the sites only, in a private temporary folder "
        "removed at the end.\n\n"
        "OUTPUT_TABLE: one CSV row per site and species (site, speciesId, species, cells, "
        "mean_probability, max_probability, area_ha_above_threshold). OUTPUT_REPORT: an HTML report with "
        "charts: per site the expected richness (sum of probabilities per cell: mean, min, max, "
        "histogram) and the species ranked by mean probability with their area above THRESHOLD; across "
        "sites, the species expected (mean probability >= THRESHOLD) in one site only.\n\n" + device_help()
    )

    def initAlgorithm(self, config=None):
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                "AREA",
                self.tr("Sites (polygons; a 'name' field labels them)"),
                [QgsProcessing.TypeVectorPolygon],
            )
        )
        self.addParameter(
            QgsProcessingParameterRasterLayer(
                "PROBABILITIES", self.tr("Probability raster from Predict"), optional=True
            )
        )
        add_model_parameters(
            self,
            "Model (.onnx), used when PROBABILITIES is empty",
            "Input rasters (for MODEL)",
            model_optional=True,
        )
        add_device(self)
        self.addParameter(
            QgsProcessingParameterCrs("CRS", self.tr("Grid CRS for MODEL (projected)"), optional=True)
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                "CELL_SIZE", self.tr("Cell size for MODEL (metres)"), QgsProcessingParameterNumber.Double,
                optional=True, minValue=0.001,
            )
        )  # fmt: skip
        self.addParameter(
            QgsProcessingParameterNumber(
                "THRESHOLD", self.tr("Threshold (area above it; species expected when mean p >= it)"),
                QgsProcessingParameterNumber.Double, defaultValue=0.5, minValue=0.0, maxValue=1.0,
            )
        )  # fmt: skip
        self.addParameter(
            QgsProcessingParameterFileDestination(
                "OUTPUT_TABLE", self.tr("Site x species table (CSV)"), fileFilter="CSV files (*.csv)"
            )
        )
        self.addParameter(
            QgsProcessingParameterFileDestination(
                "OUTPUT_REPORT", self.tr("Report (HTML)"), fileFilter="HTML files (*.html)"
            )
        )

    def execute(self, parameters, context, feedback, progress):
        from ..core.decisions.areareport import area_report, predict_under_sites
        from ..core.errors import InputDataError

        table = self.parameterAsFileOutput(parameters, "OUTPUT_TABLE", context)
        report = self.parameterAsFileOutput(parameters, "OUTPUT_REPORT", context)
        threshold = read_number(self, parameters, "THRESHOLD", context, default=0.5)
        inputs = {"AREA": layer_file(self, parameters, context, "AREA")}
        sites, sites_crs = read_sites(self, parameters, context, progress)
        if given(parameters, "PROBABILITIES"):
            layer = self.parameterAsRasterLayer(parameters, "PROBABILITIES", context)
            if layer is None:
                raise QgsProcessingException(
                    "PROBABILITIES cannot be read: give the probability raster from Predict."
                )
            result = area_report(
                raster_layer_path(layer),
                sites,
                sites_crs,
                threshold=threshold,
                output_table=table,
                output_report=report,
                progress=progress,
                input_files=inputs,
            )
        else:
            model = self.parameterAsFile(parameters, "MODEL", context)
            if not model:
                raise InputDataError("Give PROBABILITIES (a probability raster) or a MODEL with its RASTERS.")
            from ..dependencies import check_model_run_dependencies

            check_model_run_dependencies()
            rasters = (
                raster_paths(self, parameters, context, "RASTERS") if given(parameters, "RASTERS") else []
            )
            mapping = self.parameterAsString(parameters, "MAPPING", context) or None
            cell_size = (
                read_number(self, parameters, "CELL_SIZE", context)
                if given(parameters, "CELL_SIZE")
                else None
            )
            result = predict_under_sites(
                model,
                rasters,
                sites,
                sites_crs,
                mapping=mapping,
                crs=read_crs(self, parameters, context),
                cell_size=cell_size,
                threshold=threshold,
                output_table=table,
                output_report=report,
                progress=progress,
                input_files=inputs,
                device=read_device(self, parameters, context),
            )
        progress.info(f"{len(result.sites)} sites, {result.raster.count} species, threshold {threshold:g}.")
        return {"OUTPUT_TABLE": table, "OUTPUT_REPORT": report}
