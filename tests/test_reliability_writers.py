"""Issue #10 for the GeoTIFF / CSV / HTML / JSON writers (predict, evaluate,
sampleenvironment, modelinfo): an output that is an input (or another output) is refused
before anything starts, whatever name it is given under (a symbolic link, a hard link,
``dir/../name``); a failed or cancelled run leaves every file that was there byte for byte
as it was, removes the folders it made and leaves no temporary file; a successful run
replaces its outputs and leaves no temporary file either."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
from filestate import own_temporaries, snapshot
from make_world import write_tif
from rasterio.transform import from_origin
from tiny_models import save_linear_point_model

from geoplant_qgis.core import files
from geoplant_qgis.core.errors import CancelledError, OutputError
from geoplant_qgis.core.progress import Progress

pytestmark = pytest.mark.core

X0, Y0 = 3_800_000.0, 2_300_000.0  # EPSG:3035
# 300 x 8 cells of 100 m: wide enough for overviews (a factor 2 is over 128 cells)
EXTENT = (X0 + 100, Y0 - 1000, X0 + 30_100, Y0 - 200)
ALIASES = ("same", "symlink", "hardlink", "dotdot")
REAL_REPLACE = os.replace


# --- helpers ---------------------------------------------------------------------------


temporaries = own_temporaries


def alias(target: Path, kind: str, links: Path) -> str:
    """Another name of ``target``: itself, a symbolic link, a hard link, or ``dir/../dir/name``."""
    links.mkdir(exist_ok=True)
    if kind == "same":
        return str(target)
    if kind == "symlink":
        link = links / f"sym_{target.name}"
        link.symlink_to(target)
        return str(link)
    if kind == "hardlink":
        link = links / f"hard_{target.name}"
        os.link(target, link)
        return str(link)
    assert kind == "dotdot"
    return f"{target.parent}/../{target.parent.name}/{target.name}"


def assert_names_both(error, output_label, output_name, input_label, input_path):
    text = str(error)
    assert output_label in text and input_label in text, text
    assert os.path.basename(output_name) in text and str(input_path) in text, text


class CancelAfter(Progress):
    """Cancelled from the ``n``-th call of check_cancelled or set_progress on."""

    def __init__(self, n):
        self.n, self.calls = n, 0

    def set_progress(self, percent):
        self.calls += 1

    def check_cancelled(self):
        self.calls += 1
        super().check_cancelled()

    def is_cancelled(self):
        return self.calls >= self.n


def failing_replace_on(monkeypatch, n):
    """os.replace raising on its ``n``-th call (a file locked, a folder made read-only);
    returns the list of calls made."""
    real = os.replace
    calls = []

    def replace(src, dst, *args, **kwargs):
        calls.append((src, dst))
        if len(calls) == n:
            raise PermissionError(13, "Permission denied", src, None, dst)
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(files.os, "replace", replace)
    return calls


def count_replaces(monkeypatch):
    real = os.replace
    calls = []

    def replace(src, dst, *args, **kwargs):
        calls.append((src, dst))
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(files.os, "replace", replace)
    return calls


# --- the world -------------------------------------------------------------------------


@pytest.fixture
def world(tmp_path):
    """data/: two rasters (one with an .aux.xml), the model, a MAPPING CSV, surveys; out/:
    the outputs of an earlier run and a file of the user's."""
    root = tmp_path / "root"
    data = root / "data"
    data.mkdir(parents=True)
    rows, cols = np.mgrid[0:12, 0:310]
    transform = from_origin(X0, Y0, 100, 100)
    bio1 = write_tif(data / "Bio1.tif", (rows * 0.1 + cols * 0.01).astype(np.float32), transform, "EPSG:3035")
    bio12 = write_tif(data / "Bio12.tif", (cols % 7 - rows * 0.2).astype(np.float32), transform, "EPSG:3035")
    (data / "Bio12.tif.aux.xml").write_text("<PAMDataset>the user's statistics</PAMDataset>\n")
    model = save_linear_point_model(data / "m.onnx")
    mapping = data / "map_species.csv"
    mapping.write_text("variable,path,band\nBio1,Bio1.tif,1\n")
    # surveys (GeoPlant PA columns, lon/lat) for evaluate: species 100..102 of the model
    from rasterio.warp import transform as warp

    from geoplant_qgis.core.geoplant.observations import STANDARD_COLUMNS

    pts = [
        (1, X0 + 550, Y0 - 550, [100]),
        (2, X0 + 5050, Y0 - 350, [101, 102]),
        (3, X0 + 12050, Y0 - 750, [102]),
    ]
    records = []
    for sid, x, y, species in pts:
        (lon,), (lat,) = warp("EPSG:3035", "EPSG:4326", [x], [y])
        for s in species:
            records.append((lon, lat, 2020, 10.0, 25.0, "ALPINE", "France", float(s), sid))
    pd.DataFrame(records, columns=list(STANDARD_COLUMNS)).to_csv(data / "pa.csv", index=False)
    out = root / "out"
    out.mkdir()
    previous = {
        "r.tif": b"old richness",
        "r.tif.aux.xml": b"<PAMDataset>old richness statistics</PAMDataset>",
        "t.tif": b"old top-k",
        "t_species.csv": b"id,name\n1,old\n",
        "t.qml": b"<qgis>old style</qgis>",
        "p.tif": b"old probabilities",
        "env.csv": b"surveyId,old\n1,2\n",
        "report.html": b"<html>old report</html>",
        "table.csv": b"old,table\n",
        "card.json": b'{"old": true}\n',
        "mine.txt": b"the user's own file",
    }
    for name, content in previous.items():
        (out / name).write_bytes(content)
    return {
        "root": root,
        "data": data,
        "out": out,
        "links": root / "links",
        "rasters": [bio1, bio12],
        "model": model,
        "mapping": str(mapping),
        "surveys": str(data / "pa.csv"),
        "survey_points": pts,
    }


