"""Models with external data (how models over 2 GB keep their weights) run fused, same values.

A protobuf message cannot exceed 2 GB, so real GeoPlant models with their weights near that
size come as ``model.onnx`` + a data file next to it. The graph edits
(:mod:`geoplant_qgis.core.postprocess`) work on the model file's own bytes, the weights stay
in their file, and the fused session is told the model's folder: the same single session
and the same values as the model saved in one file.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import rasterio
from rasterio.transform import from_origin
from tiny_models import linear_point_model

from geoplant_qgis.core import engine, postprocess
from geoplant_qgis.core.modelcard import ModelCard, embed_model_card

WEIGHTS = np.array([[0.8, -0.5, 0.0, 0.3, -1.2], [0.6, 0.9, 0.2, -0.4, 0.1]], np.float32)
BIAS = np.array([0.1, -0.2, 0.05, 0.0, 0.3], np.float32)
MEAN, STD = np.array([10.0, 200.0]), np.array([5.0, 80.0])
IDS = [10, 3, 7, 42, 1]


def save_models(folder):
    """The same model (card with a normalisation) saved in one file and with external data."""
    model, card = linear_point_model(
        WEIGHTS, BIAS, variables=("bio1", "elev"), species=[{"id": i, "name": f"Species {i}"} for i in IDS]
    )
    d = card.to_dict()
    d["inputs"][0].update(mean=MEAN.tolist(), std=STD.tolist())
    embed_model_card(model, ModelCard.from_dict(d))
    plain, external = folder / "plain" / "m.onnx", folder / "external" / "m.onnx"
    plain.parent.mkdir()
    external.parent.mkdir()
    onnx.save_model(model, plain)
    onnx.save_model(
        model, external, save_as_external_data=True, all_tensors_to_one_file=True, location="m.weights",
        size_threshold=0,
    )  # fmt: skip
    return str(plain), str(external)


def probabilities(x):
    z = (np.asarray(x, np.float64) - MEAN) / STD
    return 1.0 / (1.0 + np.exp(-(z @ WEIGHTS.astype(np.float64) + BIAS)))


def test_the_weights_really_are_outside(tmp_path):
    _, external = save_models(tmp_path)
    proto = onnx.load(external, load_external_data=False)
    assert all(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)
    assert (tmp_path / "external" / "m.weights").stat().st_size == 4 * (WEIGHTS.size + BIAS.size)
    data = (tmp_path / "external" / "m.onnx").read_bytes()
    assert postprocess.uses_external_data(data)
    assert not postprocess.uses_external_data((tmp_path / "plain" / "m.onnx").read_bytes())
    # the graph edits leave them there: references, not values
    fused = postprocess.append_postprocess(
        postprocess.prepend_normalisation(data, [("env", 1 / STD, -MEAN / STD)]),
        "logits", 5, "sigmoid", species_ids=IDS, top_k=2, richness=True,
    )  # fmt: skip
    assert postprocess.uses_external_data(fused)
    assert len(fused) < len(data) + 2000


def test_pipeline_on_external_data_is_fused_and_equal(tmp_path):
    plain, external = save_models(tmp_path)
    x = np.random.default_rng(3).normal(size=(300, 2)) * [5.0, 80.0] + [10.0, 200.0]
    x = x.astype(np.float32)
    p = probabilities(x)
    outs = []
    for path in (plain, external):
        with engine.LoadedModel(path).pipeline(
            [4, 0, 2], top_k=2, richness=True, threshold=0.4, probabilities=True
        ) as pipeline:
            assert pipeline.fused and pipeline.graph_normalises == {"env"}
            outs.append(pipeline.run({"env": x}))
    for key in ("probabilities", "richness", "topk"):
        np.testing.assert_array_equal(outs[1][key], outs[0][key])
    np.testing.assert_allclose(outs[1]["probabilities"], p[:, [4, 0, 2]], rtol=1e-5, atol=1e-7)
    np.testing.assert_array_equal(
        outs[1]["topk"], np.array(IDS)[np.argsort(-p, axis=1, kind="stable")[:, :2]]
    )


def write_raster(path, data, transform):
    with rasterio.open(
        path, "w", driver="GTiff", width=data.shape[1], height=data.shape[0], count=1, dtype=data.dtype,
        crs="EPSG:3035", transform=transform,
    ) as dst:  # fmt: skip
        dst.write(data, 1)
    return str(path)


@pytest.mark.parametrize("top_k", [2, 0])
def test_predict_with_external_data_writes_the_same_rasters(tmp_path, top_k):
    """Through engine.predict (grouped top-K, richness, probabilities): identical GeoTIFFs."""
    plain, external = save_models(tmp_path)
    rows, cols = np.mgrid[0:40, 0:50]
    bio1, elev = (rows * 0.4 + cols * 0.1).astype(np.float32), (100 + rows * 3 + cols * 5).astype(np.float32)
    transform = from_origin(0, 4000, 100, 100)
    rasters = [
        write_raster(tmp_path / "bio1.tif", bio1, transform),
        write_raster(tmp_path / "elev.tif", elev, transform),
    ]
    read = {}
    for label, path in (("plain", plain), ("external", external)):
        out = tmp_path / f"out_{label}"
        out.mkdir()
        outputs = {"output_richness": str(out / "richness.tif"), "output_probabilities": str(out / "p.tif")}
        if top_k:
            outputs["output_topk"] = str(out / "topk.tif")
        engine.predict(
            path, rasters, extent=(0, 0, 5000, 4000), crs="EPSG:3035", cell_size=100, top_k=top_k, **outputs
        )
        read[label] = {}
        for key, file in outputs.items():
            with rasterio.open(file) as src:
                read[label][key] = src.read()
    for key, values in read["plain"].items():
        np.testing.assert_array_equal(read["external"][key], values, err_msg=key)
    # and they are the model's values: cell centres sample the pixel they fall in
    p = probabilities(np.stack([bio1.ravel(), elev.ravel()], axis=1))
    np.testing.assert_allclose(read["external"]["output_richness"][0].ravel(), p.sum(axis=1), rtol=1e-5)
    np.testing.assert_allclose(
        read["external"]["output_probabilities"].reshape(5, -1).T, p, rtol=1e-5, atol=1e-7
    )
