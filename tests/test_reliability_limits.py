"""Issue #10 part 3: requests that cannot finish are refused up front, with the numbers.

The issue's request: EXTENT='2500000,6000000,1500000,5000000 [EPSG:3035]' at CELL_SIZE=100,
a 35,000 x 35,000 = 1,225,000,000-cell grid. predict, sampleenvironment and extractpatches
must refuse it in a moment (not sit at 0 %), say cells, disk, time and the limit, suggest a
cell size that fits, and write nothing. MAX_CELLS (parameter, ``max_cells=``) and the
environment variables GEOPLANT_MAX_CELLS / GEOPLANT_MAX_PATCHES raise or lower the limit.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pandas as pd
import pytest
import rasterio
import test_engine
from filestate import snapshot
from rasterio.transform import from_origin
from test_engine import EXTENT, POINT_INPUT, B, W, check_outputs, expected_point_probs, make_model, snapped

from geoplant_qgis.core import estimate, limits
from geoplant_qgis.core.errors import InputDataError
from geoplant_qgis.core.grid import make_grid

pytestmark = pytest.mark.core

climate = test_engine.climate  # two point-variable rasters around Montpellier (EPSG:3035 extent)

ISSUE_EXTENT_TEXT = "2500000,6000000,1500000,5000000 [EPSG:3035]"  # QGIS order: xmin,xmax,ymin,ymax
ISSUE_EXTENT = (2_500_000.0, 1_500_000.0, 6_000_000.0, 5_000_000.0)  # xmin, ymin, xmax, ymax
ISSUE_CELLS = "1,225,000,000"
FAST = 10.0  # seconds: "refused up front", not a benchmark

X0, Y0 = 3_826_000.0, 2_298_000.0  # a small LAEA raster for sampling and patches


@pytest.fixture(autouse=True)
def no_limit_from_the_environment(monkeypatch):
    monkeypatch.delenv(limits.ENV_MAX_CELLS, raising=False)
    monkeypatch.delenv(limits.ENV_MAX_PATCHES, raising=False)


@pytest.fixture
def out(tmp_path):
    """An output folder that already holds a file of the user's (it must stay as it is)."""
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "keep.txt").write_text("the user's own file\n")
    return folder


@pytest.fixture
def laea(tmp_path):
    """A 2 km x 2 km raster at 10 m in EPSG:3035: bands red, green, blue, nir (int16)."""
    path = tmp_path / "src" / "s2.tif"
    path.parent.mkdir(exist_ok=True)
    r, c = np.mgrid[0:200, 0:200]
    data = np.stack([(r * 200 + c + 1000 * b) % 30000 for b in range(4)]).astype(np.int16)
    profile = dict(driver="GTiff", width=200, height=200, count=4, dtype="int16", crs="EPSG:3035",
                   transform=from_origin(X0, Y0, 10, 10), nodata=-1)  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for band, name in enumerate(("red", "green", "blue", "nir"), start=1):
            dst.set_band_description(band, name)
    return str(path), data


SMALL_EXTENT_TEXT = f"{X0},{X0 + 1000},{Y0 - 1000},{Y0} [EPSG:3035]"  # 10 x 10 cells of 100 m


def assert_refusal(text: str, cells: str, cell_size: str, limit: str):
    assert f"= {cells} " in text, text
    assert f"more than {limit} (MAX_CELLS" in text, text
    assert f"CELL_SIZE: {cell_size} m or more" in text, text
    assert "smaller area" in text and "tiles" in text and "batch" in text.lower()
    assert "raise MAX_CELLS" in text


# ----------------------------------------------------------------------------- core.limits
def test_issue_request_numbers():
    grid = make_grid(ISSUE_EXTENT, "EPSG:3035", "EPSG:3035", 100)
    assert (grid.width, grid.height) == (35_000, 35_000)
    text = limits.over_limit_message(
        grid.width, grid.height, 100, limits.DEFAULT_MAX_CELLS,
        bytes_needed=estimate.output_bytes(grid.n_cells, True, 25, 0), seconds=3600 * 30,
    )  # fmt: skip
    assert_refusal(text, ISSUE_CELLS, "500", "50,000,000")
    assert "write up to 158.2 GB" in text and "take about 30 h 00 min" in text
    assert "25 or more tiles" in text


