"""Mouse events on a map canvas, for the map tool and dock tests."""

from __future__ import annotations

from qgis.core import QgsPointXY
from qgis.gui import QgsMapMouseEvent
from qgis.PyQt.QtCore import QEvent, QPoint, Qt


def map_point(canvas, x, y):
    """Where pixel (x, y) lands on the map, computed by the canvas's own transform."""
    return QgsPointXY(canvas.getCoordinateTransform().toMapCoordinates(x, y))


def mouse(canvas, kind, x, y, button=Qt.LeftButton):
    types = {
        "press": QEvent.MouseButtonPress,
        "move": QEvent.MouseMove,
        "release": QEvent.MouseButtonRelease,
        "double": QEvent.MouseButtonDblClick,
    }
    buttons = Qt.NoButton if kind == "move" else button
    return QgsMapMouseEvent(
        canvas, types[kind], QPoint(x, y), button if kind != "move" else Qt.NoButton, buttons
    )
