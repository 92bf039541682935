"""Run inside the real QGIS desktop (``qgis --code desktop_dock.py``): the GeoPlant dock as a
planner meets it.

Reads GEOPLANT_DESKTOP_* environment variables set by tests/test_desktop.py: a model, raster
files, an output folder, where to save the screenshots (GEOPLANT_DESKTOP_ARTIFACTS: a folder)
and the JSON report. Opens the dock from the plugin's own action, fills it, then, each step
with a screenshot: draws a rectangle on a map in EPSG:4326 with the dock's rectangle tool
(twice-clicked button), runs, asks "What grows here?" (marker), times a larger run against
the estimate, cancels a run once (recording the message bar), saves and reopens the project
and asks again. Quits QGIS.
"""

import json
import os
import time
import traceback

from qgis.core import (
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsPointXY,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
)
from qgis.gui import QgsMapMouseEvent, QgsVertexMarker
from qgis.PyQt.QtCore import QCoreApplication, QEvent, QPoint, Qt, QTimer
from qgis.PyQt.QtWidgets import QDockWidget
from qgis.utils import iface, plugins

ENV = os.environ
REPORT = ENV["GEOPLANT_DESKTOP_REPORT"]
SHOT = ENV["GEOPLANT_DESKTOP_SCREENSHOT"]
RESULT_SHOT = ENV.get("GEOPLANT_DESKTOP_RESULT_SCREENSHOT", "")
ARTIFACTS = ENV.get("GEOPLANT_DESKTOP_ARTIFACTS") or os.path.dirname(SHOT)
OUTPUT = ENV["GEOPLANT_DESKTOP_OUTPUT"]
report = {"steps": [], "shots": []}
STATE = {}


def save_report():
    with open(REPORT, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=1, default=str)


def finish(code=0):
    report["exit"] = code
    save_report()
    QgsApplication.exit(code)


def guarded(step):
    def run():
        try:
            step()
        except Exception:  # noqa: BLE001 - reported to the test, then quit
            report["error"] = traceback.format_exc()
            finish(1)

    return run


def later(ms, step):
    QTimer.singleShot(ms, guarded(step))


