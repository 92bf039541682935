"""core.engine: every output cell equals an independent numpy computation; bad input refused.

Models are hand-made ONNX graphs with known weights (Flatten -> MatMul -> Add, optionally
a Sigmoid inside for activation "none"); rasters have known values in several CRSs. The
expected values are computed here from the raster arrays with numpy (cell centres from the
snapped grid, the source pixel containing each centre, the card's normalisation, the
activation), never with the engine's code.
"""

from __future__ import annotations

import math
import os

import numpy as np
import onnx
import pytest
import rasterio
from make_world import write_tif
from onnx import TensorProto, helper, numpy_helper
from rasterio.transform import from_origin
from rasterio.warp import transform as warp_transform

from geoplant_qgis.core import engine
from geoplant_qgis.core.errors import CancelledError, InputDataError, ModelCardError, OutputError
from geoplant_qgis.core.grid import tiles
from geoplant_qgis.core.modelcard import embed_model_card
from geoplant_qgis.core.postprocess import postprocess_graph
from geoplant_qgis.core.predict.inputs import Inputs
from geoplant_qgis.core.progress import Progress

pytestmark = pytest.mark.core

SPECIES_IDS = [10, 3, 7, 42, 1]


def _tiles(height, width, cells, strip=256):
    """The grid's tiling as (row, col, rows, cols) tuples."""
    return [
        (int(w.row_off), int(w.col_off), int(w.height), int(w.width))
        for w in tiles(height, width, cells, strip)
    ]


# --- helpers ---------------------------------------------------------------------------


def write_raster(path, array, crs, transform, nodata=None, descriptions=None):
    return write_tif(path, array, transform, crs, nodata, descriptions, compress=None)


