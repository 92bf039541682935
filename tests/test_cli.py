"""The command line (``python -m geoplant_qgis``): the same outputs as geoplant:predict on the
same request, refusals in words with nothing written, --help, progress on a terminal and on a
pipe, SIGTERM as cancellation, no QGIS / dask imported, and ``pip install .`` of the project."""

from __future__ import annotations

import os
import pty
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
import test_engine
from filestate import own_temporaries, snapshot
from make_world import write_tif
from rasterio.transform import from_origin
from test_engine import EXTENT, POINT_INPUT, B, W, make_model, snapped
from tiny_models import save_linear_point_model

from geoplant_qgis.cli.common import UsageError, parse_extent

pytestmark = pytest.mark.core
climate = test_engine.climate  # the same rasters fixture

ROOT = Path(__file__).resolve().parents[1]
PYTHON = sys.executable


def cli_env(**extra) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra)
    return env


def cli(*args, cwd=None, timeout=120, **kwargs) -> subprocess.CompletedProcess:
    """``python -m geoplant_qgis ARGS`` from another folder (the project on PYTHONPATH)."""
    return subprocess.run(
        [PYTHON, "-m", "geoplant_qgis", *map(str, args)],
        cwd=cwd or "/",
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        **kwargs,
    )


def extent_text(extent, crs="EPSG:3035") -> str:
    xmin, ymin, xmax, ymax = extent
    return f"{xmin!r},{xmax!r},{ymin!r},{ymax!r} [{crs}]"


def write_area(path: Path, wkts, epsg=3035, driver="GPKG") -> str:
    from osgeo import ogr, osr

    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    ds = ogr.GetDriverByName(driver).CreateDataSource(str(path))
    layer = ds.CreateLayer("sites", srs, ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("name", ogr.OFTString))
    for i, wkt in enumerate(wkts):
        feature = ogr.Feature(layer.GetLayerDefn())
        feature.SetField("name", f"site {i}")
        feature.SetGeometry(ogr.CreateGeometryFromWkt(wkt))
        layer.CreateFeature(feature)
    ds = None
    return str(path)


# --- EXTENT text ---------------------------------------------------------------------------------


def test_extent_text_is_x_range_then_y_range():
    assert parse_extent("3700000,3800000,2600000,2700000 [EPSG:3035]") == (
        ("3700000", "2600000", "3800000", "2700000"),
        "EPSG:3035",
    )
    assert parse_extent(" 1.5, 2.5 ,-3,4 ") == (("1.5", "-3", "2.5", "4"), None)
    for bad in ("1,2,3", "1,2,3,4,5 [EPSG:3035]", ""):
        with pytest.raises(UsageError, match="give four: 'xmin,xmax,ymin,ymax"):
            parse_extent(bad)


def test_extent_order_reaches_the_grid(tmp_path, climate):
    """A wide, short extent stays wide and short: x range first, as QGIS writes it."""
    from geoplant_qgis.cli import parser
    from geoplant_qgis.cli.predict import build_request

    model = make_model(tmp_path / "m.onnx", [POINT_INPUT], W, B)
    args = parser().parse_args(
        ["predict", "--model", model, "--extent", "3803000,3815000,2292000,2300000 [EPSG:3035]",
         "--cell-size", "1000", "--output-richness", str(tmp_path / "r.tif")]
    )  # fmt: skip
    grid = build_request(args).grid
    assert (grid.width, grid.height) == (12, 8)
    assert (grid.left, grid.top) == (3803000.0, 2300000.0)


# --- the same outputs as geoplant:predict ----------------------------------------------------------


def _same_rasters(a: Path, b: Path) -> None:
    with rasterio.open(a) as x, rasterio.open(b) as y:
        assert x.count == y.count and x.dtypes == y.dtypes
        assert x.nodatavals == y.nodatavals
        assert x.transform == y.transform and x.crs == y.crs
        assert x.descriptions == y.descriptions
        assert x.tags() == y.tags()
        for band in range(1, x.count + 1):
            assert x.tags(band) == y.tags(band)
            np.testing.assert_array_equal(x.read(band), y.read(band))
        assert x.overviews(1) == y.overviews(1)


def _same_folders(a: Path, b: Path) -> None:
    names_a = sorted(p.name for p in a.iterdir() if not p.name.endswith(".aux.xml"))
    names_b = sorted(p.name for p in b.iterdir() if not p.name.endswith(".aux.xml"))
    assert names_a == names_b
    for name in names_a:
        if name.endswith(".tif"):
            _same_rasters(a / name, b / name)
        else:  # sidecars: species CSV, .qml
            assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.mark.parametrize("case", ["extent", "area"])
