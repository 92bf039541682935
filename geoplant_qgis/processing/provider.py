"""The GeoPlant Processing provider (id ``geoplant``)."""

from __future__ import annotations

import importlib

from qgis.core import Qgis, QgsMessageLog, QgsProcessingProvider

from ..dependencies import install_hint, missing_dependencies
from .base import plugin_icon

# (module in this package, class name). Each algorithm declares REQUIRES; the provider
# registers only those whose dependencies import, and says what to install for the rest.
ALGORITHMS = [
    ("modelinfo", "ModelInfoAlgorithm"),
    ("predict", "PredictAlgorithm"),
    ("sampleenvironment", "SampleEnvironmentAlgorithm"),
    ("extractpatches", "ExtractPatchesAlgorithm"),
    ("loadobservations", "LoadObservationsAlgorithm"),
    ("loadpatches", "LoadPatchesAlgorithm"),
    ("evaluate", "EvaluateAlgorithm"),
    ("areareport", "AreaReportAlgorithm"),
    ("presence", "PresenceAlgorithm"),
    ("ensemble", "EnsembleAlgorithm"),
]

LOG_TAG = "GeoPlant"


def algorithm_classes():
    """The algorithm classes, in menu order."""
    return [getattr(importlib.import_module(f"{__package__}.{module}"), name) for module, name in ALGORITHMS]


class GeoPlantProvider(QgsProcessingProvider):
    def __init__(self):
        super().__init__()
        self.skipped = {}  # algorithm id -> missing modules

    def id(self):
        return "geoplant"

    def name(self):
        return "GeoPlant"

    def longName(self):
        return "GeoPlant species distribution models"

    def icon(self):
        return plugin_icon()

    def loadAlgorithms(self):
        self.skipped = {}
        for cls in algorithm_classes():
            missing = missing_dependencies(cls.REQUIRES)
            if missing:
                self.skipped[cls.ALGORITHM_ID] = missing
                continue
            self.addAlgorithm(cls())
        if self.skipped:
            modules = sorted({m for ms in self.skipped.values() for m in ms})
            QgsMessageLog.logMessage(
                f"Algorithms not available: {', '.join(sorted(self.skipped))}. " + install_hint(modules),
                LOG_TAG,
                Qgis.Warning,
            )
