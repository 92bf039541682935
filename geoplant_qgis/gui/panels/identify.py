"""The "What grows here?" panel: ONE answer for a clicked spot, from the outputs or the model.

The answer comes from a finished run's result layers when the spot is inside them (the
layers are found in the project by their custom properties, so a reopened project answers
too), else from the model at the spot in a background task; never both for one spot. A
marker shows the spot on the map until the next click or until the dock closes. The
answer can be copied (tab-separated) or saved as CSV.
"""

from __future__ import annotations

import csv
import io

from qgis.core import QgsCoordinateTransform, QgsPointXY, QgsProject
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QColor, QGuiApplication
from qgis.PyQt.QtWidgets import (
    QFileDialog,
    QHBoxLayout,
    QPushButton,
    QTextBrowser,
    QToolButton,
    QVBoxLayout,
)

from ...core.errors import GeoPlantError
from ...processing.base import plugin_icon
from .. import corebridge, results
from ..state import crs_text
from .common import escape, section

#: the columns of a copied or saved answer
COLUMNS = ["x", "y", "crs", "source", "richness", "rank", "species_id", "species", "probability"]
MODEL_SOURCE = "the model, run at this spot"


def source_text(answer) -> str:
    """Where the answer comes from, as a sentence (never glued to a number)."""
    if answer.get("run"):
        text = f"From the outputs of run {answer['run']}"
        cell = answer.get("cell")
        if cell is not None:
            text += f" (cell centre {cell[0]:,.0f}, {cell[1]:,.0f})"
        text += ", not a new model run."
        if answer.get("filled"):
            text += " p of species without a probability map: the model at that cell centre."
        return text
    return "From the model, run at this spot (no finished run covers it)."


def answer_rows(answer) -> list[list]:
    """One row per species, :data:`COLUMNS`."""
    x, y, crs = answer.get("point") or ("", "", "")
    source = f"outputs of {answer['run']}" if answer.get("run") else MODEL_SOURCE
    richness = "" if answer.get("richness") is None else f"{answer['richness']:.4g}"
    rows = []
    for rank, (sid, name, p) in enumerate(answer["species"], start=1):
        rows.append(
            [
                x if x == "" else f"{x:.6f}",
                y if y == "" else f"{y:.6f}",
                crs,
                source,
                richness,
                rank,
                "" if sid is None else sid,
                name,
                "" if p is None else f"{p:.4f}",
            ]
        )
    return rows


def answer_table_text(answer, delimiter="\t") -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=delimiter, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(answer_rows(answer))
    return buffer.getvalue()


def answer_html(answer) -> str:
    lines = []
    if answer.get("richness") is not None:
        threshold = answer.get("threshold")
        counted = f" with p ≥ {threshold:g}" if threshold is not None else ""
        lines.append(f"<p><b>Expected richness: {answer['richness']:.1f} species{counted}</b></p>")
    lines.append(f"<p><i>{escape(source_text(answer))}</i></p>")
    if answer["species"]:
        lines.append("<table cellspacing='0' cellpadding='2'>")
        lines.append("<tr><th align='right'>#</th><th align='left'>species</th><th align='right'>p</th></tr>")
        for rank, (sid, name, p) in enumerate(answer["species"], start=1):
            prob = f"{p:.3f}" if p is not None else ("…" if answer.get("pending") else "–")
            ident = f" ({sid})" if sid is not None and f"({sid})" not in str(name) else ""
            lines.append(
                f"<tr><td align='right'>{rank}</td><td>{escape(name)}{ident}</td>"
                f"<td align='right'>{prob}</td></tr>"
            )
        lines.append("</table>")
    return "".join(lines)


class IdentifyPanel:
    """The tool button, the answer view, Copy and Save as CSV."""

    def __init__(self):
        self.box = section("What grows here?")
        layout = QVBoxLayout(self.box)
        self.button = QToolButton()
        self.button.setText("What grows here?")
        self.button.setIcon(plugin_icon("identify_species.svg"))
        self.button.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        self.button.setCheckable(True)
        self.button.setToolTip("Click the map: the top species and the expected richness there")
        layout.addWidget(self.button)
        self.view = QTextBrowser()
        self.view.setMinimumHeight(170)
        self.view.setPlaceholderText("Click a cell of a result (or anywhere, to run the model there).")
        layout.addWidget(self.view)
        row = QHBoxLayout()
        self.copy_button = QPushButton("Copy")
        self.copy_button.setToolTip("Copy the answer as tab-separated text (paste into a spreadsheet)")
        self.csv_button = QPushButton("Save as CSV…")
        for button in (self.copy_button, self.csv_button):
            button.setEnabled(False)
            row.addWidget(button)
        row.addStretch(1)
        layout.addLayout(row)

    def show_text(self, text):
        self.view.setPlainText(text)
        self.copy_button.setEnabled(False)
        self.csv_button.setEnabled(False)

    def show_answer(self, answer):
        self.view.setHtml(answer_html(answer))
        self.copy_button.setEnabled(True)
        self.csv_button.setEnabled(True)


