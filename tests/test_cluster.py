"""core.cluster: a predict request as tiles on a Dask cluster, identical to a single-machine run.

- ``local:2`` vs :func:`core.engine.predict` (through ``core.predict.run``): every band,
  nodata, transform, CRS, band descriptions, overviews and the sidecars byte for byte;
- a worker killed (SIGKILL) while the tiles run: the run completes, identical outputs;
- a run cancelled after some tiles, then started again: identical outputs, and the tiles
  the first run finished are not computed again (the executions log of the tasks);
- without dask: MissingDependencyError saying what to install.

Grids stay small (600 x 400 cells, tiles of 256 x 256: 6 tasks) and clusters have two
single-threaded worker processes, so each test takes seconds.
"""

from __future__ import annotations

import builtins
import os
import signal

import numpy as np
import pytest
import rasterio
from make_world import write_tif
from rasterio.transform import from_origin
from tiny_models import save_linear_point_model

from geoplant_qgis.core.errors import CancelledError, InputDataError, MissingDependencyError
from geoplant_qgis.core.predict import Area, Extent, PredictRequest, run
from geoplant_qgis.core.progress import Progress

pytestmark = [pytest.mark.core, pytest.mark.slow, pytest.mark.timeout(180)]

LEFT, TOP = 4_000_000.0, 3_000_000.0
WIDTH, HEIGHT = 600, 400  # cells of 100 m
TILE_CELLS = 256 * 256


