"""The geoplant-onnx/1 model card: parsing, validation, checks against hand-made ONNX graphs."""

import copy
import json

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from geoplant_qgis.core.errors import ModelCardError
from geoplant_qgis.core.modelcard import (
    FORMAT,
    METADATA_KEY,
    InputSpec,
    ModelCard,
    embed_model_card,
    read_model_card,
)

pytestmark = pytest.mark.core

CARD = {
    "format": "geoplant-onnx/1",
    "name": "tiny",
    "description": "two species",
    "species": [{"id": 11, "name": "Quercus ilex"}, {"id": 7, "name": "Pinus pinea"}],
    "output": {"name": "logits", "activation": "sigmoid"},
    "inputs": [
        {"name": "env", "kind": "point", "variables": ["bio1", "bio12"], "mean": [10, 800], "std": [2, 100]},
        {"name": "s2", "kind": "patch", "bands": ["red", "nir"], "size": 4, "pixel_size_m": 10, "scale": 0.5},
        {"name": "clim", "kind": "cube", "shape": [2, 3], "variables": ["a", "b", "c", "d", "e", "f"]},
    ],
    "grid": {"crs": "EPSG:3035", "cell_size_m": 100},
}


def make_model(inputs, outputs, card=CARD):
    """A graph: output = sum over inputs flattened through fixed matrices (here just a MatMul on env)."""
    nodes, inits, graph_inputs = [], [], []
    for name, shape in inputs:
        graph_inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, shape))
    first = inputs[0][0]
    w = np.arange(4, dtype=np.float32).reshape(2, 2)  # the card's two species
    inits.append(helper.make_tensor("w", TensorProto.FLOAT, w.shape, w.ravel()))
    nodes.append(helper.make_node("MatMul", [first, "w"], [outputs[0][0]]))
    graph_outputs = [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs]
    graph = helper.make_graph(nodes, "g", graph_inputs, graph_outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if card is not None:
        embed_model_card(model, card)
    return model


GOOD_INPUTS = [("env", ["N", 2]), ("s2", ["N", 2, 4, 4]), ("clim", ["N", 2, 3])]
GOOD_OUTPUTS = [("logits", ["N", 2])]


def save(model, tmp_path, name="m.onnx"):
    path = tmp_path / name
    onnx.save(model, str(path))
    return path


def test_round_trip_dict_json():
    card = ModelCard.from_dict(CARD)
    assert card.format == FORMAT
    assert [s.id for s in card.species] == [11, 7]
    assert card.inputs[1].pixel_size_m == 10.0 and card.inputs[1].size == 4
    assert card.grid.crs == "EPSG:3035" and card.grid.cell_size_m == 100.0
    again = ModelCard.from_dict(json.loads(card.to_json()))
    assert again == card
    assert card.variable_names() == ["bio1", "bio12", "red", "nir", "a", "b", "c", "d", "e", "f"]
    assert card.inputs[0].source_names == ("bio1", "bio12")
    assert card.inputs[1].source_names == ("red", "nir")
    assert card.inputs[0].tensor_shape(5) == (5, 2)
    assert card.inputs[1].tensor_shape(5) == (5, 2, 4, 4)
    assert card.inputs[2].tensor_shape(5) == (5, 2, 3)


def test_variable_names_unique_across_inputs():
    d = copy.deepcopy(CARD)
    d["inputs"][2]["variables"] = ["bio1", "b", "c", "d", "red", "f"]
    assert ModelCard.from_dict(d).variable_names() == ["bio1", "bio12", "red", "nir", "b", "c", "d", "f"]


def test_normalise_point_values():
    spec = ModelCard.from_dict(CARD).inputs[0]
    x = np.array([[12.0, 900.0], [np.nan, 600.0]], dtype=np.float64)
    out = spec.normalise(x)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0], [1.0, 1.0])
    assert np.isnan(out[1, 0]) and out[1, 1] == pytest.approx(-2.0)


