"""PointSampler and PatchSampler against independent computations (pyproj + the inverse affine).

Fixture rasters encode their own pixel position: value = row * 1000 + col (+ band * 1e6), so
the expected value of any point is computed without rasterio's sampling code.
"""

import numpy as np
import pytest
import rasterio
from pyproj import Transformer
from rasterio.transform import from_origin

from geoplant_qgis.core import sampling, warp
from geoplant_qgis.core.errors import InputDataError
from geoplant_qgis.core.sampling import PatchSampler, PointSampler
from geoplant_qgis.core.sources import BandRef

pytestmark = pytest.mark.core

GRID_CRS = "EPSG:3035"
# Montpellier, in 3035 (computed once here so fixtures and tests agree)
CENTRE_LON, CENTRE_LAT = 3.87, 43.61


def encode(rows, cols, band=1):
    return band * 1_000_000 + rows * 1000 + cols


def write_known(
    path, crs, transform, width, height, count=1, nodata=None, dtype="float32", holes=(), mask=None
):
    r, c = np.mgrid[0:height, 0:width]
    data = np.stack([encode(r, c, b + 1) for b in range(count)]).astype(dtype)
    for r0, r1, c0, c1 in holes:
        data[:, r0:r1, c0:c1] = nodata
    profile = dict(
        driver="GTiff", width=width, height=height, count=count, dtype=dtype, crs=crs, transform=transform
    )
    if nodata is not None:
        profile["nodata"] = nodata
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        if mask is not None:
            dst.write_mask(mask)
    return str(path)


def expected_at(path, xs, ys, crs=GRID_CRS, band=1):
    """Independent: pyproj transform, floor of the inverse affine, decode; NaN outside/nodata."""
    with rasterio.open(path) as ds:
        t, w, h, nodata = ds.transform, ds.width, ds.height, ds.nodatavals[band - 1]
        data = ds.read(band)
        masks = ds.read_masks(band)
        src_crs = ds.crs.to_wkt()
    sx, sy = Transformer.from_crs(crs, src_crs, always_xy=True).transform(np.asarray(xs), np.asarray(ys))
    col = (sx - t.c) / t.a
    row = (sy - t.f) / t.e
    out = np.full(np.shape(sx), np.nan)
    ok = (col >= 0) & (col < w) & (row >= 0) & (row < h)
    ci, ri = np.floor(col[ok]).astype(int), np.floor(row[ok]).astype(int)
    v = data[ri, ci].astype(np.float64)
    v[(masks[ri, ci] == 0) | (v == nodata if nodata is not None else False)] = np.nan
    out[ok] = v
    frac = np.minimum(np.abs(col - np.rint(col)), np.abs(row - np.rint(row)))
    return out, frac  # frac: distance (in source pixels) to the nearest pixel edge


@pytest.fixture(scope="module")
def centre_3035():
    x, y = Transformer.from_crs("EPSG:4326", GRID_CRS, always_xy=True).transform(CENTRE_LON, CENTRE_LAT)
    return round(x / 1000) * 1000.0, round(y / 1000) * 1000.0


@pytest.fixture(scope="module")
def rasters(tmp_path_factory, centre_3035):
    d = tmp_path_factory.mktemp("known")
    # ~0.0037 degree pixels (not a divisor of anything), around Montpellier
    geo = write_known(
        d / "geo.tif", "EPSG:4326", from_origin(3.7012, 43.7531, 0.00371, 0.00293), 120, 110,
        nodata=-9999.0, holes=[(46, 52, 42, 48)],
    )  # fmt: skip
    # UTM 31N, 7.3 m pixels, 3 bands, an int32 nodata hole
    utm = write_known(
        d / "utm.tif", "EPSG:32631", from_origin(566003.7, 4835012.9, 7.3, 7.3), 900, 800, count=3,
        nodata=-1, dtype="int32", holes=[(400, 410, 450, 470)],
    )  # fmt: skip
    # 3035, 10 m pixels on multiples of 10: patches on a 10 m lattice are plain slices
    x0, y0 = centre_3035
    laea = write_known(d / "laea.tif", GRID_CRS, from_origin(x0 - 3000, y0 + 3000, 10, 10), 600, 600, count=2)
    # a per-dataset mask instead of a nodata value
    mask = np.full((100, 100), 255, dtype=np.uint8)
    mask[:50, :] = 0
    masked = write_known(
        d / "masked.tif",
        GRID_CRS,
        from_origin(x0 - 500, y0 + 500, 10, 10),
        100,
        100,
        dtype="uint16",
        mask=mask,
    )
    return dict(geo=geo, utm=utm, laea=laea, masked=masked)


