"""The Decisions panel: from a run's probabilities to a site report, presence maps, an ensemble.

One click opens the Processing dialog of ``geoplant:areareport``, ``geoplant:presence`` or
``geoplant:ensemble`` filled in with the chosen probability raster (the last run's by
default; every probability raster of the project, found by its layers' custom properties,
for an ensemble). Processing runs the algorithm in the background and adds its outputs as
layers with the algorithms' styles; the site report (HTML) is opened when it is written.
"""

from __future__ import annotations

import os

from qgis.PyQt.QtCore import QUrl
from qgis.PyQt.QtGui import QDesktopServices
from qgis.PyQt.QtWidgets import QComboBox, QGridLayout, QLabel, QPushButton

from .. import results
from .common import section

ALGORITHMS = {
    "report": "geoplant:areareport",
    "presence": "geoplant:presence",
    "ensemble": "geoplant:ensemble",
}


def open_algorithm_dialog(algorithm_id: str, parameters: dict):
    """Processing's own dialog of ``algorithm_id``, pre-filled; its results (or None)."""
    import processing

    return processing.execAlgorithmDialog(algorithm_id, parameters)


def probability_rasters(project=None) -> list[tuple[str, str]]:
    """(run name, path) of every probability raster of the project's result layers, latest
    run first."""
    found = []
    for run in results.project_run_outputs(project):
        path = run["outputs"].get(results.PROBABILITIES)
        if path and path not in [p for _, p in found]:
            found.append((run["name"], path))
    return found


class DecisionsPanel:
    """Raster choice and the three buttons; ``show_message(text)`` for plain-words problems."""

    def __init__(self, show_message):
        self.show_message = show_message
        self.box = section("Decisions")
        layout = QGridLayout(self.box)
        self.raster_combo = QComboBox()
        self.raster_combo.setToolTip(
            "The probability raster of a run (tick species under Outputs to make one)"
        )
        layout.addWidget(QLabel("Probabilities"), 0, 0)
        layout.addWidget(self.raster_combo, 0, 1, 1, 2)
        self.report_button = QPushButton("Site report…")
        self.report_button.setToolTip(
            "geoplant:areareport: per site of a polygon layer, expected species, mean probability "
            "and hectares above a threshold (CSV + HTML report)"
        )
        self.presence_button = QPushButton("Presence maps…")
        self.presence_button.setToolTip(
            "geoplant:presence: present / absent maps by a named rule (fixed, max_tss, ...)"
        )
        self.ensemble_button = QPushButton("Ensemble…")
        self.ensemble_button.setToolTip(
            "geoplant:ensemble: mean, standard deviation and agreement of several runs' probabilities"
        )
        layout.addWidget(self.report_button, 1, 0)
        layout.addWidget(self.presence_button, 1, 1)
        layout.addWidget(self.ensemble_button, 1, 2)
        self.label = QLabel("")
        self.label.setWordWrap(True)
        layout.addWidget(self.label, 2, 0, 1, 3)
        self.report_button.clicked.connect(lambda: self.open("report"))
        self.presence_button.clicked.connect(lambda: self.open("presence"))
        self.ensemble_button.clicked.connect(lambda: self.open("ensemble"))
        self.last_parameters: dict | None = None
        self.refresh()

    def refresh(self, preferred: str | None = None):
        """The project's probability rasters in the list (``preferred`` path chosen)."""
        current = preferred or self.raster_combo.currentData()
        rasters = probability_rasters()
        self.raster_combo.clear()
        for name, path in rasters:
            self.raster_combo.addItem(f"{name} ({os.path.basename(path)})", path)
        index = self.raster_combo.findData(current) if current else -1
        self.raster_combo.setCurrentIndex(index if index >= 0 else (0 if rasters else -1))
        has = bool(rasters)
        for button in (self.report_button, self.presence_button):
            button.setEnabled(has)
        self.ensemble_button.setEnabled(len(rasters) >= 2)
        self.label.setText(
            ""
            if has
            else "After a run with probability maps (tick species under Outputs): site report, "
            "presence maps and ensembles from here."
        )

    def parameters(self, what: str) -> dict:
        path = self.raster_combo.currentData()
        if what == "ensemble":
            return {"INPUTS": [p for _, p in probability_rasters()]}
        return {"PROBABILITIES": path}

    def open(self, what: str):
        """The algorithm's dialog, pre-filled; a site report is opened once written."""
        if self.raster_combo.currentData() is None:
            self.show_message("Run a prediction with probability maps first (tick species under Outputs).")
            return None
        parameters = self.parameters(what)
        self.last_parameters = parameters
        try:
            outcome = open_algorithm_dialog(ALGORITHMS[what], parameters)
        except Exception as error:  # noqa: BLE001 - e.g. Processing not loaded
            self.show_message(f"{ALGORITHMS[what]} cannot be opened: {error}")
            return None
        report = (outcome or {}).get("OUTPUT_REPORT") if isinstance(outcome, dict) else None
        if report and os.path.exists(str(report)):
            QDesktopServices.openUrl(QUrl.fromLocalFile(str(report)))
        return outcome


__all__ = ["ALGORITHMS", "DecisionsPanel", "open_algorithm_dialog", "probability_rasters"]