def test_cli_outputs_identical_to_processing(tmp_path, climate, geoplant_provider, case):
    import processing
    from qgis.core import QgsVectorLayer

    model = make_model(tmp_path / "m.onnx", [POINT_INPUT], W, B)
    qgis_out, cli_out = tmp_path / "qgis", tmp_path / "cli"
    qgis_out.mkdir()
    cli_out.mkdir()
    names = {"richness": "richness.tif", "topk": "top.tif", "probabilities": "probs.tif"}
    parameters = {"MODEL": model, "RASTERS": climate, "CELL_SIZE": 1000, "TOP_K": 3}
    args = ["predict", "--model", model, "--raster", climate[0], "--raster", climate[1],
            "--cell-size", "1000", "--top-k", "3"]  # fmt: skip
    if case == "extent":
        parameters["EXTENT"] = extent_text(EXTENT)
        args += ["--extent", extent_text(EXTENT)]
    else:  # polygons in another CRS, SPECIES and THRESHOLD, MAPPING
        left, top, width, height = snapped(EXTENT, 1000)
        x0, y0, x1, y1 = left + 300.0, top - 200.0, left + width * 1000 - 1500.0, top - height * 1000 + 900.0
        triangle = f"POLYGON(({x0} {y0}, {x1} {y1}, {x0} {y1}, {x0} {y0}))"
        from osgeo import ogr, osr

        geometry = ogr.CreateGeometryFromWkt(triangle)
        source, target = osr.SpatialReference(), osr.SpatialReference()
        source.ImportFromEPSG(3035)
        target.ImportFromEPSG(4326)
        target.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
        source.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
        geometry.Transform(osr.CoordinateTransformation(source, target))
        area = write_area(tmp_path / "area.geojson", [geometry.ExportToWkt()], epsg=4326, driver="GeoJSON")
        parameters.update(
            AREA=QgsVectorLayer(area, "area", "ogr"), SPECIES="42,10", THRESHOLD=0.5,
            MAPPING=f"elev={climate[1]}#1",
        )  # fmt: skip
        args += ["--area", area, "--species", "42,10", "--threshold", "0.5"]
        args += ["--mapping", f"elev={climate[1]}#1"]
    for kind, name in names.items():
        parameters[f"OUTPUT_{kind.upper()}"] = str(qgis_out / name)
        args += [f"--output-{kind}", str(cli_out / name)]
    result = processing.run("geoplant:predict", parameters)
    done = cli(*args)
    assert done.returncode == 0, done.stderr
    assert f"cells: {result['CELLS']}" in done.stdout
    assert f"valid cells: {result['VALID_CELLS']}" in done.stdout
    _same_folders(qgis_out, cli_out)


def test_modelinfo_matches_processing(tmp_path, geoplant_provider):
    import json

    import processing

    model = save_linear_point_model(tmp_path / "m.onnx")
    result = processing.run("geoplant:modelinfo", {"MODEL": model})
    done = cli("modelinfo", "--model", model, "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == json.loads(result["CARD_JSON"])
    readable = cli("modelinfo", "--model", model)
    assert readable.returncode == 0 and readable.stdout.startswith("Model: ")


def test_sampleenvironment_matches_processing(tmp_path, climate, geoplant_provider):
    import processing

    polygon = "POLYGON((3803500 2293000, 3812000 2299000, 3803500 2299000, 3803500 2293000))"
    area = write_area(tmp_path / "area.gpkg", [polygon])
    processing.run(
        "geoplant:sampleenvironment",
        {"RASTERS": climate, "AREA": area, "CELL_SIZE": 500, "OUTPUT": str(tmp_path / "qgis.csv")},
    )
    done = cli("sampleenvironment", "--raster", climate[0], "--raster", climate[1], "--area", area,
               "--cell-size", "500", "--output", tmp_path / "cli.csv")  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "cli.csv").read_bytes() == (tmp_path / "qgis.csv").read_bytes()


def test_sampleenvironment_points_csv(tmp_path, climate):
    points = tmp_path / "surveys.csv"
    points.write_text("surveyId;lon;lat\n7;3.6;43.7\n9;3.9;43.5\n")
    out = tmp_path / "o.csv"
    done = cli("sampleenvironment", "--raster", climate[0], "--points", points, "--output", out)
    assert done.returncode == 0, done.stderr
    lines = (tmp_path / "o.csv").read_text().splitlines()
    assert lines[0] == "surveyId,bio1" and [line.split(",")[0] for line in lines[1:]] == ["7", "9"]