def test_normalise_patch_channel_axis():
    spec = InputSpec(
        "p", "patch", bands=("r", "n"), size=2, pixel_size_m=10, scale=2.0, mean=(1, 3), std=(1, 2)
    )
    x = np.arange(16, dtype=np.float32).reshape(2, 2, 2, 2)
    expected = (x * 2.0 - np.array([1, 3]).reshape(1, 2, 1, 1)) / np.array([1, 2]).reshape(1, 2, 1, 1)
    np.testing.assert_allclose(spec.normalise(x), expected)


def test_normalise_cube_per_variable_and_per_first_axis():
    per_var = InputSpec("c", "cube", variables=tuple("abcdef"), shape=(2, 3), mean=tuple(range(6)))
    x = np.ones((1, 2, 3), dtype=np.float32)
    np.testing.assert_allclose(per_var.normalise(x)[0], 1 - np.arange(6).reshape(2, 3))
    # the same card applied to the still-flat [N, V] rows
    np.testing.assert_allclose(per_var.normalise(np.ones((1, 6)))[0], 1 - np.arange(6))
    per_axis = InputSpec("c", "cube", variables=tuple("abcdef"), shape=(2, 3), std=(1.0, 4.0))
    np.testing.assert_allclose(per_axis.normalise(np.full((1, 2, 3), 8.0))[0], [[8, 8, 8], [2, 2, 2]])


def test_prepare_fill_and_validity():
    spec = InputSpec("e", "point", variables=("a", "b"), mean=(1, 1))
    tensor, valid = spec.prepare(np.array([[2, 3], [np.nan, 3]], dtype=np.float32))
    assert valid.tolist() == [True, False]
    np.testing.assert_allclose(tensor[0], [1, 2])
    filled = InputSpec("e", "point", variables=("a", "b"), mean=(1, 1), fill=5.0)
    tensor, valid = filled.prepare(np.array([[np.nan, 3]], dtype=np.float32))
    assert valid.tolist() == [True]
    np.testing.assert_allclose(tensor[0], [4, 2])  # fill is a raw value, normalised like the others
    cube = InputSpec("c", "cube", variables=tuple("abcdef"), shape=(2, 3))
    tensor, valid = cube.prepare(np.arange(12, dtype=np.float32).reshape(2, 6))
    np.testing.assert_array_equal(tensor[1], np.arange(6, 12).reshape(2, 3))


