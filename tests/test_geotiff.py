"""core.geotiff: block-by-block GeoTIFF writer, temporary name, refusals, top-K sidecars."""

from __future__ import annotations

import csv
import io
import os
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from geoplant_qgis.core.errors import OutputError
from geoplant_qgis.core.geotiff import (
    MAX_BANDS,
    GeoTiffWriter,
    check_band_count,
    check_disk_space,
    compression_options,
    estimate_bytes,
    overview_factors,
    species_csv_text,
    topk_style_qml,
)

pytestmark = pytest.mark.core

TRANSFORM = from_origin(3_000_000.0, 2_500_000.0, 100.0, 100.0)


def _writer(path, data, **kw):
    count, height, width = data.shape
    args = dict(
        width=width,
        height=height,
        count=count,
        dtype=data.dtype,
        crs="EPSG:3035",
        transform=TRANSFORM,
        nodata=-9999.0 if data.dtype.kind == "f" else -1,
        descriptions=[f"band {i}" for i in range(1, count + 1)],
    )
    args.update(kw)
    return GeoTiffWriter(path, **args)


def _write_in_blocks(writer, data, rows_per_block, cols_per_block=None):
    _, height, width = data.shape
    cols_per_block = cols_per_block or width
    for r in range(0, height, rows_per_block):
        for c in range(0, width, cols_per_block):
            writer.write(data[:, r : r + rows_per_block, c : c + cols_per_block], r, c)


@pytest.mark.parametrize("dtype", ["float32", "int32"])
def test_blocks_round_trip_exactly(tmp_path, dtype):
    rng = np.random.default_rng(1)
    data = (rng.random((3, 300, 70)) * 1000).astype(dtype)
    path = tmp_path / "out.tif"
    # a tiny strip buffer forces 16-row tiles and many flushes; odd block sizes cross strips
    with _writer(path, data, buffer_bytes=1) as writer:
        assert writer.tile_h == 16
        _write_in_blocks(writer, data[:, :100], rows_per_block=7)
        for r in range(100, 300):
            for c in range(0, 70, 30):
                writer.write(data[:, r : r + 1, c : c + 30], r, c)
        with pytest.raises(ValueError, match="row order"):
            writer.write(data[:, :1], 0)
    assert sorted(os.listdir(tmp_path)) == ["out.tif"]
    with rasterio.open(path) as src:
        np.testing.assert_array_equal(src.read(), data)
        assert src.crs.to_epsg() == 3035
        assert src.transform == TRANSFORM
        assert src.nodata == (-9999.0 if dtype == "float32" else -1)
        assert src.descriptions == ("band 1", "band 2", "band 3")
        assert src.profile["tiled"] and src.block_shapes[0] == (16, 256)
        assert src.compression.value == compression_options()["compress"].upper()  # ZSTD here
        assert src.interleaving.value == "BAND"
        assert src.overviews(1) == [2]
        # the overview holds the data's own values (nearest resampling: every other pixel)
        ov = src.read(1, out_shape=(150, 35))
        np.testing.assert_array_equal(ov, data[0, ::2, ::2])


def test_single_band_2d_blocks_and_default_tiles(tmp_path):
    data = np.arange(20 * 30, dtype=np.float32).reshape(1, 20, 30)
    path = tmp_path / "r.tif"
    with _writer(path, data, descriptions=["richness"]) as writer:
        for r in range(0, 20, 6):
            writer.write(data[0, r : r + 6], r)
    with rasterio.open(path) as src:
        np.testing.assert_array_equal(src.read(1), data[0])
        assert src.block_shapes[0] == (256, 256)
        assert src.overviews(1) == []  # too small for overviews


def test_failure_inside_context_leaves_nothing(tmp_path):
    data = np.ones((1, 40, 40), dtype=np.float32)
    with pytest.raises(RuntimeError, match="boom"):
        with _writer(tmp_path / "x.tif", data) as writer:
            writer.write(data[:, :20], 0)
            assert os.path.exists(writer.tmp_path)
            assert os.path.basename(writer.tmp_path).startswith(".x.")
            raise RuntimeError("boom")
    assert os.listdir(tmp_path) == []