class Identify:
    """ "What grows here?" (see the module docstring): the outputs at the spot when a finished
    run covers it (read at once: one pixel of each output file; probabilities the outputs lack
    come from the model at that output cell's centre, in a task), else the model at the spot
    in a background task, with the threshold of the outputs (richness as predict counts it)."""

    def __init__(self, panel, state, tasks, show_message, unexpected, canvas=None):
        self.panel, self.state, self.tasks = panel, state, tasks
        self.show_message, self.unexpected = show_message, unexpected
        self.canvas = canvas
        self.marker = None
        self.answer = None  # the last answer shown
        panel.copy_button.clicked.connect(self.copy)
        panel.csv_button.clicked.connect(self._choose_csv)

    # ------------------------------------------------------------------ marker
    def mark(self, point, crs):
        """A marker at ``point`` (``crs``) on the canvas, replacing the previous one."""
        self.clear_marker()
        if self.canvas is None:
            return
        from qgis.gui import QgsVertexMarker

        canvas_crs = self.canvas.mapSettings().destinationCrs()
        shown = QgsPointXY(point)
        if crs is not None and crs.isValid() and crs != canvas_crs:
            try:
                shown = QgsCoordinateTransform(crs, canvas_crs, QgsProject.instance()).transform(shown)
            except Exception:  # noqa: BLE001 - QgsCsException: not on this map
                return
        marker = QgsVertexMarker(self.canvas)
        marker.setCenter(shown)
        marker.setIconType(QgsVertexMarker.ICON_CIRCLE)
        marker.setIconSize(14)
        marker.setPenWidth(3)
        marker.setColor(QColor(230, 20, 120))
        self.marker = marker

    def clear_marker(self):
        if self.marker is not None and self.canvas is not None:
            self.canvas.scene().removeItem(self.marker)
        self.marker = None

    # ------------------------------------------------------------------ the answer
    def runs(self):
        """Finished runs to read, latest first: the result layers of the project (from their
        custom properties: a reopened project too), then the panel's last run."""
        runs = results.project_run_outputs()
        state = self.state
        if state.run.outputs and state.run.name not in {run["name"] for run in runs}:
            runs.append({"name": state.run.name, "outputs": state.run.outputs, "names": {}})
        return runs

    def at(self, point, crs):
        state = self.state
        self.answer = None
        self.mark(point, crs)
        where = (point.x(), point.y(), crs_text(crs) if crs is not None else "")
        try:
            for run in self.runs():
                names = {**run.get("names", {}), **state.species_names()}
                answer = results.identify_outputs(point, crs, run["outputs"], names)
                if answer is not None:
                    answer.update(run=run["name"], point=where)
                    self._fill_probabilities(answer)
                    return self.show(answer)
            if state.card is None:
                raise GeoPlantError("Choose a model first.")
            missing = state.missing_inputs()
            if missing:
                raise GeoPlantError(f"Missing inputs: {', '.join(missing)}.")
        except GeoPlantError as error:
            self.panel.show_text(str(error))
            self.show_message(str(error))
            return None
        except Exception as error:  # noqa: BLE001
            self.unexpected("What grows here?", error)
            return None
        model, card, mapping = state.model_path, state.card, dict(state.inputs)
        x, y, wkt = point.x(), point.y(), (crs_text(crs) if crs is not None else None) or "EPSG:3035"
        threshold = state.outputs.threshold
        self.panel.show_text("Running the model at this spot…")

        def predicted(answer, error, details):
            if answer is not None:
                answer["point"] = where
            self._predicted(answer, error, details)

        self.tasks.start(
            "identify",
            "GeoPlant: what grows here?",
            lambda: corebridge.predict_point(model, card, mapping, x, y, wkt, threshold),
            predicted,
        )
        return None

    def _fill_probabilities(self, answer):
        """Probabilities the outputs lack (top-K species not in the probability raster): the
        model at the output cell's centre, where the run sampled (a task; same values)."""
        state = self.state
        missing = [sid for sid, _, p in answer["species"] if p is None and sid is not None]
        cell = answer.get("cell")
        if not missing or cell is None or state.card is None or state.missing_inputs():
            return
        known = {s.id for s in state.card.species}
        if not set(missing) <= known:
            return  # the outputs are another model's
        answer["pending"] = True
        model, card, mapping = state.model_path, state.card, dict(state.inputs)

        def done(values, error, details):
            if self.answer is not answer:
                return  # another spot was clicked meanwhile
            answer.pop("pending", None)
            if error is not None or values is None:
                self.panel.show_answer(answer)
                return
            answer["species"] = [
                (sid, name, values.get(sid) if p is None else p) for sid, name, p in answer["species"]
            ]
            answer["filled"] = True
            self.panel.show_answer(answer)

        self.tasks.start(
            "identify",
            "GeoPlant: what grows here? (probabilities)",
            lambda: corebridge.point_probabilities(model, card, mapping, *cell),
            done,
        )

    def _predicted(self, answer, error, details):
        if isinstance(error, GeoPlantError):
            self.panel.show_text(str(error))
            self.show_message(str(error))
        elif error is not None:
            self.unexpected("What grows here?", error, details)
        elif answer is None:
            self.panel.show_text("No prediction here: outside the inputs or on a nodata cell.")
        else:
            self.show(answer)

    def show(self, answer):
        self.answer = answer
        self.panel.show_answer(answer)
        return answer

    # ------------------------------------------------------------------ copy and export
    def text(self) -> str:
        """The answer as tab-separated text with a header line ('' without an answer)."""
        return answer_table_text(self.answer) if self.answer else ""

    def copy(self):
        if self.answer:
            QGuiApplication.clipboard().setText(self.text())

    def save_csv(self, path):
        """The answer as a CSV file (:data:`COLUMNS`)."""
        if not self.answer:
            raise GeoPlantError("Click the map first: there is no answer to save.")
        with open(path, "w", encoding="utf-8", newline="") as handle:
            handle.write(answer_table_text(self.answer, delimiter=","))
        return path

    def _choose_csv(self):
        path, _ = QFileDialog.getSaveFileName(None, "Save the answer as CSV", "", "CSV (*.csv)")
        if path:
            if not path.lower().endswith(".csv"):
                path += ".csv"
            try:
                self.save_csv(path)
            except OSError as error:
                self.show_message(f"The answer cannot be saved: {error}")

    def close(self):
        self.clear_marker()


__all__ = ["COLUMNS", "Identify", "IdentifyPanel", "answer_html"]
