"""geoplant:sampleenvironment through processing.run: values in the CSV vs independent numpy."""

import numpy as np
import pandas as pd
import pytest
import rasterio
from pyproj import Transformer
from rasterio.transform import from_origin
from test_sampling import encode, expected_at, write_known

pytestmark = pytest.mark.core

X0, Y0 = 3826000.0, 2298000.0  # EPSG:3035, Montpellier


def run(params):
    import processing

    return processing.run("geoplant:sampleenvironment", params)


@pytest.fixture
def rasters(tmp_path):
    geo = write_known(
        tmp_path / "bio_1.tif", "EPSG:4326", from_origin(3.7012, 43.7531, 0.00371, 0.00293), 120, 110,
        nodata=-9999.0, holes=[(46, 52, 42, 48)],
    )  # fmt: skip
    laea = write_known(
        tmp_path / "laea.tif", "EPSG:3035", from_origin(X0 - 3000, Y0 + 3000, 10, 10), 600, 600, 2
    )
    with rasterio.open(laea, "r+") as ds:
        ds.set_band_description(1, "elevation")
        ds.set_band_description(2, "Soilgrid-clay")
    return geo, laea


def point_layer(lonlat, ids, crs="EPSG:4326", field="surveyId"):
    from qgis.core import QgsFeature, QgsGeometry, QgsPointXY, QgsVectorLayer

    layer = QgsVectorLayer(f"Point?crs={crs}&field={field}:double&field=name:string", "points", "memory")
    features = []
    for (x, y), i in zip(lonlat, ids, strict=True):
        f = QgsFeature(layer.fields())
        f.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(x, y)))
        f.setAttributes([float(i), "p"])
        features.append(f)
    layer.dataProvider().addFeatures(features)
    return layer


def test_points(geoplant_provider, rasters, tmp_path):
    geo, laea = rasters
    rng = np.random.default_rng(2)
    x, y = X0 + rng.uniform(-2500, 2500, 300), Y0 + rng.uniform(-2500, 2500, 300)
    lon, lat = Transformer.from_crs("EPSG:3035", "EPSG:4326", always_xy=True).transform(x, y)
    ids = np.arange(300) + 1_000_000
    layer = point_layer(list(zip(lon, lat, strict=True)), ids)
    out = tmp_path / "env.csv"
    result = run({"POINTS": layer, "RASTERS": [geo, laea], "OUTPUT": str(out)})
    assert result["ROWS"] == 300
    table = pd.read_csv(out)
    assert list(table.columns) == ["surveyId", "bio_1", "elevation", "Soilgrid-clay"]
    assert table["surveyId"].tolist() == ids.tolist()
    for column, path, band in (("bio_1", geo, 1), ("elevation", laea, 1), ("Soilgrid-clay", laea, 2)):
        expected, frac = expected_at(path, lon, lat, crs="EPSG:4326", band=band)
        sure = frac > 1e-6
        np.testing.assert_array_equal(table[column].to_numpy()[sure], expected[sure])
    assert table["bio_1"].isna().sum() > 0  # the hole is written as an empty field
    text = out.read_text().splitlines()
    assert any(",," in line or line.split(",")[1] == "" for line in text[1:])
    assert all("." not in v for v in text[1].split(",")[2:])  # whole values written without ".0"


def test_grid_and_mapping(geoplant_provider, rasters, tmp_path):
    geo, laea = rasters
    out = tmp_path / "grid.csv"
    extent = f"{X0 - 1040},{X0 - 640},{Y0 + 330},{Y0 + 590} [EPSG:3035]"
    result = run(
        {
            "EXTENT": extent,
            "CELL_SIZE": 100,
            "CRS": "EPSG:3035",
            "RASTERS": [laea],
            "MAPPING": f"bio1={geo};clay={laea}#2",
            "OUTPUT": str(out),
        }
    )
    table = pd.read_csv(out)
    # snapped: x from X0-1100 to X0-600 (5 columns), y from Y0+300 to Y0+600 (3 rows)
    assert result["ROWS"] == 15 and list(table.columns) == [
        "cellId",
        "x",
        "y",
        "elevation",
        "Soilgrid-clay",
        "bio1",
        "clay",
    ]
    assert table["cellId"].tolist() == list(range(15))
    np.testing.assert_array_equal(table["x"], np.tile(X0 - 1050 + 100 * np.arange(5), 3))
    np.testing.assert_array_equal(table["y"], np.repeat(Y0 + 550 - 100 * np.arange(3), 5))
    rows = (3000 - (table["y"] - Y0)) // 10
    cols = (table["x"] - (X0 - 3000)) // 10
    np.testing.assert_array_equal(table["clay"], encode(rows, cols, 2))
    np.testing.assert_array_equal(table["Soilgrid-clay"], table["clay"])
    expected, _ = expected_at(geo, table["x"].to_numpy(), table["y"].to_numpy())
    np.testing.assert_array_equal(table["bio1"], expected)