def random_points(centre, n, spread, seed=0):
    rng = np.random.default_rng(seed)
    return centre[0] + rng.uniform(-spread, spread, n), centre[1] + rng.uniform(-spread, spread, n)


class ReadCounter:
    def __init__(self, monkeypatch):
        self.reads = []
        self.reprojects = 0
        original_read = sampling._Source.read
        original_warp = sampling.warp_nearest

        def read(source, window):
            self.reads.append(source.path)
            return original_read(source, window)

        def warp(*args, **kwargs):
            self.reprojects += 1
            return original_warp(*args, **kwargs)

        monkeypatch.setattr(sampling._Source, "read", read)
        monkeypatch.setattr(sampling, "warp_nearest", warp)


def test_point_values_from_three_crs(rasters, centre_3035, monkeypatch):
    xs, ys = random_points(centre_3035, 3000, 2500)
    refs = [
        BandRef(rasters["utm"], 3),
        BandRef(rasters["geo"], 1),
        BandRef(rasters["utm"], 1),
        BandRef(rasters["laea"], 2),
        BandRef(rasters["utm"], 3),  # the same band twice
    ]
    counter = ReadCounter(monkeypatch)
    with PointSampler(refs, GRID_CRS) as sampler:
        got = sampler.sample(xs, ys)
    assert got.dtype == np.float32 and got.shape == (3000, 5)
    assert sorted(counter.reads) == sorted(
        {rasters["utm"], rasters["geo"], rasters["laea"]}
    )  # one read per file
    for k, ref in enumerate(refs):
        expected, frac = expected_at(ref.path, xs, ys, band=ref.band)
        sure = frac > 1e-6
        assert sure.mean() > 0.99
        np.testing.assert_array_equal(got[sure, k], expected[sure].astype(np.float32))
    # the fixtures' holes and edges were hit: some NaN, mostly values
    assert 0 < np.isnan(got[:, 1]).sum() < 2000 and np.isnan(got[:, 0]).sum() > 0


def test_points_outside_and_nan_coordinates(rasters, centre_3035):
    x0, y0 = centre_3035
    with PointSampler([BandRef(rasters["laea"], 1)], GRID_CRS) as sampler:
        got = sampler.sample([x0 + 5, x0 - 1e6, np.nan, x0 - 3000 + 0.0], [y0 + 5, y0, y0, y0 + 3000 - 0.0])
    # (x0+5, y0+5): col 300, row 299; exactly on the raster's top-left corner: row 0, col 0
    np.testing.assert_array_equal(got[:, 0], [encode(299, 300, 1), np.nan, np.nan, encode(0, 0, 1)])
    assert PointSampler([BandRef(rasters["laea"], 1)], GRID_CRS).sample([], []).shape == (0, 1)


def test_point_mask_honoured(rasters, centre_3035):
    x0, y0 = centre_3035
    xs = np.array([x0 - 495.0, x0 - 495.0])
    ys = np.array([y0 + 495.0, y0 - 495.0])  # row 0 (masked) and row 99 (valid)
    with PointSampler([BandRef(rasters["masked"], 1)], GRID_CRS) as sampler:
        got = sampler.sample(xs, ys)
    np.testing.assert_array_equal(got[:, 0], [np.nan, np.uint16(encode(99, 0) % 65536)])