@pytest.mark.parametrize(
    ("extent", "cell", "limit"),
    [
        (ISSUE_EXTENT, 100, 50_000_000),
        (ISSUE_EXTENT, 100, 1_000_000),
        ((0, 0, 1_000, 1_000), 100, 50),
        ((123.4, 567.8, 98_765.4, 4_321.0), 7, 10_000),
        ((0, 0, 1e6, 10), 0.5, 2_000_000),  # a long strip
    ],
)
def test_suggested_cell_size_is_round_and_fits_the_real_snapped_grid(extent, cell, limit):
    grid = make_grid(extent, None, "EPSG:3035", cell)
    size = limits.smallest_cell_size(grid.width, grid.height, cell, limit)
    assert size is not None and size > cell
    mantissa = size / 10 ** math.floor(math.log10(size))
    assert any(math.isclose(mantissa, m) for m in (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8))
    assert make_grid(extent, None, "EPSG:3035", size).n_cells <= limit


def test_check_grid_no_overflow_and_lazy_estimates():
    calls = []

    def seconds(cells):
        calls.append(cells)
        return 1.0

    assert limits.check_grid(10, 10, 100, 100, seconds=seconds) == 100
    assert calls == []  # an estimate is computed only to word a refusal
    huge = 10**12  # far past int64 once squared: Python ints, no wrap-around
    with pytest.raises(InputDataError, match="1,000,000,000,000,000,000,000,000 cells"):
        limits.check_grid(huge, huge, 1e-6, seconds=seconds)
    assert calls == [huge * huge]

    def broken(cells):
        raise RuntimeError("cannot time")

    with pytest.raises(InputDataError, match="is more than 50 ") as caught:
        limits.check_grid(10, 10, 100, 50, seconds=broken)
    assert "take about" not in str(caught.value)  # left out, not a crash


def test_limit_resolution(monkeypatch):
    assert limits.resolve_max_cells() == limits.DEFAULT_MAX_CELLS == 50_000_000
    assert limits.resolve_max_cells(patches=True) == limits.DEFAULT_MAX_PATCHES == 1_000_000
    assert limits.resolve_max_cells(123) == 123
    assert limits.resolve_max_cells(math.inf) == math.inf
    monkeypatch.setenv("GEOPLANT_MAX_CELLS", "2,000")
    monkeypatch.setenv("GEOPLANT_MAX_PATCHES", "30")
    assert limits.resolve_max_cells() == 2000 and limits.default_max_cells() == 2000
    assert limits.resolve_max_cells(patches=True) == 30
    assert limits.resolve_max_cells(99) == 99  # an explicit MAX_CELLS wins
    for bad in (0, -5, "lots", float("nan")):
        with pytest.raises(InputDataError, match="MAX_CELLS must be a number of cells of 1 or more"):
            limits.resolve_max_cells(bad)
    monkeypatch.setenv("GEOPLANT_MAX_CELLS", "many")
    with pytest.raises(InputDataError, match="environment variable GEOPLANT_MAX_CELLS must be a number"):
        limits.resolve_max_cells()
    assert limits.default_max_cells() == limits.DEFAULT_MAX_CELLS  # never raises (plugin load)


def test_dock_estimate_and_refusal_are_one_message(monkeypatch):
    result = estimate.estimate_run(35_000, 35_000, top_k=25, seconds_per_cell=1e-4, cell_size=100)
    expected = limits.over_limit_message(
        35_000, 35_000, 100, limits.DEFAULT_MAX_CELLS, bytes_needed=result.bytes, seconds=result.seconds
    )
    assert result.refusal == expected and result.warnings[0] == expected
    assert estimate.estimate_run(100, 100, cell_size=100).refusal is None
    monkeypatch.setenv("GEOPLANT_MAX_CELLS", "5000")
    assert "more than 5,000 (MAX_CELLS" in estimate.estimate_run(100, 100, cell_size=100).refusal


