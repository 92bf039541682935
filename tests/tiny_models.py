"""Tiny hand-made ONNX models with known weights, for tests."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from geoplant_qgis.core.modelcard import ModelCard


def linear_point_model(
    weights=None, bias=None, variables=("Bio1", "Bio12"), activation="sigmoid", species=None
):
    """logits = x @ W + b over point variables. Returns (onnx ModelProto, ModelCard)."""
    weights = np.asarray(
        weights if weights is not None else [[0.5, -1.0, 0.0], [0.25, 0.5, -2.0]], dtype=np.float32
    )
    bias = np.asarray(bias if bias is not None else np.zeros(weights.shape[1]), dtype=np.float32)
    n_vars, n_species = weights.shape
    assert n_vars == len(variables)
    species = species or [{"id": 100 + i, "name": f"Species {i}"} for i in range(n_species)]
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["env", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["logits"])],
        "linear",
        [helper.make_tensor_value_info("env", TensorProto.FLOAT, ["N", n_vars])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", n_species])],
        [numpy_helper.from_array(weights, "W"), numpy_helper.from_array(bias, "b")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    card = ModelCard.from_dict(
        {
            "format": "geoplant-onnx/1",
            "name": "tiny linear",
            "species": species,
            "output": {"name": "logits", "activation": activation},
            "inputs": [{"name": "env", "kind": "point", "variables": list(variables)}],
            "grid": {"crs": "EPSG:3035", "cell_size_m": 100},
        }
    )
    return model, card


def save_linear_point_model(path, **kwargs) -> str:
    """:func:`linear_point_model` with its card embedded, saved to ``path``; the path."""
    from geoplant_qgis.core.modelcard import embed_model_card

    model, card = linear_point_model(**kwargs)
    onnx.save(embed_model_card(model, card), str(path))
    return str(path)
