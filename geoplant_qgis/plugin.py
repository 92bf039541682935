"""The QGIS plugin object: provider, toolbar button, menu entry, dock."""

from __future__ import annotations

from qgis.core import Qgis, QgsApplication, QgsMessageLog
from qgis.PyQt.QtWidgets import QAction

from .dependencies import add_bundled_dependencies, install_hint, missing_dependencies

MENU = "&GeoPlant"
LOG_TAG = "GeoPlant"


class GeoPlantPlugin:
    def __init__(self, iface):
        self.iface = iface
        self.provider = None
        self.action = None
        self.dock = None
        add_bundled_dependencies()

    # Processing ---------------------------------------------------------------
    def initProcessing(self):  # noqa: N802 (QGIS's name)
        """Register the provider; safe to call twice (QGIS may)."""
        if self.provider is not None:
            return
        from .processing.provider import GeoPlantProvider

        self.provider = GeoPlantProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    # GUI ------------------------------------------------------------------------
    def initGui(self):  # noqa: N802 (QGIS's name)
        self.initProcessing()
        from .processing.base import plugin_icon

        self.action = QAction(plugin_icon(), "GeoPlant species models", self.iface.mainWindow())
        self.action.setObjectName("GeoPlantAction")
        self.action.setCheckable(True)
        self.action.setToolTip("Open the GeoPlant panel: run a species distribution model over an area")
        self.action.triggered.connect(self.toggle_dock)
        self.iface.addToolBarIcon(self.action)
        self.iface.addPluginToMenu(MENU, self.action)
        self.report_missing_dependencies()

    def report_missing_dependencies(self):
        missing = missing_dependencies()
        if not missing:
            return
        message = install_hint(missing)
        QgsMessageLog.logMessage(message, LOG_TAG, Qgis.Warning)
        bar = self.iface.messageBar() if self.iface is not None else None
        if bar is not None:
            bar.pushMessage("GeoPlant", message, level=Qgis.Warning, duration=0)

    def toggle_dock(self, checked=True):
        try:
            from .gui.dock import GeoPlantDock
        except ImportError as error:
            self.action.setChecked(False)
            self.iface.messageBar().pushMessage(
                "GeoPlant", f"The panel cannot open: {error}", level=Qgis.Critical, duration=10
            )
            return
        if self.dock is None:
            self.dock = GeoPlantDock(self.iface)
            self.dock.visibilityChanged.connect(self.action.setChecked)
            self.iface.addDockWidget(self.dock.default_area(), self.dock)
        self.dock.setVisible(bool(checked))

    def unload(self):
        if self.dock is not None:
            self.iface.removeDockWidget(self.dock)
            self.dock.shutdown()
            self.dock.deleteLater()
            self.dock = None
        if self.action is not None:
            self.iface.removePluginMenu(MENU, self.action)
            self.iface.removeToolBarIcon(self.action)
            self.action.deleteLater()
            self.action = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
