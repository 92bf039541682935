"""The snapped grid, its cell centres, blocks and AREA masks."""

import numpy as np
import pytest
from osgeo import ogr
from pyproj import Transformer
from rasterio.windows import Window

from geoplant_qgis.core.errors import InputDataError
from geoplant_qgis.core.grid import Grid, area_mask, make_grid

pytestmark = pytest.mark.core


def test_grid_geometry():
    g = Grid("EPSG:3035", 100.0, 1000.0, 5000.0, 4, 3)
    assert g.shape == (3, 4)
    assert g.bounds == (1000.0, 4700.0, 1400.0, 5000.0)
    assert tuple(g.transform)[:6] == (100.0, 0.0, 1000.0, 0.0, -100.0, 5000.0)
    xs, ys = g.cell_centres(1, 3, 2)
    assert xs.dtype == np.float64
    assert xs.tolist() == [1250.0, 1350.0, 1250.0, 1350.0]
    assert ys.tolist() == [4850.0, 4850.0, 4750.0, 4750.0]
    # every centre maps back to its own (row, col) through the inverse transform
    xs, ys = g.cell_centres(0, 3)
    cols, rows = ~g.transform * (xs, ys)
    assert np.floor(rows).astype(int).tolist() == np.repeat(np.arange(3), 4).tolist()
    assert np.floor(cols).astype(int).tolist() == np.tile(np.arange(4), 3).tolist()


def test_blocks_cover_the_grid_once():
    g = Grid("EPSG:3035", 10.0, 0.0, 0.0, 7, 10)
    blocks = list(g.blocks(4))
    assert [(b.row_off, b.height, b.col_off, b.width) for b in blocks] == [
        (0, 4, 0, 7),
        (4, 4, 0, 7),
        (8, 2, 0, 7),
    ]
    xs, ys = g.window_centres(blocks[2])
    assert ys.tolist() == [-85.0] * 7 + [-95.0] * 7


def test_make_grid_snaps_to_cell_multiples():
    g = make_grid((1234.0, 5678.0, 1950.0, 6001.0), "EPSG:3035", "EPSG:3035", 100)
    assert (g.left, g.top, g.width, g.height) == (1200.0, 6100.0, 8, 5)
    # an extent already on grid lines is kept as it is (no extra row/column)
    g = make_grid((1200.0, 5600.0, 2000.0, 6100.0), None, "EPSG:3035", 100)
    assert (g.left, g.top, g.width, g.height) == (1200.0, 6100.0, 8, 5)
    # neighbouring runs line up: the shared edge is the same grid line
    a = make_grid((0.0, 0.0, 1049.0, 500.0), "EPSG:3035", cell_size=100)
    b = make_grid((1049.0, 0.0, 2000.0, 500.0), "EPSG:3035", cell_size=100)
    assert a.bounds[2] == 1100.0 and b.left == 1000.0
    assert ((b.left - a.left) / 100) == int((b.left - a.left) / 100)


def test_make_grid_from_degrees_covers_the_transformed_extent():
    extent = (3.5, 43.5, 3.6, 43.62)
    g = make_grid(extent, "EPSG:4326", "EPSG:3035", 250.0)
    t = Transformer.from_crs("EPSG:4326", "EPSG:3035", always_xy=True)
    # every point of the extent's densified boundary is inside the grid, and the grid is tight
    lon = np.concatenate(
        [np.linspace(3.5, 3.6, 50), np.full(50, 3.6), np.linspace(3.6, 3.5, 50), np.full(50, 3.5)]
    )
    lat = np.concatenate(
        [np.full(50, 43.5), np.linspace(43.5, 43.62, 50), np.full(50, 43.62), np.linspace(43.62, 43.5, 50)]
    )
    x, y = t.transform(lon, lat)
    left, bottom, right, top = g.bounds
    assert left <= x.min() < left + 250 and right - 250 < x.max() <= right
    assert bottom <= y.min() < bottom + 250 and top - 250 < y.max() <= top
    assert g.left % 250 == 0 and g.top % 250 == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(extent=(0, 0, 10, 10), extent_crs="EPSG:4326", crs="EPSG:4326"), "is not projected"),
        (dict(extent=(0, 0, 10, 10), crs="EPSG:2263"), "not metres"),
        (dict(extent=(0, 0, 10, 10), crs="EPSG:999999"), "not a coordinate reference system"),
        (dict(extent=(5, 0, 5, 10)), "vertical line (xmin = xmax = 5)"),
        (dict(extent=(0, 10, 5, 0)), "inverted (ymin > ymax"),
        (dict(extent=(0, 0, 10, 10), cell_size=0), "CELL_SIZE must be a number from 0.001"),
        (dict(extent=(0, 0, 10)), "four numbers"),
    ],
)
def test_make_grid_bad_input(kwargs, message):
    with pytest.raises(InputDataError) as info:
        make_grid(**kwargs)
    assert message in str(info.value)