def make_model(
    path, inputs, weights, bias, activation="sigmoid", species_ids=SPECIES_IDS, grid=None, opset=17
):
    """Flatten every input, concatenate, MatMul + Add -> logits; 'none' adds a Sigmoid."""
    nodes, graph_inputs, flats = [], [], []
    for spec in inputs:
        if spec["kind"] == "point":
            dims = [len(spec["variables"])]
        elif spec["kind"] == "patch":
            dims = [len(spec["bands"]), spec["size"], spec["size"]]
        else:
            dims = list(spec["shape"])
        graph_inputs.append(helper.make_tensor_value_info(spec["name"], TensorProto.FLOAT, ["N", *dims]))
        nodes.append(helper.make_node("Flatten", [spec["name"]], [f"{spec['name']}_flat"], axis=1))
        flats.append(f"{spec['name']}_flat")
    nodes.append(helper.make_node("Concat", flats, ["features"], axis=1))
    nodes.append(helper.make_node("MatMul", ["features", "W"], ["xw"]))
    out = "logits" if activation != "none" else "z"
    nodes.append(helper.make_node("Add", ["xw", "b"], [out]))
    if activation == "none":
        nodes.append(helper.make_node("Sigmoid", ["z"], ["probs"]))
        out = "probs"
    weights = np.asarray(weights, np.float32)
    graph = helper.make_graph(
        nodes,
        "test",
        graph_inputs,
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", weights.shape[1]])],
        [numpy_helper.from_array(weights, "W"), numpy_helper.from_array(np.asarray(bias, np.float32), "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    card = {
        "format": "geoplant-onnx/1",
        "species": [{"id": i, "name": f"Species {i}"} for i in species_ids],
        "output": {"name": out, "activation": activation},
        "inputs": inputs,
    }
    if grid:
        card["grid"] = grid
    embed_model_card(model, card)
    onnx.save(model, path)
    return str(path)


def activate(logits, activation):
    if activation == "sigmoid":
        return 1.0 / (1.0 + np.exp(-logits))
    if activation == "softmax":
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    return 1.0 / (1.0 + np.exp(-logits))  # "none": the graph's own sigmoid


def snapped(extent, cell):
    """(left, top, width, height) of the grid covering extent, snapped to multiples of cell."""
    xmin, ymin, xmax, ymax = extent
    c0, c1 = math.floor(xmin / cell), math.ceil(xmax / cell)
    r0, r1 = math.floor(ymin / cell), math.ceil(ymax / cell)
    return c0 * cell, r1 * cell, c1 - c0, r1 - r0


def centres(left, top, width, height, cell):
    xs = left + (np.arange(width) + 0.5) * cell
    ys = top - (np.arange(height) + 0.5) * cell
    gx, gy = np.meshgrid(xs, ys)
    return gx.ravel(), gy.ravel()


def lookup(path, xs, ys, crs, band=1):
    """Value of the source pixel containing each point (points in ``crs``), NaN for nodata/outside."""
    with rasterio.open(path) as src:
        data = src.read(band).astype(np.float64)
        tx, ty = warp_transform(crs, src.crs, list(xs), list(ys)) if src.crs != crs else (xs, ys)
        t = src.transform
        cols = np.floor((np.asarray(tx) - t.c) / t.a).astype(int)
        rows = np.floor((np.asarray(ty) - t.f) / t.e).astype(int)
        out = np.full(len(xs), np.nan)
        ok = (cols >= 0) & (cols < src.width) & (rows >= 0) & (rows < src.height)
        out[ok] = data[rows[ok], cols[ok]]
        if src.nodata is not None:
            out[out == src.nodata] = np.nan
    return out


def read(path):
    with rasterio.open(path) as src:
        return src.read(), src.profile, src.descriptions


def check_outputs(paths, probs, valid, width, height, top_k, threshold=None, columns=None, ids=SPECIES_IDS):
    """Compare the written rasters with expected probabilities [cells, S] (valid rows).

    Richness and top-K cover every species; ``columns`` are the probability bands."""
    columns = list(range(probs.shape[1])) if columns is None else columns
    p = probs[:, columns]
    kept_ids = np.asarray(ids)[columns]
    if "richness" in paths:
        data, profile, desc = read(paths["richness"])
        assert profile["dtype"] == "float32" and profile["nodata"] == -9999.0
        expected = np.full(width * height, -9999.0)
        v = probs[valid]
        expected[valid] = v.sum(axis=1) if threshold is None else (v >= threshold).sum(axis=1)
        np.testing.assert_allclose(data[0].ravel(), expected, rtol=1e-5, atol=1e-5)
    if "topk" in paths:
        data, profile, desc = read(paths["topk"])
        assert profile["dtype"] == "int32" and profile["nodata"] == -1
        assert desc == tuple(f"rank {i}" for i in range(1, top_k + 1))
        order = np.argsort(-probs.astype(np.float32), axis=1, kind="stable")[:, :top_k]
        expected = np.full((width * height, top_k), -1)
        expected[valid] = np.asarray(ids)[order[valid]]
        np.testing.assert_array_equal(data.reshape(top_k, -1).T, expected)
    if "probabilities" in paths:
        data, profile, desc = read(paths["probabilities"])
        assert profile["dtype"] == "float32" and profile["nodata"] == -9999.0
        assert desc == tuple(f"Species {i} ({i})" for i in kept_ids)
        expected = np.full((width * height, len(columns)), -9999.0)
        expected[valid] = p[valid]
        np.testing.assert_allclose(data.reshape(len(columns), -1).T, expected, rtol=1e-5, atol=1e-6)


@pytest.fixture
def climate(tmp_path):
    """Two point variables: 'bio1' at 0.01 degree (EPSG:4326), 'elev' at 250 m (EPSG:3035)."""
    src = tmp_path / "src"
    src.mkdir()
    lon = np.arange(70)[None, :]
    lat = np.arange(60)[:, None]
    bio1 = (lat * 0.1 + lon * 0.03).astype(np.float32)
    bio1[30:34, 12:18] = -32768  # nodata hole
    paths = [
        write_raster(
            src / "bio1.tif", bio1, "EPSG:4326", from_origin(3.5003, 43.9007, 0.01, 0.01), nodata=-32768
        )
    ]
    elev = (np.arange(80 * 60).reshape(80, 60) % 97).astype(np.int16)
    paths.append(
        write_raster(src / "Elev.tif", elev, "EPSG:3035", from_origin(3_800_030.0, 2_305_020.0, 250.0, 250.0))
    )
    return paths


POINT_INPUT = {
    "name": "env",
    "kind": "point",
    "variables": ["bio1", "elev"],
    "scale": 2.0,
    "mean": [1.0, 40.0],
    "std": [2.0, 25.0],
}
EXTENT = (3_803_130.0, 2_292_470.0, 3_814_950.0, 2_299_880.0)  # EPSG:3035, not on cell lines
W = np.array([[0.8, -0.5, 0.0, 0.3, -1.2], [0.6, 0.9, 0.0, -0.4, 0.1]], np.float32)
B = np.array([0.1, -0.2, 0.05, 0.0, 0.3], np.float32)


def point_logits(x, w=W, b=B):
    """POINT_INPUT's card normalisation ((x * 2 - mean) / std), then x @ w + b, in float64."""
    z = (np.asarray(x, np.float64) * 2.0 - np.array([1.0, 40.0])) / np.array([2.0, 25.0])
    return z @ np.asarray(w, np.float64) + b


def expected_point_probs(climate, extent, cell, activation, crs="EPSG:3035", fill=None, w=W, b=B):
    left, top, width, height = snapped(extent, cell)
    xs, ys = centres(left, top, width, height, cell)
    x = np.stack([lookup(climate[0], xs, ys, crs), lookup(climate[1], xs, ys, crs)], axis=1)
    if fill is not None:
        x = np.where(np.isnan(x), fill, x)
    valid = ~np.isnan(x).any(axis=1)
    return activate(point_logits(x, w, b), activation), valid, (left, top, width, height)


# --- values ----------------------------------------------------------------------------


@pytest.mark.parametrize("block_cells", [None, 7, 45])
@pytest.mark.parametrize("activation", ["sigmoid", "none"])
def test_point_inputs_every_cell(tmp_path, climate, activation, block_cells):
    model = make_model(tmp_path / "m.onnx", [POINT_INPUT], W, B, activation)
    out = tmp_path / "out"
    out.mkdir()
    paths = {k: str(out / f"{k}.tif") for k in ("richness", "topk", "probabilities")}
    result = engine.predict(
        model,
        climate,
        extent=EXTENT,
        extent_crs="EPSG:3035",
        cell_size=1000,
        top_k=3,
        output_richness=paths["richness"],
        output_topk=paths["topk"],
        output_probabilities=paths["probabilities"],
        block_cells=block_cells,
    )
    probs, valid, (left, top, width, height) = expected_point_probs(climate, EXTENT, 1000, activation)
    assert 0 < valid.sum() < len(valid)  # the nodata hole and the raster edge are inside the grid
    assert (result.cells, result.valid_cells, result.species) == (width * height, valid.sum(), 5)
    assert result.outputs == paths
    check_outputs(paths, probs, valid, width, height, top_k=3)
    with rasterio.open(paths["richness"]) as src:
        assert src.transform == from_origin(left, top, 1000, 1000)
        assert (src.width, src.height) == (width, height) and src.crs.to_epsg() == 3035
    assert sorted(os.listdir(out)) == [
        "probabilities.tif",
        "richness.tif",
        "topk.qml",
        "topk.tif",
        "topk_species.csv",
    ]
    table = (out / "topk_species.csv").read_text().splitlines()
    assert table == ["id,name"] + [f"{i},Species {i}" for i in SPECIES_IDS]


@pytest.mark.parametrize("opset", [12, 13, 17])
@pytest.mark.parametrize("activation", ["sigmoid", "softmax"])
def test_fused_and_two_session_pipelines_agree(tmp_path, climate, opset, activation):
    """Opset >= 13: post-processing appended to the model's graph; below: a second session."""
    model = make_model(tmp_path / "m.onnx", [POINT_INPUT], W, B, activation, opset=opset)
    loaded = engine.LoadedModel(model)
    pipeline = loaded.pipeline([4, 0, 2], top_k=2, richness=True, threshold=0.3, probabilities=True)
    # probabilities: columns 4, 0, 2; richness and top-K: all five species
    assert pipeline.fused == (opset >= 13)
    if pipeline.fused:  # the raw output is no longer a graph output
        assert [o.name for o in pipeline.sessions[0].get_outputs()] == [
            "geoplant_post/probabilities",
            "geoplant_post/richness",
            "geoplant_post/topk",
            "geoplant_post/check_sum",  # a threshold richness does not show NaN: a sum does
        ]
    # in-graph normalisation only when fused
    assert pipeline.graph_normalises == ({"env"} if pipeline.fused else set())
    x = np.random.default_rng(0).normal(size=(50, 2)).astype(np.float32) * 10 + 20
    spec = loaded.card.inputs[0]
    out = pipeline.run({"env": x if pipeline.graph_normalises else spec.normalise(x)})
    p = activate(point_logits(x), activation)
    np.testing.assert_allclose(out["probabilities"], p[:, [4, 0, 2]], rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(out["richness"], (p >= 0.3).sum(axis=1))
    ids = np.array(SPECIES_IDS)
    np.testing.assert_array_equal(out["topk"], ids[np.argsort(-p, axis=1, kind="stable")[:, :2]])
    assert out["topk"].dtype == np.int32 and out["richness"].dtype == np.float32
    # micro-batches of 7 rows shared by two worker sessions give the same rows, in order
    loaded.threads = None
    pair = loaded.pipeline([4, 0, 2], top_k=2, richness=True, threshold=0.3, probabilities=True)
    pair.workers, pair.sessions = 2, pair.sessions[:1] * 2
    pair.model_sessions = pair.model_sessions[:1] * 2
    chunked = pair.run({"env": x if pair.graph_normalises else spec.normalise(x)}, micro_batch=7)
    for key in ("probabilities", "richness", "topk"):
        np.testing.assert_array_equal(chunked[key], out[key])


def test_snapping_extent_in_another_crs(tmp_path, climate):
    """An extent in EPSG:4326, grid in 3035: origin on multiples of the cell size."""
    model = make_model(
        tmp_path / "m.onnx", [POINT_INPUT], W, B, grid={"crs": "EPSG:3035", "cell_size_m": 500}
    )
    extent_4326 = (3.62, 43.55, 3.70, 43.60)
    out = str(tmp_path / "r.tif")
    engine.predict(model, climate, extent=extent_4326, extent_crs="EPSG:4326", output_richness=out)
    bx = rasterio.warp.transform_bounds("EPSG:4326", "EPSG:3035", *extent_4326, densify_pts=21)
    left, top, width, height = snapped(bx, 500)
    with rasterio.open(out) as src:
        assert src.transform == from_origin(left, top, 500, 500)
        assert (src.width, src.height) == (width, height)
        assert src.transform.c % 500 == 0 and src.transform.f % 500 == 0
        got = src.read(1).ravel()
    probs, valid, _ = expected_point_probs(climate, bx, 500, "sigmoid")
    expected = np.where(valid, probs.sum(axis=1), -9999.0)
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_fill_replaces_nodata(tmp_path, climate):
    spec = dict(POINT_INPUT, fill=3.0)
    model = make_model(tmp_path / "m.onnx", [spec], W, B)
    out = str(tmp_path / "p.tif")
    engine.predict(model, climate, extent=EXTENT, cell_size=1000, output_probabilities=out)
    probs, valid, (_, _, width, height) = expected_point_probs(climate, EXTENT, 1000, "sigmoid", fill=3.0)
    assert valid.all()
    check_outputs({"probabilities": out}, probs, valid, width, height, top_k=0)


def test_area_mask_and_species_subset(tmp_path, climate):
    """Cells whose centre is outside the triangle are nodata; SPECIES selects the probability
    bands only (in the order given): richness and top-K cover all five species."""
    model = make_model(tmp_path / "m.onnx", [POINT_INPUT], W, B)
    left, top, width, height = snapped(EXTENT, 1000)
    # triangle in the grid CRS: below the diagonal from (left, top) to (right, bottom), offset
    x0, y0 = left - 300.0, top + 200.0
    x1, y1 = left + width * 1000 + 400.0, top - height * 1000 - 100.0
    triangle = {"type": "Polygon", "coordinates": [[(x0, y0), (x1, y1), (x0, y1), (x0, y0)]]}
    out = tmp_path / "out"
    out.mkdir()
    paths = {"richness": str(out / "r.tif"), "topk": str(out / "t.tif"), "probabilities": str(out / "p.tif")}
    engine.predict(
        model,
        climate,
        extent=EXTENT,
        area=[triangle],
        area_crs="EPSG:3035",
        cell_size=1000,
        top_k=2,
        species="42, Species 10",
        output_richness=paths["richness"],
        output_topk=paths["topk"],
        output_probabilities=paths["probabilities"],
        block_cells=11,
    )
    probs, valid, _ = expected_point_probs(climate, EXTENT, 1000, "sigmoid")
    xs, ys = centres(left, top, width, height, 1000)
    # below the line through (x0, y0) and (x1, y1)
    inside = (ys - y0) * (x1 - x0) < (y1 - y0) * (xs - x0)
    assert 0 < inside.sum() < len(inside)
    check_outputs(paths, probs, valid & inside, width, height, top_k=2, columns=[3, 0])
    # not vacuous: the sum over the two selected species differs, and the top-2 names a species
    # outside SPECIES (3) in some cells
    ok = valid & inside
    richness = read(paths["richness"])[0][0].ravel()[ok]
    assert np.abs(richness - probs[ok][:, [3, 0]].sum(axis=1)).min() > 0.1
    top = read(paths["topk"])[0].reshape(2, -1)[:, ok]
    assert (top == 3).any()
    assert read(paths["probabilities"])[2] == ("Species 42 (42)", "Species 10 (10)")
    table = (out / "t_species.csv").read_text().splitlines()
    assert table == ["id,name"] + [f"{i},Species {i}" for i in SPECIES_IDS]


def test_area_in_another_crs_as_wkb_gives_the_extent(tmp_path, climate):
    from osgeo import ogr

    model = make_model(tmp_path / "m.onnx", [POINT_INPUT], W, B)
    ring = "POLYGON((3.62 43.55, 3.70 43.55, 3.70 43.60, 3.62 43.60, 3.62 43.55))"
    wkb = bytes(ogr.CreateGeometryFromWkt(ring).ExportToWkb())
    out = str(tmp_path / "r.tif")
    result = engine.predict(
        model, climate, area=[wkb], area_crs="EPSG:4326", cell_size=500, output_richness=out
    )
    # the grid covers the polygon's bounds transformed (as an extent) to the grid CRS
    bx = rasterio.warp.transform_bounds("EPSG:4326", "EPSG:3035", 3.62, 43.55, 3.70, 43.60, densify_pts=21)
    left, top, width, height = snapped(bx, 500)
    assert result.cells == width * height
    xs, ys = centres(left, top, width, height, 500)
    lon, lat = warp_transform("EPSG:3035", "EPSG:4326", list(xs), list(ys))
    lon, lat = np.asarray(lon), np.asarray(lat)
    inside = (lon > 3.62) & (lon < 3.70) & (lat > 43.55) & (lat < 43.60)
    probs, valid, _ = expected_point_probs(climate, bx, 500, "sigmoid")
    got = rasterio.open(out).read(1).ravel()
    ok = valid & inside
    assert 0 < ok.sum() < len(ok)
    np.testing.assert_allclose(got, np.where(ok, probs.sum(axis=1), -9999.0), rtol=1e-5)


def test_softmax_probabilities_topk_and_threshold_richness(tmp_path, climate):
    model = make_model(tmp_path / "m.onnx", [POINT_INPUT], W, B, "softmax")
    paths = {k: str(tmp_path / f"{k}.tif") for k in ("richness", "topk", "probabilities")}
    with pytest.raises(InputDataError, match="softmax.*THRESHOLD"):
        engine.predict(model, climate, extent=EXTENT, cell_size=1000, output_richness=paths["richness"])
    assert not any(f.endswith(".tif") for f in os.listdir(tmp_path))
    engine.predict(
        model,
        climate,
        extent=EXTENT,
        cell_size=1000,
        top_k=5,
        threshold=0.2,
        output_richness=paths["richness"],
        output_topk=paths["topk"],
        output_probabilities=paths["probabilities"],
    )
    probs, valid, (_, _, width, height) = expected_point_probs(climate, EXTENT, 1000, "softmax")
    check_outputs(paths, probs, valid, width, height, top_k=5, threshold=0.2)
    assert set(np.unique(read(paths["richness"])[0])) - {-9999.0} <= {0.0, 1.0, 2.0, 3.0, 4.0}


def test_topk_ties_follow_column_order(tmp_path, climate):
    """Species with identical weights tie everywhere: the one listed first in the card wins."""
    w = np.array([[0.5, 0.2, 0.5, 0.2, 0.5], [0.0, 0.0, 0.0, 0.0, 0.0]], np.float32)
    b = np.array([0.0, 1.0, 0.0, 1.0, 0.0], np.float32)
    model = make_model(tmp_path / "m.onnx", [POINT_INPUT], w, b, species_ids=[9, 8, 7, 6, 5])
    out = str(tmp_path / "t.tif")
    engine.predict(model, climate, extent=EXTENT, cell_size=1000, top_k=5, output_topk=out)
    data = read(out)[0].reshape(5, -1).T
    rows = data[data[:, 0] != -1]
    assert len(rows)
    for row in rows:  # two tie groups {9, 7, 5} and {8, 6}: each in card order
        assert [s for s in row if s in (9, 7, 5)] == [9, 7, 5]
        assert [s for s in row if s in (8, 6)] == [8, 6]
    probs, valid, (_, _, width, height) = expected_point_probs(climate, EXTENT, 1000, "sigmoid", w=w, b=b)
    check_outputs({"topk": out}, probs, valid, width, height, top_k=5, ids=[9, 8, 7, 6, 5])


def test_cube_input_from_band_descriptions(tmp_path):
    """A [2, 3] cube whose six variables are bands of one raster, found by description."""
    names = [f"q{i}m{j}" for i in range(2) for j in range(3)]
    rng = np.random.default_rng(3)
    data = rng.integers(0, 50, size=(6, 30, 30)).astype(np.float32)
    data[2, 10:12, 10:14] = np.nan  # NaN nodata
    raster = write_raster(
        tmp_path / "cube.tif",
        data,
        "EPSG:3035",
        from_origin(4_000_000.0, 3_000_000.0, 100.0, 100.0),
        nodata=float("nan"),
        descriptions=names,
    )
    spec = {"name": "cube", "kind": "cube", "shape": [2, 3], "variables": names, "mean": [5.0, 10.0]}
    w = rng.normal(size=(6, 5)).astype(np.float32) * 0.1
    model = make_model(tmp_path / "m.onnx", [spec], w, np.zeros(5))
    extent = (4_000_150.0, 2_997_150.0, 4_002_250.0, 2_999_850.0)
    out = str(tmp_path / "p.tif")
    engine.predict(model, [raster], extent=extent, cell_size=200, output_probabilities=out, block_cells=13)
    left, top, width, height = snapped(extent, 200)
    xs, ys = centres(left, top, width, height, 200)
    x = np.stack([lookup(raster, xs, ys, "EPSG:3035", band=b) for b in range(1, 7)], axis=1)
    x = x.reshape(-1, 2, 3) - np.array([5.0, 10.0])[None, :, None]  # mean per first cube axis
    valid = ~np.isnan(x).reshape(len(x), -1).any(axis=1)
    assert 0 < valid.sum() < len(valid)
    probs = activate(x.reshape(len(x), 6) @ w.astype(np.float64), "sigmoid")
    check_outputs({"probabilities": out}, probs, valid, width, height, top_k=0)


@pytest.mark.parametrize("opset", [12, 17])
def test_patch_input_from_utm_raster(tmp_path, opset):
    """4 x 4 patches of 10 m pixels cut from a two-band UTM raster, grid in the same UTM zone;
    normalised on the fine grid, cut by the inference threads, through the fused graph
    (opset 17) or the model's own session followed by the post-processing (opset 12)."""
    rng = np.random.default_rng(5)
    red = rng.integers(0, 3000, size=(120, 150)).astype(np.uint16)
    nir = rng.integers(0, 3000, size=(120, 150)).astype(np.uint16)
    red[40:44, 60:62] = 0  # nodata
    origin = (574_000.0, 4_830_000.0)
    t = from_origin(*origin, 10.0, 10.0)
    paths = [
        write_raster(tmp_path / "red.tif", red, "EPSG:32631", t, nodata=0),
        write_raster(tmp_path / "nir.tif", nir, "EPSG:32631", t, nodata=0),
    ]
    spec = {
        "name": "s2",
        "kind": "patch",
        "bands": ["red", "nir"],
        "size": 4,
        "pixel_size_m": 10,
        "scale": 0.0001,
        "mean": [0.1, 0.2],
    }
    w = rng.normal(size=(32, 5)).astype(np.float32)
    model = make_model(tmp_path / "m.onnx", [spec], w, np.zeros(5), opset=opset)
    assert engine.LoadedModel(model).pipeline(None, richness=True).fused == (opset >= 13)
    extent = (574_110.0, 4_829_010.0, 575_290.0, 4_829_890.0)
    out = {k: str(tmp_path / f"{k}_out.tif") for k in ("richness", "probabilities")}
    engine.predict(
        model,
        paths,
        extent=extent,
        crs="EPSG:32631",
        cell_size=100,
        output_richness=out["richness"],
        output_probabilities=out["probabilities"],
        block_cells=17,
    )
    left, top, width, height = snapped(extent, 100)
    arrays = np.stack([red, nir]).astype(np.float64)
    arrays[arrays == 0] = np.nan
    feats, valid = [], []
    for y in top - (np.arange(height) + 0.5) * 100:
        for x in left + (np.arange(width) + 0.5) * 100:
            c0 = int(round((x - 20 - origin[0]) / 10))  # patch's west edge is 2 pixels west of the centre
            r0 = int(round((origin[1] - (y + 20)) / 10))
            patch = arrays[:, r0 : r0 + 4, c0 : c0 + 4]
            valid.append(not np.isnan(patch).any())
            patch = patch * 0.0001 - np.array([0.1, 0.2])[:, None, None]
            feats.append(patch.ravel())
    valid = np.array(valid)
    assert 0 < valid.sum() < len(valid)
    probs = activate(np.array(feats) @ w.astype(np.float64), "sigmoid")
    check_outputs(out, probs, valid, width, height, top_k=0)


def test_predict_points(tmp_path, climate):
    model = make_model(tmp_path / "m.onnx", [POINT_INPUT], W, B)
    lon = np.array([3.61, 3.70, 3.68, 3.72, 10.0])
    lat = np.array([43.56, 43.575, 43.61, 43.60, 50.0])
    got = engine.predict_points(model, climate, lon, lat, "EPSG:4326")
    x = np.stack([lookup(p, lon, lat, "EPSG:4326") for p in climate], axis=1)
    expected = activate(point_logits(x), "sigmoid")
    assert got.dtype == np.float32 and got.shape == (5, 5)
    assert np.isnan(got[-1]).all() and np.isfinite(got[:-1]).all()
    np.testing.assert_allclose(got[:-1], expected[:-1], rtol=1e-5)


def test_postprocess_graph_matches_onnx_helper():
    """The post-processing model is valid ONNX, its graph the onnx.helper construction written out."""
    data = postprocess_graph(
        6,
        "sigmoid",
        columns=[5, 0, 2],
        species_ids=[50, 0, 20, 30, 40, 10],
        top_k=2,
        richness=True,
        threshold=0.5,
        probabilities=True,
    )
    model = onnx.load_from_string(data)
    onnx.checker.check_model(model, full_check=True)
    nodes = [
        helper.make_node("Sigmoid", ["raw"], ["p"], name="activation"),
        helper.make_node("Gather", ["p", "columns"], ["probabilities"], name="probabilities", axis=1),
        helper.make_node("GreaterOrEqual", ["p", "threshold"], ["present"], name="present"),
        helper.make_node("Cast", ["present"], ["present_f"], name="present_f", to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["present_f", "sum_axes"], ["richness"], name="richness", keepdims=0),
        helper.make_node(
            "TopK", ["p", "k"], ["top_values", "top_columns"], name="topk", axis=-1, largest=1, sorted=1
        ),
        helper.make_node("Gather", ["ids", "top_columns"], ["topk"], name="topk_ids", axis=0),
    ]
    inits = [
        numpy_helper.from_array(np.array([5, 0, 2], np.int64), "columns"),
        numpy_helper.from_array(np.array([1], np.int64), "sum_axes"),
        numpy_helper.from_array(np.array(0.5, np.float32), "threshold"),
        numpy_helper.from_array(np.array([2], np.int64), "k"),
        numpy_helper.from_array(np.array([50, 0, 20, 30, 40, 10], np.int32), "ids"),
    ]
    graph = helper.make_graph(
        nodes,
        "geoplant_postprocess",
        [helper.make_tensor_value_info("raw", TensorProto.FLOAT, ["N", 6])],
        [
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 3]),
            helper.make_tensor_value_info("richness", TensorProto.FLOAT, ["N"]),
            helper.make_tensor_value_info("topk", TensorProto.INT32, ["N", 2]),
        ],
        inits,
    )
    assert model.graph == graph
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 13)]


