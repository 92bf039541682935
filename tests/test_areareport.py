"""geoplant:areareport and core.decisions.areareport: per-site means, maxima and areas equal a
numpy computation over the raster with an independent mask of cell centres (matplotlib's
point-in-polygon), and bad input leaves the output folder as it was."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from decisions_support import (
    CELL,
    CRS,
    NODATA,
    X0,
    Y0,
    fingerprint,
    probabilities,
    temporaries,
    write_probabilities,
)
from matplotlib.path import Path as MplPath

from geoplant_qgis.core.decisions.areareport import area_report
from geoplant_qgis.core.errors import InputDataError

# vertices off the cell lattice (no centre on an edge)
NORTH = [(3_800_237, 2_299_863), (3_802_911, 2_299_541), (3_801_777, 2_298_013), (3_800_413, 2_298_389)]
SOUTH = [(3_801_037, 2_297_463), (3_803_611, 2_297_307), (3_803_207, 2_297_011)]  # thin: few centres

pytestmark = pytest.mark.core


def wkt(points):
    ring = points + [points[0]]
    return "POLYGON((" + ", ".join(f"{x} {y}" for x, y in ring) + "))"


def centre_mask(points, shape):
    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]]
    xs = X0 + (cols + 0.5) * CELL
    ys = Y0 - (rows + 0.5) * CELL
    inside = MplPath(np.array(points, dtype=float)).contains_points(np.c_[xs.ravel(), ys.ravel()])
    return inside.reshape(shape)


@pytest.fixture
def world(tmp_path):
    values = probabilities()
    raster = write_probabilities(tmp_path / "in" / "p.tif", values)
    return tmp_path, values, raster


def expected_rows(values, points, threshold):
    mask = centre_mask(points, values.shape[1:])
    out = []
    for j in range(values.shape[0]):
        v = values[j][mask].astype(np.float64)
        v = v[v != NODATA]
        out.append((v.size, v.mean(), v.max(), (v >= np.float32(threshold)).sum() * CELL * CELL / 10_000))
    return out, mask


def test_site_statistics_equal_numpy_over_the_centre_mask(world):
    tmp_path, values, raster = world
    out = tmp_path / "out"
    report = area_report(
        raster,
        [("north", wkt(NORTH)), ("south", wkt(SOUTH))],
        CRS,
        threshold=0.6,
        output_table=out / "t.csv",
        output_report=out / "r.html",
    )
    table = pd.read_csv(out / "t.csv")
    assert list(table.columns) == [
        "site", "speciesId", "species", "cells", "mean_probability", "max_probability",
        "area_ha_above_threshold",
    ]  # fmt: skip
    for label, points in (("north", NORTH), ("south", SOUTH)):
        rows, mask = expected_rows(values, points, 0.6)
        assert mask.sum() > 0
        site = table[table["site"] == label].reset_index(drop=True)
        assert site["speciesId"].tolist() == [101, 102, 103]
        assert site["species"].tolist() == ["Species A", "Species B", "Species C"]
        for j, (cells, mean, top, area) in enumerate(rows):
            assert site.loc[j, "cells"] == cells
            assert site.loc[j, "mean_probability"] == pytest.approx(mean, rel=1e-5)
            assert site.loc[j, "max_probability"] == pytest.approx(top, rel=1e-5)
            assert site.loc[j, "area_ha_above_threshold"] == pytest.approx(area)
        # expected richness: the per-cell sum over cells where every band has data
        stats = next(s for s in report.sites if s.label == label)
        full = mask & (values != NODATA).all(axis=0)
        richness = values[:, full].astype(np.float64).sum(axis=0)
        assert stats.centres == mask.sum() and stats.richness_cells == full.sum()
        assert stats.richness_mean == pytest.approx(richness.mean())
        assert (stats.richness_min, stats.richness_max) == pytest.approx((richness.min(), richness.max()))
        counts, _ = stats.richness_histogram()
        assert counts.sum() == full.sum()
    html = (out / "r.html").read_text()
    assert html.count("<svg") == 1 + 2 and "Species expected in one site only" in html
    assert temporaries(tmp_path) == []


def test_species_expected_in_one_site_only(tmp_path):
    values = np.full((3, 30, 40), 0.1, dtype=np.float32)
    north = centre_mask(NORTH, (30, 40))
    south = centre_mask(SOUTH, (30, 40))
    values[0][north] = 0.9  # A: expected in north only
    values[1][north | south] = 0.8  # B: in both
    values[2][south] = 0.7  # C: in south only
    raster = write_probabilities(tmp_path / "p.tif", values)
    report = area_report(raster, [("north", wkt(NORTH)), ("south", wkt(SOUTH))], CRS, threshold=0.5)
    once = [(sid, site) for sid, _, site, _ in report.only_in_one_site()]
    assert sorted(once) == [(101, "north"), (103, "south")]


def test_geographic_raster_is_refused(tmp_path):
    values = probabilities()
    raster = write_probabilities(
        tmp_path / "in" / "geo.tif", values, crs="EPSG:4326", x0=3.0, y0=44.0, cell=0.001
    )
    before = fingerprint(tmp_path)
    with pytest.raises(InputDataError, match="geographic CRS"):
        area_report(
            raster,
            [("a", "POLYGON((3 44, 3.01 44, 3.01 43.99, 3 44))")],
            "EPSG:4326",
            output_table=tmp_path / "t.csv",
        )
    assert fingerprint(tmp_path) == before


@pytest.mark.parametrize(
    "case, message",
    [
        ("no polygons", "AREA holds no polygon"),
        ("threshold", "THRESHOLD must be"),
        ("off the raster", "No site of AREA holds the centre of a cell"),
        ("output is input", "is the same file as PROBABILITIES"),
    ],
)
def test_bad_input_leaves_the_folder_as_it_was(world, case, message):
    tmp_path, _, raster = world
    out = tmp_path / "out"
    out.mkdir()
    (out / "t.csv").write_text("an earlier table")
    before = fingerprint(tmp_path)
    sites = [("north", wkt(NORTH))]
    kwargs = dict(threshold=0.5, output_table=out / "t.csv", output_report=out / "r.html")
    if case == "no polygons":
        sites = []
    elif case == "threshold":
        kwargs["threshold"] = 1.5
    elif case == "off the raster":
        sites = [("far", wkt([(p[0] + 50_000, p[1]) for p in NORTH]))]
    else:
        kwargs["output_report"] = raster
    with pytest.raises(Exception, match=message) as error:
        area_report(raster, sites, CRS, **kwargs)
    assert "Unexpected" not in str(error.value)
    assert fingerprint(tmp_path) == before and temporaries(tmp_path) == []


def _polygon_layer(features, with_name=True):
    from qgis.core import QgsFeature, QgsField, QgsGeometry, QgsVectorLayer
    from qgis.PyQt.QtCore import QVariant

    layer = QgsVectorLayer(f"Polygon?crs={CRS}", "sites", "memory")
    if with_name:
        layer.dataProvider().addAttributes([QgsField("name", QVariant.String)])
        layer.updateFields()
    items = []
    for label, points in features:
        f = QgsFeature(layer.fields())
        f.setGeometry(QgsGeometry.fromWkt(wkt(points)))
        if with_name:
            f["name"] = label
        items.append(f)
    layer.dataProvider().addFeatures(items)
    return layer


def test_processing_areareport_labels_and_values(world, geoplant_provider):
    import processing

    tmp_path, values, raster = world
    layer = _polygon_layer([("Mas de Londres", NORTH), ("Causse", SOUTH)])
    out = processing.run(
        "geoplant:areareport",
        {
            "AREA": layer,
            "PROBABILITIES": raster,
            "THRESHOLD": 0.5,
            "OUTPUT_TABLE": str(tmp_path / "t.csv"),
            "OUTPUT_REPORT": str(tmp_path / "r.html"),
        },
    )
    table = pd.read_csv(out["OUTPUT_TABLE"])
    assert table["site"].unique().tolist() == ["Mas de Londres", "Causse"]
    rows, _ = expected_rows(values, NORTH, 0.5)
    north = table[table["site"] == "Mas de Londres"].reset_index(drop=True)
    assert north["mean_probability"].tolist() == pytest.approx([r[1] for r in rows], rel=1e-5)
    assert north["area_ha_above_threshold"].tolist() == pytest.approx([r[3] for r in rows])
    assert "Mas de Londres" in open(out["OUTPUT_REPORT"]).read()
    # without a name field: the feature ids
    unnamed = _polygon_layer([("x", NORTH), ("y", SOUTH)], with_name=False)
    out = processing.run(
        "geoplant:areareport",
        {"AREA": unnamed, "PROBABILITIES": raster, "OUTPUT_TABLE": str(tmp_path / "t2.csv"),
         "OUTPUT_REPORT": str(tmp_path / "r2.html")},
    )  # fmt: skip
    assert pd.read_csv(out["OUTPUT_TABLE"])["site"].unique().tolist() == [1, 2]


def test_processing_areareport_refuses_an_empty_layer(world, geoplant_provider):
    import processing
    from qgis.core import QgsProcessingException

    tmp_path, _, raster = world
    before = fingerprint(tmp_path)
    with pytest.raises(QgsProcessingException, match="AREA holds no polygon"):
        processing.run(
            "geoplant:areareport",
            {"AREA": _polygon_layer([]), "PROBABILITIES": raster, "OUTPUT_TABLE": str(tmp_path / "t.csv"),
             "OUTPUT_REPORT": str(tmp_path / "r.html")},
        )  # fmt: skip
    assert fingerprint(tmp_path) == before


def test_model_predicted_under_the_sites_on_the_fly(tmp_path, monkeypatch):
    """MODEL + RASTERS: probabilities predicted under the sites in a private temporary folder
    (removed), the statistics equal the model's sigmoid at the centres inside."""
    import tempfile

    from make_world import write_tif
    from rasterio.transform import from_origin
    from tiny_models import save_linear_point_model

    from geoplant_qgis.core.decisions.areareport import predict_under_sites

    rng = np.random.default_rng(3)
    bio1 = rng.normal(0, 1, (30, 40)).astype(np.float32)
    bio12 = rng.normal(0, 1, (30, 40)).astype(np.float32)
    transform = from_origin(X0, Y0, CELL, CELL)
    rasters = [
        write_tif(tmp_path / "in" / "bio1.tif", bio1, transform, CRS, -9999.0, ["Bio1"]),
        write_tif(tmp_path / "in" / "bio12.tif", bio12, transform, CRS, -9999.0, ["Bio12"]),
    ]
    model = save_linear_point_model(tmp_path / "in" / "tiny.onnx")
    private = tmp_path / "private"
    private.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(private))
    report = predict_under_sites(
        model, rasters, [("north", wkt(NORTH))], CRS, crs=CRS, cell_size=CELL,
        threshold=0.5, output_table=tmp_path / "out" / "t.csv", output_report=tmp_path / "out" / "r.html",
    )  # fmt: skip
    assert list(private.iterdir()) == []  # the temporary prediction is gone
    weights = np.array([[0.5, -1.0, 0.0], [0.25, 0.5, -2.0]])
    mask = centre_mask(NORTH, (30, 40))
    x = np.c_[bio1[mask], bio12[mask]].astype(np.float64)
    p = 1 / (1 + np.exp(-(x @ weights)))
    table = pd.read_csv(tmp_path / "out" / "t.csv")
    assert table["cells"].tolist() == [mask.sum()] * 3
    assert table["mean_probability"].tolist() == pytest.approx(p.mean(axis=0), rel=1e-4)
    assert table["max_probability"].tolist() == pytest.approx(p.max(axis=0), rel=1e-4)
    assert table["area_ha_above_threshold"].tolist() == pytest.approx((p >= 0.5).sum(axis=0) * 1.0)
    assert report.sites[0].richness_mean == pytest.approx(p.sum(axis=1).mean(), rel=1e-4)