# ----------------------------------------------------------------------------- core level
def test_core_predict_refuses_the_issue_request_fast(tmp_path, out):
    from geoplant_qgis.core.engine import predict

    model = make_model(tmp_path / "m.onnx", [POINT_INPUT], W, B)
    before = snapshot(out)
    start = time.perf_counter()
    with pytest.raises(InputDataError) as caught:
        predict(
            model, [], extent=ISSUE_EXTENT, crs="EPSG:3035", cell_size=100, top_k=5,
            output_richness=str(out / "r.tif"), output_topk=str(out / "sub" / "t.tif"),
        )  # fmt: skip
    assert time.perf_counter() - start < FAST
    text = str(caught.value)
    assert_refusal(text, ISSUE_CELLS, "500", "50,000,000")
    assert "write up to" in text and "take about" in text  # the model was timed for the message
    assert snapshot(out) == before


def test_core_sample_environment_refuses_the_issue_request_fast(laea, out):
    from geoplant_qgis.core.extract import GridArea, sample_environment

    before = snapshot(out)
    start = time.perf_counter()
    with pytest.raises(InputDataError) as caught:
        sample_environment(out / "env.csv", [laea[0]], grid=GridArea("EPSG:3035", 100, ISSUE_EXTENT))
    assert time.perf_counter() - start < FAST
    assert_refusal(str(caught.value), ISSUE_CELLS, "500", "50,000,000")
    assert snapshot(out) == before


def test_core_extract_patches_refuses_the_issue_request_fast(laea, out):
    from geoplant_qgis.core.extract import GridArea, extract_patches

    before = snapshot(out)
    start = time.perf_counter()
    with pytest.raises(InputDataError) as caught:
        extract_patches(out / "patches", laea[0], grid=GridArea("EPSG:3035", 100, ISSUE_EXTENT))
    assert time.perf_counter() - start < FAST
    text = str(caught.value)
    assert "patches, one file each," in text
    assert_refusal(text, ISSUE_CELLS, "4,000", "1,000,000")
    assert snapshot(out) == before


def test_core_max_cells_and_environment(laea, out, monkeypatch):
    from geoplant_qgis.core.extract import GridArea, extract_patches, sample_environment

    def grid():
        return GridArea("EPSG:3035", 100, (X0, Y0 - 1000, X0 + 1000, Y0))  # 10 x 10

    before = snapshot(out)
    with pytest.raises(InputDataError, match="= 100 cells is more than 50 "):
        sample_environment(out / "env.csv", [laea[0]], grid=grid(), max_cells=50)
    with pytest.raises(InputDataError, match="= 100 patches, one file each, is more than 99 "):
        extract_patches(out / "p", laea[0], size=4, grid=grid(), max_cells=99)
    monkeypatch.setenv("GEOPLANT_MAX_CELLS", "60")
    monkeypatch.setenv("GEOPLANT_MAX_PATCHES", "70")
    with pytest.raises(InputDataError, match="is more than 60 "):
        sample_environment(out / "env.csv", [laea[0]], grid=grid())
    with pytest.raises(InputDataError, match="is more than 70 "):
        extract_patches(out / "p", laea[0], size=4, grid=grid())
    assert snapshot(out) == before
    # raised: the run goes through, every cell sampled / cut
    result = sample_environment(out / "env.csv", [laea[0]], grid=grid(), max_cells=100)
    assert result.rows == 100 and len(pd.read_csv(out / "env.csv")) == 100
    patches = extract_patches(out / "p", laea[0], size=4, grid=grid(), max_cells=100)
    assert len(patches.paths) == 100