# --- bad input -------------------------------------------------------------------------


def test_model_without_card(tmp_path, climate):
    model = make_model(tmp_path / "m.onnx", [POINT_INPUT], W, B)
    proto = onnx.load(model)
    del proto.metadata_props[:]
    onnx.save(proto, model)
    with pytest.raises(ModelCardError, match="has no 'geoplant' card"):
        engine.predict(model, climate, extent=EXTENT, output_richness=str(tmp_path / "r.tif"))
    assert not (tmp_path / "r.tif").exists()


def test_card_not_matching_graph(tmp_path, climate):
    model = make_model(tmp_path / "m.onnx", [POINT_INPUT], W, B, species_ids=[1, 2, 3, 4, 5])
    proto = onnx.load(model)
    embed_model_card(
        proto,
        {
            "format": "geoplant-onnx/1",
            "species": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
            "output": {"name": "logits", "activation": "sigmoid"},
            "inputs": [POINT_INPUT],
        },
    )
    onnx.save(proto, model)
    with pytest.raises(ModelCardError, match="does not match its graph.*5 columns.*2 species"):
        engine.predict(model, climate, extent=EXTENT, output_richness=str(tmp_path / "r.tif"))


def test_missing_variables_listed(tmp_path, climate):
    spec = dict(POINT_INPUT, variables=["bio1", "bio12", "slope"], mean=[0], std=[1])
    model = make_model(tmp_path / "m.onnx", [spec], np.zeros((3, 5)), np.zeros(5))
    with pytest.raises(InputDataError, match=r"2 variable\(s\) not found.*bio12, slope.*bio1\.tif"):
        engine.predict(model, climate, extent=EXTENT, output_richness=str(tmp_path / "r.tif"))
    assert not (tmp_path / "r.tif").exists()