# --- refusals: words, no traceback, nothing written -------------------------------------------------


def _user_folder(path: Path) -> Path:
    path.mkdir()
    (path / "richness.tif").write_bytes(b"the user's richness map")
    (path / "notes.txt").write_text("mine")
    return path


@pytest.mark.parametrize(
    "change, message",
    [
        ({"--extent": "1,2,3"}, "give four: 'xmin,xmax,ymin,ymax [CRS]'"),
        ({"--extent": "3803130,3814950,2292470,nan [EPSG:3035]"}, "EXTENT: ymax is not a number (NaN)"),
        ({"--crs": "EPSG:4326"}, "is not projected"),
        ({"--cell-size": "-3"}, "CELL_SIZE must be a number from"),
        ({"--top-k": "2.5"}, "TOP_K must be a whole number"),
        ({"--species": "999"}, "999"),
        ({"--model": "/nowhere/m.onnx"}, "Model file not found"),
        ({"--output-richness": "{out}/richness.png"}, "must be a GeoTIFF (.tif) file"),
        ({"--output-topk": "{raster}"}, "RASTERS"),
        ({"--max-cells": "10"}, "MAX_CELLS"),
        ({"--area": "{out}/notes.txt"}, "cannot be read as a vector file"),
        ({"--threshold": "7"}, "THRESHOLD must be"),
    ],
)
def test_bad_input_refused_in_words_nothing_written(tmp_path, climate, change, message):
    model = make_model(tmp_path / "m.onnx", [POINT_INPUT], W, B)
    out = _user_folder(tmp_path / "out")
    before = snapshot(out)
    options = {
        "--model": model, "--raster": climate[0], "--extent": extent_text(EXTENT), "--cell-size": "1000",
        "--output-richness": str(out / "richness.tif"), "--output-probabilities": str(out / "p.tif"),
    }  # fmt: skip
    for key, value in change.items():
        options[key] = value.format(out=out, raster=climate[0])
    args = [part for pair in options.items() for part in pair]
    done = cli("predict", *args)
    assert done.returncode != 0
    assert message in done.stderr, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert done.stderr.startswith("error: ") or "\nerror: " in done.stderr
    assert snapshot(out) == before


def test_help_lists_predict_first():
    done = cli("--help")
    assert done.returncode == 0
    text = done.stdout
    assert text.index("predict") < text.index("modelinfo") < text.index("sampleenvironment")
    usage = cli("predict", "--help").stdout
    for option in ("--model", "--raster", "--mapping", "--extent", "--area", "--crs", "--cell-size",
                   "--top-k", "--species", "--threshold", "--output-richness", "--output-topk",
                   "--output-probabilities", "--max-cells", "--scheduler"):  # fmt: skip
        assert option in usage
    assert cli().returncode == 2  # no command: the help, on stderr


# --- without QGIS, without dask --------------------------------------------------------------------