def test_points_are_limited_only_where_each_is_a_file(laea, out, monkeypatch):
    """A list of points is already in memory: sampling them is not limited; but every point
    is a patch file, so extractpatches counts them against its limit."""
    from geoplant_qgis.core.extract import Points, extract_patches, sample_environment

    monkeypatch.setenv("GEOPLANT_MAX_CELLS", "1")
    xs, ys = X0 + 50 + 100 * np.arange(5), np.full(5, Y0 - 500)
    points = Points(np.arange(5), xs, ys, "EPSG:3035")
    assert sample_environment(out / "pts.csv", [laea[0]], points=points, max_cells=1).rows == 5
    with pytest.raises(InputDataError, match="5 points would be 5 patch files, more than 4"):
        extract_patches(out / "pp", laea[0], size=4, points=points, max_cells=4)
    assert not (out / "pp").exists()
    assert len(extract_patches(out / "pp", laea[0], size=4, points=points, max_cells=5).paths) == 5


# ----------------------------------------------------------------------------- Processing
def processing_run(alg, params):
    import processing

    return processing.run(f"geoplant:{alg}", params)


@pytest.mark.parametrize(
    ("alg", "default", "patches"),
    [
        ("predict", 50_000_000, False),
        ("sampleenvironment", 50_000_000, False),
        ("extractpatches", 1_000_000, True),
    ],
)
def test_max_cells_is_an_advanced_documented_parameter(geoplant_provider, monkeypatch, alg, default, patches):
    from qgis.core import QgsApplication, QgsProcessingParameterDefinition

    registry = QgsApplication.processingRegistry()
    algorithm = registry.algorithmById(f"geoplant:{alg}")
    definition = algorithm.parameterDefinition("MAX_CELLS")
    assert definition.flags() & QgsProcessingParameterDefinition.FlagAdvanced
    assert definition.defaultValue() == default
    help_text = algorithm.shortHelpString()
    assert "MAX_CELLS" in help_text and f"{default:,}" in help_text
    assert ("GEOPLANT_MAX_PATCHES" if patches else "GEOPLANT_MAX_CELLS") in help_text
    # the environment variable is the default of a newly created algorithm
    monkeypatch.setenv("GEOPLANT_MAX_PATCHES" if patches else "GEOPLANT_MAX_CELLS", "1234")
    fresh = algorithm.create()
    assert fresh.parameterDefinition("MAX_CELLS").defaultValue() == 1234


def run_refused(alg, params, folder):
    from qgis.core import QgsProcessingException

    before = snapshot(folder)
    start = time.perf_counter()
    with pytest.raises(QgsProcessingException) as caught:
        processing_run(alg, params)
    assert time.perf_counter() - start < FAST
    assert snapshot(folder) == before
    return str(caught.value)


def test_processing_refuses_the_issue_request(geoplant_provider, tmp_path, laea, out):
    model = make_model(tmp_path / "m.onnx", [POINT_INPUT], W, B)
    text = run_refused(
        "predict",
        {"MODEL": model, "RASTERS": [], "EXTENT": ISSUE_EXTENT_TEXT, "CELL_SIZE": 100, "CRS": "EPSG:3035",
         "TOP_K": 25, "OUTPUT_RICHNESS": str(out / "r.tif"), "OUTPUT_TOPK": str(out / "t.tif")},
        out,
    )  # fmt: skip
    assert_refusal(text, ISSUE_CELLS, "500", "50,000,000")
    text = run_refused(
        "sampleenvironment",
        {"EXTENT": ISSUE_EXTENT_TEXT, "CELL_SIZE": 100, "RASTERS": [laea[0]], "OUTPUT": str(out / "env.csv")},
        out,
    )
    assert_refusal(text, ISSUE_CELLS, "500", "50,000,000")
    text = run_refused(
        "extractpatches",
        {"EXTENT": ISSUE_EXTENT_TEXT, "CELL_SIZE": 100, "RASTER": laea[0], "OUTPUT_FOLDER": str(out / "p")},
        out,
    )
    assert_refusal(text, ISSUE_CELLS, "4,000", "1,000,000")
    # with the limit raised, the same request passes the check (stopped right after it here)
    from geoplant_qgis.core import extract

    seen = []

    def stop_after_check(*args, **kwargs):
        seen.append(args[0].grid.n_cells)
        raise InputDataError("stopped after the check")

    original = extract._check_grid_limit

    def checked(*args, **kwargs):
        original(*args, **kwargs)
        stop_after_check(*args, **kwargs)

    import unittest.mock

    with unittest.mock.patch.object(extract, "_check_grid_limit", checked):
        for alg, params in (
            ("sampleenvironment", {"RASTERS": [laea[0]], "OUTPUT": str(out / "env.csv")}),
            ("extractpatches", {"RASTER": laea[0], "OUTPUT_FOLDER": str(out / "p")}),
        ):
            text = run_refused(
                alg, {"EXTENT": ISSUE_EXTENT_TEXT, "CELL_SIZE": 100, "MAX_CELLS": 2e9, **params}, out
            )
            assert text == "stopped after the check"
    assert seen == [35_000 * 35_000] * 2