def test_extent_outside_rasters(tmp_path, climate):
    model = make_model(tmp_path / "m.onnx", [POINT_INPUT], W, B)
    far = (4_500_000.0, 3_000_000.0, 4_510_000.0, 3_010_000.0)
    with pytest.raises(InputDataError, match="does not overlap the raster of variable 'bio1' \\(bio1.tif\\)"):
        engine.predict(model, climate, extent=far, cell_size=1000, output_richness=str(tmp_path / "r.tif"))
    assert sorted(os.listdir(tmp_path)) == ["m.onnx", "src"]


def test_geographic_grid_crs_refused(tmp_path, climate):
    model = make_model(tmp_path / "m.onnx", [POINT_INPUT], W, B)
    with pytest.raises(InputDataError, match="not projected"):
        engine.predict(
            model,
            climate,
            extent=(3.6, 43.5, 3.7, 43.6),
            crs="EPSG:4326",
            output_richness=str(tmp_path / "r.tif"),
        )


def predict_into(model, climate, out, extent=EXTENT, cell_size=1000, **kwargs):
    """Richness and top-K into ``out``/r.tif and ``out``/t.tif."""
    return engine.predict(
        model,
        climate,
        extent=extent,
        cell_size=cell_size,
        output_richness=str(out / "r.tif"),
        output_topk=str(out / "t.tif"),
        **kwargs,
    )


