"""The dock's run: core's PredictRequest run in a QgsTask, with progress, cancel, all or nothing.

The request is built on the main thread (typed: extent + CRS, area geometries, the mapping
as BandRefs) and only core code runs in the worker: no layer object crosses threads.
"""

from __future__ import annotations

import os
import threading
import time
import traceback

from qgis.core import Qgis, QgsApplication, QgsMessageLog, QgsTask
from qgis.PyQt.QtCore import QObject, pyqtSignal

from ..core.errors import CancelledError, GeoPlantError
from ..core.progress import Progress
from . import corebridge

LOG_TAG = "GeoPlant"


def output_files(outputs) -> list[str]:
    """The outputs and every side-car file core writes next to them: ``{kind: path}``, or a
    list of paths (each with the side-cars of any kind)."""
    from ..core.predict.outputs import output_files as core_output_files

    if isinstance(outputs, dict):
        outputs = {kind: path for kind, path in outputs.items() if path}
        return [name for names in core_output_files(outputs).values() for name in names]
    files = []
    for path in outputs:
        if path:
            files += [name for names in core_output_files({"topk": path}).values() for name in names]
    return files


def remove_outputs(outputs, keep=()) -> None:
    """Delete the files of a run that did not complete (``{kind: path}`` or paths, with side-cars);
    never a name in ``keep`` (the files that were there before the run)."""
    keep = {os.path.abspath(k) for k in keep}
    for candidate in output_files(outputs):
        if os.path.abspath(candidate) in keep:
            continue
        try:
            os.remove(candidate)
        except OSError:
            pass


class _TaskProgress(Progress):
    """core's Progress on a QgsTask (worker thread: the task's own thread-safe calls only)."""

    def __init__(self, task):
        self.task = task
        self.lines: list[str] = []

    def set_progress(self, percent):
        self.task.setProgress(float(percent))  # QGIS's task bar
        self.task.coreProgress.emit(float(percent))  # the dock (queued to the main thread)

    def is_cancelled(self):
        return self.task.stop.is_set() or self.task.isCanceled()

    def info(self, message):
        self.lines.append(str(message))

    def warning(self, message):
        self.lines.append(f"Warning: {message}")
        QgsMessageLog.logMessage(str(message), LOG_TAG, Qgis.Warning)


class _RunTask(QgsTask):
    """core's run in the worker; ``coreProgress`` is core's own progress (QgsTask's
    ``progressChanged`` also says 100 when a cancelled task ends).

    The dock's Cancel sets :attr:`stop` (core checks it between blocks) instead of
    ``QgsTask.cancel()``: a cancelled QgsTask ends *Terminated*, which QGIS reports as
    "Task failed" (a notification, repeated in the message bar); this task always ends
    *Complete* and the dock says once that the run was cancelled. QGIS's own cancel
    button in the task list still works (``isCanceled()``)."""

    coreProgress = pyqtSignal(float)  # noqa: N815 (Qt naming)

    def __init__(self, name, request, on_done):
        super().__init__(f"GeoPlant: {name}", QgsTask.CanCancel)
        self.request = request
        self.on_done = on_done
        self.progress = _TaskProgress(self)
        self.stop = threading.Event()
        self.result = None
        self.error = None
        self.details = ""

    def run(self):  # worker thread
        try:
            self.result = corebridge.run_request(self.request, self.progress)
        except BaseException as error:  # noqa: BLE001 - handed to the main thread
            self.error = error
            self.details = traceback.format_exc()
        return True  # the outcome goes through on_done, never QGIS's "Task failed"

    def finished(self, ok):  # main thread
        self.on_done(self)


