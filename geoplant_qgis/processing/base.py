"""What every GeoPlant Processing algorithm shares.

Subclasses implement ``initAlgorithm`` and ``execute(parameters, context, feedback,
progress)``. Not ``run``: that is QgsProcessingAlgorithm's own method, which
``processing.run()`` calls. This base turns core's :class:`GeoPlantError` into a
``QgsProcessingException`` (a plain message, no traceback) and hands core a
:class:`FeedbackProgress` that forwards progress, log lines and cancellation.
"""

from __future__ import annotations

import contextlib
import os
import warnings

from qgis.core import QgsProcessingAlgorithm, QgsProcessingException
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtGui import QIcon

from ..core.errors import plain_message
from ..core.progress import Progress, report_warnings

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

    def checkParameterValues(self, parameters, context):
        """Our checks first (:func:`.params.parameter_problem`: the parameter, the value and
        what to give), then QGIS's own (whose message only says 'Incorrect parameter value')."""
        from .params import parameter_problem

        problem = parameter_problem(self, parameters, context)
        if problem:
            return False, problem
        with no_gdal_sidecars():  # QGIS loads the input layers to check them
            return super().checkParameterValues(parameters, context)

    def processAlgorithm(self, parameters, context, feedback):
        """Check the parameters again (a QGIS task runs an algorithm without
        checkParameterValues), then run :meth:`execute` with SIGTERM/SIGHUP/SIGQUIT as cancellation
        (:mod:`core.signals`), Python warnings turned into plain log lines (no source paths),
        and every error into plain words (:func:`core.errors.plain_message`): no traceback
        reaches the user."""
        from ..core.signals import cancel_on_signals

        progress = FeedbackProgress(feedback)
        on_signal = feedback.cancel if feedback is not None else None
        with cancel_on_signals(on_signal), no_gdal_sidecars(), warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                from .params import parameter_problem

                problem = parameter_problem(self, parameters, context)
                if problem:
                    raise QgsProcessingException(problem)
                return self.execute(parameters, context, feedback, progress)
            except QgsProcessingException:
                raise
            except Exception as error:  # noqa: BLE001 - every error becomes words (a GeoPlantError its own)
                raise QgsProcessingException(plain_message(error, f"geoplant:{self.ALGORITHM_ID}")) from None
            finally:
                report_warnings(caught, progress)

    def execute(self, parameters, context, feedback, progress):
        raise NotImplementedError


@contextlib.contextmanager
def no_gdal_sidecars():
    """GDAL's PAM off in this thread while the block runs: a raster QGIS opens as a layer
    (to check or read a parameter) would otherwise get a ``.aux.xml`` of statistics written
    beside it, a file of the user's that the run did not create (docs/reliability.md)."""
    try:
        from osgeo import gdal
    except ImportError:
        yield
        return
    previous = gdal.GetThreadLocalConfigOption("GDAL_PAM_ENABLED", None)
    gdal.SetThreadLocalConfigOption("GDAL_PAM_ENABLED", "NO")
    try:
        yield
    finally:
        gdal.SetThreadLocalConfigOption("GDAL_PAM_ENABLED", previous)
