"""The GeoPlant dock, headless: building, input matching, area, run, results, cancel, errors;
its state model without widgets, its background tasks and its debounced refresh."""

from __future__ import annotations

import os

import numpy as np
import onnx
import pytest
import rasterio
from canvas_events import map_point, mouse
from qgis.core import (
    Qgis,
    QgsCoordinateReferenceSystem,
    QgsGeometry,
    QgsPalettedRasterRenderer,
    QgsPointXY,
    QgsProject,
    QgsRasterLayer,
    QgsRectangle,
    QgsSingleBandPseudoColorRenderer,
    QgsVectorLayer,
)
from rasterio.transform import from_origin
from tiny_models import linear_point_model, save_linear_point_model

# The tiny model: logits = [bio1, bio12] @ W + b, sigmoid; species ids 100, 101, 102
W = np.array([[0.5, -1.0, 0.0], [0.25, 0.5, -2.0]], dtype=np.float32)
B = np.array([0.1, -0.2, 0.3], dtype=np.float32)
IDS = [100, 101, 102]
NAMES = ["Species 0", "Species 1", "Species 2"]
X0, Y0, CELL = 4_000_000.0, 2_001_000.0, 100.0  # raster origin (upper left), EPSG:3035
ROWS, COLS = 8, 10


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def write_raster(path, values, nodata=-9999.0, description=None):
    profile = dict(
        driver="GTiff",
        width=values.shape[1],
        height=values.shape[0],
        count=1,
        dtype="float32",
        crs="EPSG:3035",
        transform=from_origin(X0, Y0, CELL, CELL),
        nodata=nodata,
    )
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(values.astype(np.float32), 1)
        if description:
            ds.set_band_description(1, description)
    return str(path)


@pytest.fixture
def world(tmp_path):
    """Model + two rasters (file names match the variables) with known values."""
    model_path = save_linear_point_model(tmp_path / "tiny.onnx", weights=W, bias=B)
    rows, cols = np.mgrid[0:ROWS, 0:COLS]
    bio1 = (rows * 0.3 - cols * 0.2).astype(np.float32)
    bio12 = (np.sin(rows + 2 * cols) * 2).astype(np.float32)
    out = tmp_path / "out"
    out.mkdir()
    return {
        "model": str(model_path),
        "bio1": write_raster(tmp_path / "bio1.tif", bio1),
        "bio12": write_raster(tmp_path / "BIO_12.tif", bio12),
        "values": (bio1, bio12),
        "out": str(out),
        "tmp": tmp_path,
    }


@pytest.fixture
def project():
    project = QgsProject.instance()
    project.clear()
    yield project
    project.clear()


@pytest.fixture
def dock(qgis_iface, qgis_canvas, project):
    from geoplant_qgis.gui.dock import GeoPlantDock

    qgis_canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:3035"))
    qgis_iface.messageBar().clear_messages()
    widget = GeoPlantDock(qgis_iface)
    assert widget.wait_idle(60)
    yield widget
    if widget.is_running():
        widget.cancel_run()
        widget.wait_for_run(60)
    widget.shutdown()
    widget.deleteLater()


def add_layers(project, *paths):
    layers = []
    for path in paths:
        layer = QgsRasterLayer(path, os.path.splitext(os.path.basename(path))[0])
        assert layer.isValid()
        project.addMapLayer(layer)
        layers.append(layer)
    return layers


def expected_probabilities(world):
    bio1, bio12 = world["values"]
    x = np.stack([bio1.ravel(), bio12.ravel()], axis=1).astype(np.float64)
    return sigmoid(x @ W.astype(np.float64) + B).reshape(ROWS, COLS, 3)


def full_extent():
    return QgsGeometry.fromRect(QgsRectangle(X0, Y0 - ROWS * CELL, X0 + COLS * CELL, Y0))


def ready_dock(dock, world, project):
    add_layers(project, world["bio1"], world["bio12"])
    dock.load_model(world["model"])
    dock.set_area(full_extent(), QgsCoordinateReferenceSystem("EPSG:3035"), description="test")
    dock.folder_widget.setFilePath(world["out"])
    assert dock.wait_idle(60)  # the card read, the model timed, the inputs matched: in tasks
    dock.cell_size_spin.setValue(CELL)
    dock.flush()
    return dock


# ------------------------------------------------------------------ building and the card
def test_dock_builds_with_every_section(dock):
    from geoplant_qgis.gui.dock import GeoPlantDock

    assert dock.objectName() == "GeoPlantDock"
    assert GeoPlantDock.default_area() == 0x2  # Qt.RightDockWidgetArea
    from qgis.gui import QgsCollapsibleGroupBox

    titles = {box.title() for box in dock.findChildren(QgsCollapsibleGroupBox)}
    assert titles == {"Model", "Inputs", "Area", "Grid", "Outputs", "What grows here?", "Decisions"}
    texts = [b.text() for b in dock.findChildren(type(dock.run_button))]
    for label in (
        "Run",
        "Cancel",
        "Add raster files…",
        "Map view",
        "Clear",
        "Layer extent",
        "Selected features",
    ):
        assert label in texts
    assert not dock.run_button.isEnabled()
    assert dock.input_table.columnCount() == 3  # Variable (with its status mark), Layer, Band


def test_card_summary_and_grid_defaults(dock, world):
    dock.load_model(world["model"])
    assert dock.wait_idle(60)
    text = dock.card_label.text()
    assert "tiny linear" in text and "3 species" in text and "Bio1, Bio12" in text
    assert "100 m in EPSG:3035" in text
    assert dock.cell_size_spin.value() == 100.0
    assert dock.grid_crs().authid() == "EPSG:3035"
    assert [name for name, _, _ in dock.rows] == ["Bio1", "Bio12"]
    assert [dock.input_table.item(r, 0).text() for r in range(dock.input_table.rowCount())] == [
        "✗ Bio1",
        "✗ Bio12",
    ]
    assert dock.species_list.count() == 3
    assert dock.species_list.item(1).text() == "Species 1 (101)"
    assert dock.topk_spin.value() == 3  # min(25, number of species)