class PredictRun(QObject):
    """One run of a core PredictRequest in the background (one pass gives every output).

    All or nothing: core writes under temporary names and publishes every output together
    at the end; a failed or cancelled run leaves the files that were there as they were. A
    cancel that comes after core published removes the run's outputs (and their side-car
    files) only when none of those names existed before the run; when one did, the previous
    file is gone already, so the complete new outputs are kept and the run counts as
    finished: nothing the run did not create is ever deleted.

    Signals: ``progressChanged(float)`` (0-100), ``finished(bool ok, dict outputs, str
    message)`` with ``outputs`` ``{kind: path}``; ``message`` is core's plain-words error,
    or the cancellation notice.
    """

    progressChanged = pyqtSignal(float)  # noqa: N815 (Qt naming)
    finished = pyqtSignal(bool, dict, str)
    #: percent at which progress goes to the GeoPlant log (with cells/s and time left)
    LOG_STEPS = (10, 25, 50, 75, 90)

    def __init__(self, request, name: str = "", parent=None):
        super().__init__(parent)
        self.request = request
        self.name = name
        self.task = None
        self.cancelled = False
        self.done = False
        self.outputs: dict = {}
        #: output names (and side-car names) that existed before the run: never removed
        self.existing: set[str] = set()
        grid = getattr(request, "grid", None)
        self.cells = int(grid.width * grid.height) if grid is not None else 0
        self.started_at = None
        self.seconds = 0.0
        self._logged = set()

    def start(self) -> None:
        self.existing = {f for f in output_files(self.request.outputs) if os.path.lexists(f)}
        self.task = _RunTask(self.name, self.request, self._executed)
        self.task.coreProgress.connect(self._progress)
        self.started_at = time.monotonic()
        QgsApplication.taskManager().addTask(self.task)

    def figures(self, percent) -> dict:
        """``{"done", "total", "rate", "left"}``: cells done of all, cells a second, seconds left."""
        elapsed = time.monotonic() - self.started_at if self.started_at is not None else 0.0
        done = int(self.cells * min(max(percent, 0.0), 100.0) / 100.0)
        rate = done / elapsed if elapsed > 0 and done else None
        left = (self.cells - done) / rate if rate else None
        return {"done": done, "total": self.cells, "rate": rate, "left": left, "elapsed": elapsed}

    def _progress(self, percent):
        if self.done:
            return
        step = next((s for s in reversed(self.LOG_STEPS) if percent >= s), None)
        if step is not None and step not in self._logged:
            self._logged.update(s for s in self.LOG_STEPS if s <= step)
            f = self.figures(percent)
            rate = f"{f['rate']:,.0f} cells/s" if f["rate"] else "–"
            QgsMessageLog.logMessage(
                f"{self.name}: {percent:.0f}% ({f['done']:,} of {f['total']:,} cells, {rate})",
                LOG_TAG,
                Qgis.Info,
            )
        self.progressChanged.emit(float(percent))

    def cancel(self) -> None:
        if self.task is not None and not self.done:
            self.cancelled = True
            self.task.stop.set()  # core stops at the next block; the task ends Complete

    def is_running(self) -> bool:
        return self.task is not None and not self.done

    def _executed(self, task):
        for line in task.progress.lines:
            QgsMessageLog.logMessage(line, LOG_TAG, Qgis.Info)
        error = task.error
        ok = error is None
        self.done = True
        self.task = None
        self.seconds = time.monotonic() - self.started_at if self.started_at is not None else 0.0
        published = dict(getattr(task.result, "outputs", None) or self.request.outputs) if ok else {}
        cancelled = self.cancelled or isinstance(error, CancelledError) or task.isCanceled()
        replaced = {os.path.abspath(f) for f in output_files(published)} & {
            os.path.abspath(f) for f in self.existing
        }
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
        elif isinstance(error, GeoPlantError):
            message = str(error)
            QgsMessageLog.logMessage(f"Run failed: {message}", LOG_TAG, Qgis.Critical)
        else:
            message = f"The run failed: {error}. Details are in the GeoPlant log."
            QgsMessageLog.logMessage(f"Run failed:\n{task.details}", LOG_TAG, Qgis.Critical)
        if not ok and published:
            # a run cancelled after core published: its files go too
            remove_outputs(published, keep=self.existing)
        self.finished.emit(bool(ok), published if ok else {}, message)
