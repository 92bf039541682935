"""Bad inputs end in plain words, never a traceback or a misleading message (issue #10, part 5).

Table-driven: every algorithm gets parameter values that cannot be right (numbers out of
range or not numbers, invalid or geographic CRSs, extents that are lines, points, NaN,
infinite or inverted, broken MAPPINGs, outputs that cannot be written); each must raise a
QgsProcessingException whose message names the problem and holds no traceback and no
"Unexpected internal error". The core API gets the same for its arguments, and a few bad
inputs go through the real qgis_process.bin.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import test_engine
from test_engine import EXTENT, POINT_INPUT, SPECIES_IDS, B, W, make_model

from geoplant_qgis.core.errors import GeoPlantError, InputDataError

pytestmark = pytest.mark.core

climate = test_engine.climate  # the rasters fixture: bio1 (EPSG:4326), elev (EPSG:3035)

FORBIDDEN = ("Traceback", 'File "', "Unexpected internal error")


def _extent_text(extent, crs="EPSG:3035"):
    xmin, ymin, xmax, ymax = extent
    return f"{xmin!r},{xmax!r},{ymin!r},{ymax!r} [{crs}]"


@pytest.fixture
def world(tmp_path, climate):
    """Valid inputs of every algorithm, each case changes a few."""
    model = make_model(tmp_path / "m.onnx", [POINT_INPUT], W, B)
    binary = tmp_path / "binary.csv"
    binary.write_bytes(bytes(range(256)) * 8)
    latin = tmp_path / "latin1.csv"
    latin.write_bytes("variable,path,band\nbio1,caf\xe9.tif,1\n".encode("latin-1"))
    folder = tmp_path / "a_folder"
    folder.mkdir()
    band7 = tmp_path / "band7.csv"
    band7.write_text(f"bio1,{climate[0]},7\nelev,{climate[1]},1\n")
    band_x = tmp_path / "band_x.csv"
    band_x.write_text(f"bio1,{climate[0]},one\n")
    a_file = tmp_path / "a_file.txt"
    a_file.write_text("not a folder")
    surveys = tmp_path / "pa.csv"
    surveys.write_text("surveyId,lon,lat,speciesId\n1,3.8,43.6,10\n")
    out = tmp_path / "out"
    out.mkdir()
    return {
        "tmp": tmp_path,
        "model": model,
        "rasters": climate,
        "binary": str(binary),
        "latin": str(latin),
        "folder": str(folder),
        "band7": str(band7),
        "band_x": str(band_x),
        "file_as_folder": str(a_file / "r.tif"),
        "file_as_folder_csv": str(a_file / "r.csv"),
        "surveys": str(surveys),
        "out": out,
    }


def _base(alg, w):
    out = w["out"]
    extent = _extent_text(EXTENT)
    if alg == "predict":
        return {
            "MODEL": w["model"],
            "RASTERS": w["rasters"],
            "EXTENT": extent,
            "CELL_SIZE": 1000,
            "TOP_K": 3,
            "OUTPUT_RICHNESS": str(out / "r.tif"),
            "OUTPUT_TOPK": str(out / "t.tif"),
        }
    if alg == "sampleenvironment":
        return {"RASTERS": w["rasters"], "EXTENT": extent, "CELL_SIZE": 1000, "OUTPUT": str(out / "env.csv")}
    if alg == "extractpatches":
        return {
            "RASTER": w["rasters"][1],
            "BANDS": [1],
            "EXTENT": extent,
            "CELL_SIZE": 5000,
            "SIZE": 4,
            "PIXEL_SIZE": 100,
            "OUTPUT_FOLDER": str(out / "patches"),
        }
    if alg == "evaluate":
        return {
            "SURVEYS": w["surveys"],
            "MODEL": w["model"],
            "RASTERS": w["rasters"],
            "TOP_K": 2,
            "OUTPUT_REPORT": str(out / "report.html"),
        }
    if alg == "loadobservations":
        return {"INPUT": w["surveys"], "OUTPUT": str(out / "obs.gpkg")}
    if alg == "loadpatches":
        return {"INPUT": w["folder"], "OUTPUT_FOLDER": str(out / "vrt")}
    raise AssertionError(alg)


# (algorithm, changed parameters, words the message must hold); "{...}" is filled from `world`
CASES = [
    # CELL_SIZE
    ("predict", {"CELL_SIZE": 1e-300}, ["CELL_SIZE", "1e-300", "0.001"]),
    ("predict", {"CELL_SIZE": 1e-30}, ["CELL_SIZE", "0.001"]),
    ("predict", {"CELL_SIZE": -5}, ["CELL_SIZE", "-5"]),
    ("predict", {"CELL_SIZE": 0}, ["CELL_SIZE", "0.001"]),
    ("predict", {"CELL_SIZE": "nan"}, ["CELL_SIZE", "nan"]),
    ("predict", {"CELL_SIZE": "inf"}, ["CELL_SIZE", "inf"]),
    ("predict", {"CELL_SIZE": 1e12}, ["CELL_SIZE", "1,000,000"]),
    ("predict", {"CELL_SIZE": "x"}, ["CELL_SIZE", "'x'"]),
    # CRS
    ("predict", {"CRS": "EPSG:999999"}, ["CRS", "EPSG:999999", "EPSG:3035"]),
    ("predict", {"CRS": "garbage"}, ["CRS", "garbage", "EPSG:3035"]),
    ("predict", {"CRS": "EPSG:4326"}, ["CRS", "EPSG:4326", "not projected", "metres"]),
    ("predict", {"CRS": "EPSG:2263"}, ["CRS", "EPSG:2263", "not metres"]),
    # TOP_K
    ("predict", {"TOP_K": 99999999999}, ["TOP_K", "99999999999", "65,535", "number of species"]),
    ("predict", {"TOP_K": -3}, ["TOP_K", "-3", "from 0"]),
    ("predict", {"TOP_K": "abc"}, ["TOP_K", "abc", "whole number"]),
    ("predict", {"TOP_K": 2.5}, ["TOP_K", "2.5", "whole number"]),
    # EXTENT
    ("predict", {"EXTENT": "1,1,2,3 [EPSG:3035]"}, ["EXTENT", "vertical line", "xmin = xmax"]),
    ("predict", {"EXTENT": "1,2,3,3 [EPSG:3035]"}, ["EXTENT", "horizontal line", "ymin = ymax"]),
    ("predict", {"EXTENT": "1,1,3,3 [EPSG:3035]"}, ["EXTENT", "single point"]),
    ("predict", {"EXTENT": "nan,1,2,3 [EPSG:3035]"}, ["EXTENT", "xmin", "NaN"]),
    ("predict", {"EXTENT": "1,2,3,inf [EPSG:3035]"}, ["EXTENT", "ymax", "infinite"]),
    ("predict", {"EXTENT": "5,1,2,3 [EPSG:3035]"}, ["EXTENT", "inverted", "xmin > xmax"]),
    ("predict", {"EXTENT": "1,2,3,4 [EPSG:999999]"}, ["EXTENT", "EPSG:999999", "EPSG:3035"]),
    ("predict", {"EXTENT": "abc"}, ["EXTENT", "abc", "xmin,xmax,ymin,ymax"]),
    ("predict", {"EXTENT": "1,2,3 [EPSG:3035]"}, ["EXTENT", "3 numbers", "four"]),
    # THRESHOLD
    ("predict", {"THRESHOLD": 2}, ["THRESHOLD", "2", "at most 1"]),
    ("predict", {"THRESHOLD": -1}, ["THRESHOLD", "-1", "above 0"]),
    ("predict", {"THRESHOLD": 0}, ["THRESHOLD", "above 0"]),
    ("predict", {"THRESHOLD": "nan"}, ["THRESHOLD", "nan"]),
    # MAPPING
    ("predict", {"MAPPING": "bio1"}, ["MAPPING", "bio1", "variable=path"]),
    ("predict", {"MAPPING": "bio1=/no/such/bio1.tif"}, ["MAPPING", "/no/such/bio1.tif", "no such file"]),
    ("predict", {"MAPPING": "bio1=x.tif#abc"}, ["MAPPING", "abc", "whole number"]),
    ("predict", {"MAPPING": "bio1={rasters[0]}#0"}, ["MAPPING", "band", "'0'"]),
    ("predict", {"MAPPING": "{binary}"}, ["MAPPING", "binary.csv", "UTF-8"]),
    ("predict", {"MAPPING": "{latin}"}, ["MAPPING", "latin1.csv", "line 2", "UTF-8"]),
    ("predict", {"MAPPING": "{folder}"}, ["MAPPING", "a_folder", "is a folder"]),
    ("predict", {"MAPPING": "{band7}"}, ["MAPPING", "bio1", "no band 7"]),
    ("predict", {"MAPPING": "{band_x}"}, ["MAPPING", "band_x.csv", "line 1", "'one'"]),
    ("predict", {"MAPPING": "bio1={folder}"}, ["MAPPING", "a_folder", "folder"]),
    # SPECIES, outputs
    ("predict", {"SPECIES": "999"}, ["Unknown species", "999"]),
    ("predict", {"OUTPUT_RICHNESS": "{file_as_folder}"}, ["a_file.txt"]),
    # sampleenvironment
    ("sampleenvironment", {"CELL_SIZE": 0}, ["CELL_SIZE", "0.001"]),
    ("sampleenvironment", {"CELL_SIZE": 1e-300}, ["CELL_SIZE", "1e-300"]),
    ("sampleenvironment", {"CRS": "EPSG:999999"}, ["CRS", "EPSG:999999"]),
    ("sampleenvironment", {"EXTENT": "1,1,2,3 [EPSG:3035]"}, ["EXTENT", "vertical line"]),
    ("sampleenvironment", {"MAPPING": "{binary}"}, ["MAPPING", "UTF-8"]),
    ("sampleenvironment", {"OUTPUT": "{file_as_folder_csv}"}, ["a_file.txt"]),
    ("sampleenvironment", {"OUTPUT": "{file_as_folder}"}, ["r.tif", ".csv"]),
    # extractpatches
    ("extractpatches", {"SIZE": 0}, ["SIZE", "from 1 to 4,096"]),
    ("extractpatches", {"SIZE": 5000}, ["SIZE", "5000"]),
    ("extractpatches", {"SIZE": "big"}, ["SIZE", "big"]),
    ("extractpatches", {"PIXEL_SIZE": -1}, ["PIXEL_SIZE", "-1"]),
    ("extractpatches", {"PIXEL_SIZE": 1e-300}, ["PIXEL_SIZE", "0.001"]),
    ("extractpatches", {"CRS": "garbage"}, ["CRS", "garbage"]),
    ("extractpatches", {"BANDS": [9]}, ["band", "9"]),
    ("extractpatches", {"EXTENT": "2,1,4,3 [EPSG:3035]"}, ["EXTENT", "inverted"]),
    # evaluate
    ("evaluate", {"TOP_K": 0}, ["TOP_K", "from 1"]),
    ("evaluate", {"TOP_K": "abc"}, ["TOP_K", "abc"]),
    ("evaluate", {"TOP_K": 1e20}, ["TOP_K", "65,535"]),
    ("evaluate", {"MAPPING": "{folder}"}, ["MAPPING", "folder"]),
    # loadobservations, loadpatches
    ("loadobservations", {"EXTENT": "nan,1,2,3 [EPSG:4326]"}, ["EXTENT", "NaN"]),
    ("loadobservations", {"EXTENT": "1,2,3,4 [EPSG:999999]"}, ["EXTENT", "EPSG:999999"]),
    ("loadpatches", {"EXTENT": "3,1,2,4 [EPSG:4326]"}, ["EXTENT", "inverted"]),
    ("loadpatches", {"EXTENT": "1,2,3,3 [EPSG:4326]"}, ["EXTENT", "horizontal line"]),
]


def _fill(value, w):
    if isinstance(value, str):
        return value.format(**w)
    return value


def _check_message(message: str, words) -> None:
    for bad in FORBIDDEN:
        assert bad not in message, f"{bad!r} in: {message}"
    for word in words:
        assert word in message, f"{word!r} not in: {message}"


@pytest.mark.usefixtures("geoplant_provider")
@pytest.mark.parametrize(
    "alg, change, words",
    CASES,
    ids=[f"{a}-{'-'.join(f'{k}={v}' for k, v in c.items())}" for a, c, _ in CASES],
)
def test_bad_parameter_is_refused_in_plain_words(world, alg, change, words):
    import processing
    from qgis.core import QgsProcessingException

    params = _base(alg, world)
    params.update({k: _fill(v, world) for k, v in change.items()})
    with pytest.raises(QgsProcessingException) as info:
        processing.run(f"geoplant:{alg}", params)
    _check_message(str(info.value), [_fill(word, world) for word in words])
    # nothing was written under the output names
    assert not [f for f in os.listdir(world["out"]) if not f.startswith(".")]


@pytest.mark.usefixtures("geoplant_provider")
def test_the_checks_run_without_check_parameter_values(world):
    """The dock runs the algorithm in a task, which skips checkParameterValues: the run itself
    refuses the same values."""
    from qgis.core import QgsApplication, QgsProcessingContext, QgsProcessingException, QgsProcessingFeedback

    alg = QgsApplication.processingRegistry().createAlgorithmById("geoplant:predict")
    params = _base("predict", world)
    for change, word in (({"CRS": "EPSG:999999"}, "EPSG:999999"), ({"TOP_K": 99999999999}, "TOP_K")):
        context, feedback = QgsProcessingContext(), QgsProcessingFeedback()
        with pytest.raises(QgsProcessingException, match=word):
            alg.processAlgorithm({**params, **change}, context, feedback)


# --- the core API ------------------------------------------------------------------------------


def _predict_kwargs(tmp_path, climate):
    model = make_model(tmp_path / "m.onnx", [POINT_INPUT], W, B)
    return model, dict(extent=EXTENT, cell_size=1000, output_richness=str(tmp_path / "r.tif"))


CORE_PREDICT_CASES = [
    ({"top_k": "abc"}, ["TOP_K", "abc", "whole number"]),
    ({"top_k": -1}, ["TOP_K", "-1"]),
    ({"top_k": 1e20}, ["TOP_K", "65,535"]),
    ({"top_k": 2.5}, ["TOP_K", "2.5"]),
    ({"cell_size": "x"}, ["CELL_SIZE", "'x'"]),
    ({"cell_size": 0}, ["CELL_SIZE", "0.001"]),
    ({"cell_size": 1e-300}, ["CELL_SIZE", "1e-300"]),
    ({"cell_size": float("nan")}, ["CELL_SIZE", "nan"]),
    ({"threshold": -0.5}, ["THRESHOLD", "-0.5", "above 0"]),
    ({"threshold": "abc"}, ["THRESHOLD", "abc"]),
    ({"extent": (1.0, 2.0, float("nan"), 4.0)}, ["EXTENT", "xmax", "NaN"]),
    ({"extent": (1, 2, 1, 4)}, ["EXTENT", "vertical line"]),
    ({"extent": (5, 2, 1, 4)}, ["EXTENT", "inverted"]),
    ({"extent": (1, 2, 3)}, ["EXTENT", "four numbers"]),
    ({"extent": "abc"}, ["EXTENT", "four numbers"]),
    ({"species": "10,999"}, ["Unknown species", "999"]),
    ({"block_cells": 0}, ["block_cells"]),
    ({"threads": "many"}, ["threads", "many"]),
    ({"crs": "EPSG:999999"}, ["EPSG:999999"]),
    ({"crs": "EPSG:4326"}, ["not projected"]),
    ({"extent_crs": "nonsense"}, ["nonsense"]),
]


@pytest.mark.parametrize("change, words", CORE_PREDICT_CASES, ids=[str(c) for c, _ in CORE_PREDICT_CASES])
def test_core_predict_refuses_bad_arguments(tmp_path, climate, change, words):
    from geoplant_qgis.core import engine

    model, kwargs = _predict_kwargs(tmp_path, climate)
    kwargs.update(change)
    with pytest.raises(GeoPlantError) as info:
        engine.predict(model, climate, **kwargs)
    _check_message(str(info.value), words)
    assert not os.path.exists(tmp_path / "r.tif")


def test_core_predict_refuses_bad_paths(tmp_path, climate):
    from geoplant_qgis.core import engine

    model, kwargs = _predict_kwargs(tmp_path, climate)
    with pytest.raises(InputDataError, match="path of an .onnx file"):
        engine.predict(None, climate, **kwargs)
    with pytest.raises(InputDataError, match="list of file paths"):
        engine.predict(model, 5, **kwargs)
    with pytest.raises(InputDataError, match="must be file paths"):
        engine.predict(model, [climate[0], 7], **kwargs)


def test_core_grid_refuses_bad_arguments():
    from geoplant_qgis.core.grid import make_grid

    with pytest.raises(InputDataError, match="CELL_SIZE must be a number"):
        make_grid((0, 0, 1000, 1000), crs="EPSG:3035", cell_size="x")
    with pytest.raises(InputDataError, match="more than a raster can hold"):
        make_grid((0, 0, 9e6, 9e6), crs="EPSG:3035", cell_size=0.001)
    with pytest.raises(InputDataError, match="EPSG:999999"):
        make_grid((0, 0, 1000, 1000), crs="EPSG:999999", cell_size=100)
    with pytest.raises(InputDataError, match="inverted"):
        make_grid((10, 0, 0, 1000), crs="EPSG:3035", cell_size=100)
    with pytest.raises(InputDataError, match="infinite"):
        make_grid((0, 0, float("inf"), 1000), crs="EPSG:3035", cell_size=100)


def test_core_evaluate_refuses_bad_k():
    from geoplant_qgis.core import evaluate

    probs = np.full((2, 3), 0.5)
    for k, word in (("abc", "abc"), (0, "from 1"), (1.5, "1.5"), (None, "None")):
        with pytest.raises(InputDataError, match=word):
            evaluate.evaluate([1, 2], [[1], [2]], [1, 2, 3], probs, k=k)
    with pytest.raises(InputDataError, match="K must be"):
        evaluate.top_k_indices(probs, "x")


def test_core_extract_refuses_bad_arguments(tmp_path, climate):
    from geoplant_qgis.core.extract import GridArea, Points, extract_patches

    points = Points([1], [3_805_000.0], [2_295_000.0], "EPSG:3035")
    for kwargs, word in (
        ({"size": "abc"}, "SIZE"),
        ({"size": 0}, "SIZE"),
        ({"pixel_size": 0}, "PIXEL_SIZE"),
        ({"pixel_size": "x"}, "PIXEL_SIZE"),
        ({"bands": [0]}, "BANDS"),
        ({"bands": ["red"]}, "BANDS"),
    ):
        with pytest.raises(InputDataError, match=word):
            extract_patches(tmp_path / "p", climate[1], points=points, **kwargs)
    with pytest.raises(InputDataError, match="CELL_SIZE"):
        GridArea("EPSG:3035", "ten", EXTENT)


MAPPING_CASES = [
    ("bio1", "expected 'variable=path'"),
    ("bio1=x.tif#abc", "whole number from 1, not 'abc'"),
    ("bio1=x.tif#", "band number must follow"),
    ("bio1=x.tif#-2", "not '-2'"),
]


@pytest.mark.parametrize("text, word", MAPPING_CASES)
def test_core_mapping_text_refused_in_words(text, word):
    from geoplant_qgis.core.sources import parse_mapping

    with pytest.raises(InputDataError, match=word):
        parse_mapping(text)


def test_core_mapping_files_refused_in_words(tmp_path, climate):
    from geoplant_qgis.core.sources import parse_mapping, resolve_variables

    binary = tmp_path / "b.csv"
    binary.write_bytes(b"bio1,x.tif,1\n\x00\xff\xfe\x00garbage\n")
    with pytest.raises(InputDataError, match="(UTF-8|binary)"):
        parse_mapping(str(binary))
    nul = tmp_path / "nul.csv"
    nul.write_bytes(b"bio1,x.tif,1\nelev,\x00y.tif,1\n")
    with pytest.raises(InputDataError, match="(UTF-8|binary|NUL)"):
        parse_mapping(str(nul))
    with pytest.raises(InputDataError, match="is a folder"):
        parse_mapping(str(tmp_path))
    with pytest.raises(InputDataError, match="does not exist"):
        parse_mapping(str(tmp_path / "missing.csv"))
    bad_band = tmp_path / "bad_band.csv"
    bad_band.write_text(f"variable,path,band\nbio1,{climate[0]},x\n")
    with pytest.raises(InputDataError, match="line 2: band must be a whole number"):
        parse_mapping(str(bad_band))
    far = tmp_path / "far.csv"
    far.write_text(f"bio1,{climate[0]},99\n")
    with pytest.raises(InputDataError, match="no band 99"):
        resolve_variables(["bio1"], [], str(far))
    with pytest.raises(InputDataError, match="no such file"):
        resolve_variables(["bio1"], [], "bio1=/no/such/file.tif")
    with pytest.raises(InputDataError, match="a folder"):
        resolve_variables(["bio1"], [], f"bio1={tmp_path}")


def test_core_species_ids_not_in_the_model(tmp_path, climate):
    from geoplant_qgis.core import engine

    model, kwargs = _predict_kwargs(tmp_path, climate)
    kwargs["output_probabilities"] = str(tmp_path / "p.tif")
    with pytest.raises(GeoPlantError) as info:
        engine.predict(model, climate, species=[max(SPECIES_IDS) + 1000], **kwargs)
    _check_message(str(info.value), ["Unknown species"])


# --- the real qgis_process ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def installed_profile(tmp_path_factory):
    from support import install_into

    root = tmp_path_factory.mktemp("profile-root")
    install_into(root, with_dependencies=True)
    return root


@pytest.mark.qgis_process
def test_qgis_process_bad_inputs_no_traceback(installed_profile, tmp_path, climate):
    from support import qgis_process

    model = make_model(tmp_path / "m.onnx", [POINT_INPUT], W, B)
    binary = tmp_path / "binary.csv"
    binary.write_bytes(bytes(range(256)) * 4)
    out = tmp_path / "out"
    out.mkdir()
    base = [
        f"MODEL={model}",
        f"RASTERS={climate[0]}",
        f"RASTERS={climate[1]}",
        f"EXTENT={_extent_text(EXTENT)}",
        f"OUTPUT_RICHNESS={out / 'r.tif'}",
    ]
    cases = [
        (["CELL_SIZE=1e-300"], "CELL_SIZE"),
        (["CELL_SIZE=1000", "CRS=EPSG:999999"], "EPSG:999999"),
        (["CELL_SIZE=1000", "TOP_K=99999999999", f"OUTPUT_TOPK={out / 't.tif'}"], "TOP_K"),
        (["CELL_SIZE=1000", f"MAPPING={binary}"], "UTF-8"),
        (["CELL_SIZE=1000", "EXTENT=1,1,2,3 [EPSG:3035]"], "vertical line"),
    ]
    for extra, word in cases:
        replaced = {e.split("=", 1)[0] for e in extra}
        args = [a for a in base if a.split("=", 1)[0] not in replaced]
        done = qgis_process(installed_profile, "run", "geoplant:predict", "--", *args, *extra)
        text = done.stdout + done.stderr
        assert done.returncode != 0, text
        assert "Traceback" not in text and "Unexpected internal error" not in text, text
        assert word in text, text
    assert os.listdir(out) == []


def test_core_degenerate_evaluation_raises_no_warning():
    """Surveys without observations, one species only: NaN scores in words, no RuntimeWarning."""
    import warnings

    from geoplant_qgis.core import evaluate

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = evaluate.evaluate([1, 2], [[], []], [1, 2], np.array([[0.5, 0.5], [0.2, 0.1]]), k=1)
        assert result.f1 == 0.0 and np.isnan(result.recall)
        result = evaluate.evaluate([1], [[1]], [1, 2], np.array([[0.5, 0.5]]), k=1, train_lists=[[1]])
        assert result.f1 == 1.0
