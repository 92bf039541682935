"""Map tools of the dock: draw a rectangle or a polygon, and "What grows here?".

The tools only report geometry in the canvas CRS through signals; the dock decides what
to do with it. :class:`AreaDisplay` keeps the chosen area visible until it is cleared.
"""

from __future__ import annotations

from qgis.core import QgsCoordinateReferenceSystem, QgsGeometry, QgsPointXY, QgsRectangle, QgsWkbTypes
from qgis.gui import QgsMapTool, QgsRubberBand
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtGui import QColor

DRAW_COLOUR = QColor(220, 60, 30, 200)
DRAW_FILL = QColor(220, 60, 30, 40)
AREA_COLOUR = QColor(40, 120, 200, 230)
AREA_FILL = QColor(40, 120, 200, 35)


def _rubber_band(canvas, stroke, fill, width=2):
    band = QgsRubberBand(canvas, QgsWkbTypes.PolygonGeometry)
    band.setStrokeColor(stroke)
    band.setFillColor(fill)
    band.setWidth(width)
    return band


class _AreaTool(QgsMapTool):
    """Common parts: a temporary rubber band, Esc to abandon, areaChosen on completion."""

    #: the finished area (polygon geometry, in the canvas CRS)
    areaChosen = pyqtSignal(QgsGeometry)  # noqa: N815 (Qt naming)

    def __init__(self, canvas):
        super().__init__(canvas)
        self.band = None
        self.setCursor(Qt.CrossCursor)

    def _ensure_band(self):
        if self.band is None:
            self.band = _rubber_band(self.canvas(), DRAW_COLOUR, DRAW_FILL)
        return self.band

    def reset(self):
        if self.band is not None:
            self.band.reset(QgsWkbTypes.PolygonGeometry)
            self.canvas().scene().removeItem(self.band)
            self.band = None

    def keyPressEvent(self, event):
        if event.key() == Qt.Key_Escape:
            self.reset()
            event.accept()
            return
        super().keyPressEvent(event)

    def deactivate(self):
        self.reset()
        super().deactivate()


class RectangleAreaTool(_AreaTool):
    """Press, drag and release to draw a rectangle."""

    def __init__(self, canvas):
        super().__init__(canvas)
        self.start = None

    def reset(self):
        self.start = None
        super().reset()

    def _rectangle(self, end):
        return QgsRectangle(self.start, end)

    def canvasPressEvent(self, event):
        if event.button() != Qt.LeftButton:
            return
        self.start = QgsPointXY(event.mapPoint())
        self._ensure_band()

    def canvasMoveEvent(self, event):
        if self.start is None:
            return
        rect = self._rectangle(QgsPointXY(event.mapPoint()))
        self._ensure_band().setToGeometry(QgsGeometry.fromRect(rect))

    def canvasReleaseEvent(self, event):
        if self.start is None or event.button() != Qt.LeftButton:
            return
        rect = self._rectangle(QgsPointXY(event.mapPoint()))
        self.reset()
        if rect.width() > 0 and rect.height() > 0:
            self.areaChosen.emit(QgsGeometry.fromRect(rect))


class PolygonAreaTool(_AreaTool):
    """Left-click to add vertices; right-click or double-click to close the polygon."""

    def __init__(self, canvas):
        super().__init__(canvas)
        self.points = []

    def reset(self):
        self.points = []
        super().reset()

    def _show(self, moving=None):
        points = list(self.points) + ([moving] if moving is not None else [])
        band = self._ensure_band()
        if len(points) >= 3:
            band.setToGeometry(QgsGeometry.fromPolygonXY([points]))
        else:
            band.reset(QgsWkbTypes.PolygonGeometry)
            for point in points:
                band.addPoint(point, True)

    def canvasPressEvent(self, event):
        # vertices are added on release, as QGIS's own digitising tools do
        pass

    def canvasMoveEvent(self, event):
        if self.points:
            self._show(QgsPointXY(event.mapPoint()))

    def canvasReleaseEvent(self, event):
        if event.button() == Qt.LeftButton:
            self.points.append(QgsPointXY(event.mapPoint()))
            self._show()
        elif event.button() == Qt.RightButton:
            self.finish()

    def canvasDoubleClickEvent(self, event):
        self.finish()

    def finish(self):
        # a double click also releases twice at the same place: drop repeated vertices
        points = []
        for point in self.points:
            if not points or point != points[-1]:
                points.append(point)
        self.reset()
        if len(points) < 3:
            return
        geometry = QgsGeometry.fromPolygonXY([points])
        if geometry.area() > 0:
            self.areaChosen.emit(geometry)


