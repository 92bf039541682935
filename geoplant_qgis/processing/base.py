"""What every GeoPlant Processing algorithm shares.

Subclasses implement ``initAlgorithm`` and ``execute(parameters, context, feedback,
progress)``. Not ``run``: that is QgsProcessingAlgorithm's own method, which
``processing.run()`` calls. This base turns core's :class:`GeoPlantError` into a
``QgsProcessingException`` (a plain message, no traceback) and hands core a
:class:`FeedbackProgress` that forwards progress, log lines and cancellation.
"""

from __future__ import annotations

import os

from qgis.core import QgsProcessingAlgorithm, QgsProcessingException
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtGui import QIcon

from ..core.errors import GeoPlantError
from ..core.progress import Progress

ICON_DIR = os.path.join(os.path.dirname(os.path.dirname(__file__)), "icons")


def plugin_icon(name: str = "geoplant.svg") -> QIcon:
    """The icon from the compiled resources, or from the icons folder."""
    try:
        from .. import resources_rc  # noqa: F401  (registers :/plugins/geoplant_qgis)

        icon = QIcon(f":/plugins/geoplant_qgis/icons/{name}")
        if not icon.isNull():
            return icon
    except ImportError:
        pass
    return QIcon(os.path.join(ICON_DIR, name))


class FeedbackProgress(Progress):
    """Core's progress interface on top of a QgsProcessingFeedback."""

    def __init__(self, feedback):
        self.feedback = feedback

    def set_progress(self, percent):
        if self.feedback is not None:
            self.feedback.setProgress(float(percent))

    def is_cancelled(self):
        return self.feedback is not None and self.feedback.isCanceled()

    def info(self, message):
        if self.feedback is not None:
            self.feedback.pushInfo(message)

    def warning(self, message):
        if self.feedback is not None:
            self.feedback.reportError(message, fatalError=False)


class GeoPlantAlgorithm(QgsProcessingAlgorithm):
    """Base class: identity, icon, error translation."""

    #: algorithm id without the provider prefix, e.g. "predict"
    ALGORITHM_ID = ""
    DISPLAY_NAME = ""
    GROUP = "GeoPlant"
    GROUP_ID = "geoplant"
    HELP = ""
    #: Python modules the algorithm needs beyond QGIS (checked by the provider)
    REQUIRES = ("numpy",)

    def tr(self, text):
        return QCoreApplication.translate("GeoPlant", text)

    def createInstance(self):
        return type(self)()

    def name(self):
        return self.ALGORITHM_ID

    def displayName(self):
        return self.tr(self.DISPLAY_NAME)

    def group(self):
        return self.tr(self.GROUP)

    def groupId(self):
        return self.GROUP_ID

    def shortHelpString(self):
        return self.tr(self.HELP)

    def icon(self):
        return plugin_icon()

    def processAlgorithm(self, parameters, context, feedback):
        try:
            return self.execute(parameters, context, feedback, FeedbackProgress(feedback))
        except GeoPlantError as error:
            raise QgsProcessingException(str(error)) from None

    def execute(self, parameters, context, feedback, progress):
        raise NotImplementedError
