"""geoplant:predict through processing.run: parameters -> core, values cell by cell, errors, styles."""

from __future__ import annotations

import os
import shutil

import pytest
import rasterio
import test_engine
from test_engine import (
    EXTENT,
    POINT_INPUT,
    SPECIES_IDS,
    B,
    W,
    centres,
    check_outputs,
    expected_point_probs,
    make_model,
    snapped,
)

pytestmark = pytest.mark.usefixtures("geoplant_provider")
climate = test_engine.climate  # the same rasters fixture


def _extent_text(extent, crs="EPSG:3035"):
    xmin, ymin, xmax, ymax = extent
    return f"{xmin!r},{xmax!r},{ymin!r},{ymax!r} [{crs}]"


def test_registered_with_its_parameters(geoplant_provider):
    from qgis.core import QgsApplication

    alg = QgsApplication.processingRegistry().algorithmById("geoplant:predict")
    assert alg is not None
    names = [p.name() for p in alg.parameterDefinitions()]
    assert names == [
        "MODEL",
        "RASTERS",
        "MAPPING",
        "EXTENT",
        "AREA",
        "CRS",
        "CELL_SIZE",
        "TOP_K",
        "TOPK_MODE",
        "TOPK_MARGIN",
        "SPECIES",
        "THRESHOLD",
        "OUTPUT_RICHNESS",
        "OUTPUT_TOPK",
        "OUTPUT_PROBABILITIES",
        "MAX_CELLS",
        "DEVICE",
    ]
    assert alg.parameterDefinition("TOP_K").defaultValue() == 25


def test_run_values_cell_by_cell(tmp_path, climate):
    import processing

    model = make_model(tmp_path / "m.onnx", [POINT_INPUT], W, B)
    out = tmp_path / "out"
    out.mkdir()
    paths = {k: str(out / f"{k}.tif") for k in ("richness", "topk", "probabilities")}
    result = processing.run(
        "geoplant:predict",
        {
            "MODEL": model,
            "RASTERS": climate,
            "EXTENT": _extent_text(EXTENT),
            "CELL_SIZE": 1000,
            "TOP_K": 3,
            "OUTPUT_RICHNESS": paths["richness"],
            "OUTPUT_TOPK": paths["topk"],
            "OUTPUT_PROBABILITIES": paths["probabilities"],
        },
    )
    probs, valid, (left, top, width, height) = expected_point_probs(climate, EXTENT, 1000, "sigmoid")
    assert result["OUTPUT_RICHNESS"] == paths["richness"]
    assert result["OUTPUT_TOPK"] == paths["topk"]
    assert result["CELLS"] == width * height and result["VALID_CELLS"] == valid.sum()
    check_outputs(paths, probs, valid, width, height, top_k=3)


def test_area_layer_mapping_species_threshold(tmp_path, climate):
    """AREA as a polygon layer (in EPSG:3035), MAPPING overriding the file-name rule, SPECIES
    choosing the probability bands while the richness counts every species."""
    import processing
    from qgis.core import QgsFeature, QgsGeometry, QgsVectorLayer

    # a raster named nothing like the variable, found only through MAPPING
    renamed = tmp_path / "src" / "altitude.tif"
    shutil.copy(climate[1], renamed)
    rasters = [climate[0], str(renamed)]
    model = make_model(tmp_path / "m.onnx", [POINT_INPUT], W, B)
    left, top, width, height = snapped(EXTENT, 1000)
    x0, y0 = left - 300.0, top + 200.0
    x1, y1 = left + width * 1000 + 400.0, top - height * 1000 - 100.0
    layer = QgsVectorLayer("Polygon?crs=EPSG:3035", "area", "memory")
    feature = QgsFeature()
    feature.setGeometry(QgsGeometry.fromWkt(f"POLYGON(({x0} {y0}, {x1} {y1}, {x0} {y1}, {x0} {y0}))"))
    layer.dataProvider().addFeatures([feature])
    out = str(tmp_path / "r.tif")
    out_p = str(tmp_path / "p.tif")
    result = processing.run(
        "geoplant:predict",
        {
            "RASTERS": rasters,
            "MODEL": model,
            "MAPPING": f"elev={renamed}#1",
            "AREA": layer,
            "EXTENT": _extent_text(EXTENT),
            "CELL_SIZE": 1000,
            "SPECIES": "42,10",
            "THRESHOLD": 0.5,
            "TOP_K": 0,
            "OUTPUT_RICHNESS": out,
            "OUTPUT_PROBABILITIES": out_p,
        },
    )
    assert result["OUTPUT_RICHNESS"] == out and result["OUTPUT_TOPK"] is None
    probs, valid, _ = expected_point_probs(climate, EXTENT, 1000, "sigmoid")
    xs, ys = centres(left, top, width, height, 1000)
    inside = (ys - y0) * (x1 - x0) < (y1 - y0) * (xs - x0)
    paths = {"richness": out, "probabilities": out_p}
    check_outputs(paths, probs, valid & inside, width, height, top_k=0, threshold=0.5, columns=[3, 0])
    with rasterio.open(out_p) as src:
        assert src.descriptions == ("Species 42 (42)", "Species 10 (10)")
    with rasterio.open(out) as src:  # the count over all 5 species, not over the 2 bands
        got = src.read(1).ravel()[valid & inside]
    assert (got != (probs[valid & inside][:, [3, 0]] >= 0.5).sum(axis=1)).any()


