"""core.estimate: cells, bytes and time of a run before it starts."""

from __future__ import annotations

import math

import pytest
from tiny_models import save_linear_point_model

from geoplant_qgis.core import estimate
from geoplant_qgis.core.errors import InputDataError, ModelCardError

pytestmark = pytest.mark.core


@pytest.fixture
def tiny_model(tmp_path):
    return save_linear_point_model(tmp_path / "tiny.onnx")


def test_grid_size_is_the_engines_snapped_grid():
    assert estimate.grid_size((0, 0, 1000, 500), None, "EPSG:3035", 100) == (10, 5, 50)
    # origin snapped down, far corner up: 50..1050 -> 0..1100, 50..550 -> 0..600
    assert estimate.grid_size((50, 50, 1050, 550), "EPSG:3035", "EPSG:3035", 100) == (11, 6, 66)
    assert estimate.grid_size((0, 0, 1000, 500), None, "EPSG:3035", 250) == (4, 2, 8)


def test_grid_size_refuses_a_geographic_grid_crs():
    with pytest.raises(InputDataError, match="(?i)projected|degrees"):
        estimate.grid_size((3.0, 43.0, 3.5, 43.5), "EPSG:4326", "EPSG:4326", 100)


def test_output_bytes_counts_four_bytes_per_band_plus_overviews():
    assert estimate.output_bands(True, 3, 2) == 6
    assert estimate.output_bands(False, 0, 0) == 0
    # 100 cells x 6 bands x 4 bytes = 2400, overviews add a third
    assert estimate.output_bytes(100, True, 3, 2) == 3200
    assert estimate.output_bytes(100, False, 0, 0) == 0
    assert estimate.output_bytes(1, True, 0, 0) == math.ceil(4 * 4 / 3)


def test_expected_seconds_is_model_time_times_overhead():
    assert estimate.expected_seconds(1000, 0.001) == pytest.approx(1.25)
    assert estimate.expected_seconds(1000, 0.001, overhead=1.0) == pytest.approx(1.0)
    assert estimate.expected_seconds(1000, None) is None


def test_estimate_run_numbers_and_warnings():
    result = estimate.estimate_run(20, 10, richness=True, top_k=5, probabilities=0, seconds_per_cell=0.01)
    assert (result.width, result.height, result.cells) == (20, 10, 200)
    assert result.bytes == 6400  # (1 + 5 bands) x 200 cells x 4 bytes x 4/3 (overviews)
    assert result.seconds == pytest.approx(200 * 0.01 * 1.25)
    assert result.warnings == ()

    big = estimate.estimate_run(10_000, 10_000, top_k=25, seconds_per_cell=1e-4, cell_limit=1_000_000)
    assert any("100,000,000 cells is more than 1,000,000" in w for w in big.warnings)
    assert any("may take about" in w for w in big.warnings)

    full = estimate.estimate_run(100, 100, top_k=25, free_bytes=1000)
    assert any("only 1000 bytes is free" in w for w in full.warnings)

    bands = estimate.estimate_run(1, 1, richness=False, probabilities=70_000)
    assert any("65,535 bands" in w for w in bands.warnings)


def test_time_model_measures_a_positive_time_per_cell(tiny_model):
    seconds = estimate.time_model(tiny_model, batch=64, repeats=2)
    assert math.isfinite(seconds) and 0 < seconds < 1.0


def test_time_model_on_a_file_that_is_not_a_model(tmp_path):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ModelCardError, match="onnxruntime cannot load the model"):
        estimate.time_model(bad)


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "0 bytes"), (1023, "1023 bytes"), (1536, "1.5 KB"), (5 * 1024**3, "5.0 GB")],
)
def test_format_bytes(value, text):
    assert estimate.format_bytes(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [(None, "unknown"), (0.2, "under 1 s"), (42, "42 s"), (75, "1 min 15 s"), (3 * 3600 + 120, "3 h 02 min")],
)
def test_format_duration(value, text):
    assert estimate.format_duration(value) == text
