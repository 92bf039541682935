"""The real QGIS desktop under Xvfb, with the plugin installed: open the dock, take a screenshot.

The screenshots land in test-artifacts/ (desktop-dock.png, desktop-results.png) for a person
to look at.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import numpy as np
import pytest
from make_world import write_tif
from rasterio.transform import from_origin
from support import ROOT, headless_env, install_into
from tiny_models import save_linear_point_model

pytestmark = pytest.mark.desktop
ARTIFACTS = ROOT / "test-artifacts"
SCRIPT = ROOT / "tests" / "scripts" / "desktop_dock.py"


def make_inputs(folder):
    model_path = save_linear_point_model(
        folder / "demo.onnx",
        weights=[[0.5, -1.0, 0.0, 0.3], [0.25, 0.5, -2.0, 0.1]],
        species=[
            {"id": 1361, "name": "Quercus ilex"},
            {"id": 5208, "name": "Pinus halepensis"},
            {"id": 7420, "name": "Rosmarinus officinalis"},
            {"id": 9931, "name": "Cistus albidus"},
        ],
    )
    rows, cols = np.mgrid[0:60, 0:80]
    rasters = []
    for name, values in (
        ("bio1", rows * 0.05 - cols * 0.03),
        ("bio12", np.sin(rows / 9.0) + np.cos(cols / 7.0)),
    ):
        transform = from_origin(3_760_000, 2_300_000, 100, 100)
        rasters.append(write_tif(folder / f"{name}.tif", values.astype(np.float32), transform, "EPSG:3035"))
    return str(model_path), rasters


@pytest.mark.skipif(
    shutil.which("xvfb-run") is None or shutil.which("qgis") is None, reason="needs xvfb-run, qgis"
)
def test_desktop_dock_screenshot(tmp_path):
    profile_root = tmp_path / "profiles"
    install_into(profile_root)
    model, rasters = make_inputs(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "desktop-dock.png"
    result_shot = ARTIFACTS / "desktop-results.png"
    for path in (shot, result_shot):
        path.unlink(missing_ok=True)
    report = tmp_path / "report.json"
    env = headless_env(profile_root)
    env.pop("QT_QPA_PLATFORM", None)  # the real X server of Xvfb
    env.update(
        GEOPLANT_DESKTOP_REPORT=str(report),
        GEOPLANT_DESKTOP_SCREENSHOT=str(shot),
        GEOPLANT_DESKTOP_RESULT_SCREENSHOT=str(result_shot),
        GEOPLANT_DESKTOP_MODEL=model,
        GEOPLANT_DESKTOP_RASTERS=os.pathsep.join(rasters),
        GEOPLANT_DESKTOP_OUTPUT=str(out),
    )
    done = subprocess.run(
        [
            "xvfb-run",
            "-a",
            "-s",
            "-screen 0 1600x1000x24",
            "qgis",
            "--profiles-path",
            str(profile_root),
            "--nologo",
            "--noversioncheck",
            "--code",
            str(SCRIPT),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert (
        report.exists()
    ), f"QGIS wrote no report (exit {done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    seen = json.loads(report.read_text())
    assert "error" not in seen, seen.get("error")
    assert seen["exit"] == 0, seen
    assert seen["plugin_loaded"] and seen["dock_found"] and seen["dock_visible"] and seen["action_checked"]
    assert seen["statuses"] == {"Bio1": "found", "Bio12": "found"}
    assert "Pinus" not in seen["card"] and "4 species" in seen["card"]
    assert seen["saved"] and shot.stat().st_size > 10_000
    assert seen["has_predict"], seen  # installed with onnxruntime: predict must register
    assert "finished" in seen["run_message"], seen["run_message"]
    assert seen["result_saved"] and result_shot.exists()
