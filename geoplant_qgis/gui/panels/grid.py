"""The Grid panel: cell size and CRS of the grid, and the live estimate of cells, disk and time."""

from __future__ import annotations

from qgis.core import QgsCoordinateReferenceSystem
from qgis.gui import QgsDoubleSpinBox, QgsProjectionSelectionWidget
from qgis.PyQt.QtWidgets import QComboBox, QFormLayout, QLabel

from ...core import estimate
from ...core.devices import DEFAULT_DEVICE, DEVICE_NAMES
from ...core.predict.request import DEFAULT_CELL_SIZE, DEFAULT_CRS
from .common import section, signals_blocked


class GridPanel:
    """Cell size, CRS, estimate; ``on_changed()`` after the user changes the grid."""

    def __init__(self, state, on_changed):
        self.state = state
        self.on_changed = on_changed
        self.box = section("Grid")
        form = QFormLayout(self.box)
        self.cell_size_spin = QgsDoubleSpinBox()
        self.cell_size_spin.setRange(1.0, 1_000_000.0)
        self.cell_size_spin.setDecimals(1)
        self.cell_size_spin.setSuffix(" m")
        self.cell_size_spin.setValue(DEFAULT_CELL_SIZE)
        self.cell_size_spin.setClearValue(DEFAULT_CELL_SIZE)
        self.cell_size_spin.valueChanged.connect(self._read)
        form.addRow("Cell size", self.cell_size_spin)
        self.crs_widget = QgsProjectionSelectionWidget()
        self.crs_widget.setCrs(QgsCoordinateReferenceSystem(DEFAULT_CRS))
        self.crs_widget.crsChanged.connect(self._read)
        form.addRow("CRS", self.crs_widget)
        # where the model runs (core.devices): auto takes a GPU when onnxruntime offers one;
        # a missing one falls back to the CPU with a warning in the run's log
        self.device_combo = QComboBox()
        self.device_combo.addItems(list(DEVICE_NAMES))
        self.device_combo.setCurrentText(DEFAULT_DEVICE)
        self.device_combo.setToolTip(
            "Where the model runs. auto: a GPU when the installed onnxruntime offers one (CUDA: "
            "onnxruntime-gpu with CUDA 12 and cuDNN 9), else the CPU. A device that is missing "
            "falls back to the CPU with a warning."
        )
        self.device_combo.currentTextChanged.connect(self._read)
        form.addRow("Device", self.device_combo)
        self.estimate_label = QLabel("")
        self.estimate_label.setWordWrap(True)
        form.addRow(self.estimate_label)
        self.estimate_warning = QLabel("")
        self.estimate_warning.setWordWrap(True)
        self.estimate_warning.setStyleSheet("color: #b35900;")
        form.addRow(self.estimate_warning)

    def _read(self, *args):
        self.state.cell_size = float(self.cell_size_spin.value())
        self.state.grid_crs = QgsCoordinateReferenceSystem(self.crs_widget.crs())
        self.state.device = self.device_combo.currentText() or DEFAULT_DEVICE
        self.on_changed()

    def show_grid(self, state, default_cell_size=None):
        """The state's grid in the widgets (model change, settings), without calling back."""
        with signals_blocked(self.cell_size_spin, self.crs_widget):
            if default_cell_size is not None:
                self.cell_size_spin.setClearValue(default_cell_size)
            self.cell_size_spin.setValue(state.cell_size)
            if state.grid_crs.isValid():
                self.crs_widget.setCrs(state.grid_crs)
        state.cell_size = float(self.cell_size_spin.value())

    def show_estimate(self, state):
        result = state.estimate
        if result is None:
            self.estimate_label.setText("")
            self.estimate_warning.setText("\n".join(t for t in (state.estimate_problem, state.coverage) if t))
            return
        self.estimate_label.setText(
            f"{result.width:,} × {result.height:,} = {result.cells:,} cells<br>"
            f"outputs up to {estimate.format_bytes(result.bytes)} on disk<br>"
            f"expected time: {estimate.format_duration(result.seconds)}"
        )
        lines = [*result.warnings, *([state.coverage] if state.coverage else [])]
        self.estimate_warning.setText("\n".join(lines))