def test_zero_valid_cells(tmp_path, climate):
    """The extent lies entirely in the bio1 nodata hole: clear error, nothing written."""
    model = make_model(tmp_path / "m.onnx", [POINT_INPUT], W, B)
    (x,), (y,) = warp_transform("EPSG:4326", "EPSG:3035", [3.5003 + 0.01 * 15], [43.9007 - 0.01 * 32])
    extent = (x - 120, y - 120, x + 120, y + 120)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(InputDataError, match="No cell of the grid has data"):
        predict_into(model, climate, out, extent=extent, cell_size=100)
    assert os.listdir(out) == []


class CancelAfter(Progress):
    def __init__(self, blocks):
        self.blocks, self.calls = blocks, 0

    def set_progress(self, percent):
        self.calls += 1

    def is_cancelled(self):
        return self.calls >= self.blocks


def test_cancel_mid_run_leaves_nothing(tmp_path, climate, monkeypatch):
    model = make_model(tmp_path / "m.onnx", [POINT_INPUT], W, B)
    out = tmp_path / "out"
    out.mkdir()
    (out / "t.tif").write_bytes(b"previous")  # an older output under the same name stays as it was
    progress = CancelAfter(3)
    pipelines, threads = [], []  # kept alive here: only close() may stop their threads
    real_submit = engine.Pipeline.submit

    def submit(self, *args, **kwargs):
        pending = real_submit(self, *args, **kwargs)
        pipelines.append(self)
        threads.extend(self.worker_threads())
        return pending

    monkeypatch.setattr(engine.Pipeline, "submit", submit)
    with pytest.raises(CancelledError):
        predict_into(model, climate, out, block_cells=5, progress=progress)
    assert progress.calls == 3
    assert sorted(os.listdir(out)) == ["t.tif"] and (out / "t.tif").read_bytes() == b"previous"
    # the onnxruntime worker pool is shut down with the run
    assert pipelines and threads and not any(t.is_alive() for t in threads)


