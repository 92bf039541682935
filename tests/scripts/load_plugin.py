"""Load the plugin through qgis.utils the way QGIS desktop does, in a fresh process.

Usage: python3 load_plugin.py <plugins folder>. Prints one JSON object with what it saw.
Runs outside pytest because qgis.utils.unloadPlugin drops the package from sys.modules.
"""

import json
import sys

from qgis.core import QgsApplication
from qgis.gui import QgsMessageBar
from qgis.PyQt.QtWidgets import QMainWindow, QToolBar

app = QgsApplication([], True)
app.initQgis()
sys.path.append("/usr/share/qgis/python/plugins")

import qgis.utils  # noqa: E402


class RecordingIface:
    """The parts of QgisInterface a plugin touches, recording what was added."""

    def __init__(self):
        self.window = QMainWindow()
        self.bar = QgsMessageBar()
        self.toolbar = QToolBar()
        self.menu_actions = []
        self.docks = []

    def mainWindow(self):
        return self.window

    def messageBar(self):
        return self.bar

    def addToolBarIcon(self, action):
        self.toolbar.addAction(action)

    def removeToolBarIcon(self, action):
        self.toolbar.removeAction(action)

    def addPluginToMenu(self, menu, action):
        self.menu_actions.append((menu, action))

    def removePluginMenu(self, menu, action):
        self.menu_actions.remove((menu, action))

    def addDockWidget(self, area, dock):
        self.docks.append(dock)

    def removeDockWidget(self, dock):
        self.docks.remove(dock)

    def mapCanvas(self):
        return None


def snapshot(iface):
    registry = QgsApplication.processingRegistry()
    providers = [p.id() for p in registry.providers()]
    geoplant = registry.providerById("geoplant")
    return {
        "providers_named_geoplant": providers.count("geoplant"),
        "algorithms": sorted(a.id() for a in geoplant.algorithms()) if geoplant else [],
        "toolbar_actions": [a.objectName() for a in iface.toolbar.actions()],
        "menu_actions": [a.objectName() for _, a in iface.menu_actions],
        "docks": len(iface.docks),
    }


iface = RecordingIface()
qgis.utils.iface = iface
qgis.utils.plugin_paths = [sys.argv[1]]
sys.path.insert(0, sys.argv[1])
qgis.utils.updateAvailablePlugins()
assert "geoplant_qgis" in qgis.utils.available_plugins, qgis.utils.available_plugins
result = {}
assert qgis.utils.loadPlugin("geoplant_qgis"), "loadPlugin failed"
assert qgis.utils.startPlugin("geoplant_qgis"), "startPlugin failed"
result["loaded"] = snapshot(iface)
# what loading pulled in: the heavy libraries wait until an algorithm or the dock runs
HEAVY = ("pandas", "rasterio", "onnxruntime", "onnx")
result["heavy_modules_at_load"] = sorted(m for m in HEAVY if m in sys.modules)
plugin = qgis.utils.plugins["geoplant_qgis"]
plugin.toggle_dock(True)  # open the dock if the build has one
result["dock_opened"] = snapshot(iface)["docks"]
result["messages"] = [item.text() for item in iface.bar.items()]
assert qgis.utils.unloadPlugin("geoplant_qgis"), "unloadPlugin failed"
result["unloaded"] = snapshot(iface)
assert qgis.utils.loadPlugin("geoplant_qgis")
assert qgis.utils.startPlugin("geoplant_qgis")
result["reloaded"] = snapshot(iface)
qgis.utils.unloadPlugin("geoplant_qgis")
print("RESULT " + json.dumps(result))
app.exitQgis()