# --- predict -----------------------------------------------------------------------------


def predict(world, progress=None, **outputs):
    from geoplant_qgis.core import engine

    outputs = outputs or {
        "output_richness": str(world["out"] / "r.tif"),
        "output_topk": str(world["out"] / "t.tif"),
        "output_probabilities": str(world["out"] / "new" / "deeper" / "p.tif"),
    }
    return engine.predict(
        world["model"],
        world["rasters"],
        extent=EXTENT,
        extent_crs="EPSG:3035",
        crs="EPSG:3035",
        cell_size=100,
        top_k=2,
        block_cells=256,
        progress=progress,
        **outputs,
    )


@pytest.mark.parametrize("kind", ALIASES)
@pytest.mark.parametrize(
    ("key", "label", "target", "input_label"),
    [
        ("output_richness", "OUTPUT_RICHNESS", "Bio1.tif", "RASTERS"),
        ("output_probabilities", "OUTPUT_PROBABILITIES", "Bio12.tif.aux.xml", "RASTERS (its sidecar)"),
        ("output_topk", "OUTPUT_TOPK", "m.onnx", "MODEL"),
    ],
)
def test_predict_refuses_an_input_as_output(world, kind, key, label, target, input_label):
    name = alias(world["data"] / target, kind, world["links"])
    before = snapshot(world["root"])
    with pytest.raises(OutputError) as error:
        predict(world, **{key: name})
    assert_names_both(error.value, label, name, input_label, world["data"] / target)
    assert snapshot(world["root"]) == before