def test_bad_input(geoplant_provider, rasters, tmp_path):
    from qgis.core import QgsProcessingException

    geo, laea = rasters
    out = tmp_path / "bad.csv"
    with pytest.raises(QgsProcessingException, match="Give POINTS, or an EXTENT or an AREA"):
        run({"RASTERS": [geo], "OUTPUT": str(out)})
    layer = point_layer([(3.8, 43.6)], [1], field="plot")
    with pytest.raises(QgsProcessingException, match="no 'surveyId' field \\(fields: plot, name\\)"):
        run({"POINTS": layer, "RASTERS": [geo], "OUTPUT": str(out)})
    layer = point_layer([(3.8, 43.6)], [1])
    with pytest.raises(QgsProcessingException, match="MAPPING entry 1 'bio2'"):
        run({"POINTS": layer, "RASTERS": [geo], "MAPPING": "bio2", "OUTPUT": str(out)})
    with pytest.raises(QgsProcessingException, match="is not projected"):
        run(
            {
                "EXTENT": "3.7,3.8,43.6,43.7 [EPSG:4326]",
                "CRS": "EPSG:4326",
                "RASTERS": [geo],
                "OUTPUT": str(out),
            }
        )
    assert not out.exists() and list(tmp_path.glob(".bad.csv*")) == []


def test_real_surveys_across_europe(geoplant_provider, samples_dir, tmp_path):
    meta = pd.read_csv(samples_dir / "glc24" / "metadata.csv").drop_duplicates("surveyId")
    hfp = str(samples_dir / "rasters" / "HumanFootprint_Built2009_WGS84.tif")
    bio1 = str(samples_dir / "rasters" / "chelsa_bio1_montpellier.tif")
    layer = point_layer(list(zip(meta["lon"], meta["lat"], strict=True)), meta["surveyId"])
    out = tmp_path / "real.csv"
    run({"POINTS": layer, "RASTERS": [hfp, bio1], "OUTPUT": str(out)})
    table = pd.read_csv(out)
    assert table["surveyId"].tolist() == meta["surveyId"].tolist()
    expected, frac = expected_at(hfp, meta["lon"].to_numpy(), meta["lat"].to_numpy(), crs="EPSG:4326")
    sure = frac > 1e-6
    np.testing.assert_array_equal(table["HumanFootprint_Built2009_WGS84"].to_numpy()[sure], expected[sure])
    assert table["HumanFootprint_Built2009_WGS84"].notna().sum() > len(table) // 2
    # the Montpellier CHELSA crop covers none or few of the surveys: the rest are empty
    expected, _ = expected_at(bio1, meta["lon"].to_numpy(), meta["lat"].to_numpy(), crs="EPSG:4326")
    np.testing.assert_array_equal(table["chelsa_bio1_montpellier"].to_numpy(), expected)


def test_area_keeps_cells_whose_centre_is_inside(geoplant_provider, rasters, tmp_path):
    from qgis.core import QgsFeature, QgsGeometry, QgsVectorLayer

    _, laea = rasters
    area = QgsVectorLayer("Polygon?crs=EPSG:3035", "area", "memory")
    f = QgsFeature()
    # a triangle over 4 x 4 cells of 100 m; centres with (x - x0) + (y - y0) < 380 are inside
    x0, y0 = X0 - 400, Y0 - 400
    f.setGeometry(QgsGeometry.fromWkt(f"POLYGON(({x0} {y0},{x0 + 380} {y0},{x0} {y0 + 380},{x0} {y0}))"))
    area.dataProvider().addFeatures([f])
    out = tmp_path / "area.csv"
    run({"AREA": area, "CELL_SIZE": 100, "RASTERS": [laea], "OUTPUT": str(out)})
    table = pd.read_csv(out)
    cx, cy = np.meshgrid(x0 + 50 + 100 * np.arange(4), y0 + 350 - 100 * np.arange(4))
    inside = ((cx - x0) + (cy - y0)) < 380
    assert table["cellId"].tolist() == np.flatnonzero(inside).tolist()
    np.testing.assert_array_equal(table["x"], cx[inside])
    np.testing.assert_array_equal(table["y"], cy[inside])
    rows, cols = (3000 - (table["y"] - Y0)) // 10, (table["x"] - (X0 - 3000)) // 10
    np.testing.assert_array_equal(table["elevation"], encode(rows, cols, 1))


def test_cancel_leaves_nothing(rasters, tmp_path, monkeypatch):
    from geoplant_qgis.core import extract
    from geoplant_qgis.core.errors import CancelledError
    from geoplant_qgis.core.progress import Progress

    class CancelAfterFirstBlock(Progress):
        blocks = 0

        def set_progress(self, percent):
            self.blocks += 1

        def is_cancelled(self):
            return self.blocks >= 1

    monkeypatch.setattr(extract, "POINT_BLOCK", 10)
    points = extract.Points(np.arange(50), np.full(50, X0), np.full(50, Y0), "EPSG:3035")
    out = tmp_path / "out"
    with pytest.raises(CancelledError):
        extract.sample_environment(
            out / "env.csv", [rasters[1]], points=points, progress=CancelAfterFirstBlock()
        )
    assert not out.exists()  # the folder the run made is removed with its temporary
