"""Background work of the dock: a function in a QgsTask, its answer delivered on the main thread.

:class:`Tasks` starts :class:`FunctionTask` objects in QGIS's task manager and keeps them
alive until they end; each has a *kind* ("model", "match", "identify"): a newer task of the
same kind makes the older one's answer stale, so it is dropped. The functions get plain
values (paths, BandRefs, numbers), never a layer or a widget, and their answers come back
through ``done(result, error)`` called on the main thread. After :meth:`Tasks.close` no
answer is delivered (the dock is going away).
"""

from __future__ import annotations

import time
import traceback

from qgis.core import QgsApplication, QgsTask
from qgis.PyQt.QtCore import QTimer


class FunctionTask(QgsTask):
    """``function()`` in a worker thread; ``on_done(result, error, details)`` on the main thread."""

    def __init__(self, description, function, on_done):
        super().__init__(description, QgsTask.CanCancel)
        self.function = function
        self.on_done = on_done
        self.result = None
        self.error: BaseException | None = None
        self.details = ""

    def run(self):  # worker thread
        try:
            self.result = self.function()
        except BaseException as error:  # noqa: BLE001 - handed to the main thread
            self.error = error
            self.details = traceback.format_exc()
        return True

    def finished(self, ok):  # main thread
        error = self.error
        if not ok and error is None:
            error = RuntimeError("The task was cancelled.")
        result, details, on_done = self.result, self.details, self.on_done
        # after the task manager is done with this task: a task added from inside finished()
        # may stay queued for ever (the manager is still handling this one)
        QTimer.singleShot(0, lambda: on_done(result, error, details))


class Tasks:
    """The dock's background tasks by kind (at most one answer per kind is current)."""

    def __init__(self, manager=None):
        self.manager = manager
        self.alive: set[FunctionTask] = set()
        self.current: dict[str, FunctionTask] = {}
        self.closed = False

    def start(self, kind: str, description: str, function, on_done) -> FunctionTask:
        """Run ``function`` in the background; ``on_done(result, error, details)`` on the main
        thread unless a newer ``kind`` task started meanwhile or the dock closed."""

        def done(result, error, details):
            self.alive.discard(task)
            if self.closed or self.current.get(kind) is not task:
                return  # the dock is closing, or a newer task of this kind answers
            del self.current[kind]
            on_done(result, error, details)

        task = FunctionTask(description, function, done)
        self.alive.add(task)
        self.current[kind] = task
        manager = self.manager or QgsApplication.taskManager()
        # from a fresh event-loop turn: a task added while the manager handles another one's
        # end may stay queued for ever
        QTimer.singleShot(0, lambda: self.closed or manager.addTask(task))
        return task

    def busy(self, kind: str | None = None) -> bool:
        if kind is not None:
            return kind in self.current
        return bool(self.current)

    def wait(self, timeout_s: float = 60.0, kind: str | None = None) -> bool:
        """Process events until no task (of ``kind``) is pending (tests and scripts)."""
        from qgis.PyQt.QtCore import QCoreApplication

        deadline = time.monotonic() + timeout_s
        while self.busy(kind) and time.monotonic() < deadline:
            QCoreApplication.processEvents()
            time.sleep(0.005)
        return not self.busy(kind)

    def close(self) -> None:
        """No more answers; running tasks are asked to stop (they end on their own)."""
        self.closed = True
        for task in list(self.alive):
            try:
                task.cancel()
            except RuntimeError:  # the C++ task is gone already
                pass
        self.current.clear()