def test_existing_file_replaced_only_at_publish(tmp_path):
    path = tmp_path / "x.tif"
    path.write_bytes(b"old")
    data = np.full((1, 10, 10), 7, dtype=np.int32)
    writer = _writer(path, data, descriptions=None).open()
    writer.write(data, 0)
    writer.finish()
    assert path.read_bytes() == b"old"  # still the user's old file until publish
    writer.publish()
    with rasterio.open(path) as src:
        assert (src.read(1) == 7).all()
    assert sorted(os.listdir(tmp_path)) == ["x.tif"]


def test_discard_after_finish_removes_temporary(tmp_path):
    data = np.zeros((1, 10, 10), dtype=np.float32)
    writer = _writer(tmp_path / "x.tif", data).open()
    writer.write(data, 0)
    writer.finish()
    writer.discard()
    assert os.listdir(tmp_path) == []


def test_sidecars_written_at_publish_only(tmp_path):
    data = np.zeros((2, 5, 5), dtype=np.int32)
    sidecars = {str(tmp_path / "t_species.csv"): "id,name\n1,a\n", str(tmp_path / "t.qml"): "<qgis/>"}
    writer = _writer(tmp_path / "t.tif", data, sidecars=sidecars).open()
    writer.write(data, 0)
    writer.finish()
    assert sorted(p for p in os.listdir(tmp_path) if not p.startswith(".")) == []
    writer.publish()
    assert sorted(os.listdir(tmp_path)) == ["t.qml", "t.tif", "t_species.csv"]
    assert (tmp_path / "t_species.csv").read_text() == "id,name\n1,a\n"


def test_sidecar_name_of_a_folder_is_refused_before_writing(tmp_path):
    """A sidecar that cannot be renamed into place used to fail at publish, leaving its
    temporary file behind and an OSError traceback."""
    (tmp_path / "t_species.csv").mkdir()
    sidecars = {str(tmp_path / "t_species.csv"): "id,name\n1,a\n"}
    with pytest.raises(OutputError, match=r"t_species\.csv is a folder"):
        _writer(tmp_path / "t.tif", np.zeros((1, 2, 2), np.int32), sidecars=sidecars)
    assert os.listdir(tmp_path) == ["t_species.csv"] and os.listdir(tmp_path / "t_species.csv") == []


def test_missing_folder_is_refused(tmp_path):
    with pytest.raises(OutputError, match="does not exist"):
        _writer(tmp_path / "nope" / "x.tif", np.zeros((1, 2, 2), np.float32))


def test_folder_as_output_name_is_refused(tmp_path):
    """An output name that is an existing folder: a plain OutputError up front, not an
    IsADirectoryError at the final rename (after the other outputs were published)."""
    (tmp_path / "x.tif").mkdir()
    with pytest.raises(OutputError, match=r"x\.tif is a folder"):
        _writer(tmp_path / "x.tif", np.zeros((1, 2, 2), np.float32))
    with pytest.raises(OutputError, match=r"x\.tif is a folder"):
        check_disk_space([(str(tmp_path / "x.tif"), 16)])
    assert os.listdir(tmp_path / "x.tif") == [] and os.listdir(tmp_path) == ["x.tif"]


def test_band_limit():
    check_band_count(MAX_BANDS)
    with pytest.raises(OutputError, match=r"65,536 bands, more than the 65,535"):
        check_band_count(MAX_BANDS + 1, "The probabilities raster")


def test_band_limit_in_writer(tmp_path):
    with pytest.raises(OutputError, match="65,535"):
        GeoTiffWriter(
            tmp_path / "p.tif",
            width=1,
            height=1,
            count=70_000,
            dtype="float32",
            crs="EPSG:3035",
            transform=TRANSFORM,
            nodata=-9999.0,
        )
    assert os.listdir(tmp_path) == []


def test_estimate_bytes():
    assert estimate_bytes(1000, 1000, 25, "int32", overviews=False) == 100_000_000
    assert estimate_bytes(1000, 1000, 1, "float32") == int(np.ceil(4_000_000 * 4 / 3))


