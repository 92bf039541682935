"""Reading a cube of 1,416 elements per block: one file per element (a folder), one VRT
over them (core.stacks), or one 1,416-band GeoTIFF. ``python bench/cube_sources.py``.

Each layout is read by core.sampling.PointSampler for blocks of 32,768 cells (the engine's
default block) of a 1 km grid (EPSG:3035) on 30 arc-second rasters in EPSG:4326 (CHELSA)."""

from __future__ import annotations

import os
import sys
import tempfile
import time

import numpy as np
import rasterio
from pyproj import Transformer
from rasterio.transform import from_origin

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from geoplant_qgis.core.sampling import PointSampler  # noqa: E402
from geoplant_qgis.core.sources import BandRef, find_bands  # noqa: E402
from geoplant_qgis.core.stacks import stack_xml  # noqa: E402

N = int(os.environ.get("CUBE_ELEMENTS", 1416))
SIZE = 400  # pixels per side of each raster (30", ~3.3 degrees)
CELLS = 181  # 181 x 181 = 32,761 cells of 1 km: one block


def main():
    root = tempfile.mkdtemp(prefix="geoplant-cube-bench-")
    t = from_origin(2.0, 46.0, 1 / 120, 1 / 120)
    rng = np.random.default_rng(0)
    names = [f"v{i:04d}" for i in range(N)]
    folder = os.path.join(root, "folder")
    os.mkdir(folder)
    profile = dict(driver="GTiff", width=SIZE, height=SIZE, dtype="float32", crs="EPSG:4326", transform=t,
                   tiled=True, blockxsize=256, blockysize=256)  # fmt: skip
    data = rng.uniform(0, 100, (SIZE, SIZE)).astype(np.float32)
    t0 = time.perf_counter()
    for n in names:
        with rasterio.open(os.path.join(folder, n + ".tif"), "w", count=1, **profile) as dst:
            dst.write(data, 1)
    print(f"wrote {N} files in {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    refs_folder = find_bands(names, [folder])
    print(f"variable resolution over the folder (opens every file once): {time.perf_counter() - t0:.2f} s")
    vrt = os.path.join(root, "stack.vrt")
    with open(vrt, "w") as f:
        f.write(stack_xml(names, [refs_folder[n] for n in names]))
    stack = os.path.join(root, "stack.tif")
    with rasterio.open(stack, "w", count=N, interleave="pixel", **profile) as dst:
        for i in range(N):
            dst.write(data, i + 1)
    to = Transformer.from_crs("EPSG:4326", "EPSG:3035", always_xy=True)
    x0, y0 = to.transform(2.5, 45.5)
    xs, ys = np.meshgrid(x0 + (np.arange(CELLS) + 0.5) * 1000, y0 - (np.arange(CELLS) + 0.5) * 1000)
    xs, ys = xs.ravel(), ys.ravel()
    layouts = {
        "folder (1 file per element)": [refs_folder[n] for n in names],
        "VRT over the files": [BandRef(vrt, i + 1) for i in range(N)],
        "one multi-band GeoTIFF": [BandRef(stack, i + 1) for i in range(N)],
    }
    for label, refs in layouts.items():
        t0 = time.perf_counter()
        sampler = PointSampler(refs, "EPSG:3035")
        opened = time.perf_counter() - t0
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            values = sampler.sample(xs, ys)
            times.append(time.perf_counter() - t0)
        sampler.close()
        assert values.shape == (xs.size, N) and np.isfinite(values).mean() > 0.9
        print(f"{label}: open {opened:.2f} s; per block of {xs.size:,} cells {min(times):.2f} s "
              f"(best of 3; {xs.size / min(times):,.0f} cells/s)")  # fmt: skip


if __name__ == "__main__":
    main()