def test_a_late_rename_failure_publishes_nothing(tmp_path, climate, monkeypatch):
    """Richness moved into place, then the top-K rename fails: the richness is taken back
    and the previous files under both names are restored."""
    from geoplant_qgis.core import files

    model = make_model(tmp_path / "m.onnx", [POINT_INPUT], W, B)
    out = tmp_path / "out"
    out.mkdir()
    (out / "r.tif").write_bytes(b"old richness")
    (out / "t.tif").write_bytes(b"old top-k")
    real_replace = os.replace
    failed = []

    def replace(src, dst):  # the new top-K raster's move onto t.tif (the first one) fails
        if os.path.basename(dst) == "t.tif" and not failed:
            failed.append(src)
            raise PermissionError(13, "Permission denied", src, None, dst)
        return real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", replace)
    with pytest.raises(OutputError, match=r"Cannot put .*t\.tif in place: Permission denied"):
        predict_into(model, climate, out)
    assert sorted(os.listdir(out)) == ["r.tif", "t.tif"]
    assert (out / "r.tif").read_bytes() == b"old richness" and (out / "t.tif").read_bytes() == b"old top-k"


def test_disk_space_refused_up_front(tmp_path, climate, monkeypatch):
    from geoplant_qgis.core import geotiff

    class Usage:
        free = 1000

    monkeypatch.setattr(geotiff.shutil, "disk_usage", lambda folder: Usage())
    model = make_model(tmp_path / "m.onnx", [POINT_INPUT], W, B)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(OutputError, match=r"Not enough disk space.*need up to .*KB.*1000 bytes are free"):
        engine.predict(model, climate, extent=EXTENT, cell_size=1000, output_topk=str(out / "t.tif"))
    assert os.listdir(out) == []


def test_output_name_of_a_folder_refused_up_front(tmp_path, climate):
    model = make_model(tmp_path / "m.onnx", [POINT_INPUT], W, B)
    out = tmp_path / "out"
    out.mkdir()
    (out / "t.tif").mkdir()
    with pytest.raises(OutputError, match=r"t\.tif is a folder"):
        predict_into(model, climate, out)
    assert os.listdir(out) == ["t.tif"] and os.listdir(out / "t.tif") == []


