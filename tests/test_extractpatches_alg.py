"""geoplant:extractpatches through processing.run: every patch pixel vs an independent computation."""

import numpy as np
import pytest
import rasterio
from pyproj import Transformer
from rasterio.transform import from_origin
from test_sampleenvironment_alg import point_layer

from geoplant_qgis.core.geoplant.layout import glc25_patch_relpath

pytestmark = pytest.mark.core

UTM_ORIGIN = (566003.7, 4835012.9, 7.3)


def value(row, col, band):
    return (row * 131 + col * 7) % 30000 + band


def run(params):
    import processing

    return processing.run("geoplant:extractpatches", params)


@pytest.fixture
def s2(tmp_path):
    """A 4-band int16 'Sentinel-2' raster in UTM 31N with 7.3 m pixels and a nodata hole."""
    h, w = 500, 600
    r, c = np.mgrid[0:h, 0:w]
    data = np.stack([value(r, c, b) for b in range(1, 5)]).astype(np.int16)
    data[:, 200:230, 300:340] = -1
    path = tmp_path / "s2.tif"
    x0, y0, px = UTM_ORIGIN
    profile = dict(
        driver="GTiff", width=w, height=h, count=4, dtype="int16", crs="EPSG:32631",
        transform=from_origin(x0, y0, px, px), nodata=-1,
    )  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data[[2, 0, 3, 1]])  # stored as blue, red, nir, green
        for i, name in enumerate(["Blue", "Red", "NIR", "Green"], start=1):
            dst.set_band_description(i, name)
    return str(path), data


def expected_patch(data, x, y, size, r, crs="EPSG:3035"):
    """Independent: each patch pixel centre -> UTM (pyproj) -> floor of the pixel index."""
    off = (np.arange(size) - size / 2 + 0.5) * r
    px, py = np.meshgrid(x + off, y - off)
    ux, uy = Transformer.from_crs(crs, "EPSG:32631", always_xy=True).transform(px, py)
    x0, y0, res = UTM_ORIGIN
    col, row = (ux - x0) / res, (y0 - uy) / res
    inside = (col >= 0) & (col < data.shape[2]) & (row >= 0) & (row < data.shape[1])
    out = np.full((data.shape[0], size, size), -1, dtype=np.int16)
    out[:, inside] = data[:, np.floor(row[inside]).astype(int), np.floor(col[inside]).astype(int)]
    frac = np.minimum(np.abs(col - np.rint(col)), np.abs(row - np.rint(row)))
    return out, frac > 1e-6


def test_points_glc25_patches(geoplant_provider, s2, tmp_path):
    path, data = s2
    utm = Transformer.from_crs("EPSG:32631", "EPSG:4326", always_xy=True)
    lon, lat = utm.transform(
        [567000.0, 568200.5, 569100.0, 580000.0], [4833000.0, 4832000.0, 4833400.0, 4833000.0]
    )
    ids = [1322301, 5000108, 42, 777]
    layer = point_layer(list(zip(lon, lat, strict=True)), ids)
    out = tmp_path / "patches"
    result = run({"POINTS": layer, "RASTER": path, "SIZE": 16, "PIXEL_SIZE": 10, "OUTPUT_FOLDER": str(out)})
    assert result["COUNT"] == 3 and result["SKIPPED"] == 1  # the last point is outside the raster
    to_laea = Transformer.from_crs("EPSG:4326", "EPSG:3035", always_xy=True)
    for lo, la, rel in zip(
        lon[:3], lat[:3], ["01/23/1322301.tiff", "08/01/5000108.tiff", "42/42.tiff"], strict=True
    ):
        file = out / rel
        assert file.exists(), rel
        x, y = to_laea.transform(lo, la)
        with rasterio.open(file) as ds:
            assert ds.count == 4 and ds.dtypes[0] == "int16" and ds.nodata == -1
            assert ds.crs.to_epsg() == 3035
            assert ds.descriptions == ("red", "green", "blue", "nir")
            np.testing.assert_allclose(tuple(ds.transform)[:6], (10, 0, x - 80, 0, -10, y + 80))
            got = ds.read()
        expected, sure = expected_patch(data, x, y, 16, 10.0)
        np.testing.assert_array_equal(got[:, sure], expected[:, sure])
    assert not list(out.rglob("777.tiff"))


