"""The GeoPlant dock: the panels around one DockState, with the slow work in background tasks.

The dock wires the panels (``panels/``) to the :class:`~.state.DockState` and starts the
background work: reading a card and timing the model, matching the inputs over the
project's rasters, "What grows here?" by the model, and the run itself (core's
PredictRequest, :mod:`.run`). The GUI thread never runs or times a model and never opens
the project's rasters; it recomputes the estimate and what blocks Run at most once per
burst of signals (a single-shot timer, :meth:`GeoPlantDock.refresh`). The model and inputs
wiring (card, timing, matching) is its first base, :class:`~.modelinputs.ModelAndInputs`.
"""

from __future__ import annotations

import os
import time
import traceback

from qgis.core import (
    Qgis,
    QgsCoordinateReferenceSystem,
    QgsGeometry,
    QgsMessageLog,
    QgsProject,
    QgsRasterLayer,
)
from qgis.gui import QgsDockWidget
from qgis.PyQt.QtCore import Qt, QTimer
from qgis.PyQt.QtWidgets import QScrollArea, QVBoxLayout, QWidget

from ..core import estimate
from ..core.errors import GeoPlantError
from . import corebridge, results, settings
from .maptools import AreaDisplay, CanvasTools
from .modelinputs import ModelAndInputs
from .panels.area import AreaPanel, drawn_area, selected_features_area
from .panels.decisions import DecisionsPanel
from .panels.grid import GridPanel
from .panels.identify import Identify, IdentifyPanel
from .panels.inputs import InputsPanel
from .panels.model import ModelPanel
from .panels.outputs import OutputsPanel
from .panels.run import RunPanel
from .run import PredictRun
from .state import DEFAULT_FOLDER, Area, DockState, default_output_folder, unique_run_name
from .tasks import Tasks

LOG_TAG = "GeoPlant"
#: {panel: "dock_name=panel_attribute ..."}: the widgets scripts and tests drive, by name
ALIASES = {
    "model_panel": "model_widget=file_widget card_label",
    "inputs_panel": "input_table=table inputs_label=label",
    "area_panel": "rectangle_button polygon_button area_label=label",
    "grid_panel": "cell_size_spin crs_widget estimate_label estimate_warning",
    "outputs_panel": "richness_check threshold_check threshold_spin topk_check topk_spin species_list "
    "folder_widget run_name_edit",
    "run_panel": "run_button cancel_button progress_bar time_label status_label",
    "identify_panel": "identify_button=button identify_view=view",
    "decisions_panel": "report_button presence_button ensemble_button",
}
#: how long the dock waits for more signals before it recomputes the estimate and blockers
REFRESH_DELAY_MS = 50


def _log(message, level=Qgis.Info):
    QgsMessageLog.logMessage(message, LOG_TAG, level)


