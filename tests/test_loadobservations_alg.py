"""geoplant:loadobservations through Processing, on the real sample and on bad input."""

import os

import numpy as np
import pandas as pd
import pytest
from qgis.core import NULL, QgsFeature, QgsGeometry, QgsPointXY, QgsVectorLayer

HEADER = "lon,lat,year,geoUncertaintyInM,areaInM2,region,country,speciesId,surveyId"


def run(params):
    import processing

    return processing.run("geoplant:loadobservations", params)


def features(path):
    layer = QgsVectorLayer(str(path), "obs", "ogr")
    assert layer.isValid()
    rows = []
    for f in layer.getFeatures():
        point = f.geometry().asPoint()
        values = [None if v == NULL else v for v in f.attributes()]
        rows.append(
            {**dict(zip(layer.fields().names(), values, strict=True)), "x": point.x(), "y": point.y()}
        )
    crs = layer.crs().authid()
    del layer
    return rows, crs


def test_aggregated_sample(geoplant_provider, samples_dir, tmp_path):
    csv = samples_dir / "glc24" / "metadata.csv"
    out = tmp_path / "surveys.gpkg"
    result = run({"INPUT": str(csv), "AGGREGATE": True, "OUTPUT": str(out)})
    assert result["OUTPUT"] == str(out) and result["COUNT"] == 99 and result["MALFORMED"] == 0
    assert sorted(os.listdir(tmp_path)) == ["surveys.gpkg"]
    rows, crs = features(out)
    assert crs == "EPSG:4326"
    expected = pd.read_csv(csv)
    by_id = {r["surveyId"]: r for r in rows}
    assert len(by_id) == expected["surveyId"].nunique()
    for survey, group in expected.groupby("surveyId"):
        r = by_id[survey]
        first = group.iloc[0]
        assert (r["x"], r["y"]) == (first["lon"], first["lat"])
        assert r["speciesIds"] == " ".join(str(v) for v in sorted({int(s) for s in group["speciesId"]}))
        assert r["richness"] == group["speciesId"].nunique()
        assert r["year"] == first["year"] and r["country"] == first["country"]
        if np.isfinite(first["areaInM2"]):
            assert r["areaInM2"] == first["areaInM2"]
        else:  # empty or -inf -> NULL
            assert r["areaInM2"] is None
    assert by_id[1322301]["speciesIds"] == "8748"


def test_rows_with_extent_and_area(geoplant_provider, tmp_path):
    csv = tmp_path / "obs.csv"
    csv.write_text(
        HEADER
        + "\n1.0,45.0,2019,1.0,,A,France,10.0,1\n2.0,45.0,2019,1.0,,A,France,11.0,1\n"
        + "5.0,45.0,2019,1.0,,A,France,12.0,2\n1.5,47.5,2019,1.0,,A,France,13.0,3\n"
        + "oops,45.0,2019,1.0,,A,France,12.0,2\n"
    )
    out = tmp_path / "rows.gpkg"
    result = run(
        {"INPUT": str(csv), "AGGREGATE": False, "EXTENT": "0,3,44,48 [EPSG:4326]", "OUTPUT": str(out)}
    )
    assert result["COUNT"] == 3 and result["MALFORMED"] == 1
    rows, _ = features(out)
    assert sorted(r["speciesId"] for r in rows) == [10, 11, 13]
    # AREA: a triangle that holds (1, 45) and (1.5, 47.5) but not (2, 45)
    area = QgsVectorLayer("Polygon?crs=EPSG:4326", "area", "memory")
    f = QgsFeature()
    f.setGeometry(QgsGeometry.fromPolygonXY([[QgsPointXY(0, 44), QgsPointXY(1.8, 44), QgsPointXY(1.8, 48)]]))
    # (1,45): inside; (2,45): outside bbox; (1.5,47.5): x=1.5 < 0+1.8*(47.5-44)/4=1.575 -> outside
    area.dataProvider().addFeatures([f])
    out2 = tmp_path / "area.gpkg"
    result = run({"INPUT": str(csv), "AGGREGATE": True, "AREA": area, "OUTPUT": str(out2)})
    rows, _ = features(out2)
    assert [(r["surveyId"], r["speciesIds"], r["richness"]) for r in rows] == [(1, "10", 1)]


def test_missing_columns_clear_error_nothing_written(geoplant_provider, tmp_path):
    from qgis.core import QgsProcessingException

    csv = tmp_path / "bad.csv"
    csv.write_text("x,y,speciesId\n1,2,3\n")
    out = tmp_path / "out" / "o.gpkg"
    with pytest.raises(QgsProcessingException, match=r"lacks the required column\(s\) lon, lat, surveyId"):
        run({"INPUT": str(csv), "OUTPUT": str(out)})
    assert not out.parent.exists() or os.listdir(out.parent) == []


def test_style_survey_points(qgis_app, tmp_path, geoplant_provider, samples_dir):
    from geoplant_qgis.processing.styles import style_survey_points

    out = tmp_path / "s.gpkg"
    run({"INPUT": str(samples_dir / "glc25" / "metadata.csv"), "OUTPUT": str(out)})
    layer = QgsVectorLayer(str(out), "s", "ogr")
    assert style_survey_points(layer)
    renderer = layer.renderer()
    assert renderer.type() == "graduatedSymbol" and renderer.classAttribute() == "richness"
    ranges = renderer.ranges()
    assert ranges[0].lowerValue() == 1 and ranges[-1].upperValue() == 3  # richness 1..3 in the sample
    sizes = [r.symbol().size() for r in ranges]
    assert sizes == sorted(sizes) and sizes[0] < sizes[-1]
