"""The Dask cluster runner (core/cluster): cost per tile on 1 and 2 local workers, and the
scheduler's overhead per tile against the same tiles run serially in this process.

    .venv/bin/python bench/bench_cluster.py [--side 512] [--tile 256] [--json out.json]

The case is the reference of bench/run.py (19 rasters in EPSG:4326, MLP with 2,000
species, richness + top-25) on a ``side`` x ``side`` grid of 100 m cells cut into tiles of
``tile`` x ``tile``. Measured, in one run:

- serial: every tile through :func:`core.cluster.worker.run_tile` in this process, one
  after the other (the plan made once, as in a worker): seconds per tile;
- local:N (N = 1, 2): a LocalCluster of N single-threaded worker processes (its start
  timed apart), every tile as a task, wall time until all are back; the tasks' own
  seconds; overhead per tile = (N x wall - sum of task seconds) / tiles: the time a worker
  holds no tile (scheduling, transfer, result handling), a warm-up plan per worker included;
- end to end: core.predict.run vs run_on_cluster(local:2) on the same request (tiling,
  tasks, assembly and publish included).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE.parent / "tools"), str(HERE)]

from run import CRS, TOP_K, X0, Y0, make_climate, make_mlp  # noqa: E402


def request_for(data: Path, out: Path, side: int):
    from geoplant_qgis.core.predict import Extent, PredictRequest

    rasters = make_climate(data, side / 10 + 2)
    model = make_mlp(data / "mlp.onnx")
    out.mkdir(parents=True, exist_ok=True)
    return PredictRequest.build(
        model,
        rasters,
        extent=Extent(X0, Y0, X0 + side * 100, Y0 + side * 100, CRS),
        crs=CRS,
        cell_size=100,
        top_k=TOP_K,
        outputs={"richness": str(out / "richness.tif"), "topk": str(out / "topk.tif")},
        max_cells=1e9,
    )


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--side", type=int, default=512, help="grid side in cells (default 512)")
    parser.add_argument("--tile", type=int, default=256, help="tile side in cells (default 256)")
    parser.add_argument("--json", help="write the numbers here too")
    args = parser.parse_args(argv)

    import distributed

    from geoplant_qgis.core.cluster import run_on_cluster
    from geoplant_qgis.core.cluster.manifest import fingerprint, fingerprint_digest
    from geoplant_qgis.core.cluster.tiles import layout
    from geoplant_qgis.core.cluster.worker import close_cached, run_tile
    from geoplant_qgis.core.predict import run

    root = Path(tempfile.mkdtemp(prefix="geoplant-bench-cluster-"))
    data = Path(os.environ.get("GEOPLANT_BENCH_DATA", root / "data"))
    request = request_for(data, root / "serial", args.side)
    plan = layout(request, args.tile * args.tile)
    digest = fingerprint_digest(fingerprint(request, plan))
    tiles = plan.tiles
    cells = request.grid.width * request.grid.height
    numbers: dict = {
        "grid": [request.grid.width, request.grid.height],
        "tiles": len(tiles),
        "tile_cells": plan.tile_rows * plan.tile_cols,
    }

    work = root / "work"
    work.mkdir()
    start = time.perf_counter()
    run_tile(request, tiles[0], str(work), digest)  # warm-up: the plan (sessions, samplers)
    numbers["serial_first_tile_s"] = time.perf_counter() - start
    start = time.perf_counter()
    serial = [run_tile(request, t, str(work), digest)["seconds"] for t in tiles]
    numbers["serial_s"] = time.perf_counter() - start
    numbers["serial_per_tile_s"] = numbers["serial_s"] / len(tiles)
    numbers["serial_cells_per_s"] = cells / numbers["serial_s"]
    close_cached()

    for n in (1, 2):
        start = time.perf_counter()
        with (
            distributed.LocalCluster(
                n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None
            ) as cluster,
            distributed.Client(cluster) as client,
        ):
            numbers[f"local{n}_startup_s"] = time.perf_counter() - start
            shared = client.scatter(request, broadcast=True)
            for rnd in ("cold", "warm"):  # cold: each worker makes its plan on its first tile
                start = time.perf_counter()
                futures = [
                    client.submit(run_tile, shared, t, str(work), digest, key=f"{rnd}-{t.key}", pure=False)
                    for t in tiles
                ]
                results = client.gather(futures)
                wall = time.perf_counter() - start
                busy = sum(r["seconds"] for r in results)
                numbers[f"local{n}_{rnd}_wall_s"] = wall
                numbers[f"local{n}_{rnd}_per_tile_s"] = busy / len(tiles)
                numbers[f"local{n}_{rnd}_overhead_per_tile_s"] = (n * wall - busy) / len(tiles)
                numbers[f"local{n}_{rnd}_cells_per_s"] = cells / wall

    start = time.perf_counter()
    run(request)
    numbers["single_machine_end_to_end_s"] = time.perf_counter() - start
    cluster_request = request_for(data, root / "cluster", args.side)
    start = time.perf_counter()
    run_on_cluster(cluster_request, "local:2", tile_cells=args.tile * args.tile)
    numbers["local2_end_to_end_s"] = time.perf_counter() - start
    numbers["serial_tile_s"] = serial

    for key, value in numbers.items():
        if key != "serial_tile_s":
            print(f"{key:36s} {value:,.3f}" if isinstance(value, float) else f"{key:36s} {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(numbers, indent=1))
    return numbers


if __name__ == "__main__":
    main()