def test_grid_patches_two_bands_and_holes(geoplant_provider, s2, tmp_path):
    path, data = s2
    # a 3 x 2 grid of 100 m cells in 3035 over the hole of the raster
    hx, hy = Transformer.from_crs("EPSG:32631", "EPSG:3035", always_xy=True).transform(
        UTM_ORIGIN[0] + 320 * 7.3, UTM_ORIGIN[1] - 215 * 7.3
    )
    left, top = np.floor(hx / 100) * 100 - 100, np.floor(hy / 100) * 100 + 100
    extent = f"{left + 1},{left + 299},{top - 199},{top - 1} [EPSG:3035]"
    out = tmp_path / "grid"
    result = run(
        {"EXTENT": extent, "CELL_SIZE": 100, "RASTER": path, "BANDS": [2, 4], "SIZE": 8, "PIXEL_SIZE": 10,
         "OUTPUT_FOLDER": str(out)}
    )  # fmt: skip
    holes = written = 0
    for cell in range(6):
        row, col = divmod(cell, 3)
        x, y = left + 50 + 100 * col, top - 50 - 100 * row
        expected, sure = expected_patch(data[[0, 1]], x, y, 8, 10.0)  # band 2 = red, band 4 = green
        file = out / glc25_patch_relpath(cell)
        if (expected == -1).all():  # entirely in the hole: no file
            assert not file.exists()
            continue
        with rasterio.open(file) as ds:
            assert ds.count == 2 and ds.dtypes[0] == "int16"
            got = ds.read()
        np.testing.assert_array_equal(got[:, sure], expected[:, sure])
        holes += int((got == -1).sum())
        written += 1
    assert result["COUNT"] == written and result["SKIPPED"] == 6 - written
    assert holes > 0 and 0 < written < 6


def test_bad_input(geoplant_provider, tmp_path):
    from qgis.core import QgsProcessingException

    path = tmp_path / "plain.tif"
    profile = dict(driver="GTiff", width=10, height=10, count=2, dtype="int16", crs="EPSG:32631",
                   transform=from_origin(567000, 4833000, 10, 10))  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.ones((2, 10, 10), dtype=np.int16))
    layer = point_layer([(3.8, 43.6)], [5])
    with pytest.raises(QgsProcessingException, match="No band of the raster is described 'red'"):
        run({"POINTS": layer, "RASTER": str(path), "OUTPUT_FOLDER": str(tmp_path / "o")})
    layer = point_layer([(3.8, 43.6)], [5.5])
    with pytest.raises(QgsProcessingException, match="surveyId '5.5' is not a whole number"):
        run({"POINTS": layer, "RASTER": str(path), "BANDS": [1], "OUTPUT_FOLDER": str(tmp_path / "o")})
    assert not (tmp_path / "o").exists() or not list((tmp_path / "o").rglob("*.tif*"))