def test_disk_space_refusal_gives_estimate(tmp_path):
    requests = [(str(tmp_path / "a.tif"), 3 * 1024**3), (str(tmp_path / "b.tif"), 1024**3)]
    with pytest.raises(OutputError) as info:
        check_disk_space(requests, free_bytes=lambda folder: 2 * 1024**3)
    message = str(info.value)
    assert "4.0 GB" in message and "2.0 GB" in message and "a.tif" in message and "b.tif" in message
    check_disk_space(requests, free_bytes=lambda folder: 5 * 1024**3)  # fits: no error


def test_overview_factors():
    assert overview_factors(1000, 1000) == [2, 4]
    assert overview_factors(100, 50) == []
    assert overview_factors(4096, 10) == [2, 4, 8, 16]


def test_species_csv_and_qml():
    species = [(7, "Quercus ilex"), (12, 'Odd "name" & <co>')]
    rows = list(csv.reader(io.StringIO(species_csv_text(species))))
    assert rows == [["id", "name"], ["7", "Quercus ilex"], ["12", 'Odd "name" & <co>']]
    root = ET.fromstring(topk_style_qml(species).split("\n", 1)[1])
    renderer = root.find("pipe/rasterrenderer")
    assert renderer.get("type") == "paletted" and renderer.get("band") == "1"
    entries = renderer.findall("colorPalette/paletteEntry")
    assert [(e.get("value"), e.get("label")) for e in entries] == [
        ("7", "Quercus ilex (7)"),
        ("12", 'Odd "name" & <co> (12)'),
    ]
    colours = [e.get("color") for e in entries]
    assert len(set(colours)) == 2 and all(c.startswith("#") and len(c) == 7 for c in colours)


@pytest.mark.parametrize("failing", ["r.tif", "t_species.csv", "t.tif"])
def test_outputs_are_published_together_or_not_at_all(tmp_path, monkeypatch, failing):
    """A rename failing late (here the 1st, 2nd or last of four) leaves the user's previous
    files as they were, none of the new ones and no temporary file."""
    from geoplant_qgis.core import files
    from geoplant_qgis.core.geotiff import publish_all

    before = {"r.tif": b"old richness", "t.tif": b"old top-k", "t.qml": b"old style"}
    for name, data in before.items():
        (tmp_path / name).write_bytes(data)
    data = np.full((1, 10, 10), 3, dtype=np.int32)
    sidecars = {str(tmp_path / "t_species.csv"): "id,name\n3,c\n", str(tmp_path / "t.qml"): "<qgis/>"}
    writers = [_writer(tmp_path / "r.tif", data), _writer(tmp_path / "t.tif", data, sidecars=sidecars)]
    for w in writers:
        w.open()
        w.write(data, 0)
        w.finish()
    real_replace = os.replace
    failed = []

    def replace(src, dst):  # the first move of a new file onto ``failing`` fails
        if os.path.basename(dst) == failing and not failed:
            failed.append(src)
            raise PermissionError(13, "Permission denied", src, None, dst)
        return real_replace(src, dst)

    monkeypatch.setattr(files.os, "replace", replace)
    with pytest.raises(OutputError, match=f"Cannot put .*{failing} in place: Permission denied"):
        publish_all(writers)
    assert sorted(os.listdir(tmp_path)) == sorted(before)
    assert {name: (tmp_path / name).read_bytes() for name in before} == before
    monkeypatch.setattr(files.os, "replace", real_replace)
    # and without the failure every output lands, the old files replaced
    writers = [_writer(tmp_path / "r.tif", data), _writer(tmp_path / "t.tif", data, sidecars=sidecars)]
    for w in writers:
        w.open()
        w.write(data, 0)
        w.finish()
    publish_all(writers)
    assert sorted(os.listdir(tmp_path)) == ["r.tif", "t.qml", "t.tif", "t_species.csv"]
    assert (tmp_path / "t.qml").read_text() == "<qgis/>"
    with rasterio.open(tmp_path / "r.tif") as src:
        assert (src.read(1) == 3).all()
