"""The "What grows here?" panel: the answer for a clicked point, from the outputs or the model."""

from __future__ import annotations

from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QTextBrowser, QToolButton, QVBoxLayout

from ...core.errors import GeoPlantError
from ...processing.base import plugin_icon
from .. import corebridge, results
from ..state import crs_text
from .common import escape, section


def answer_html(answer, source) -> str:
    lines = []
    if answer.get("richness") is not None:
        threshold = answer.get("threshold")
        counted = f" with p ≥ {threshold:g}" if threshold is not None else ""
        lines.append(f"<b>Expected richness: {answer['richness']:.1f} species{counted}</b>")
    lines.append(f"<p><i>{escape(source)}</i></p>")
    if answer["species"]:
        lines.append("<ol>")
        for sid, name, p in answer["species"][:10]:
            prob = f" — p = {p:.3f}" if p is not None else ""
            lines.append(f"<li>{escape(name)} ({sid}){prob}</li>")
        lines.append("</ol>")
    return "".join(lines)


class IdentifyPanel:
    """The tool button and the answer view."""

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
        self.view.setMinimumHeight(80)
        self.view.setPlaceholderText("Click a cell of a result (or anywhere, to run the model there).")
        layout.addWidget(self.view)

    def show_text(self, text):
        self.view.setPlainText(text)

    def show_answer(self, answer, source):
        self.view.setHtml(answer_html(answer, source))


class Identify:
    """ "What grows here?": the last run's outputs at the point when they cover it (read at
    once: one pixel of each output file), else the model at the point in a background task,
    with the threshold of the outputs (richness as predict counts it)."""

    def __init__(self, panel, state, tasks, show_message, unexpected):
        self.panel, self.state, self.tasks = panel, state, tasks
        self.show_message, self.unexpected = show_message, unexpected
        self.answer = None  # the last answer shown

    def at(self, point, crs):
        state = self.state
        self.answer = None
        try:
            if state.run.outputs:
                answer = results.identify_outputs(point, crs, state.run.outputs, state.species_names())
                if answer is not None:
                    return self.show(answer, f"from the outputs of {state.run.name}")
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
        self.panel.show_text("Running the model at this point…")
        self.tasks.start(
            "identify",
            "GeoPlant: what grows here?",
            lambda: corebridge.predict_point(model, card, mapping, x, y, wkt, threshold),
            self._predicted,
        )
        return None

    def _predicted(self, answer, error, details):
        if isinstance(error, GeoPlantError):
            self.panel.show_text(str(error))
            self.show_message(str(error))
        elif error is not None:
            self.unexpected("What grows here?", error, details)
        elif answer is None:
            self.panel.show_text("No prediction here: outside the inputs or on a nodata cell.")
        else:
            self.show(answer, "by running the model at this point")

    def show(self, answer, source):
        self.answer = answer
        self.panel.show_answer(answer, source)
        return answer
