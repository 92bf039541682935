#!/usr/bin/env python3
"""Speed and memory of geoplant:predict, as ratios measured in one run (`make bench`).

Cases (see bench/README.md):
- reference: 100 km x 100 km at 100 m in EPSG:3035 (1M cells), 18 climate rasters at
  0.01 degree + a 30 m (1 arc-second) elevation raster in EPSG:4326, an MLP
  19 -> 256 -> 256 -> 2000 species, outputs richness + top-25; end to end through
  qgis_process (plugin built and installed in a scratch profile) and through
  core.engine.predict, against onnxruntime alone on as many ready-made rows.
- patch: a small CNN on 4 x 64 x 64 patches at 10 m cut from a 4-band mosaic, 100 m cells,
  against onnxruntime alone on ready-made patches.
- memory: peak RSS of the same run on 1x and 4x the cells.
- naive: per cell, QGIS dataProvider().sample() on every raster + one onnxruntime call +
  numpy post-processing, on a small subset, extrapolated to the reference's cells.

Every measured run is a child process; its peak RSS comes from os.wait4. ``--quick``
shrinks every size (a smoke test, not the reference numbers).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tools"))
from make_world import write_tif  # noqa: E402 (tools/)

CRS = "EPSG:3035"
X0, Y0 = 4_000_000.0, 2_900_000.0  # south-west corner of the reference area (central Europe)
N_CLIMATE = 18
N_SPECIES = 2000
TOP_K = 25


# --- data and models -------------------------------------------------------------------


#: the bench's source rasters: tiled 256 x 256, not compressed (reading them is what is timed)
UNCOMPRESSED = {"tiled": True, "compress": None}


def make_climate(folder: Path, side_km: float) -> list[str]:
    """18 climate rasters at 0.01 degree and a 1 arc-second elevation raster, EPSG:4326."""
    from rasterio.transform import from_origin
    from rasterio.warp import transform_bounds

    folder.mkdir(parents=True, exist_ok=True)
    stamp = folder / f"climate_{side_km:g}.done"
    paths = [str(folder / f"bio{i}.tif") for i in range(1, N_CLIMATE + 1)] + [str(folder / "elevation.tif")]
    if stamp.exists():
        return paths
    w, s, e, n = transform_bounds(
        CRS, "EPSG:4326", X0, Y0, X0 + side_km * 1000, Y0 + side_km * 1000, densify_pts=21
    )
    w, s, e, n = w - 0.05, s - 0.05, e + 0.05, n + 0.05
    res = 0.01
    cols, rows = int(np.ceil((e - w) / res)), int(np.ceil((n - s) / res))
    lon = w + (np.arange(cols) + 0.5) * res
    lat = n - (np.arange(rows) + 0.5) * res
    glon, glat = np.meshgrid(lon, lat)
    for i in range(1, N_CLIMATE + 1):
        field = (np.sin(glon * (0.7 + 0.1 * i)) * 10 + np.cos(glat * (1.1 + 0.05 * i)) * 5 + i).astype(
            np.float32
        )
        write_tif(
            paths[i - 1], field, from_origin(w, n, res, res), "EPSG:4326", -9999.0, tiled=True, compress=None
        )
    res = 1.0 / 3600.0
    cols, rows = int(np.ceil((e - w) / res)), int(np.ceil((n - s) / res))
    c = np.arange(cols, dtype=np.float32)[None, :]
    r = np.arange(rows, dtype=np.float32)[:, None]
    elevation = (200 + 150 * np.sin(c / 700.0) * np.cos(r / 500.0) + (c + r) % 7).astype(np.int16)
    write_tif(
        paths[-1], elevation, from_origin(w, n, res, res), "EPSG:4326", -32768, tiled=True, compress=None
    )
    stamp.touch()
    return paths


def make_mosaic(folder: Path, side_km: float) -> list[str]:
    """A 4-band (red, green, blue, nir) uint16 mosaic at 10 m in EPSG:3035."""
    from rasterio.transform import from_origin

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"s2_mosaic_{side_km:g}.tif"
    if not path.exists():
        px = int(side_km * 100) + 200  # 1 km margin each side
        rng = np.random.default_rng(7)
        data = rng.integers(1, 4000, size=(4, px, px), dtype=np.uint16)
        write_tif(
            path,
            data,
            from_origin(X0 - 1000, Y0 + side_km * 1000 + 1000, 10, 10),
            CRS,
            0,
            ["red", "green", "blue", "nir"],
            **UNCOMPRESSED,
        )
    return [str(path)]


def _save(model, card, path: Path) -> str:
    import onnx

    from geoplant_qgis.core.modelcard import embed_model_card

    embed_model_card(model, card)
    onnx.save(model, path)
    return str(path)


def make_mlp(path: Path) -> str:
    from onnx import TensorProto, helper, numpy_helper

    if path.exists():
        return str(path)
    rng = np.random.default_rng(0)
    names = [f"bio{i}" for i in range(1, N_CLIMATE + 1)] + ["elevation"]
    nodes, inits, prev = [], [], "env"
    for k, (i, o) in enumerate([(19, 256), (256, 256), (256, N_SPECIES)]):
        inits += [
            numpy_helper.from_array((rng.normal(size=(i, o)) / np.sqrt(i)).astype(np.float32), f"W{k}"),
            numpy_helper.from_array(np.full(o, -1.0 if k == 2 else 0.0, np.float32), f"b{k}"),
        ]
        nodes.append(helper.make_node("Gemm", [prev, f"W{k}", f"b{k}"], [f"h{k}"]))
        prev = f"h{k}"
        if k < 2:
            nodes.append(helper.make_node("Relu", [prev], [f"r{k}"]))
            prev = f"r{k}"
    nodes.append(helper.make_node("Identity", [prev], ["logits"]))
    graph = helper.make_graph(
        nodes,
        "mlp",
        [helper.make_tensor_value_info("env", TensorProto.FLOAT, ["N", 19])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", N_SPECIES])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    card = {
        "format": "geoplant-onnx/1",
        "name": "bench MLP",
        "species": [{"id": i + 1, "name": f"Species {i + 1}"} for i in range(N_SPECIES)],
        "output": {"name": "logits", "activation": "sigmoid"},
        "inputs": [
            {
                "name": "env",
                "kind": "point",
                "variables": names,
                "mean": [10.0] * 18 + [200.0],
                "std": [8.0] * 18 + [150.0],
            }
        ],
        "grid": {"crs": CRS, "cell_size_m": 100},
    }
    return _save(model, card, path)


def make_cnn(path: Path, n_species: int = 100) -> str:
    from onnx import TensorProto, helper, numpy_helper

    if path.exists():
        return str(path)
    rng = np.random.default_rng(1)

    def weight(name, *shape):
        fan_in = int(np.prod(shape[1:]))
        return numpy_helper.from_array((rng.normal(size=shape) / np.sqrt(fan_in)).astype(np.float32), name)

    inits = [
        weight("c1", 32, 4, 3, 3),
        numpy_helper.from_array(np.zeros(32, np.float32), "c1b"),
        weight("c2", 64, 32, 3, 3),
        numpy_helper.from_array(np.zeros(64, np.float32), "c2b"),
        weight("fc", 64, n_species),
        numpy_helper.from_array(np.full(n_species, -1.0, np.float32), "fcb"),
    ]
    nodes = [
        helper.make_node("Conv", ["s2", "c1", "c1b"], ["x1"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["x1"], ["y1"]),
        helper.make_node("Conv", ["y1", "c2", "c2b"], ["x2"], strides=[2, 2], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["x2"], ["y2"]),
        helper.make_node("GlobalAveragePool", ["y2"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "fc", "fcb"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "cnn",
        [helper.make_tensor_value_info("s2", TensorProto.FLOAT, ["N", 4, 64, 64])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", n_species])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    card = {
        "format": "geoplant-onnx/1",
        "name": "bench CNN",
        "species": [{"id": i + 1, "name": f"Species {i + 1}"} for i in range(n_species)],
        "output": {"name": "logits", "activation": "sigmoid"},
        "inputs": [
            {
                "name": "s2",
                "kind": "patch",
                "bands": ["red", "green", "blue", "nir"],
                "size": 64,
                "pixel_size_m": 10,
                "scale": 0.0001,
                "mean": [0.2, 0.2, 0.2, 0.3],
                "std": [0.1, 0.1, 0.1, 0.1],
            }
        ],
        "grid": {"crs": CRS, "cell_size_m": 100},
    }
    return _save(model, card, path)


# --- child processes -------------------------------------------------------------------


def run_measured(args: list[str], env=None) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in MB, stdout) of a child process (its rusage from os.wait4)."""
    import tempfile

    started = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(args, stdout=out, stderr=err, env=env, text=True)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(args[:4])} failed ({proc.returncode}):\n{stdout[-3000:]}\n{stderr[-3000:]}"
        )
    return seconds, usage.ru_maxrss / 1024.0, stdout