def test_band_limit_refused_up_front(tmp_path, climate):
    n = 65_536
    ids = list(range(n))
    model = make_model(tmp_path / "m.onnx", [POINT_INPUT], np.zeros((2, n)), np.zeros(n), species_ids=ids)
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(OutputError, match="65,536 bands, more than the 65,535"):
        engine.predict(model, climate, extent=EXTENT, cell_size=1000, output_probabilities=str(out / "p.tif"))
    assert os.listdir(out) == []


def test_parameter_refusals(tmp_path, climate):
    model = make_model(tmp_path / "m.onnx", [POINT_INPUT], W, B)
    r = str(tmp_path / "r.tif")
    with pytest.raises(OutputError, match="No output requested"):
        engine.predict(model, climate, extent=EXTENT)
    with pytest.raises(InputDataError, match="EXTENT or an AREA"):
        engine.predict(model, climate, output_richness=r)
    with pytest.raises(InputDataError, match="TOP_K is 0"):
        engine.predict(model, climate, extent=EXTENT, top_k=0, output_topk=r)
    with pytest.raises(
        InputDataError, match=r"THRESHOLD must be a number above 0 and at most 1 \(a probability"
    ):
        engine.predict(model, climate, extent=EXTENT, threshold=1.5, output_richness=r)
    with pytest.raises(ModelCardError, match="Unknown species: 999"):
        engine.predict(model, climate, extent=EXTENT, species="10,999", output_richness=r)
    with pytest.raises(OutputError, match="same file name"):
        engine.predict(model, climate, extent=EXTENT, output_richness=r, output_topk=r)


def test_fused_graph_is_valid_onnx(tmp_path):
    """The model with normalisation prepended and post-processing appended passes onnx.checker."""
    from geoplant_qgis.core.postprocess import append_postprocess, prepend_normalisation

    model = make_model(tmp_path / "m.onnx", [POINT_INPUT], W, B)
    loaded = engine.LoadedModel(model)
    steps = [("env", *loaded.card.inputs[0].affine())]
    data = prepend_normalisation(loaded.data, steps)
    data = append_postprocess(data, "logits", 5, "sigmoid", species_ids=SPECIES_IDS, top_k=2, richness=True)
    proto = onnx.load_from_string(data)
    onnx.checker.check_model(proto, full_check=True)
    assert [i.name for i in proto.graph.input] == ["geoplant_pre/env"]
    assert [o.name for o in proto.graph.output] == ["geoplant_post/richness", "geoplant_post/topk"]
    mul, add = steps[0][1:]
    np.testing.assert_allclose(mul, [1.0, 0.08])  # scale / std
    np.testing.assert_allclose(add, [-0.5, -1.6])  # -mean / std
    assert proto.metadata_props[0].key == "geoplant"  # the card survives


# --- extents reaching far outside the sources ------------------------------------------


class Recorder(Progress):
    def __init__(self):
        self.warnings = []

    def warning(self, message):
        self.warnings.append(message)


@pytest.mark.parametrize("block_cells", [200, 4000])
def test_big_extent_outside_sources_skips_blocks(tmp_path, climate, monkeypatch, block_cells):
    """200 km x 200 km around sources of ~15-60 km: the cells outside are nodata without
    being sampled, the cells inside have the same values as a run over the sources alone."""
    from geoplant_qgis.core import sampling

    calls = []
    original = sampling.PointSampler.sample

    def counting(self, xs, ys):
        calls.append(len(xs))
        return original(self, xs, ys)

    monkeypatch.setattr(sampling.PointSampler, "sample", counting)
    model = make_model(tmp_path / "m.onnx", [POINT_INPUT], W, B)
    extent = (3_700_000.0, 2_200_000.0, 3_900_000.0, 2_400_000.0)
    paths = {"richness": str(tmp_path / "r.tif"), "topk": str(tmp_path / "t.tif")}
    progress = Recorder()
    result = engine.predict(
        model,
        climate,
        extent=extent,
        cell_size=1000,
        top_k=3,
        output_richness=paths["richness"],
        output_topk=paths["topk"],
        block_cells=block_cells,
        progress=progress,
    )
    probs, valid, (_, _, width, height) = expected_point_probs(climate, extent, 1000, "sigmoid")
    assert (width, height) == (200, 200) and 0 < valid.sum() < 400
    assert result.valid_cells == valid.sum()
    check_outputs(paths, probs, valid, width, height, top_k=3)
    # the elevation raster covers rows 95-114 of the grid: only blocks near them are sampled
    # (two samplers per sampled block), and only cells of tiles near the sources
    near = [b for b in _tiles(height, width, block_cells) if b[0] <= 116 and b[0] + b[2] >= 93]
    sampled_blocks = len(calls) // 2
    assert sampled_blocks <= len(near)
    assert sum(calls) // 2 < 0.1 * width * height
    share = 1 - valid.sum() / valid.size
    assert len(progress.warnings) == 1
    text = "Almost all (over 99.5%)" if share > 0.995 else f"About {100 * share:.0f}%"
    assert f"{text} of the grid's 40,000 cells lie outside the input rasters" in progress.warnings[0]


