"""The bundled demo model: a valid geoplant-onnx/1 card that matches its graph."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from geoplant_qgis.core.bundled import default_model_path
from geoplant_qgis.core.modelcard import read_model_card

pytestmark = pytest.mark.core

WORLD_VARIABLES = ("Bio1", "Bio4", "Bio12", "Elevation", "Soilgrid-phh2o", "LandCover", "HumanFootprint")


@pytest.fixture(scope="module")
def model_path():
    path = default_model_path()
    assert path is not None and path.endswith("geoplant_demo.onnx"), "the demo model is not bundled"
    return path


def test_card_is_complete(model_path):
    card = read_model_card(model_path)  # validates the card and checks it against the graph
    assert card.format == "geoplant-onnx/1"
    assert len(card.species) == 120 and len({s.id for s in card.species}) == 120
    assert card.output.name == "logits" and card.output.activation == "sigmoid"
    point, patch = card.inputs
    assert (point.name, point.kind, point.variables) == ("point", "point", WORLD_VARIABLES)
    assert (patch.name, patch.kind, patch.bands) == ("patch", "patch", ("red", "green", "blue", "nir"))
    assert (patch.size, patch.pixel_size_m, patch.scale) == (64, 10.0, 1e-4)
    for spec, n in ((point, 7), (patch, 4)):
        assert len(spec.mean) == n and len(spec.std) == n
        assert all(np.isfinite(spec.mean)) and min(spec.std) > 0
    assert (card.grid.crs, card.grid.cell_size_m) == ("EPSG:3035", 100.0)
    assert card.name and card.description and card.license
    assert os.path.getsize(model_path) < 5 * 1024 * 1024


def test_graph_matches_card_and_batch_is_dynamic(model_path):
    onnx = pytest.importorskip("onnx")
    import onnxruntime as ort

    proto = onnx.load(model_path)
    assert {o.domain or "ai.onnx": o.version for o in proto.opset_import}["ai.onnx"] == 17
    meta = {p.key: p.value for p in proto.metadata_props}
    card = json.loads(meta["geoplant"])
    inputs = {i.name: i for i in proto.graph.input}
    assert set(inputs) == {i["name"] for i in card["inputs"]}
    dims = {n: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for n, i in inputs.items()}
    assert dims["point"][1:] == [7] and dims["patch"][1:] == [4, 64, 64]
    assert isinstance(dims["point"][0], str) and isinstance(dims["patch"][0], str)  # symbolic batch
    out = proto.graph.output[0]
    assert out.name == card["output"]["name"]
    assert out.type.tensor_type.shape.dim[1].dim_value == len(card["species"])

    # any batch size; each row depends on its own inputs only
    rng = np.random.default_rng(0)
    point = rng.normal(size=(5, 7)).astype(np.float32)
    patch = rng.normal(size=(5, 4, 64, 64)).astype(np.float32)
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    together = session.run(None, {"point": point, "patch": patch})[0]
    assert together.shape == (5, 120) and together.dtype == np.float32
    for i in (0, 4):
        alone = session.run(None, {"point": point[i : i + 1], "patch": patch[i : i + 1]})[0]
        np.testing.assert_allclose(alone[0], together[i], rtol=1e-5, atol=1e-5)
    # it is a multimodal model: both inputs change the answer
    other_patch = patch.copy()
    other_patch[0] += 1.0
    other_point = point.copy()
    other_point[0] += 1.0
    assert np.abs(session.run(None, {"point": point, "patch": other_patch})[0][0] - together[0]).max() > 1e-3
    assert np.abs(session.run(None, {"point": other_point, "patch": patch})[0][0] - together[0]).max() > 1e-3