def test_a_model_without_card_shows_the_message_and_blocks_run(dock, world, qgis_iface):
    model, _ = linear_point_model()
    path = world["tmp"] / "nocard.onnx"
    onnx.save(model, str(path))
    dock.load_model(str(path))
    assert dock.wait_idle(60)
    assert dock.card is None
    assert "has no 'geoplant' card" in dock.card_label.text()
    messages = qgis_iface.messageBar().get_messages(Qgis.Warning)
    assert any("has no 'geoplant' card" in m for m in messages), messages
    assert not dock.run_button.isEnabled()
    assert any("has no 'geoplant' card" in r for r in dock.run_blockers())
    assert "Traceback" not in dock.card_label.text()


def test_a_file_that_is_not_a_model_shows_a_plain_message(dock, world):
    path = world["tmp"] / "garbage.onnx"
    path.write_bytes(b"\x00not onnx at all")
    dock.load_model(str(path))
    assert dock.wait_idle(60)
    assert dock.card is None
    assert "is not an ONNX model onnxruntime can load" in dock.last_message
    assert "Traceback" not in dock.last_message


# ------------------------------------------------------------------ inputs
def test_input_table_matches_project_layers(dock, world, project):
    bio1_layer, bio12_layer = add_layers(project, world["bio1"], world["bio12"])
    dock.load_model(world["model"])
    assert dock.wait_idle(60)
    assert dock.status_of("Bio1") == "found" and dock.status_of("Bio12") == "found"
    choices = dock.input_choices()
    assert os.path.samefile(choices["Bio1"][0], world["bio1"]) and choices["Bio1"][1] == 1
    assert os.path.samefile(choices["Bio12"][0], world["bio12"])
    assert dock.rows[0][1].currentLayer() is bio1_layer
    assert dock.rows[1][1].currentLayer() is bio12_layer
    assert "All 2 inputs found" in dock.inputs_label.text()


def test_missing_input_blocks_run_and_says_which(dock, world, project):
    add_layers(project, world["bio1"])
    dock.load_model(world["model"])
    dock.set_area(full_extent(), QgsCoordinateReferenceSystem("EPSG:3035"))
    dock.folder_widget.setFilePath(world["out"])
    assert dock.wait_idle(60)
    assert dock.status_of("Bio1") == "found" and dock.status_of("Bio12") == "missing"
    assert dock.missing_inputs() == ["Bio12"]
    assert "Missing inputs: Bio12" in dock.inputs_label.text()
    assert not dock.run_button.isEnabled()
    assert dock.run_blockers() == ["Missing inputs: Bio12."]
    # adding the file matches it automatically and unblocks Run
    dock.add_raster_files([world["bio12"]])
    assert dock.wait_idle(60)
    assert dock.status_of("Bio12") == "found"
    assert dock.run_blockers() == [] and dock.run_button.isEnabled()
    # removing the layer makes it missing again
    project.removeMapLayer(dock.rows[1][1].currentLayer())
    assert dock.wait_idle(60)
    assert dock.status_of("Bio12") == "missing"


def test_a_row_can_be_changed_by_hand(dock, world, project):
    bio1_layer, bio12_layer = add_layers(project, world["bio1"], world["bio12"])
    dock.load_model(world["model"])
    assert dock.wait_idle(60)
    name, layer_combo, band_combo = dock.rows[0]
    layer_combo.setLayer(bio12_layer)
    assert os.path.samefile(dock.input_choices()["Bio1"][0], world["bio12"])
    layer_combo.setLayer(None)
    assert dock.status_of("Bio1") == "missing"
    # a band description also matches, as in the engine
    described = write_raster(world["tmp"] / "stack.tif", np.ones((ROWS, COLS)), description="bio 1")
    project.removeMapLayer(bio1_layer)
    add_layers(project, described)
    dock.match_inputs(keep_choices=False)
    assert dock.wait_idle(60)
    assert os.path.samefile(dock.input_choices()["Bio1"][0], described)


# ------------------------------------------------------------------ area and estimate
def test_area_choices_and_live_estimate(dock, world, project, qgis_canvas):
    ready_dock(dock, world, project)
    estimate = dock.last_estimate
    assert (estimate.width, estimate.height, estimate.cells) == (COLS, ROWS, ROWS * COLS)
    assert f"{ROWS * COLS:,} cells" in dock.estimate_label.text()
    dock.cell_size_spin.setValue(200.0)
    assert (dock.last_estimate.width, dock.last_estimate.height) == (5, 4)
    # the chosen area stays on the map until cleared
    assert dock.area_display.band is not None and dock.area_display.band.isVisible()
    dock.clear_area()
    assert dock.area_display.band is None and "Choose an area." in dock.run_blockers()
    # layer extent
    dock.use_layer_extent(project.mapLayersByName("bio1")[0])
    box = dock.state.area.geometry.boundingBox()
    assert (box.xMinimum(), box.yMaximum()) == (X0, Y0) and box.width() == COLS * CELL
    # canvas extent
    qgis_canvas.setExtent(QgsRectangle(X0, Y0 - 500, X0 + 300, Y0))
    dock.use_canvas_extent()
    assert dock.state.area.geometry.boundingBox().contains(QgsRectangle(X0, Y0 - 500, X0 + 300, Y0))
    # past the limit, a warning with the numbers
    dock.set_area(QgsGeometry.fromRect(QgsRectangle(X0, Y0 - 100_000, X0 + 100_000, Y0)), dock.grid_crs())
    dock.cell_size_spin.setValue(10.0)
    assert dock.last_estimate.cells == 10_000 * 10_000
    # the very message geoplant:predict refuses it with (core.limits), and Run is blocked
    assert "100,000,000 cells is more than 50,000,000" in dock.estimate_warning.text()
    assert "CELL_SIZE: 15 m or more" in dock.estimate_warning.text()
    assert any("too many for one run" in r for r in dock.run_blockers())
    dock.cell_size_spin.setValue(100.0)
    dock.flush()
    # the 100 km area is mostly outside the 1 km rasters: said live, in words, before Run
    assert dock.estimate_warning.text() == (
        "Nearly all of the area lies outside the raster of Bio1, Bio12: those cells will be empty (nodata)."
    )
    # a geographic grid CRS is refused with a reason
    dock.crs_widget.setCrs(QgsCoordinateReferenceSystem("EPSG:4326"))
    assert any("projected CRS" in r for r in dock.run_blockers())