def test_reach_keeps_every_cell_a_source_reaches(tmp_path, climate):
    """reach() never drops a cell that has a value (any tile size), and drops far ones."""
    model = make_model(tmp_path / "m.onnx", [POINT_INPUT], W, B)
    loaded = engine.LoadedModel(model)
    inputs = Inputs(loaded.card, climate, None, "EPSG:3035")
    try:
        from geoplant_qgis.core.grid import make_grid

        extent = (3_700_000.0, 2_200_000.0, 3_900_000.0, 2_400_000.0)
        grid = make_grid(extent, "EPSG:3035", crs="EPSG:3035", cell_size=500)
        _, valid, _ = expected_point_probs(climate, extent, 500, "sigmoid")
        # cells with a value in both rasters, nodata hole included as "has a source"
        xs, ys = grid.cell_centres(0, grid.height, 0, grid.width)
        xs, ys = np.asarray(xs).ravel(), np.asarray(ys).ravel()
        covered = ~np.isnan(lookup(climate[1], xs, ys, "EPSG:3035"))
        bx, by = warp_transform("EPSG:3035", "EPSG:4326", list(xs), list(ys))
        covered &= (np.asarray(bx) > 3.5003) & (np.asarray(bx) < 4.2003)
        covered &= (np.asarray(by) > 43.3007) & (np.asarray(by) < 43.9007)
        assert valid.sum() > 0 and not (valid & ~covered).any()
        for tile in (1, 7, 32, 64):
            keep = inputs.reach(grid, 0, 0, grid.height, grid.width, tile=tile)
            assert keep is not None and keep[covered].all()
            assert keep.sum() < 0.2 * keep.size
        keep = inputs.reach(grid, 0, 0, 1, grid.width)  # the first row is far from both rasters
        assert keep is not None and not keep.any()
        assert abs(inputs.share_outside(grid) - (1 - covered.mean())) < 0.01
        # a grid inside both rasters: nothing to cut, no per-block work
        inner = make_grid((3_805_000.0, 2_290_000.0, 3_812_000.0, 2_300_000.0), "EPSG:3035", cell_size=500)
        assert inputs.grid_inside(inner) and inputs.reach(inner, 0, 0, 2, inner.width, tile=1) is None
        # ... but one reaching past the elevation raster's east edge (3,815,030) is cut
        edge = make_grid((3_805_000.0, 2_290_000.0, 3_816_000.0, 2_300_000.0), "EPSG:3035", cell_size=500)
        assert not inputs.grid_inside(edge)
        keep = inputs.reach(edge, 0, 0, edge.height, edge.width, tile=1).reshape(edge.shape)
        assert keep[:, :20].all() and not keep[:, 21:].any()
    finally:
        inputs.close()


@pytest.mark.parametrize(
    "height, width, cells, strip",
    [(300, 300, 676, 256), (7, 1000, 5000, 256), (100, 3, 5000, 64), (5, 5, 1, 16)],
)
def test_blocks_are_near_square_tiles_covering_the_grid_once(height, width, cells, strip):
    covered = np.zeros((height, width), dtype=int)
    blocks = _tiles(height, width, cells, strip)
    for row, col, rows, cols in blocks:
        covered[row : row + rows, col : col + cols] += 1
        assert rows * cols <= max(cells, 1)
    assert (covered == 1).all()
    # a row of tiles never straddles two of the writer's strips (blocks arrive in strip order)
    assert all(row // strip == (row + rows - 1) // strip for row, _, rows, _ in blocks)
    assert [b[0] for b in blocks] == sorted(b[0] for b in blocks)
    first = blocks[0]
    if first[2] < height and first[3] < width:  # tiles, not full-width bands: near-square
        assert 0.25 <= first[2] / first[3] <= 4


@pytest.mark.timeout(30)
def test_write_error_mid_run_is_raised_not_hung(tmp_path, climate, monkeypatch):
    """A writer failing (disk full) while the prefetch thread is busy: the run must end with
    the writer's error, not wait forever for a block the stopped prefetch never delivers."""
    import threading

    from geoplant_qgis.core import geotiff

    model = make_model(tmp_path / "m.onnx", [POINT_INPUT], W, B)
    out = tmp_path / "out"
    out.mkdir()
    real_write, real_prepare = geotiff.GeoTiffWriter.write, Inputs.prepare
    calls = []

    def failing_write(self, array, row_off, col_off=0):
        if row_off > 0 or col_off > 0:  # the first block goes through
            raise OutputError("The disk is full.")
        return real_write(self, array, row_off, col_off)

    def slow_prepare(self, xs, ys):
        calls.append(1)
        if len(calls) > 1:  # a slow prefetch: the inference waits on an empty queue
            threading.Event().wait(0.2)
        return real_prepare(self, xs, ys)

    monkeypatch.setattr(geotiff.GeoTiffWriter, "write", failing_write)
    monkeypatch.setattr(Inputs, "prepare", slow_prepare)
    with pytest.raises(OutputError, match="The disk is full"):
        engine.predict(
            model,
            climate,
            extent=EXTENT,
            cell_size=1000,
            output_richness=str(out / "r.tif"),
            block_cells=5,
        )
    assert os.listdir(out) == []


def test_write_error_mid_run_keeps_the_existing_output(tmp_path, climate, monkeypatch):
    """The writer failing after the first block: the user's file under the output name is
    left byte for byte as it was (checksum before/after), and no temporary stays."""
    import hashlib

    from geoplant_qgis.core import geotiff

    model = make_model(tmp_path / "m.onnx", [POINT_INPUT], W, B)
    out = tmp_path / "out"
    out.mkdir()
    existing = out / "r.tif"
    existing.write_bytes(b"the user's previous richness raster")
    before = hashlib.sha256(existing.read_bytes()).hexdigest()
    real_write = geotiff.GeoTiffWriter.write

    def failing_write(self, array, row_off, col_off=0):
        if row_off > 0 or col_off > 0:  # the first block goes through
            raise OutputError("The disk is full.")
        return real_write(self, array, row_off, col_off)

    monkeypatch.setattr(geotiff.GeoTiffWriter, "write", failing_write)
    with pytest.raises(OutputError, match="The disk is full"):
        engine.predict(
            model, climate, extent=EXTENT, cell_size=1000, output_richness=str(existing), block_cells=5
        )
    assert os.listdir(out) == ["r.tif"]
    assert hashlib.sha256(existing.read_bytes()).hexdigest() == before


def test_mapping_names_the_model_does_not_use_are_reported(tmp_path, climate):
    """A MAPPING typo ('bio_l' for 'bio1') does not pass silently; the used entries still apply."""
    model = make_model(tmp_path / "m.onnx", [POINT_INPUT], W, B)
    bio1, elev = climate
    progress = Recorder()
    out = tmp_path / "r.tif"
    engine.predict(
        model,
        [elev],
        mapping=f"bio1={bio1};bio_l={bio1}#1",
        extent=EXTENT,
        output_richness=str(out),
        progress=progress,
    )
    assert (
        len(progress.warnings) == 1
        and "MAPPING names bio_l, which the model does not use" in progress.warnings[0]
    )
    reference = tmp_path / "reference.tif"
    engine.predict(model, climate, extent=EXTENT, output_richness=str(reference))
    with rasterio.open(out) as got, rasterio.open(reference) as want:
        np.testing.assert_array_equal(got.read(), want.read())
