"""The real QGIS desktop under Xvfb, with the plugin installed: the dock as a planner meets it.

A rectangle drawn on a map in EPSG:4326, a run, "What grows here?" with its marker, a larger
run timed against the estimate, a cancel, a project saved and reopened. The screenshots land
in test-artifacts/ (desktop-dock.png, desktop-drawn.png, desktop-results.png,
desktop-identify.png, desktop-cancel.png, desktop-reopen.png) for a person to look at; the
estimate and the real time of the timed run go to test-artifacts/desktop-report.json.
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
    names = ["desktop-drawn.png", "desktop-identify.png", "desktop-cancel.png", "desktop-reopen.png"]
    for path in (shot, result_shot, *(ARTIFACTS / n for n in names)):
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
        GEOPLANT_DESKTOP_ARTIFACTS=str(ARTIFACTS),
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
        timeout=500,
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
    (ARTIFACTS / "desktop-report.json").write_text(json.dumps(seen, indent=1))
    assert "finished" in seen["run_message"], seen["run_message"]
    assert seen["result_saved"] and result_shot.exists()
    for name in names:
        assert (ARTIFACTS / name).exists(), name
    # the inputs table shows the layer and band, not one letter
    assert seen["choices"]["Bio1"].startswith("bio1, Band 1"), seen["choices"]
    assert seen["choices"]["Bio12"].startswith("bio12, Band 1"), seen["choices"]
    assert seen["layer_column_width"] >= 100
    # the draw button clicked twice: still on; a rectangle in EPSG:4326 is an area, with its size
    assert seen["tool_on_after_second_click"]
    assert seen["area_crs"] == "EPSG:4326" and seen["area_is_polygon_in_request"]
    assert "km²" in seen["area_text"] or " ha" in seen["area_text"], seen["area_text"]
    # What grows here?: the outputs answer, with a probability for every species, a marker
    assert seen["identify_run"] == "drawn" and seen["identify_markers"] == 1 and seen["identify_marker_shown"]
    assert seen["identify_species"] and all(p is not None for _, _, p in seen["identify_species"])
    assert "species\nFrom the outputs of run drawn" in seen["identify_text"]
    assert seen["copied"].startswith("x\ty\tcrs\tsource")
    # the estimate within 2x of the real run; progress figures while it ran
    timing = seen["calibration_timing"]
    assert timing and timing["cells"] == seen["calibration_cells"], seen
    ratio = seen["calibration_estimate"] / timing["real"]
    assert 0.5 <= ratio <= 2.0, (seen["calibration_estimate"], timing)
    assert any("cells/s" in text for text in seen["progress_texts"]), seen["progress_texts"]
    # cancel: said once, as cancelled; never "Task failed"
    assert "cancelled" in seen["cancel_message"].lower()
    bars = [text for texts in seen["cancel_bar"] for text in texts]
    assert not any("Task failed" in text for text in bars), bars
    assert all(len([t for t in texts if "cancel" in t.lower()]) <= 1 for texts in seen["cancel_bar"]), bars
    # reopened: no "Finished in" from before, the ticked species kept, the layers answer
    assert seen["project_read"] and "Finished" not in seen["after_reopen_time_text"]
    assert seen["after_reopen_species"] == seen["species_before"] != []
    assert seen["after_reopen_identify_run"] in ("drawn", "timed")