def test_one_run_gives_richness_topk_and_chosen_probabilities(dock, world, project):
    """SPECIES chooses the probability bands only: one parameter set, estimate of one run."""
    ready_dock(dock, world, project)
    dock.topk_spin.setValue(2)
    dock.state.seconds_per_cell = 1e-3
    dock.set_species_checked([])
    dock.update_estimate()
    without = dock.last_estimate.seconds
    from geoplant_qgis.gui import state as dock_state

    # the model's time per cell, plus sampling two files and writing, plus the start
    per_cell = (
        1e-3 * 1.25 + 2 * dock_state.SAMPLE_SECONDS_PER_CELL_AND_FILE + dock_state.WRITE_SECONDS_PER_CELL
    )
    assert without == pytest.approx(ROWS * COLS * per_cell + dock_state.START_SECONDS)
    dock.set_species_checked([102, 100])
    dock.update_estimate()
    assert dock.last_estimate.seconds == pytest.approx(without)  # not a second pass
    request = dock.build_request("geoplant_run")  # core's PredictRequest, typed
    assert sorted(s.id for s in request.species) == [100, 102]
    assert request.top_k == 2 and request.threshold is None
    # the three outputs of the one run, in the chosen folder under the run's name
    assert dict(request.outputs) == {
        kind: os.path.join(world["out"], f"geoplant_run_{kind}.tif")
        for kind in ("richness", "topk", "probabilities")
    }
    # the mapping is a structure, not text: each variable to its file and band
    assert {name: (os.path.basename(ref.path), ref.band) for name, ref in request.mapping.items()} == {
        "Bio1": ("bio1.tif", 1),
        "Bio12": ("BIO_12.tif", 1),
    }


def test_selected_features_give_a_polygon_area(dock, world, project):
    ready_dock(dock, world, project)
    layer = QgsVectorLayer("Polygon?crs=EPSG:3035", "zones", "memory")
    from qgis.core import QgsFeature

    triangle = QgsGeometry.fromWkt(f"POLYGON(({X0} {Y0}, {X0 + 500} {Y0}, {X0} {Y0 - 500}, {X0} {Y0}))")
    square = QgsGeometry.fromRect(QgsRectangle(X0 + 600, Y0 - 300, X0 + 900, Y0))
    features = []
    for geometry in (triangle, square):
        feature = QgsFeature()
        feature.setGeometry(geometry)
        features.append(feature)
    layer.dataProvider().addFeatures(features)
    project.addMapLayer(layer)
    dock.use_selected_features(layer)
    assert "No feature of zones is selected" in dock.last_message
    layer.selectByIds([f.id() for f in layer.getFeatures()][:1])
    dock.use_selected_features(layer)
    assert dock.state.area.polygon
    assert dock.state.area.geometry.area() == pytest.approx(triangle.area())
    layer.selectAll()
    dock.use_selected_features(layer)
    assert dock.state.area.geometry.area() == pytest.approx(triangle.area() + square.area())


# ------------------------------------------------------------------ species list
def test_species_search_by_name_or_id(dock, world):
    dock.load_model(world["model"])
    assert dock.wait_idle(60)
    dock.filter_species("species 2")
    assert [dock.species_list.item(i).isHidden() for i in range(3)] == [True, True, False]
    dock.filter_species("101")
    assert [dock.species_list.item(i).isHidden() for i in range(3)] == [True, False, True]
    dock.filter_species("")
    assert not any(dock.species_list.item(i).isHidden() for i in range(3))
    dock.set_species_checked([102, 100])
    assert dock.selected_species() == [100, 102]


# ------------------------------------------------------------------ settings
def test_settings_are_remembered_per_project(dock, world, project, qgis_iface):
    ready_dock(dock, world, project)
    dock.cell_size_spin.setValue(250.0)
    assert project.readEntry("GeoPlant", "model", "")[0] == world["model"]
    assert project.readDoubleEntry("GeoPlant", "cell_size", 0)[0] == 250.0
    assert project.readEntry("GeoPlant", "output_folder", "")[0] == world["out"]
    from geoplant_qgis.gui.dock import GeoPlantDock

    other = GeoPlantDock(qgis_iface)
    try:
        assert other.wait_idle(60)
        assert other.model_path == world["model"]
        assert other.cell_size_spin.value() == 250.0
        assert other.folder_widget.filePath() == world["out"]
    finally:
        other.shutdown()


# ------------------------------------------------------------------ runs
def test_an_area_in_a_crs_without_authority_code_keeps_its_crs(dock, world, project):
    """The extent carries the area's CRS even when it has no EPSG code (custom projection)."""
    from qgis.core import QgsCoordinateTransform

    ready_dock(dock, world, project)
    custom = QgsCoordinateReferenceSystem()
    # LAEA Europe shifted 1 km east: x_custom = x_3035 + 1000
    custom.createFromProj(
        "+proj=laea +lat_0=52 +lon_0=10 +x_0=4322000 +y_0=3210000 +ellps=GRS80 +units=m +no_defs"
    )
    assert custom.isValid() and custom.authid() == ""
    shifted = QgsRectangle(X0 + 1000, Y0 - ROWS * CELL, X0 + 1000 + COLS * CELL, Y0)
    dock.set_area(QgsGeometry.fromRect(shifted), custom, description="custom")
    typed = dock.state.request("custom")
    assert typed.extent_crs == custom.toWkt()  # the CRS itself, not a code
    transform = QgsCoordinateTransform(
        QgsCoordinateReferenceSystem.fromWkt(typed.extent_crs),
        QgsCoordinateReferenceSystem("EPSG:3035"),
        QgsProject.instance(),
    )
    box = transform.transformBoundingBox(QgsRectangle(*typed.extent))
    expected = (X0, Y0 - ROWS * CELL, X0 + COLS * CELL, Y0)
    got = (box.xMinimum(), box.yMinimum(), box.xMaximum(), box.yMaximum())
    assert got == pytest.approx(expected, abs=0.01)
    # and core's request puts the grid there
    request = dock.build_request("custom")
    assert request.grid.crs == "EPSG:3035"  # snapped outwards: within a cell of the extent
    assert request.grid.bounds == pytest.approx(expected, abs=CELL)