def test_runs_where_qgis_cannot_be_imported_and_never_imports_dask(tmp_path, climate):
    model = make_model(tmp_path / "m.onnx", [POINT_INPUT], W, B)
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); import block_qgis\n"
        "from geoplant_qgis.cli import main\n"
        "status = main(sys.argv[2:])\n"
        "loaded = sorted({m.split('.')[0] for m in sys.modules} & {'qgis', 'PyQt5', 'dask', 'distributed'})\n"
        "print('LOADED', loaded); sys.exit(status)\n"
    )
    done = subprocess.run(
        [PYTHON, "-c", script, str(ROOT / ".ci"), "predict", "--model", model, "--raster", climate[0],
         "--raster", climate[1], "--extent", extent_text(EXTENT), "--cell-size", "1000",
         "--output-topk", str(tmp_path / "t.tif")],
        cwd="/", env=cli_env(), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "LOADED []" in done.stdout
    assert (tmp_path / "t.tif").exists()


# --- progress: a bar on a terminal, lines on a pipe -------------------------------------------------


def _progress_args(tmp_path, climate):
    model = make_model(tmp_path / "m.onnx", [POINT_INPUT], W, B)
    return ["predict", "--model", model, "--raster", climate[0], "--raster", climate[1],
            "--extent", extent_text(EXTENT), "--cell-size", "100", "--output-richness",
            str(tmp_path / "r.tif")]  # fmt: skip


def test_progress_bar_on_a_terminal(tmp_path, climate):
    master, slave = pty.openpty()
    process = subprocess.Popen(
        [PYTHON, "-m", "geoplant_qgis", *_progress_args(tmp_path, climate)],
        cwd="/", env=cli_env(), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave,
    )  # fmt: skip
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            break
        try:
            data = os.read(master, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    process.wait(timeout=60)
    os.close(master)
    text = b"".join(chunks).decode()
    assert process.returncode == 0, text
    assert "\r[" in text and "100.0%" in text and "#" * 30 in text
    assert "\n90%\n" not in text.replace("\r\n", "\n")


def test_progress_lines_on_a_pipe(tmp_path, climate):
    done = cli(*_progress_args(tmp_path, climate))
    assert done.returncode == 0, done.stderr
    assert "\r" not in done.stderr
    lines = done.stderr.splitlines()
    assert "0%" in lines and "50%" in lines and "100%" in lines


# --- SIGTERM: cancellation, nothing left ------------------------------------------------------------


def test_sigterm_mid_run_leaves_everything_as_it_was(tmp_path):
    rng = np.random.default_rng(0)
    bio = write_tif(
        tmp_path / "bio.tif", rng.normal(size=(2, 100, 100)).astype("float32"),
        from_origin(3700000, 2700000, 1000, 1000), "EPSG:3035", descriptions=("Bio1", "Bio12"),
    )  # fmt: skip
    model = save_linear_point_model(tmp_path / "m.onnx")
    out = _user_folder(tmp_path / "out")
    before = snapshot(out)
    process = subprocess.Popen(
        [PYTHON, "-m", "geoplant_qgis", "predict", "--model", model, "--raster", bio,
         "--extent", "3700000,3800000,2600000,2700000 [EPSG:3035]", "--cell-size", "25", "--top-k", "2",
         "--output-richness", str(out / "richness.tif"), "--output-topk", str(out / "top.tif")],
        cwd="/", env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    end = time.monotonic() + 60
    while not own_temporaries(out):
        if process.poll() is not None:
            pytest.fail("the run ended before it could be stopped: " + process.communicate()[1])
        assert time.monotonic() < end, "no temporary file appeared"
        time.sleep(0.05)
    time.sleep(0.3)
    process.send_signal(signal.SIGTERM)
    stdout, stderr = process.communicate(timeout=60)
    assert process.returncode != 0
    assert "Stopped by SIGTERM" in stderr
    assert "Traceback" not in stdout + stderr
    assert snapshot(out) == before


# --- pip install . ---------------------------------------------------------------------------------


@pytest.mark.slow
def test_pip_install_gives_a_geoplant_command(tmp_path, climate):
    """``pip install .`` of the project into a fresh venv that sees the system's rasterio and GDAL;
    then ``geoplant --help`` and a small predict from another folder. Runs once in CI: in
    ``make test``, not again in ``make test-core`` (where block_qgis is loaded)."""
    import shutil

    if "block_qgis" in sys.modules:
        pytest.skip("the pip install test runs in make test")

    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "metadata.txt", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    skip = shutil.ignore_patterns("__pycache__", "_deps")
    shutil.copytree(ROOT / "geoplant_qgis", source / "geoplant_qgis", ignore=skip)
    venv = tmp_path / "venv"
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--system-site-packages", str(venv)], check=True)
    install = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "-c", str(ROOT / "constraints.txt"),
         str(source)],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout + install.stderr
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    geoplant = str(venv / "bin" / "geoplant")
    work = tmp_path / "elsewhere"
    work.mkdir()
    shown = subprocess.run([geoplant, "--help"], cwd=work, env=env, capture_output=True, text=True)
    assert shown.returncode == 0 and "predict" in shown.stdout, shown.stderr
    version = subprocess.run([geoplant, "--version"], cwd=work, env=env, capture_output=True, text=True)
    assert version.stdout.strip() not in ("", "geoplant unknown")
    model = make_model(tmp_path / "m.onnx", [POINT_INPUT], W, B)
    done = subprocess.run(
        [geoplant, "predict", "--model", model, "--raster", climate[0], "--raster", climate[1],
         "--extent", extent_text(EXTENT), "--cell-size", "1000", "--top-k", "3", "--output-topk", "top.tif"],
        cwd=work, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in work.iterdir()) == ["top.qml", "top.tif", "top_species.csv"]
    located = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import geoplant_qgis; print(geoplant_qgis.__file__)"],
        cwd=work, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert str(venv) in located.stdout  # the installed package, not the source tree
    bundled = subprocess.run([geoplant, "modelinfo"], cwd=work, env=env, capture_output=True, text=True)
    assert bundled.returncode == 0 and "GeoPlant demo model" in bundled.stdout, bundled.stderr