def test_prepare_flat_cube_rows_with_stats_per_first_axis():
    """[N, V] cube rows with mean/std per first axis: reshaped to [N, *shape] before normalising."""
    cube = InputSpec("c", "cube", variables=tuple("abcdef"), shape=(2, 3), mean=(1.0, 2.0), std=(2.0, 4.0))
    raw = np.array([[3, 5, 7, 10, 14, 18], [1, 1, 1, np.nan, 2, 2]], dtype=np.float32)
    tensor, valid = cube.prepare(raw)
    assert tensor.shape == (2, 2, 3) and tensor.dtype == np.float32
    np.testing.assert_allclose(tensor[0], [[1, 2, 3], [2, 3, 4]])
    assert valid.tolist() == [True, False]
    per_var = InputSpec("c", "cube", variables=tuple("abcdef"), shape=(2, 3), mean=tuple(range(6)))
    tensor, _ = per_var.prepare(np.full((1, 6), 10.0, dtype=np.float32))
    np.testing.assert_allclose(tensor[0], 10 - np.arange(6).reshape(2, 3))


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.update(format="geoplant-onnx/2"), "'format'"),
        (lambda d: d.pop("species"), "'species'"),
        (lambda d: d["species"][1].update(id="x"), "'species[1].id'"),
        (lambda d: d["species"][1].update(id=11), "'species[1].id'"),
        (lambda d: d["species"][0].pop("name"), "'species[0].name'"),
        (lambda d: d["output"].update(activation="relu"), "'output.activation'"),
        (lambda d: d["output"].pop("name"), "'output.name'"),
        (lambda d: d.update(inputs=[]), "'inputs'"),
        (lambda d: d["inputs"][0].update(kind="vector"), "'inputs[0].kind'"),
        (lambda d: d["inputs"][0].update(variables=[]), "'inputs[0].variables'"),
        (lambda d: d["inputs"][0].update(variables=["a", "a"]), "'inputs[0].variables'"),
        (lambda d: d["inputs"][0].update(mean=[1, 2, 3]), "'inputs[0].mean'"),
        (lambda d: d["inputs"][0].update(std=[1, 0]), "'inputs[0].std'"),
        (lambda d: d["inputs"][0].update(fill="zero"), "'inputs[0].fill'"),
        (lambda d: d["inputs"][0].update(scale=0), "'inputs[0].scale'"),
        (lambda d: d["inputs"][0].update(colour=1), "'inputs[0].colour'"),
        (lambda d: d["inputs"][1].update(size=0), "'inputs[1].size'"),
        (lambda d: d["inputs"][1].update(size=2.5), "'inputs[1].size'"),
        (lambda d: d["inputs"][1].pop("pixel_size_m"), "'inputs[1].pixel_size_m'"),
        (lambda d: d["inputs"][1].pop("bands"), "'inputs[1].bands'"),
        (lambda d: d["inputs"][2].update(shape=[2, 2]), "'inputs[2].variables'"),
        (lambda d: d["inputs"][2].update(shape=[2, -3]), "'inputs[2].shape'"),
        (lambda d: d["inputs"][2].update(name="env"), "'inputs[2].name'"),
        (lambda d: d["grid"].update(cell_size_m=-1), "'grid.cell_size_m'"),
        (lambda d: d["grid"].pop("crs"), "'grid.crs'"),
    ],
)
def test_invalid_cards_name_the_field(mutate, field):
    d = copy.deepcopy(CARD)
    mutate(d)
    with pytest.raises(ModelCardError) as info:
        ModelCard.from_dict(d)
    assert field in str(info.value)
    assert "model-contract.md" in str(info.value)


def test_select_species():
    card = ModelCard.from_dict(CARD)
    assert card.select_species("") == [0, 1]
    assert card.select_species(None) == [0, 1]
    assert card.select_species("7") == [1]
    assert card.select_species("pinus PINEA, 11") == [1, 0]
    assert card.select_species([11, "7", 11]) == [0, 1]
    with pytest.raises(ModelCardError, match=r"Unknown species: 3, Abies alba"):
        card.select_species("3, 7, Abies alba")


def test_select_species_ids_must_be_whole_numbers():
    """'7.9' is not species 7 (no truncation) and 'inf' is an unknown name, not a crash."""
    card = ModelCard.from_dict(CARD)
    assert card.select_species("7.0, 11") == [1, 0]
    assert card.select_species([7.0]) == [1]
    with pytest.raises(ModelCardError, match=r"Unknown species: 7\.9, inf, nan"):
        card.select_species("7.9, inf, nan")
    with pytest.raises(ModelCardError, match=r"Unknown species: 11\.5"):
        card.select_species([11.5])


def test_read_model_card(tmp_path):
    path = save(make_model(GOOD_INPUTS, GOOD_OUTPUTS), tmp_path)
    card = read_model_card(path)
    assert card == ModelCard.from_dict(CARD)


def test_embed_replaces_existing_card(tmp_path):
    model = make_model(GOOD_INPUTS, GOOD_OUTPUTS)
    d = copy.deepcopy(CARD)
    d["name"] = "second"
    embed_model_card(model, ModelCard.from_dict(d))
    assert [p.key for p in model.metadata_props].count(METADATA_KEY) == 1
    assert read_model_card(save(model, tmp_path)).name == "second"