class GeoPlantDock(ModelAndInputs, QgsDockWidget):
    """The GeoPlant panel (objectName ``GeoPlantDock``); its state is :attr:`state`."""

    def __init__(self, iface, parent=None):
        super().__init__("GeoPlant species models", parent or (iface.mainWindow() if iface else None))
        self.setObjectName("GeoPlantDock")
        self.iface = iface
        self.canvas = iface.mapCanvas() if iface is not None else None
        self.state = DockState()
        self.tasks = Tasks()
        self.run = None  # the PredictRun in progress
        self.last_message = ""
        self._settings_to_apply = None  # (cell size, CRS) of the project, once the card is read
        self._loading_settings = False
        self._refresh_timer = QTimer(self)
        self._refresh_timer.setSingleShot(True)
        self._refresh_timer.setInterval(REFRESH_DELAY_MS)
        self._refresh_timer.timeout.connect(lambda: self.refresh_now())

        self.area_display = AreaDisplay(self.canvas) if self.canvas is not None else None
        self.tools = CanvasTools(self.canvas, self._area_drawn, self.identify_at)
        self.rectangle_tool, self.polygon_tool = self.tools.rectangle, self.tools.polygon
        self.identify_tool = self.tools.identify

        self._build()
        project = QgsProject.instance()
        project.layersAdded.connect(self._layers_added)
        project.layersWillBeRemoved.connect(self._layers_will_be_removed)
        project.layersRemoved.connect(self._layers_removed)
        project.readProject.connect(self._project_read)
        project.cleared.connect(self._project_read)
        self._connected = True
        self.load_settings()

    # ------------------------------------------------------------------ building
    @staticmethod
    def default_area():
        return Qt.RightDockWidgetArea

    def _build(self):
        state = self.state
        self.model_panel = ModelPanel(self.load_model, self.use_bundled_model)
        self.inputs_panel = InputsPanel(
            state, self.refresh, self._choose_raster_files, lambda: self.match_inputs(keep_choices=False)
        )
        self.area_panel = AreaPanel()
        self.grid_panel = GridPanel(state, self._grid_changed)
        self.outputs_panel = OutputsPanel(state, self._outputs_changed)
        self.run_panel = RunPanel(self.start_run, self.cancel_run)
        self.identify_panel = IdentifyPanel()
        self.identify = Identify(
            self.identify_panel, state, self.tasks, self.show_message, self._unexpected, self.canvas
        )
        self.decisions_panel = DecisionsPanel(self.show_message)
        area = self.area_panel
        area.rectangle_button.clicked.connect(lambda: self.tools.activate(self.rectangle_tool))
        area.polygon_button.clicked.connect(lambda: self.tools.activate(self.polygon_tool))
        area.canvas_extent_button.clicked.connect(self.use_canvas_extent)
        area.clear_button.clicked.connect(self.clear_area)
        area.layer_extent_button.clicked.connect(
            lambda: self.use_layer_extent(area.extent_layer_combo.currentLayer())
        )
        area.selection_button.clicked.connect(
            lambda: self.use_selected_features(area.selection_layer_combo.currentLayer())
        )
        self.identify_panel.button.clicked.connect(lambda: self.tools.activate(self.identify_tool))
        # the widgets scripts and tests drive, by their familiar names
        for panel, names in ALIASES.items():
            for item in names.split():
                name, _, attribute = item.partition("=")
                setattr(self, name, getattr(getattr(self, panel), attribute or name))
        self.tools.set_buttons(self.rectangle_button, self.polygon_button, self.identify_button)

        body = QWidget()
        layout = QVBoxLayout(body)
        layout.setContentsMargins(4, 4, 4, 4)
        for panel in (
            self.model_panel,
            self.inputs_panel,
            self.area_panel,
            self.grid_panel,
            self.outputs_panel,
            self.run_panel,
            self.identify_panel,
            self.decisions_panel,
        ):
            layout.addWidget(panel.box)
        layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.setMinimumWidth(360)
        scroll.setWidget(body)
        self.setWidget(scroll)

    # ------------------------------------------------------------------ the state, read back
    @property
    def card(self):
        return self.state.card

    @property
    def model_path(self):
        return self.state.model_path

    @property
    def model_error(self):
        return self.state.model_error

    @property
    def rows(self):
        return self.inputs_panel.rows

    @property
    def run_name(self):
        return self.state.run.name

    @property
    def last_outputs(self):
        return self.state.run.outputs

    @property
    def last_estimate(self):
        self.flush()
        return self.state.estimate

    # ------------------------------------------------------------------ messages
    def show_message(self, text, level=Qgis.Warning, details=None, duration=8):
        """Plain words in the message bar; details (tracebacks) only in the log."""
        self.last_message = text
        _log(text if details is None else f"{text}\n{details}", level)
        bar = self.iface.messageBar() if self.iface is not None else None
        if bar is not None:
            bar.pushMessage("GeoPlant", text, level=level, duration=duration)

    def _unexpected(self, what, error, details=None):
        self.show_message(
            f"{what} failed: {error}. Details are in the GeoPlant log.",
            Qgis.Critical,
            details=details or traceback.format_exc(),
        )

    # ------------------------------------------------------------------ refresh (debounced)
    def refresh(self, *args):
        """Recompute the estimate and what blocks Run soon, once for a burst of changes."""
        self._refresh_timer.start()

    def flush(self):
        """A pending refresh now (reading the estimate or the blockers gives current values)."""
        if self._refresh_timer.isActive():
            self._refresh_timer.stop()
            self.refresh_now()

    def refresh_now(self):
        self._refresh_timer.stop()
        self.state.update_estimate()
        self.grid_panel.show_estimate(self.state)
        self.run_panel.show_state(self.state, self.state.blockers())

    def update_estimate(self):
        self.refresh_now()
        return self.state.estimate

    def run_blockers(self):
        """Plain-words reasons why Run is not possible now (empty when it is)."""
        self.flush()
        return self.state.blockers()

    def wait_idle(self, timeout_s=60.0):
        """Process events until no background task and no refresh is pending (tests, scripts).
        True when idle."""
        from qgis.PyQt.QtCore import QCoreApplication

        deadline = time.monotonic() + timeout_s
        QCoreApplication.processEvents()  # the zero-delay timers of layer signals first
        while (self.tasks.busy() or self._refresh_timer.isActive()) and time.monotonic() < deadline:
            QCoreApplication.processEvents()
            time.sleep(0.005)
        self.flush()
        return not self.tasks.busy()

    def _layers_added(self, layers):
        # later: the layer combo boxes learn about the new layers from the same signal
        if any(isinstance(layer, QgsRasterLayer) for layer in layers) and self.rows:
            QTimer.singleShot(0, self._rematch_missing)

    def _rematch_missing(self):
        if self._connected and self.rows:
            self.match_inputs(keep_choices=True)

    def _layers_will_be_removed(self, layer_ids):
        # before the layer lists drop them: the rows that used them are cleared (not moved to
        # another layer, not left with the removed layer's band names)
        if self._connected:
            self.inputs_panel.clear_removed(layer_ids)

    def _layers_removed(self, layer_ids):
        QTimer.singleShot(0, self._reread_inputs)
        QTimer.singleShot(0, self._refresh_decisions)

    def _refresh_decisions(self):
        if self._connected:
            self.decisions_panel.refresh()

    def _reread_inputs(self):
        if self._connected:
            self.inputs_panel.read_rows()

    # ------------------------------------------------------------------ species
    def filter_species(self, text):
        self.outputs_panel.filter_species(text)

    def set_species_checked(self, ids, checked=True):
        self.outputs_panel.set_species_checked(ids, checked)

    def selected_species(self):
        return list(self.state.outputs.species)

    def species_names(self):
        return self.state.species_names()

    # ------------------------------------------------------------------ area
    def _area_drawn(self, geometry):
        self.use_area(drawn_area(geometry, self.canvas.mapSettings().destinationCrs()))

    def set_area(self, geometry, crs, polygon=False, description="area"):
        """Use ``geometry`` (in ``crs``) as the run's area and show it on the map until cleared."""
        self.use_area(
            Area(QgsGeometry(geometry), QgsCoordinateReferenceSystem(crs), bool(polygon), description)
        )

    def use_area(self, area: Area):
        if area.geometry.isNull() or area.geometry.isEmpty() or area.geometry.area() <= 0:
            self.show_message("The chosen area is empty: draw or choose an area with a surface.")
            return
        self.state.area = area
        self.area_panel.show_state(self.state)
        if self.area_display is not None:
            self.area_display.show(area.geometry, area.crs)
        self.refresh()

    def clear_area(self):
        self.state.area = None
        self.area_panel.show_state(self.state)
        if self.area_display is not None:
            self.area_display.clear()
        self.refresh()

    def use_canvas_extent(self):
        if self.canvas is None:
            return
        extent = self.canvas.extent()
        self.set_area(
            QgsGeometry.fromRect(extent), self.canvas.mapSettings().destinationCrs(), description="map view"
        )

    def use_layer_extent(self, layer):
        if layer is None:
            self.show_message("Choose a layer whose extent to use.")
            return
        self.set_area(
            QgsGeometry.fromRect(layer.extent()), layer.crs(), description=f"extent of {layer.name()}"
        )

    def use_selected_features(self, layer):
        area, problem = selected_features_area(layer)
        if area is None:
            self.show_message(problem)
            return
        self.use_area(area)

    def grid_crs(self):
        return self.state.grid_crs

    # ------------------------------------------------------------------ grid and outputs
    def _grid_changed(self):
        self.save_settings()
        self.refresh()

    def _outputs_changed(self):
        if self.state.outputs.folder != settings.read()[3]:
            self.save_settings()
        if not self._loading_settings and self.state.card is not None:
            settings.save_species(self.state.outputs.species)
        self.refresh()

    def _restore_species(self):
        """The species ticked when the project was saved (once per project read)."""
        saved = settings.read_species()
        if saved:
            known = set(self.state.species_names())
            self.outputs_panel.set_species_checked([i for i in saved if i in known], True, notify=False)

    # ------------------------------------------------------------------ run
    def build_request(self, run_name=None):
        """Core's PredictRequest of the current choices (outputs under a run name no existing
        file has). Reads no raster, runs no model."""
        out = self.state.outputs
        name = run_name or unique_run_name(out.folder, out.run_name)
        # the MAX_CELLS refusal is the estimate's (core.limits), which blocks Run before this
        return corebridge.build_request(self.state, name, check_limit=False)

    def start_run(self):
        blockers = self.run_blockers()
        if blockers:
            self.show_message(" ".join(blockers))
            return False
        out = self.state.outputs
        if out.folder == DEFAULT_FOLDER and not os.path.isdir(out.folder):
            try:
                os.makedirs(out.folder, exist_ok=True)
            except OSError as error:
                self.show_message(f"The output folder {out.folder} cannot be made: {error}")
                return False
        name = unique_run_name(out.folder, out.run_name)
        try:
            request = self.build_request(name)
            self.run = PredictRun(request, name, parent=self)
            self.run.progressChanged.connect(self.run_panel.progress)
            self.run.finished.connect(self._run_finished)
            self.run.start()
        except GeoPlantError as error:
            self.run = None
            self.show_message(str(error))
            self.refresh_now()
            return False
        except Exception as error:  # noqa: BLE001 - plain message, details in the log
            self.run = None
            self._unexpected("Starting the run", error)
            self.refresh_now()
            return False
        self.state.run.running = True
        self.state.run.name = name
        self.state.run.planned = dict(request.outputs)
        estimate_now = self.state.estimate
        self.run_estimate = estimate_now.seconds if estimate_now is not None else None
        expected = estimate.format_duration(self.run_estimate) if self.run_estimate is not None else "unknown"
        _log(f"Run {name} started: {self.run.cells:,} cells, expected {expected}; {dict(request.outputs)}")
        self.run_panel.started(name, self.run.cells)
        self.refresh_now()
        return True

    def cancel_run(self):
        if self.is_running():
            self.status_label.setText("Cancelling…")
            self.run.cancel()

    def is_running(self):
        return self.run is not None and self.run.is_running()

    def _run_finished(self, ok, outputs, message):
        seconds = self.run_panel.stopped(ok)
        name = self.state.run.name
        if ok and self.run is not None and self.run.cells:
            # the next estimate of this model: this run's own pace (sampling and writing included)
            self.state.record_run(self.run.cells, self.run.seconds)
            expected = getattr(self, "run_estimate", None)
            self.last_timing = {"expected": expected, "real": self.run.seconds, "cells": self.run.cells}
            _log(
                f"{name}: {self.run.cells:,} cells in {self.run.seconds:.2f} s "
                f"({self.run.cells / max(self.run.seconds, 1e-9):,.0f} cells/s); the estimate said "
                + (f"{expected:.2f} s" if expected is not None else "nothing (the model was not timed yet)")
            )
        if ok:
            paths = {
                k: p for k, p in outputs.items() if k in self.state.run.planned and p and os.path.exists(p)
            }
            try:
                results.add_run_layers(name, paths, self.species_names())
            except Exception as error:  # noqa: BLE001
                self._unexpected("Adding the result layers", error)
            self.decisions_panel.refresh(paths.get(results.PROBABILITIES))
            self.state.run.outputs = paths
            self.show_message(
                f"{name} finished in {estimate.format_duration(seconds)}.", Qgis.Success, duration=5
            )
        else:  # cancelled: said once, here (the task itself ends quietly)
            self.show_message(message, Qgis.Info if self.run.cancelled else Qgis.Critical)
        self.state.run.running = False
        self.state.run.planned = {}
        self.state.run.message = message
        self.run = None
        self.refresh_now()
        if not ok:  # after refresh_now(), which shows the blockers there
            self.status_label.setText(message)

    def wait_for_run(self, timeout_s=120.0):
        """Process events until the run ends (tests and scripts). True when it ended."""
        from qgis.PyQt.QtCore import QCoreApplication

        deadline = time.monotonic() + timeout_s
        while self.run is not None and time.monotonic() < deadline:
            QCoreApplication.processEvents()
            time.sleep(0.01)
        return self.run is None

    # ------------------------------------------------------------------ identify
    def identify_at(self, point, crs=None):
        """ "What grows here?" at ``point`` (canvas CRS unless ``crs``): the last run's output
        rasters when they cover it (returned at once), else the model at that point in the
        background (None returned; the answer shows when ready, in :attr:`last_answer`)."""
        crs = crs or (self.canvas.mapSettings().destinationCrs() if self.canvas else None)
        return self.identify.at(point, crs)

    @property
    def last_answer(self):
        return self.identify.answer

    # ------------------------------------------------------------------ settings
    def save_settings(self):
        if not self._loading_settings:
            settings.save(self.state)

    def load_settings(self):
        """Last model, cell size, CRS and output folder of the current project (the grid once
        the model's card is read: it would replace them with its defaults)."""
        model, cell_size, crs, folder = settings.read()
        folder = folder or default_output_folder()
        self._settings_to_apply = (cell_size, crs)
        self._loading_settings = True
        try:
            self.outputs_panel.show_folder(folder)
            self.load_model(model if model and os.path.exists(model) else "")
            if self.state.model_path is None:
                self._apply_project_grid()
                self.grid_panel.show_grid(self.state)
        finally:
            self._loading_settings = False
        self.refresh()

    def _apply_project_grid(self):
        if self._settings_to_apply is None:
            return
        cell_size, crs = self._settings_to_apply
        self._settings_to_apply = None
        if cell_size is not None:
            self.state.cell_size = cell_size
        if crs is not None and QgsCoordinateReferenceSystem(crs).isValid():
            self.state.grid_crs = QgsCoordinateReferenceSystem(crs)

    def _project_read(self, *args):
        if self.is_running():
            return
        self.clear_area()
        self.identify.clear_marker()
        self.state.run.outputs = {}
        self.state.run.name = ""
        self.state.run.message = ""
        self.state.run_rate = {}
        self.run_panel.reset()
        self.load_settings()
        self.decisions_panel.refresh()

    # ------------------------------------------------------------------ shutdown
    def shutdown(self):
        """Cancel a running task, remove map tools and rubber bands, disconnect signals."""
        self.tasks.close()
        self._refresh_timer.stop()
        if self.is_running():
            try:
                self.run.finished.disconnect(self._run_finished)
            except TypeError:
                pass
            self.run.cancel()
        self.run_panel.clock.stop()
        self.identify.close()
        self.tools.shutdown()
        if self.area_display is not None:
            self.area_display.clear()
        if getattr(self, "_connected", False):
            project = QgsProject.instance()
            for signal, slot in (
                (project.layersAdded, self._layers_added),
                (project.layersWillBeRemoved, self._layers_will_be_removed),
                (project.layersRemoved, self._layers_removed),
                (project.readProject, self._project_read),
                (project.cleared, self._project_read),
            ):
                try:
                    signal.disconnect(slot)
                except TypeError:
                    pass
            self._connected = False
