"""What the adversarial pass of issue #10 found (185 hostile inputs), each kept fixed by a test:
species ids a top-K raster cannot hold, stale temporaries anywhere in a patch tree, SIGQUIT,
names too long for a temporary, an input's absent sidecars, statistics written beside the
user's rasters, points without a limit, and words that were missing or wrong."""

from __future__ import annotations

import os
import signal
import subprocess
import time

import numpy as np
import pytest
import test_engine
from filestate import own_temporaries, snapshot
from test_engine import EXTENT, POINT_INPUT, B, W, make_model
from tiny_models import save_linear_point_model

from geoplant_qgis.core import files, signals
from geoplant_qgis.core.errors import CancelledError, InputDataError, ModelCardError, OutputError

pytestmark = pytest.mark.core

climate = test_engine.climate


@pytest.mark.parametrize("sid", [2**31, -1, 2**64 + 1])
def test_species_ids_a_topk_raster_cannot_hold_are_refused(sid):
    species = [{"id": 1, "name": "a"}, {"id": sid, "name": "b"}, {"id": 3, "name": "c"}]
    with pytest.raises(ModelCardError, match=r"species\[1\]\.id.*from 0 to 2,147,483,647"):
        save_linear_point_model(os.devnull, species=species)  # the card is checked as it is built


def test_a_patch_run_removes_stale_temporaries_anywhere_in_its_tree(tmp_path):
    from geoplant_qgis.core.geoplant.layout import PatchTree

    child = subprocess.Popen(["true"])
    child.wait()
    host = files._host()
    deep = tmp_path / "12" / "34"
    deep.mkdir(parents=True)
    stale = deep / f".1234.geoplant-{host}-{child.pid}-0123abcd.part.tiff"
    stale.write_bytes(b"left by a killed run")
    mine = deep / "1234.tiff"
    mine.write_bytes(b"a user's patch")
    with files.Publication() as run:
        PatchTree(tmp_path, run)
    assert not stale.exists() and mine.read_bytes() == b"a user's patch"


def test_sigquit_is_a_cancellation_too():
    from geoplant_qgis.core.progress import Progress

    with signals.cancel_on_signals():
        os.kill(os.getpid(), signal.SIGQUIT)
        time.sleep(0.05)
        with pytest.raises(CancelledError, match="SIGQUIT"):
            Progress().check_cancelled()
    assert signal.getsignal(signal.SIGQUIT) == signal.SIG_DFL


def test_long_names_get_short_temporaries_and_too_long_ones_are_refused_in_words(tmp_path):
    long_name = "y" * 250 + ".gpkg"  # a valid name: 255 bytes
    (tmp_path / long_name).write_text("old")
    with files.Publication() as run:
        tmp = run.temporary(tmp_path / long_name)
        assert len(os.path.basename(tmp).encode()) <= files.NAME_MAX and files.is_own_temporary(tmp)
        run.write_text(tmp, "new")
        run.publish()
    assert (tmp_path / long_name).read_text() == "new" and own_temporaries(tmp_path) == []
    with pytest.raises(OutputError, match="too long"), files.Publication() as run:
        run.temporary(tmp_path / ("z" * 300 + ".csv"))


def test_an_inputs_sidecars_are_refused_as_outputs_even_before_they_exist(tmp_path):
    gpkg = tmp_path / "p.gpkg"
    gpkg.write_bytes(b"x")
    for sidecar in ("p.gpkg-wal", "p.gpkg-shm", "p.gpkg.aux.xml"):
        with pytest.raises(OutputError, match="POINTS \\(its sidecar\\)"):
            files.check_outputs({"OUTPUT": [tmp_path / sidecar]}, {"POINTS": str(gpkg)})


