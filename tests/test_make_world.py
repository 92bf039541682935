"""tools/make_world.py: deterministic, in the GeoPlant formats, readable by the project's readers."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import make_world
import numpy as np
import pandas as pd
import pytest
import rasterio
from rasterio.warp import transform

pytestmark = pytest.mark.core

SMALL = {"size_km": 6, "n_species": 24, "n_train": 60, "n_test": 20, "truth_species": 2}


def _digest(folder: Path) -> dict:
    out = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            out[str(path.relative_to(folder))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    folder = tmp_path_factory.mktemp("world")
    files = make_world.make_world(folder, seed=3, **SMALL)
    return folder, files


def test_same_seed_same_bytes_other_seed_other_world(world, tmp_path):
    folder, _ = world
    again = tmp_path / "again"
    make_world.make_world(again, seed=3, **SMALL)
    first, second = _digest(folder), _digest(again)
    assert first.keys() == second.keys()
    assert first == second
    other = tmp_path / "other"
    make_world.make_world(other, seed=4, **SMALL)
    third = _digest(other)
    changed = [k for k in first if third.get(k) != first[k]]
    assert "EnvironmentalRasters/Elevation/Elevation.tif" in changed
    assert "GLC25_PA_metadata_train.csv" in changed


def test_rasters_are_named_and_gridded_like_geoplant(world):
    folder, files = world
    expected = {
        "Bio1": 1 / 120,
        "Bio4": 1 / 120,
        "Bio12": 1 / 120,
        "Elevation": 1 / 1200,
        "Soilgrid-phh2o": 1 / 480,
        "LandCover": 1 / 240,
        "HumanFootprint": 1 / 120,
    }
    assert set(files["rasters"]) == set(expected)
    for name, res in expected.items():
        path = files["rasters"][name]
        assert Path(path).stem == name
        with rasterio.open(path) as src:
            assert src.count == 1 and src.descriptions == (name,)
            assert src.crs.to_epsg() == 4326
            assert src.res == pytest.approx((res, res))
            # CHELSA-like grid: origin on multiples of the pixel size
            assert src.transform.c / res == pytest.approx(round(src.transform.c / res))
    with rasterio.open(files["rasters"]["Bio1"]) as src:
        celsius = src.read(1) / 10 - 273.15  # CHELSA storage: K x 10
        assert 0 < celsius.min() and celsius.max() < 20
    with rasterio.open(files["mosaic"]) as src:
        assert src.crs.to_epsg() == 32631 and src.res == (10.0, 10.0)
        assert src.descriptions == ("red", "green", "blue", "nir")


def test_mosaic_is_consistent_with_land_cover(world):
    _, files = world
    with rasterio.open(files["rasters"]["LandCover"]) as lc:
        classes = lc.read(1)
        rows, cols = np.nonzero(classes != 255)
        lon, lat = rasterio.transform.xy(lc.transform, rows, cols)
    x, y = transform("EPSG:4326", "EPSG:32631", lon, lat)
    with rasterio.open(files["mosaic"]) as s2:
        values = np.array(list(s2.sample(list(zip(x, y, strict=True)))), dtype=float)
    ndvi = (values[:, 3] - values[:, 0]) / np.maximum(values[:, 3] + values[:, 0], 1)
    cls = classes[rows, cols]
    forest = np.isin(cls, [1, 4, 5])
    open_land = np.isin(cls, [7, 12, 13])
    assert forest.sum() > 10 and open_land.sum() > 3
    assert np.median(ndvi[forest]) > np.median(ndvi[open_land]) + 0.2


def test_readers_load_the_world_and_values_match_the_rasters(world):
    from geoplant_qgis.core.geoplant.envvalues import read_env_values
    from geoplant_qgis.core.geoplant.layout import glc25_patch_relpath
    from geoplant_qgis.core.geoplant.observations import aggregate_surveys
    from geoplant_qgis.core.geoplant.patches import read_glc25_patch

    folder, files = world
    raw = pd.read_csv(files["pa_train"])
    assert list(raw.columns) == make_world.PA_COLUMNS
    assert raw["speciesId"].dtype == float
    surveys = aggregate_surveys(files["pa_train"])
    assert 0 < len(surveys) <= SMALL["n_train"]
    assert (surveys["richness"] == surveys["speciesIds"].map(len)).all()
    env = read_env_values(files["env_train"]["bioclimatic"])
    assert list(env.columns) == ["Bio1", "Bio4", "Bio12"]
    soil = read_env_values(files["env_train"]["soilgrids"])
    for name, frame in (("Bio12", env), ("Soilgrid-phh2o", soil)):
        with rasterio.open(files["rasters"][name]) as src:
            band = src.read(1)
            for sid, lon, lat in surveys[["surveyId", "lon", "lat"]].itertuples(index=False):
                row, col = src.index(lon, lat)
                assert frame.loc[sid, name] == band[row, col]
    # patches: 64 x 64 int16 at 10 m in LAEA, centred on the survey (to the 10 m pixel)
    for sid, lon, lat in surveys[["surveyId", "lon", "lat"]].head(10).itertuples(index=False):
        patch = read_glc25_patch(os.path.join(files["patches_train"], glc25_patch_relpath(sid)))
        assert patch.data.shape == (4, 64, 64) and patch.data.dtype == np.int16
        assert patch.crs.to_epsg() == 3035 and patch.transform.a == 10.0
        (x,), (y,) = transform("EPSG:4326", "EPSG:3035", [lon], [lat])
        cx, cy = patch.transform * (32, 32)
        assert abs(cx - x) <= 5.0 + 1e-6 and abs(cy - y) <= 5.0 + 1e-6
        assert (patch.data > 0).all()


def test_truth_and_prevalence_control(world):
    _, files = world
    manifest = json.load(open(files["world"]))
    assert manifest["grid"] == {"crs": "EPSG:3035", "cell_size_m": 100.0, "width": 60, "height": 60}
    with rasterio.open(files["true_richness"]) as src:
        assert src.crs.to_epsg() == 3035 and src.res == (100.0, 100.0)
        assert src.bounds.left % 100 == 0 and src.bounds.top % 100 == 0
        richness = src.read(1)
    species = pd.read_csv(files["species"])
    assert len(species) == SMALL["n_species"]
    # the generator solves alpha so that the mean probability over the landscape = target prevalence
    assert np.abs(species["grid_prevalence"] - species["target_prevalence"]).max() < 0.06
    assert richness.mean() == pytest.approx(species["grid_prevalence"].sum(), rel=1e-3)
    for sid, path in files["true_suitability"].items():
        with rasterio.open(path) as src:
            p = src.read(1)
        assert 0 <= p.min() and p.max() <= 1
        assert p.mean() == pytest.approx(
            float(species.loc[species.speciesId == int(sid), "grid_prevalence"].iloc[0]), abs=1e-4
        )
    # survey presences follow the truth: frequent species in the surveys are the prevalent ones
    pa = pd.read_csv(files["pa_train"])
    counts = pa.groupby("speciesId").size().reindex(species["speciesId"].astype(float), fill_value=0)
    assert np.corrcoef(counts.to_numpy(), species["grid_prevalence"].to_numpy())[0, 1] > 0.7


def test_ensure_world_reuses_a_current_world(world, monkeypatch):
    folder, _ = world
    calls = []
    monkeypatch.setattr(make_world, "make_world", lambda *a, **k: calls.append(1))
    manifest = make_world.ensure_world(folder, seed=3, **SMALL)
    assert calls == [] and manifest["spec"]["seed"] == 3
    assert os.path.isabs(manifest["files"]["pa_train"])