@pytest.mark.parametrize("kind", ALIASES)
def test_predict_refuses_a_sidecar_that_is_an_input(world, kind):
    """The top-K raster t.tif is new, but its species table ``map_species.csv`` is the MAPPING."""
    mapping = Path(world["mapping"])
    folder = str(mapping.parent)
    if kind == "symlink":  # the output folder reached through a link
        link = world["links"]
        link.mkdir(exist_ok=True)
        (link / "data_link").symlink_to(mapping.parent)
        folder = str(link / "data_link")
    elif kind == "dotdot":
        folder = f"{mapping.parent}/../{mapping.parent.name}"
    elif kind == "hardlink":  # a hard link to the MAPPING under the sidecar's name elsewhere
        other = world["root"] / "elsewhere"
        other.mkdir()
        os.link(mapping, other / "map_species.csv")
        folder = str(other)
        world = dict(world, mapping=str(other / "map_species.csv"))
        mapping = Path(world["mapping"])
    before = snapshot(world["root"])
    from geoplant_qgis.core import engine

    with pytest.raises(OutputError) as error:
        engine.predict(
            world["model"],
            world["rasters"],
            mapping=world["mapping"],
            extent=EXTENT,
            extent_crs="EPSG:3035",
            cell_size=100,
            top_k=2,
            output_topk=os.path.join(folder, "map.tif"),
        )
    label = "OUTPUT_TOPK (its sidecar map_species.csv)"
    assert_names_both(error.value, label, "map_species.csv", "MAPPING", mapping)
    assert snapshot(world["root"]) == before


def test_predict_refuses_mapping_rasters_area_files_and_outputs_twice(world):
    from geoplant_qgis.core import engine

    extra = world["root"] / "extra"
    extra.mkdir()
    transform = from_origin(X0, Y0, 100, 100)
    other = write_tif(extra / "e.tif", np.ones((3, 3), np.float32), transform, "EPSG:3035")
    area = extra / "area.gpkg"
    area.write_bytes(b"not really a geopackage")
    link = extra / "link_to_richness.tif"
    link.symlink_to(world["out"] / "r.tif")
    before = snapshot(world["root"])
    # a raster named only by MAPPING
    with pytest.raises(OutputError) as error:
        engine.predict(
            world["model"],
            world["rasters"],
            mapping=f"Bio1={other}",
            extent=EXTENT,
            extent_crs="EPSG:3035",
            cell_size=100,
            output_richness=str(extra / ".." / "extra" / "e.tif"),
        )
    assert_names_both(error.value, "OUTPUT_RICHNESS", "e.tif", "a raster of MAPPING", other)
    # the AREA layer's file (given by the Processing adapter)
    with pytest.raises(OutputError) as error:
        engine.predict(
            world["model"],
            world["rasters"],
            extent=EXTENT,
            extent_crs="EPSG:3035",
            cell_size=100,
            output_richness=str(area),
            input_files={"AREA": f"{area}|layername=area"},
        )
    assert_names_both(error.value, "OUTPUT_RICHNESS", "area.gpkg", "AREA", area)
    # two outputs that are one file under two names
    with pytest.raises(OutputError) as error:
        predict(world, output_richness=str(world["out"] / "r.tif"), output_probabilities=str(link))
    assert_names_both(error.value, "OUTPUT_PROBABILITIES", "link_to_richness.tif", "OUTPUT_RICHNESS", "r.tif")
    assert snapshot(world["root"]) == before


def _check_untouched(world, before):
    assert temporaries(world["root"]) == []
    assert snapshot(world["root"]) == before  # every file byte-identical, nothing added (no new/)


def test_predict_cancelled_at_every_point_leaves_everything(world):
    before = snapshot(world["root"])
    # how many cancellation points a whole run has (and that it succeeds)
    counting = CancelAfter(10**9)
    # a dry run elsewhere, so that ``out`` keeps its old files
    scratch = world["root"].parent / "scratch"
    predict(
        world,
        counting,
        output_richness=str(scratch / "r.tif"),
        output_topk=str(scratch / "t.tif"),
        output_probabilities=str(scratch / "new" / "p.tif"),
    )
    total = counting.calls
    assert total >= 10
    for n in range(1, total + 1):
        progress = CancelAfter(n)
        with pytest.raises(CancelledError):
            predict(world, progress)
        _check_untouched(world, before)