def test_more_points_than_the_patch_limit_are_refused(tmp_path):
    from make_world import write_tif
    from rasterio.transform import from_origin

    from geoplant_qgis.core.extract import Points, extract_patches

    raster = write_tif(
        tmp_path / "s2.tif", np.ones((4, 20, 20), "int16"), from_origin(3700000, 2700200, 10, 10),
        "EPSG:3035", descriptions=("red", "green", "blue", "nir"),
    )  # fmt: skip
    points = Points(np.arange(3), np.full(3, 3700100.0), np.full(3, 2700100.0), "EPSG:3035")
    out = tmp_path / "out"
    with pytest.raises(InputDataError, match="3 points would be 3 patch files, more than 2"):
        extract_patches(out, raster, points=points, size=8, max_cells=2)
    assert not out.exists()


def test_an_infinite_limit_in_the_environment_is_a_finite_default(monkeypatch):
    from geoplant_qgis.core import limits

    monkeypatch.setenv(limits.ENV_MAX_CELLS, "inf")
    value = limits.default_max_cells()
    assert np.isfinite(value) and value >= 1e15


@pytest.mark.parametrize("crs", ["+proj=geocent", "EPSG:4978"])
def test_a_geocentric_crs_is_called_geocentric(crs):
    from geoplant_qgis.core.grid import projected_crs

    with pytest.raises(InputDataError, match="geocentric") as info:
        projected_crs(crs)
    assert "degrees" not in str(info.value)


def test_sampleenvironment_refuses_another_file_type_and_says_when_nothing_is_covered(tmp_path, climate):
    from geoplant_qgis.core.extract import GridArea, sample_environment
    from geoplant_qgis.core.progress import Progress

    with pytest.raises(OutputError, match="ending in .csv"):
        sample_environment(
            tmp_path / "out.gpkg", climate, grid=GridArea("EPSG:3035", 1000, EXTENT, "EPSG:3035")
        )
    assert not (tmp_path / "out.gpkg").exists()

    class Recorder(Progress):
        def __init__(self):
            self.warnings = []

        def warning(self, message):
            self.warnings.append(message)

    far = (EXTENT[0] + 5e6, EXTENT[1], EXTENT[2] + 5e6, EXTENT[3])  # nowhere near the rasters
    recorder = Recorder()
    sample_environment(
        tmp_path / "env.csv", climate, grid=GridArea("EPSG:3035", 1000, far, "EPSG:3035"), progress=recorder
    )
    assert any("has a value in any raster" in w for w in recorder.warnings)


def test_core_entry_points_refuse_wrong_types_in_words(tmp_path, climate):
    from geoplant_qgis.core.engine import predict
    from geoplant_qgis.core.extract import sample_environment
    from geoplant_qgis.core.modelcard import read_model_card

    with pytest.raises(ModelCardError, match="path of an .onnx file"):
        read_model_card(None)
    with pytest.raises(ModelCardError, match="is a folder"):
        read_model_card(tmp_path)
    model = make_model(tmp_path / "m.onnx", [POINT_INPUT], W, B)
    with pytest.raises(OutputError, match="must be a file path"):
        predict(
            model,
            climate,
            extent=EXTENT,
            extent_crs="EPSG:3035",
            cell_size=1000,
            output_richness=b"/tmp/k.tif",
        )
    with pytest.raises(OutputError, match="path of a .csv file"):
        sample_environment(None, None, None)


# -- through Processing --------------------------------------------------------------------


@pytest.mark.usefixtures("geoplant_provider")
def test_predict_writes_nothing_beside_the_users_rasters(tmp_path, climate):
    """QGIS opening a raster as a layer writes a .aux.xml of statistics beside it: not during
    our runs (GDAL's PAM is off in their thread)."""
    import processing

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    rasters = []
    for path in climate:
        copy = inputs / os.path.basename(path)
        copy.write_bytes(open(path, "rb").read())
        rasters.append(str(copy))
    (inputs / (os.path.basename(rasters[0]) + ".aux.xml")).write_text(
        '<PAMDataset><Metadata><MDI key="USER">mine</MDI></Metadata></PAMDataset>'
    )
    before = snapshot(inputs)
    model = make_model(tmp_path / "m.onnx", [POINT_INPUT], W, B)
    xmin, ymin, xmax, ymax = EXTENT
    processing.run(
        "geoplant:predict",
        {
            "MODEL": model,
            "RASTERS": rasters,
            "EXTENT": f"{xmin},{xmax},{ymin},{ymax} [EPSG:3035]",
            "CELL_SIZE": 1000,
            "OUTPUT_RICHNESS": str(tmp_path / "r.tif"),
        },
    )
    assert snapshot(inputs) == before


