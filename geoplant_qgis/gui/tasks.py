"""The background run of the dock: ``geoplant:predict`` in a QgsProcessingAlgRunnerTask.

The dock builds the parameters from file paths and plain values (no layer objects), this
object runs the algorithm in QGIS's task manager and reports progress, log lines and the
outcome through Qt signals delivered on the main thread.
"""

from __future__ import annotations

from qgis.core import (
    Qgis,
    QgsApplication,
    QgsMessageLog,
    QgsProcessingAlgRunnerTask,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProject,
)
from qgis.PyQt.QtCore import QObject, pyqtSignal

LOG_TAG = "GeoPlant"
PREDICT_ID = "geoplant:predict"


class _Feedback(QgsProcessingFeedback):
    """Keeps the algorithm's error lines (called from the worker thread: strings only)."""

    def __init__(self):
        super().__init__()
        self.errors: list[str] = []
        self.lines: list[str] = []

    def reportError(self, error, fatalError=False):
        self.errors.append(str(error))
        super().reportError(error, fatalError)

    def pushInfo(self, info):
        self.lines.append(str(info))
        super().pushInfo(info)


class PredictRun(QObject):
    """One run of ``geoplant:predict`` in the background.

    Signals: ``progressChanged(float)`` (0-100), ``finished(bool ok, dict results,
    str message)``; ``message`` is the algorithm's own plain-words error, or the
    cancellation notice.
    """

    progressChanged = pyqtSignal(float)  # noqa: N815 (Qt naming)
    finished = pyqtSignal(bool, dict, str)

    def __init__(self, parameters: dict, algorithm_id: str = PREDICT_ID, parent=None):
        super().__init__(parent)
        self.parameters = dict(parameters)
        self.algorithm_id = algorithm_id
        self.task = None
        self.context = None
        self.feedback = None
        self.cancelled = False
        self.done = False

    def start(self) -> None:
        """Queue the task; raises RuntimeError with a plain message when the algorithm is absent."""
        algorithm = QgsApplication.processingRegistry().createAlgorithmById(self.algorithm_id)
        if algorithm is None:
            raise RuntimeError(
                f"The Processing algorithm {self.algorithm_id} is not available: "
                "check the GeoPlant provider in the Processing toolbox and the QGIS log."
            )
        # A context of its own: no project, so the worker never touches project layers;
        # the transform context is a copy.
        self.context = QgsProcessingContext()
        self.context.setTransformContext(QgsProject.instance().transformContext())
        self.feedback = _Feedback()
        self.feedback.progressChanged.connect(self.progressChanged)
        self.task = QgsProcessingAlgRunnerTask(algorithm, self.parameters, self.context, self.feedback)
        self.task.executed.connect(self._executed)
        self.algorithm = algorithm  # the task made its own copy; keep ours alive anyway
        QgsApplication.taskManager().addTask(self.task)

    def cancel(self) -> None:
        if self.task is not None and not self.done:
            self.cancelled = True
            self.feedback.cancel()
            try:
                self.task.cancel()
            except RuntimeError:  # the C++ task is already gone
                pass

    def is_running(self) -> bool:
        return self.task is not None and not self.done

    def _executed(self, ok, results):
        self.done = True
        for line in self.feedback.lines:
            QgsMessageLog.logMessage(line, LOG_TAG, Qgis.Info)
        if self.cancelled or self.feedback.isCanceled():
            message = "Run cancelled; no output was written."
            ok = False
        elif ok:
            message = ""
        else:
            errors = [e for e in self.feedback.errors if e.strip()]
            message = errors[-1] if errors else "The run failed; see the GeoPlant log for details."
            details = "\n".join(self.feedback.errors) or message
            QgsMessageLog.logMessage(f"Run failed: {details}", LOG_TAG, Qgis.Critical)
        self.task = None
        self.finished.emit(bool(ok), dict(results or {}) if ok else {}, message)
