"""A short `make demo` (tools/demo.py --quick): world -> qgis_process predict/evaluate -> maps -> score."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import rasterio
from support import QGIS_PROCESS, ROOT

pytestmark = [pytest.mark.qgis_process, pytest.mark.slow]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    if not os.path.exists(QGIS_PROCESS):
        pytest.skip("qgis_process is not installed")
    out = tmp_path_factory.mktemp("demo")
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "demo.py"), "--quick", "--output", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads((out / "summary.json").read_text())
    printed = json.loads(proc.stdout[proc.stdout.index("{") :])
    assert printed["f1_at_25_model"] == summary["f1_at_25_model"]
    return out, summary


def test_summary_meets_the_targets(demo):
    out, s = demo
    assert s["cells"] == 3600 and s["valid_cells"] == 3600  # 6 km x 6 km at 100 m
    # "seconds" is rounded to 0.01 s: the rate must give it back to within that rounding
    assert s["cells"] / s["cells_per_second"] == pytest.approx(s["seconds"], abs=0.005 + 1e-9)
    assert s["test_surveys"] > 500
    assert s["f1_at_25_model"] >= 1.3 * s["f1_at_25_naive_baseline"]
    assert s["richness_pearson"] >= 0.8
    assert s["targets_met"] is True
    # F1 in the summary is the mean of the per-survey table evaluate wrote
    table = pd.read_csv(out / "evaluation_surveys.csv")
    assert table["f1"].mean() == pytest.approx(s["f1_at_25_model"], abs=1e-4)
    assert table["baseline_f1"].mean() == pytest.approx(s["f1_at_25_naive_baseline"], abs=1e-4)
    assert "<svg" in (out / "evaluation.html").read_text()


def test_maps_hold_the_models_values(demo):
    """Richness and top-25 cells equal the bundled model run independently at the cell centres."""
    from geoplant_qgis.core.engine import predict_points

    out, s = demo
    world = json.loads((out / "world" / "world.json").read_text())
    rasters = [str(out / "world" / p) for p in world["files"]["rasters"].values()]
    rasters.append(str(out / "world" / world["files"]["mosaic"]))
    with rasterio.open(out / "richness.tif") as r, rasterio.open(out / "top25.tif") as t:
        assert r.crs.to_epsg() == 3035 and r.res == (100.0, 100.0)
        richness = r.read(1)
        top = t.read()
        rng = np.random.default_rng(1)
        rows, cols = rng.integers(0, r.height, 12), rng.integers(0, r.width, 12)
        xs, ys = rasterio.transform.xy(r.transform, rows, cols)
    model = str(ROOT / "geoplant_qgis" / "models" / "geoplant_demo.onnx")
    probs = predict_points(model, rasters, xs, ys, "EPSG:3035")
    np.testing.assert_allclose(richness[rows, cols], probs.sum(axis=1), rtol=1e-4)
    from geoplant_qgis.core.modelcard import read_model_card

    ids = np.array([sp.id for sp in read_model_card(model).species])
    assert top.shape[0] == 25
    assert (top[0, rows, cols] == ids[probs.argmax(axis=1)]).all()
    # one run: the probability bands are the SPECIES (in that order), while richness (above)
    # and top-25 cover all the model's species
    chosen = [int(i) for i in world["files"]["true_suitability"]]
    with rasterio.open(out / "probabilities.tif") as p:
        assert p.count == len(chosen) and [d.rsplit("(", 1)[1].rstrip(")") for d in p.descriptions] == [
            str(i) for i in chosen
        ]
        bands = p.read()
    for b, sid in enumerate(chosen):
        np.testing.assert_allclose(bands[b, rows, cols], probs[:, list(ids).index(sid)], rtol=1e-4, atol=1e-6)
    assert not np.isin(top[:, rows, cols], chosen).all()
    # the one-species map is that species' probability
    shown = next(iter(world["files"]["true_suitability"]))
    with rasterio.open(out / f"probability_{shown}.tif") as p:
        one = p.read(1)
    np.testing.assert_allclose(one[rows, cols], probs[:, list(ids).index(int(shown))], rtol=1e-4, atol=1e-6)


def test_previews_are_rendered(demo, qgis_app):
    from qgis.PyQt.QtGui import QImage

    out, s = demo
    shown = next(iter(json.loads((out / "world" / "world.json").read_text())["files"]["true_suitability"]))
    for name in ("richness.png", f"species_{shown}.png"):
        image = QImage(str(out / name))
        assert not image.isNull() and image.width() > 1000
        # not blank: many distinct colours (two maps with colour ramps, legend, scale bar)
        colours = {image.pixel(x, y) for x in range(0, image.width(), 7) for y in range(0, image.height(), 7)}
        assert len(colours) > 50
    assert not list(out.glob(".*part*")) and not list(out.glob("*.part*"))