def test_predict_failing_publish_leaves_everything(world, monkeypatch):
    before = snapshot(world["root"])
    calls = count_replaces(monkeypatch)
    scratch = world["root"].parent / "scratch"
    for name in ("r.tif", "r.tif.aux.xml", "t.tif", "t_species.csv", "t.qml"):
        os.makedirs(scratch, exist_ok=True)
        (scratch / name).write_bytes((world["out"] / name).read_bytes())
    outputs = {
        "output_richness": str(scratch / "r.tif"),
        "output_topk": str(scratch / "t.tif"),
        "output_probabilities": str(scratch / "new" / "deeper" / "p.tif"),
    }
    predict(world, **outputs)
    total = len(calls)
    assert total == 10  # 5 new files, 5 old ones moved aside (p.tif is new)
    monkeypatch.undo()
    for n in range(1, total + 1):
        failing_replace_on(monkeypatch, n)
        with pytest.raises(OutputError, match="Cannot put .* in place: Permission denied"):
            predict(world)
        monkeypatch.undo()
        _check_untouched(world, before)


def test_predict_success_replaces_outputs(world):
    before = snapshot(world["root"])
    predict(world)
    after = snapshot(world["root"])
    out = world["out"]
    assert temporaries(world["root"]) == []
    # the outputs are new, the replaced richness' statistics went with it
    for name in ("r.tif", "t.tif", "t_species.csv", "t.qml"):
        assert after[f"out/{name}"] != before[f"out/{name}"]
    assert "out/r.tif.aux.xml" not in after
    assert (out / "t_species.csv").read_text() == "id,name\n100,Species 0\n101,Species 1\n102,Species 2\n"
    with rasterio.open(out / "new" / "deeper" / "p.tif") as ds:
        assert (ds.width, ds.height, ds.count) == (300, 8, 3) and ds.overviews(1) == [2]
    with rasterio.open(out / "r.tif") as ds:
        richness = ds.read(1)
        assert richness.shape == (8, 300) and np.all((richness > 0) & (richness < 3))
    # everything else as it was
    changed = {"out/r.tif", "out/r.tif.aux.xml", "out/t.tif", "out/t_species.csv", "out/t.qml"}
    assert {k: v for k, v in after.items() if k not in changed and not k.startswith("out/new")} == {
        k: v for k, v in before.items() if k not in changed
    }


def test_predict_processing_refuses_a_raster_as_output(world, geoplant_provider):
    import processing
    from qgis.core import QgsProcessingException

    name = alias(world["data"] / "Bio1.tif", "symlink", world["links"])
    before = snapshot(world["root"])
    with pytest.raises(QgsProcessingException) as error:
        processing.run(
            "geoplant:predict",
            {
                "MODEL": world["model"],
                "RASTERS": world["rasters"],
                "EXTENT": f"{EXTENT[0]},{EXTENT[2]},{EXTENT[1]},{EXTENT[3]} [EPSG:3035]",
                "CRS": "EPSG:3035",
                "CELL_SIZE": 100,
                "TOP_K": 2,
                "OUTPUT_RICHNESS": str(world["out"] / "r.tif"),
                "OUTPUT_TOPK": name,
            },
        )
    assert_names_both(error.value, "OUTPUT_TOPK", name, "RASTERS", world["data"] / "Bio1.tif")
    assert snapshot(world["root"]) == before


# --- evaluate ----------------------------------------------------------------------------


def _surveys(world):
    from geoplant_qgis.core.evaluate import surveys_from_csv

    return surveys_from_csv(world["surveys"])


def evaluate(world, progress=None, output_report=None, output_table=None, **kwargs):
    from geoplant_qgis.core.evaluate import evaluate_surveys

    kwargs.setdefault("model", world["model"])
    kwargs.setdefault("rasters", world["rasters"])
    return evaluate_surveys(
        _surveys(world),
        "EPSG:4326",
        k=2,
        output_report=output_report if output_report is not None else str(world["out"] / "report.html"),
        output_table=output_table if output_table is not None else str(world["out"] / "table.csv"),
        progress=progress,
        input_files={"SURVEYS": world["surveys"]},
        **kwargs,
    )


