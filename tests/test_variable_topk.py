"""Variable top-K per cell (issue #13): predict's TOPK_MODE "richness" and TOPK_MARGIN,
evaluate's F1 with K from the expected richness, and the point API's richness / top-K.

Expected values are numpy computations from the rasters predict wrote (the probability
raster) or from hand-made tables, never the engine's code: ids sorted by decreasing
probability (ties in card order), K = round(sum p) + margin (or the count p >= THRESHOLD)
kept from 1 to TOP_K, -1 after it.
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from make_world import write_tif
from rasterio.transform import from_origin
from tiny_models import save_linear_point_model

from geoplant_qgis.core import engine
from geoplant_qgis.core import evaluate as ev
from geoplant_qgis.core.errors import InputDataError
from geoplant_qgis.core.predict import Extent, PredictRequest

pytestmark = pytest.mark.core

LEFT, TOP, SIZE, N = 4_000_000.0, 3_000_000.0, 100.0, 12
EXTENT = (LEFT, TOP - N * SIZE, LEFT + N * SIZE, TOP)
N_SPECIES = 12
IDS = [500 + 7 * i for i in range(N_SPECIES)]


@pytest.fixture
def world(tmp_path):
    """Bio1, Bio12 (one pixel per cell, EPSG:3035) and a linear sigmoid model of 12 species."""
    rng = np.random.default_rng(13)
    transform = from_origin(LEFT, TOP, SIZE, SIZE)
    rasters = []
    for name in ("Bio1", "Bio12"):
        array = (rng.random((N, N)) * 4 - 2).astype(np.float32)
        rasters.append(
            write_tif(tmp_path / "in" / f"{name}.tif", array, transform, "EPSG:3035", compress=None)
        )
    weights = rng.normal(0, 1.5, (2, N_SPECIES))
    bias = rng.normal(-0.7, 1.0, N_SPECIES)
    model = save_linear_point_model(
        tmp_path / "m.onnx",
        weights=weights,
        bias=bias,
        species=[{"id": sid, "name": f"Species {sid}"} for sid in IDS],
    )
    return model, rasters


def _predict(model, rasters, folder, **kwargs):
    out = {k: str(folder / f"{k}.tif") for k in ("richness", "topk", "probabilities")}
    outputs = {k: out[k] for k in kwargs.pop("kinds", ("topk", "probabilities"))}
    request = PredictRequest.build(
        model, rasters, extent=Extent(*EXTENT, "EPSG:3035"), crs="EPSG:3035", cell_size=SIZE,
        outputs=outputs, block_cells=50, **kwargs,
    )  # fmt: skip
    from geoplant_qgis.core.predict import run

    run(request)
    return out


def _read(path):
    with rasterio.open(path) as src:
        return src.read(), src.nodata, [src.descriptions[i] for i in range(src.count)]


def _expected_topk(probs, k_cells, top_k):
    """[cells, top_k] ids by decreasing p (ties: card order), -1 after each cell's K."""
    order = np.argsort(-probs, axis=1, kind="stable")[:, :top_k]
    ids = np.asarray(IDS)[order]
    ids[np.arange(top_k)[None, :] >= k_cells[:, None]] = -1
    return ids


@pytest.mark.parametrize("margin", [0, 2, -1])
def test_richness_topk_raster_equals_numpy(tmp_path, world, margin):
    model, rasters = world
    top_k = 8
    out = _predict(model, rasters, tmp_path / "out", top_k=top_k, topk_mode="richness", topk_margin=margin)
    topk, nodata, names = _read(out["topk"])
    probs, _, _ = _read(out["probabilities"])
    probs = probs.reshape(N_SPECIES, -1).T  # [cells, species], float32 as written
    richness = probs.sum(axis=1, dtype=np.float64)
    assert np.abs(richness - np.floor(richness) - 0.5).min() > 1e-3  # no rounding knife edge here
    k_cells = np.clip(np.round(richness) + margin, 1, top_k).astype(int)
    assert k_cells.min() < top_k and len(np.unique(k_cells)) > 2  # K really varies
    expected = _expected_topk(probs, k_cells, top_k)
    np.testing.assert_array_equal(topk.reshape(top_k, -1).T, expected)
    assert nodata == -1
    assert names == [f"rank {i}" for i in range(1, top_k + 1)]  # band names unchanged
    assert not (tmp_path / "out" / "richness.tif").exists()  # computed, not written


