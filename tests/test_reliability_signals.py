"""SIGTERM and SIGKILL through the real qgis_process: files that were there stay byte for byte,
nothing is left behind, and the temporaries of a killed run are removed by the next one."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from filestate import own_temporaries, snapshot
from make_world import write_tif
from rasterio.transform import from_origin
from support import QGIS_PROCESS, headless_env, install_into
from tiny_models import save_linear_point_model

pytestmark = [pytest.mark.qgis_process, pytest.mark.slow]

#: 4,000 x 4,000 cells: long enough (several seconds) to be stopped mid-run
BIG_EXTENT = "3700000,3800000,2600000,2700000 [EPSG:3035]"


@pytest.fixture(scope="module")
def profile(tmp_path_factory):
    root = tmp_path_factory.mktemp("profile-root")
    install_into(root, with_dependencies=True)
    return root


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    rng = np.random.default_rng(0)
    transform = from_origin(3700000, 2700000, 1000, 1000)
    bio = write_tif(
        folder / "bio.tif", rng.normal(size=(2, 100, 100)).astype("float32"), transform, "EPSG:3035",
        descriptions=("Bio1", "Bio12"),
    )  # fmt: skip
    s2 = write_tif(
        folder / "s2.tif", rng.integers(0, 3000, size=(4, 1000, 1000)).astype("int16"),
        from_origin(3700000, 2700000, 10, 10), "EPSG:3035", descriptions=("red", "green", "blue", "nir"),
    )  # fmt: skip
    return {"model": save_linear_point_model(folder / "m.onnx"), "bio": bio, "s2": s2}


def start(profile, *args) -> subprocess.Popen:
    return subprocess.Popen(
        [QGIS_PROCESS, "run", *args],
        env=headless_env(profile),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_temporaries(folder: Path, process: subprocess.Popen, seconds=60.0) -> None:
    """Until the run has written part of its outputs (a temporary exists)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if own_temporaries(folder):
            time.sleep(0.5)
            return
        if process.poll() is not None:
            pytest.fail("the run ended before it could be stopped: " + process.communicate()[1])
        time.sleep(0.1)
    pytest.fail("no temporary file appeared")


def predict_args(inputs, out: Path, extent=BIG_EXTENT, cell_size=25):
    return [
        "geoplant:predict", "--", f"MODEL={inputs['model']}", f"RASTERS={inputs['bio']}", f"EXTENT={extent}",
        f"CELL_SIZE={cell_size}", "TOP_K=2", f"OUTPUT_RICHNESS={out / 'richness.tif'}",
        f"OUTPUT_TOPK={out / 'top.tif'}",
    ]  # fmt: skip


def user_folder(path: Path) -> Path:
    """An output folder that already holds the user's files under the output names."""
    path.mkdir()
    (path / "richness.tif").write_bytes(b"the user's richness map")
    (path / "top.tif.aux.xml").write_bytes(b"<PAMDataset/>")
    (path / "notes.txt").write_text("mine")
    (path / "CD").mkdir()
    return path


def test_sigterm_mid_predict_leaves_everything_as_it_was(profile, inputs, tmp_path):
    out = user_folder(tmp_path / "out")
    before = snapshot(out)
    run = start(profile, *predict_args(inputs, out))
    wait_for_temporaries(out, run)
    run.send_signal(signal.SIGTERM)
    stdout, stderr = run.communicate(timeout=60)
    assert run.returncode != 0
    assert "Stopped by SIGTERM" in stdout + stderr
    assert "Traceback" not in stdout + stderr
    assert snapshot(out) == before


def test_sigterm_mid_extractpatches_leaves_everything_as_it_was(profile, inputs, tmp_path):
    out = user_folder(tmp_path / "patches")
    before = snapshot(out)
    run = start(
        profile, "geoplant:extractpatches", "--", f"RASTER={inputs['s2']}",
        "EXTENT=3700000,3710000,2690000,2700000 [EPSG:3035]", "CELL_SIZE=50", "SIZE=16",
        f"OUTPUT_FOLDER={out}",
    )  # fmt: skip
    wait_for_temporaries(out, run)
    run.send_signal(signal.SIGTERM)
    stdout, stderr = run.communicate(timeout=60)
    assert run.returncode != 0 and "Stopped by SIGTERM" in stdout + stderr
    assert "Traceback" not in stdout + stderr
    assert snapshot(out) == before


def test_the_temporaries_of_a_killed_run_are_removed_by_the_next_run(profile, inputs, tmp_path):
    out = user_folder(tmp_path / "out")
    run = start(profile, *predict_args(inputs, out))
    wait_for_temporaries(out, run)
    run.send_signal(signal.SIGKILL)
    run.communicate(timeout=60)
    left = own_temporaries(out)
    assert left  # SIGKILL cannot be caught: this is what the next run cleans
    small = "3700000,3702000,2698000,2700000 [EPSG:3035]"
    done = subprocess.run(
        [QGIS_PROCESS, "run", *predict_args(inputs, out, extent=small, cell_size=100)],
        env=headless_env(profile),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert own_temporaries(out) == []
    assert (out / "notes.txt").read_text() == "mine" and (out / "CD").is_dir()
    import rasterio

    with rasterio.open(out / "richness.tif") as ds:
        assert ds.shape == (20, 20)
    assert os.path.exists(out / "top.tif")
