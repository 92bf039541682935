"""core.predict: the request checked once, its estimate, and the runner's threads and errors."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
import test_engine
from test_engine import EXTENT, POINT_INPUT, B, CancelAfter, Recorder, W, make_model

from geoplant_qgis.core import geotiff, modelcard
from geoplant_qgis.core.errors import (
    CancelledError,
    GeoPlantError,
    InputDataError,
    ModelCardError,
    OutputError,
)
from geoplant_qgis.core.predict import Area, Extent, PredictRequest, run
from geoplant_qgis.core.predict.inference import Pipeline
from geoplant_qgis.core.predict.outputs import species_id_of_band, topk_palette, topk_style_qml

climate = test_engine.climate


def build(model, climate, tmp_path, **kwargs):
    kwargs.setdefault("extent", Extent(*EXTENT, "EPSG:3035"))
    kwargs.setdefault("cell_size", 1000)
    kwargs.setdefault("outputs", {"richness": str(tmp_path / "r.tif")})
    return PredictRequest.build(model, climate, **kwargs)


def geoplant_threads():
    return [t for t in threading.enumerate() if t.name.startswith("geoplant")]


# --- the request ----------------------------------------------------------------------


def test_request_is_checked_once_and_frozen(tmp_path, climate, monkeypatch):
    model = make_model(tmp_path / "m.onnx", [POINT_INPUT], W, B)
    reads = []
    real = modelcard.read_model_card
    monkeypatch.setattr(modelcard, "read_model_card", lambda *a, **k: reads.append(1) or real(*a, **k))
    request = build(model, climate, tmp_path, top_k=99, outputs={"topk": str(tmp_path / "t.tif")})
    assert len(reads) == 1  # the card read once, by build
    assert request.top_k == 5 and any("TOP_K 99" in w for w in request.warnings)
    assert (request.grid.width, request.grid.height) == (12, 8)
    assert request.outputs == {"topk": str(tmp_path / "t.tif")}
    with pytest.raises(AttributeError):
        request.top_k = 3  # type: ignore[misc]
    progress = Recorder()
    result = run(request, progress)
    assert len(reads) == 1  # nothing downstream reads or checks the card again
    assert progress.warnings == [request.warnings[0]]
    assert result.outputs == {"topk": str(tmp_path / "t.tif")} and os.path.exists(tmp_path / "t.tif")


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"outputs": {}}, OutputError, "No output requested"),
        ({"outputs": {"richness": "a.tif", "topk": "a.tif"}}, OutputError, "same file name"),
        ({"extent": None}, InputDataError, "Give an EXTENT or an AREA"),
        ({"extent": (3, 2, 1, 4)}, InputDataError, "EXTENT is inverted"),
        ({"threshold": 1.5}, InputDataError, "THRESHOLD"),
        ({"top_k": 0, "outputs": {"topk": "t.tif"}}, InputDataError, "TOP_K is 0"),
        ({"species": "10,999"}, ModelCardError, "Unknown species: 999"),
        ({"cell_size": -5}, InputDataError, "CELL_SIZE"),
        ({"block_cells": 0}, InputDataError, "block_cells"),
        ({"max_cells": 10}, InputDataError, "MAX_CELLS"),
    ],
)
def test_a_bad_request_is_refused_in_plain_words(tmp_path, climate, kwargs, error, words):
    model = make_model(tmp_path / "m.onnx", [POINT_INPUT], W, B)
    with pytest.raises(error, match=words) as caught:
        build(model, climate, tmp_path, **kwargs)
    assert isinstance(caught.value, GeoPlantError)
    assert not os.path.exists(tmp_path / "r.tif")


def test_an_output_that_is_an_input_is_refused_by_build(tmp_path, climate):
    model = make_model(tmp_path / "m.onnx", [POINT_INPUT], W, B)
    with pytest.raises(OutputError, match="is the same file as RASTERS"):
        build(model, climate, tmp_path, outputs={"richness": climate[0]})


def test_area_and_mapping_are_typed(tmp_path, climate):
    from geoplant_qgis.core.sources import BandRef

    model = make_model(tmp_path / "m.onnx", [POINT_INPUT], W, B)
    x0, y0, x1, y1 = EXTENT
    square = {"type": "Polygon", "coordinates": [[(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]]}
    bio1, elev = climate
    request = build(
        model,
        [],
        tmp_path,
        extent=None,
        area=Area((square,), "EPSG:3035"),
        mapping={"bio1": BandRef(bio1), "elev": BandRef(elev, 1)},
    )
    assert request.area is not None and request.area[0]["type"] == "Polygon"
    assert request.mapping["elev"] == BandRef(elev, 1)
    assert (request.grid.width, request.grid.height) == (12, 8)
    assert run(request).valid_cells > 0


def test_estimate_counts_bands_per_file(tmp_path, climate):
    """The GeoTIFF band limit is per file: 40,000 top-K bands + 40,000 probability bands
    are two files under the limit, not one of 80,000 bands."""
    from geoplant_qgis.core.estimate import estimate_run

    fine = estimate_run(10, 10, richness=True, top_k=40_000, probabilities=40_000)
    assert not any("65,535 bands" in w for w in fine.warnings)
    over = estimate_run(10, 10, richness=False, top_k=3, probabilities=70_000)
    assert [w for w in over.warnings if "65,535 bands" in w] == [
        "The probabilities raster would have 70,000 bands: a GeoTIFF holds at most 65,535 bands. "
        "Choose fewer species or a smaller TOP_K."
    ]
    model = make_model(tmp_path / "m.onnx", [POINT_INPUT], W, B)
    request = build(
        model,
        climate,
        tmp_path,
        outputs={"topk": str(tmp_path / "t.tif"), "probabilities": str(tmp_path / "p.tif")},
        top_k=2,
        species="10,3",
    )
    assert request.bands() == {"topk": 2, "probabilities": 2}
    estimate = request.estimate()
    assert (estimate.width, estimate.height, estimate.cells) == (12, 8, 96)
    assert estimate.bytes == geotiff.estimate_bytes(96, 1, 4, "float32")
    assert estimate.seconds is None and estimate.refusal is None


def test_estimate_words_the_refusal_without_timing_the_model(tmp_path, climate, monkeypatch):
    from geoplant_qgis.core.predict import model as model_stage

    def no_timing(*args, **kwargs):
        raise AssertionError("the model was timed")

    monkeypatch.setattr(model_stage, "seconds_per_row", no_timing)
    model = make_model(tmp_path / "m.onnx", [POINT_INPUT], W, B)
    request = build(model, climate, tmp_path, max_cells=50, check_limit=False)
    estimate = request.estimate(seconds_per_cell=1e-6)
    assert estimate.refusal and "MAX_CELLS" in estimate.refusal and estimate.warnings[0] == estimate.refusal
    with pytest.raises(InputDataError, match="MAX_CELLS"):
        build(model, climate, tmp_path, max_cells=50, seconds_per_cell=1e-6)


def test_one_topk_palette_for_the_qml_and_the_styles():
    species = [(10, "Quercus ilex"), (3, "Pinus"), (7, "Olea")]
    palette = topk_palette(species)
    assert [p[0] for p in palette] == [10, 3, 7] and all(len(p[1]) == 7 for p in palette)
    assert len({p[1] for p in palette}) == 3
    assert [species_id_of_band(label) for _, _, label in palette] == [10, 3, 7]
    qml = topk_style_qml(species)
    assert all(f'color="{colour}"' in qml for _, colour, _ in palette)


# --- the runner -----------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_a_writer_error_reaches_the_caller_once(tmp_path, climate, monkeypatch):
    model = make_model(tmp_path / "m.onnx", [POINT_INPUT], W, B)
    out = tmp_path / "out"
    out.mkdir()
    real = geotiff.GeoTiffWriter.write
    failures = []

    def failing(self, array, row_off, col_off=0):
        if row_off > 0 or col_off > 0:
            failures.append(1)
            raise OutputError("The disk is full.")
        return real(self, array, row_off, col_off)

    monkeypatch.setattr(geotiff.GeoTiffWriter, "write", failing)
    request = build(model, climate, out, block_cells=5, outputs={"richness": str(out / "r.tif")})
    before = set(geoplant_threads())
    with pytest.raises(OutputError, match="The disk is full") as caught:
        run(request)
    assert len(failures) == 1  # the writer stops writing after its first error
    assert caught.value.__context__ is None or not isinstance(caught.value.__context__, OutputError)
    assert os.listdir(out) == []
    assert set(geoplant_threads()) <= before


@pytest.mark.timeout(60)
def test_an_inference_error_reaches_the_caller_once(tmp_path, climate, monkeypatch):
    model = make_model(tmp_path / "m.onnx", [POINT_INPUT], W, B)
    out = tmp_path / "out"
    out.mkdir()
    calls = []
    real = Pipeline.submit

    def submit(self, feeds, micro_batch=None):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("onnxruntime failed")
        return real(self, feeds, micro_batch)

    monkeypatch.setattr(Pipeline, "submit", submit)
    request = build(model, climate, out, block_cells=5, outputs={"richness": str(out / "r.tif")})
    with pytest.raises(RuntimeError, match="onnxruntime failed"):
        run(request)
    assert len(calls) == 3 and os.listdir(out) == []
    assert not geoplant_threads()


@pytest.mark.timeout(60)
def test_cancel_mid_run_cleans_up_and_leaves_no_thread(tmp_path, climate):
    model = make_model(tmp_path / "m.onnx", [POINT_INPUT], W, B)
    out = tmp_path / "out"
    out.mkdir()
    (out / "r.tif").write_bytes(b"previous")
    request = build(model, climate, out, block_cells=5, outputs={"richness": str(out / "r.tif")})
    progress = CancelAfter(4)
    with pytest.raises(CancelledError):
        run(request, progress)
    assert progress.calls == 4
    assert os.listdir(out) == ["r.tif"] and (out / "r.tif").read_bytes() == b"previous"
    assert not geoplant_threads()


def test_no_thread_left_alive_after_predict_returns(tmp_path, climate):
    model = make_model(tmp_path / "m.onnx", [POINT_INPUT], W, B)
    request = build(model, climate, tmp_path, block_cells=7)
    result = run(request)
    assert result.valid_cells > 0
    assert not geoplant_threads(), geoplant_threads()
    with __import__("rasterio").open(tmp_path / "r.tif") as src:
        assert np.isfinite(src.read(1, masked=True)).any()