def run_and_wait(dock):
    assert dock.run_blockers() == [], dock.run_blockers()
    assert dock.start_run()
    assert dock.wait_for_run(120), "the run did not finish"


def test_run_adds_styled_layers_with_the_right_values(dock, world, project):
    ready_dock(dock, world, project)
    dock.topk_spin.setValue(2)
    dock.set_species_checked([101])
    dock.run_name_edit.setText("trial")
    run_and_wait(dock)
    assert dock.last_message.startswith("trial finished in "), dock.last_message

    assert dock.progress_bar.value() == 100 and dock.time_label.text().startswith("Finished in")
    expected = expected_probabilities(world)
    outputs = dock.last_outputs
    with rasterio.open(outputs["richness"]) as ds:
        richness = ds.read(1)
        assert ds.crs.to_epsg() == 3035 and ds.transform == from_origin(X0, Y0, CELL, CELL)
    np.testing.assert_allclose(richness, expected.sum(axis=2), rtol=1e-5, atol=1e-6)
    with rasterio.open(outputs["topk"]) as ds:
        topk = ds.read()
    order = np.argsort(-expected, axis=2, kind="stable")[:, :, :2]
    np.testing.assert_array_equal(topk, np.moveaxis(np.array(IDS)[order], 2, 0))
    with rasterio.open(outputs["probabilities"]) as ds:
        assert ds.count == 1
        np.testing.assert_allclose(ds.read(1), expected[:, :, 1], rtol=1e-5, atol=1e-6)

    group = project.layerTreeRoot().findGroup("trial")
    assert group is not None
    layers = {node.layer().name(): node.layer() for node in group.findLayers()}
    assert set(layers) == {
        "trial richness",
        "trial top species",
        "trial top species rank 2",
        "trial p Species 1 (101)",
    }
    richness_layer = layers["trial richness"]
    renderer = richness_layer.renderer()
    assert isinstance(renderer, QgsSingleBandPseudoColorRenderer)
    # stretched to the values: min..max of the band, not from 0
    assert renderer.classificationMin() == pytest.approx(float(expected.sum(axis=2).min()), rel=1e-5)
    assert renderer.classificationMax() == pytest.approx(float(expected.sum(axis=2).max()), rel=1e-5)
    labels = [item.label for item in renderer.shader().rasterShaderFunction().colorRampItemList()]
    assert all(label.endswith(" species") for label in labels)
    assert renderer.shader().rasterShaderFunction().legendSettings().suffix() == " species"
    assert [node.layer().name() for node in group.findLayers()][0] == "trial richness"
    assert [node.isVisible() for node in group.findLayers()] == [True, False, False, False]
    # every rank band styled with species names in core's palette
    from geoplant_qgis.core.predict.outputs import topk_palette

    palette = {sid: colour for sid, colour, _ in topk_palette(list(zip(IDS, NAMES, strict=True)))}
    for rank, title in ((1, "trial top species"), (2, "trial top species rank 2")):
        top = layers[title].renderer()
        assert isinstance(top, QgsPalettedRasterRenderer) and top.band() == rank
        present = sorted(set(np.array(IDS)[order[:, :, rank - 1]].ravel().tolist()))
        assert sorted(c.value for c in top.classes()) == present
        assert {c.value: c.label for c in top.classes()} == {
            i: f"{NAMES[IDS.index(i)]} ({i})" for i in present
        }
        assert {c.value: c.color.name() for c in top.classes()} == {i: palette[i] for i in present}
        assert layers[title].customProperty("geoplant/kind") == "topk"
        assert int(layers[title].customProperty("geoplant/band")) == rank
    assert layers["trial richness"].customProperty("geoplant/run") == "trial"
    prob = layers["trial p Species 1 (101)"].renderer()
    assert isinstance(prob, QgsSingleBandPseudoColorRenderer)
    assert (prob.classificationMin(), prob.classificationMax()) == (0.0, 1.0)

    # What grows here? at the centre of cell (row 3, col 4), from the outputs
    point = QgsPointXY(X0 + 4.5 * CELL, Y0 - 3.5 * CELL)
    answer = dock.identify_at(point, QgsCoordinateReferenceSystem("EPSG:3035"))
    assert answer["richness"] == pytest.approx(expected[3, 4].sum(), rel=1e-5)
    assert [sid for sid, _, _ in answer["species"]] == [IDS[i] for i in order[3, 4]]
    assert f"{expected[3, 4].sum():.1f} species" in dock.identify_view.toPlainText()

    # a second run does not overwrite the first: a new name
    run_and_wait(dock)
    assert dock.run_name == "trial_2"
    assert project.layerTreeRoot().findGroup("trial_2") is not None

    # what a run cancelled after the algorithm finished removes: every file the run wrote
    from geoplant_qgis.gui.run import remove_outputs

    written = sorted(f for f in os.listdir(world["out"]) if f.startswith("trial_2"))
    assert "trial_2_topk_species.csv" in written and "trial_2_topk.qml" in written
    project.removeAllMapLayers()  # release the files before deleting them
    remove_outputs(dock.last_outputs)
    assert [f for f in os.listdir(world["out"]) if f.startswith("trial_2")] == []


def test_polygon_area_masks_cells_outside(dock, world, project):
    ready_dock(dock, world, project)
    # a triangle over the left half: cells whose centre is outside it are nodata
    polygon = QgsGeometry.fromWkt(f"POLYGON(({X0} {Y0}, {X0 + 500} {Y0}, {X0} {Y0 - 800}, {X0} {Y0}))")
    dock.set_area(polygon, QgsCoordinateReferenceSystem("EPSG:3035"), polygon=True)
    dock.topk_check.setChecked(False)
    # the polygon goes to core as geometries with their CRS: no temporary file
    typed = dock.state.request("triangle")
    assert typed.area == [bytes(polygon.asWkb())] and typed.area_crs == "EPSG:3035"
    run_and_wait(dock)
    with rasterio.open(dock.last_outputs["richness"]) as ds:
        richness = ds.read(1)
        nodata = ds.nodata
        assert ds.transform == from_origin(X0, Y0, CELL, CELL) and (ds.height, ds.width) == (8, 5)
    rows, cols = np.mgrid[0:8, 0:5]
    cx, cy = (cols + 0.5) * CELL, (rows + 0.5) * CELL  # metres right of / below the top-left corner
    inside = cx / 500 + cy / 800 <= 1
    assert 0 < inside.sum() < inside.size
    expected = expected_probabilities(world).sum(axis=2)[:8, :5]
    np.testing.assert_allclose(richness[inside], expected[inside], rtol=1e-5, atol=1e-6)
    assert np.all(richness[~inside] == nodata)