def _dask_or_skip():
    try:
        import dask  # noqa: F401
        import distributed
    except ImportError as error:
        pytest.skip(f"dask/distributed not importable ({error}): pip install -r requirements-dev.txt")
    return distributed


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Two rasters at 70 m in EPSG:3035 (a NaN hole in one), and a 3-species linear model."""
    root = tmp_path_factory.mktemp("cluster_world")
    rng = np.random.default_rng(7)
    w, h = 900, 600
    transform = from_origin(LEFT - 500, TOP + 500, 70, 70)
    bio1 = (rng.standard_normal((h, w)) * 3 + 10).astype(np.float32)
    bio12 = (rng.standard_normal((h, w)) * 200 + 800).astype(np.float32) / 1000
    bio12[100:160, 200:320] = np.nan
    r1 = write_tif(root / "Bio1.tif", bio1, transform, "EPSG:3035", float("nan"), ("Bio1",))
    r2 = write_tif(root / "Bio12.tif", bio12, transform, "EPSG:3035", float("nan"), ("Bio12",))
    model = save_linear_point_model(
        root / "model.onnx", weights=[[0.2, -0.1, 0.05], [1.0, -2.0, 0.5]], bias=[-2.0, 1.0, 0.0]
    )
    return {"model": model, "rasters": [r1, r2]}


def _request(world, out, area=False, **kwargs):
    os.makedirs(out, exist_ok=True)
    extent = Extent(LEFT, TOP - HEIGHT * 100, LEFT + WIDTH * 100, TOP, "EPSG:3035")
    polygon = None
    if area:  # a triangle: the AREA mask cuts through tiles
        polygon = Area(
            [
                {
                    "type": "Polygon",
                    "coordinates": [
                        [(LEFT, TOP), (LEFT + 60000, TOP - 10000), (LEFT + 5000, TOP - 40000), (LEFT, TOP)]
                    ],
                }
            ],
            "EPSG:3035",
        )
    return PredictRequest.build(
        world["model"],
        world["rasters"],
        extent=None if area else extent,
        area=polygon,
        crs="EPSG:3035",
        cell_size=100,
        top_k=2,
        outputs={
            "richness": os.path.join(out, "richness.tif"),
            "topk": os.path.join(out, "topk.tif"),
            "probabilities": os.path.join(out, "probs.tif"),
        },
        **kwargs,
    )


def _assert_same_outputs(a_dir, b_dir):
    names = sorted(n for n in os.listdir(a_dir))
    assert names == sorted(os.listdir(b_dir)), (names, sorted(os.listdir(b_dir)))
    assert not [n for n in names if n.startswith(".")], names  # no temporary, no work folder left
    for name in names:
        a, b = os.path.join(a_dir, name), os.path.join(b_dir, name)
        if not name.endswith(".tif"):
            with open(a, "rb") as fa, open(b, "rb") as fb:
                assert fa.read() == fb.read(), name  # species CSV, QML: byte for byte
            continue
        with rasterio.open(a) as ra, rasterio.open(b) as rb:
            assert ra.profile == rb.profile, name  # dtype, nodata, CRS, transform, tiling, codec
            assert ra.descriptions == rb.descriptions, name
            assert ra.tags() == rb.tags() and ra.overviews(1) == rb.overviews(1), name
            assert ra.overviews(1), name
            for band in range(1, ra.count + 1):
                np.testing.assert_array_equal(ra.read(band), rb.read(band), err_msg=f"{name} band {band}")
                level = len(ra.overviews(band)) - 1
                with (
                    rasterio.open(a, overview_level=level) as oa,
                    rasterio.open(b, overview_level=level) as ob,
                ):
                    np.testing.assert_array_equal(oa.read(band), ob.read(band))


def _single(world, tmp_path, area=False):
    single = str(tmp_path / "single")
    run(_request(world, single, area=area))
    return single


class _Cancel(Progress):
    """Cancels the run once ``after`` tiles are finished."""

    def __init__(self, after):
        self.after, self.tiles = after, 0

    def set_progress(self, percent):
        if percent < 90:
            self.tiles += 1

    def is_cancelled(self):
        return self.tiles >= self.after


def _log_lines(path, word):
    if not os.path.exists(path):
        return []
    with open(path, encoding="utf-8") as handle:
        return [line.split()[1] for line in handle if line.startswith(word + " ")]


def test_local_cluster_identical_to_single_machine(world, tmp_path, monkeypatch):
    _dask_or_skip()
    from geoplant_qgis.core.cluster import run_on_cluster
    from geoplant_qgis.core.cluster.tiles import layout

    log = str(tmp_path / "tiles.log")
    monkeypatch.setenv("GEOPLANT_CLUSTER_TILE_LOG", log)
    single = _single(world, tmp_path, area=True)
    request = _request(world, str(tmp_path / "cluster"), area=True)
    tiles = layout(request, TILE_CELLS).tiles
    assert len(tiles) >= 4
    result = run_on_cluster(request, "local:2", tile_cells=TILE_CELLS)
    assert result.cells == request.grid.width * request.grid.height and result.valid_cells > 0
    _assert_same_outputs(single, str(tmp_path / "cluster"))
    assert sorted(_log_lines(log, "done")) == sorted(t.key for t in tiles)  # each tile once


def test_worker_killed_mid_run(world, tmp_path, monkeypatch):
    distributed = _dask_or_skip()
    from geoplant_qgis.core.cluster import run_on_cluster

    log = str(tmp_path / "tiles.log")
    monkeypatch.setenv("GEOPLANT_CLUSTER_TILE_LOG", log)
    single = _single(world, tmp_path)
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        pids = client.run(os.getpid)
        killed = []

        class KillOne(Progress):
            def set_progress(self, percent):  # after the first finished tile
                if 0 < percent < 90 and not killed:
                    victim = sorted(pids.values())[0]
                    os.kill(victim, signal.SIGKILL)
                    killed.append(victim)

        request = _request(world, str(tmp_path / "cluster"))
        run_on_cluster(request, cluster.scheduler_address, KillOne(), tile_cells=TILE_CELLS)
    assert killed
    _assert_same_outputs(single, str(tmp_path / "cluster"))


def test_interrupted_run_resumes(world, tmp_path, monkeypatch):
    _dask_or_skip()
    from geoplant_qgis.core.cluster import run_on_cluster
    from geoplant_qgis.core.cluster.manifest import Manifest

    log = str(tmp_path / "tiles.log")
    monkeypatch.setenv("GEOPLANT_CLUSTER_TILE_LOG", log)
    single = _single(world, tmp_path)
    out = str(tmp_path / "cluster")
    request = _request(world, out)
    with pytest.raises(CancelledError, match="resume"):
        run_on_cluster(request, "local:2", _Cancel(after=2), tile_cells=TILE_CELLS)
    # nothing under the output names; the work folder with its manifest
    left = os.listdir(out)
    assert [n for n in left if not n.startswith(".geoplant-cluster-")] == [], left
    (work,) = left
    import json

    with open(os.path.join(out, work, "manifest.json"), encoding="utf-8") as handle:
        finished = set(json.load(handle)["tiles"])
    assert len(finished) >= 2
    first_run = set(_log_lines(log, "done"))
    assert finished <= first_run
    os.remove(log)
    # a corrupted tile file is recomputed: its checksum no longer matches
    victim = sorted(finished)[0]
    with open(os.path.join(out, work, f"{victim}-richness.tif"), "r+b") as handle:
        handle.seek(-8, os.SEEK_END)
        handle.write(b"\0" * 8)
    result = run_on_cluster(_request(world, out), "local:2", tile_cells=TILE_CELLS)
    second_run = set(_log_lines(log, "done"))
    assert victim in second_run
    assert not (finished - {victim}) & second_run  # finished tiles not recomputed
    assert second_run | finished == {t for t in second_run | first_run}
    assert result.valid_cells > 0
    _assert_same_outputs(single, out)
    assert Manifest  # (the manifest's format: core.cluster.manifest)


def test_missing_dask_says_what_to_install(world, tmp_path, monkeypatch):
    from geoplant_qgis.core.cluster import run_on_cluster

    real_import = builtins.__import__

    def no_dask(name, *args, **kwargs):
        if name.split(".")[0] in ("dask", "distributed"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_dask)
    request = _request(world, str(tmp_path / "out"))
    with pytest.raises(MissingDependencyError) as raised:
        run_on_cluster(request, "local:2")
    message = str(raised.value)
    assert "pip install" in message and "distributed" in message and "dask" in message
    assert os.listdir(tmp_path / "out") == []


def test_bad_scheduler_refused(world, tmp_path):
    from geoplant_qgis.core.cluster.driver import parse_scheduler

    assert parse_scheduler("local:3") == ("local", 3)
    assert parse_scheduler("tcp://10.0.0.1:8786") == ("address", "tcp://10.0.0.1:8786")
    for bad in ("local:0", "local:x", "10.0.0.1:8786", ""):
        with pytest.raises(InputDataError):
            parse_scheduler(bad)


def test_tiles_are_whole_blocks(world, tmp_path):
    from geoplant_qgis.core.cluster.tiles import layout
    from geoplant_qgis.core.predict.blocks import block_windows

    request = _request(world, str(tmp_path / "o"))
    plan = layout(request, TILE_CELLS)
    assert plan.tile_rows % 256 == 0 and plan.tile_cols % 256 == 0
    windows = [w for t in plan.tiles for w in t.windows]
    expected = [
        (int(w.row_off), int(w.col_off), int(w.height), int(w.width))
        for w in block_windows(request.grid, plan.block_cells, plan.strip)
    ]
    assert sorted(windows) == sorted(expected)
    assert sum(t.cells for t in plan.tiles) == request.grid.width * request.grid.height
