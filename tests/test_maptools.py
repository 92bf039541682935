"""Area and identify map tools, driven by simulated mouse events on a headless canvas."""

from __future__ import annotations

import pytest
from canvas_events import map_point, mouse
from qgis.core import QgsCoordinateReferenceSystem, QgsGeometry, QgsPointXY, QgsRectangle
from qgis.PyQt.QtCore import QEvent, Qt
from qgis.PyQt.QtGui import QKeyEvent

from geoplant_qgis.gui.maptools import AreaDisplay, IdentifySpeciesTool, PolygonAreaTool, RectangleAreaTool


@pytest.fixture
def canvas(qgis_canvas):
    qgis_canvas.resize(400, 300)
    qgis_canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:3035"))
    qgis_canvas.setExtent(QgsRectangle(4_000_000, 2_000_000, 4_040_000, 2_030_000))
    qgis_canvas.refresh()
    return qgis_canvas


def collect(signal):
    got = []
    signal.connect(lambda *args: got.append(args[0] if len(args) == 1 else args))
    return got


def same_geometry(a, b, tolerance=1e-6):
    return a.isGeosEqual(b) or a.symDifference(b).area() <= tolerance * max(b.area(), 1.0)


def test_rectangle_tool_press_drag_release(canvas):
    tool = RectangleAreaTool(canvas)
    canvas.setMapTool(tool)
    got = collect(tool.areaChosen)
    tool.canvasPressEvent(mouse(canvas, "press", 50, 40))
    tool.canvasMoveEvent(mouse(canvas, "move", 120, 100))
    assert tool.band is not None and tool.band.numberOfVertices() >= 4  # rubber band while dragging
    tool.canvasMoveEvent(mouse(canvas, "move", 250, 200))
    tool.canvasReleaseEvent(mouse(canvas, "release", 250, 200))
    assert len(got) == 1
    expected = QgsGeometry.fromRect(QgsRectangle(map_point(canvas, 50, 40), map_point(canvas, 250, 200)))
    assert same_geometry(got[0], expected)
    box = got[0].boundingBox()
    # 200 x 160 px at the canvas's map units per pixel, from the left/top of the view
    mupp = canvas.mapUnitsPerPixel()
    view = canvas.extent()
    assert box.width() == pytest.approx(200 * mupp, rel=1e-9)
    assert box.height() == pytest.approx(160 * mupp, rel=1e-9)
    assert box.xMinimum() == pytest.approx(view.xMinimum() + 50 * mupp, abs=1e-3)
    assert box.yMaximum() == pytest.approx(view.yMaximum() - 40 * mupp, abs=1e-3)
    assert tool.band is None  # the temporary rubber band is gone
    canvas.unsetMapTool(tool)


def test_rectangle_tool_ignores_a_click_without_drag_and_esc_abandons(canvas):
    tool = RectangleAreaTool(canvas)
    got = collect(tool.areaChosen)
    tool.canvasPressEvent(mouse(canvas, "press", 50, 40))
    tool.canvasReleaseEvent(mouse(canvas, "release", 50, 40))
    assert got == []
    tool.canvasPressEvent(mouse(canvas, "press", 50, 40))
    tool.canvasMoveEvent(mouse(canvas, "move", 120, 100))
    tool.keyPressEvent(QKeyEvent(QEvent.KeyPress, Qt.Key_Escape, Qt.NoModifier))
    tool.canvasReleaseEvent(mouse(canvas, "release", 120, 100))
    assert got == [] and tool.band is None


def test_polygon_tool_clicks_then_right_click(canvas):
    tool = PolygonAreaTool(canvas)
    canvas.setMapTool(tool)
    got = collect(tool.areaChosen)
    pixels = [(40, 40), (300, 60), (260, 250), (60, 200)]
    for x, y in pixels:
        tool.canvasPressEvent(mouse(canvas, "press", x, y))
        tool.canvasReleaseEvent(mouse(canvas, "release", x, y))
        tool.canvasMoveEvent(mouse(canvas, "move", x + 5, y + 5))
    assert got == []
    tool.canvasReleaseEvent(mouse(canvas, "release", 10, 10, Qt.RightButton))
    assert len(got) == 1
    expected = QgsGeometry.fromPolygonXY([[map_point(canvas, x, y) for x, y in pixels]])
    assert same_geometry(got[0], expected)
    assert got[0].area() == pytest.approx(expected.area(), rel=1e-9)
    canvas.unsetMapTool(tool)


def test_polygon_tool_double_click_drops_the_repeated_vertex(canvas):
    tool = PolygonAreaTool(canvas)
    got = collect(tool.areaChosen)
    pixels = [(40, 40), (300, 60), (260, 250)]
    for x, y in pixels:
        tool.canvasReleaseEvent(mouse(canvas, "release", x, y))
    tool.canvasReleaseEvent(mouse(canvas, "release", 260, 250))  # second release of the double click
    tool.canvasDoubleClickEvent(mouse(canvas, "double", 260, 250))
    assert len(got) == 1
    vertices = [QgsPointXY(v) for v in got[0].vertices()]
    assert len(vertices) == 4  # 3 distinct vertices + closing one
    expected = QgsGeometry.fromPolygonXY([[map_point(canvas, x, y) for x, y in pixels]])
    assert same_geometry(got[0], expected)


def test_polygon_tool_needs_three_vertices(canvas):
    tool = PolygonAreaTool(canvas)
    got = collect(tool.areaChosen)
    tool.canvasReleaseEvent(mouse(canvas, "release", 40, 40))
    tool.canvasReleaseEvent(mouse(canvas, "release", 100, 40))
    tool.canvasReleaseEvent(mouse(canvas, "release", 10, 10, Qt.RightButton))
    assert got == [] and tool.points == []


def test_identify_tool_reports_the_map_point(canvas):
    tool = IdentifySpeciesTool(canvas)
    got = collect(tool.pointClicked)
    tool.canvasReleaseEvent(mouse(canvas, "release", 200, 150))
    tool.canvasReleaseEvent(mouse(canvas, "release", 200, 150, Qt.RightButton))
    assert len(got) == 1
    expected = map_point(canvas, 200, 150)
    assert got[0].x() == pytest.approx(expected.x()) and got[0].y() == pytest.approx(expected.y())
    mupp, view = canvas.mapUnitsPerPixel(), canvas.extent()
    assert got[0].x() == pytest.approx(view.xMinimum() + 200 * mupp, abs=1e-3)
    assert got[0].y() == pytest.approx(view.yMaximum() - 150 * mupp, abs=1e-3)


def test_area_display_keeps_the_area_until_cleared(canvas):
    display = AreaDisplay(canvas)
    area = QgsGeometry.fromRect(QgsRectangle(4_010_000, 2_010_000, 4_020_000, 2_020_000))
    display.show(area)
    assert same_geometry(display.geometry(), area)
    assert display.band.isVisible()
    # an area in another CRS is drawn reprojected into the canvas CRS
    wgs84 = QgsGeometry.fromRect(QgsRectangle(3.0, 43.0, 3.1, 43.1))
    display.show(wgs84, QgsCoordinateReferenceSystem("EPSG:4326"))
    box = display.geometry().boundingBox()
    assert 3_600_000 < box.xMinimum() < 3_800_000 and 2_200_000 < box.yMinimum() < 2_400_000
    display.clear()
    assert display.geometry() is None and display.band is None
