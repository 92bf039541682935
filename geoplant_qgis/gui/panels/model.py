"""The Model panel: choose the .onnx file (or the demo model) and show its card."""

from __future__ import annotations

import os

from qgis.gui import QgsFileWidget
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QHBoxLayout, QLabel, QPushButton, QVBoxLayout

from ...core.bundled import default_model_path
from .common import error_html, escape, section, signals_blocked


def card_summary(card, model_path, seconds_per_cell=None) -> str:
    """The card as a few lines of HTML: name, species, inputs, default grid, model speed."""
    lines = [f"<b>{escape(card.name or os.path.basename(model_path or ''))}</b>"]
    if card.description:
        lines.append(escape(card.description))
    lines.append(f"{len(card.species):,} species; output <i>{card.output.activation}</i>")
    for spec in card.inputs:
        names = spec.source_names
        shown = ", ".join(names[:8]) + (f", … ({len(names)} in all)" if len(names) > 8 else "")
        extra = ""
        if spec.kind == "patch":
            extra = f" {spec.size}×{spec.size} px at {spec.pixel_size_m:g} m"
        elif spec.kind == "cube":
            extra = " [" + "×".join(map(str, spec.shape)) + "]"
        lines.append(f"input <i>{escape(spec.name)}</i> ({spec.kind}{extra}): {escape(shown)}")
    if card.grid is not None:
        lines.append(f"default grid: {card.grid.cell_size_m:g} m in {card.grid.crs}")
    if seconds_per_cell is not None:
        lines.append(f"model speed: {1.0 / max(seconds_per_cell, 1e-12):,.0f} cells/s")
    else:
        lines.append("model speed: timing…")
    return "<br>".join(lines)


class ModelPanel:
    """The widgets of the Model section; ``on_chosen(path)`` when the user picks a file."""

    def __init__(self, on_chosen, on_demo):
        self.box = section("Model")
        layout = QVBoxLayout(self.box)
        self.file_widget = QgsFileWidget()
        self.file_widget.setFilter("ONNX models (*.onnx)")
        self.file_widget.setDialogTitle("Choose a GeoPlant ONNX model")
        self.file_widget.fileChanged.connect(on_chosen)
        row = QHBoxLayout()
        row.addWidget(self.file_widget, 1)
        self.bundled_button = QPushButton("Demo model")
        self.bundled_button.setToolTip("Use the demo model shipped with the plugin")
        self.bundled_button.clicked.connect(on_demo)
        self.bundled_button.setEnabled(default_model_path() is not None)
        row.addWidget(self.bundled_button)
        layout.addLayout(row)
        self.card_label = QLabel("No model chosen.")
        self.card_label.setWordWrap(True)
        self.card_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        layout.addWidget(self.card_label)

    def show_path(self, path):
        if self.file_widget.filePath() != (path or ""):
            with signals_blocked(self.file_widget):
                self.file_widget.setFilePath(path or "")

    def show_state(self, state):
        if state.model_loading:
            self.card_label.setText(f"Reading {escape(os.path.basename(state.model_path or ''))}…")
        elif state.card is not None:
            self.card_label.setText(card_summary(state.card, state.model_path, state.seconds_per_cell))
        elif state.model_error:
            self.card_label.setText(error_html(state.model_error))
        else:
            self.card_label.setText("No model chosen.")


__all__ = ["ModelPanel", "card_summary"]