def test_richness_topk_with_threshold_follows_the_count(tmp_path, world):
    model, rasters = world
    top_k, threshold = 6, 0.3
    out = _predict(
        model, rasters, tmp_path / "out", kinds=("richness", "topk", "probabilities"), top_k=top_k,
        threshold=threshold, topk_mode="richness", topk_margin=1,
    )  # fmt: skip
    topk, _, _ = _read(out["topk"])
    probs, _, _ = _read(out["probabilities"])
    richness, _, _ = _read(out["richness"])
    probs = probs.reshape(N_SPECIES, -1).T
    count = (probs >= np.float32(threshold)).sum(axis=1)
    np.testing.assert_array_equal(richness.ravel(), count.astype(np.float32))
    k_cells = np.clip(count + 1, 1, top_k)
    np.testing.assert_array_equal(topk.reshape(top_k, -1).T, _expected_topk(probs, k_cells, top_k))


def test_fixed_mode_unchanged(tmp_path, world):
    model, rasters = world
    out = _predict(model, rasters, tmp_path / "out", top_k=5)
    topk, _, _ = _read(out["topk"])
    probs, _, _ = _read(out["probabilities"])
    probs = probs.reshape(N_SPECIES, -1).T
    np.testing.assert_array_equal(topk.reshape(5, -1).T, _expected_topk(probs, np.full(len(probs), 5), 5))


def test_topk_mode_and_margin_refused_in_words(tmp_path, world):
    model, rasters = world
    with pytest.raises(InputDataError, match="TOPK_MODE must be 'fixed'.*'richness'"):
        _predict(model, rasters, tmp_path / "a", top_k=3, topk_mode="estimated")
    with pytest.raises(InputDataError, match="TOPK_MARGIN must be a whole number"):
        _predict(model, rasters, tmp_path / "b", top_k=3, topk_mode="richness", topk_margin=1.5)
    softmax = save_linear_point_model(tmp_path / "s.onnx", activation="softmax")
    with pytest.raises(InputDataError, match="softmax.*THRESHOLD"):
        _predict(softmax, rasters, tmp_path / "c", top_k=2, topk_mode="richness")
    assert not any((tmp_path / d).exists() for d in ("a", "b", "c"))


# --- the point API --------------------------------------------------------------------------


@pytest.mark.parametrize("threshold", [0.25, None])
def test_point_richness_and_topk_equal_predict_rasters(tmp_path, world, threshold):
    model, rasters = world
    top_k = 5
    out = _predict(
        model, rasters, tmp_path / "out", kinds=("richness", "topk", "probabilities"), top_k=top_k,
        threshold=threshold,
    )  # fmt: skip
    richness, _, _ = _read(out["richness"])
    topk, _, _ = _read(out["topk"])
    probs, _, _ = _read(out["probabilities"])
    rows, cols = np.array([0, 3, 7, 11, 5]), np.array([0, 9, 2, 11, 6])
    xs, ys = LEFT + (cols + 0.5) * SIZE, TOP - (rows + 0.5) * SIZE
    point = engine.point_prediction(model, rasters, xs, ys, "EPSG:3035", threshold=threshold, top_k=top_k)
    assert point.richness is not None and point.richness.dtype == np.float32
    if threshold is None:  # a float sum: the same graph, batches of other sizes
        np.testing.assert_allclose(point.richness, richness[0, rows, cols], rtol=1e-6)
    else:  # a count: exactly
        np.testing.assert_array_equal(point.richness, richness[0, rows, cols])
    np.testing.assert_array_equal(point.topk, topk[:, rows, cols].T)
    np.testing.assert_allclose(point.probabilities, probs[:, rows, cols].T, rtol=1e-6)
    # the probabilities-only API is unchanged
    plain = engine.predict_points(model, rasters, xs, ys, "EPSG:3035")
    assert isinstance(plain, np.ndarray) and plain.shape == (5, N_SPECIES)
    np.testing.assert_array_equal(plain, point.probabilities)


def test_point_prediction_nodata_and_richness_mode(tmp_path, world):
    model, rasters = world
    xs = np.array([LEFT + 50.0, LEFT - 5000.0])  # a cell, then outside the rasters
    ys = np.array([TOP - 50.0, TOP - 50.0])
    point = engine.point_prediction(
        model, rasters, xs, ys, "EPSG:3035", top_k=6, topk_mode="richness", topk_margin=1
    )
    assert (
        np.isnan(point.richness[1]) and (point.topk[1] == -1).all() and np.isnan(point.probabilities[1]).all()
    )
    p = point.probabilities[0]
    k = int(np.clip(np.round(p.sum(dtype=np.float64)) + 1, 1, 6))
    expected = np.asarray(IDS)[np.argsort(-p, kind="stable")[:6]]
    expected[k:] = -1
    np.testing.assert_array_equal(point.topk[0], expected)


# --- evaluate ---------------------------------------------------------------------------------


