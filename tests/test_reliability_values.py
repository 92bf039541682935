"""Values that cannot be true are not written as if they were (issue #10, parts 5 and 6).

- a model whose card says activation "none" but whose outputs leave [0, 1] (or hold NaN)
  is refused, whatever outputs are asked for, in the fused graph, the two-session fallback
  and the point API (predict_points, evaluate), nothing written and earlier files intact;
  one whose outputs are probabilities gives exactly numpy's values;
- NaN logits through a sigmoid/softmax are refused too;
- observation ids outside int64, and rows of the wrong width at any line, are malformed rows;
- a model card too large or nested too deeply is refused in plain words, and a card's long
  texts are cut in messages.
"""

from __future__ import annotations

import json
import os

import numpy as np
import onnx
import pandas as pd
import pytest
import rasterio
from filestate import snapshot
from make_world import write_tif
from onnx import TensorProto, helper, numpy_helper
from rasterio.transform import from_origin

from geoplant_qgis.core import engine
from geoplant_qgis.core.errors import ModelCardError
from geoplant_qgis.core.geoplant.observations import ReadStats, read_observations, survey_table
from geoplant_qgis.core.modelcard import (
    MAX_CARD_BYTES,
    METADATA_KEY,
    ModelCard,
    embed_model_card,
    read_model_card,
)

pytestmark = pytest.mark.core

IDS = [11, 22, 33]
LEFT, TOP, SIZE, N = 4_000_000.0, 3_000_000.0, 100.0, 12
EXTENT = (LEFT, TOP - N * SIZE, LEFT + N * SIZE, TOP)


class Recorder:
    def __init__(self):
        self.warnings, self.infos = [], []

    def set_progress(self, percent):
        pass

    def is_cancelled(self):
        return False

    def check_cancelled(self):
        pass

    def info(self, message):
        self.infos.append(message)

    def warning(self, message):
        self.warnings.append(message)


# --- models and rasters --------------------------------------------------------------------


