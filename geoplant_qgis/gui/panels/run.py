"""The Run panel: Run and Cancel, the progress bar, elapsed and remaining time, what blocks a run."""

from __future__ import annotations

from qgis.PyQt.QtCore import QElapsedTimer, QTimer
from qgis.PyQt.QtWidgets import QGridLayout, QLabel, QProgressBar, QPushButton, QWidget

from ...core import estimate
from ...processing.base import plugin_icon


class RunPanel:
    """Run/Cancel/progress widgets and the run's clock (elapsed, about how long is left)."""

    def __init__(self, on_run, on_cancel):
        self.box = QWidget()
        layout = QGridLayout(self.box)
        layout.setContentsMargins(0, 0, 0, 0)
        self.run_button = QPushButton("Run")
        self.run_button.setIcon(plugin_icon())
        self.run_button.clicked.connect(on_run)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(on_cancel)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 100)
        self.progress_bar.setValue(0)
        self.time_label = QLabel("")
        self.time_label.setWordWrap(True)
        self.cells = 0
        self.percent = 0.0
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        layout.addWidget(self.run_button, 0, 0)
        layout.addWidget(self.cancel_button, 0, 1)
        layout.addWidget(self.progress_bar, 1, 0, 1, 2)
        layout.addWidget(self.time_label, 2, 0, 1, 2)
        layout.addWidget(self.status_label, 3, 0, 1, 2)
        self.elapsed = QElapsedTimer()
        self.clock = QTimer(self.box)
        self.clock.setInterval(500)
        self.clock.timeout.connect(self.tick)

    def started(self, name, cells=0):
        self.progress_bar.setValue(0)
        self.cells = int(cells)
        self.percent = 0.0
        self.elapsed.start()
        self.clock.start()
        self.status_label.setText(f"Running {name}…")
        self.time_label.setText(f"Elapsed 0 s, 0 of {self.cells:,} cells" if self.cells else "Elapsed 0 s")

    def progress(self, percent):
        self.percent = float(percent)
        self.progress_bar.setValue(int(percent))
        self.tick()

    def figures_text(self) -> str:
        """'Elapsed 12 s · 120,000 of 480,000 cells · 10,000 cells/s · about 36 s left'."""
        seconds = self.elapsed.elapsed() / 1000.0
        percent = getattr(self, "percent", float(self.progress_bar.value()))
        parts = [f"Elapsed {estimate.format_duration(seconds)}"]
        cells = getattr(self, "cells", 0)
        if cells:
            done = int(cells * min(max(percent, 0.0), 100.0) / 100.0)
            parts.append(f"{done:,} of {cells:,} cells")
            if done and seconds > 0:
                parts.append(f"{done / seconds:,.0f} cells/s")
        if 0 < percent < 100:
            left = estimate.format_duration(seconds * (100 - percent) / percent)
            parts.append(f"{left} left" if left.startswith("under") else f"about {left} left")
        return " · ".join(parts)

    def tick(self):
        if not self.elapsed.isValid():
            return
        self.time_label.setText(self.figures_text())

    def reset(self):
        """Nothing from an earlier run (a project was opened)."""
        self.clock.stop()
        self.elapsed.invalidate()
        self.progress_bar.setValue(0)
        self.time_label.setText("")
        self.status_label.setText("")

    def stopped(self, ok) -> float:
        """The clock stopped; the seconds the run took."""
        self.clock.stop()
        seconds = self.elapsed.elapsed() / 1000.0 if self.elapsed.isValid() else 0.0
        self.elapsed.invalidate()
        if ok:
            self.progress_bar.setValue(100)
            cells = getattr(self, "cells", 0)
            rate = f" ({cells:,} cells, {cells / seconds:,.0f} cells/s)" if cells and seconds > 0 else ""
            self.time_label.setText(f"Finished in {estimate.format_duration(seconds)}{rate}")
        else:
            self.progress_bar.setValue(0)
            self.time_label.setText("")
        return seconds

    def show_state(self, state, blockers):
        running = state.run.running
        self.run_button.setEnabled(not blockers)
        self.cancel_button.setEnabled(running)
        if not running:
            self.status_label.setText(" ".join(blockers))