@pytest.mark.usefixtures("geoplant_provider")
def test_missing_files_and_wrong_types_are_named_before_the_run(tmp_path, climate):
    import processing
    from qgis.core import QgsProcessingException

    model = make_model(tmp_path / "m.onnx", [POINT_INPUT], W, B)
    xmin, ymin, xmax, ymax = EXTENT
    params = {
        "MODEL": model,
        "RASTERS": [str(tmp_path / "nonexistent.tif")],
        "EXTENT": f"{xmin},{xmax},{ymin},{ymax} [EPSG:3035]",
        "CELL_SIZE": 1000,
        "OUTPUT_RICHNESS": str(tmp_path / "r.tif"),
    }
    with pytest.raises(QgsProcessingException, match="nonexistent.tif does not exist"):
        processing.run("geoplant:predict", params)
    gz = tmp_path / "meta.csv.gz"
    gz.write_bytes(b"\x1f\x8b")
    with pytest.raises(QgsProcessingException, match="not a .csv file \\(decompress it first\\)"):
        processing.run("geoplant:loadobservations", {"INPUT": str(gz), "OUTPUT": str(tmp_path / "o.gpkg")})
    csv = tmp_path / "meta.csv"
    csv.write_text("surveyId,lon,lat,speciesId\n1,3.8,43.6,10\n")
    with pytest.raises(QgsProcessingException, match="GeoPackage"):
        processing.run("geoplant:loadobservations", {"INPUT": str(csv), "OUTPUT": str(tmp_path / "o.shp")})
    assert not (tmp_path / "o.shp").exists() and own_temporaries(tmp_path) == []


# -- the second pass: the decision algorithms and the command line -------------------------------


def test_values_that_are_not_probabilities_are_refused_by_the_decisions(tmp_path):
    from decisions_support import probabilities, write_probabilities

    from geoplant_qgis.core.decisions.ensemble import ensemble
    from geoplant_qgis.core.decisions.presence import presence_maps

    values = probabilities()
    values[1, 3, 4] = 3.7
    bad = write_probabilities(tmp_path / "bad.tif", values)
    good = write_probabilities(tmp_path / "good.tif", probabilities(seed=1))
    out = tmp_path / "out"
    with pytest.raises(InputDataError, match="from .* to 3.7.*not probabilities"):
        presence_maps(bad, rule="fixed", threshold=0.5, output=out / "p.tif")
    with pytest.raises(InputDataError, match="not probabilities"):
        ensemble([good, bad], output_mean=out / "m.tif", output_sd=out / "s.tif")
    with pytest.raises(InputDataError, match="the same raster twice"):
        ensemble([good, good], output_mean=out / "m.tif", output_sd=out / "s.tif")
    with pytest.raises(OutputError, match="ending in .tif"):
        presence_maps(good, rule="fixed", threshold=0.5, output=out / "p.csv")
    assert not out.exists()


def test_the_command_line_says_a_points_file_is_not_text(tmp_path):
    import sys

    binary = tmp_path / "points.csv"
    binary.write_bytes(b"surveyId,lon\xf6,lat\n1,2,3\n")
    done = subprocess.run(
        [sys.executable, "-m", "geoplant_qgis", "sampleenvironment", "--points", str(binary),
         "--raster", str(binary), "--output", str(tmp_path / "s.csv")],
        capture_output=True, text=True, cwd=os.path.dirname(os.path.dirname(__file__)),
    )  # fmt: skip
    assert done.returncode != 0 and "not UTF-8 text" in done.stderr and "Traceback" not in done.stderr