def test_no_second_run_on_top_and_cancel_leaves_nothing(dock, world, project):
    ready_dock(dock, world, project)
    big = QgsGeometry.fromRect(QgsRectangle(X0, Y0 - 150_000, X0 + 150_000, Y0))
    dock.set_area(big, QgsCoordinateReferenceSystem("EPSG:3035"))
    assert dock.last_estimate.cells == 1500 * 1500
    assert dock.start_run()
    assert not dock.run_button.isEnabled() and dock.cancel_button.isEnabled()
    assert dock.start_run() is False
    assert "A run is in progress." in dock.last_message
    # cancel mid-run, once the first blocks are done
    seen = []

    def on_progress(percent):
        seen.append(percent)
        if percent > 0 and dock.run is not None and not dock.run.cancelled:
            dock.cancel_run()

    dock.run.progressChanged.connect(on_progress)
    assert dock.wait_for_run(120)
    assert "cancelled" in dock.last_message.lower()
    assert seen and 0 < max(seen) < 100, seen
    assert os.listdir(world["out"]) == []
    assert project.layerTreeRoot().findGroup(dock.run_name) is None
    assert dock.run_button.isEnabled() and not dock.cancel_button.isEnabled()


def test_cancel_leaves_a_users_files_of_the_same_name_byte_for_byte(dock, world, project):
    import hashlib

    ready_dock(dock, world, project)
    mine = {}
    for kind in ("richness", "topk", "probabilities"):
        path = os.path.join(world["out"], f"mine_{kind}.tif")
        with open(path, "wb") as f:
            f.write(f"the user's own {kind}".encode() * 100)
        mine[path] = hashlib.sha256(open(path, "rb").read()).hexdigest()
    big = QgsGeometry.fromRect(QgsRectangle(X0, Y0 - 150_000, X0 + 150_000, Y0))
    dock.set_area(big, QgsCoordinateReferenceSystem("EPSG:3035"))
    dock.run_name_edit.setText("mine")
    assert dock.start_run()
    assert dock.run_name != "mine"  # never the user's names

    def on_progress(percent):
        if percent > 0 and dock.run is not None and not dock.run.cancelled:
            dock.cancel_run()

    dock.run.progressChanged.connect(on_progress)
    assert dock.wait_for_run(120)
    assert "cancelled" in dock.last_message.lower()
    assert sorted(os.listdir(world["out"])) == sorted(os.path.basename(p) for p in mine)
    for path, digest in mine.items():
        assert hashlib.sha256(open(path, "rb").read()).hexdigest() == digest, path


def test_what_grows_here_without_outputs_runs_the_model(dock, world, project):
    ready_dock(dock, world, project)
    point = QgsPointXY(X0 + 2.5 * CELL, Y0 - 6.5 * CELL)
    assert dock.identify_at(point, QgsCoordinateReferenceSystem("EPSG:3035")) is None  # in a task
    assert dock.wait_idle(60)
    answer = dock.last_answer
    expected = expected_probabilities(world)[6, 2]
    assert answer["richness"] == pytest.approx(expected.sum(), rel=1e-5)
    assert [sid for sid, _, _ in answer["species"]] == [IDS[i] for i in np.argsort(-expected, kind="stable")]
    for sid, _, p in answer["species"]:
        assert p == pytest.approx(expected[IDS.index(sid)], rel=1e-5)


def test_the_bundled_model_is_the_default(dock):
    from geoplant_qgis.core.bundled import default_model_path

    bundled = default_model_path()
    assert bundled is not None  # the plugin ships it (test_bundled_model)
    assert dock.model_path == bundled
    assert dock.card is not None, dock.model_error
    assert dock.input_table.rowCount() == len(dock.card.variable_names())


def test_shutdown_removes_tools_and_rubber_bands_and_disconnects(qgis_iface, qgis_canvas, project, world):
    from geoplant_qgis.gui.dock import GeoPlantDock

    widget = GeoPlantDock(qgis_iface)
    widget.load_model(world["model"])
    assert widget.wait_idle(60)
    widget.set_area(full_extent(), QgsCoordinateReferenceSystem("EPSG:3035"))
    widget.rectangle_button.click()
    assert qgis_canvas.mapTool() is widget.rectangle_tool and widget.rectangle_button.isChecked()
    widget.identify_button.click()
    assert qgis_canvas.mapTool() is widget.identify_tool and not widget.rectangle_button.isChecked()
    widget.shutdown()
    assert qgis_canvas.mapTool() is None
    assert widget.area_display.band is None
    rows_before = widget.input_table.rowCount()
    calls = []
    widget.match_inputs = lambda *a, **k: calls.append(a)
    add_layers(project, world["bio1"])
    from qgis.PyQt.QtCore import QCoreApplication

    QCoreApplication.processEvents()
    assert calls == [] and widget.input_table.rowCount() == rows_before
    widget.deleteLater()


def test_drawing_a_rectangle_on_the_map_sets_the_area(dock, world, project, qgis_canvas):
    qgis_canvas.setExtent(QgsRectangle(X0, Y0 - 3000, X0 + 4000, Y0))
    dock.rectangle_button.click()
    tool = qgis_canvas.mapTool()
    assert tool is dock.rectangle_tool
    tool.canvasPressEvent(mouse(qgis_canvas, "press", 10, 10))
    tool.canvasMoveEvent(mouse(qgis_canvas, "move", 60, 50))
    tool.canvasReleaseEvent(mouse(qgis_canvas, "release", 60, 50))
    expected = QgsRectangle(map_point(qgis_canvas, 10, 10), map_point(qgis_canvas, 60, 50))
    assert dock.state.area.geometry.isGeosEqual(QgsGeometry.fromRect(expected))
    assert not dock.state.area.polygon and dock.state.area.text().startswith("drawn rectangle")
    assert dock.area_display.geometry().boundingBox() == expected


