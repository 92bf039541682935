"""geoplant:ensemble and core.decisions.ensemble: mean and SD equal numpy's, agreement equals
the count, members on other grids or with other species are refused with the difference named."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from decisions_support import (
    DESCRIPTIONS,
    NODATA,
    fingerprint,
    probabilities,
    temporaries,
    write_probabilities,
)

from geoplant_qgis.core.decisions.ensemble import ensemble
from geoplant_qgis.core.errors import InputDataError

pytestmark = pytest.mark.core


@pytest.fixture
def members(tmp_path):
    arrays = [probabilities(seed=s, nodata_cells=((s, s),)) for s in range(3)]
    paths = [write_probabilities(tmp_path / "in" / f"m{i}.tif", a) for i, a in enumerate(arrays)]
    return tmp_path, arrays, paths


def read(path):
    with rasterio.open(path) as ds:
        return ds.read(), ds.descriptions, ds.nodata, ds.dtypes[0]


def test_mean_sd_and_agreement_equal_numpy(members):
    tmp_path, arrays, paths = members
    out = tmp_path / "out"
    ensemble(
        paths,
        output_mean=out / "mean.tif",
        output_sd=out / "sd.tif",
        threshold=0.4,
        output_agreement=out / "agree.tif",
    )
    stack = np.stack(arrays).astype(np.float64)
    missing = (stack == NODATA).any(axis=0)
    mean, descriptions, nodata, dtype = read(out / "mean.tif")
    assert dtype == "float32" and nodata == NODATA and list(descriptions) == DESCRIPTIONS
    np.testing.assert_allclose(mean[~missing], np.mean(stack, axis=0)[~missing], rtol=1e-6)
    assert (mean[missing] == NODATA).all()
    sd, _, _, _ = read(out / "sd.tif")
    np.testing.assert_allclose(sd[~missing], np.std(stack, axis=0, ddof=0)[~missing], rtol=1e-5, atol=1e-7)
    assert (sd[missing] == NODATA).all()
    agree, _, nodata, dtype = read(out / "agree.tif")
    assert dtype == "uint8" and nodata == 255
    np.testing.assert_array_equal(agree[~missing], (stack >= np.float32(0.4)).sum(axis=0)[~missing])
    assert (agree[missing] == 255).all() and missing.sum() >= 4  # (0,0), (1,1), (2,2), band 2's cell
    assert temporaries(tmp_path) == []


@pytest.mark.parametrize(
    "change, named",
    [
        (dict(crs="EPSG:32631"), "CRS EPSG:3035 vs EPSG:32631"),
        (dict(cell=50.0), "cell size 100 x 100 vs 50 x 50"),
        (dict(x0=3_800_100.0), "origin (3.8e+06, 2.3e+06) vs (3.8001e+06, 2.3e+06)"),
        (dict(shape=(3, 30, 41)), "size 40 x 30 vs 41 x 30 cells"),
        (
            dict(descriptions=["Species A (101)", "Species B (102)", "Species D (104)"]),
            "species 103 only in the first",
        ),
        (dict(descriptions=list(reversed(DESCRIPTIONS))), "the same species in another order"),
    ],
)
def test_members_that_differ_are_refused_with_the_difference(members, change, named):
    tmp_path, arrays, paths = members
    shape = change.pop("shape", None)
    values = probabilities(seed=9, shape=shape) if shape else arrays[0]
    odd = write_probabilities(tmp_path / "in" / "odd.tif", values, **change)
    out = tmp_path / "out"
    out.mkdir()
    (out / "mean.tif").write_bytes(b"earlier")
    before = fingerprint(tmp_path)
    with pytest.raises(InputDataError) as error:
        ensemble([paths[0], paths[1], odd], output_mean=out / "mean.tif", output_sd=out / "sd.tif")
    assert named in str(error.value) and "odd.tif (3rd)" in str(error.value)
    assert fingerprint(tmp_path) == before and temporaries(tmp_path) == []


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(threshold=1.5, output_agreement="a.tif"), "THRESHOLD must be"),
        (dict(threshold=-0.1, output_agreement="a.tif"), "THRESHOLD must be"),
        (dict(output_agreement="a.tif"), "give a THRESHOLD"),
        (dict(one=True), "at least two probability rasters"),
    ],
)
def test_bad_arguments_leave_the_folder_as_it_was(members, kwargs, message):
    tmp_path, _, paths = members
    out = tmp_path / "out"
    out.mkdir()
    before = fingerprint(tmp_path)
    inputs = paths[:1] if kwargs.pop("one", False) else paths
    if "output_agreement" in kwargs:
        kwargs["output_agreement"] = out / kwargs["output_agreement"]
    with pytest.raises(InputDataError, match=message):
        ensemble(inputs, output_mean=out / "m.tif", output_sd=out / "s.tif", **kwargs)
    assert fingerprint(tmp_path) == before and temporaries(tmp_path) == []


def test_processing_ensemble(members, geoplant_provider):
    import processing

    tmp_path, arrays, paths = members
    out = processing.run(
        "geoplant:ensemble",
        {
            "INPUTS": paths,
            "THRESHOLD": 0.5,
            "OUTPUT_MEAN": str(tmp_path / "m.tif"),
            "OUTPUT_SD": str(tmp_path / "s.tif"),
            "OUTPUT_AGREEMENT": str(tmp_path / "a.tif"),
        },
    )
    stack = np.stack(arrays).astype(np.float64)
    missing = (stack == NODATA).any(axis=0)
    agree, _, _, _ = read(out["OUTPUT_AGREEMENT"])
    np.testing.assert_array_equal(agree[~missing], (stack >= 0.5).sum(axis=0)[~missing])
    mean, _, _, _ = read(out["OUTPUT_MEAN"])
    np.testing.assert_allclose(mean[~missing], stack.mean(axis=0)[~missing], rtol=1e-6)


def test_processing_refuses_other_grids(members, geoplant_provider):
    import processing
    from qgis.core import QgsProcessingException

    tmp_path, arrays, paths = members
    odd = write_probabilities(tmp_path / "in" / "odd.tif", arrays[0], cell=50.0)
    with pytest.raises(QgsProcessingException, match="cell size 100 x 100 vs 50 x 50"):
        processing.run(
            "geoplant:ensemble",
            {
                "INPUTS": [paths[0], odd],
                "OUTPUT_MEAN": str(tmp_path / "m.tif"),
                "OUTPUT_SD": str(tmp_path / "s.tif"),
            },
        )
    assert not (tmp_path / "m.tif").exists() and temporaries(tmp_path) == []
