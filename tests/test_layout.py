"""GeoPlant path rules, safe joins and the GLC25 patch writer."""

import os

import numpy as np
import pytest
import rasterio
from affine import Affine
from rasterio.crs import CRS

from geoplant_qgis.core.errors import InputDataError, OutputError
from geoplant_qgis.core.geoplant.layout import (
    glc24_patch_relpath,
    glc25_patch_relpath,
    is_laea_europe,
    safe_join,
    write_glc25_patch,
)

pytestmark = pytest.mark.core

GLC25_SAMPLE = "glc25/SatelitePatches/PA-test"
GLC24_RGB = "glc24/PA_Train_SatellitePatches_RGB/pa_train_patches_rgb"
GLC24_NIR = "glc24/PA_Train_SatellitePatches_NIR/pa_train_patches_nir"


def test_relpaths_match_the_real_samples(samples_dir):
    assert glc24_patch_relpath(1322301) == "01/23/1322301.jpeg"
    assert glc25_patch_relpath(5000108) == "08/01/5000108.tiff"
    assert (samples_dir / GLC24_RGB / glc24_patch_relpath(1322301)).is_file()
    assert (samples_dir / GLC24_NIR / glc24_patch_relpath(1322301)).is_file()
    assert (samples_dir / GLC25_SAMPLE / glc25_patch_relpath(5000108)).is_file()


@pytest.mark.parametrize(
    "survey_id, expected",
    [
        (1234, "34/12/1234.tiff"),
        (212, "12/2/212.tiff"),
        (5, "5/5.tiff"),
        (99, "99/99.tiff"),
        (5000108.0, "08/01/5000108.tiff"),
        (np.int64(3999999), "99/99/3999999.tiff"),
        ("1000", "00/10/1000.tiff"),
    ],
)
def test_relpath_rule(survey_id, expected):
    assert glc25_patch_relpath(survey_id) == expected
    assert glc24_patch_relpath(survey_id) == expected[: -len("tiff")] + "jpeg"


@pytest.mark.parametrize("bad", [-3, 12.5, "12a", None, "../1"])
def test_relpath_refuses_non_ids(bad):
    with pytest.raises(InputDataError, match="not a whole non-negative number"):
        glc25_patch_relpath(bad)


def test_safe_join_inside(tmp_path):
    assert safe_join(tmp_path, "08/01/5000108.tiff") == os.path.join(
        os.path.realpath(tmp_path), "08", "01", "5000108.tiff"
    )
    assert safe_join(tmp_path, "a/../b.tiff") == os.path.join(os.path.realpath(tmp_path), "b.tiff")


@pytest.mark.parametrize("rel", ["../secret.tiff", "08/../../x", "/etc/passwd"])
def test_safe_join_refuses_escapes(tmp_path, rel):
    with pytest.raises(InputDataError, match="dataset folder"):
        safe_join(tmp_path / "root", rel)


def test_safe_join_refuses_symlink_out(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "outside").mkdir()
    os.symlink(tmp_path / "outside", root / "link")
    with pytest.raises(InputDataError, match="outside the dataset folder"):
        safe_join(root, "link/file.tiff")


def test_is_laea_europe_on_sample(samples_dir):
    with rasterio.open(samples_dir / GLC25_SAMPLE / "08/01/5000108.tiff") as ds:
        assert ds.crs.to_epsg() is None  # the sample carries the parameters, not the code
        assert is_laea_europe(ds.crs)
    assert is_laea_europe("EPSG:3035")
    assert not is_laea_europe("EPSG:4326")
    assert not is_laea_europe("EPSG:32631")
    assert not is_laea_europe("+proj=laea +lat_0=45 +lon_0=10 +x_0=4321000 +y_0=3210000 +ellps=GRS80")


def test_write_glc25_patch_round_trip(tmp_path):
    rng = np.random.default_rng(4)
    data = rng.integers(-1, 12000, size=(4, 64, 64)).astype(np.int16)
    transform = Affine(10.0, 0.0, 3498370.0, 0.0, -10.0, 3360010.0)
    laea = CRS.from_proj4("+proj=laea +lat_0=52 +lon_0=10 +x_0=4321000 +y_0=3210000 +ellps=GRS80 +units=m")
    out = tmp_path / "PA-test" / glc25_patch_relpath(5000108)
    result = write_glc25_patch(out, data, transform, laea)
    assert result == str(out)
    assert sorted(os.listdir(out.parent)) == ["5000108.tiff"]  # no temporary left
    with rasterio.open(out) as ds:
        assert ds.count == 4
        assert ds.dtypes == ("int16",) * 4
        assert ds.descriptions == ("red", "green", "blue", "nir")
        assert ds.nodata == -1
        assert ds.crs.to_epsg() == 3035  # stated explicitly
        assert ds.transform == transform
        np.testing.assert_array_equal(ds.read(), data)


def test_write_glc25_patch_other_crs_and_float_input(tmp_path):
    data = np.arange(4 * 3 * 2, dtype=np.float64).reshape(4, 3, 2) - 1
    out = tmp_path / "p.tiff"
    write_glc25_patch(out, data, (10, 0, 500000, 0, -10, 4800000), "EPSG:32631", nodata=-1)
    with rasterio.open(out) as ds:
        assert ds.crs.to_epsg() == 32631
        np.testing.assert_array_equal(ds.read(), data.astype(np.int16))


@pytest.mark.parametrize(
    "data, message",
    [
        (np.zeros((3, 4, 4), np.int16), "4 bands"),
        (np.full((4, 2, 2), 40000, np.int32), "do not fit"),
        (np.full((4, 2, 2), 1.5), "whole numbers"),
        (np.full((4, 2, 2), np.nan), "NaN"),
    ],
)
def test_write_glc25_patch_refuses_bad_data(tmp_path, data, message):
    out = tmp_path / "p.tiff"
    with pytest.raises(OutputError, match=message):
        write_glc25_patch(out, data, (10, 0, 0, 0, -10, 0), "EPSG:3035")
    assert os.listdir(tmp_path) == []


def test_write_glc25_patch_failure_leaves_nothing(tmp_path, monkeypatch):
    import geoplant_qgis.core.geoplant.layout as layout

    def boom(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(layout.os, "replace", boom)
    with pytest.raises(OutputError, match="disk full"):
        write_glc25_patch(
            tmp_path / "p.tiff", np.zeros((4, 2, 2), np.int16), (10, 0, 0, 0, -10, 0), "EPSG:3035"
        )
    assert os.listdir(tmp_path) == []