# ------------------------------------------------------------------ the state model, threads, refresh
def test_the_state_model_without_widgets(world, project, tmp_path):
    """DockState alone: blockers in plain words, core's rules (softmax needs a threshold), the
    typed request (extent + CRS, area geometries, the mapping as BandRefs)."""
    from geoplant_qgis.core.modelcard import read_model_card
    from geoplant_qgis.core.sources import BandRef
    from geoplant_qgis.gui.state import Area, DockState

    state = DockState()
    assert state.blockers() == ["Choose a model."]
    state.set_model(world["model"], read_model_card(world["model"]))
    assert state.inputs == {"Bio1": None, "Bio12": None}
    assert (state.cell_size, state.grid_crs.authid(), state.outputs.top_k) == (100.0, "EPSG:3035", 3)
    assert state.blockers() == [
        "Missing inputs: Bio1, Bio12.",
        "Choose an area.",
        "Choose an output folder.",
    ]
    state.inputs = {"Bio1": BandRef(world["bio1"], 1), "Bio12": BandRef(world["bio12"], 1)}
    state.area = Area(full_extent(), QgsCoordinateReferenceSystem("EPSG:3035"), description="test")
    state.outputs.folder = world["out"]
    assert state.blockers() == []
    assert (state.update_estimate().width, state.estimate.height) == (COLS, ROWS)
    request = state.request("plain")
    assert (
        request.extent == (X0, Y0 - ROWS * CELL, X0 + COLS * CELL, Y0) and request.extent_crs == "EPSG:3035"
    )
    assert request.area is None and request.mapping["Bio12"] == BandRef(world["bio12"], 1)
    assert set(request.outputs) == {"richness", "topk"}
    # a softmax model: the rule is core's (the request's validation); the state shows it
    softmax = save_linear_point_model(tmp_path / "softmax.onnx", weights=W, bias=B, activation="softmax")
    state.set_model(softmax, read_model_card(softmax))
    assert state.outputs.threshold == 0.5  # the card's default asks for one
    state.inputs = {"Bio1": BandRef(world["bio1"], 1), "Bio12": BandRef(world["bio12"], 1)}
    assert state.blockers() == []
    state.outputs.threshold = None
    (problem,) = state.blockers()
    assert "softmax" in problem and "THRESHOLD" in problem


def test_the_gui_thread_never_runs_a_model(dock, world, project, monkeypatch):
    """Model change (card + timing), refresh and "What grows here?": every onnxruntime session
    and every model run is made in a background thread."""
    import threading

    import onnxruntime

    threads = []
    original = onnxruntime.InferenceSession

    class Recording(original):
        def __init__(self, *args, **kwargs):
            threads.append(threading.current_thread() is threading.main_thread())
            super().__init__(*args, **kwargs)

        def run(self, *args, **kwargs):
            threads.append(threading.current_thread() is threading.main_thread())
            return super().run(*args, **kwargs)

    monkeypatch.setattr(onnxruntime, "InferenceSession", Recording)
    ready_dock(dock, world, project)  # the card read, the model timed, the inputs matched
    assert dock.state.seconds_per_cell is not None
    dock.cell_size_spin.setValue(200.0)
    dock.refresh()
    assert dock.wait_idle(60)
    dock.identify_at(QgsPointXY(X0 + 2.5 * CELL, Y0 - 6.5 * CELL), QgsCoordinateReferenceSystem("EPSG:3035"))
    assert dock.wait_idle(60) and dock.last_answer is not None
    assert threads and not any(threads), threads


def test_what_grows_here_counts_with_the_threshold_as_predict_does(dock, world, project):
    """With THRESHOLD, the model's answer at a point is predict's richness of that cell."""
    ready_dock(dock, world, project)
    dock.threshold_check.setChecked(True)
    dock.threshold_spin.setValue(0.4)
    dock.topk_check.setChecked(False)
    run_and_wait(dock)
    with rasterio.open(dock.last_outputs["richness"]) as ds:
        richness = ds.read(1)
    expected = expected_probabilities(world)
    np.testing.assert_array_equal(richness, (expected >= 0.4).sum(axis=2))
    # with the outputs in the project, they answer (one answer for one spot)
    point = QgsPointXY(X0 + 4.5 * CELL, Y0 - 3.5 * CELL)
    answer = dock.identify_at(point, QgsCoordinateReferenceSystem("EPSG:3035"))
    assert answer["richness"] == richness[3, 4] and answer["run"] == dock.run_name
    # as before any run (no result layer, nothing remembered): the model answers, the same
    project.removeMapLayers(
        [layer.id() for layer in project.mapLayers().values() if layer.customProperty("geoplant/kind")]
    )
    dock.state.run.outputs = {}
    for row, col in ((3, 4), (6, 2), (0, 9)):
        point = QgsPointXY(X0 + (col + 0.5) * CELL, Y0 - (row + 0.5) * CELL)
        dock.identify_at(point, QgsCoordinateReferenceSystem("EPSG:3035"))
        assert dock.wait_idle(60)
        assert dock.last_answer["richness"] == richness[row, col]
        assert "with p ≥ 0.4" in dock.identify_view.toPlainText()


def test_refresh_is_debounced(dock, world, project):
    """Ten changes in a row: one recomputation of the estimate and the blockers."""
    ready_dock(dock, world, project)
    calls = []
    refresh_now = dock.refresh_now

    def counting():
        calls.append(1)
        refresh_now()

    dock.refresh_now = counting
    for i in range(10):
        dock.cell_size_spin.setValue(100.0 + 10 * (i + 1))
    assert calls == []
    assert dock.wait_idle(10)
    assert len(calls) == 1
    assert (dock.last_estimate.width, dock.last_estimate.height) == (5, 4)  # 200 m cells


# ------------------------------------------------------------------ issue 13: the dock, as a planner met it
def all_messages(iface):
    bar = iface.messageBar()
    return [m for level in bar.messages for m in bar.get_messages(level)]