def test_evaluate_richness_driven_f1_equals_numpy():
    rng = np.random.default_rng(5)
    n, s, k, margin = 40, 15, 6, 1
    ids = np.arange(100, 100 + s)
    probs = rng.random((n, s)) ** 3
    true_lists = [list(rng.choice(ids, size=rng.integers(0, 7), replace=False)) for _ in range(n)]
    true_lists[0] = [999]  # a species the model does not know: a miss
    result = ev.evaluate(np.arange(n), true_lists, ids, probs, k=k, topk_margin=margin)

    f1s, recalls, ks = [], [], []
    for row, observed in zip(probs, true_lists, strict=True):
        kk = int(min(max(round(float(row.sum())) + margin, 1), k))
        predicted = {int(ids[j]) for j in sorted(range(s), key=lambda j: (-row[j], j))[:kk]}
        truth = {int(t) for t in observed}
        tp = len(predicted & truth)
        f1s.append(2 * tp / (len(predicted) + len(truth)) if predicted or truth else 1.0)
        recalls.append(tp / len(truth) if truth else np.nan)
        ks.append(kk)
    assert result.f1_richness == pytest.approx(np.mean(f1s), abs=1e-12)
    assert result.recall_richness == pytest.approx(np.nanmean(recalls), abs=1e-12)
    np.testing.assert_array_equal(result.per_survey["richness_k"], ks)
    np.testing.assert_allclose(result.per_survey["f1_richness_k"], f1s)
    summary = result.summary()
    assert summary["f1_at_richness_k"] == result.f1_richness and summary[f"f1_at_{k}"] == result.f1
    assert summary["richness_k_margin"] == margin
    assert result.f1 != result.f1_richness

    table = ev.table_csv(result)
    assert "richness_k,f1_richness_k,recall_richness_k" in table.splitlines()[0]
    report = ev.report_html(result)
    assert "Fixed K vs K from the expected richness" in report
    assert f"{result.f1_richness:.4f}" in report and f"{result.f1:.4f}" in report


def test_evaluate_margin_refused_in_words():
    with pytest.raises(InputDataError, match="TOPK_MARGIN must be a whole number"):
        ev.evaluate([1], [[1]], [1, 2], [[0.5, 0.2]], k=1, topk_margin="two")


# --- Processing -------------------------------------------------------------------------------


def test_processing_predict_and_evaluate(tmp_path, world, geoplant_provider):
    import pandas as pd
    import processing
    from test_evaluate import _pa_csv

    model, rasters = world
    out = {k: str(tmp_path / f"{k}.tif") for k in ("topk", "probabilities")}
    extent = f"{EXTENT[0]},{EXTENT[2]},{EXTENT[1]},{EXTENT[3]} [EPSG:3035]"
    processing.run(
        "geoplant:predict",
        {
            "MODEL": model, "RASTERS": rasters, "EXTENT": extent,
            "CELL_SIZE": SIZE, "TOP_K": 7, "TOPK_MODE": "richness", "TOPK_MARGIN": 2,
            "OUTPUT_TOPK": out["topk"], "OUTPUT_PROBABILITIES": out["probabilities"],
        },
    )  # fmt: skip
    topk, _, _ = _read(out["topk"])
    probs, _, _ = _read(out["probabilities"])
    probs = probs.reshape(N_SPECIES, -1).T
    k_cells = np.clip(np.round(probs.sum(axis=1, dtype=np.float64)) + 2, 1, 7).astype(int)
    np.testing.assert_array_equal(topk.reshape(7, -1).T, _expected_topk(probs, k_cells, 7))

    rng = np.random.default_rng(3)
    cells = rng.choice(N * N, size=20, replace=False)
    rows, cols = cells // N, cells % N
    observed = [list(rng.choice(IDS, size=rng.integers(1, 6), replace=False)) for _ in cells]
    surveys = [
        (i + 1, LEFT + (c + 0.5) * SIZE, TOP - (r + 0.5) * SIZE, obs)
        for i, (r, c, obs) in enumerate(zip(rows, cols, observed, strict=True))
    ]
    result = processing.run(
        "geoplant:evaluate",
        {
            "SURVEYS": _pa_csv(tmp_path / "pa.csv", surveys), "PREDICTIONS": [out["probabilities"]],
            "TOP_K": 7, "TOPK_MARGIN": 2, "OUTPUT_REPORT": str(tmp_path / "report.html"),
            "OUTPUT_TABLE": str(tmp_path / "table.csv"),
        },
    )  # fmt: skip
    f1s = []
    for cell, obs in zip(cells, observed, strict=True):
        predicted = {
            int(i) for i in _expected_topk(probs[cell : cell + 1], k_cells[cell : cell + 1], 7)[0]
        } - {-1}
        tp = len(predicted & set(map(int, obs)))
        f1s.append(2 * tp / (len(predicted) + len(obs)))
    assert result["F1_RICHNESS"] == pytest.approx(np.mean(f1s), abs=1e-9)
    table = pd.read_csv(result["OUTPUT_TABLE"])
    assert table["f1_richness_k"].mean() == pytest.approx(np.mean(f1s), abs=1e-6)
    assert "Fixed K vs K from the expected richness" in open(result["OUTPUT_REPORT"]).read()
