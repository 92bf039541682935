"""The Area panel: draw a rectangle or polygon, or take the map view, a layer's extent or selection."""

from __future__ import annotations

from qgis.core import QgsGeometry, QgsMapLayerProxyModel
from qgis.gui import QgsMapLayerComboBox
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QGridLayout, QLabel, QPushButton, QToolButton

from ...processing.base import plugin_icon
from ..state import Area
from .common import section

NO_AREA = "No area chosen."


def _tool_button(text, icon, tooltip):
    button = QToolButton()
    button.setText(text)
    button.setIcon(plugin_icon(icon))
    button.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
    button.setCheckable(True)
    button.setToolTip(tooltip)
    return button


class AreaPanel:
    """The Area section's widgets; the dock connects the buttons to its actions."""

    def __init__(self):
        self.box = section("Area")
        layout = QGridLayout(self.box)
        self.rectangle_button = _tool_button(
            "Rectangle", "draw_rectangle.svg", "Draw a rectangle on the map: press, drag, release"
        )
        self.polygon_button = _tool_button(
            "Polygon",
            "draw_polygon.svg",
            "Draw a polygon: click the vertices, right-click to finish, Esc to abandon",
        )
        self.canvas_extent_button = QPushButton("Map view")
        self.canvas_extent_button.setToolTip("Use the extent of the map view")
        self.clear_button = QPushButton("Clear")
        layout.addWidget(self.rectangle_button, 0, 0)
        layout.addWidget(self.polygon_button, 0, 1)
        layout.addWidget(self.canvas_extent_button, 0, 2)
        self.extent_layer_combo = QgsMapLayerComboBox()
        self.extent_layer_combo.setFilters(QgsMapLayerProxyModel.All)
        self.layer_extent_button = QPushButton("Layer extent")
        layout.addWidget(self.extent_layer_combo, 1, 0, 1, 2)
        layout.addWidget(self.layer_extent_button, 1, 2)
        self.selection_layer_combo = QgsMapLayerComboBox()
        self.selection_layer_combo.setFilters(QgsMapLayerProxyModel.PolygonLayer)
        self.selection_button = QPushButton("Selected features")
        layout.addWidget(self.selection_layer_combo, 2, 0, 1, 2)
        layout.addWidget(self.selection_button, 2, 2)
        self.label = QLabel(NO_AREA)
        self.label.setWordWrap(True)
        layout.addWidget(self.label, 3, 0, 1, 2)
        layout.addWidget(self.clear_button, 3, 2)
        for combo in (self.extent_layer_combo, self.selection_layer_combo):
            combo.setMinimumContentsLength(8)
            combo.setSizeAdjustPolicy(combo.AdjustToMinimumContentsLengthWithIcon)

    def show_state(self, state):
        self.label.setText(state.area.text() if state.area is not None else NO_AREA)


def drawn_area(geometry, crs) -> Area:
    """A drawn geometry as the run's area: a rectangle is an extent, anything else a polygon."""
    is_rect = geometry.isGeosEqual(QgsGeometry.fromRect(geometry.boundingBox()))
    kind = "rectangle" if is_rect else "polygon"
    return Area(QgsGeometry(geometry), crs, polygon=not is_rect, description=f"drawn {kind}")


def selected_features_area(layer):
    """The union of the selected polygons of ``layer`` as a polygon area, or a plain-words
    reason why there is none."""
    if layer is None or layer.type() != layer.VectorLayer:
        return None, "Choose a polygon layer with selected features."
    geometries = [f.geometry() for f in layer.getSelectedFeatures() if f.hasGeometry()]
    if not geometries:
        return None, f"No feature of {layer.name()} is selected: select the polygons to use."
    union = QgsGeometry.unaryUnion(geometries)
    return Area(union, layer.crs(), polygon=True, description=f"{len(geometries)} selected feature(s)"), ""