def test_what_grows_here_one_answer_marker_copy_csv_and_after_a_reopen(dock, world, project, tmp_path):
    from qgis.gui import QgsVertexMarker
    from qgis.PyQt.QtGui import QGuiApplication

    from geoplant_qgis.gui.panels.identify import COLUMNS

    ready_dock(dock, world, project)
    dock.topk_spin.setValue(3)
    dock.set_species_checked([101])
    dock.run_name_edit.setText("spot")
    run_and_wait(dock)
    expected = expected_probabilities(world)
    crs = QgsCoordinateReferenceSystem("EPSG:3035")
    # a click off the cell centre: the answer of the cell, from the outputs, said once
    point = QgsPointXY(X0 + 4.2 * CELL, Y0 - 3.8 * CELL)
    answer = dock.identify_at(point, crs)
    assert answer["run"] == "spot" and answer["richness"] == pytest.approx(expected[3, 4].sum(), rel=1e-5)
    assert dock.wait_idle(60)  # probabilities the outputs lack: the model at the cell centre
    order = np.argsort(-expected[3, 4], kind="stable")
    assert [sid for sid, _, _ in dock.last_answer["species"]] == [IDS[i] for i in order]
    for sid, _, p in dock.last_answer["species"]:  # every listed species has its probability
        assert p == pytest.approx(expected[3, 4][IDS.index(sid)], rel=1e-5)
    text = dock.identify_view.toPlainText()
    assert f"{expected[3, 4].sum():.1f} species\nFrom the outputs of run spot" in text, text
    # a marker on the map, one at a time
    canvas = dock.canvas
    markers = [i for i in canvas.scene().items() if isinstance(i, QgsVertexMarker)]
    assert len(markers) == 1 and dock.identify.marker.center() == point
    # copy (tab-separated) and CSV
    dock.identify_panel.copy_button.click()
    lines = QGuiApplication.clipboard().text().splitlines()
    assert lines[0].split("\t") == COLUMNS and len(lines) == 1 + 3
    first = dict(zip(COLUMNS, lines[1].split("\t"), strict=True))
    assert first["species_id"] == str(IDS[order[0]]) and first["source"] == "outputs of spot"
    assert float(first["probability"]) == pytest.approx(expected[3, 4][order[0]], abs=1e-4)
    import csv

    path = dock.identify.save_csv(str(tmp_path / "answer.csv"))
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["species_id"]) for r in rows] == [IDS[i] for i in order]
    # the next click moves the marker
    dock.identify_at(QgsPointXY(X0 + 1.5 * CELL, Y0 - 1.5 * CELL), crs)
    assert dock.wait_idle(60)
    markers = [i for i in canvas.scene().items() if isinstance(i, QgsVertexMarker)]
    assert len(markers) == 1 and dock.identify.marker.center() == QgsPointXY(X0 + 1.5 * CELL, Y0 - 1.5 * CELL)

    # reopen the project: the result layers answer from their metadata, the panel forgot the run
    project_file = str(tmp_path / "planner.qgz")
    assert project.write(project_file)
    project.clear()
    assert dock.wait_idle(30)
    assert project.read(project_file)
    assert dock.wait_idle(60)
    assert dock.state.run.outputs == {} and dock.time_label.text() == ""
    assert "Finished" not in dock.time_label.text() and dock.progress_bar.value() == 0
    assert dock.selected_species() == [101]  # the ticked species, saved in the project
    again = dock.identify_at(point, crs)
    assert again is not None and again["run"] == "spot"
    assert again["richness"] == pytest.approx(expected[3, 4].sum(), rel=1e-5)
    dock.shutdown()
    assert not [i for i in canvas.scene().items() if isinstance(i, QgsVertexMarker)]


def test_a_rectangle_drawn_in_another_crs_is_an_area(dock, world, project):
    """Drawn in EPSG:4326 on a EPSG:3035 grid: the grid covers the rectangle's image, and the
    cells whose centre is outside the drawn outline are nodata (no tilted overflow)."""
    from qgis.core import QgsCoordinateTransform

    ready_dock(dock, world, project)
    wgs84 = QgsCoordinateReferenceSystem("EPSG:4326")
    to_wgs84 = QgsCoordinateTransform(QgsCoordinateReferenceSystem("EPSG:3035"), wgs84, project)
    corner = to_wgs84.transform(QgsPointXY(X0 + 130, Y0 - 130))  # no cell centre on an edge
    far = to_wgs84.transform(QgsPointXY(X0 + 830, Y0 - 630))
    rect = QgsRectangle(corner, far)
    dock.set_area(QgsGeometry.fromRect(rect), wgs84, description="drawn rectangle")
    assert "ha" in dock.area_label.text()  # its size, in km² or ha
    typed = dock.state.request("tilted")
    assert typed.area is not None and typed.area_crs == "EPSG:4326"
    dock.topk_check.setChecked(False)
    run_and_wait(dock)
    with rasterio.open(dock.last_outputs["richness"]) as ds:
        richness, nodata, transform = ds.read(1), ds.nodata, ds.transform
    rows, cols = np.mgrid[0 : richness.shape[0], 0 : richness.shape[1]]
    xs, ys = transform * (cols + 0.5, rows + 0.5)
    inside = np.array(
        [
            rect.contains(to_wgs84.transform(QgsPointXY(float(x), float(y))))
            for x, y in zip(xs.ravel(), ys.ravel(), strict=True)
        ]
    ).reshape(richness.shape)
    assert 0 < inside.sum() < inside.size
    assert np.all(richness[~inside] == nodata), (transform, richness, inside)
    assert np.all(richness[inside] != nodata), (transform, richness, inside)
    # the area in square metres, ellipsoidal (QgsDistanceArea): ~700 m x 500 m
    assert dock.state.area.square_metres() == pytest.approx(700 * 500, rel=0.05)


def test_inputs_table_shows_layer_and_band_and_clears_removed_layers(dock, world, project):
    ready_dock(dock, world, project)
    dock.resize(360, 900)
    dock.show()
    from qgis.PyQt.QtCore import QCoreApplication

    QCoreApplication.processEvents()
    table = dock.input_table
    assert table.columnWidth(1) >= 100, table.columnWidth(1)  # the layer name, not one letter
    _, layer_combo, band_combo = dock.rows[0]
    assert layer_combo.toolTip().startswith("bio1, Band 1") and band_combo.toolTip() == layer_combo.toolTip()
    assert dock.inputs_panel.choice_text("Bio12").startswith("BIO_12, Band 1")
    project.removeMapLayer(project.mapLayersByName("bio1")[0])
    assert dock.wait_idle(10)
    name, layer_combo, band_combo = dock.rows[0]
    assert layer_combo.currentLayer() is None and band_combo.layer() is None
    assert dock.status_of("Bio1") == "missing" and dock.status_of("Bio12") == "found"
    assert "Missing inputs: Bio1." in dock.run_blockers()
    dock.hide()