def child_main(spec: dict) -> None:
    """Runs in a child process: one measurement, result as JSON on stdout."""
    kind = spec["kind"]
    if kind == "core":
        from geoplant_qgis.core.engine import predict

        result = predict(spec["model"], spec["rasters"], **spec["kwargs"])
        print(json.dumps({"seconds": result.seconds, "cells": result.cells, "valid": result.valid_cells}))
    elif kind == "ort":
        from geoplant_qgis.core.predict.model import LoadedModel
        from geoplant_qgis.core.predict.model import session as _session
        from geoplant_qgis.core.predict.model import workers as _workers

        model = LoadedModel(spec["model"])
        spec_in = model.card.inputs[0]
        workers = _workers(None)[0]
        # two layouts, the best kept: one session on every core, or (like the engine) one
        # single-threaded session per core fed from as many threads
        layouts = {"1 session": [_session(spec["model"])]}
        if workers > 1:
            layouts[f"{workers} sessions x 1 thread"] = [_session(spec["model"], 1) for _ in range(workers)]
        rows, batches = spec["rows"], spec["batches"]
        rng = np.random.default_rng(0)
        x = rng.normal(size=spec_in.tensor_shape(max(batches))).astype(np.float32)
        output = [model.card.output.name]

        def timed(n_rows, batch, sessions):
            import threading

            def loop(session, share):
                done = 0
                while done < share:
                    n = min(batch, share - done)
                    session.run(output, {spec_in.name: x[:n]})
                    done += n

            started = time.perf_counter()
            share = -(-n_rows // len(sessions))
            threads = [threading.Thread(target=loop, args=(s, share)) for s in sessions[1:]]
            for t in threads:
                t.start()
            loop(sessions[0], share)
            for t in threads:
                t.join()
            return time.perf_counter() - started

        # fair baseline: onnxruntime's best batch size and layout (tried on a tenth of the rows)
        for sessions in layouts.values():
            timed(64, 16, sessions)
        trial = max(min(batches) * 4, rows // 10)
        best = min(
            ((b, name) for b in batches for name in layouts),
            key=lambda bn: timed(trial, bn[0], layouts[bn[1]]),
        )
        seconds = timed(rows, best[0], layouts[best[1]])
        print(json.dumps({"seconds": seconds, "rows": rows, "batch": f"{best[0]} ({best[1]})"}))
    elif kind == "pipeline":
        # the engine's inference alone: model + normalisation + post-processing graph on its
        # worker pool, over the very feeds predict() makes (sampled beforehand, untimed)
        from geoplant_qgis.core import engine
        from geoplant_qgis.core.grid import make_grid
        from geoplant_qgis.core.predict.inputs import Inputs

        model = engine.LoadedModel(spec["model"])
        side = spec["side_m"]
        grid = make_grid((X0, Y0, X0 + side, Y0 + side), CRS, crs=CRS, cell_size=100)
        block = engine.default_block_cells(model.card, 100.0, (1 + TOP_K) * 4)
        with model.pipeline(None, top_k=TOP_K, richness=True) as pipeline:
            inputs = Inputs(model.card, spec["rasters"], None, grid.crs, pipeline.graph_normalises)
            blocks = []
            for window in grid.tiles(block):
                feeds, _ = inputs.prepare(*map(np.ravel, grid.window_centres(window)))
                blocks.append(feeds)
            pipeline.run({k: v[:64] for k, v in blocks[0].items()})
            started = time.perf_counter()
            pending = None
            for feeds in blocks:
                following = pipeline.submit(feeds)
                if pending is not None:
                    pending.result()
                pending = following
            pending.result()
            seconds = time.perf_counter() - started
        inputs.close()
        print(json.dumps({"seconds": seconds, "rows": sum(len(next(iter(f.values()))) for f in blocks)}))
    elif kind == "naive":
        naive_per_cell(spec)


def naive_per_cell(spec: dict) -> None:
    """Seconds per cell the naive way: QGIS sample() per raster per cell + one ORT call per cell."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from qgis.core import (
        QgsApplication,
        QgsCoordinateReferenceSystem,
        QgsCoordinateTransform,
        QgsPointXY,
        QgsProject,
        QgsRasterLayer,
    )

    from geoplant_qgis.core.modelcard import read_model_card
    from geoplant_qgis.core.predict.model import session as _session

    app = QgsApplication([], False)
    app.initQgis()
    card = read_model_card(spec["model"])
    spec_in = card.inputs[0]
    session = _session(spec["model"])
    layers = [QgsRasterLayer(p, os.path.basename(p)) for p in spec["rasters"]]
    transforms = [
        QgsCoordinateTransform(QgsCoordinateReferenceSystem(CRS), layer.crs(), QgsProject.instance())
        for layer in layers
    ]
    rng = np.random.default_rng(3)
    side = spec["side_m"]
    xs = X0 + rng.random(spec["cells"]) * side
    ys = Y0 + rng.random(spec["cells"]) * side
    started = time.perf_counter()
    for x, y in zip(xs, ys, strict=True):
        values = []
        for layer, tr in zip(layers, transforms, strict=True):
            point = tr.transform(QgsPointXY(x, y))
            value, ok = layer.dataProvider().sample(point, 1)
            values.append(value if ok else np.nan)
        row = spec_in.normalise(np.array([values], dtype=np.float32))
        logits = session.run(None, {spec_in.name: row})[0]
        p = 1.0 / (1.0 + np.exp(-logits[0]))
        _richness = float(p.sum())
        _top = np.argsort(-p, kind="stable")[:TOP_K]
    seconds = (time.perf_counter() - started) / spec["cells"]
    print(json.dumps({"seconds_per_cell": seconds}), flush=True)
    os._exit(0)  # skip QGIS's teardown (it may crash at exit with layers alive)


def child(spec: dict) -> tuple[float, float, dict]:
    args = [sys.executable, str(Path(__file__).resolve()), "--child", json.dumps(spec)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    seconds, rss, out = run_measured(args, env)
    return seconds, rss, json.loads(out.strip().splitlines()[-1])


# --- qgis_process ----------------------------------------------------------------------


def install_plugin(workdir: Path) -> Path | None:
    """`make build` + tools/install_plugin.py into a scratch profile; None if not possible."""
    if not Path("/usr/bin/qgis_process.bin").exists():
        return None
    import install_plugin as installer  # tools/

    profile = workdir / "profile"
    installer.install(
        installer.build_plugin(ROOT),
        profile,
        requirements=ROOT / "requirements.txt",
        constraints=ROOT / "constraints.txt",
    )
    return profile


def qgis_process_run(
    profile: Path, model: str, rasters: list[str], side_m: float, out: Path
) -> tuple[float, float]:
    import install_plugin as installer  # tools/

    env = installer.headless_env(profile)
    args = ["/usr/bin/qgis_process.bin", "run", "geoplant:predict", "--", f"MODEL={model}"]
    args += [f"RASTERS={p}" for p in rasters]
    args += [
        f"EXTENT={X0!r},{X0 + side_m!r},{Y0!r},{Y0 + side_m!r} [{CRS}]",
        "CELL_SIZE=100",
        f"TOP_K={TOP_K}",
        f"OUTPUT_RICHNESS={out / 'qp_richness.tif'}",
        f"OUTPUT_TOPK={out / 'qp_topk.tif'}",
    ]
    seconds, rss, _ = run_measured(args, env)
    return seconds, rss


# --- the benchmark ---------------------------------------------------------------------


def block_cells_for(model: str) -> int:
    """The block size the engine picks for richness + top-25 at 100 m (one of the batch
    sizes tried for onnxruntime alone)."""
    from geoplant_qgis.core import engine
    from geoplant_qgis.core.modelcard import read_model_card

    return engine.default_block_cells(read_model_card(model), 100.0, (1 + TOP_K) * 4)


def observations_memory(rows: int) -> dict:
    """bench/bench_observations.py (the CSV reader's memory bench): {mode: peak RSS ratio
    large file / small file}; its own table is printed as it comes."""
    # its own process: each measurement's child inherits its parent's peak RSS (fork), so the
    # parent must be a small process, not this one (measured: 209 MB instead of 125 for the
    # small file's run)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_observations.py"), str(rows)],
        capture_output=True,
        text=True,
        check=True,
    )
    *table, last = proc.stdout.rstrip().splitlines()
    print("\n".join(table), flush=True)
    return json.loads(last)


def ort_batches(block: int) -> list[int]:
    """Batch sizes tried for "onnxruntime alone" (its best is kept): small ones (the
    engine cuts micro-batches of as few as 32 rows for big inputs), the engine's largest
    micro-batch, a few larger ones, and the engine's block size (at most 4096)."""
    from geoplant_qgis.core import engine

    return sorted({32, 64, 128, engine.MICRO_BATCH, 1024, 4096, min(block, 4096)})


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/geoplant-bench"))
    parser.add_argument("--no-qgis-process", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the numbers here")
    parser.add_argument(
        "--repeat", type=int, default=None, help="runs per case, best kept (default 3, quick 1)"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_main(json.loads(args.child))
        return 0

    args.repeat = args.repeat or (1 if args.quick else 3)
    load_before = os.getloadavg()[0]
    side_km = 30.0 if args.quick else 100.0
    patch_km = 5.0 if args.quick else 20.0
    naive_cells = 100 if args.quick else 400
    work = args.workdir / ("quick" if args.quick else "full")
    out = work / "out"
    out.mkdir(parents=True, exist_ok=True)
    print(f"preparing data in {work} ...", flush=True)
    rasters = make_climate(work / "climate", side_km)
    mlp = make_mlp(work / "mlp.onnx")
    mosaic = make_mosaic(work / "mosaic", patch_km)
    cnn = make_cnn(work / "cnn.onnx")
    rows = []

    def core_kwargs(side_m, prefix=""):
        return dict(
            extent=[X0, Y0, X0 + side_m, Y0 + side_m],
            extent_crs=CRS,
            cell_size=100,
            top_k=TOP_K,
            output_richness=str(out / f"{prefix}richness.tif"),
            output_topk=str(out / f"{prefix}topk.tif"),
        )

    side_m = side_km * 1000
    cells = int(side_km * 10) ** 2
    batch = block_cells_for(mlp)

    profile = None
    if not args.no_qgis_process:
        print("building and installing the plugin for qgis_process ...", flush=True)
        try:
            profile = install_plugin(work)
        except subprocess.CalledProcessError as error:
            print(f"  plugin install failed: {error}", flush=True)

    # The machine may be shared: each case runs --repeat times, interleaved, best time kept.
    ort_s = core_s = qp = infer_s = float("inf")
    ort_rss = core_rss = qp_rss = 0.0
    for rep in range(args.repeat):
        print(
            f"reference, round {rep + 1}/{args.repeat}: onnxruntime alone, core, qgis_process ...", flush=True
        )
        _, rss, ort = child({"kind": "ort", "model": mlp, "rows": cells, "batches": ort_batches(batch)})
        ort_s, ort_rss = min(ort_s, ort["seconds"]), max(ort_rss, rss)
        ort_batch = ort["batch"]
        _, _, inference = child({"kind": "pipeline", "model": mlp, "rasters": rasters, "side_m": side_m})
        infer_s = min(infer_s, inference["seconds"])
        _, rss, core = child(
            {"kind": "core", "model": mlp, "rasters": rasters, "kwargs": core_kwargs(side_m)}
        )
        core_s, core_rss = min(core_s, core["seconds"]), max(core_rss, rss)
        if profile is not None:
            seconds, rss = qgis_process_run(profile, mlp, rasters, side_m, out)
            qp, qp_rss = min(qp, seconds), max(qp_rss, rss)
    rows.append(("reference, onnxruntime alone", cells, ort_s, ort_rss, None))
    rows.append(("reference, engine inference alone", cells, infer_s, float("nan"), ort_s / infer_s))
    rows.append(("reference, core.engine.predict", cells, core_s, core_rss, ort_s / core_s))
    if profile is not None:
        rows.append(("reference, qgis_process end to end", cells, qp, qp_rss, ort_s / qp))
    else:
        qp = None

    print("memory: 1/4 of the cells ...", flush=True)
    _, small_rss, small = child(
        {"kind": "core", "model": mlp, "rasters": rasters, "kwargs": core_kwargs(side_m / 2)}
    )
    rows.append(("memory, core on 1/4 of the cells", cells // 4, small["seconds"], small_rss, None))

    print("patch case ...", flush=True)
    patch_cells = int(patch_km * 10) ** 2
    patch_batch = block_cells_for(cnn)
    port_s = pcore_s = pinfer_s = float("inf")
    port_rss = pcore_rss = 0.0
    for _ in range(args.repeat):
        _, rss, port = child(
            {"kind": "ort", "model": cnn, "rows": patch_cells, "batches": ort_batches(patch_batch)}
        )
        port_s, port_rss = min(port_s, port["seconds"]), max(port_rss, rss)
        port_batch = port["batch"]
        _, _, inference = child(
            {"kind": "pipeline", "model": cnn, "rasters": mosaic, "side_m": patch_km * 1000}
        )
        pinfer_s = min(pinfer_s, inference["seconds"])
        _, rss, pcore = child(
            {
                "kind": "core",
                "model": cnn,
                "rasters": mosaic,
                "kwargs": core_kwargs(patch_km * 1000, "patch_"),
            }
        )
        pcore_s, pcore_rss = min(pcore_s, pcore["seconds"]), max(pcore_rss, rss)
    rows.append(("patch, onnxruntime alone", patch_cells, port_s, port_rss, None))
    rows.append(("patch, engine inference alone", patch_cells, pinfer_s, float("nan"), port_s / pinfer_s))
    rows.append(("patch, core.engine.predict", patch_cells, pcore_s, pcore_rss, port_s / pcore_s))

    print("naive way (subset) ...", flush=True)
    _, _, naive = child(
        {"kind": "naive", "model": mlp, "rasters": rasters, "cells": naive_cells, "side_m": side_m}
    )
    naive_total = naive["seconds_per_cell"] * cells
    rows.append((f"naive (extrapolated from {naive_cells} cells)", cells, naive_total, float("nan"), None))

    print("observations CSV reader: peak RSS, large vs small file ...", flush=True)
    obs = observations_memory(2_000_000 if not args.quick else 400_000)

    # ------------------------------------------------------------------------------
    print()
    header = f"{'case':45s} {'cells':>10s} {'seconds':>9s} {'cells/s':>10s} {'peak RSS MB':>12s}"
    print(header + f" {'efficiency':>10s}")
    for name, n, s, rss, eff in rows:
        eff_text = f"{eff:10.2f}" if eff is not None else " " * 10
        print(f"{name:45s} {n:10,d} {s:9.1f} {n / s:10,.0f} {rss:12.0f} {eff_text}")
    end_to_end = qp if qp is not None else core_s
    ratios = {
        "reference efficiency (qgis_process)": ort_s / qp if qp else None,
        "reference efficiency (core)": ort_s / core_s,
        "reference: core / inference alone (sampling, writing)": infer_s / core_s,
        "patch efficiency (core)": port_s / pcore_s,
        "patch: core / inference alone (sampling, writing)": pinfer_s / pcore_s,
        "memory: peak RSS 4x cells / 1x cells": core_rss / small_rss,
        "naive / ours speed-up": naive_total / end_to_end,
        "observations CSV, peak RSS large / small (stream)": obs.get("stream"),
        "observations CSV, peak RSS large / small (aggregate)": obs.get("aggregate"),
    }
    print()
    for key, value in ratios.items():
        print(f"{key:45s} {'n/a' if value is None else f'{value:.2f}'}")
    print(f"{'block size (cells) reference / patch':45s} {batch} / {patch_batch}")
    print(f"{'onnxruntime alone: best batch ref. / patch':45s} {ort_batch} / {port_batch}")
    print(f"{'load average before / after (2 cores)':45s} {load_before:.2f} / {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "ratios": ratios}, indent=1))
    shutil.rmtree(out, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
