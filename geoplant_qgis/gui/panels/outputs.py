"""The Outputs panel: richness (with threshold), top-K, probability maps, output folder and run name."""

from __future__ import annotations

from qgis.gui import QgsDoubleSpinBox, QgsFileWidget
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import (
    QCheckBox,
    QGridLayout,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QSpinBox,
)

from .common import section, signals_blocked


class OutputsPanel:
    """The Outputs section; every change is written into ``state.outputs``, then ``on_changed()``."""

    def __init__(self, state, on_changed):
        self.state = state
        self.on_changed = on_changed
        self.box = section("Outputs")
        layout = QGridLayout(self.box)
        self.richness_check = QCheckBox("Species richness")
        self.richness_check.setChecked(True)
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
        self.threshold_spin.setEnabled(False)
        self.threshold_check.toggled.connect(self.threshold_spin.setEnabled)
        layout.addWidget(self.threshold_check, 1, 0)
        layout.addWidget(self.threshold_spin, 1, 1)
        self.topk_check = QCheckBox("Top species, K =")
        self.topk_check.setChecked(True)
        self.topk_spin = QSpinBox()
        self.topk_spin.setRange(1, 65535)
        self.topk_spin.setValue(25)
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
        layout.addWidget(self.species_list, 5, 0, 1, 2)
        self.species_count_label = QLabel("")
        layout.addWidget(self.species_count_label, 6, 0, 1, 2)
        self.folder_widget = QgsFileWidget()
        self.folder_widget.setStorageMode(QgsFileWidget.GetDirectory)
        self.folder_widget.setDialogTitle("Folder for the output rasters")
        layout.addWidget(QLabel("Output folder"), 7, 0)
        layout.addWidget(self.folder_widget, 7, 1)
        self.run_name_edit = QLineEdit("geoplant_run")
        self.run_name_edit.setToolTip("Output files and the layer group are named after the run")
        layout.addWidget(QLabel("Run name"), 8, 0)
        layout.addWidget(self.run_name_edit, 8, 1)
        for signal in (
            self.richness_check.toggled,
            self.threshold_check.toggled,
            self.threshold_spin.valueChanged,
            self.topk_check.toggled,
            self.topk_spin.valueChanged,
            self.species_list.itemChanged,
            self.folder_widget.fileChanged,
            self.run_name_edit.textChanged,
        ):
            signal.connect(self.read)
        self.read(notify=False)

    def _widgets(self):
        return (
            self.richness_check,
            self.threshold_check,
            self.threshold_spin,
            self.topk_check,
            self.topk_spin,
            self.species_list,
            self.folder_widget,
            self.run_name_edit,
        )

    def read(self, *args, notify=True):
        out = self.state.outputs
        out.richness = self.richness_check.isChecked()
        out.threshold = float(self.threshold_spin.value()) if self.threshold_check.isChecked() else None
        out.top_k = int(self.topk_spin.value()) if self.topk_check.isChecked() else 0
        out.species = self.selected_species()
        out.folder = self.folder_widget.filePath()
        out.run_name = self.run_name_edit.text()
        selected = len(out.species)
        self.species_count_label.setText(f"{selected} selected" if selected else "")
        if notify:
            self.on_changed()

    def show_model(self, state):
        """A new model: its species in the list, K at most its species, its threshold."""
        with signals_blocked(*self._widgets()):
            self.species_list.clear()
            if state.card is not None:
                for species in state.card.species:
                    item = QListWidgetItem(f"{species.name} ({species.id})")
                    item.setData(Qt.UserRole, species.id)
                    item.setFlags(item.flags() | Qt.ItemIsUserCheckable)
                    item.setCheckState(Qt.Unchecked)
                    self.species_list.addItem(item)
                self.topk_spin.setMaximum(max(len(state.card.species), 1))
                self.topk_spin.setValue(max(state.outputs.top_k, 1))
                if state.outputs.threshold is not None:
                    self.threshold_check.setChecked(True)
                    self.threshold_spin.setValue(state.outputs.threshold)
            self.threshold_spin.setEnabled(self.threshold_check.isChecked())
        self.filter_species(self.species_filter.text())
        self.read(notify=False)

    def show_folder(self, folder):
        with signals_blocked(self.folder_widget):
            self.folder_widget.setFilePath(folder or "")
        self.read(notify=False)

    def filter_species(self, text):
        """Show only species whose name or id contains ``text`` (case-insensitive)."""
        needle = (text or "").strip().casefold()
        for i in range(self.species_list.count()):
            item = self.species_list.item(i)
            item.setHidden(bool(needle) and needle not in item.text().casefold())

    def set_species_checked(self, ids, checked=True, notify=True):
        wanted = {int(i) for i in ids}
        with signals_blocked(self.species_list):
            for i in range(self.species_list.count()):
                item = self.species_list.item(i)
                if int(item.data(Qt.UserRole)) in wanted:
                    item.setCheckState(Qt.Checked if checked else Qt.Unchecked)
        self.read(notify=notify)

    def selected_species(self) -> list[int]:
        return [
            int(self.species_list.item(i).data(Qt.UserRole))
            for i in range(self.species_list.count())
            if self.species_list.item(i).checkState() == Qt.Checked
        ]
