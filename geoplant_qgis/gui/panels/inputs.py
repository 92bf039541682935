"""The Inputs panel: one row per variable, the raster layer and band it reads, found or missing."""

from __future__ import annotations

import os

from qgis.core import QgsMapLayerProxyModel, QgsProject, QgsRasterLayer
from qgis.gui import QgsMapLayerComboBox, QgsRasterBandComboBox
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
)

from ...core.sources import BandRef
from ...layers import raster_layer_path_or_none
from .common import error_html, section, signals_blocked

FOUND = "found"
MISSING = "missing"
FOUND_MARK = "✓"
MISSING_MARK = "✗"
#: the Band column's width (the combo shows "Band 1…", its tooltip the whole name)
BAND_COLUMN_WIDTH = 78


def project_rasters(project=None) -> list[tuple[object, str]]:
    """(layer, path) of every GDAL raster layer of the project (the one layer-to-path rule);
    reads only the layers' sources, opens no file."""
    project = project or QgsProject.instance()
    layers = []
    for layer in project.mapLayers().values():
        path = raster_layer_path_or_none(layer)
        if path is not None:
            layers.append((layer, path))
    return layers


def same_path(a: str, b: str) -> bool:
    if a == b:
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.normpath(a) == os.path.normpath(b)


class InputsPanel:
    """The input table; ``on_changed()`` after the user changes a row (state.inputs updated)."""

    def __init__(self, state, on_changed, on_add_files, on_rematch):
        self.state = state
        self.on_changed = on_changed
        self.rows: list[tuple[str, QgsMapLayerComboBox, QgsRasterBandComboBox]] = []
        self.box = section("Inputs")
        layout = QVBoxLayout(self.box)
        # Variable (its status as a coloured mark, the word in the tooltip), Layer and Band:
        # the layer column takes the room; the band combo is elided to its column, both
        # carry the full "layer, band N: description" as their tooltip
        self.table = QTableWidget(0, 3)
        self.table.setHorizontalHeaderLabels(["Variable", "Layer", "Band"])
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeToContents)
        header.setSectionResizeMode(1, QHeaderView.Stretch)
        header.setSectionResizeMode(2, QHeaderView.Interactive)
        header.setStretchLastSection(False)
        header.setMinimumSectionSize(40)
        self.table.setColumnWidth(2, BAND_COLUMN_WIDTH)
        self.table.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.statuses: dict[str, str] = {}
        self.layer_ids: dict[str, str | None] = {}  # {variable: id of the layer its row uses}
        self.table.verticalHeader().setVisible(False)
        self.table.setSelectionMode(QAbstractItemView.NoSelection)
        self.table.setMinimumHeight(120)
        layout.addWidget(self.table)
        row = QHBoxLayout()
        self.add_rasters_button = QPushButton("Add raster files…")
        self.add_rasters_button.clicked.connect(on_add_files)
        self.rematch_button = QPushButton("Match again")
        self.rematch_button.setToolTip("Match every input to the project's raster layers again")
        self.rematch_button.clicked.connect(on_rematch)
        row.addWidget(self.add_rasters_button)
        row.addWidget(self.rematch_button)
        row.addStretch(1)
        layout.addLayout(row)
        self.label = QLabel("")
        self.label.setWordWrap(True)
        layout.addWidget(self.label)

    # ------------------------------------------------------------------ rows
    def fill(self, names):
        """One empty row per variable (the matching comes later, from a task)."""
        self.rows = []
        self.statuses = {}
        self.layer_ids = {}
        self.table.setRowCount(0)
        for name in names:
            row = self.table.rowCount()
            self.table.insertRow(row)
            item = QTableWidgetItem(f"{MISSING_MARK} {name}")
            item.setFlags(Qt.ItemIsEnabled)
            self.table.setItem(row, 0, item)
            layer_combo = QgsMapLayerComboBox()
            layer_combo.setFilters(QgsMapLayerProxyModel.RasterLayer)
            layer_combo.setAllowEmptyLayer(True)
            layer_combo.setMinimumContentsLength(4)
            layer_combo.setSizeAdjustPolicy(layer_combo.AdjustToMinimumContentsLengthWithIcon)
            layer_combo.setLayer(None)
            band_combo = QgsRasterBandComboBox()
            band_combo.setMinimumContentsLength(3)
            band_combo.setSizeAdjustPolicy(band_combo.AdjustToMinimumContentsLengthWithIcon)
            layer_combo.layerChanged.connect(band_combo.setLayer)
            layer_combo.layerChanged.connect(self.read_rows)
            band_combo.bandChanged.connect(self.read_rows)
            self.table.setCellWidget(row, 1, layer_combo)
            self.table.setCellWidget(row, 2, band_combo)
            self.statuses[name] = MISSING
            self.rows.append((name, layer_combo, band_combo))

    @staticmethod
    def row_choice(layer_combo, band_combo) -> BandRef | None:
        path = raster_layer_path_or_none(layer_combo.currentLayer())
        band = band_combo.currentBand()
        if path is None or band is None or band < 1:
            return None
        return BandRef(path, int(band))

    def unset_names(self) -> list[str]:
        """The variables whose row has no layer and band yet."""
        return [name for name, lc, bc in self.rows if self.row_choice(lc, bc) is None]

    def apply_matches(self, found: dict, available, names=None):
        """Set the rows of ``names`` (default all) from ``found`` ({name: BandRef or None}),
        each BandRef's path back to its layer in ``available`` [(layer, path)]."""
        wanted = set(names) if names is not None else None
        for name, layer_combo, band_combo in self.rows:
            if wanted is not None and name not in wanted:
                continue
            ref = found.get(name)
            layer = None
            if ref is not None:
                layer = next((lyr for lyr, path in available if same_path(path, str(ref.path))), None)
            with signals_blocked(layer_combo, band_combo):
                layer_combo.setLayer(layer)
                band_combo.setLayer(layer)
                if layer is not None:
                    band_combo.setBand(int(ref.band))
        self.read_rows()

    def clear_removed(self, layer_ids=()):
        """Rows that used a removed layer (``layer_ids``): layer and band cleared, so no row
        keeps a removed layer's band names (nor slips to another layer)."""
        removed = set(layer_ids or ())
        for name, layer_combo, band_combo in self.rows:
            if self.layer_ids.get(name) in removed:
                with signals_blocked(layer_combo, band_combo):
                    layer_combo.setLayer(None)
                    band_combo.setLayer(None)

    def read_rows(self, *args):
        """The rows into ``state.inputs`` (removed layers count as missing), the footprints
        of the chosen rasters (the layers' extents: no file opened), then the statuses."""
        self.state.inputs = {name: self.row_choice(lc, bc) for name, lc, bc in self.rows}
        footprints = {}
        for name, layer_combo, band_combo in self.rows:
            layer = layer_combo.currentLayer()
            self.layer_ids[name] = layer.id() if layer is not None else None
            path = raster_layer_path_or_none(layer)
            if path is not None:
                footprints[path] = (layer.extent(), layer.crs())
            self._describe(layer_combo, band_combo)
        self.state.footprints = footprints
        self.show_state(self.state)
        self.on_changed()

    @staticmethod
    def _describe(layer_combo, band_combo):
        layer = layer_combo.currentLayer()
        if layer is None:
            text = "No layer: choose the raster this variable is read from"
        else:
            band = band_combo.currentBand()
            name = layer.bandName(band) if band and band > 0 else "no band"
            text = f"{layer.name()}, {name}\n{raster_layer_path_or_none(layer) or layer.source()}"
        layer_combo.setToolTip(text)
        band_combo.setToolTip(text)

    def choice_text(self, name) -> str:
        """'layer, band' a row uses (what its tooltip says first)."""
        for row_name, layer_combo, _ in self.rows:
            if row_name == name:
                return layer_combo.toolTip().split("\n")[0]
        raise KeyError(name)

    # ------------------------------------------------------------------ display
    def show_state(self, state):
        for row, (name, _, _) in enumerate(self.rows):
            found = state.inputs.get(name) is not None
            self.statuses[name] = FOUND if found else MISSING
            item = self.table.item(row, 0)
            if item is not None:
                item.setText(f"{FOUND_MARK if found else MISSING_MARK} {name}")
                item.setForeground(Qt.darkGreen if found else Qt.red)
                item.setToolTip(f"{name}: {self.statuses[name]}")
        missing = state.missing_inputs()
        if not self.rows:
            self.label.setText("")
        elif missing and state.matching:
            self.label.setText("Matching the inputs to the project's rasters…")
        elif missing:
            self.label.setText(
                error_html(
                    f"Missing inputs: {', '.join(missing)}. Add raster files or choose a layer for each."
                )
            )
        else:
            self.label.setText(f"All {len(self.rows)} inputs found.")

    def status_of(self, name) -> str:
        """'found' or 'missing'."""
        return self.statuses[name]


def add_raster_files(paths) -> list[str]:
    """Add raster files to the project; the names of those QGIS cannot open."""
    bad = []
    for path in paths:
        layer = QgsRasterLayer(path, os.path.splitext(os.path.basename(path))[0])
        if layer.isValid():
            QgsProject.instance().addMapLayer(layer)
        else:
            bad.append(os.path.basename(path))
    return bad


__all__ = ["FOUND", "MISSING", "InputsPanel", "add_raster_files", "project_rasters"]
