"""The dock's model and inputs wiring: the card read and the model timed, the inputs matched.

:class:`ModelAndInputs` is a part of :class:`~.dock.GeoPlantDock` (its first base): loading a
model reads its card and times it in background tasks, and the model's variables are matched
to the project's raster layers (core's ``find_bands``) in another; the answers come back on
the main thread. It uses the dock's state, tasks, panels, messages, settings and refresh.
"""

from __future__ import annotations

from qgis.core import Qgis, QgsMessageLog
from qgis.PyQt.QtWidgets import QFileDialog

from ..core import estimate
from ..core.bundled import default_model_path
from ..core.errors import GeoPlantError
from .panels.inputs import add_raster_files, project_rasters

LOG_TAG = "GeoPlant"
#: rows per timed model call: the engine's micro-batches are larger than this; at 256 rows
#: onnxruntime's per-call cost made the estimate ~2-3x too long (docs/dock.md, 4. Grid)
TIMING_BATCH = 2048


def _log(message, level=Qgis.Info):
    QgsMessageLog.logMessage(message, LOG_TAG, level)


# --- what the background tasks run (worker threads: plain values in, plain values out) ---
def _read_card(path):
    from ..core.modelcard import read_model_card

    return read_model_card(path)


def _time_model(path):
    return estimate.time_model(path, batch=TIMING_BATCH, repeats=2)


def _match(names, paths):
    from ..core.sources import find_bands

    return find_bands(names, paths)  # every raster opened once for all the variables


class ModelAndInputs:
    """The model (card, timing) and its inputs (matched to the project's rasters) of the dock."""

    # ------------------------------------------------------------------ model
    def use_bundled_model(self):
        path = default_model_path()
        if path is None:
            self.show_message("The demo model is not installed with this copy of the plugin.")
            return
        self.load_model(path)

    def load_model(self, path):
        """Read the card of ``path`` in the background; meanwhile (and on error) Run is blocked."""
        path = path or None
        self.model_panel.show_path(path)
        self.state.set_model(path)
        self.state.model_loading = path is not None
        self.inputs_panel.fill([])
        self.outputs_panel.show_model(self.state)
        self.model_panel.show_state(self.state)
        if path is not None:
            self.tasks.start(
                "model", "GeoPlant: reading the model card", lambda: _read_card(path), self._card_read(path)
            )
        else:
            self.save_settings()
        self.refresh()

    def _card_read(self, path):
        def done(card, error, details):
            if self.state.model_path != path:
                return
            message = ""
            if isinstance(error, GeoPlantError):
                message = str(error)
                self.show_message(message)
            elif error is not None:
                message = f"The model cannot be read: {error}"
                self._unexpected("Reading the model", error, details)
            self.state.set_model(path, card if error is None else None, message)
            if self.state.card is not None:
                self._apply_project_grid()
                self.grid_panel.show_grid(self.state, self.state.cell_size)
                self.tasks.start(
                    "timing", "GeoPlant: timing the model", lambda: _time_model(path), self._model_timed(path)
                )
            self.outputs_panel.show_model(self.state)
            self._restore_species()
            self.model_panel.show_state(self.state)
            self.inputs_panel.fill(self.state.variable_names())
            self.inputs_panel.read_rows()
            self.match_inputs(keep_choices=False)
            self.save_settings()
            self.refresh()

        return done

    def _model_timed(self, path):
        def done(seconds, error, details):
            if self.state.model_path != path:
                return
            if error is not None:  # timing is a nicety; the run will tell
                _log(f"Could not time the model: {error}", Qgis.Warning)
                return
            self.state.seconds_per_cell = seconds
            self.model_panel.show_state(self.state)
            self.refresh()

        return done

    def card_summary(self):
        from .panels.model import card_summary

        return card_summary(self.state.card, self.state.model_path, self.state.seconds_per_cell)

    # ------------------------------------------------------------------ inputs
    def match_inputs(self, keep_choices=True):
        """Match the variables (only those without a layer when ``keep_choices``) to the
        project's raster layers with the engine's rules, in the background."""
        names = self.inputs_panel.unset_names() if keep_choices else [n for n, _, _ in self.rows]
        paths = [path for _, path in project_rasters()]  # the layers' sources: no file opened
        if not names:
            self.inputs_panel.read_rows()
            return
        if not paths:
            self.inputs_panel.apply_matches({}, [], names)
            return
        self.state.matching = True
        self.inputs_panel.show_state(self.state)
        self.tasks.start(
            "match",
            "GeoPlant: matching the inputs",
            lambda: _match(names, paths),
            self._matched(names, keep_choices),
        )
        self.refresh()

    def _matched(self, names, keep_choices):
        def done(found, error, details):
            self.state.matching = False
            if error is not None:
                _log(f"Matching the inputs: {error}", Qgis.Warning)
                found = {}
            wanted = names
            if keep_choices:  # rows chosen by hand meanwhile stay as they are
                unset = set(self.inputs_panel.unset_names())
                wanted = [n for n in names if n in unset]
            # the layers as they are now (one may have gone meanwhile)
            self.inputs_panel.apply_matches(found or {}, project_rasters(), wanted)

        return done

    def input_choices(self):
        """``{variable: (path, band) or None}`` as the table shows it."""
        return {name: (ref.path, ref.band) if ref else None for name, ref in self.state.inputs.items()}

    def missing_inputs(self):
        return self.state.missing_inputs()

    def status_of(self, name):
        return self.inputs_panel.status_of(name)

    def _choose_raster_files(self):
        paths, _ = QFileDialog.getOpenFileNames(
            self, "Add raster files", "", "Rasters (*.tif *.tiff *.vrt *.img *.nc *.asc);;All files (*)"
        )
        self.add_raster_files(paths)

    def add_raster_files(self, paths):
        """Add raster files to the project (then missing inputs are matched again)."""
        bad = add_raster_files(paths)
        if bad:
            self.show_message(f"Not a raster QGIS can open: {', '.join(bad)}.")