@pytest.mark.parametrize("kind", ALIASES)
@pytest.mark.parametrize(
    ("key", "label", "target", "input_label"),
    [
        ("output_table", "OUTPUT_TABLE", "pa.csv", "SURVEYS"),
        ("output_report", "OUTPUT_REPORT", "m.onnx", "MODEL"),
        ("output_table", "OUTPUT_TABLE", "Bio12.tif", "RASTERS"),
        ("output_report", "OUTPUT_REPORT", "map_species.csv", "MAPPING"),
    ],
)
def test_evaluate_refuses_an_input_as_output(world, kind, key, label, target, input_label):
    name = alias(world["data"] / target, kind, world["links"])
    before = snapshot(world["root"])
    with pytest.raises(OutputError) as error:
        evaluate(world, mapping=world["mapping"], **{key: name})
    assert_names_both(error.value, label, name, input_label, world["data"] / target)
    assert snapshot(world["root"]) == before


@pytest.mark.parametrize("kind", ALIASES)
def test_evaluate_refuses_the_report_as_table_and_a_prediction_raster(world, kind):
    report = world["out"] / "report.html"
    name = alias(report, kind, world["links"])
    before = snapshot(world["root"])
    with pytest.raises(OutputError) as error:
        evaluate(world, output_report=str(report), output_table=name)
    assert_names_both(error.value, "OUTPUT_TABLE", name, "OUTPUT_REPORT", report)
    predictions = write_tif(
        world["root"] / "pred.tif", np.zeros((1, 3, 3), np.float32), from_origin(X0, Y0, 100, 100),
        "EPSG:3035",
        descriptions=["a (100)"],
    )  # fmt: skip
    before = snapshot(world["root"])
    with pytest.raises(OutputError) as error:
        table = alias(Path(predictions), "dotdot", world["links"])
        evaluate(world, output_table=table, predictions=[predictions])
    assert_names_both(error.value, "OUTPUT_TABLE", "pred.tif", "PREDICTIONS", predictions)
    assert snapshot(world["root"]) == before


def test_evaluate_cancelled_or_failing_publish_leaves_everything(world, monkeypatch):
    before = snapshot(world["root"])
    counting = CancelAfter(10**9)
    scratch = world["root"].parent / "scratch"
    evaluate(world, counting, output_report=str(scratch / "a.html"), output_table=str(scratch / "a.csv"))
    total = counting.calls
    assert total >= 4
    # the table in a folder the run makes: removed again
    table = str(world["out"] / "new" / "table.csv")
    for n in range(1, total):  # the last call, set_progress(100), comes after the publication
        with pytest.raises(CancelledError):
            evaluate(world, CancelAfter(n), output_table=table)
        _check_untouched(world, before)
    for n in range(1, 4):  # report: moved aside, renamed; table: renamed (new name)
        failing_replace_on(monkeypatch, n)
        with pytest.raises(OutputError, match="Cannot put .* in place: Permission denied"):
            evaluate(world)
        monkeypatch.undo()
        _check_untouched(world, before)


def test_evaluate_success_publishes_both(world):
    before = snapshot(world["root"])
    result = evaluate(world)
    after = snapshot(world["root"])
    assert temporaries(world["root"]) == []
    assert after["out/report.html"] != before["out/report.html"]
    assert "<svg" in (world["out"] / "report.html").read_text()
    table = pd.read_csv(world["out"] / "table.csv")
    assert table["surveyId"].tolist() == [1, 2, 3] and result.n_surveys == 3
    changed = {"out/report.html", "out/table.csv"}
    assert {k: v for k, v in after.items() if k not in changed} == {
        k: v for k, v in before.items() if k not in changed
    }