def test_huge_spread_is_read_in_tiles(rasters, centre_3035, monkeypatch):
    xs, ys = random_points(centre_3035, 500, 2500, seed=3)
    with PointSampler([BandRef(rasters["utm"], 2)], GRID_CRS) as sampler:
        one_read = sampler.sample(xs, ys)
    monkeypatch.setattr(sampling, "MAX_WINDOW_VALUES", 50 * 50)
    counter = ReadCounter(monkeypatch)
    with PointSampler([BandRef(rasters["utm"], 2)], GRID_CRS) as sampler:
        tiled = sampler.sample(xs, ys)
    assert len(counter.reads) > 20
    np.testing.assert_array_equal(tiled, one_read)


def patch_expected(path, xs, ys, size, r, band=1):
    off = (np.arange(size) - size / 2 + 0.5) * r
    px = xs[:, None, None] + off[None, None, :] + np.zeros((1, size, 1))
    py = ys[:, None, None] - off[None, :, None] + np.zeros((1, 1, size))
    return expected_at(path, px, py, band=band)


def test_patches_on_an_aligned_lattice_one_reproject_per_source(rasters, centre_3035, monkeypatch):
    x0, y0 = centre_3035
    # a 100 m grid block: 12 x 6 cell centres, patches 16 x 16 at 10 m
    xs = np.tile(x0 - 1050 + 100 * np.arange(12), 6) + 0.0
    ys = np.repeat(y0 + 450 - 100 * np.arange(6), 12) + 0.0
    refs = [BandRef(rasters["utm"], 2), BandRef(rasters["geo"], 1), BandRef(rasters["utm"], 1)]
    counter = ReadCounter(monkeypatch)
    with PatchSampler(refs, 16, 10.0, GRID_CRS) as sampler:
        got = sampler.sample(xs, ys)
    assert got.shape == (72, 3, 16, 16) and got.dtype == np.float32
    assert sorted(counter.reads) == sorted({rasters["utm"], rasters["geo"]})
    assert counter.reprojects == 2
    for k, ref in enumerate(refs):
        expected, frac = patch_expected(ref.path, xs, ys, 16, 10.0, ref.band)
        sure = frac > 1e-6  # a pixel centre on a pixel edge could go either way
        assert sure.mean() > 0.99
        np.testing.assert_array_equal(got[:, k][sure], expected[sure].astype(np.float32))
    assert np.isnan(got[:, 0]).any()  # the utm hole


def test_one_band_files_on_one_grid_share_one_pixel_map(rasters, centre_3035, monkeypatch, tmp_path):
    """Bands in separate files on the same UTM grid (a Sentinel-2 band per file): one pixel
    map for all of them per block, and the same patches as the one multi-band file."""
    x0, y0 = centre_3035
    xs = np.tile(x0 - 1050 + 100 * np.arange(12), 6) + 0.0
    ys = np.repeat(y0 + 450 - 100 * np.arange(6), 12) + 0.0
    with rasterio.open(rasters["utm"]) as src:
        profile, bands = src.profile, src.read()
    files = []
    for b in range(2):
        path = tmp_path / f"band{b + 1}.tif"
        with rasterio.open(path, "w", **dict(profile, count=1)) as dst:
            dst.write(bands[b], 1)
        files.append(str(path))
    maps = []
    real = sampling.warp_pixels
    monkeypatch.setattr(sampling, "warp_pixels", lambda *a: maps.append(1) or real(*a))
    with PatchSampler([BandRef(f, 1) for f in files], 16, 10.0, GRID_CRS) as sampler:
        separate = sampler.sample(xs, ys)
    assert len(maps) == 1  # one block, one grid: one map for the two files
    with PatchSampler(
        [BandRef(rasters["utm"], 1), BandRef(rasters["utm"], 2)], 16, 10.0, GRID_CRS
    ) as sampler:
        together = sampler.sample(xs, ys)
    np.testing.assert_array_equal(separate, together)
    assert np.isfinite(together).sum() > 5_000  # the raster covers part of the block


