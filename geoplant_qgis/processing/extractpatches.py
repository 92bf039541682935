"""``geoplant:extractpatches``: GLC25-style Sentinel-2 patches around survey points or grid
cells, cut by the same core code that feeds patch models in ``geoplant:predict``."""

from __future__ import annotations

from qgis.core import (
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBand,
    QgsProcessingParameterFolderDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
)

from .base import GeoPlantAlgorithm
from .limits import add_max_cells, read_max_cells
from .limits import help_text as max_cells_help
from .params import given, raster_layer_path, read_crs, read_number
from .sampleenvironment import add_location_parameters, read_grid, read_points


class ExtractPatchesAlgorithm(GeoPlantAlgorithm):
    ALGORITHM_ID = "extractpatches"
    DISPLAY_NAME = "Extract satellite patches"
    HELP = (
        "Cuts SIZE x SIZE patches of PIXEL_SIZE-metre pixels (north up, centred on each point) from "
        "RASTER (a Sentinel-2 image or mosaic in any CRS) around survey POINTS (surveyId field) or "
        "the cells of a grid (EXTENT / AREA, CELL_SIZE, CRS; ids are row * width + column), and "
        "writes them as GLC25-style GeoTIFFs OUTPUT_FOLDER/CD/AB/<id>.tiff (CD: the id's last two "
        "digits, AB: the two before): int16, nodata -1, in CRS (default EPSG:3035, LAEA Europe). "
        "BANDS default to the bands described red, green, blue, nir. Resampling is nearest "
        "neighbour: each patch pixel is the raster pixel containing its centre.\n\n"
        + max_cells_help(patches=True)
    )
    REQUIRES = ("numpy", "rasterio")

    def initAlgorithm(self, config=None):
        add_location_parameters(self)
        self.addParameter(QgsProcessingParameterRasterLayer("RASTER", self.tr("Satellite raster")))
        self.addParameter(
            QgsProcessingParameterBand(
                "BANDS", self.tr("Bands (default: red, green, blue, nir by description)"), None, "RASTER",
                optional=True, allowMultiple=True,
            )
        )  # fmt: skip
        self.addParameter(
            QgsProcessingParameterNumber(
                "SIZE", self.tr("Patch size (pixels)"), QgsProcessingParameterNumber.Integer, 64,
                minValue=1, maxValue=4096,
            )
        )  # fmt: skip
        self.addParameter(
            QgsProcessingParameterNumber(
                "PIXEL_SIZE", self.tr("Pixel size (metres)"), QgsProcessingParameterNumber.Double, 10.0,
                minValue=0.001,
            )
        )  # fmt: skip
        self.addParameter(QgsProcessingParameterFolderDestination("OUTPUT_FOLDER", self.tr("Output folder")))
        add_max_cells(self, patches=True)
        self.addOutput(QgsProcessingOutputNumber("COUNT", self.tr("Patches written")))
        self.addOutput(QgsProcessingOutputNumber("SKIPPED", self.tr("Patches outside the raster")))

    def execute(self, parameters, context, feedback, progress):
        from ..core.extract import extract_patches

        layer = self.parameterAsRasterLayer(parameters, "RASTER", context)
        if layer is None:
            raise QgsProcessingException("Choose the RASTER to cut patches from.")
        bands = self.parameterAsInts(parameters, "BANDS", context) if given(parameters, "BANDS") else None
        points = read_points(self, parameters, context, feedback, integer_ids=True)
        grid = None if points is not None else read_grid(self, parameters, context, feedback)
        if points is None and grid is None:
            raise QgsProcessingException("Give POINTS, or an EXTENT or an AREA for a grid.")
        crs = read_crs(self, parameters, context) or "EPSG:3035"
        folder = self.parameterAsFileOutput(parameters, "OUTPUT_FOLDER", context)
        result = extract_patches(
            folder,
            raster_layer_path(layer),
            bands=bands or None,
            size=read_number(self, parameters, "SIZE", context, default=64),
            pixel_size=read_number(self, parameters, "PIXEL_SIZE", context, default=10.0),
            points=points,
            grid=grid,
            crs=crs,
            progress=progress,
            max_cells=read_max_cells(self, parameters, context),
        )
        return {"OUTPUT_FOLDER": result.folder, "COUNT": len(result.paths), "SKIPPED": result.skipped}
