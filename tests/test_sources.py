"""Variables -> raster bands: descriptions, file names, MAPPING."""

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from geoplant_qgis.core.errors import InputDataError
from geoplant_qgis.core.sources import (
    BandRef,
    find_band,
    normalise_name,
    parse_mapping,
    raster_band_names,
    resolve_variables,
)

pytestmark = pytest.mark.core


def write(path, count=1, descriptions=None):
    profile = dict(
        driver="GTiff", width=3, height=2, count=count, dtype="float32", crs="EPSG:3035",
        transform=from_origin(0, 20, 10, 10),
    )  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(np.zeros((count, 2, 3), dtype=np.float32))
        for i, d in enumerate(descriptions or []):
            if d:
                dst.set_band_description(i + 1, d)
    return str(path)


@pytest.fixture
def rasters(tmp_path):
    return [
        write(tmp_path / "s2_mosaic.tif", 4, ["Red", "Green", "Blue", "NIR"]),
        write(tmp_path / "Bio_1.tif"),
        write(tmp_path / "bio-12.tif", 1, ["something else"]),
        write(tmp_path / "elevation.tif", 2),
        write(tmp_path / "climate.tif", 2, ["", "BIO 5"]),
    ]


def test_normalise_name():
    assert normalise_name("Bio_1") == normalise_name("bio-1") == normalise_name(" BIO 1 ") == "bio1"
    assert normalise_name("HumanFootprint-Built") == "humanfootprintbuilt"
    assert normalise_name("bio1") != normalise_name("bio11")


def test_raster_band_names(rasters):
    assert raster_band_names(rasters[0]) == ["Red", "Green", "Blue", "NIR"]
    assert raster_band_names(rasters[1]) == [""]
    assert raster_band_names(rasters[4]) == ["", "BIO 5"]


def test_raster_band_names_unreadable(tmp_path):
    bad = tmp_path / "bad.tif"
    bad.write_text("no")
    with pytest.raises(InputDataError, match="Cannot open the raster"):
        raster_band_names(bad)


def test_find_band_by_description_then_stem(rasters):
    assert find_band("nir", rasters) == BandRef(rasters[0], 4)
    assert find_band("green", rasters) == BandRef(rasters[0], 2)
    assert find_band("bio1", rasters) == BandRef(rasters[1], 1)  # one-band file stem
    assert find_band("bio_5", rasters) == BandRef(rasters[4], 2)  # description of band 2
    # stem matches but the file has a description that does not: still the one-band stem rule
    assert find_band("BIO12", rasters) == BandRef(rasters[2], 1)
    assert find_band("something_else", rasters) == BandRef(rasters[2], 1)
    assert find_band("elevation", rasters) is None  # two bands: the stem rule does not apply
    assert find_band("bio2", rasters) is None


def test_description_wins_over_stem(tmp_path):
    stem = write(tmp_path / "red.tif")
    mosaic = write(tmp_path / "m.tif", 2, ["red", "nir"])
    assert find_band("red", [stem, mosaic]) == BandRef(mosaic, 1)


def test_parse_mapping_text():
    assert parse_mapping("") == {}
    assert parse_mapping(None) == {}
    m = parse_mapping(" bio1 = /data/a.tif ; nir=/data/s2.tif#4;\n bio2=C:\\x\\b#c.tif ;")
    assert m == {
        "bio1": BandRef("/data/a.tif", 1),
        "nir": BandRef("/data/s2.tif", 4),
        "bio2": BandRef("C:\\x\\b#c.tif", 1),  # '#' followed by a non-number is part of the path
    }


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("bio1", "entry 1 'bio1': expected 'variable=path'"),
        ("bio1=/a.tif;=/b.tif", "entry 2 '=/b.tif'"),
        ("bio1=", "entry 1 'bio1='"),
        ("nir=/s2.tif#0", "band must be a whole number from 1, not '0'"),
        ("nir=/s2.tif#", "a band number must follow '#'"),
        ("/nowhere/mapping.csv", "The MAPPING file '/nowhere/mapping.csv' does not exist"),
    ],
)
def test_parse_mapping_malformed(text, message):
    with pytest.raises(InputDataError) as info:
        parse_mapping(text)
    assert message in str(info.value)