def test_patches_same_crs_are_slices(rasters, centre_3035, monkeypatch):
    x0, y0 = centre_3035
    xs = np.array([x0, x0 + 250.0, x0 - 1000.0])
    ys = np.array([y0, y0 - 100.0, y0 + 730.0])
    counter = ReadCounter(monkeypatch)
    with PatchSampler(
        [BandRef(rasters["laea"], 2), BandRef(rasters["laea"], 1)], 8, 10.0, GRID_CRS
    ) as sampler:
        got = sampler.sample(xs, ys)
    assert counter.reprojects == 0 and len(counter.reads) == 1  # on the raster's own lattice: a copy
    with rasterio.open(rasters["laea"]) as ds:
        b2, b1 = ds.read(2), ds.read(1)
    for k, (x, y) in enumerate(zip(xs, ys, strict=True)):
        col0 = int((x - 40 - (x0 - 3000)) / 10)
        row0 = int(((y0 + 3000) - (y + 40)) / 10)
        np.testing.assert_array_equal(got[k, 0], b2[row0 : row0 + 8, col0 : col0 + 8])
        np.testing.assert_array_equal(got[k, 1], b1[row0 : row0 + 8, col0 : col0 + 8])


def test_patches_at_scattered_points_are_exact(rasters, centre_3035, monkeypatch):
    xs, ys = random_points(centre_3035, 40, 2000, seed=5)
    counter = ReadCounter(monkeypatch)
    with PatchSampler(
        [BandRef(rasters["utm"], 1), BandRef(rasters["geo"], 1)], 12, 10.0, GRID_CRS
    ) as sampler:
        got = sampler.sample(xs, ys)
    assert counter.reprojects == 0 and len(counter.reads) == 2
    for k, path in enumerate([rasters["utm"], rasters["geo"]]):
        expected, frac = patch_expected(path, xs, ys, 12, 10.0)
        sure = frac > 1e-6
        np.testing.assert_array_equal(got[:, k][sure], expected[sure].astype(np.float32))


def test_patches_unaligned_lattice_few_phases(rasters, centre_3035, monkeypatch):
    x0, y0 = centre_3035
    # 25 m cells, 10 m pixels: patch corners fall on two sub-pixel offsets per axis
    xs = np.tile(x0 + 25 * np.arange(8), 4) + 0.0
    ys = np.repeat(y0 + 1500 - 25 * np.arange(4), 8) + 0.0
    counter = ReadCounter(monkeypatch)
    with PatchSampler([BandRef(rasters["utm"], 3)], 6, 10.0, GRID_CRS) as sampler:
        got = sampler.sample(xs, ys)
    assert counter.reprojects == 4  # one per (x, y) phase pair, not one per point
    expected, frac = patch_expected(rasters["utm"], xs, ys, 6, 10.0, 3)
    sure = frac > 1e-6
    np.testing.assert_array_equal(got[:, 0][sure], expected[sure].astype(np.float32))


def test_patch_chunking_gives_the_same_patches(rasters, centre_3035, monkeypatch):
    x0, y0 = centre_3035
    xs = np.tile(x0 - 2000 + 200 * np.arange(20), 20) + 0.0
    ys = np.repeat(y0 + 2000 - 200 * np.arange(20), 20) + 0.0
    refs = [BandRef(rasters["utm"], 1)]
    with PatchSampler(refs, 8, 10.0, GRID_CRS) as sampler:
        whole = sampler.sample(xs, ys)
    monkeypatch.setattr(sampling, "MAX_FINE_VALUES", 200 * 200)
    calls = []
    original = PatchSampler._resample
    monkeypatch.setattr(
        PatchSampler, "_resample", lambda self, a, b: calls.append(a.size) or original(self, a, b)
    )
    with PatchSampler(refs, 8, 10.0, GRID_CRS) as sampler:
        chunked = sampler.sample(xs, ys)
    assert len(calls) >= 4 and sum(calls) == 400
    sure = patch_expected(rasters["utm"], xs, ys, 8, 10.0)[1] > 1e-6
    np.testing.assert_array_equal(chunked[:, 0][sure], whole[:, 0][sure])


