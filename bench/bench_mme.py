"""GeoPlant's multimodal ensemble (MME) at full size on this machine: cells/s end to end
through ``core.engine.predict`` vs onnxruntime alone on ready-made inputs, peak RSS, and
where the time goes (one onnxruntime session per branch).

    .venv/bin/python bench/bench_mme.py [--side 20] [--presets glc25,glc24] [--json FILE]

The models are made once by ``geoplant_qgis.convert`` (``malpolon.build``: the MME with
11,255 species and random weights, exported and verified against torch; needs PyTorch) and
kept in ``--workdir`` (default /tmp/geoplant-bench-mme/) with the branch models and the
generated inputs: a Landsat cube stack (504 bands with their card names, EPSG:3035), a
CHELSA-like monthly climate stack (912 bands, EPSG:4326, 30 arc-seconds) and a 4-band
Sentinel-2 mosaic (uint16 reflectance, 10 m, EPSG:3035). Every measurement runs in a fresh
process; its peak RSS comes from ``os.wait4``. See bench/README.md for the numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: the bench grid's lower-left corner (EPSG:3035, south of France) and cell size
ORIGIN = (3_800_000.0, 2_300_000.0)
CELL = 1000.0
#: Landsat pixels: 90 m instead of Ecodatacube's 30 m, to keep the 504-band stack small
LANDSAT_PIXEL = 90.0
S2_PIXEL = 10.0
MARGIN = 2000.0  # metres of data around the grid (a 128 px patch reaches 640 m out)


def extent(side: int) -> tuple[float, float, float, float]:
    x0, y0 = ORIGIN
    return (x0, y0, x0 + side * CELL, y0 + side * CELL)


# --- data and models (made once) -------------------------------------------------------


def _smooth(shape, rng, scale, offset):
    """Smooth fields (a few sines) plus a little noise: compresses well, varies per cell."""
    bands, h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.empty(shape, np.float32)
    for b in range(bands):
        fx, fy, ph = rng.uniform(0.5, 3.0), rng.uniform(0.5, 3.0), rng.uniform(0, 6.3)
        out[b] = np.sin(xx / w * fx * 6.3 + ph) * np.cos(yy / h * fy * 6.3) * scale + offset
    return out


def _write(path: Path, data: np.ndarray, profile: dict, names) -> None:
    """``data`` as the GeoTIFF ``path`` with its band descriptions, written under a temporary name."""
    import rasterio

    part = path.with_suffix(".part.tif")
    with rasterio.open(part, "w", **profile) as dst:
        dst.write(data)
        for i, name in enumerate(names, 1):
            dst.set_band_description(i, name)
    os.replace(part, path)


def make_data(workdir: Path, side: int) -> list[str]:
    from rasterio.transform import from_origin

    from geoplant_qgis.convert import presets

    paths = []
    rng = np.random.default_rng(0)
    xmin, ymin, xmax, ymax = extent(side)
    x0, y0, x1, y1 = xmin - MARGIN, ymin - MARGIN, xmax + MARGIN, ymax + MARGIN
    glc = presets.PRESETS["glc25"]
    landsat, bioclim = (next(x for x in glc.inputs if x.name == n) for n in ("landsat", "bioclim"))

    path = workdir / f"landsat_{side}.tif"
    if not path.exists():
        w, h = int((x1 - x0) / LANDSAT_PIXEL), int((y1 - y0) / LANDSAT_PIXEL)
        names = landsat.variables()
        data = np.clip(_smooth((len(names), h, w), rng, 40, 60), 0, 250).astype(np.uint8)
        profile = dict(driver="GTiff", width=w, height=h, count=len(names), dtype="uint8", crs="EPSG:3035")
        profile.update(transform=from_origin(x0, y1, LANDSAT_PIXEL, LANDSAT_PIXEL), compress="deflate")
        profile.update(tiled=True, interleave="band")
        _write(path, data, profile, names)
    paths.append(str(path))

    path = workdir / f"bioclim_{side}.tif"
    if not path.exists():
        from rasterio.warp import transform_bounds

        west, south, east, north = transform_bounds("EPSG:3035", "EPSG:4326", x0, y0, x1, y1)
        step = 1 / 120  # 30 arc-seconds, CHELSA's
        w, h = int((east - west) / step) + 2, int((north - south) / step) + 2
        names = bioclim.variables()
        data = _smooth((len(names), h, w), rng, 800, 3000)
        profile = dict(driver="GTiff", width=w, height=h, count=len(names), dtype="float32", crs="EPSG:4326")
        profile.update(transform=from_origin(west - step, north + step, step, step), interleave="band")
        _write(path, data, profile, names)
    paths.append(str(path))

    path = workdir / f"sentinel2_{side}.tif"
    if not path.exists():
        w, h = int((x1 - x0) / S2_PIXEL), int((y1 - y0) / S2_PIXEL)
        data = _smooth((4, h, w), rng, 1500, 2500)
        data += rng.normal(0, 200, data.shape).astype(np.float32)
        data = np.clip(data, 0, 10000).astype(np.uint16)
        profile = dict(driver="GTiff", width=w, height=h, count=4, dtype="uint16", crs="EPSG:3035")
        profile.update(transform=from_origin(x0, y1, S2_PIXEL, S2_PIXEL), compress="deflate", tiled=True)
        _write(path, data, profile, presets.S2_BANDS)
    paths.append(str(path))
    return paths


def export_models(workdir: Path, preset: str) -> None:
    """The MME (random weights, 11,255 species) as a geoplant-onnx model, and its branches."""
    import torch

    from geoplant_qgis.convert import malpolon as mme
    from geoplant_qgis.convert import presets
    from geoplant_qgis.convert.api import export

    torch.manual_seed(0)
    model, backend = mme.build(mme.NUM_CLASSES)
    model.eval()
    path = workdir / f"mme-{preset}.onnx"
    if not path.exists():
        print(f"exporting {path} ({backend})", flush=True)
        export(model, presets.card(preset), path, log=lambda m: print("  " + m, flush=True))
    size = next(x for x in presets.PRESETS[preset].inputs if x.kind == "patch").size
    branches = {
        "landsat": (
            torch.nn.Sequential(model.landsat_norm, model.landsat_model, model.ln1),
            (6, 4, 21),
        ),
        "bioclim": (
            torch.nn.Sequential(model.bioclim_norm, model.bioclim_model, model.ln2),
            (4, 19, 12),
        ),
        "sentinel": (model.sentinel_model, (4, size, size)),
        "head": (torch.nn.Sequential(model.fc1, model.fc2, torch.nn.Sigmoid()), (2768,)),
    }
    for name, (module, shape) in branches.items():
        out = workdir / f"branch-{preset}-{name}.onnx"
        if out.exists():
            continue
        module.eval()
        with torch.no_grad():
            torch.onnx.export(
                module,
                (torch.randn(2, *shape),),
                str(out),
                input_names=["x"],
                output_names=["y"],
                dynamic_axes={"x": {0: "N"}, "y": {0: "N"}},
                opset_version=17,
                do_constant_folding=True,
                dynamo=False,
            )


# --- the measurements (each in its own process) ----------------------------------------


def engine_batch(model_path: str) -> int:
    """The micro-batch the engine's Pipeline uses for this model (same rule)."""
    from geoplant_qgis.core.modelcard import read_model_card
    from geoplant_qgis.core.predict.inference import MICRO_BATCH, MICRO_BATCH_BYTES

    card = read_model_card(model_path)
    row_bytes = sum(4 * int(np.prod(s.tensor_shape(1))) for s in card.inputs) + 4 * len(card.species)
    return max(16, min(MICRO_BATCH, MICRO_BATCH_BYTES // row_bytes))


def timed_sessions(model_path: str, feeds: dict[str, np.ndarray], batch: int, workers: int) -> float:
    """Seconds to run every row of ``feeds`` through ``workers`` single-threaded sessions
    (the engine's layout) in micro-batches of ``batch``, after one warm-up batch each."""
    from geoplant_qgis.core.predict.model import session

    sessions = [session(model_path, 1) for _ in range(workers)]
    n = len(next(iter(feeds.values())))
    pieces = [(s, min(s + batch, n)) for s in range(0, n, batch)]
    for sess in sessions:
        sess.run(None, {k: v[:batch] for k, v in feeds.items()})

    def work(i):
        for j in range(i, len(pieces), workers):
            a, b = pieces[j]
            sessions[i].run(None, {k: v[a:b] for k, v in feeds.items()})

    start = time.perf_counter()
    threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.perf_counter() - start


def run_case(case: str, preset: str, workdir: Path, side: int) -> dict:
    from geoplant_qgis.core.predict.model import workers

    model = str(workdir / f"mme-{preset}.onnx")
    n_workers = workers(None)[0]
    cells = side * side
    if case == "predict":
        from geoplant_qgis.core import engine
        from geoplant_qgis.core.progress import Progress

        messages: list[str] = []

        class Log(Progress):
            def info(self, message):
                messages.append(message)

            def warning(self, message):
                messages.append("warning: " + message)

        rasters = make_data(workdir, side)
        out = workdir / "out"
        out.mkdir(exist_ok=True)
        start = time.perf_counter()
        result = engine.predict(
            model,
            rasters,
            extent=extent(side),
            extent_crs="EPSG:3035",
            cell_size=CELL,
            top_k=25,
            output_richness=str(out / f"{preset}_richness.tif"),
            output_topk=str(out / f"{preset}_top25.tif"),
            progress=Log(),
            device="cpu",
        )
        wall = time.perf_counter() - start
        log = [m for m in messages if m.startswith(("Execution", "Inference", "warning"))]
        return {"seconds": result.seconds, "wall": wall, "cells": result.cells, "log": log}
    if case == "ort":
        from geoplant_qgis.core.modelcard import read_model_card

        card = read_model_card(model)
        rng = np.random.default_rng(0)
        feeds = {s.name: rng.standard_normal(s.tensor_shape(cells)).astype(np.float32) for s in card.inputs}
        batch = engine_batch(model)
        seconds = timed_sessions(model, feeds, batch, n_workers)
        return {"seconds": seconds, "cells": cells, "batch": batch, "workers": n_workers}
    if case == "branches":
        from geoplant_qgis.convert import presets  # needs no torch

        size = next(x for x in presets.PRESETS[preset].inputs if x.kind == "patch").size
        shapes = {"landsat": (6, 4, 21), "bioclim": (4, 19, 12), "sentinel": (4, size, size), "head": (2768,)}
        rng = np.random.default_rng(0)
        batch = engine_batch(model)
        out = {}
        for name, shape in shapes.items():
            x = rng.standard_normal((cells, *shape)).astype(np.float32)
            path = str(workdir / f"branch-{preset}-{name}.onnx")
            out[name] = timed_sessions(path, {"x": x}, batch, n_workers)
        return {"seconds": out, "cells": cells, "batch": batch}
    raise SystemExit(f"unknown case {case}")


def in_child(case: str, preset: str, workdir: Path, side: int) -> dict:
    """``run_case`` in a fresh process; its JSON and peak RSS (MB, from os.wait4)."""
    command = [sys.executable, __file__, "--child", case, "--presets", preset, "--workdir", str(workdir),
               "--side", str(side)]  # fmt: skip
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    text = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise SystemExit(f"{case} {preset} failed ({proc.returncode}):\n{text}")
    result = json.loads(text.strip().splitlines()[-1])
    result["peak_rss_mb"] = usage.ru_maxrss / 1024
    return result


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", default="/tmp/geoplant-bench-mme")
    parser.add_argument("--side", type=int, default=20, help="grid cells per side (1 km cells)")
    parser.add_argument("--presets", default="glc25,glc24")
    parser.add_argument("--json", help="write the numbers to this file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    presets_wanted = [p.strip() for p in args.presets.split(",") if p.strip()]
    if args.child:
        print(json.dumps(run_case(args.child, presets_wanted[0], workdir, args.side)))
        return 0
    load_before = os.getloadavg()[0]
    start = time.perf_counter()
    for preset in presets_wanted:
        export_models(workdir, preset)
    make_data(workdir, args.side)
    print(f"models and data ready in {time.perf_counter() - start:.0f} s ({workdir})", flush=True)
    numbers: dict = {"load_before": load_before, "side": args.side, "presets": {}}
    for preset in presets_wanted:
        row = {case: in_child(case, preset, workdir, args.side) for case in ("ort", "branches", "predict")}
        numbers["presets"][preset] = row
        cells = row["predict"]["cells"]
        ort, core = row["ort"]["seconds"], row["predict"]["seconds"]
        branches = row["branches"]["seconds"]
        total = sum(branches.values())
        batch, n_workers = row["ort"]["batch"], row["ort"]["workers"]
        print(f"\n{preset}: {cells} cells ({args.side} x {args.side} at 1 km), "
              f"micro-batch {batch}, {n_workers} session(s) x 1 thread")  # fmt: skip
        for label, seconds, rss in (
            ("onnxruntime alone", ort, row["ort"]["peak_rss_mb"]),
            ("core.engine.predict", core, row["predict"]["peak_rss_mb"]),
        ):
            print(f"  {label:20s} {seconds:7.2f} s {cells / seconds:8.1f} cells/s  peak RSS {rss:6.0f} MB")
        print(f"  efficiency (onnxruntime alone / engine) {ort / core:.2f}")
        print("  branches (each alone, same rows): " + ", ".join(
            f"{k} {v:.2f} s ({100 * v / total:.0f}%)" for k, v in branches.items()))  # fmt: skip
        for line in row["predict"]["log"]:
            print("  log: " + line)
    numbers["load_after"] = os.getloadavg()[0]
    print(f"\nload average (1 min) before {load_before:.2f}, after {numbers['load_after']:.2f}; "
          f"{os.cpu_count()} cores")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps(numbers, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