@pytest.mark.parametrize(
    "change, message",
    [
        ({"OUTPUT_RICHNESS": None}, "No output requested"),
        ({"EXTENT": None}, "EXTENT or an AREA"),
        ({"RASTERS": []}, r"variable\(s\) not found in the rasters: .env.: 2 of 2 missing: bio1, elev"),
        ({"CRS": "EPSG:4326"}, "not projected"),
        ({"OUTPUT_RICHNESS": "OUT.img"}, "must be a GeoTIFF"),
    ],
)
def test_errors_are_plain_messages(tmp_path, climate, change, message):
    import processing
    from qgis.core import QgsProcessingException

    model = make_model(tmp_path / "m.onnx", [POINT_INPUT], W, B)
    params = {
        "MODEL": model,
        "RASTERS": climate,
        "EXTENT": _extent_text(EXTENT),
        "CELL_SIZE": 1000,
        "OUTPUT_RICHNESS": str(tmp_path / "r.tif"),
    }
    params.update(change)
    if params["OUTPUT_RICHNESS"] == "OUT.img":
        params["OUTPUT_RICHNESS"] = str(tmp_path / "OUT.img")
    with pytest.raises(QgsProcessingException, match=message):
        processing.run("geoplant:predict", {k: v for k, v in params.items() if v is not None})
    assert not any(f.endswith((".tif", ".img")) for f in os.listdir(tmp_path))


def test_loaded_layers_get_styles(tmp_path, climate):
    from qgis.core import QgsRasterLayer

    from geoplant_qgis.core import engine
    from geoplant_qgis.processing.predict import _output_style

    model = make_model(tmp_path / "m.onnx", [POINT_INPUT], W, B)
    paths = {k: str(tmp_path / f"{k}.tif") for k in ("richness", "topk", "probabilities")}
    engine.predict(
        model,
        climate,
        extent=EXTENT,
        cell_size=1000,
        top_k=2,
        output_richness=paths["richness"],
        output_topk=paths["topk"],
        output_probabilities=paths["probabilities"],
    )
    topk = QgsRasterLayer(paths["topk"], "topk")
    _output_style("topk", paths["topk"])(topk)
    renderer = topk.renderer()
    assert renderer.type() == "paletted"
    assert [(c.value, c.label) for c in renderer.classes()] == [
        (i, f"Species {i} ({i})") for i in SPECIES_IDS
    ]

    richness = QgsRasterLayer(paths["richness"], "richness")
    _output_style("richness", paths["richness"])(richness)
    with rasterio.open(paths["richness"]) as src:
        data = src.read(1)
    valid = data[data != -9999.0]
    assert richness.renderer().type() == "singlebandpseudocolor"
    assert richness.renderer().classificationMin() == pytest.approx(valid.min(), rel=1e-5)
    assert richness.renderer().classificationMax() == pytest.approx(valid.max(), rel=1e-5)

    probabilities = QgsRasterLayer(paths["probabilities"], "p")
    _output_style("probabilities", paths["probabilities"])(probabilities)
    assert (probabilities.renderer().classificationMin(), probabilities.renderer().classificationMax()) == (
        0,
        1,
    )