def test_patch_outside_sources_is_nan(rasters, centre_3035):
    x0, y0 = centre_3035
    with PatchSampler([BandRef(rasters["laea"], 1)], 4, 10.0, GRID_CRS) as sampler:
        got = sampler.sample([x0 + 1e5, x0 - 2990.0], [y0, y0])
    assert np.isnan(got[0]).all()
    # the second patch straddles the raster's west edge: its first column is outside
    assert np.isnan(got[1, 0, :, 0]).all()
    rows = np.arange(298, 302)[:, None]
    np.testing.assert_array_equal(got[1, 0, :, 1:], encode(rows, np.arange(3)[None, :]))


def test_bad_input(rasters, tmp_path):
    with pytest.raises(InputDataError, match="has 3 band\\(s\\); there is no band 4"):
        PointSampler([BandRef(rasters["utm"], 4)], GRID_CRS)
    with pytest.raises(InputDataError, match="Cannot open the raster"):
        PointSampler([BandRef(str(tmp_path / "none.tif"), 1)], GRID_CRS)
    with pytest.raises(InputDataError, match="not projected"):
        PatchSampler([BandRef(rasters["utm"], 1)], 8, 10.0, "EPSG:4326")
    with pytest.raises(InputDataError, match="patch size"):
        PatchSampler([BandRef(rasters["utm"], 1)], 0, 10.0, GRID_CRS)
    with pytest.raises(InputDataError, match="no raster bands"):
        PointSampler([], GRID_CRS)


# ---- the real GeoPlant sample rasters -------------------------------------------------


