"""geoplant:ensemble — mean, SD and agreement of several probability rasters (thin adapter).

Hands the rasters' paths to :func:`geoplant_qgis.core.decisions.ensemble.ensemble`.
"""

from __future__ import annotations

from qgis.core import (
    QgsProcessing,
    QgsProcessingParameterMultipleLayers,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
)

from .base import GeoPlantAlgorithm
from .params import given, raster_paths, read_number


class EnsembleAlgorithm(GeoPlantAlgorithm):
    ALGORITHM_ID = "ensemble"
    DISPLAY_NAME = "Ensemble of probability rasters"
    REQUIRES = ("numpy", "rasterio")
    HELP = (
        "Combines several probability rasters from 'Predict' (e.g. several models' runs) on the same grid "
        "with the same species bands: per species the mean (OUTPUT_MEAN) and the population standard "
        "deviation across members (OUTPUT_SD), float32; with a THRESHOLD, OUTPUT_AGREEMENT counts the "
        "members with p >= THRESHOLD (uint8). Rasters that differ in CRS, cell size, origin, size or "
        "species (ids or order) are refused with the difference named. A cell that is nodata in any "
        "member is nodata in the outputs."
    )

    def initAlgorithm(self, config=None):
        self.addParameter(
            QgsProcessingParameterMultipleLayers(
                "INPUTS", self.tr("Probability rasters (same grid, same species)"), QgsProcessing.TypeRaster
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                "THRESHOLD", self.tr("Threshold for the agreement"), QgsProcessingParameterNumber.Double,
                optional=True, minValue=0.0, maxValue=1.0,
            )
        )  # fmt: skip
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT_MEAN", self.tr("Mean")))
        self.addParameter(QgsProcessingParameterRasterDestination("OUTPUT_SD", self.tr("Standard deviation")))
        self.addParameter(
            QgsProcessingParameterRasterDestination(
                "OUTPUT_AGREEMENT", self.tr("Agreement (members with p >= THRESHOLD)"), optional=True,
                createByDefault=False,
            )
        )  # fmt: skip

    def execute(self, parameters, context, feedback, progress):
        from ..core.decisions.ensemble import ensemble
        from ..core.errors import InputDataError

        inputs = raster_paths(self, parameters, context, "INPUTS")
        threshold = (
            read_number(self, parameters, "THRESHOLD", context) if given(parameters, "THRESHOLD") else None
        )
        agreement = None
        if given(parameters, "OUTPUT_AGREEMENT"):
            agreement = self.parameterAsOutputLayer(parameters, "OUTPUT_AGREEMENT", context) or None
        if agreement and threshold is None:
            raise InputDataError("OUTPUT_AGREEMENT counts the members with p >= THRESHOLD: give a THRESHOLD.")
        result = ensemble(
            inputs,
            output_mean=self.parameterAsOutputLayer(parameters, "OUTPUT_MEAN", context),
            output_sd=self.parameterAsOutputLayer(parameters, "OUTPUT_SD", context),
            threshold=threshold,
            output_agreement=agreement,
            progress=progress,
        )
        progress.info(f"Ensemble of {len(inputs)} rasters, {len(result.species_ids)} species.")
        return dict(result.outputs)