def pump(seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        QCoreApplication.processEvents()
        time.sleep(0.01)


def shoot(name, dock=None, widget=None):
    if dock is not None and widget is not None:
        dock.widget().ensureWidgetVisible(widget)
    pump(0.3)
    path = os.path.join(ARTIFACTS, name)
    ok = iface.mainWindow().grab().save(path)
    report["shots"].append(name if ok else f"FAILED {name}")
    return ok


def bar_texts():
    return [f"{item.title()}: {item.text()}" for item in iface.messageBar().items()]


def mouse(canvas, kind, x, y):
    types = {"press": QEvent.MouseButtonPress, "move": QEvent.MouseMove, "release": QEvent.MouseButtonRelease}
    button = Qt.NoButton if kind == "move" else Qt.LeftButton
    return QgsMapMouseEvent(canvas, types[kind], QPoint(x, y), button, button)


def dock_of():
    return iface.mainWindow().findChild(QDockWidget, "GeoPlantDock")


def open_dock():
    report["steps"].append("open")
    plugin = plugins.get("geoplant_qgis")
    report["plugin_loaded"] = plugin is not None
    window = iface.mainWindow()
    window.resize(1600, 1000)
    window.showMaximized()
    plugin.action.trigger()
    dock = dock_of()
    report["dock_found"] = dock is not None
    project = QgsProject.instance()
    for path in ENV.get("GEOPLANT_DESKTOP_RASTERS", "").split(os.pathsep):
        if path:
            project.addMapLayer(QgsRasterLayer(path, os.path.splitext(os.path.basename(path))[0]))
    canvas = iface.mapCanvas()
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:3035"))
    dock.load_model(ENV["GEOPLANT_DESKTOP_MODEL"])
    dock.folder_widget.setFilePath(OUTPUT)
    # the card is read, the model timed and the inputs matched in background tasks
    report["idle"] = dock.wait_idle(60)
    layers = [layer for layer in project.mapLayers().values() if isinstance(layer, QgsRasterLayer)]
    if layers:
        dock.use_layer_extent(layers[0])
        canvas.setExtent(layers[0].extent().buffered(layers[0].extent().width() * 0.1))
    canvas.refresh()
    dock.set_species_checked([dock.card.species[0].id])
    dock.wait_idle(10)
    report["dock_visible"] = dock.isVisible()
    report["action_checked"] = plugin.action.isChecked()
    report["statuses"] = {name: dock.status_of(name) for name, _, _ in dock.rows}
    report["choices"] = {name: dock.inputs_panel.choice_text(name) for name, _, _ in dock.rows}
    report["layer_column_width"] = dock.input_table.columnWidth(1)
    report["blockers"] = dock.run_blockers()
    report["card"] = dock.card_label.text()
    later(2500, lambda: first_screenshot(dock))


def first_screenshot(dock):
    report["steps"].append("screenshot")
    report["saved"] = shoot(os.path.basename(SHOT), dock, dock.input_table)
    if os.path.basename(SHOT) != "desktop-dock.png" or os.path.dirname(SHOT) != ARTIFACTS:
        report["saved"] = iface.mainWindow().grab().save(SHOT)
    has_predict = QgsApplication.processingRegistry().algorithmById("geoplant:predict") is not None
    report["has_predict"] = has_predict
    if not (has_predict and RESULT_SHOT and not dock.run_blockers()):
        finish(0)
        return
    draw_in_wgs84(dock)


def draw_in_wgs84(dock):
    """The map in EPSG:4326; a rectangle drawn with the dock's tool, its button clicked twice."""
    report["steps"].append("draw")
    canvas = iface.mapCanvas()
    wgs84 = QgsCoordinateReferenceSystem("EPSG:4326")
    layer = next(lyr for lyr in QgsProject.instance().mapLayers().values() if isinstance(lyr, QgsRasterLayer))
    to_wgs84 = QgsCoordinateTransform(layer.crs(), wgs84, QgsProject.instance())
    canvas.setDestinationCrs(wgs84)
    extent = to_wgs84.transformBoundingBox(layer.extent())
    canvas.setExtent(extent.buffered(extent.width() * 0.15))
    canvas.refresh()
    pump(0.5)
    dock.rectangle_button.click()
    dock.rectangle_button.click()  # again: the tool stays on
    report["tool_on_after_second_click"] = (
        canvas.mapTool() is dock.rectangle_tool and dock.rectangle_button.isChecked()
    )
    tool = canvas.mapTool()
    # a rectangle over the middle of the rasters, in screen pixels of the EPSG:4326 map
    transform = canvas.getCoordinateTransform()
    inner = QgsRectangle(
        extent.xMinimum() + extent.width() * 0.2,
        extent.yMinimum() + extent.height() * 0.2,
        extent.xMaximum() - extent.width() * 0.2,
        extent.yMaximum() - extent.height() * 0.2,
    )
    top_left = transform.transform(QgsPointXY(inner.xMinimum(), inner.yMaximum()))
    bottom_right = transform.transform(QgsPointXY(inner.xMaximum(), inner.yMinimum()))
    x0, y0, x1, y1 = int(top_left.x()), int(top_left.y()), int(bottom_right.x()), int(bottom_right.y())
    tool.canvasPressEvent(mouse(canvas, "press", x0, y0))
    tool.canvasMoveEvent(mouse(canvas, "move", (x0 + x1) // 2, (y0 + y1) // 2))
    tool.canvasMoveEvent(mouse(canvas, "move", x1, y1))
    tool.canvasReleaseEvent(mouse(canvas, "release", x1, y1))
    dock.wait_idle(10)
    area = dock.state.area
    report["area_text"] = area.text() if area is not None else None
    report["area_crs"] = area.crs.authid() if area is not None else None
    report["area_is_polygon_in_request"] = dock.state.request("probe").area is not None
    dock.run_name_edit.setText("drawn")
    report["estimate_drawn"] = dock.last_estimate.seconds if dock.last_estimate else None
    shoot("desktop-drawn.png", dock, dock.area_label)
    report["started"] = dock.start_run()
    later(500, lambda: wait_for(dock, after_drawn_run))


def wait_for(dock, then, waited=0):
    if dock.is_running() and waited < 240:
        later(500, lambda: wait_for(dock, then, waited + 1))
        return
    then(dock)


def after_drawn_run(dock):
    report["steps"].append("run")
    report["run_message"] = dock.last_message
    report["outputs"] = dock.last_outputs
    report["finished_text"] = dock.time_label.text()
    iface.mapCanvas().refreshAllLayers()
    pump(1.5)
    saved = shoot(
        os.path.basename(RESULT_SHOT) if RESULT_SHOT else "desktop-results.png", dock, dock.run_button
    )
    if RESULT_SHOT and os.path.dirname(RESULT_SHOT) != ARTIFACTS:
        saved = iface.mainWindow().grab().save(RESULT_SHOT)
    report["result_saved"] = saved
    identify(dock)


def identify(dock):
    """'What grows here?' inside the drawn area: the outputs answer, a marker shows the spot."""
    report["steps"].append("identify")
    canvas = iface.mapCanvas()
    dock.identify_button.click()
    before = sum(isinstance(i, QgsVertexMarker) for i in canvas.scene().items())
    area = dock.state.area.geometry.centroid().asPoint()
    STATE["spot"] = (area.x(), area.y())
    answer = dock.identify_at(QgsPointXY(area), canvas.mapSettings().destinationCrs())
    dock.wait_idle(30)
    answer = dock.last_answer or answer
    report["identify_run"] = (answer or {}).get("run")
    report["identify_species"] = [list(s) for s in (answer or {}).get("species", [])]
    report["identify_text"] = dock.identify_view.toPlainText()
    # QGIS keeps a few vertex markers of its own in the scene: ours is the one added
    report["identify_markers"] = sum(isinstance(i, QgsVertexMarker) for i in canvas.scene().items()) - before
    report["identify_marker_shown"] = dock.identify.marker is not None and dock.identify.marker.isVisible()
    dock.identify.copy()
    report["copied"] = QgsApplication.clipboard().text()
    shoot("desktop-identify.png", dock, dock.identify_panel.csv_button)
    calibrate(dock)


def calibrate(dock):
    """A larger run: the estimate before it against the real time (both in the report)."""
    report["steps"].append("calibrate")
    canvas = iface.mapCanvas()
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:3035"))
    layer = next(lyr for lyr in QgsProject.instance().mapLayers().values() if isinstance(lyr, QgsRasterLayer))
    dock.use_layer_extent(layer)
    dock.cell_size_spin.setValue(10.0)
    dock.run_name_edit.setText("timed")
    dock.flush()
    report["calibration_cells"] = dock.last_estimate.cells
    report["calibration_estimate"] = dock.last_estimate.seconds
    dock.start_run()
    STATE["progress_texts"] = []
    dock.run.progressChanged.connect(lambda p: STATE["progress_texts"].append(dock.time_label.text()))
    later(300, lambda: wait_for(dock, after_calibration))


def after_calibration(dock):
    report["calibration_timing"] = getattr(dock, "last_timing", None)
    report["progress_texts"] = STATE["progress_texts"][:5] + STATE["progress_texts"][-3:]
    report["calibration_message"] = dock.last_message
    cancel_once(dock)


def cancel_once(dock):
    """A run cancelled once it has started: one message, no 'Task failed'."""
    report["steps"].append("cancel")
    iface.messageBar().clearWidgets()
    dock.cell_size_spin.setValue(4.0)
    dock.run_name_edit.setText("cancelled")
    dock.flush()
    report["cancel_cells"] = dock.last_estimate.cells
    dock.start_run()

    def on_progress(percent):
        if percent > 0 and dock.run is not None and not dock.run.cancelled:
            dock.cancel_run()

    dock.run.progressChanged.connect(on_progress)
    later(300, lambda: wait_for(dock, after_cancel))


def after_cancel(dock):
    report["cancel_message"] = dock.last_message
    report["cancel_status"] = dock.status_label.text()
    seen = []
    for _ in range(6):  # the message bar over 6 s: what QGIS and the dock say
        pump(1.0)
        seen.append(bar_texts())
    report["cancel_bar"] = seen
    shoot("desktop-cancel.png", dock, dock.run_button)
    reopen(dock)


def reopen(dock):
    """Save, clear, reopen: the panel starts clean, keeps the ticked species, and the result
    layers answer "What grows here?" from their metadata."""
    report["steps"].append("reopen")
    project = QgsProject.instance()
    path = os.path.join(OUTPUT, "planner.qgz")
    report["species_before"] = dock.selected_species()
    report["project_written"] = project.write(path)
    project.clear()
    pump(0.5)
    report["project_read"] = project.read(path)
    dock = dock_of()
    dock.wait_idle(60)
    pump(1.0)
    report["after_reopen_time_text"] = dock.time_label.text()
    report["after_reopen_species"] = dock.selected_species()
    x, y = STATE["spot"]
    canvas = iface.mapCanvas()
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:4326"))
    group_layer = next(
        (lyr for lyr in project.mapLayers().values() if lyr.customProperty("geoplant/kind") == "richness"),
        None,
    )
    if group_layer is not None:
        to_canvas = QgsCoordinateTransform(group_layer.crs(), canvas.mapSettings().destinationCrs(), project)
        box = to_canvas.transformBoundingBox(group_layer.extent())
        canvas.setExtent(box.buffered(box.width() * 0.1))
    canvas.refresh()
    answer = dock.identify_at(QgsPointXY(x, y), QgsCoordinateReferenceSystem("EPSG:4326"))
    dock.wait_idle(30)
    report["after_reopen_identify_run"] = (dock.last_answer or answer or {}).get("run")
    pump(2.0)
    shoot("desktop-reopen.png", dock, dock.identify_panel.csv_button)
    finish(0)


later(3000, open_dock)
QTimer.singleShot(360_000, lambda: finish(2))  # watchdog