def test_evaluate_processing_refuses_the_surveys_as_table(world, geoplant_provider):
    import processing
    from qgis.core import QgsProcessingException

    name = alias(Path(world["surveys"]), "hardlink", world["links"])
    before = snapshot(world["root"])
    with pytest.raises(QgsProcessingException) as error:
        processing.run(
            "geoplant:evaluate",
            {
                "SURVEYS": world["surveys"],
                "MODEL": world["model"],
                "RASTERS": world["rasters"],
                "TOP_K": 2,
                "OUTPUT_REPORT": str(world["out"] / "report.html"),
                "OUTPUT_TABLE": name,
            },
        )
    assert_names_both(error.value, "OUTPUT_TABLE", name, "SURVEYS", world["surveys"])
    assert snapshot(world["root"]) == before


# --- sampleenvironment -----------------------------------------------------------------


def _points(n=50):
    from geoplant_qgis.core.extract import Points

    xs = X0 + 150 + 300 * np.arange(n)
    return Points(np.arange(n), xs, np.full(n, Y0 - 450), "EPSG:3035")


def sample(world, output=None, progress=None, **kwargs):
    from geoplant_qgis.core.extract import sample_environment

    return sample_environment(
        output or str(world["out"] / "env.csv"),
        world["rasters"],
        kwargs.pop("mapping", None),
        points=_points(),
        progress=progress,
        **kwargs,
    )


@pytest.mark.parametrize("kind", ALIASES)
@pytest.mark.parametrize(
    ("target", "input_label", "extra"),
    [
        ("Bio1.tif", "RASTERS", {}),
        ("map_species.csv", "MAPPING", {}),
        ("points.gpkg", "POINTS", {"POINTS": "{data}/points.gpkg|layername=points"}),
    ],
)
def test_sampleenvironment_refuses_an_input_as_output(world, kind, target, input_label, extra):
    (world["data"] / "points.gpkg").write_bytes(b"a survey GeoPackage")
    name = alias(world["data"] / target, kind, world["links"])
    before = snapshot(world["root"])
    inputs = {k: v.format(data=world["data"]) for k, v in extra.items()}
    with pytest.raises(OutputError) as error:
        sample(world, name, mapping=world["mapping"], input_files=inputs)
    assert_names_both(error.value, "OUTPUT", name, input_label, world["data"] / target)
    assert snapshot(world["root"]) == before


def test_sampleenvironment_cancelled_or_failing_publish_leaves_everything(world, monkeypatch):
    from geoplant_qgis.core import extract

    monkeypatch.setattr(extract, "POINT_BLOCK", 10)
    before = snapshot(world["root"])
    counting = CancelAfter(10**9)
    sample(world, str(world["root"].parent / "scratch" / "env.csv"), counting)
    total = counting.calls
    assert total >= 10  # 5 blocks
    for output in (world["out"] / "env.csv", world["out"] / "new" / "env.csv"):
        for n in range(1, total + 1):
            with pytest.raises(CancelledError):
                sample(world, str(output), CancelAfter(n))
            _check_untouched(world, before)
    for n in (1, 2):  # the old file moved aside, the new one renamed
        failing_replace_on(monkeypatch, n)
        with pytest.raises(OutputError, match="Cannot put .* in place: Permission denied"):
            sample(world)
        monkeypatch.setattr(files.os, "replace", REAL_REPLACE)
        _check_untouched(world, before)


def test_sampleenvironment_success_replaces_the_csv(world):
    before = snapshot(world["root"])
    result = sample(world)
    after = snapshot(world["root"])
    assert temporaries(world["root"]) == [] and result.rows == 50
    table = pd.read_csv(world["out"] / "env.csv")
    assert table.columns.tolist() == ["surveyId", "Bio1", "Bio12"] and len(table) == 50
    assert {k: v for k, v in after.items() if k != "out/env.csv"} == {
        k: v for k, v in before.items() if k != "out/env.csv"
    }


