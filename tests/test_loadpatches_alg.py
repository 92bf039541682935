"""geoplant:loadpatches through Processing: GLC24 pairs and GLC25 tiffs -> GeoTIFFs + VRT."""

import os
import warnings

import numpy as np
import pytest
import rasterio
from qgis.core import QgsProcessingException, QgsRasterLayer
from rasterio.errors import NotGeoreferencedWarning
from rasterio.warp import transform as warp_transform

RGB = "glc24/PA_Train_SatellitePatches_RGB/pa_train_patches_rgb/01/23/1322301.jpeg"
NIR = "glc24/PA_Train_SatellitePatches_NIR/pa_train_patches_nir/01/23/1322301.jpeg"
TIFF = "glc25/SatelitePatches/PA-test/08/01/5000108.tiff"


def run(params):
    import processing

    return processing.run("geoplant:loadpatches", params)


def read(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(path) as ds:
            return ds.read(), ds.profile, ds.descriptions


def test_glc24_pair_to_georeferenced_tiff(geoplant_provider, samples_dir, tmp_path):
    out = tmp_path / "out"
    result = run(
        {
            "INPUT": str(samples_dir / "glc24"),
            "METADATA": str(samples_dir / "glc24" / "metadata.csv"),
            "OUTPUT_FOLDER": str(out),
        }
    )
    assert result["COUNT"] == 1 and result["OUTPUT_VRT"] == str(out / "patches.vrt")
    assert sorted(os.listdir(out)) == ["01", "patches.vrt"]
    data, profile, descriptions = read(out / "01" / "23" / "1322301.tiff")
    rgb, nir = read(samples_dir / RGB)[0], read(samples_dir / NIR)[0]
    np.testing.assert_array_equal(data[:3], rgb)
    np.testing.assert_array_equal(data[3], nir[0])
    assert descriptions == ("red", "green", "blue", "nir") and profile["dtype"] == "int16"
    assert profile["crs"].to_epsg() == 3035
    xs, ys = warp_transform("EPSG:4326", "EPSG:3035", [5.19824], [51.08484])
    cx, cy = profile["transform"] * (64, 64)
    assert cx == pytest.approx(xs[0], abs=1e-6) and cy == pytest.approx(ys[0], abs=1e-6)
    mosaic, vprofile, vdesc = read(out / "patches.vrt")
    np.testing.assert_array_equal(mosaic, data)
    assert vdesc == ("red", "green", "blue", "nir") and vprofile["crs"].to_epsg() == 3035


def test_glc25_without_metadata_and_true_colour_style(geoplant_provider, samples_dir, tmp_path):
    from geoplant_qgis.processing.styles import style_true_colour

    out = tmp_path / "out25"
    result = run({"INPUT": str(samples_dir / "glc25"), "OUTPUT_FOLDER": str(out)})
    assert result["COUNT"] == 1
    data, profile, descriptions = read(out / "08" / "01" / "5000108.tiff")
    original, oprofile, _ = read(samples_dir / TIFF)
    np.testing.assert_array_equal(data, original)
    assert profile["transform"] == oprofile["transform"] and profile["nodata"] == -1
    assert profile["crs"].to_epsg() == 3035  # stated explicitly now
    layer = QgsRasterLayer(result["OUTPUT_VRT"], "patches")
    assert layer.isValid() and layer.bandCount() == 4
    style_true_colour(layer)
    renderer = layer.renderer()
    assert renderer.type() == "multibandcolor"
    assert (renderer.redBand(), renderer.greenBand(), renderer.blueBand()) == (1, 2, 3)
    for band, enhancement in enumerate(
        (
            renderer.redContrastEnhancement(),
            renderer.greenContrastEnhancement(),
            renderer.blueContrastEnhancement(),
        )
    ):
        lo, hi = enhancement.minimumValue(), enhancement.maximumValue()
        values = original[band]
        assert values.min() <= lo < hi <= values.max()
        assert lo == pytest.approx(np.percentile(values, 2), abs=0.05 * np.ptp(values))
        assert hi == pytest.approx(np.percentile(values, 98), abs=0.05 * np.ptp(values))


def test_extent_leaves_nothing_and_reports(geoplant_provider, samples_dir, tmp_path):
    out = tmp_path / "empty"
    with pytest.raises(QgsProcessingException, match="No patch to load"):
        run(
            {
                "INPUT": str(samples_dir / "glc25"),
                "EXTENT": "20,21,40,41 [EPSG:4326]",
                "OUTPUT_FOLDER": str(out),
            }
        )
    assert not out.exists() or list(out.rglob("*")) == []


def test_glc24_needs_metadata(geoplant_provider, samples_dir, tmp_path):
    with pytest.raises(QgsProcessingException, match="GLC24 patches carry no georeferencing"):
        run({"INPUT": str(samples_dir / "glc24"), "OUTPUT_FOLDER": str(tmp_path / "o")})


def test_truncated_jpeg_fails_and_leaves_nothing(geoplant_provider, samples_dir, tmp_path):
    root = tmp_path / "ds"
    for rel in (RGB, NIR):
        target = root / rel.split("/", 1)[1]
        target.parent.mkdir(parents=True, exist_ok=True)
        data = (samples_dir / rel).read_bytes()
        target.write_bytes(data[: len(data) // 2] if rel == NIR else data)
    out = tmp_path / "out"
    with pytest.raises(QgsProcessingException, match="truncated or not a JPEG"):
        run(
            {
                "INPUT": str(root),
                "METADATA": str(samples_dir / "glc24" / "metadata.csv"),
                "OUTPUT_FOLDER": str(out),
            }
        )
    assert not out.exists() or list(out.rglob("*")) == []