def test_parse_mapping_csv(tmp_path):
    f = tmp_path / "map.csv"
    f.write_text("variable,path,band\nbio1,a.tif,\nnir,/abs/s2.tif,4\n\nbio2,sub/b.tif\n")
    assert parse_mapping(str(f)) == {
        "bio1": BandRef(str(tmp_path / "a.tif"), 1),
        "nir": BandRef("/abs/s2.tif", 4),
        "bio2": BandRef(str(tmp_path / "sub" / "b.tif"), 1),
    }
    g = tmp_path / "noheader.csv"
    g.write_text("bio1,/x.tif,2\n")
    assert parse_mapping(str(g)) == {"bio1": BandRef("/x.tif", 2)}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("variable,path,band\nbio1\n", "line 2: expected 'variable,path[,band]'"),
        ("bio1,/a.tif,two\n", "line 1: band must be a whole number from 1, not 'two'"),
        ("bio1,/a.tif,1,extra\n", "line 1: expected"),
    ],
)
def test_parse_mapping_csv_malformed(tmp_path, content, message):
    f = tmp_path / "map.csv"
    f.write_text(content)
    with pytest.raises(InputDataError) as info:
        parse_mapping(str(f))
    assert message in str(info.value)


def test_resolve_variables(rasters, tmp_path):
    got = resolve_variables(["bio1", "red", "nir", "bio_5"], rasters)
    assert got == {
        "bio1": BandRef(rasters[1], 1),
        "red": BandRef(rasters[0], 1),
        "nir": BandRef(rasters[0], 4),
        "bio_5": BandRef(rasters[4], 2),
    }
    # the mapping overrides the rules and may name rasters that were not given
    other = write(tmp_path / "other.tif", 3)
    got = resolve_variables(["bio1", "elev"], rasters, f"BIO_1={other}#3;elev={rasters[3]}#2")
    assert got == {"bio1": BandRef(other, 3), "elev": BandRef(rasters[3], 2)}


def test_resolve_lists_every_missing_name(rasters):
    with pytest.raises(InputDataError) as info:
        resolve_variables(["bio1", "bio2", "red", "bio19", "elevation"], rasters)
    message = str(info.value)
    assert "3 variable(s) not found in the rasters: bio2, bio19, elevation." in message
    assert "s2_mosaic.tif (bands: Red, Green, Blue, NIR)" in message
    assert "Bio_1.tif (one band, name 'Bio_1')" in message
    assert "elevation.tif (2 bands without descriptions)" in message
    assert "MAPPING" in message


def test_resolve_bad_mapping_targets(rasters, tmp_path):
    with pytest.raises(InputDataError, match=r"MAPPING for 'bio1': cannot open the raster"):
        resolve_variables(["bio1"], rasters, {"bio1": BandRef(str(tmp_path / "none.tif"), 1)})
    with pytest.raises(InputDataError, match=r"has 2 band\(s\), there is no band 3"):
        resolve_variables(["elev"], rasters, f"elev={rasters[3]}#3")


def test_real_samples(samples_dir):
    r = samples_dir / "rasters"
    paths = sorted(str(p) for p in r.glob("*.tif"))
    got = resolve_variables(
        ["CHELSA_BIO3_montpellier", "humanfootprint built2009 wgs84", "bio1"],
        paths,
        f"bio1={r / 'chelsa_bio1_montpellier.tif'}",
    )
    assert got == {
        "CHELSA_BIO3_montpellier": BandRef(str(r / "chelsa_bio3_montpellier.tif"), 1),
        "humanfootprint built2009 wgs84": BandRef(str(r / "HumanFootprint_Built2009_WGS84.tif"), 1),
        "bio1": BandRef(str(r / "chelsa_bio1_montpellier.tif"), 1),
    }
    with pytest.raises(InputDataError, match="not found in the rasters: bio1, bio2"):
        resolve_variables(["bio1", "bio2"], paths)
