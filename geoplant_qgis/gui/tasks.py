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

from ..core.geotiff import SPECIES_CSV_SUFFIX

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
#: files written next to an output, after its stem (top-K species table and style, GDAL's
#: statistics): the engine's names, so a run cancelled after the algorithm finished leaves none
SIDE_CARS = (SPECIES_CSV_SUFFIX, ".qml", ".tif.aux.xml")


def output_files(paths) -> list[str]:
    """The outputs and the side-car files a run writes next to them."""
    files = []
    for path in paths:
        if path:
            stem = os.path.splitext(path)[0]
            files += [path, *(stem + ext for ext in SIDE_CARS)]
    return files


def remove_outputs(paths, keep=()) -> None:
    """Delete finished outputs (and their side-car files) of a run that did not complete;
    never a name in ``keep`` (the files that were there before the run)."""
    keep = {os.path.abspath(k) for k in keep}
    for candidate in output_files(paths):
        if os.path.abspath(candidate) in keep:
            continue
        try:
            os.remove(candidate)
        except OSError:
            pass


class PredictRun(QObject):
    """One run of ``geoplant:predict`` in the background (one pass gives every output:
    SPECIES only chooses the probability bands).

    All or nothing: the algorithm writes under temporary names and renames at the end, and
    a failed or cancelled algorithm leaves every previous file as it was. A cancel that
    comes after the algorithm finished removes the outputs it published (and their
    side-car files) when none of those names existed before the run; when one did, the
    previous file is gone already, so the complete new outputs are kept and the run counts
    as finished (nothing the run did not create is ever deleted).

    Signals: ``progressChanged(float)`` (0-100), ``finished(bool ok, dict results, str
    message)``; ``message`` is the algorithm's own plain-words error, or the cancellation
    notice.
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
        self.algorithm = None
        self.cancelled = False
        self.done = False
        self.results: dict = {}
        #: output names (and side-car names) that existed before the run: never removed
        self.existing: set[str] = set()

    def start(self) -> None:
        """Queue the run; raises RuntimeError with a plain message when the algorithm is absent."""
        if QgsApplication.processingRegistry().algorithmById(self.algorithm_id) is None:
            raise RuntimeError(
                f"The Processing algorithm {self.algorithm_id} is not available: "
                "check the GeoPlant provider in the Processing toolbox and the QGIS log."
            )
        algorithm = QgsApplication.processingRegistry().createAlgorithmById(self.algorithm_id)
        # A context of its own: no project, so the worker never touches project layers;
        # the transform context is a copy.
        self.context = QgsProcessingContext()
        self.context.setTransformContext(QgsProject.instance().transformContext())
        self.feedback = _Feedback()
        self.feedback.progressChanged.connect(self._progress)
        self.task = QgsProcessingAlgRunnerTask(algorithm, self.parameters, self.context, self.feedback)
        self.task.executed.connect(self._executed)
        self.existing = {
            f for f in output_files(self.parameters.get(key) for key in OUTPUT_KEYS) if os.path.lexists(f)
        }
        self.algorithm = algorithm  # the task made its own copy; keep ours alive anyway
        QgsApplication.taskManager().addTask(self.task)

    def _progress(self, percent):
        self.progressChanged.emit(float(percent))

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
        self.results = dict(results or {}) if ok else {}
        self.done = True
        self.task = None
        published = output_files(self.results.get(key) for key in OUTPUT_KEYS)
        replaced = {os.path.abspath(f) for f in published} & {os.path.abspath(f) for f in self.existing}
        if cancelled and ok and replaced:
            # too late to cancel: the outputs replaced files that were there; keep them
            QgsMessageLog.logMessage(
                "The cancel came after the run had finished and replaced existing files: its "
                "outputs are kept.",
                LOG_TAG,
                Qgis.Info,
            )
            cancelled = False
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
            # a run cancelled after the algorithm finished: its files go too
            remove_outputs((self.results.get(key) for key in OUTPUT_KEYS), keep=self.existing)
        self.finished.emit(bool(ok), dict(self.results) if ok else {}, message)
