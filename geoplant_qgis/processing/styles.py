"""Styles for GeoPlant layers, and a post-processor applying them when outputs load.

Small functions other algorithms and the dock can reuse:
``style_survey_points(layer)`` (graduated size and colour by richness),
``style_true_colour(layer)`` (bands 1, 2, 3 as red, green, blue, 2-98 % stretch),
``style_richness(layer)`` / ``style_probability(layer, band)`` (continuous ramps with
legends in species / probability), ``pseudocolor(...)`` under both,
``style_topk(layer, species)`` (the one top-K palette, ``core.predict.outputs.topk_palette``),
``StylePostProcessor.create(style_function)`` for ``LayerDetails.setPostProcessor``.
"""

from __future__ import annotations

import math

from qgis.core import (
    QgsBasicNumericFormat,
    QgsColorRampLegendNodeSettings,
    QgsColorRampShader,
    QgsContrastEnhancement,
    QgsGradientColorRamp,
    QgsGraduatedSymbolRenderer,
    QgsMarkerSymbol,
    QgsMultiBandColorRenderer,
    QgsPalettedRasterRenderer,
    QgsProcessingLayerPostProcessorInterface,
    QgsRasterBandStats,
    QgsRasterLayer,
    QgsRasterMinMaxOrigin,
    QgsRasterShader,
    QgsSingleBandPseudoColorRenderer,
    QgsSingleSymbolRenderer,
    QgsStyle,
    QgsVectorLayer,
)
from qgis.PyQt.QtGui import QColor

RICHNESS_FIELD = "richness"


def named_ramp(name: str, fallback: tuple[str, str]):
    ramp = QgsStyle.defaultStyle().colorRamp(name) if QgsStyle.defaultStyle() is not None else None
    return ramp if ramp is not None else QgsGradientColorRamp(QColor(fallback[0]), QColor(fallback[1]))


def pseudocolor(layer, band, minimum, maximum, ramp, label, classes=6, suffix="", decimals=1):
    """A continuous ramp on ``band`` from ``minimum`` to ``maximum``.

    The class items are labelled by ``label(v)``; the continuous legend QGIS draws shows
    the minimum and maximum with ``decimals`` and ``suffix``.
    """
    if not maximum > minimum:
        maximum = minimum + 1.0
    shader_function = QgsColorRampShader(minimum, maximum)
    shader_function.setColorRampType(QgsColorRampShader.Interpolated)
    shader_function.setSourceColorRamp(ramp.clone())
    items = []
    for i in range(classes):
        value = minimum + (maximum - minimum) * i / (classes - 1)
        items.append(QgsColorRampShader.ColorRampItem(value, ramp.color(i / (classes - 1)), label(value)))
    shader_function.setColorRampItemList(items)
    legend = QgsColorRampLegendNodeSettings()
    legend.setUseContinuousLegend(True)
    legend.setSuffix(suffix)
    number_format = QgsBasicNumericFormat()
    number_format.setNumberDecimalPlaces(decimals)
    number_format.setShowTrailingZeros(False)
    legend.setNumericFormat(number_format)
    shader_function.setLegendSettings(legend)
    shader = QgsRasterShader()
    shader.setRasterShaderFunction(shader_function)
    renderer = QgsSingleBandPseudoColorRenderer(layer.dataProvider(), band, shader)
    renderer.setClassificationMin(minimum)
    renderer.setClassificationMax(maximum)
    layer.setRenderer(renderer)
    return renderer


def style_richness(layer):
    """Continuous ramp from 0 to the layer's maximum, legend in species."""
    stats = layer.dataProvider().bandStatistics(1, QgsRasterBandStats.Max | QgsRasterBandStats.Min)
    maximum = float(stats.maximumValue) if math.isfinite(stats.maximumValue) else 1.0
    return pseudocolor(
        layer,
        1,
        0.0,
        max(maximum, 1e-6),
        named_ramp("Viridis", ("#440154", "#fde725")),
        species_label,
        suffix=" species",
    )


def species_label(value):
    text = f"{value:.0f}" if abs(value - round(value)) < 1e-9 else f"{value:.1f}"
    return f"{text} species"


def style_probability(layer, band=1):
    """A 0-1 ramp on one probability band."""
    return pseudocolor(
        layer,
        band,
        0.0,
        1.0,
        named_ramp("Magma", ("#000004", "#fcfdbf")),
        lambda v: f"p = {v:.1f}",
        classes=6,
        decimals=2,
    )


def style_topk(layer: QgsRasterLayer, species, band: int = 1) -> None:
    """The top-K raster's paletted style: species ids coloured and labelled by
    ``core.predict.outputs.topk_palette`` (``species``: [(id, name)] in card order), the
    same palette as the ``.qml`` written next to the raster."""
    from ..core.predict.outputs import topk_palette

    classes = [
        QgsPalettedRasterRenderer.Class(sid, QColor(colour), label)
        for sid, colour, label in topk_palette(species)
    ]
    layer.setRenderer(QgsPalettedRasterRenderer(layer.dataProvider(), int(band), classes))
    layer.triggerRepaint()


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
    renderer.setSourceColorRamp(named_ramp("Viridis", ("#440154", "#fde725")))
    renderer.updateClasses(layer, QgsGraduatedSymbolRenderer.Jenks, classes)
    renderer.updateColorRamp(named_ramp("Viridis", ("#440154", "#fde725")))
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
