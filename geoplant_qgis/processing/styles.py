"""Styles for GeoPlant layers, and a post-processor applying them when outputs load.

Small functions other algorithms and the dock can reuse:
``style_survey_points(layer)`` (graduated size and colour by richness),
``style_true_colour(layer)`` (bands 1, 2, 3 as red, green, blue, 2-98 % stretch),
``StylePostProcessor.create(style_function)`` for ``LayerDetails.setPostProcessor``.
"""

from __future__ import annotations

from qgis.core import (
    QgsContrastEnhancement,
    QgsGradientColorRamp,
    QgsGraduatedSymbolRenderer,
    QgsMarkerSymbol,
    QgsMultiBandColorRenderer,
    QgsProcessingLayerPostProcessorInterface,
    QgsRasterBandStats,
    QgsRasterLayer,
    QgsRasterMinMaxOrigin,
    QgsSingleSymbolRenderer,
    QgsStyle,
    QgsVectorLayer,
)
from qgis.PyQt.QtGui import QColor

RICHNESS_FIELD = "richness"


def _richness_ramp():
    ramp = QgsStyle.defaultStyle().colorRamp("Viridis")
    if ramp is None:
        ramp = QgsGradientColorRamp(QColor(68, 1, 84), QColor(253, 231, 37))
    return ramp


def style_survey_points(layer: QgsVectorLayer, field: str = RICHNESS_FIELD, classes: int = 5) -> bool:
    """Graduated points: size and colour grow with ``field`` (richness); single small
    markers when the layer has no such field. Returns True when graduated."""
    symbol = QgsMarkerSymbol.createSimple({"name": "circle", "size": "2", "outline_color": "35,35,35,180"})
    if layer.fields().indexOf(field) < 0 or layer.featureCount() == 0:
        symbol.setColor(QColor(30, 130, 76))
        layer.setRenderer(QgsSingleSymbolRenderer(symbol))
        layer.triggerRepaint()
        return False
    renderer = QgsGraduatedSymbolRenderer(field)
    renderer.setSourceSymbol(symbol)
    renderer.setSourceColorRamp(_richness_ramp())
    renderer.updateClasses(layer, QgsGraduatedSymbolRenderer.Jenks, classes)
    renderer.updateColorRamp(_richness_ramp())
    renderer.setSymbolSizes(1.6, 5.0)
    layer.setRenderer(renderer)
    layer.triggerRepaint()
    return True


def style_true_colour(layer: QgsRasterLayer, red: int = 1, green: int = 2, blue: int = 3) -> None:
    """Multiband true colour with a 2-98 % cumulative-count stretch per band."""
    provider = layer.dataProvider()
    renderer = QgsMultiBandColorRenderer(provider, red, green, blue)
    layer.setRenderer(renderer)
    layer.setContrastEnhancement(
        QgsContrastEnhancement.StretchToMinimumMaximum,
        QgsRasterMinMaxOrigin.CumulativeCut,
        layer.extent(),
        0,  # every pixel
    )
    layer.triggerRepaint()


def band_range(layer: QgsRasterLayer, band: int):
    """(min, max) of a band from the provider statistics (used by tests and the dock)."""
    stats = layer.dataProvider().bandStatistics(band, QgsRasterBandStats.Min | QgsRasterBandStats.Max)
    return stats.minimumValue, stats.maximumValue


class StylePostProcessor(QgsProcessingLayerPostProcessorInterface):
    """Applies a style function to an output layer once Processing has loaded it."""

    # Processing needs the object alive until the layer is loaded: keep the last few.
    _alive: list = []

    def __init__(self, style_function):
        super().__init__()
        self.style_function = style_function

    def postProcessLayer(self, layer, context, feedback):
        if layer is not None and layer.isValid():
            self.style_function(layer)

    @classmethod
    def create(cls, style_function):
        instance = cls(style_function)
        cls._alive = [*cls._alive[-15:], instance]
        return instance


def apply_on_load(context, layer_id_or_path: str, style_function) -> bool:
    """Attach ``style_function`` to an output that will be loaded on completion."""
    if not context.willLoadLayerOnCompletion(layer_id_or_path):
        return False
    details = context.layerToLoadOnCompletionDetails(layer_id_or_path)
    details.setPostProcessor(StylePostProcessor.create(style_function))
    return True