def test_area_mask_centres_inside_only():
    g = Grid("EPSG:3035", 10.0, 0.0, 40.0, 4, 4)
    # a triangle: (0,0)-(38,0)-(0,38); centre (x, y) is inside when x + y < 38 (no centre on an edge)
    tri = {"type": "Polygon", "coordinates": [[(0, 0), (38, 0), (0, 38), (0, 0)]]}
    mask = area_mask(g, [tri])
    xs, ys = g.cell_centres(0, 4)
    expected = ((xs + ys) < 38).reshape(4, 4)
    np.testing.assert_array_equal(mask, expected)
    assert mask.sum() == 6  # 3 + 2 + 1: the diagonal cells (centre x + y = 40) are outside
    # same answer from WKB, WKT and GeoJSON text, and for a window of the grid
    wkt = "POLYGON((0 0,38 0,0 38,0 0))"
    wkb = ogr.CreateGeometryFromWkt(wkt).ExportToWkb()
    np.testing.assert_array_equal(area_mask(g, [bytes(wkb)]), expected)
    # one WKB geometry on its own, as bytes or bytearray (not a list of byte values)
    np.testing.assert_array_equal(area_mask(g, bytes(wkb)), expected)
    np.testing.assert_array_equal(area_mask(g, bytearray(wkb)), expected)
    np.testing.assert_array_equal(area_mask(g, wkt), expected)
    window = Window(1, 2, 3, 2)
    np.testing.assert_array_equal(area_mask(g, [wkt], window=window), expected[2:4, 1:4])


def test_area_mask_in_another_crs():
    g = make_grid((3.5, 43.5, 3.6, 43.6), "EPSG:4326", "EPSG:3035", 500.0)
    poly = "POLYGON((3.52 43.52,3.58 43.52,3.58 43.58,3.52 43.58,3.52 43.52))"
    mask = area_mask(g, [poly], "EPSG:4326")
    xs, ys = g.cell_centres(0, g.height)
    lon, lat = Transformer.from_crs("EPSG:3035", "EPSG:4326", always_xy=True).transform(xs, ys)
    inside = ((lon > 3.52) & (lon < 3.58) & (lat > 43.52) & (lat < 43.58)).reshape(g.shape)
    # the polygon's edges are straight in degrees, curved in 3035: allow only cells near the edge to differ
    near_edge = (
        (np.abs(lon - 3.52) < 0.01)
        | (np.abs(lon - 3.58) < 0.01)
        | (np.abs(lat - 43.52) < 0.01)
        | (np.abs(lat - 43.58) < 0.01)
    ).reshape(g.shape)
    assert inside.sum() > 50
    np.testing.assert_array_equal(mask[~near_edge], inside[~near_edge])


def test_area_mask_bad_input():
    g = Grid("EPSG:3035", 10.0, 0.0, 40.0, 4, 4)
    with pytest.raises(InputDataError, match="no polygons"):
        area_mask(g, ["POINT(1 1)"])
    with pytest.raises(InputDataError, match="not valid WKB/WKT"):
        area_mask(g, ["POLYGON((garbage"])