class IdentifySpeciesTool(QgsMapTool):
    """ "What grows here?": a click reports the map point (canvas CRS)."""

    pointClicked = pyqtSignal(QgsPointXY)  # noqa: N815 (Qt naming)

    def __init__(self, canvas):
        super().__init__(canvas)
        self.setCursor(Qt.WhatsThisCursor)

    def canvasReleaseEvent(self, event):
        if event.button() == Qt.LeftButton:
            self.pointClicked.emit(QgsPointXY(event.mapPoint()))


class AreaDisplay:
    """The chosen area drawn on the canvas until :meth:`clear`."""

    def __init__(self, canvas):
        self.canvas = canvas
        self.band = None

    def show(self, geometry, crs=None):
        """Draw ``geometry`` (in ``crs``, default the canvas CRS)."""
        if self.band is None:
            self.band = _rubber_band(self.canvas, AREA_COLOUR, AREA_FILL, width=2)
        self.band.setToGeometry(QgsGeometry(geometry), crs or QgsCoordinateReferenceSystem())
        self.band.show()

    def geometry(self):
        return self.band.asGeometry() if self.band is not None else None

    def clear(self):
        if self.band is not None:
            self.band.reset(QgsWkbTypes.PolygonGeometry)
            self.canvas.scene().removeItem(self.band)
            self.band = None


class CanvasTools:
    """The dock's three map tools on one canvas: turned on and off by their buttons, the
    buttons kept in step with the canvas's current tool, all removed at shutdown."""

    def __init__(self, canvas, on_area, on_point):
        self.canvas = canvas
        self.rectangle = self.polygon = self.identify = None
        self.buttons: list = []  # [(button, tool)]
        if canvas is not None:
            self.rectangle = RectangleAreaTool(canvas)
            self.polygon = PolygonAreaTool(canvas)
            self.identify = IdentifySpeciesTool(canvas)
            self.rectangle.areaChosen.connect(on_area)
            self.polygon.areaChosen.connect(on_area)
            self.identify.pointClicked.connect(on_point)
            canvas.mapToolSet.connect(self.sync)

    def set_buttons(self, rectangle, polygon, identify):
        self.buttons = [(rectangle, self.rectangle), (polygon, self.polygon), (identify, self.identify)]

    def activate(self, tool):
        """The tool on the canvas. A click on the button of the tool that is already on keeps
        it on (a drawing in progress starts over): the button never goes off while the tool
        still looks active, and the next drag always draws. Another map tool (Pan...) turns
        it off."""
        if self.canvas is None or tool is None:
            return
        if self.canvas.mapTool() is tool:
            if hasattr(tool, "reset"):
                tool.reset()
        else:
            self.canvas.setMapTool(tool)
        self.sync()

    def sync(self, *args):
        current = self.canvas.mapTool() if self.canvas is not None else None
        for button, tool in self.buttons:
            button.setChecked(current is not None and current is tool)

    def shutdown(self):
        if self.canvas is None:
            return
        for tool in (self.rectangle, self.polygon, self.identify):
            if tool is not None and self.canvas.mapTool() is tool:
                self.canvas.unsetMapTool(tool)
        try:
            self.canvas.mapToolSet.disconnect(self.sync)
        except TypeError:
            pass
        for tool in (self.rectangle, self.polygon):
            tool.reset()
