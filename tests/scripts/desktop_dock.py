"""Run inside the real QGIS desktop (``qgis --code desktop_dock.py``): open the GeoPlant dock.

Reads GEOPLANT_DESKTOP_* environment variables set by tests/test_desktop.py: a model, raster
files, an output folder, where to save the screenshots and the JSON report. Opens the dock
from the plugin's own action, fills it, runs the model when geoplant:predict is there,
saves screenshots of the main window and quits QGIS.
"""

import json
import os
import traceback

from qgis.core import QgsApplication, QgsCoordinateReferenceSystem, QgsProject, QgsRasterLayer
from qgis.PyQt.QtCore import QTimer
from qgis.PyQt.QtWidgets import QDockWidget
from qgis.utils import iface, plugins

ENV = os.environ
REPORT = ENV["GEOPLANT_DESKTOP_REPORT"]
SHOT = ENV["GEOPLANT_DESKTOP_SCREENSHOT"]
RESULT_SHOT = ENV.get("GEOPLANT_DESKTOP_RESULT_SCREENSHOT", "")
report = {"steps": []}


def save_report():
    with open(REPORT, "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=1)


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


def open_dock():
    report["steps"].append("open")
    plugin = plugins.get("geoplant_qgis")
    report["plugin_loaded"] = plugin is not None
    window = iface.mainWindow()
    window.resize(1600, 1000)
    window.showMaximized()
    plugin.action.trigger()
    dock = window.findChild(QDockWidget, "GeoPlantDock")
    report["dock_found"] = dock is not None
    project = QgsProject.instance()
    for path in ENV.get("GEOPLANT_DESKTOP_RASTERS", "").split(os.pathsep):
        if path:
            project.addMapLayer(QgsRasterLayer(path, os.path.splitext(os.path.basename(path))[0]))
    canvas = iface.mapCanvas()
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:3035"))
    dock.load_model(ENV["GEOPLANT_DESKTOP_MODEL"])
    dock.folder_widget.setFilePath(ENV["GEOPLANT_DESKTOP_OUTPUT"])
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
    report["blockers"] = dock.run_blockers()
    report["card"] = dock.card_label.text()
    QTimer.singleShot(2500, guarded(lambda: screenshot(dock)))


def screenshot(dock):
    report["steps"].append("screenshot")
    report["saved"] = iface.mainWindow().grab().save(SHOT)
    has_predict = QgsApplication.processingRegistry().algorithmById("geoplant:predict") is not None
    report["has_predict"] = has_predict
    if not (has_predict and RESULT_SHOT and not dock.run_blockers()):
        finish(0)
        return
    report["started"] = dock.start_run()
    QTimer.singleShot(500, guarded(lambda: wait_for_run(dock, 0)))


def wait_for_run(dock, waited):
    if dock.is_running() and waited < 120:
        QTimer.singleShot(500, guarded(lambda: wait_for_run(dock, waited + 1)))
        return
    report["run_message"] = dock.last_message
    report["outputs"] = dock.last_outputs
    iface.mapCanvas().refreshAllLayers()
    dock.widget().ensureWidgetVisible(dock.run_button)  # show the Outputs / Run part of the dock
    QTimer.singleShot(2500, guarded(result_screenshot))


def result_screenshot():
    report["result_saved"] = iface.mainWindow().grab().save(RESULT_SHOT)
    finish(0)


QTimer.singleShot(3000, guarded(open_dock))
QTimer.singleShot(240_000, lambda: finish(2))  # watchdog