def test_sampleenvironment_processing_refuses_the_points_file(world, geoplant_provider):
    import processing
    from osgeo import ogr, osr
    from qgis.core import QgsProcessingException

    gpkg = world["data"] / "points.gpkg"
    driver = ogr.GetDriverByName("GPKG")
    ds = driver.CreateDataSource(str(gpkg))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(3035)
    layer = ds.CreateLayer("points", srs, ogr.wkbPoint)
    layer.CreateField(ogr.FieldDefn("surveyId", ogr.OFTInteger))
    feature = ogr.Feature(layer.GetLayerDefn())
    feature.SetField("surveyId", 1)
    feature.SetGeometry(ogr.CreateGeometryFromWkt(f"POINT ({X0 + 150} {Y0 - 450})"))
    layer.CreateFeature(feature)
    ds = None
    name = alias(gpkg, "dotdot", world["links"])
    before = snapshot(world["root"])
    with pytest.raises(QgsProcessingException) as error:
        processing.run(
            "geoplant:sampleenvironment", {"POINTS": str(gpkg), "RASTERS": world["rasters"], "OUTPUT": name}
        )
    assert_names_both(error.value, "OUTPUT", "points.gpkg", "POINTS", gpkg)
    assert snapshot(world["root"]) == before


# --- modelinfo ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ALIASES)
def test_modelinfo_refuses_the_model_as_json(world, kind, geoplant_provider):
    import processing
    from qgis.core import QgsProcessingException

    name = alias(Path(world["model"]), kind, world["links"])
    before = snapshot(world["root"])
    with pytest.raises(QgsProcessingException) as error:
        processing.run("geoplant:modelinfo", {"MODEL": world["model"], "OUTPUT_JSON": name})
    assert_names_both(error.value, "OUTPUT_JSON", name, "MODEL", world["model"])
    assert snapshot(world["root"]) == before


def test_modelinfo_cancelled_failing_or_successful(world, geoplant_provider, monkeypatch):
    import json

    import processing
    from qgis.core import QgsProcessingException, QgsProcessingFeedback

    before = snapshot(world["root"])
    for target in (world["out"] / "card.json", world["out"] / "new" / "card.json"):
        feedback = QgsProcessingFeedback()
        feedback.cancel()
        with pytest.raises(QgsProcessingException, match="Cancelled"):
            processing.run(
                "geoplant:modelinfo", {"MODEL": world["model"], "OUTPUT_JSON": str(target)}, feedback=feedback
            )
        _check_untouched(world, before)
    for n in (1, 2):
        failing_replace_on(monkeypatch, n)
        with pytest.raises(QgsProcessingException, match="Permission denied"):
            card = str(world["out"] / "card.json")
            processing.run("geoplant:modelinfo", {"MODEL": world["model"], "OUTPUT_JSON": card})
        monkeypatch.undo()
        _check_untouched(world, before)
    result = processing.run(
        "geoplant:modelinfo", {"MODEL": world["model"], "OUTPUT_JSON": str(world["out"] / "card.json")}
    )
    assert json.loads((world["out"] / "card.json").read_text()) == json.loads(result["CARD_JSON"])
    assert temporaries(world["root"]) == []
    after = snapshot(world["root"])
    assert {k: v for k, v in after.items() if k != "out/card.json"} == {
        k: v for k, v in before.items() if k != "out/card.json"
    }


# --- the dock ----------------------------------------------------------------------------


def test_a_late_cancel_never_removes_files_that_were_there(tmp_path, qgis_app):
    """A cancel that comes after the algorithm published: outputs whose names existed before
    the run are kept (the previous files are gone already); new ones only are removed."""
    from geoplant_qgis.gui.run import remove_outputs

    old, new = tmp_path / "old.tif", tmp_path / "new.tif"
    for path in (old, new, tmp_path / "old_species.csv", tmp_path / "new.qml"):
        path.write_bytes(b"x")
    remove_outputs([str(old), str(new)], keep=[str(old), str(tmp_path / "old_species.csv")])
    assert sorted(os.listdir(tmp_path)) == ["old.tif", "old_species.csv"]
