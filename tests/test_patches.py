"""GLC24 JPEG pairs and GLC25 GeoTIFF patches -> georeferenced 4-band arrays."""

import os
import shutil
import warnings

import numpy as np
import pytest
import rasterio
from rasterio.errors import NotGeoreferencedWarning
from rasterio.warp import transform as warp_transform

from geoplant_qgis.core.errors import InputDataError
from geoplant_qgis.core.geoplant.layout import write_glc25_patch
from geoplant_qgis.core.geoplant.patches import (
    GLC24,
    GLC25,
    PatchDataset,
    detect_layout,
    read_glc24_patch,
    read_glc25_patch,
)

pytestmark = pytest.mark.core

RGB = "glc24/PA_Train_SatellitePatches_RGB/pa_train_patches_rgb/01/23/1322301.jpeg"
NIR = "glc24/PA_Train_SatellitePatches_NIR/pa_train_patches_nir/01/23/1322301.jpeg"
TIFF = "glc25/SatelitePatches/PA-test/08/01/5000108.tiff"
LON, LAT = 5.19824, 51.08484  # survey 1322301 in glc24/metadata.csv


def jpeg_pixels(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as ds:
            return ds.read()


def test_detect_layout_on_samples(samples_dir):
    assert detect_layout(samples_dir / "glc24") == GLC24
    assert detect_layout(samples_dir / "glc25") == GLC25
    assert detect_layout(samples_dir / "glc25" / "SatelitePatches") == GLC25
    assert detect_layout(samples_dir / "glc25" / "SatelitePatches" / "PA-test") == GLC25
    with pytest.raises(InputDataError, match="does not look like a GeoPlant patch folder"):
        detect_layout(samples_dir / "rasters")


def test_glc25_sample_patch(samples_dir):
    patch = read_glc25_patch(samples_dir / TIFF)
    with rasterio.open(samples_dir / TIFF) as ds:
        np.testing.assert_array_equal(patch.data, ds.read())
    assert patch.data.shape == (4, 64, 64) and patch.data.dtype == np.int16
    assert patch.nodata == -1
    assert patch.transform.a == 10 and patch.transform.e == -10
    # LAEA Europe parameters, but no EPSG code in the file
    assert patch.crs.to_epsg() is None
    params = patch.crs.to_dict()
    assert (params["proj"], params["lat_0"], params["lon_0"], params["x_0"], params["y_0"]) == (
        "laea",
        52,
        10,
        4321000,
        3210000,
    )
    assert params["ellps"] == "GRS80"
    # the survey (-2.23632, 52.721129) lies in the patch's central 10 m pixel block
    xs, ys = warp_transform("EPSG:4326", "EPSG:3035", [-2.23632], [52.721129])
    cx, cy = patch.transform * (32, 32)
    assert abs(xs[0] - cx) < 10 and abs(ys[0] - cy) < 10
    assert 0 < patch.data.min() and patch.data.max() < 10000


def test_glc24_pair_becomes_one_4band_patch(samples_dir):
    patch = read_glc24_patch(samples_dir / RGB, samples_dir / NIR, LON, LAT)
    rgb, nir = jpeg_pixels(samples_dir / RGB), jpeg_pixels(samples_dir / NIR)
    assert patch.data.shape == (4, 128, 128) and patch.data.dtype == np.int16
    np.testing.assert_array_equal(patch.data[:3], rgb)
    np.testing.assert_array_equal(patch.data[3], nir[0])
    assert patch.crs.to_epsg() == 3035
    assert (patch.transform.a, patch.transform.e) == (10.0, -10.0)
    # centre of the patch = the survey point projected to EPSG:3035
    xs, ys = warp_transform("EPSG:4326", "EPSG:3035", [LON], [LAT])
    cx, cy = patch.transform * (64, 64)
    assert cx == pytest.approx(xs[0], abs=1e-6) and cy == pytest.approx(ys[0], abs=1e-6)


def test_dataset_find_and_read(samples_dir):
    ds24 = PatchDataset(samples_dir / "glc24")
    assert list(ds24.survey_ids()) == [1322301]
    rgb, nir = ds24.find(1322301)
    assert rgb == str(samples_dir / RGB) and nir == str(samples_dir / NIR)
    assert ds24.find(1322302) is None
    np.testing.assert_array_equal(ds24.read(1322301, LON, LAT).data[:3], jpeg_pixels(samples_dir / RGB))
    with pytest.raises(InputDataError, match="survey position is needed"):
        ds24.read(1322301)
    ds25 = PatchDataset(samples_dir / "glc25")
    assert list(ds25.survey_ids()) == [5000108]
    assert ds25.find(5000108) == str(samples_dir / TIFF)
    with pytest.raises(InputDataError, match="No patch for survey 42"):
        ds25.read(42)


def test_paths_outside_the_dataset_are_refused(samples_dir, tmp_path):
    ds = PatchDataset(samples_dir / "glc25")
    with pytest.raises(InputDataError, match="outside the dataset folder"):
        ds.resolve("../glc24/metadata.csv")
    with pytest.raises(InputDataError, match="outside the dataset folder"):
        ds.resolve(str(samples_dir / "glc24" / "metadata.csv"))
    assert ds.resolve("SatelitePatches/PA-test/08/01/5000108.tiff") == str(samples_dir / TIFF)
    # a symbolic link in the dataset pointing elsewhere is not followed out
    root = tmp_path / "SatelitePatches" / "PA-test"
    (root / "08").mkdir(parents=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    write_glc25_patch(
        outside / "5000108.tiff", np.zeros((4, 2, 2), np.int16), (10, 0, 0, 0, -10, 0), "EPSG:3035"
    )
    os.symlink(outside, root / "08" / "01")
    with pytest.raises(InputDataError, match="outside the dataset folder"):
        PatchDataset(tmp_path / "SatelitePatches").find(5000108)


def test_truncated_jpeg_is_an_input_error(samples_dir, tmp_path):
    data = (samples_dir / RGB).read_bytes()
    bad = tmp_path / "rgb.jpeg"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputDataError, match="truncated or not a JPEG"):
        read_glc24_patch(bad, samples_dir / NIR, LON, LAT)
    bad.write_bytes(data[:100])
    with pytest.raises(InputDataError, match="truncated or not a JPEG"):
        read_glc24_patch(bad, samples_dir / NIR, LON, LAT)


def test_glc24_band_and_size_mismatch(samples_dir, tmp_path):
    with pytest.raises(InputDataError, match="has 1 band"):
        read_glc24_patch(samples_dir / NIR, samples_dir / NIR, LON, LAT)
    with pytest.raises(InputDataError, match="not a WGS84"):
        read_glc24_patch(samples_dir / RGB, samples_dir / NIR, 3500000.0, 52.0)
    with pytest.raises(InputDataError, match="not found"):
        read_glc24_patch(tmp_path / "nope.jpeg", samples_dir / NIR, LON, LAT)


def test_glc25_wrong_band_count(tmp_path):
    path = tmp_path / "x.tiff"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=2,
        height=2,
        count=3,
        dtype="int16",
        crs="EPSG:3035",
        transform=(10, 0, 0, 0, -10, 0),
    ) as ds:
        ds.write(np.zeros((3, 2, 2), np.int16))
    with pytest.raises(InputDataError, match="has 3 band"):
        read_glc25_patch(path)


def test_write_then_read_round_trip_in_a_glc25_tree(tmp_path):
    data = np.arange(4 * 64 * 64, dtype=np.int64).reshape(4, 64, 64) % 9000 - 1
    rel = "SatelitePatches/PA-train/34/12/1234.tiff"
    write_glc25_patch(tmp_path / rel, data, (10, 0, 4000000, 0, -10, 3000000), "EPSG:3035")
    ds = PatchDataset(tmp_path)
    assert ds.layout == GLC25 and list(ds.survey_ids()) == [1234]
    patch = ds.read(1234)
    np.testing.assert_array_equal(patch.data, data.astype(np.int16))
    assert patch.crs.to_epsg() == 3035 and patch.nodata == -1


def test_glc24_tree_copy(samples_dir, tmp_path):
    for rel in (RGB, NIR):
        target = tmp_path / "mine" / rel.split("/", 1)[1]
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(samples_dir / rel, target)
    ds = PatchDataset(tmp_path / "mine")
    assert ds.layout == GLC24 and list(ds.survey_ids()) == [1322301]
    os.remove(tmp_path / "mine" / NIR.split("/", 1)[1])
    assert list(ds.survey_ids()) == []  # an RGB JPEG without its NIR pair is not a patch