def test_cancel_is_reported_once_as_cancelled_and_the_task_ends_quietly(dock, world, project, qgis_iface):
    from qgis.core import QgsApplication, QgsTask

    ready_dock(dock, world, project)
    dock.set_area(
        QgsGeometry.fromRect(QgsRectangle(X0, Y0 - 150_000, X0 + 150_000, Y0)),
        QgsCoordinateReferenceSystem("EPSG:3035"),
    )
    qgis_iface.messageBar().clear_messages()
    statuses = []
    QgsApplication.taskManager().statusChanged.connect(lambda _id, status: statuses.append(status))
    assert dock.start_run()
    figures = []

    def on_progress(percent):
        figures.append(dock.time_label.text())
        if percent > 0 and dock.run is not None and not dock.run.cancelled:
            dock.cancel_run()

    dock.run.progressChanged.connect(on_progress)
    assert dock.wait_for_run(120)
    from qgis.PyQt.QtCore import QCoreApplication

    for _ in range(20):
        QCoreApplication.processEvents()
    # QGIS says "Task failed" for a Terminated task: this one ends Complete, the dock says it once
    assert QgsTask.Terminated not in statuses and QgsTask.Complete in statuses
    messages = all_messages(qgis_iface)
    cancelled = [m for m in messages if "cancel" in m.lower()]
    assert len(cancelled) == 1 and "Run cancelled" in cancelled[0], messages
    # progress figures while it ran: cells done of all, cells/s
    assert any("of 2,250,000 cells" in f for f in figures), figures


def test_an_area_outside_the_rasters_is_said_before_run(dock, world, project):
    ready_dock(dock, world, project)
    assert dock.state.coverage is None and dock.run_blockers() == []
    far = QgsRectangle(X0 + 50_000, Y0 - 2_000, X0 + 52_000, Y0)
    dock.set_area(QgsGeometry.fromRect(far), QgsCoordinateReferenceSystem("EPSG:3035"))
    blockers = dock.run_blockers()
    assert any("The area lies outside the raster of Bio1, Bio12" in b for b in blockers), blockers
    assert "outside the raster" in dock.estimate_warning.text()
    # half over the rasters: a warning with the share, Run allowed
    half = QgsRectangle(X0 + 500, Y0 - 800, X0 + 1500, Y0)
    dock.set_area(QgsGeometry.fromRect(half), QgsCoordinateReferenceSystem("EPSG:3035"))
    assert dock.run_blockers() == []
    assert "About 50% of the area lies outside the raster" in dock.estimate_warning.text()


def test_the_estimate_uses_the_last_run_and_logs_both(dock, world, project, monkeypatch):
    from geoplant_qgis.gui import state as dock_state

    monkeypatch.setattr(dock_state, "MIN_CELLS_TO_CALIBRATE", 1)
    monkeypatch.setattr(dock_state, "START_SECONDS", 0.01)
    ready_dock(dock, world, project)
    assert dock.last_estimate.seconds is not None
    run_and_wait(dock)
    timing = dock.last_timing
    assert timing["cells"] == ROWS * COLS and timing["real"] > 0 and timing["expected"] is not None
    # the next estimate of the same model is that run's pace
    dock.update_estimate()
    assert dock.last_estimate.seconds == pytest.approx(timing["real"], rel=1e-6)
    assert "cells/s" in dock.time_label.text()


def test_clicking_the_draw_button_again_keeps_the_tool_on(dock, world, project, qgis_canvas):
    qgis_canvas.setExtent(QgsRectangle(X0, Y0 - 3000, X0 + 4000, Y0))
    dock.rectangle_button.click()
    dock.rectangle_button.click()  # again: still on, visibly
    tool = qgis_canvas.mapTool()
    assert tool is dock.rectangle_tool and dock.rectangle_button.isChecked()
    tool.canvasPressEvent(mouse(qgis_canvas, "press", 10, 10))
    tool.canvasReleaseEvent(mouse(qgis_canvas, "release", 60, 50))
    assert dock.state.area is not None and dock.state.area.text().startswith("drawn rectangle")


def test_default_output_folder(dock, project, tmp_path):
    from geoplant_qgis.gui.state import DEFAULT_FOLDER

    assert dock.folder_widget.filePath() == DEFAULT_FOLDER  # a project never saved
    assert not any("output folder" in b for b in dock.run_blockers())
    saved = tmp_path / "site" / "plan.qgz"
    saved.parent.mkdir()
    project.clear()
    assert project.write(str(saved))
    assert project.read(str(saved))
    assert dock.wait_idle(30)
    assert dock.folder_widget.filePath() == str(saved.parent)


def test_decisions_open_the_algorithms_with_the_last_probabilities(dock, world, project, monkeypatch):
    from geoplant_qgis.gui.panels import decisions

    calls = []
    monkeypatch.setattr(decisions, "open_algorithm_dialog", lambda alg, params: calls.append((alg, params)))
    assert not dock.report_button.isEnabled()
    ready_dock(dock, world, project)
    dock.set_species_checked([100, 102])
    run_and_wait(dock)
    probabilities = dock.last_outputs["probabilities"]
    dock.report_button.click()
    dock.presence_button.click()
    assert calls == [
        ("geoplant:areareport", {"PROBABILITIES": probabilities}),
        ("geoplant:presence", {"PROBABILITIES": probabilities}),
    ]
    assert not dock.ensemble_button.isEnabled()  # one run: nothing to ensemble yet
    run_and_wait(dock)
    assert dock.ensemble_button.isEnabled()
    dock.ensemble_button.click()
    assert calls[-1][0] == "geoplant:ensemble" and sorted(calls[-1][1]["INPUTS"]) == sorted(
        [probabilities, dock.last_outputs["probabilities"]]
    )
