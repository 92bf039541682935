"""core.evaluate and geoplant:evaluate: metrics equal hand computations on small cases."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from make_world import write_tif

from geoplant_qgis.core import evaluate as ev
from geoplant_qgis.core.errors import InputDataError, OutputError
from geoplant_qgis.core.geoplant.observations import STANDARD_COLUMNS

pytestmark = pytest.mark.core

SPECIES = np.array([10, 20, 30, 40])
PROBS = np.array(
    [
        [0.9, 0.1, 0.8, 0.3],  # top-2 {10, 30}
        [0.5, 0.4, 0.6, 0.1],  # top-2 {30, 10}
        [0.2, 0.2, 0.2, 0.7],  # top-2 {40, 10} (tie 10/20/30 -> lowest column)
    ]
)
TRUE = [[10, 30], [20, 99], [40]]  # 99 is unknown to the model: a miss
TRAIN = [[10, 20], [20, 30], [20]]  # most frequent: 20 (3), then 10 and 30 (1) -> {20, 10}


def brute_auc(labels, scores):
    pos = [s for s, y in zip(scores, labels, strict=True) if y]
    neg = [s for s, y in zip(scores, labels, strict=True) if not y]
    wins = sum(1.0 if p > n else 0.5 if p == n else 0.0 for p, n in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_f1_at_k_hand_computation():
    # survey 1: TP 2 -> 2*2/(2+2) = 1; survey 2: TP 0 -> 0; survey 3: TP 1 -> 2/(2+1)
    assert ev.f1_at_k(TRUE, SPECIES, PROBS, k=2) == pytest.approx((1 + 0 + 2 / 3) / 3)
    result = ev.evaluate([1, 2, 3], TRUE, SPECIES, PROBS, k=2, train_lists=TRAIN)
    assert result.f1 == pytest.approx(5 / 9)
    assert result.per_survey["f1"] == pytest.approx([1.0, 0.0, 2 / 3])
    assert result.recall == pytest.approx((1 + 0 + 1) / 3)
    assert result.per_survey["top_k"] == ["10 30", "30 10", "40 10"]
    assert result.unknown_species == 1
    # baseline {20, 10}: survey 1 TP 1 -> 0.5; survey 2 TP 1 (20) -> 2/(2+2); survey 3 -> 0
    assert result.baseline["species"] == [20, 10]
    assert result.baseline["f1"] == pytest.approx((0.5 + 0.5 + 0) / 3)
    assert result.per_survey["predicted_richness"] == pytest.approx(PROBS.sum(axis=1))


def test_auc_micro_macro_against_pairwise_counting():
    labels = np.array([[1, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=bool)
    result = ev.evaluate([1, 2, 3], TRUE, SPECIES, PROBS, k=2)
    assert result.auc_micro == pytest.approx(brute_auc(labels.ravel(), PROBS.ravel()))
    per_species = [brute_auc(labels[:, j], PROBS[:, j]) for j in range(4)]
    assert result.auc_macro == pytest.approx(np.mean(per_species))
    assert result.auc_macro_species == 4
    # one class only -> NaN, and it is left out of the macro mean
    assert math.isnan(ev.roc_auc([1, 1], [0.2, 0.3]))
    assert ev.macro_auc(np.array([[1, 1], [1, 0]]), np.array([[0.1, 0.9], [0.2, 0.1]])) == (1.0, 1)
    assert ev.roc_auc([0, 1, 1, 0], [0.5, 0.5, 0.5, 0.5]) == 0.5


def test_reliability_bins_hand_computation():
    y = np.array([0, 1, 1, 0, 1])
    p = np.array([0.05, 0.15, 0.95, 0.92, 1.0])
    rel = ev.reliability_bins(y, p, n_bins=10)
    assert rel["count"].tolist() == [1, 1, 0, 0, 0, 0, 0, 0, 0, 3]
    assert rel["observed"][0] == 0 and rel["observed"][1] == 1 and np.isnan(rel["observed"][2])
    assert rel["mean_predicted"][9] == pytest.approx((0.95 + 0.92 + 1.0) / 3)
    expected_ece = (1 * 0.05 + 1 * 0.85 + 3 * abs((0.95 + 0.92 + 1.0) / 3 - 2 / 3)) / 5
    assert rel["ece"] == pytest.approx(expected_ece)


def test_matches_sklearn_samples_f1_when_available():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    probs = rng.random((40, 30))
    truth = rng.random((40, 30)) < 0.2
    truth[0] = False
    ids = np.arange(100, 130)
    lists = [ids[row].tolist() for row in truth]
    pred = np.zeros_like(truth)
    np.put_along_axis(pred, ev.top_k_indices(probs, 5), True, axis=1)
    expected = sklearn_metrics.f1_score(truth, pred, average="samples", zero_division=0)
    assert ev.f1_at_k(lists, ids, probs, k=5) == pytest.approx(expected)
    assert ev.roc_auc(truth.ravel(), probs.ravel()) == pytest.approx(
        sklearn_metrics.roc_auc_score(truth.ravel(), probs.ravel())
    )


def test_random_cases_against_set_arithmetic():
    rng = np.random.default_rng(7)
    ids = np.arange(1, 51)
    probs = rng.random((25, 50))
    lists = [
        sorted(rng.choice(np.arange(1, 60), size=rng.integers(1, 12), replace=False).tolist())
        for _ in range(25)
    ]
    expected = []
    for row, true in zip(probs, lists, strict=True):
        top = {int(ids[j]) for j in np.argsort(-row)[:7]}
        tp = len(top & set(true))
        expected.append(2 * tp / (7 + len(true)))
    assert ev.f1_at_k(lists, ids, probs, k=7) == pytest.approx(np.mean(expected))


def test_nan_rows_are_left_out_and_all_nan_is_an_error():
    probs = PROBS.copy()
    probs[1, 2] = np.nan
    result = ev.evaluate([1, 2, 3], TRUE, SPECIES, probs, k=2)
    assert result.n_surveys == 2 and result.extra["dropped_surveys"] == 1
    assert result.f1 == pytest.approx((1 + 2 / 3) / 2)
    with pytest.raises(InputDataError, match="No survey has predictions"):
        ev.evaluate([1], [[10]], SPECIES, np.full((1, 4), np.nan))
    with pytest.raises(InputDataError, match="do not match the 4 species"):
        ev.evaluate([1], [[10]], SPECIES, np.zeros((1, 3)))


def test_report_and_table(tmp_path):
    result = ev.evaluate([1, 2, 3], TRUE, SPECIES, PROBS, k=2, train_lists=TRAIN)
    report = ev.write_report_html(tmp_path / "r.html", result)
    text = open(report).read()
    assert text.count("<svg") == 3 and "0.5556" in text and "0.3333" in text
    table = pd.read_csv(ev.write_table_csv(tmp_path / "t.csv", result))
    assert table["surveyId"].tolist() == [1, 2, 3]
    assert table["f1"].tolist() == pytest.approx([1, 0, 2 / 3], abs=1e-6)
    assert table["baseline_f1"].tolist() == pytest.approx([0.5, 0.5, 0.0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.html", "t.csv"]  # no temporary left


def test_failed_write_leaves_no_temporary(tmp_path):
    """A report that cannot be renamed into place (a folder has its name) leaves nothing behind."""
    result = ev.evaluate([1, 2, 3], TRUE, SPECIES, PROBS, k=2)
    (tmp_path / "r.html").mkdir()
    with pytest.raises(OutputError, match=r"r\.html is a folder"):
        ev.write_report_html(tmp_path / "r.html", result)
    assert [p.name for p in tmp_path.iterdir()] == ["r.html"]
    assert list((tmp_path / "r.html").iterdir()) == []


# ----------------------------------------------------------------------------- Processing


def _write_predictions(path, descriptions):
    """4 bands over a 3035 square: left half and right half hold different known values."""
    from rasterio.transform import from_origin

    data = np.zeros((len(descriptions), 10, 10), dtype=np.float32)
    left = PROBS[0]
    right = PROBS[2]
    for b in range(len(descriptions)):
        data[b, :, :5] = left[b]
        data[b, :, 5:] = right[b]
    transform = from_origin(3_800_000, 2_300_000, 1000, 1000)
    return write_tif(path, data, transform, "EPSG:3035", -9999, descriptions, compress=None)


def _pa_csv(path, surveys):
    """surveys: list of (surveyId, x3035, y3035, species) -> GLC25 PA CSV in lon/lat."""
    from rasterio.warp import transform

    rows = []
    for sid, x, y, species in surveys:
        (lon,), (lat,) = transform("EPSG:3035", "EPSG:4326", [x], [y])
        for s in species:
            rows.append((lon, lat, 2020, 10.0, 25.0, "ALPINE", "France", float(s), sid))
    cols = list(STANDARD_COLUMNS)
    pd.DataFrame(rows, columns=cols).to_csv(path, index=False)
    return str(path)


# three surveys (id, x, y in EPSG:3035, species) over the test prediction raster
THREE_SURVEYS = [
    (1, 3_801_500, 2_295_500, [10, 30]),
    (2, 3_803_500, 2_291_500, [20]),
    (3, 3_808_500, 2_292_500, [40]),
]


def test_processing_evaluate_predictions(tmp_path, geoplant_provider):
    import processing

    pred = _write_predictions(tmp_path / "p.tif", ["a (10)", "b (20)", "c (30)", "d (40)"])
    surveys = _pa_csv(tmp_path / "pa.csv", THREE_SURVEYS)
    train = _pa_csv(
        tmp_path / "train.csv", [(7, 3_801_000, 2_295_000, [20, 40]), (8, 3_801_000, 2_295_000, [20])]
    )
    out = processing.run(
        "geoplant:evaluate",
        {
            "SURVEYS": surveys,
            "PREDICTIONS": [pred],
            "TOP_K": 2,
            "TRAIN_SURVEYS": train,
            "OUTPUT_REPORT": str(tmp_path / "report.html"),
            "OUTPUT_TABLE": str(tmp_path / "table.csv"),
        },
    )
    # surveys 1, 2 on the left half (probs row 0: top-2 {10, 30}); survey 3 on the right (row 2: {40, 10})
    expected = [1.0, 0.0, 2 / 3]  # survey 2: true {20}, predicted {10, 30}
    assert out["F1"] == pytest.approx(np.mean(expected))
    # baseline {20, 40}: survey 1 -> 0, survey 2 -> 2/3, survey 3 -> 2/3
    assert out["BASELINE_F1"] == pytest.approx((0 + 2 / 3 + 2 / 3) / 3)
    assert out["SURVEYS_EVALUATED"] == 3
    table = pd.read_csv(out["OUTPUT_TABLE"])
    assert table["f1"].tolist() == pytest.approx(expected, abs=1e-6)
    assert "<svg" in open(out["OUTPUT_REPORT"]).read()


def test_processing_evaluate_bad_inputs(tmp_path, geoplant_provider):
    import processing
    from qgis.core import QgsProcessingException

    bad = _write_predictions(tmp_path / "bad.tif", ["a (10)", "no id here", "c (30)", "d (40)"])
    surveys = _pa_csv(tmp_path / "pa.csv", [(1, 3_801_500, 2_295_500, [10])])
    with pytest.raises(
        QgsProcessingException, match=r"description 'no id here' does not end with '\(<species id>\)'"
    ):
        processing.run(
            "geoplant:evaluate",
            {"SURVEYS": surveys, "PREDICTIONS": [bad], "OUTPUT_REPORT": str(tmp_path / "r.html")},
        )
    assert not (tmp_path / "r.html").exists()
    no_species = tmp_path / "test.csv"
    pd.DataFrame({"surveyId": [1], "lon": [3.0], "lat": [44.0]}).to_csv(no_species, index=False)
    good = _write_predictions(tmp_path / "good.tif", ["a (10)", "b (20)", "c (30)", "d (40)"])
    with pytest.raises(QgsProcessingException, match="lists no species"):
        processing.run(
            "geoplant:evaluate",
            {"SURVEYS": str(no_species), "PREDICTIONS": [good], "OUTPUT_REPORT": str(tmp_path / "r.html")},
        )
    outside = _pa_csv(tmp_path / "far.csv", [(1, 3_900_000, 2_200_000, [10])])
    with pytest.raises(QgsProcessingException, match="No survey has predictions"):
        processing.run(
            "geoplant:evaluate",
            {"SURVEYS": outside, "PREDICTIONS": [good], "OUTPUT_REPORT": str(tmp_path / "r.html")},
        )
    assert not (tmp_path / "r.html").exists()


@pytest.mark.parametrize("aggregate", [True, False])
def test_processing_evaluate_surveys_from_loadobservations_layer(tmp_path, geoplant_provider, aggregate):
    """The point layer from loadobservations (per survey or per row) gives the same scores as the CSV."""
    import processing

    pred = _write_predictions(tmp_path / "p.tif", ["a (10)", "b (20)", "c (30)", "d (40)"])
    surveys = _pa_csv(tmp_path / "pa.csv", THREE_SURVEYS)
    layer = processing.run(
        "geoplant:loadobservations",
        {"INPUT": surveys, "AGGREGATE": aggregate, "OUTPUT": str(tmp_path / "obs.gpkg")},
    )["OUTPUT"]
    out = processing.run(
        "geoplant:evaluate",
        {"SURVEYS": layer, "PREDICTIONS": [pred], "TOP_K": 2, "OUTPUT_REPORT": str(tmp_path / "r.html")},
    )
    assert out["SURVEYS_EVALUATED"] == 3
    assert out["F1"] == pytest.approx((1.0 + 0.0 + 2 / 3) / 3)
    assert out["BASELINE_F1"] is None


def test_processing_evaluate_with_a_model(tmp_path, geoplant_provider):
    """MODEL + RASTERS: the model is run at the surveys; scores equal the hand computation."""
    import processing
    from rasterio.transform import from_origin
    from tiny_models import save_linear_point_model

    # logits = Elev * [1, -1, 0.5] + [0, 0, 0.2], species 10, 20, 30
    model = save_linear_point_model(
        tmp_path / "m.onnx",
        weights=[[1.0, -1.0, 0.5]],
        bias=[0.0, 0.0, 0.2],
        variables=("Elev",),
        species=[{"id": 10 * (i + 1), "name": f"s{i}"} for i in range(3)],
    )
    elev = tmp_path / "Elev.tif"
    data = np.array([[2.0, -2.0], [0.1, -0.1]], dtype=np.float32)  # 4 cells of 1 km
    write_tif(elev, data, from_origin(3_800_000, 2_300_000, 1000, 1000), "EPSG:3035")
    # survey in each cell; species ids 10 (w=1), 20 (w=-1), 30 (w=0.5, b=0.2)
    surveys = _pa_csv(
        tmp_path / "pa.csv",
        [
            (1, 3_800_500, 2_299_500, [10]),  # x=2: logits 2, -2, 1.2 -> top-1 10: F1 1
            (2, 3_801_500, 2_299_500, [10]),  # x=-2: -2, 2, -0.8 -> top-1 20: F1 0
            (3, 3_800_500, 2_298_500, [30, 20]),  # x=0.1: 0.1, -0.1, 0.25 -> top-1 30: 2/(1+2)
            (4, 3_801_500, 2_298_500, [20]),  # x=-0.1: -0.1, 0.1, 0.15 -> top-1 30: F1 0
        ],
    )
    out = processing.run(
        "geoplant:evaluate",
        {
            "SURVEYS": surveys,
            "MODEL": model,
            "RASTERS": [str(elev)],
            "TOP_K": 1,
            "OUTPUT_REPORT": str(tmp_path / "r.html"),
            "OUTPUT_TABLE": str(tmp_path / "t.csv"),
        },
    )
    assert out["F1"] == pytest.approx((1 + 0 + 2 / 3 + 0) / 4)
    table = pd.read_csv(out["OUTPUT_TABLE"])
    assert table["top_k"].astype(str).tolist() == ["10", "20", "30", "30"]
    x = np.array([2.0, -2.0, 0.1, -0.1])
    logits = np.stack([x, -x, 0.5 * x + 0.2], axis=1)
    expected_richness = (1 / (1 + np.exp(-logits))).sum(axis=1)
    assert table["predicted_richness"].tolist() == pytest.approx(expected_richness, rel=1e-5)
    labels = np.array([[1, 0, 0], [1, 0, 0], [0, 1, 1], [0, 1, 0]], dtype=bool)
    assert out["AUC_MICRO"] == pytest.approx(brute_auc(labels.ravel(), logits.ravel()))
    with pytest.raises(Exception, match="needs its input RASTERS"):
        processing.run(
            "geoplant:evaluate",
            {"SURVEYS": surveys, "MODEL": model, "OUTPUT_REPORT": str(tmp_path / "x.html")},
        )


def test_processing_evaluate_layer_with_empty_or_bad_ids(tmp_path, geoplant_provider):
    """A survey layer with an empty surveyId is skipped; a text species id is a plain error."""
    import processing
    from qgis.core import QgsFeature, QgsGeometry, QgsPointXY, QgsProcessingException, QgsVectorLayer

    pred = _write_predictions(tmp_path / "p.tif", ["a (10)", "b (20)", "c (30)", "d (40)"])

    def layer(rows):
        lyr = QgsVectorLayer(
            "Point?crs=EPSG:3035&field=surveyId:integer&field=speciesIds:string", "s", "memory"
        )
        features = []
        for sid, x, y, species in rows:
            f = QgsFeature(lyr.fields())
            f.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(x, y)))
            f.setAttributes([sid, species])
            features.append(f)
        lyr.dataProvider().addFeatures(features)
        return lyr

    good = layer(
        [
            (1, 3_801_500, 2_295_500, "10 30"),
            (None, 3_803_500, 2_291_500, "20"),
            (3, 3_808_500, 2_292_500, "40"),
        ]
    )
    out = processing.run(
        "geoplant:evaluate",
        {"SURVEYS": good, "PREDICTIONS": [pred], "TOP_K": 2, "OUTPUT_REPORT": str(tmp_path / "r.html")},
    )
    assert out["SURVEYS_EVALUATED"] == 2
    assert out["F1"] == pytest.approx((1.0 + 2 / 3) / 2)
    bad = layer([(1, 3_801_500, 2_295_500, "10 thirty")])
    with pytest.raises(QgsProcessingException, match="survey 1: species id 'thirty' is not a whole number"):
        processing.run(
            "geoplant:evaluate",
            {"SURVEYS": bad, "PREDICTIONS": [pred], "OUTPUT_REPORT": str(tmp_path / "r2.html")},
        )
    assert not (tmp_path / "r2.html").exists()