def test_real_sentinel2_band(geoplant_provider, samples_dir, tmp_path):
    s2 = str(samples_dir / "rasters" / "sentinel2_oneband_montpellier_utm31n.tif")
    lon, lat = Transformer.from_crs("EPSG:32631", "EPSG:4326", always_xy=True).transform(570260.0, 4829070.0)
    out = tmp_path / "real"
    result = run(
        {
            "POINTS": point_layer([(lon, lat)], [5000108]),
            "RASTER": s2,
            "BANDS": [1],
            "OUTPUT_FOLDER": str(out),
        }
    )
    assert result["COUNT"] == 1
    x, y = Transformer.from_crs("EPSG:4326", "EPSG:3035", always_xy=True).transform(lon, lat)
    with rasterio.open(s2) as ds:
        data = ds.read()
        t = ds.transform
    with rasterio.open(out / "08/01/5000108.tiff") as ds:
        got = ds.read(1)
        assert ds.crs.to_epsg() == 3035 and got.shape == (64, 64)
    off = (np.arange(64) - 32 + 0.5) * 10
    px, py = np.meshgrid(x + off, y - off)
    ux, uy = Transformer.from_crs("EPSG:3035", "EPSG:32631", always_xy=True).transform(px, py)
    col, row = (ux - t.c) / t.a, (uy - t.f) / t.e
    expected = data[0, np.floor(row).astype(int), np.floor(col).astype(int)]
    sure = np.minimum(np.abs(col - np.rint(col)), np.abs(row - np.rint(row))) > 1e-6
    np.testing.assert_array_equal(got[sure], expected[sure])


def test_round_trip_through_loadpatches(geoplant_provider, s2, tmp_path):
    """extractpatches then geoplant:loadpatches gives back the same pixels, CRS and placement."""
    import processing

    path, data = s2
    lon, lat = Transformer.from_crs("EPSG:32631", "EPSG:4326", always_xy=True).transform(
        [567500.0, 568800.0], [4833500.0, 4832500.0]
    )
    dataset = tmp_path / "dataset" / "SatelitePatches" / "PA-test"
    run({"POINTS": point_layer(list(zip(lon, lat, strict=True)), [5000108, 1322301]), "RASTER": path,
         "OUTPUT_FOLDER": str(dataset)})  # fmt: skip
    loaded = tmp_path / "loaded"
    result = processing.run(
        "geoplant:loadpatches", {"INPUT": str(tmp_path / "dataset"), "OUTPUT_FOLDER": str(loaded)}
    )
    assert result["COUNT"] == 2
    for rel in ("08/01/5000108.tiff", "01/23/1322301.tiff"):
        with rasterio.open(dataset / rel) as a, rasterio.open(loaded / rel) as b:
            np.testing.assert_array_equal(a.read(), b.read())
            assert a.transform == b.transform and b.crs.to_epsg() == 3035
            assert b.descriptions == ("red", "green", "blue", "nir")


def test_cancel_leaves_no_patch_of_the_run(s2, tmp_path, monkeypatch):
    """Cancelled after the first patches: those are removed, files already there are kept."""
    from geoplant_qgis.core import extract
    from geoplant_qgis.core.errors import CancelledError
    from geoplant_qgis.core.progress import Progress

    path, _ = s2
    monkeypatch.setattr(extract, "PATCH_BLOCK", 1)
    x, y = Transformer.from_crs("EPSG:32631", "EPSG:3035", always_xy=True).transform(
        UTM_ORIGIN[0] + 100 * 7.3, UTM_ORIGIN[1] - 100 * 7.3
    )
    points = extract.Points(
        np.array([11, 12, 13]), np.array([x, x + 100, x + 200]), np.full(3, y), "EPSG:3035"
    )
    out = tmp_path / "patches"
    earlier = out / "keep.txt"
    earlier.parent.mkdir()
    earlier.write_text("from an earlier run")

    class CancelAfterFirst(Progress):
        calls = 0

        def is_cancelled(self):
            self.calls += 1
            return self.calls > 1

    with pytest.raises(CancelledError):
        extract.extract_patches(
            out, path, bands=[2, 4, 1, 3], size=8, points=points, progress=CancelAfterFirst()
        )
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == ["keep.txt"]
    # the same run without cancelling writes all three (so the test above did write one first)
    result = extract.extract_patches(out, path, bands=[2, 4, 1, 3], size=8, points=points)
    assert len(result.paths) == 3 and all((out / glc25_patch_relpath(i)).exists() for i in (11, 12, 13))