def save_model(path, weights, bias, activation, opset=17, post=None, card_extra=None):
    """logits = env @ W + b (then ``post``: an extra unary op, e.g. Sqrt), env = [Bio1, Bio12]."""
    weights = np.asarray(weights, np.float32)
    nodes = [helper.make_node("MatMul", ["env", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["z"])]
    out = "z"
    if post:
        nodes.append(helper.make_node(post, ["z"], ["out"]))
        out = "out"
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("env", TensorProto.FLOAT, ["N", 2])],
        [helper.make_tensor_value_info(out, TensorProto.FLOAT, ["N", weights.shape[1]])],
        [numpy_helper.from_array(weights, "W"), numpy_helper.from_array(np.asarray(bias, np.float32), "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7
    card = {
        "format": "geoplant-onnx/1",
        "species": [{"id": i, "name": f"Species {i}"} for i in IDS],
        "output": {"name": out, "activation": activation},
        "inputs": [{"name": "env", "kind": "point", "variables": ["Bio1", "Bio12"]}],
        "grid": {"crs": "EPSG:3035", "cell_size_m": SIZE},
        **(card_extra or {}),
    }
    embed_model_card(model, card)
    onnx.save(model, str(path))
    return str(path)


@pytest.fixture
def rasters(tmp_path):
    """Bio1, Bio12 in [0, 1) on the grid itself (one pixel per cell), EPSG:3035."""
    rng = np.random.default_rng(7)
    transform = from_origin(LEFT, TOP, SIZE, SIZE)
    paths, arrays = [], []
    for name in ("Bio1", "Bio12"):
        array = rng.random((N, N)).astype(np.float32)
        paths.append(
            write_tif(tmp_path / "rasters" / f"{name}.tif", array, transform, "EPSG:3035", compress=None)
        )
        arrays.append(array)
    return paths, np.stack([a.ravel() for a in arrays], axis=1)  # [cells, 2], row-major


def outputs_in(folder, keys):
    names = {"richness": "richness.tif", "topk": "topk.tif", "probabilities": "probs.tif"}
    return {f"output_{'probabilities' if k == 'probabilities' else k}": str(folder / names[k]) for k in keys}


def run(model, rasters, out, **kwargs):
    return engine.predict(
        model, rasters, extent=EXTENT, extent_crs="EPSG:3035", crs="EPSG:3035", cell_size=SIZE,
        top_k=2, progress=Recorder(), **out, **kwargs,
    )  # fmt: skip


# --- activation "none": out-of-range values refused -------------------------------------------

OUTPUT_SETS = [("richness",), ("topk",), ("probabilities",), ("richness", "topk", "probabilities")]


@pytest.mark.parametrize("opset", [17, 12])  # fused graph / two sessions
@pytest.mark.parametrize("keys", OUTPUT_SETS, ids="+".join)
def test_none_activation_out_of_range_refused(tmp_path, rasters, keys, opset):
    paths, _ = rasters
    # constant outputs -37, 174, 0.5 in every cell: not probabilities
    model = save_model(tmp_path / "m.onnx", np.zeros((2, 3)), [-37.0, 174.0, 0.5], "none", opset=opset)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = outputs_in(out_dir, keys)
    for i, path in enumerate(out.values()):  # earlier results under the output names
        with open(path, "wb") as handle:
            handle.write(b"earlier result %d" % i)
    before = snapshot(out_dir)
    with pytest.raises(ModelCardError) as caught:
        run(model, paths, out)
    message = str(caught.value)
    assert "not probabilities" in message and "from -37 to 174" in message
    assert "activation 'none'" in message and "'sigmoid' or 'softmax'" in message
    assert "block of grid rows" in message and "Nothing was written" in message
    assert snapshot(out_dir) == before  # byte-identical, no temporary left


@pytest.mark.parametrize("opset", [17, 12])
def test_none_activation_slightly_out_of_range_and_nan_refused(tmp_path, rasters, opset):
    paths, _ = rasters
    out = outputs_in(tmp_path, ("richness",))
    model = save_model(tmp_path / "a.onnx", np.zeros((2, 3)), [0.2, 1.001, 0.0], "none", opset=opset)
    with pytest.raises(ModelCardError, match="from 0 to 1.001"):
        run(model, paths, out)
    # Sqrt(-1) = NaN in the last column only
    model = save_model(
        tmp_path / "b.onnx", np.zeros((2, 3)), [0.25, 0.5, -1.0], "none", opset=opset, post="Sqrt"
    )
    with pytest.raises(ModelCardError, match=r"NaN \(not a number\)"):
        run(model, paths, outputs_in(tmp_path, ("topk",)))
    assert not os.path.exists(out["output_richness"]) and not os.path.exists(tmp_path / "topk.tif")


def test_none_activation_tolerance_allows_rounding(tmp_path, rasters):
    paths, _ = rasters
    model = save_model(tmp_path / "m.onnx", np.zeros((2, 3)), [1.0 + 5e-7, -5e-7, 0.5], "none")
    run(model, paths, outputs_in(tmp_path, ("richness",)))
    with rasterio.open(tmp_path / "richness.tif") as src:
        np.testing.assert_allclose(src.read(1), 1.5, rtol=1e-6)


@pytest.mark.parametrize("opset", [17, 12])
def test_none_activation_in_range_matches_numpy(tmp_path, rasters, opset):
    paths, env = rasters
    w = np.array([[0.5, 0.2, 0.0], [0.5, 0.3, 1.0]])
    model = save_model(tmp_path / "m.onnx", w, [0.0, 0.1, 0.0], "none", opset=opset)
    result = run(model, paths, outputs_in(tmp_path, ("richness", "topk", "probabilities")))
    assert result.valid_cells == N * N
    p = env.astype(np.float64) @ w + np.array([0.0, 0.1, 0.0])  # in [0, 1]
    assert p.min() >= 0 and p.max() <= 1
    with rasterio.open(tmp_path / "richness.tif") as src:
        np.testing.assert_allclose(src.read(1).ravel(), p.sum(axis=1), rtol=1e-5)
    with rasterio.open(tmp_path / "probs.tif") as src:
        np.testing.assert_allclose(src.read().reshape(3, -1).T, p, rtol=1e-5, atol=1e-7)
    with rasterio.open(tmp_path / "topk.tif") as src:
        top = src.read().reshape(2, -1).T
    np.testing.assert_array_equal(top, np.array(IDS)[np.argsort(-p, axis=1, kind="stable")[:, :2]])


# --- NaN logits through a sigmoid / softmax -----------------------------------------------------


@pytest.mark.parametrize("opset", [17, 12])
@pytest.mark.parametrize(
    "activation, keys",
    [
        ("sigmoid", ("richness", "topk")),  # the richness shows the NaN (no extra graph pass)
        ("sigmoid", ("topk",)),
        ("sigmoid", ("probabilities",)),
        ("softmax", ("topk",)),
    ],
)
def test_nan_logits_refused(tmp_path, rasters, activation, keys, opset):
    paths, _ = rasters
    model = save_model(
        tmp_path / "m.onnx", np.zeros((2, 3)), [1.0, -1.0, 4.0], activation, opset, post="Sqrt"
    )
    out = outputs_in(tmp_path / "out", keys)
    with pytest.raises(ModelCardError) as caught:
        run(model, paths, out)
    assert "NaN (not a number)" in str(caught.value) and f"its {activation} activation" in str(caught.value)
    assert not os.path.exists(tmp_path / "out") or not os.listdir(tmp_path / "out")


def test_infinite_logits_are_saturated_probabilities(tmp_path, rasters):
    """+-inf logits through a sigmoid are probabilities 1 and 0: true values, kept."""
    paths, _ = rasters
    model = save_model(tmp_path / "m.onnx", np.zeros((2, 3)), [np.inf, -np.inf, 0.0], "sigmoid")
    run(model, paths, outputs_in(tmp_path, ("richness", "probabilities")))
    with rasterio.open(tmp_path / "probs.tif") as src:
        np.testing.assert_array_equal(src.read()[:, 0, 0], [1.0, 0.0, 0.5])
    with rasterio.open(tmp_path / "richness.tif") as src:
        np.testing.assert_array_equal(np.unique(src.read(1)), [1.5])


# --- the point API ------------------------------------------------------------------------------


def test_predict_points_and_evaluate_refuse_out_of_range(tmp_path, rasters):
    paths, _ = rasters
    model = save_model(tmp_path / "m.onnx", np.zeros((2, 3)), [-37.0, 174.0, 0.5], "none")
    xs = LEFT + SIZE * (np.arange(5) + 0.5)
    ys = np.full(5, TOP - SIZE / 2)
    with pytest.raises(ModelCardError, match=r"from -37 to 174 in the points 1-5"):
        engine.predict_points(model, paths, xs, ys, "EPSG:3035")

    from geoplant_qgis.core.evaluate import evaluate_surveys

    surveys = pd.DataFrame(
        {"surveyId": [1, 2, 3, 4, 5], "x": xs, "y": ys, "speciesIds": [[11], [22], [33], [11], [22]]}
    )
    report, table = tmp_path / "out" / "report.html", tmp_path / "out" / "table.csv"
    with pytest.raises(ModelCardError, match="not probabilities"):
        evaluate_surveys(
            surveys,
            "EPSG:3035",
            model=model,
            rasters=paths,
            output_report=str(report),
            output_table=str(table),
        )
    assert not report.exists() and not table.exists()


def test_predict_points_in_range_matches_numpy(tmp_path, rasters):
    paths, env = rasters
    w = np.array([[0.5, 0.2, 0.0], [0.5, 0.3, 1.0]])
    model = save_model(tmp_path / "m.onnx", w, [0.0, 0.0, 0.0], "none")
    xs = LEFT + SIZE * (np.arange(N) + 0.5)
    ys = np.full(N, TOP - SIZE / 2)
    got = engine.predict_points(model, paths, xs, ys, "EPSG:3035")
    np.testing.assert_allclose(got, env[:N].astype(np.float64) @ w, rtol=1e-5, atol=1e-7)


# --- observations: ids out of int64, rows of the wrong width ------------------------------------

HEADER = "lon,lat,year,geoUncertaintyInM,areaInM2,region,country,speciesId,surveyId"


def good(i):
    return f"3.{i},43.{i},2019,10.0,100.0,MED,France,{600 + i}.0,{1000 + i}"


@pytest.mark.parametrize("chunksize", [2, 100_000])
def test_observations_bad_ids_and_widths_are_malformed(tmp_path, chunksize):
    lines = [good(i) for i in range(1, 11)]
    lines[1] = "3.2,43.2,2019,10.0,100.0,MED,France,602.0,99999999999999999999999"  # line 3: 23 digits
    lines[2] = "3.3,43.3,2019,10.0,100.0,MED,France,-99999999999999999999999,1003"  # line 4: negative
    lines[3] = good(4) + ",extra"  # line 5: an extra field
    lines[5] = good(6).rsplit(",", 1)[0]  # line 7: a missing field
    lines[6] = "3.7,43.7,2019,10.0,100.0,MED,France,607.0,9223372036854775807"  # line 8: int64 max, exact
    lines[7] = "3.8,43.8,2019,10.0,100.0,MED,France,608.0,9007199254740993"  # line 9: 2^53 + 1, exact
    path = tmp_path / "pa.csv"
    path.write_text(HEADER + "\n" + "\n".join(lines) + "\n")
    progress, stats = Recorder(), ReadStats()
    frame = pd.concat(list(read_observations(path, chunksize=chunksize, progress=progress, stats=stats)))
    assert stats.rows == 10 and stats.malformed == 4 and stats.kept == 6
    assert list(frame.index) == [2, 6, 8, 9, 10, 11]
    assert frame["surveyId"].dtype == np.int64
    assert frame["surveyId"].tolist() == [1001, 1005, 9223372036854775807, 9007199254740993, 1009, 1010]
    assert frame["speciesId"].tolist() == [601, 605, 607, 608, 609, 610]
    np.testing.assert_allclose(frame["lon"], [3.1, 3.5, 3.7, 3.8, 3.9, 3.10])
    (message,) = progress.warnings
    assert "skipped 4 malformed row(s) of 10" in message
    assert "whole numbers out of range: 2" in message
    assert "too many fields: 1" in message and "too few fields: 1" in message
    assert (
        "line 5: 10 fields, the header has 9" in message and "line 7: 8 fields, the header has 9" in message
    )
    assert "99999999999999999999999" in message and "-9223372036854775808" not in frame.to_string()
    table = survey_table(path, chunksize=chunksize)
    assert table.attributes["surveyId"].tolist() == [
        1001,
        1005,
        1009,
        1010,
        9007199254740993,
        9223372036854775807,
    ]


def test_observations_wrong_width_rows_anywhere_and_quoted_rows(tmp_path):
    """Extra fields far from the first data row, many extra fields, a short row, a row of
    commas, and quoted fields with commas and a line break: each wrong row reported once."""
    lines = [good(i) for i in range(1, 31)]
    lines[19] = good(20) + ",x"  # line 21
    lines[24] = good(25) + ",x" * 40  # line 26
    lines[26] = ",,"  # line 28
    lines[27] = ""  # line 29: blank, not a row
    path = tmp_path / "po.csv"
    path.write_text(HEADER + "\n" + "\n".join(lines) + "\n")
    stats, progress = ReadStats(), Recorder()
    frame = pd.concat(list(read_observations(path, chunksize=7, progress=progress, stats=stats)))
    assert stats.rows == 29 and stats.malformed == 3 and len(frame) == 26
    assert 21 not in frame.index and 26 not in frame.index and 22 in frame.index
    assert "too many fields: 2" in progress.warnings[0] and "too few fields: 1" in progress.warnings[0]

    quoted = list(lines)
    quoted[9] = '3.10,43.10,2019,10.0,100.0,"MED, south",France,610.0,1010'  # line 11
    quoted[10] = '3.11,43.11,2019,10.0,100.0,"MED\nnorth",France,611.0,1011'  # lines 12-13
    path.write_text(HEADER + "\n" + "\n".join(quoted) + "\n")
    stats, progress = ReadStats(), Recorder()
    frame = pd.concat(list(read_observations(path, chunksize=7, progress=progress, stats=stats)))
    assert stats.rows == 29 and stats.malformed == 3 and len(frame) == 26
    assert frame.loc[11, "region"] == "MED, south" and frame.loc[12, "region"] == "MED\nnorth"
    assert frame.loc[23, "surveyId"] == 1021  # line numbers after the quoted line break
    assert "line 22: 10 fields" in progress.warnings[0] and "line 27: 49 fields" in progress.warnings[0]


# --- the model card: size, nesting, what is echoed -----------------------------------------------


def small_card(**changes):
    card = {
        "format": "geoplant-onnx/1",
        "species": [{"id": i, "name": f"Species {i}"} for i in IDS],
        "output": {"name": "z", "activation": "sigmoid"},
        "inputs": [{"name": "env", "kind": "point", "variables": ["Bio1", "Bio12"]}],
    }
    card.update(changes)
    return card


def with_metadata(tmp_path, text, name="m.onnx"):
    path = save_model(tmp_path / name, np.zeros((2, 3)), [0, 0, 0], "sigmoid")
    model = onnx.load(path)
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            prop.value = text
    onnx.save(model, path)
    return path


def test_card_over_the_size_limit_refused(tmp_path):
    big = small_card(description="x" * (MAX_CARD_BYTES + 10))
    text = json.dumps(big)
    with pytest.raises(ModelCardError) as caught:
        ModelCard.from_json(text)
    message = str(caught.value)
    assert "16.8 MB of JSON" in message and "at most 16.8 MB" in message and len(message) < 500
    with pytest.raises(ModelCardError, match="MB of JSON"):
        read_model_card(with_metadata(tmp_path, text))
    # a real-sized card (11,255 species with long names) is far below the limit
    names = [{"id": i, "name": f"Genus{i} species{i} subsp. name (Author) Other"} for i in range(11_255)]
    assert len(json.dumps(small_card(species=names))) < MAX_CARD_BYTES / 10


@pytest.mark.parametrize("text", ["[" * 200_000 + "]" * 200_000, '{"a":' * 200_000 + "1" + "}" * 200_000])
def test_deeply_nested_card_refused_in_plain_words(tmp_path, text):
    with pytest.raises(ModelCardError, match="nested too deeply"):
        ModelCard.from_json(text)
    with pytest.raises(ModelCardError, match="nested too deeply"):
        read_model_card(with_metadata(tmp_path, text))


def test_nested_value_within_json_limits_is_shown_short():
    value = json.loads("[" * 500 + "]" * 500)
    card = small_card(species=[{"id": 1, "name": value}])
    with pytest.raises(ModelCardError) as caught:
        ModelCard.from_dict(card)
    assert "species[0].name" in str(caught.value) and len(str(caught.value)) < 500


def test_long_names_are_cut_in_messages(tmp_path):
    long = "Quercus " * 10_000  # 80,000 characters
    # a name where text is expected: the value is shown cut
    with pytest.raises(ModelCardError) as caught:
        ModelCard.from_dict(small_card(name=[long] * 1000))
    assert len(str(caught.value)) < 1000
    # duplicated variables with long names: the list and each name are cut
    variables = [f"{long}{i}" for i in range(50)] * 2
    with pytest.raises(ModelCardError) as caught:
        ModelCard.from_dict(small_card(inputs=[{"name": "env", "kind": "point", "variables": variables}]))
    message = str(caught.value)
    assert "more characters" in message and "and 45 more" in message and len(message) < 2000
    # unknown species asked for by a long name
    card = ModelCard.from_dict(small_card(species=[{"id": 1, "name": long}]))
    with pytest.raises(ModelCardError) as caught:
        card.select_species([long + "x"])
    assert len(str(caught.value)) < 1000
    # an input name that is not in the graph
    path = with_metadata(
        tmp_path, json.dumps(small_card(inputs=[{"name": long, "kind": "point", "variables": ["a"]}]))
    )
    with pytest.raises(ModelCardError) as caught:
        read_model_card(path)
    assert "does not match its graph" in str(caught.value) and len(str(caught.value)) < 2000


def test_modelinfo_lines_are_cut(qgis_app):
    from geoplant_qgis.processing.modelinfo import describe_card

    long = "Abies alba " * 20_000
    card = ModelCard.from_dict(
        small_card(
            description=long,
            citation=long,
            species=[{"id": i, "name": long} for i in IDS],
            inputs=[{"name": "env", "kind": "point", "variables": [f"{long}{i}" for i in range(300)]}],
        )
    )
    lines = describe_card(card)
    assert sum(len(line) for line in lines) < 40_000
    assert any("more characters" in line for line in lines)


@pytest.mark.parametrize("ending", ["\n", "\r\n"])
@pytest.mark.parametrize("last_newline", [True, False])
def test_observations_same_rows_whatever_the_block_size(tmp_path, monkeypatch, ending, last_newline):
    """Lines cut across the reader's byte blocks give the same rows, lines and reports."""
    from geoplant_qgis.core.geoplant import observations

    lines = [good(i) for i in range(1, 41)]
    lines[4] = good(5) + ",x,y"
    lines[12] = ""
    lines[17] = good(18)[:-3]  # surveyId "1": a short last field, a whole row
    lines[23] = "3.24,43.24"
    lines[31] = "3.32,43.32,2019,10.0,100.0,MED,France,632.0,18446744073709551616"  # 2^64
    path = tmp_path / "pa.csv"
    path.write_bytes((HEADER + ending + ending.join(lines) + (ending if last_newline else "")).encode())

    def read(chunksize):
        progress, stats = Recorder(), ReadStats()
        frame = pd.concat(list(read_observations(path, chunksize=chunksize, progress=progress, stats=stats)))
        return frame, stats, progress.warnings

    expected, stats, warnings = read(100_000)
    assert stats.rows == 39 and stats.malformed == 3 and len(expected) == 36
    assert expected.loc[19, "surveyId"] == 1
    for block in (37, 64, 1000):
        monkeypatch.setattr(observations.reader, "BLOCK_BYTES", block)
        for chunksize in (3, 100_000):
            frame, got_stats, got_warnings = read(chunksize)
            pd.testing.assert_frame_equal(frame, expected)
            assert got_stats == stats and got_warnings == warnings