def test_real_chelsa_and_footprint(samples_dir):
    r = samples_dir / "rasters"
    bio1, bio3, hfp = (str(r / n) for n in ("chelsa_bio1_montpellier.tif", "chelsa_bio3_montpellier.tif",
                                            "HumanFootprint_Built2009_WGS84.tif"))  # fmt: skip
    # points: centres of known pixels of the footprint raster, nodata (sea) and valid
    with rasterio.open(hfp) as ds:
        window = rasterio.windows.Window(3000, 2000, 1000, 1500)
        data = ds.read(1, window=window)
        sea, land = np.argwhere(data == 2147483647), np.argwhere((data > 0) & (data != 2147483647))
        picks = np.array([sea[len(sea) // 2], land[len(land) // 3], land[len(land) // 2]])
        values = data[picks[:, 0], picks[:, 1]]
        rows, cols = picks[:, 0] + 2000, picks[:, 1] + 3000
        lon, lat = ds.xy(rows, cols)
    assert values[0] == 2147483647 and (values[1:] > 0).all()
    xs, ys = Transformer.from_crs("EPSG:4326", GRID_CRS, always_xy=True).transform(lon, lat)
    rng = np.random.default_rng(1)
    mx, my = Transformer.from_crs("EPSG:4326", GRID_CRS, always_xy=True).transform(
        rng.uniform(3.0, 4.7, 200), rng.uniform(42.7, 44.5, 200)
    )
    xs, ys = np.concatenate([xs, mx]), np.concatenate([ys, my])
    with PointSampler([BandRef(bio1, 1), BandRef(hfp, 1), BandRef(bio3, 1)], GRID_CRS) as sampler:
        got = sampler.sample(xs, ys)
    expected_hfp = np.where(values == 2147483647, np.nan, values).astype(np.float32)
    np.testing.assert_array_equal(got[:3, 1], expected_hfp)
    for k, path in ((0, bio1), (1, hfp), (2, bio3)):
        expected, frac = expected_at(path, xs, ys)
        sure = frac > 1e-6
        np.testing.assert_array_equal(got[sure, k], expected[sure].astype(np.float32))
    assert np.isnan(got[:, 2]).sum() > 0  # bio3's float nodata (3.4e38) over the sea


def test_real_sentinel2_patches(samples_dir):
    s2 = str(samples_dir / "rasters" / "sentinel2_oneband_montpellier_utm31n.tif")
    with rasterio.open(s2) as ds:
        lon, lat = rasterio.warp.transform(ds.crs, "EPSG:4326", [570260.0], [4829070.0])
    x, y = Transformer.from_crs("EPSG:4326", GRID_CRS, always_xy=True).transform(lon[0], lat[0])
    x0, y0 = np.floor(x / 100) * 100 + 50, np.floor(y / 100) * 100 + 50
    xs = np.tile(x0 + 100 * np.arange(-5, 5), 10)
    ys = np.repeat(y0 + 100 * np.arange(-5, 5), 10)
    with PatchSampler([BandRef(s2, 1)], 64, 10.0, GRID_CRS) as sampler:
        got = sampler.sample(xs, ys)
    expected, frac = patch_expected(s2, xs, ys, 64, 10.0)
    sure = frac > 1e-6
    assert sure.mean() > 0.99 and not np.isnan(got).any()
    np.testing.assert_array_equal(got[:, 0][sure], expected[sure].astype(np.float32))


@pytest.mark.parametrize("seed", [0, 1])
def test_patch_validity_and_copy_into_a_buffer(rasters, centre_3035, seed):
    """Patches.valid (summed-area table of the fine grid's nodata) equals "no NaN pixel in
    the patch" computed independently; copy_to writes exactly the selected patches, in
    order, into the start of a caller's buffer and nothing after them."""
    x0, y0 = centre_3035
    # a block of 100 m cells over the masked raster's edges (its north half is masked;
    # x0 +- 500, y0 - 500: patches at x0 + 470 or y0 - 470 lose only their last column
    # or row) and the geo raster's hole, with 8 x 8 patches of 10 m pixels
    xs = np.tile(x0 - 630 + 100 * np.arange(12), 9) + 0.0
    ys = np.repeat(y0 + 330 - 100 * np.arange(9), 12) + 0.0
    refs = [BandRef(rasters["laea"], 2), BandRef(rasters["masked"], 1), BandRef(rasters["geo"], 1)]
    with PatchSampler(refs, 8, 10.0, GRID_CRS) as sampler:
        patches = sampler.patches(xs, ys)
    expected = np.stack([patch_expected(r.path, xs, ys, 8, 10.0, r.band)[0] for r in refs], axis=1)
    fracs = np.stack([patch_expected(r.path, xs, ys, 8, 10.0, r.band)[1] for r in refs], axis=1)
    sure = (fracs.reshape(len(xs), -1) > 1e-6).all(axis=1)  # no pixel centre on a source pixel edge
    assert sure.mean() > 0.9
    invalid = np.isnan(expected).reshape(len(xs), -1).any(axis=1)
    assert 0 < invalid[sure].sum() < sure.sum()  # both kinds among the checked patches
    np.testing.assert_array_equal(patches.valid[sure], ~invalid[sure])
    rng = np.random.default_rng(seed)
    which = patches.valid & (rng.random(len(xs)) < 0.8)  # gaps inside rows of cells
    buffer = np.full((len(xs) + 2, 3, 8, 8), 7.0, dtype=np.float32)
    count = patches.copy_to(buffer, which)
    assert count == which.sum()
    keep = sure[which]
    np.testing.assert_array_equal(buffer[:count][keep], expected[which][keep].astype(np.float32))
    assert (buffer[count:] == 7.0).all()
    everything = np.empty((len(xs), 3, 8, 8), dtype=np.float32)
    assert patches.copy_to(everything) == len(xs)
    np.testing.assert_array_equal(everything[sure & ~invalid], expected[sure & ~invalid].astype(np.float32))
    # slices of a selection (what each inference thread copies) give the same patches, and
    # the normalisation applied to the fine grids equals the card's on the patches
    selection = patches.selection(which)
    assert len(selection) == count and selection.shape == (count, 3, 8, 8)
    assert count >= 4
    for cuts in ([0, 2, 3, count], [0, count], [0, 1, count - 1, count]):
        pieces = []
        for a, b in zip(cuts[:-1], cuts[1:], strict=True):
            out = np.full((b - a + 3, 3, 8, 8), 7.0, dtype=np.float32)
            got = selection[a:b].copy_into(out)
            assert got.shape == (b - a, 3, 8, 8) and (out[b - a :] == 7.0).all()
            pieces.append(got.copy())
        np.testing.assert_array_equal(np.concatenate(pieces), buffer[:count])
    mul = np.array([2.0, 0.5, -1.0], dtype=np.float32).reshape(3, 1, 1)
    add = np.array([1.0, -3.0, 0.25], dtype=np.float32).reshape(3, 1, 1)
    patches.normalise(mul, add)
    normalised = patches.selection(which).copy_into(np.empty((count, 3, 8, 8), dtype=np.float32))
    np.testing.assert_array_equal(normalised, buffer[:count] * mul + add)


def _brute_force_pixels(src_transform, src_crs, src_shape, dst_shape, dst_transform, dst_crs):
    """Every destination pixel centre through pyproj, floor of the inverse affine; -1 outside."""
    r, c = np.mgrid[0 : dst_shape[0], 0 : dst_shape[1]]
    x, y = dst_transform * (c + 0.5, r + 0.5)
    sx, sy = Transformer.from_crs(dst_crs, src_crs, always_xy=True).transform(x, y)
    col, row = ~src_transform * (sx, sy)
    inside = (col >= 0) & (col < src_shape[1]) & (row >= 0) & (row < src_shape[0])
    return (
        np.where(inside, np.floor(row), -1).astype(int),
        np.where(inside, np.floor(col), -1).astype(int),
        col,
        row,
    )


@pytest.mark.parametrize(
    ("src_crs", "src_transform", "src_shape"),
    [
        ("EPSG:32631", from_origin(566003.7, 4835012.9, 7.3, 7.3), (800, 900)),  # UTM 31N
        ("EPSG:4326", from_origin(3.7012, 43.7531, 0.000371, 0.000293), (1100, 1200)),
        ("EPSG:32632", from_origin(100000.0, 4900000.0, 10.0, 10.0), (5000, 5000)),  # far off its zone
    ],
)
@pytest.mark.parametrize("lattice", [1, 7, 32])
def test_source_pixels_equal_a_transform_of_every_pixel(
    centre_3035, monkeypatch, src_crs, src_transform, src_shape, lattice
):
    """The lattice + interpolation + exact re-check near edges gives the source pixel an
    exact transform of every destination pixel centre gives (where that is not itself
    within 1e-6 pixel of an edge); pixels outside the source are -1."""
    from rasterio.transform import from_origin as origin

    monkeypatch.setattr(warp, "WARP_LATTICE", lattice)
    x0, y0 = centre_3035
    dst_shape, dst_transform = (301, 257), origin(x0 - 3100.0, y0 + 2900.0, 10.0, 10.0)
    rows, cols = sampling.source_pixels(src_transform, src_crs, src_shape, dst_shape, dst_transform, GRID_CRS)
    want_r, want_c, col, row = _brute_force_pixels(
        src_transform, src_crs, src_shape, dst_shape, dst_transform, GRID_CRS
    )
    sure = np.minimum(np.abs(col - np.rint(col)), np.abs(row - np.rint(row))) > 1e-6
    assert sure.mean() > 0.99
    np.testing.assert_array_equal(rows[sure], want_r[sure])
    np.testing.assert_array_equal(cols[sure], want_c[sure])
    assert ((rows == -1) == (cols == -1)).all()


def test_source_pixels_on_edges_and_without_a_lattice(centre_3035, monkeypatch):
    """Destination centres exactly on source pixel edges (same CRS, grids offset by half a
    pixel): the re-check near edges takes them exactly, as the pixel-by-pixel fallback does."""
    x0, y0 = centre_3035
    src_transform = from_origin(x0 - 1005.0, y0 + 1005.0, 10.0, 10.0)  # edges at the centres below
    dst_transform = from_origin(x0 - 1000.0, y0 + 1000.0, 10.0, 10.0)
    got = sampling.source_pixels(src_transform, GRID_CRS, (250, 250), (180, 190), dst_transform, GRID_CRS)
    monkeypatch.setattr(warp, "WARP_MAX_ERROR", -1.0)  # every pixel transformed exactly
    exact = sampling.source_pixels(src_transform, GRID_CRS, (250, 250), (180, 190), dst_transform, GRID_CRS)
    np.testing.assert_array_equal(got[0], exact[0])
    np.testing.assert_array_equal(got[1], exact[1])
    r, c = np.mgrid[0:180, 0:190]
    # the centre of destination column c is 10 (c + 1) m east of the source's left edge:
    # exactly the left edge of source column c + 1, which contains it
    np.testing.assert_array_equal(got[0], r + 1)
    np.testing.assert_array_equal(got[1], c + 1)


def test_warp_by_strips_equals_one_piece(centre_3035, monkeypatch):
    """warp_nearest resamples strips of rows (bounded temporaries): same pixels as one piece."""
    from rasterio.transform import from_origin as origin

    data = np.random.default_rng(0).random((2, 800, 900)).astype(np.float32)
    data[:, 100:130, 200:260] = np.nan
    src = origin(566003.7, 4835012.9, 7.3, 7.3)  # UTM 31N around the centre
    x0, y0 = centre_3035
    dst = origin(x0 - 2000.0, y0 + 1500.0, 10.0, 10.0)
    whole = sampling.warp_nearest(data, src, "EPSG:32631", (333, 401), dst, GRID_CRS)
    monkeypatch.setattr(warp, "WARP_STRIP_PIXELS", 5000)  # strips of 12 rows
    strips = sampling.warp_nearest(data, src, "EPSG:32631", (333, 401), dst, GRID_CRS)
    np.testing.assert_array_equal(strips, whole)
    assert 0.05 < np.isnan(whole).mean() < 0.95


@pytest.mark.parametrize(
    ("src_crs", "dst_crs", "lon", "lat"),
    [("EPSG:32632", "EPSG:32631", 5.9, 45.0), ("EPSG:3857", "EPSG:32631", 3.87, 43.61)],
)
def test_source_pixels_error_bound_holds_for_conformal_pairs(monkeypatch, src_crs, dst_crs, lon, lat):
    """Between two conformal projections the interpolation error nearly vanishes at the
    middle of a lattice cell and peaks at the middles of its edges (measured 5x the
    centre's): the bound must come from the edges. A coarse lattice (256 pixels: errors of
    ~1e-3 pixel) makes hundreds of pixels depend on it."""
    monkeypatch.setattr(warp, "WARP_LATTICE", 256)
    monkeypatch.setattr(warp, "WARP_MAX_ERROR", 0.05)  # keep the interpolated path
    sx, sy = Transformer.from_crs("EPSG:4326", src_crs, always_xy=True).transform(lon, lat)
    x, y = Transformer.from_crs("EPSG:4326", dst_crs, always_xy=True).transform(lon, lat)
    src_transform, src_shape = from_origin(sx - 20000, sy + 20000, 7.3, 7.3), (5500, 5500)
    dst_shape, dst_transform = (1000, 1000), from_origin(x - 5000, y + 5000, 10.0, 10.0)
    rows, cols = sampling.source_pixels(src_transform, src_crs, src_shape, dst_shape, dst_transform, dst_crs)
    want_r, want_c, col, row = _brute_force_pixels(
        src_transform, src_crs, src_shape, dst_shape, dst_transform, dst_crs
    )
    sure = np.minimum(np.abs(col - np.rint(col)), np.abs(row - np.rint(row))) > 1e-7
    np.testing.assert_array_equal(rows[sure], want_r[sure])
    np.testing.assert_array_equal(cols[sure], want_c[sure])
