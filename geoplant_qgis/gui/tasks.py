"""The background run of the dock: ``geoplant:predict`` in a QgsProcessingAlgRunnerTask.

The dock builds the parameters from file paths and plain values (no layer objects), this
object runs the algorithm in QGIS's task manager and reports progress, log lines and the
outcome through Qt signals delivered on the main thread.
"""

from __future__ import annotations

import os

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


OUTPUT_KEYS = ("OUTPUT_RICHNESS", "OUTPUT_TOPK", "OUTPUT_PROBABILITIES")
#: files written next to an output (top-K species table and style, GDAL's statistics)
SIDE_CARS = (".csv", ".qml", ".tif.aux.xml")


def remove_outputs(paths) -> None:
    """Delete finished outputs (and their side-car files) of a run that did not complete."""
    for path in paths:
        if not path:
            continue
        stem = os.path.splitext(path)[0]
        for candidate in (path, *(stem + ext for ext in SIDE_CARS)):
            try:
                os.remove(candidate)
            except OSError:
                pass


class PredictRun(QObject):
    """One run of ``geoplant:predict`` in the background, in one or more passes.

    ``parameters`` is a dict, or a list of dicts run one after the other (the dock needs a
    second pass when probability maps are restricted to some species, since SPECIES
    restricts every output of the algorithm). If a later pass fails or is cancelled,
    the outputs of the earlier ones are removed: a run leaves all or nothing.

    Signals: ``progressChanged(float)`` (0-100 over all passes), ``finished(bool ok,
    dict results, str message)``; ``message`` is the algorithm's own plain-words error,
    or the cancellation notice.
    """

    progressChanged = pyqtSignal(float)  # noqa: N815 (Qt naming)
    finished = pyqtSignal(bool, dict, str)

    def __init__(self, parameters, algorithm_id: str = PREDICT_ID, parent=None):
        super().__init__(parent)
        passes = parameters if isinstance(parameters, list | tuple) else [parameters]
        self.passes = [dict(p) for p in passes]
        self.algorithm_id = algorithm_id
        self.index = -1
        self.task = None
        self.context = None
        self.feedback = None
        self.algorithm = None
        self.cancelled = False
        self.done = False
        self.results: dict = {}

    def start(self) -> None:
        """Queue the first pass; raises RuntimeError with a plain message when the algorithm is absent."""
        if QgsApplication.processingRegistry().algorithmById(self.algorithm_id) is None:
            raise RuntimeError(
                f"The Processing algorithm {self.algorithm_id} is not available: "
                "check the GeoPlant provider in the Processing toolbox and the QGIS log."
            )
        self._start_next()

    def _start_next(self) -> None:
        self.index += 1
        algorithm = QgsApplication.processingRegistry().createAlgorithmById(self.algorithm_id)
        # A context of its own: no project, so the worker never touches project layers;
        # the transform context is a copy.
        self.context = QgsProcessingContext()
        self.context.setTransformContext(QgsProject.instance().transformContext())
        self.feedback = _Feedback()
        self.feedback.progressChanged.connect(self._pass_progress)
        if self.cancelled:
            self.feedback.cancel()
        self.task = QgsProcessingAlgRunnerTask(
            algorithm, self.passes[self.index], self.context, self.feedback
        )
        self.task.executed.connect(self._executed)
        self.algorithm = algorithm  # the task made its own copy; keep ours alive anyway
        QgsApplication.taskManager().addTask(self.task)

    def _pass_progress(self, percent):
        self.progressChanged.emit((self.index * 100.0 + float(percent)) / len(self.passes))

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
        for line in self.feedback.lines:
            QgsMessageLog.logMessage(line, LOG_TAG, Qgis.Info)
        cancelled = self.cancelled or self.feedback.isCanceled()
        if ok and not cancelled:
            self.results.update(results or {})
            if self.index + 1 < len(self.passes):
                self._start_next()
                return
        self.done = True
        self.task = None
        if cancelled:
            message = "Run cancelled; no output was written."
            ok = False
        elif ok:
            message = ""
        else:
            errors = [e for e in self.feedback.errors if e.strip()]
            message = errors[-1] if errors else "The run failed; see the GeoPlant log for details."
            details = "\n".join(self.feedback.errors) or message
            QgsMessageLog.logMessage(f"Run failed: {details}", LOG_TAG, Qgis.Critical)
        if not ok:
            remove_outputs(self.results.get(key) for key in OUTPUT_KEYS)
        self.finished.emit(bool(ok), dict(self.results) if ok else {}, message)