def test_fixed_dims_that_match_are_accepted(tmp_path):
    inputs = [("env", [None, 2]), ("s2", ["b", 2, 4, 4]), ("clim", [3, 2, 3])]
    assert read_model_card(save(make_model(inputs, [("logits", [None, 2])]), tmp_path)).name == "tiny"


def test_no_card(tmp_path):
    path = save(make_model(GOOD_INPUTS, GOOD_OUTPUTS, card=None), tmp_path)
    with pytest.raises(ModelCardError, match=r"This model has no 'geoplant' card .*docs/model-contract.md"):
        read_model_card(path)


def test_not_onnx(tmp_path):
    path = tmp_path / "fake.onnx"
    path.write_text("not a model")
    with pytest.raises(ModelCardError, match=r"'fake.onnx' is not an ONNX model"):
        read_model_card(path)
    with pytest.raises(ModelCardError, match="Model file not found"):
        read_model_card(tmp_path / "missing.onnx")


def test_invalid_json_and_wrong_format(tmp_path):
    model = make_model(GOOD_INPUTS, GOOD_OUTPUTS, card=None)
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, "{not json"
    with pytest.raises(ModelCardError, match="not valid JSON"):
        read_model_card(save(model, tmp_path))
    d = copy.deepcopy(CARD)
    d["format"] = "other/3"
    with pytest.raises(ModelCardError, match=r"'format' must be 'geoplant-onnx/1', not 'other/3'"):
        read_model_card(save(make_model(GOOD_INPUTS, GOOD_OUTPUTS, card=d), tmp_path, "b.onnx"))


@pytest.mark.parametrize(
    ("inputs", "outputs", "message"),
    [
        (GOOD_INPUTS[:2], GOOD_OUTPUTS, "card inputs clim are not inputs of the graph"),
        (
            GOOD_INPUTS + [("extra", ["N", 1])],
            GOOD_OUTPUTS,
            "graph inputs extra are not described in the card",
        ),
        (
            [("env", ["N", 2]), ("s2", ["N", 2, 4]), ("clim", ["N", 2, 3])],
            GOOD_OUTPUTS,
            "input 's2' (patch) must have rank 4",
        ),
        (
            [("env", ["N", 2]), ("s2", ["N", 2, 8, 8]), ("clim", ["N", 2, 3])],
            GOOD_OUTPUTS,
            "input 's2' axis 2 is 8",
        ),
        (
            [("env", ["N", 2]), ("s2", ["N", 2, 4, 4]), ("clim", ["N", 3, 2])],
            GOOD_OUTPUTS,
            "input 'clim' axis 1 is 3",
        ),
        (GOOD_INPUTS, [("probs", ["N", 2])], "output 'logits' is not an output of the graph"),
    ],
)
def test_card_not_matching_graph(tmp_path, inputs, outputs, message):
    model = make_model(inputs, outputs)  # CARD's output is "logits"
    with pytest.raises(ModelCardError, match="does not match its graph") as info:
        read_model_card(save(model, tmp_path))
    assert message in str(info.value)


def test_species_count_mismatch(tmp_path):
    d = copy.deepcopy(CARD)
    d["species"].append({"id": 99, "name": "Abies alba"})
    model = make_model(GOOD_INPUTS, GOOD_OUTPUTS, card=d)
    with pytest.raises(ModelCardError, match="output 'logits' has 2 columns but the card lists 3 species"):
        read_model_card(save(model, tmp_path))


def test_env_mismatch_point_variables(tmp_path):
    d = copy.deepcopy(CARD)
    d["inputs"][0]["variables"] = ["bio1", "bio12", "bio5"]
    d["inputs"][0].pop("mean")
    d["inputs"][0].pop("std")
    model = make_model([("env", ["N", 2]), GOOD_INPUTS[1], GOOD_INPUTS[2]], GOOD_OUTPUTS, card=d)
    with pytest.raises(ModelCardError, match="input 'env' axis 1 is 2 in the graph but the card implies 3"):
        read_model_card(save(model, tmp_path))
