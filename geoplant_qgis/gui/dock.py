"""The GeoPlant dock: pick a model, match its inputs, choose an area and outputs, run it.

The dock only gathers parameters and shows results: the computation is
``geoplant:predict``'s, run in the background by :class:`~.tasks.PredictRun`, with
file paths and plain values as parameters (no layer objects cross threads).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import traceback

from qgis.core import (
    Qgis,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsFeature,
    QgsFields,
    QgsGeometry,
    QgsMapLayerProxyModel,
    QgsMessageLog,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsVectorFileWriter,
    QgsWkbTypes,
)
from qgis.gui import (
    QgsCollapsibleGroupBox,
    QgsDockWidget,
    QgsDoubleSpinBox,
    QgsFileWidget,
    QgsMapLayerComboBox,
    QgsProjectionSelectionWidget,
    QgsRasterBandComboBox,
)
from qgis.PyQt.QtCore import QElapsedTimer, Qt, QTimer
from qgis.PyQt.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QTextBrowser,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from ..core import estimate
from ..core.bundled import default_model_path
from ..core.engine import DEFAULT_CELL_SIZE, DEFAULT_CRS
from ..core.errors import GeoPlantError
from ..core.files import RASTER_SIDECARS, sidecars_of
from ..core.geotiff import SPECIES_CSV_SUFFIX
from ..processing.base import plugin_icon
from ..processing.params import crs_text
from . import results
from .maptools import AreaDisplay, IdentifySpeciesTool, PolygonAreaTool, RectangleAreaTool
from .tasks import PredictRun

LOG_TAG = "GeoPlant"
SETTINGS_SCOPE = "GeoPlant"
FOUND = "found"
MISSING = "missing"
TIMING_BATCH = 256
#: the AREA polygons of a run, written in a folder of the dock's own (removed after the run)
AREA_FILE = "area.gpkg"


def _log(message, level=Qgis.Info):
    QgsMessageLog.logMessage(message, LOG_TAG, level)


def _layer_path(layer) -> str | None:
    """The file behind a GDAL raster layer, or None (web services, memory rasters...)."""
    if layer is None or not isinstance(layer, QgsRasterLayer) or layer.providerType() != "gdal":
        return None
    path = layer.source().split("|")[0]
    return path if os.path.isfile(path) else None


def _same_path(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.normpath(a) == os.path.normpath(b)


class GeoPlantDock(QgsDockWidget):
    """The GeoPlant panel (objectName ``GeoPlantDock``)."""

    def __init__(self, iface, parent=None):
        super().__init__("GeoPlant species models", parent or (iface.mainWindow() if iface else None))
        self.setObjectName("GeoPlantDock")
        self.iface = iface
        self.canvas = iface.mapCanvas() if iface is not None else None
        self.card = None
        self.model_path = None
        self.model_error = ""
        self.seconds_per_cell = None
        self.area_geometry = None  # QgsGeometry in self.area_crs
        self.area_crs = None
        self.area_is_polygon = False
        self.area_text = ""
        self.run = None
        self.run_name = ""
        self.run_outputs = {}
        self.temp_dirs = []
        self.last_outputs = {}
        self.last_message = ""
        self.last_estimate = None
        self.rows = []  # [(name, layer combo, band combo)]
        self._loading_settings = False
        self.elapsed = QElapsedTimer()
        self.clock = QTimer(self)
        self.clock.setInterval(500)
        self.clock.timeout.connect(self._tick)

        self.area_display = AreaDisplay(self.canvas) if self.canvas is not None else None
        self.rectangle_tool = self.polygon_tool = self.identify_tool = None
        if self.canvas is not None:
            self.rectangle_tool = RectangleAreaTool(self.canvas)
            self.polygon_tool = PolygonAreaTool(self.canvas)
            self.identify_tool = IdentifySpeciesTool(self.canvas)
            self.rectangle_tool.areaChosen.connect(self._area_drawn)
            self.polygon_tool.areaChosen.connect(self._area_drawn)
            self.identify_tool.pointClicked.connect(self.identify_at)
            self.canvas.mapToolSet.connect(self._map_tool_changed)

        self._build()
        project = QgsProject.instance()
        project.layersAdded.connect(self._layers_added)
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
        body = QWidget()
        layout = QVBoxLayout(body)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self._build_model())
        layout.addWidget(self._build_inputs())
        layout.addWidget(self._build_area())
        layout.addWidget(self._build_grid())
        layout.addWidget(self._build_outputs())
        layout.addWidget(self._build_run())
        layout.addWidget(self._build_identify())
        layout.addStretch(1)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.setMinimumWidth(360)
        scroll.setWidget(body)
        self.setWidget(scroll)

    def _group(self, title, collapsed=False):
        box = QgsCollapsibleGroupBox(title)
        box.setCollapsed(collapsed)
        return box

    def _build_model(self):
        box = self._group("Model")
        layout = QVBoxLayout(box)
        self.model_widget = QgsFileWidget()
        self.model_widget.setFilter("ONNX models (*.onnx)")
        self.model_widget.setDialogTitle("Choose a GeoPlant ONNX model")
        self.model_widget.fileChanged.connect(self._model_file_changed)
        row = QHBoxLayout()
        row.addWidget(self.model_widget, 1)
        self.bundled_button = QPushButton("Demo model")
        self.bundled_button.setToolTip("Use the demo model shipped with the plugin")
        self.bundled_button.clicked.connect(self.use_bundled_model)
        self.bundled_button.setEnabled(default_model_path() is not None)
        row.addWidget(self.bundled_button)
        layout.addLayout(row)
        self.card_label = QLabel("No model chosen.")
        self.card_label.setWordWrap(True)
        self.card_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        layout.addWidget(self.card_label)
        return box

    def _build_inputs(self):
        box = self._group("Inputs")
        layout = QVBoxLayout(box)
        self.input_table = QTableWidget(0, 4)
        self.input_table.setHorizontalHeaderLabels(["Variable", "Layer", "Band", "Status"])
        header = self.input_table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.Stretch)
        header.setSectionResizeMode(2, QHeaderView.ResizeToContents)
        header.setSectionResizeMode(3, QHeaderView.ResizeToContents)
        self.input_table.verticalHeader().setVisible(False)
        self.input_table.setSelectionMode(QAbstractItemView.NoSelection)
        self.input_table.setMinimumHeight(120)
        layout.addWidget(self.input_table)
        row = QHBoxLayout()
        self.add_rasters_button = QPushButton("Add raster files…")
        self.add_rasters_button.clicked.connect(self._choose_raster_files)
        self.rematch_button = QPushButton("Match again")
        self.rematch_button.setToolTip("Match every input to the project's raster layers again")
        self.rematch_button.clicked.connect(lambda: self.match_inputs(keep_choices=False))
        row.addWidget(self.add_rasters_button)
        row.addWidget(self.rematch_button)
        row.addStretch(1)
        layout.addLayout(row)
        self.inputs_label = QLabel("")
        self.inputs_label.setWordWrap(True)
        layout.addWidget(self.inputs_label)
        return box

    def _build_area(self):
        box = self._group("Area")
        layout = QGridLayout(box)
        self.rectangle_button = QToolButton()
        self.rectangle_button.setText("Rectangle")
        self.rectangle_button.setIcon(plugin_icon("draw_rectangle.svg"))
        self.rectangle_button.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        self.rectangle_button.setCheckable(True)
        self.rectangle_button.setToolTip("Draw a rectangle on the map: press, drag, release")
        self.rectangle_button.clicked.connect(lambda on: self._activate_tool(self.rectangle_tool, on))
        self.polygon_button = QToolButton()
        self.polygon_button.setText("Polygon")
        self.polygon_button.setIcon(plugin_icon("draw_polygon.svg"))
        self.polygon_button.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        self.polygon_button.setCheckable(True)
        self.polygon_button.setToolTip(
            "Draw a polygon: click the vertices, right-click to finish, Esc to abandon"
        )
        self.polygon_button.clicked.connect(lambda on: self._activate_tool(self.polygon_tool, on))
        self.canvas_extent_button = QPushButton("Map view")
        self.canvas_extent_button.setToolTip("Use the extent of the map view")
        self.canvas_extent_button.clicked.connect(self.use_canvas_extent)
        self.clear_area_button = QPushButton("Clear")
        self.clear_area_button.clicked.connect(self.clear_area)
        layout.addWidget(self.rectangle_button, 0, 0)
        layout.addWidget(self.polygon_button, 0, 1)
        layout.addWidget(self.canvas_extent_button, 0, 2)
        self.extent_layer_combo = QgsMapLayerComboBox()
        self.extent_layer_combo.setFilters(QgsMapLayerProxyModel.All)
        self.layer_extent_button = QPushButton("Layer extent")
        self.layer_extent_button.clicked.connect(
            lambda: self.use_layer_extent(self.extent_layer_combo.currentLayer())
        )
        layout.addWidget(self.extent_layer_combo, 1, 0, 1, 2)
        layout.addWidget(self.layer_extent_button, 1, 2)
        self.selection_layer_combo = QgsMapLayerComboBox()
        self.selection_layer_combo.setFilters(QgsMapLayerProxyModel.PolygonLayer)
        self.selection_button = QPushButton("Selected features")
        self.selection_button.clicked.connect(
            lambda: self.use_selected_features(self.selection_layer_combo.currentLayer())
        )
        layout.addWidget(self.selection_layer_combo, 2, 0, 1, 2)
        layout.addWidget(self.selection_button, 2, 2)
        self.area_label = QLabel("No area chosen.")
        self.area_label.setWordWrap(True)
        layout.addWidget(self.area_label, 3, 0, 1, 2)
        layout.addWidget(self.clear_area_button, 3, 2)
        for combo in (self.extent_layer_combo, self.selection_layer_combo):
            combo.setMinimumContentsLength(8)
            combo.setSizeAdjustPolicy(combo.AdjustToMinimumContentsLengthWithIcon)
        return box

    def _build_grid(self):
        box = self._group("Grid")
        form = QFormLayout(box)
        self.cell_size_spin = QgsDoubleSpinBox()
        self.cell_size_spin.setRange(1.0, 1_000_000.0)
        self.cell_size_spin.setDecimals(1)
        self.cell_size_spin.setSuffix(" m")
        self.cell_size_spin.setValue(DEFAULT_CELL_SIZE)
        self.cell_size_spin.setClearValue(DEFAULT_CELL_SIZE)
        self.cell_size_spin.valueChanged.connect(self._grid_changed)
        form.addRow("Cell size", self.cell_size_spin)
        self.crs_widget = QgsProjectionSelectionWidget()
        self.crs_widget.setCrs(QgsCoordinateReferenceSystem(DEFAULT_CRS))
        self.crs_widget.crsChanged.connect(self._grid_changed)
        form.addRow("CRS", self.crs_widget)
        self.estimate_label = QLabel("")
        self.estimate_label.setWordWrap(True)
        form.addRow(self.estimate_label)
        self.estimate_warning = QLabel("")
        self.estimate_warning.setWordWrap(True)
        self.estimate_warning.setStyleSheet("color: #b35900;")
        form.addRow(self.estimate_warning)
        return box

    def _build_outputs(self):
        box = self._group("Outputs")
        layout = QGridLayout(box)
        self.richness_check = QCheckBox("Species richness")
        self.richness_check.setChecked(True)
        self.richness_check.toggled.connect(self._outputs_changed)
        layout.addWidget(self.richness_check, 0, 0, 1, 2)
        self.threshold_check = QCheckBox("Count species with p ≥")
        self.threshold_check.setToolTip(
            "Richness as the number of species at or above the threshold instead of the sum of "
            "probabilities (needed for softmax models)"
        )
        self.threshold_spin = QgsDoubleSpinBox()
        self.threshold_spin.setRange(0.0, 1.0)
        self.threshold_spin.setDecimals(3)
        self.threshold_spin.setSingleStep(0.05)
        self.threshold_spin.setValue(0.5)
        self.threshold_check.toggled.connect(self._outputs_changed)
        self.threshold_check.toggled.connect(self.threshold_spin.setEnabled)
        self.threshold_spin.setEnabled(False)
        layout.addWidget(self.threshold_check, 1, 0)
        layout.addWidget(self.threshold_spin, 1, 1)
        self.topk_check = QCheckBox("Top species, K =")
        self.topk_check.setChecked(True)
        self.topk_check.toggled.connect(self._outputs_changed)
        self.topk_spin = QSpinBox()
        self.topk_spin.setRange(1, 65535)
        self.topk_spin.setValue(25)
        self.topk_spin.valueChanged.connect(self._outputs_changed)
        self.topk_check.toggled.connect(self.topk_spin.setEnabled)
        layout.addWidget(self.topk_check, 2, 0)
        layout.addWidget(self.topk_spin, 2, 1)
        layout.addWidget(QLabel("Probability maps for:"), 3, 0, 1, 2)
        self.species_filter = QLineEdit()
        self.species_filter.setPlaceholderText("Search species by name or id")
        self.species_filter.setClearButtonEnabled(True)
        self.species_filter.textChanged.connect(self.filter_species)
        layout.addWidget(self.species_filter, 4, 0, 1, 2)
        self.species_list = QListWidget()
        self.species_list.setMinimumHeight(90)
        self.species_list.itemChanged.connect(self._outputs_changed)
        layout.addWidget(self.species_list, 5, 0, 1, 2)
        self.species_count_label = QLabel("")
        layout.addWidget(self.species_count_label, 6, 0, 1, 2)
        self.folder_widget = QgsFileWidget()
        self.folder_widget.setStorageMode(QgsFileWidget.GetDirectory)
        self.folder_widget.setDialogTitle("Folder for the output rasters")
        self.folder_widget.fileChanged.connect(self._folder_changed)
        layout.addWidget(QLabel("Output folder"), 7, 0)
        layout.addWidget(self.folder_widget, 7, 1)
        self.run_name_edit = QLineEdit("geoplant_run")
        self.run_name_edit.setToolTip("Output files and the layer group are named after the run")
        self.run_name_edit.textChanged.connect(self._outputs_changed)
        layout.addWidget(QLabel("Run name"), 8, 0)
        layout.addWidget(self.run_name_edit, 8, 1)
        return box

    def _build_run(self):
        box = QWidget()
        layout = QGridLayout(box)
        layout.setContentsMargins(0, 0, 0, 0)
        self.run_button = QPushButton("Run")
        self.run_button.setIcon(plugin_icon())
        self.run_button.clicked.connect(self.start_run)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel_run)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 100)
        self.progress_bar.setValue(0)
        self.time_label = QLabel("")
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        layout.addWidget(self.run_button, 0, 0)
        layout.addWidget(self.cancel_button, 0, 1)
        layout.addWidget(self.progress_bar, 1, 0, 1, 2)
        layout.addWidget(self.time_label, 2, 0, 1, 2)
        layout.addWidget(self.status_label, 3, 0, 1, 2)
        return box

    def _build_identify(self):
        box = self._group("What grows here?")
        layout = QVBoxLayout(box)
        self.identify_button = QToolButton()
        self.identify_button.setText("What grows here?")
        self.identify_button.setIcon(plugin_icon("identify_species.svg"))
        self.identify_button.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        self.identify_button.setCheckable(True)
        self.identify_button.setToolTip("Click the map: the top species and the expected richness there")
        self.identify_button.clicked.connect(lambda on: self._activate_tool(self.identify_tool, on))
        layout.addWidget(self.identify_button)
        self.identify_view = QTextBrowser()
        self.identify_view.setMinimumHeight(80)
        self.identify_view.setPlaceholderText(
            "Click a cell of a result (or anywhere, to run the model there)."
        )
        layout.addWidget(self.identify_view)
        return box

    # ------------------------------------------------------------------ messages
    def show_message(self, text, level=Qgis.Warning, details=None, duration=8):
        """Plain words in the message bar; details (tracebacks) only in the log."""
        self.last_message = text
        _log(text if details is None else f"{text}\n{details}", level)
        bar = self.iface.messageBar() if self.iface is not None else None
        if bar is not None:
            bar.pushMessage("GeoPlant", text, level=level, duration=duration)

    def _unexpected(self, what, error):
        self.show_message(
            f"{what} failed: {error}. Details are in the GeoPlant log.",
            Qgis.Critical,
            details=traceback.format_exc(),
        )

    # ------------------------------------------------------------------ model
    def use_bundled_model(self):
        path = default_model_path()
        if path is None:
            self.show_message("The demo model is not installed with this copy of the plugin.")
            return
        self.model_widget.setFilePath(path)

    def _model_file_changed(self, path):
        self.load_model(path)

    def load_model(self, path):
        """Read the card of ``path``; on error show the message and block Run."""
        if self.model_widget.filePath() != (path or ""):
            self.model_widget.blockSignals(True)
            self.model_widget.setFilePath(path or "")
            self.model_widget.blockSignals(False)
        self.card = None
        self.model_path = path or None
        self.model_error = ""
        self.seconds_per_cell = None
        if not path:
            self.card_label.setText("No model chosen.")
        else:
            try:
                from ..core.modelcard import read_model_card

                self.card = read_model_card(path)
            except GeoPlantError as error:
                self.model_error = str(error)
                self.card_label.setText(f"<span style='color:#b00020'>{_escape(self.model_error)}</span>")
                self.show_message(self.model_error)
            except Exception as error:  # noqa: BLE001 - shown in plain words, details in the log
                self.model_error = f"The model cannot be read: {error}"
                self.card_label.setText(f"<span style='color:#b00020'>{_escape(self.model_error)}</span>")
                self._unexpected("Reading the model", error)
        if self.card is not None:
            try:
                self.seconds_per_cell = estimate.time_model(path, batch=TIMING_BATCH, repeats=2)
            except Exception as error:  # noqa: BLE001 - timing is a nicety; the run will tell
                _log(f"Could not time the model: {error}", Qgis.Warning)
            self.card_label.setText(self.card_summary())
            self._apply_card_defaults()
        self._fill_inputs()
        self._fill_species()
        self.save_settings()
        self.refresh()

    def card_summary(self):
        card = self.card
        lines = [f"<b>{_escape(card.name or os.path.basename(self.model_path))}</b>"]
        if card.description:
            lines.append(_escape(card.description))
        lines.append(f"{len(card.species):,} species; output <i>{card.output.activation}</i>")
        for spec in card.inputs:
            names = spec.source_names
            shown = ", ".join(names[:8]) + (f", … ({len(names)} in all)" if len(names) > 8 else "")
            extra = ""
            if spec.kind == "patch":
                extra = f" {spec.size}×{spec.size} px at {spec.pixel_size_m:g} m"
            elif spec.kind == "cube":
                extra = " [" + "×".join(map(str, spec.shape)) + "]"
            lines.append(f"input <i>{_escape(spec.name)}</i> ({spec.kind}{extra}): {_escape(shown)}")
        if card.grid is not None:
            lines.append(f"default grid: {card.grid.cell_size_m:g} m in {card.grid.crs}")
        if self.seconds_per_cell is not None:
            lines.append(f"model speed: {1.0 / max(self.seconds_per_cell, 1e-12):,.0f} cells/s")
        return "<br>".join(lines)

    def _apply_card_defaults(self):
        grid = self.card.grid
        self.cell_size_spin.setValue(grid.cell_size_m if grid is not None else DEFAULT_CELL_SIZE)
        self.cell_size_spin.setClearValue(grid.cell_size_m if grid is not None else DEFAULT_CELL_SIZE)
        crs = QgsCoordinateReferenceSystem(grid.crs if grid is not None else DEFAULT_CRS)
        if crs.isValid():
            self.crs_widget.setCrs(crs)
        self.topk_spin.setMaximum(max(len(self.card.species), 1))
        self.topk_spin.setValue(min(25, len(self.card.species)))
        if self.card.output.activation == "softmax":
            self.threshold_check.setChecked(True)

    # ------------------------------------------------------------------ inputs
    def variable_names(self):
        return list(self.card.variable_names()) if self.card is not None else []

    def _fill_inputs(self):
        self.rows = []
        self.input_table.setRowCount(0)
        for name in self.variable_names():
            row = self.input_table.rowCount()
            self.input_table.insertRow(row)
            item = QTableWidgetItem(name)
            item.setFlags(Qt.ItemIsEnabled)
            self.input_table.setItem(row, 0, item)
            layer_combo = QgsMapLayerComboBox()
            layer_combo.setFilters(QgsMapLayerProxyModel.RasterLayer)
            layer_combo.setAllowEmptyLayer(True)
            layer_combo.setMinimumContentsLength(6)
            layer_combo.setSizeAdjustPolicy(layer_combo.AdjustToMinimumContentsLengthWithIcon)
            layer_combo.setLayer(None)
            band_combo = QgsRasterBandComboBox()
            layer_combo.layerChanged.connect(band_combo.setLayer)
            layer_combo.layerChanged.connect(self._inputs_changed)
            band_combo.bandChanged.connect(self._inputs_changed)
            self.input_table.setCellWidget(row, 1, layer_combo)
            self.input_table.setCellWidget(row, 2, band_combo)
            status = QTableWidgetItem(MISSING)
            status.setFlags(Qt.ItemIsEnabled)
            self.input_table.setItem(row, 3, status)
            self.rows.append((name, layer_combo, band_combo))
        self.match_inputs(keep_choices=False)

    def _raster_layers(self):
        layers = []
        for layer in QgsProject.instance().mapLayers().values():
            path = _layer_path(layer)
            if path is not None:
                layers.append((layer, path))
        return layers

    def match_inputs(self, keep_choices=True):
        """Match each variable to a project raster layer and band with the engine's rules."""
        from ..core.sources import find_bands

        available = self._raster_layers()
        paths = [path for _, path in available]
        rows = [
            row for row in self.rows if not (keep_choices and self._row_choice(row[1], row[2]) is not None)
        ]
        found = {}
        if rows and paths:
            try:  # every project raster opened once for all the variables
                found = find_bands([name for name, _, _ in rows], paths)
            except GeoPlantError as error:
                _log(f"Matching the inputs: {error}", Qgis.Warning)
        for name, layer_combo, band_combo in rows:
            ref = found.get(name)
            layer = None
            if ref is not None:
                layer = next((lyr for lyr, path in available if _same_path(path, str(ref.path))), None)
            for widget in (layer_combo, band_combo):
                widget.blockSignals(True)
            layer_combo.setLayer(layer)
            band_combo.setLayer(layer)
            if layer is not None:
                band_combo.setBand(int(ref.band))
            for widget in (layer_combo, band_combo):
                widget.blockSignals(False)
        self._inputs_changed()

    @staticmethod
    def _row_choice(layer_combo, band_combo):
        layer = layer_combo.currentLayer()
        path = _layer_path(layer)
        band = band_combo.currentBand()
        if path is None or band is None or band < 1:
            return None
        return path, int(band)

    def input_choices(self):
        """``{variable: (path, band) or None}`` as the table shows it."""
        return {name: self._row_choice(lc, bc) for name, lc, bc in self.rows}

    def missing_inputs(self):
        return [name for name, choice in self.input_choices().items() if choice is None]

    def _inputs_changed(self, *args):
        for row, (_, layer_combo, band_combo) in enumerate(self.rows):
            found = self._row_choice(layer_combo, band_combo) is not None
            item = self.input_table.item(row, 3)
            if item is not None:
                item.setText(FOUND if found else MISSING)
                item.setForeground(Qt.darkGreen if found else Qt.red)
        missing = self.missing_inputs()
        if not self.rows:
            self.inputs_label.setText("")
        elif missing:
            self.inputs_label.setText(
                f"<span style='color:#b00020'>Missing inputs: {_escape(', '.join(missing))}. "
                "Add raster files or choose a layer for each.</span>"
            )
        else:
            self.inputs_label.setText(f"All {len(self.rows)} inputs found.")
        self.refresh()

    def status_of(self, name):
        for row, (row_name, _, _) in enumerate(self.rows):
            if row_name == name:
                return self.input_table.item(row, 3).text()
        raise KeyError(name)

    def _choose_raster_files(self):
        paths, _ = QFileDialog.getOpenFileNames(
            self, "Add raster files", "", "Rasters (*.tif *.tiff *.vrt *.img *.nc *.asc);;All files (*)"
        )
        self.add_raster_files(paths)

    def add_raster_files(self, paths):
        """Add raster files to the project (then missing inputs are matched again)."""
        bad = []
        for path in paths:
            layer = QgsRasterLayer(path, os.path.splitext(os.path.basename(path))[0])
            if layer.isValid():
                QgsProject.instance().addMapLayer(layer)
            else:
                bad.append(os.path.basename(path))
        if bad:
            self.show_message(f"Not a raster QGIS can open: {', '.join(bad)}.")
        if self.rows:
            self.match_inputs(keep_choices=True)

    def _layers_added(self, layers):
        # later: the layer combo boxes learn about the new layers from the same signal
        if any(isinstance(layer, QgsRasterLayer) for layer in layers) and self.rows:
            QTimer.singleShot(0, self._rematch_missing)

    def _rematch_missing(self):
        if self.rows:
            self.match_inputs(keep_choices=True)

    def _layers_removed(self, layer_ids):
        QTimer.singleShot(0, self._inputs_changed)

    # ------------------------------------------------------------------ species
    def _fill_species(self):
        self.species_list.blockSignals(True)
        self.species_list.clear()
        if self.card is not None:
            for species in self.card.species:
                item = QListWidgetItem(f"{species.name} ({species.id})")
                item.setData(Qt.UserRole, species.id)
                item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
                item.setCheckState(Qt.Unchecked)
                self.species_list.addItem(item)
        self.species_list.blockSignals(False)
        self.filter_species(self.species_filter.text())

    def filter_species(self, text):
        """Show only species whose name or id contains ``text`` (case-insensitive)."""
        needle = (text or "").strip().casefold()
        for i in range(self.species_list.count()):
            item = self.species_list.item(i)
            item.setHidden(bool(needle) and needle not in item.text().casefold())

    def set_species_checked(self, ids, checked=True):
        wanted = {int(i) for i in ids}
        for i in range(self.species_list.count()):
            item = self.species_list.item(i)
            if int(item.data(Qt.UserRole)) in wanted:
                item.setCheckState(Qt.Checked if checked else Qt.Unchecked)

    def selected_species(self):
        return [
            int(self.species_list.item(i).data(Qt.UserRole))
            for i in range(self.species_list.count())
            if self.species_list.item(i).checkState() == Qt.Checked
        ]

    def species_names(self):
        return {s.id: s.name for s in self.card.species} if self.card is not None else {}

    # ------------------------------------------------------------------ area
    def _activate_tool(self, tool, on):
        if self.canvas is None or tool is None:
            return
        if on:
            self.canvas.setMapTool(tool)
        elif self.canvas.mapTool() is tool:
            self.canvas.unsetMapTool(tool)
        self._sync_tool_buttons()

    def _map_tool_changed(self, *args):
        self._sync_tool_buttons()

    def _sync_tool_buttons(self):
        current = self.canvas.mapTool() if self.canvas is not None else None
        for button, tool in (
            (self.rectangle_button, self.rectangle_tool),
            (self.polygon_button, self.polygon_tool),
            (self.identify_button, self.identify_tool),
        ):
            button.setChecked(current is not None and current is tool)

    def _area_drawn(self, geometry):
        crs = self.canvas.mapSettings().destinationCrs()
        is_rect = geometry.isGeosEqual(QgsGeometry.fromRect(geometry.boundingBox()))
        kind = "rectangle" if is_rect else "polygon"
        self.set_area(geometry, crs, polygon=not is_rect, description=f"drawn {kind}")

    def set_area(self, geometry, crs, polygon=False, description="area"):
        """Use ``geometry`` (in ``crs``) as the run's area and show it on the map until cleared."""
        geometry = QgsGeometry(geometry)
        if geometry.isNull() or geometry.isEmpty() or geometry.area() <= 0:
            self.show_message("The chosen area is empty: draw or choose an area with a surface.")
            return
        self.area_geometry = geometry
        self.area_crs = QgsCoordinateReferenceSystem(crs)
        self.area_is_polygon = bool(polygon)
        box = geometry.boundingBox()
        digits = 4 if self.area_crs.isGeographic() else 0
        self.area_text = (
            f"{description}\nx {box.xMinimum():,.{digits}f} – {box.xMaximum():,.{digits}f}\n"
            f"y {box.yMinimum():,.{digits}f} – {box.yMaximum():,.{digits}f} "
            f"({self.area_crs.authid() or self.area_crs.description()})"
        )
        self.area_label.setText(self.area_text)
        if self.area_display is not None:
            self.area_display.show(geometry, self.area_crs)
        self.refresh()

    def clear_area(self):
        self.area_geometry = None
        self.area_crs = None
        self.area_is_polygon = False
        self.area_text = ""
        self.area_label.setText("No area chosen.")
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
        if layer is None or layer.type() != layer.VectorLayer:
            self.show_message("Choose a polygon layer with selected features.")
            return
        features = list(layer.getSelectedFeatures())
        geometries = [f.geometry() for f in features if f.hasGeometry()]
        if not geometries:
            self.show_message(f"No feature of {layer.name()} is selected: select the polygons to use.")
            return
        union = QgsGeometry.unaryUnion(geometries)
        self.set_area(union, layer.crs(), polygon=True, description=f"{len(geometries)} selected feature(s)")

    def grid_crs(self):
        return self.crs_widget.crs()

    def area_in_grid_crs(self) -> QgsRectangle | None:
        if self.area_geometry is None:
            return None
        crs = self.grid_crs()
        box = self.area_geometry.boundingBox()
        if self.area_crs != crs:
            transform = QgsCoordinateTransform(self.area_crs, crs, QgsProject.instance())
            try:
                box = transform.transformBoundingBox(box)
            except Exception:  # noqa: BLE001 - QgsCsException: outside the CRS's area
                return None
        return box

    # ------------------------------------------------------------------ grid/estimate
    def _grid_changed(self, *args):
        self.save_settings()
        self.refresh()

    def _outputs_changed(self, *args):
        self.refresh()

    def _folder_changed(self, *args):
        self.save_settings()
        self.refresh()

    def update_estimate(self):
        crs = self.grid_crs()
        self.last_estimate = None
        self.estimate_label.setText("")
        self.estimate_warning.setText("")
        if self.area_geometry is None or not crs.isValid() or crs.isGeographic():
            return None
        box = self.area_geometry.boundingBox()
        try:
            width, height, _ = estimate.grid_size(
                (box.xMinimum(), box.yMinimum(), box.xMaximum(), box.yMaximum()),
                crs_text(self.area_crs),
                crs_text(crs),
                self.cell_size_spin.value(),
            )
        except GeoPlantError as error:
            self.estimate_warning.setText(str(error))
            return None
        folder = self.folder_widget.filePath()
        free = shutil.disk_usage(folder).free if folder and os.path.isdir(folder) else None
        top_k = self.topk_spin.value() if self.topk_check.isChecked() else 0
        result = estimate.estimate_run(
            width,
            height,
            richness=self.richness_check.isChecked(),
            top_k=top_k,
            probabilities=len(self.selected_species()),
            seconds_per_cell=self.seconds_per_cell,  # one run gives every output
            free_bytes=free,
            cell_size=self.cell_size_spin.value(),  # beyond MAX_CELLS: predict's very refusal
        )
        self.last_estimate = result
        self.estimate_label.setText(
            f"{result.width:,} × {result.height:,} = {result.cells:,} cells<br>"
            f"outputs up to {estimate.format_bytes(result.bytes)} on disk<br>"
            f"expected time: {estimate.format_duration(result.seconds)}"
        )
        self.estimate_warning.setText("\n".join(result.warnings))
        return result

    # ------------------------------------------------------------------ run
    def run_blockers(self):
        """Plain-words reasons why Run is not possible now (empty when it is)."""
        reasons = []
        if self.is_running():
            reasons.append("A run is in progress.")
        if self.card is None:
            reasons.append(self.model_error or "Choose a model.")
            return reasons
        if self.last_estimate is not None and self.last_estimate.refusal:
            reasons.append(f"{self.last_estimate.cells:,} cells is too many for one run (see the estimate).")
        missing = self.missing_inputs()
        if missing:
            reasons.append(f"Missing inputs: {', '.join(missing)}.")
        if self.area_geometry is None:
            reasons.append("Choose an area.")
        crs = self.grid_crs()
        if not crs.isValid():
            reasons.append("Choose a CRS for the grid.")
        elif crs.isGeographic():
            reasons.append(f"The grid CRS {crs.authid()} is in degrees: choose a projected CRS (metres).")
        elif self.area_geometry is not None and self.area_in_grid_crs() is None:
            reasons.append("The area cannot be expressed in the grid CRS.")
        top_k = self.topk_check.isChecked()
        if not (self.richness_check.isChecked() or top_k or self.selected_species()):
            reasons.append("Choose at least one output.")
        if (
            self.richness_check.isChecked()
            and self.card.output.activation == "softmax"
            and not self.threshold_check.isChecked()
        ):
            reasons.append("This model uses softmax: richness needs a threshold.")
        folder = self.folder_widget.filePath()
        if not folder:
            reasons.append("Choose an output folder.")
        elif not os.path.isdir(folder):
            reasons.append(f"The output folder {folder} does not exist.")
        if not self.run_name_edit.text().strip():
            reasons.append("Give the run a name.")
        return reasons

    def refresh(self):
        if not hasattr(self, "run_button"):
            return
        self.update_estimate()
        blockers = self.run_blockers()
        running = self.is_running()
        self.run_button.setEnabled(not blockers)
        self.cancel_button.setEnabled(running)
        if not running:
            self.status_label.setText(" ".join(blockers))
        selected = len(self.selected_species())
        self.species_count_label.setText(f"{selected} selected" if selected else "")

    def _unique_run_name(self, folder, base):
        base = "".join(c if c.isalnum() or c in "-_" else "_" for c in base.strip()) or "geoplant_run"
        name, n = base, 1
        # a new name when any output or side-car file exists: a run never replaces a file
        while any(
            os.path.lexists(os.path.join(folder, f"{name}_{suffix}"))
            for suffix in (
                "richness.tif",
                "topk.tif",
                "probabilities.tif",
                f"topk{SPECIES_CSV_SUFFIX}",
                "topk.qml",
                *(f"{k}.tif{s}" for k in ("richness", "topk", "probabilities") for s in RASTER_SIDECARS),
            )
        ):
            n += 1
            name = f"{base}_{n}"
        return name

    def _write_area(self, crs):
        """The polygon area as a GeoPackage in a temporary folder (path for AREA)."""
        folder = tempfile.mkdtemp(prefix="geoplant_area_")
        self.temp_dirs.append(folder)
        path = os.path.join(folder, AREA_FILE)
        options = QgsVectorFileWriter.SaveVectorOptions()
        options.driverName = "GPKG"
        options.layerName = "area"
        writer = QgsVectorFileWriter.create(
            path,
            QgsFields(),
            QgsWkbTypes.MultiPolygon,
            crs,
            QgsProject.instance().transformContext(),
            options,
        )
        feature = QgsFeature()
        geometry = QgsGeometry(self.area_geometry)
        geometry.convertToMultiType()
        feature.setGeometry(geometry)
        writer.addFeature(feature)
        del writer
        return path

    def _sources(self) -> tuple[list[str], str]:
        """The chosen rasters (each once, first-chosen order) and the MAPPING text that maps
        every variable to its file and band explicitly."""
        choices = self.input_choices()
        rasters = list(dict.fromkeys(path for path, _ in choices.values()))
        return rasters, ";".join(f"{name}={path}#{band}" for name, (path, band) in choices.items())

    def build_parameters(self):
        """The ``geoplant:predict`` parameters of the current choices (paths and plain values)."""
        folder = self.folder_widget.filePath()
        self.run_name = self._unique_run_name(folder, self.run_name_edit.text())
        rasters, mapping = self._sources()
        box = self.area_geometry.boundingBox()
        extent = (
            f"{box.xMinimum()!r},{box.xMaximum()!r},{box.yMinimum()!r},{box.yMaximum()!r} "
            f"[{crs_text(self.area_crs)}]"
        )
        outputs = {}
        params = {
            "MODEL": self.model_path,
            "RASTERS": rasters,
            "MAPPING": mapping,
            "EXTENT": extent,
            "CRS": crs_text(self.grid_crs()),
            "CELL_SIZE": float(self.cell_size_spin.value()),
            "TOP_K": int(self.topk_spin.value()) if self.topk_check.isChecked() else 0,
        }
        if self.area_is_polygon:
            params["AREA"] = self._write_area(self.area_crs)
        if self.threshold_check.isChecked():
            params["THRESHOLD"] = float(self.threshold_spin.value())
        if self.richness_check.isChecked():
            outputs[results.RICHNESS] = os.path.join(folder, f"{self.run_name}_richness.tif")
            params["OUTPUT_RICHNESS"] = outputs[results.RICHNESS]
        if self.topk_check.isChecked():
            outputs[results.TOPK] = os.path.join(folder, f"{self.run_name}_topk.tif")
            params["OUTPUT_TOPK"] = outputs[results.TOPK]
        species = self.selected_species()
        if species:
            # SPECIES chooses the probability bands only: richness and top-K still cover
            # every species of the model, in the same single run
            outputs[results.PROBABILITIES] = os.path.join(folder, f"{self.run_name}_probabilities.tif")
            params["OUTPUT_PROBABILITIES"] = outputs[results.PROBABILITIES]
            params["SPECIES"] = ",".join(str(s) for s in species)
        self.run_outputs = outputs
        return params

    def start_run(self):
        blockers = self.run_blockers()
        if blockers:
            self.show_message(" ".join(blockers))
            return False
        try:
            params = self.build_parameters()
            self.run = PredictRun(params, parent=self)
            self.run.progressChanged.connect(self._progress)
            self.run.finished.connect(self._run_finished)
            self.run.start()
        except Exception as error:  # noqa: BLE001 - plain message, details in the log
            self.run = None
            self.run_outputs = {}
            self._remove_temp_dirs()
            self._unexpected("Starting the run", error)
            self.refresh()
            return False
        _log(f"Run {self.run_name} started: {params}")
        self.progress_bar.setValue(0)
        self.elapsed.start()
        self.clock.start()
        self.status_label.setText(f"Running {self.run_name}…")
        self.time_label.setText("Elapsed 0 s")
        self.refresh()
        return True

    def cancel_run(self):
        if self.is_running():
            self.status_label.setText("Cancelling…")
            self.run.cancel()

    def is_running(self):
        return self.run is not None and self.run.is_running()

    def _progress(self, percent):
        self.progress_bar.setValue(int(percent))
        self._tick()

    def _tick(self):
        if not self.elapsed.isValid():
            return
        seconds = self.elapsed.elapsed() / 1000.0
        percent = self.progress_bar.value()
        text = f"Elapsed {estimate.format_duration(seconds)}"
        if 0 < percent < 100:
            text += f", about {estimate.format_duration(seconds * (100 - percent) / percent)} left"
        self.time_label.setText(text)

    def _run_finished(self, ok, outputs, message):
        self.clock.stop()
        seconds = self.elapsed.elapsed() / 1000.0 if self.elapsed.isValid() else 0.0
        self.elapsed.invalidate()
        self._remove_temp_dirs()
        if ok:
            paths = {}
            for key, param in (
                (results.RICHNESS, "OUTPUT_RICHNESS"),
                (results.TOPK, "OUTPUT_TOPK"),
                (results.PROBABILITIES, "OUTPUT_PROBABILITIES"),
            ):
                path = outputs.get(param) or self.run_outputs.get(key)
                if key in self.run_outputs and path and os.path.exists(path):
                    paths[key] = path
            try:
                results.add_run_layers(self.run_name, paths, self.species_names())
            except Exception as error:  # noqa: BLE001
                self._unexpected("Adding the result layers", error)
            self.last_outputs = paths
            self.progress_bar.setValue(100)
            self.time_label.setText(f"Finished in {estimate.format_duration(seconds)}")
            self.show_message(
                f"{self.run_name} finished in {estimate.format_duration(seconds)}.", Qgis.Success, duration=5
            )
        else:
            self.progress_bar.setValue(0)
            self.time_label.setText("")
            self.show_message(message, Qgis.Info if self.run.cancelled else Qgis.Critical)
        self.run = None
        self.refresh()
        if not ok:  # after refresh(), which shows the blockers there
            self.status_label.setText(message)

    def _remove_temp_dirs(self):
        """Remove the area files this dock wrote (with their GeoPackage journal files) and the
        folders it made for them (``tempfile.mkdtemp``), only when left empty: nothing else."""
        for folder in self.temp_dirs:
            path = os.path.join(folder, AREA_FILE)
            for candidate in (path, *sidecars_of(path)):
                try:
                    os.remove(candidate)
                except OSError:
                    pass
            try:
                os.rmdir(folder)
            except OSError:
                pass
        self.temp_dirs = []

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
        """ "What grows here?" at ``point`` (canvas CRS unless ``crs``): output rasters, else the model."""
        crs = crs or (self.canvas.mapSettings().destinationCrs() if self.canvas else None)
        names = self.species_names()
        answer = None
        source = ""
        try:
            if self.last_outputs:
                answer = results.identify_outputs(point, crs, self.last_outputs, names)
                source = f"from the outputs of {self.run_name}"
            if answer is None:
                answer = self._predict_point(point, crs)
                source = "by running the model at this point"
        except GeoPlantError as error:
            self.identify_view.setPlainText(str(error))
            self.show_message(str(error))
            return None
        except Exception as error:  # noqa: BLE001
            self._unexpected("What grows here?", error)
            return None
        if answer is None:
            self.identify_view.setPlainText("No prediction here: outside the inputs or on a nodata cell.")
            return None
        self.identify_view.setHtml(_answer_html(answer, source))
        return answer

    def _predict_point(self, point, crs):
        if self.card is None:
            raise GeoPlantError("Choose a model first.")
        missing = self.missing_inputs()
        if missing:
            raise GeoPlantError(f"Missing inputs: {', '.join(missing)}.")
        import numpy as np

        from ..core.engine import predict_points

        rasters, mapping = self._sources()
        wkt = crs.toWkt() if crs is not None else DEFAULT_CRS
        probabilities = predict_points(
            self.model_path, rasters, np.array([point.x()]), np.array([point.y()]), wkt, mapping=mapping
        )
        row = np.asarray(probabilities, dtype=np.float32)[0]
        if not np.all(np.isfinite(row)):
            return None
        order = np.argsort(-row, kind="stable")[:10]
        species = [(s.id, s.name, float(row[i])) for i, s in ((i, self.card.species[i]) for i in order)]
        richness = float(row.sum()) if self.card.output.activation != "softmax" else None
        return {"richness": richness, "species": species}

    # ------------------------------------------------------------------ settings
    def save_settings(self):
        if self._loading_settings:
            return
        project = QgsProject.instance()
        project.writeEntry(SETTINGS_SCOPE, "model", self.model_path or "")
        project.writeEntryDouble(SETTINGS_SCOPE, "cell_size", float(self.cell_size_spin.value()))
        project.writeEntry(SETTINGS_SCOPE, "crs", self.grid_crs().authid())
        project.writeEntry(SETTINGS_SCOPE, "output_folder", self.folder_widget.filePath())

    def load_settings(self):
        """Last model, cell size, CRS and output folder of the current project."""
        project = QgsProject.instance()
        model, has_model = project.readEntry(SETTINGS_SCOPE, "model", "")
        cell_size, has_size = project.readDoubleEntry(SETTINGS_SCOPE, "cell_size", 0.0)
        crs, has_crs = project.readEntry(SETTINGS_SCOPE, "crs", "")
        folder, _ = project.readEntry(SETTINGS_SCOPE, "output_folder", "")
        if not (has_model and model):
            model = default_model_path() or ""
        self._loading_settings = True
        try:
            self.load_model(model if model and os.path.exists(model) else "")
            if has_size and cell_size > 0:
                self.cell_size_spin.setValue(cell_size)
            if has_crs and crs:
                self.crs_widget.setCrs(QgsCoordinateReferenceSystem(crs))
            self.folder_widget.setFilePath(folder or "")
        finally:
            self._loading_settings = False
        self.refresh()

    def _project_read(self, *args):
        if self.is_running():
            return
        self.clear_area()
        self.last_outputs = {}
        self.load_settings()

    # ------------------------------------------------------------------ shutdown
    def shutdown(self):
        """Cancel a running task, remove map tools and rubber bands, disconnect signals."""
        if self.is_running():
            try:
                self.run.finished.disconnect(self._run_finished)
            except TypeError:
                pass
            self.run.cancel()
        self.clock.stop()
        if self.canvas is not None:
            for tool in (self.rectangle_tool, self.polygon_tool, self.identify_tool):
                if tool is not None and self.canvas.mapTool() is tool:
                    self.canvas.unsetMapTool(tool)
            try:
                self.canvas.mapToolSet.disconnect(self._map_tool_changed)
            except TypeError:
                pass
            for tool in (self.rectangle_tool, self.polygon_tool):
                if tool is not None:
                    tool.reset()
        if self.area_display is not None:
            self.area_display.clear()
        if getattr(self, "_connected", False):
            project = QgsProject.instance()
            for signal, slot in (
                (project.layersAdded, self._layers_added),
                (project.layersRemoved, self._layers_removed),
                (project.readProject, self._project_read),
                (project.cleared, self._project_read),
            ):
                try:
                    signal.disconnect(slot)
                except TypeError:
                    pass
            self._connected = False
        self._remove_temp_dirs()


def _escape(text):
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _answer_html(answer, source):
    lines = []
    if answer.get("richness") is not None:
        lines.append(f"<b>Expected richness: {answer['richness']:.1f} species</b>")
    lines.append(f"<i>{_escape(source)}</i>")
    if answer["species"]:
        lines.append("<ol>")
        for sid, name, p in answer["species"][:10]:
            prob = f" — p = {p:.3f}" if p is not None else ""
            lines.append(f"<li>{_escape(name)} ({sid}){prob}</li>")
        lines.append("</ol>")
    return "".join(lines)
