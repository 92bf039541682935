"""geoplant:loadpatches -- GeoPlant Sentinel-2 patches as georeferenced GeoTIFFs + one mosaic."""

from __future__ import annotations

from qgis.core import (
    QgsProcessing,
    QgsProcessingContext,
    QgsProcessingOutputNumber,
    QgsProcessingOutputRasterLayer,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFile,
    QgsProcessingParameterFolderDestination,
)

from .base import GeoPlantAlgorithm
from .loadobservations import area_filter
from .styles import StylePostProcessor, style_true_colour


class LoadPatchesAlgorithm(GeoPlantAlgorithm):
    ALGORITHM_ID = "loadpatches"
    DISPLAY_NAME = "Load GeoPlant satellite patches"
    HELP = (
        "Writes each Sentinel-2 patch of a GeoPlant / GeoLifeCLEF dataset folder as a georeferenced "
        "4-band GeoTIFF (red, green, blue, nir; EPSG:3035) at OUTPUT_FOLDER/CD/AB/<surveyId>.tiff, "
        "and a patches.vrt mosaic loaded as one true-colour layer. The layout is detected: GLC24 "
        "(RGB and NIR JPEGs under *_patches_rgb / *_patches_nir, placed so the patch centre is the "
        "survey position from METADATA) or GLC25 (SatelitePatches/.../CD/AB/<id>.tiff). "
        "METADATA (the PA/PO CSV) is required for GLC24; EXTENT / AREA keep the surveys inside."
    )
    REQUIRES = ("pandas",)

    def initAlgorithm(self, config=None):
        self.addParameter(
            QgsProcessingParameterFile(
                "INPUT", self.tr("GeoPlant patch folder"), behavior=QgsProcessingParameterFile.Folder
            )
        )
        self.addParameter(
            QgsProcessingParameterFile(
                "METADATA", self.tr("Survey positions (PA / PO metadata CSV)"), extension="csv", optional=True
            )
        )
        self.addParameter(QgsProcessingParameterExtent("EXTENT", self.tr("Extent"), optional=True))
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                "AREA", self.tr("Area (polygons)"), [QgsProcessing.TypeVectorPolygon], optional=True
            )
        )
        self.addParameter(QgsProcessingParameterFolderDestination("OUTPUT_FOLDER", self.tr("Output folder")))
        self.addOutput(QgsProcessingOutputRasterLayer("OUTPUT_VRT", self.tr("Patches mosaic")))
        self.addOutput(QgsProcessingOutputNumber("COUNT", self.tr("Patches written")))

    def execute(self, parameters, context, feedback, progress):
        folder = self.parameterAsFile(parameters, "INPUT", context)
        metadata = self.parameterAsFile(parameters, "METADATA", context) or None
        output_folder = self.parameterAsString(parameters, "OUTPUT_FOLDER", context)
        bounds, predicate = area_filter(self, parameters, context)
        from ..core.geoplant.patches import export_patches  # at run time: loads faster

        result = export_patches(
            folder, output_folder, metadata=metadata, bounds=bounds, predicate=predicate, progress=progress
        )
        details = QgsProcessingContext.LayerDetails("GeoPlant patches", context.project(), "OUTPUT_VRT")
        details.setPostProcessor(StylePostProcessor.create(style_true_colour))
        context.addLayerToLoadOnCompletion(result.vrt, details)
        return {"OUTPUT_FOLDER": output_folder, "OUTPUT_VRT": result.vrt, "COUNT": len(result.paths)}