def test_processing_small_grid_refused_then_accepted_with_right_outputs(geoplant_provider, tmp_path, climate):
    """predict over a 12 x 8 grid: MAX_CELLS=50 refused with a cell size that fits; 96 accepted."""
    model = make_model(tmp_path / "m.onnx", [POINT_INPUT], W, B)
    out = tmp_path / "out"
    out.mkdir()
    left, top, width, height = snapped(EXTENT, 1000)
    assert width * height == 96
    xmin, ymin, xmax, ymax = EXTENT
    params = {
        "MODEL": model, "RASTERS": climate, "EXTENT": f"{xmin!r},{xmax!r},{ymin!r},{ymax!r} [EPSG:3035]",
        "CELL_SIZE": 1000, "TOP_K": 3,
        "OUTPUT_RICHNESS": str(out / "richness.tif"), "OUTPUT_TOPK": str(out / "topk.tif"),
    }  # fmt: skip
    text = run_refused("predict", {**params, "MAX_CELLS": 50}, out)
    assert "12 x 8 = 96 cells is more than 50 (MAX_CELLS" in text
    size = float(text.split("CELL_SIZE: ")[1].split(" m")[0].replace(",", ""))
    assert make_grid(EXTENT, None, "EPSG:3035", size).n_cells <= 50
    result = processing_run("predict", {**params, "MAX_CELLS": 96})
    assert result["CELLS"] == 96
    probs, valid, _ = expected_point_probs(climate, EXTENT, 1000, "sigmoid")
    check_outputs({"richness": str(out / "richness.tif"), "topk": str(out / "topk.tif")}, probs, valid,
                  width, height, top_k=3)  # fmt: skip


def test_processing_environment_override(geoplant_provider, laea, out, monkeypatch):
    monkeypatch.setenv("GEOPLANT_MAX_CELLS", "50")
    monkeypatch.setenv("GEOPLANT_MAX_PATCHES", "60")
    text = run_refused(
        "sampleenvironment",
        {"EXTENT": SMALL_EXTENT_TEXT, "CELL_SIZE": 100, "RASTERS": [laea[0]], "OUTPUT": str(out / "env.csv")},
        out,
    )
    assert "10 x 10 = 100 cells is more than 50 (MAX_CELLS" in text
    text = run_refused(
        "extractpatches",
        {"EXTENT": SMALL_EXTENT_TEXT, "CELL_SIZE": 100, "RASTER": laea[0], "SIZE": 4,
         "OUTPUT_FOLDER": str(out / "p")},
        out,
    )  # fmt: skip
    assert "10 x 10 = 100 patches, one file each, is more than 60 (MAX_CELLS" in text
    # an explicit MAX_CELLS still wins over the environment
    result = processing_run(
        "sampleenvironment",
        {"EXTENT": SMALL_EXTENT_TEXT, "CELL_SIZE": 100, "RASTERS": [laea[0]], "OUTPUT": str(out / "env.csv"),
         "MAX_CELLS": 100},
    )  # fmt: skip
    assert result["ROWS"] == 100
    table = pd.read_csv(out / "env.csv")
    assert table["cellId"].tolist() == list(range(100))
    result = processing_run(
        "extractpatches",
        {"EXTENT": SMALL_EXTENT_TEXT, "CELL_SIZE": 100, "RASTER": laea[0], "SIZE": 4,
         "OUTPUT_FOLDER": str(out / "p"), "MAX_CELLS": 100},
    )  # fmt: skip
    assert result["COUNT"] == 100
