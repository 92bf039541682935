"""core.files and core.signals: temporaries recognisable and cleaned, outputs published together,
outputs that are inputs refused, termination signals as cancellation (also through qgis_process)."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest
from filestate import snapshot

from geoplant_qgis.core import files, signals
from geoplant_qgis.core.errors import CancelledError, OutputError
from geoplant_qgis.core.progress import Progress

pytestmark = pytest.mark.core


# -- temporary names and stale ones ----------------------------------------------------------


def test_temporary_names_keep_the_extension_and_say_whose_they_are(tmp_path):
    tmp = files.temporary_sibling(tmp_path / "richness.tif")
    name = os.path.basename(tmp)
    assert name.startswith(".richness.geoplant-") and name.endswith(".part.tif")
    assert f"-{os.getpid()}-" in name
    assert files.is_own_temporary(name) and files.is_own_temporary(name + ".aux.xml")
    for other in ("richness.tif", ".richness.part-1234abcd.tif", ".x.geoplant-h-12-nothex!.part.tif"):
        assert not files.is_own_temporary(other)


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_remove_stale_removes_only_dead_runs_of_this_host(tmp_path):
    host = files._host()
    dead = dead_pid()
    stale = tmp_path / f".out.geoplant-{host}-{dead}-0123abcd.part.tif"
    stale_aux = tmp_path / f".out.geoplant-{host}-{dead}-0123abcd.part.tif.aux.xml"
    alive = tmp_path / f".out.geoplant-{host}-{os.getpid()}-0123abcd.part.tif"
    other_host = tmp_path / f".out.geoplant-otherhost-{dead}-0123abcd.part.tif"
    users = [tmp_path / "out.tif", tmp_path / ".out.part.tif", tmp_path / ".hidden"]
    for path in (stale, stale_aux, alive, other_host, *users):
        path.write_bytes(b"data")
    removed = files.remove_stale(tmp_path)
    assert sorted(removed) == sorted([str(stale), str(stale_aux)])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (alive, other_host, *users))


def test_remove_stale_after_a_power_cut_uses_the_boot_time(tmp_path, monkeypatch):
    old = tmp_path / f".out.geoplant-{files._host()}-{os.getppid()}-0123abcd.part.tif"  # a live pid
    old.write_bytes(b"x")
    os.utime(old, (1000, 1000))  # written before the machine started
    assert files.remove_stale(tmp_path) == [str(old)]


def test_a_stale_backup_is_put_back_never_deleted(tmp_path):
    dead = dead_pid()
    backup = tmp_path / f".map.geoplant-{files._host()}-{dead}-0123abcd.backup.tif"
    backup.write_bytes(b"the user's map")
    files.remove_stale(tmp_path)
    assert (tmp_path / "map.tif").read_bytes() == b"the user's map" and not backup.exists()
    # when the name is taken (the new file was published), the backup stays for the user
    backup.write_bytes(b"older")
    files.remove_stale(tmp_path)
    assert backup.read_bytes() == b"older" and (tmp_path / "map.tif").read_bytes() == b"the user's map"


# -- Publication and publish_together ----------------------------------------------------------


def test_publication_discard_removes_only_what_the_run_created(tmp_path):
    (tmp_path / "kept").mkdir()  # a pre-existing empty folder
    (tmp_path / "a.txt").write_text("old a")
    before = snapshot(tmp_path)
    with pytest.raises(RuntimeError), files.Publication() as run:
        run.write_text(run.temporary(tmp_path / "a.txt"), "new a")
        run.write_text(run.temporary(tmp_path / "new" / "deep" / "b.txt"), "b")
        run.write_text(run.temporary(tmp_path / "kept" / "c.txt"), "c")
        raise RuntimeError("failed mid-run")
    assert snapshot(tmp_path) == before


def test_publication_publishes_all_outputs_and_replaces_sidecars_of_the_old_raster(tmp_path):
    (tmp_path / "map.tif").write_bytes(b"old")
    (tmp_path / "map.tif.aux.xml").write_bytes(b"old stats")
    with files.Publication() as run:
        run.write_text(run.temporary(tmp_path / "map.tif"), "new")
        run.write_text(run.temporary(tmp_path / "sub" / "t.csv"), "t")
        run.publish()
    assert snapshot(tmp_path) == {
        "map.tif": hashlib.sha256(b"new").hexdigest(),
        "sub": "dir",
        "sub/t.csv": hashlib.sha256(b"t").hexdigest(),
    }


@pytest.mark.parametrize("failing", [1, 2, 3])
def test_a_rename_failing_mid_publish_restores_every_previous_file(tmp_path, monkeypatch, failing):
    for name in ("a.tif", "a.tif.aux.xml", "b.csv"):
        (tmp_path / name).write_text(f"old {name}")
    before = snapshot(tmp_path)
    real = os.replace
    calls = {"n": 0}

    def flaky(src, dst):
        calls["n"] += 1
        if calls["n"] == failing + 2:  # after some moves and backups
            raise PermissionError(13, "Permission denied")
        return real(src, dst)

    with files.Publication() as run:
        run.write_text(run.temporary(tmp_path / "a.tif"), "new a")
        run.write_text(run.temporary(tmp_path / "b.csv"), "new b")
        run.write_text(run.temporary(tmp_path / "c.csv"), "new c")
        monkeypatch.setattr(os, "replace", flaky)
        with pytest.raises(OutputError, match="Nothing was published"):
            run.publish()
        monkeypatch.setattr(os, "replace", real)
    assert snapshot(tmp_path) == before


def test_one_file_for_two_outputs_is_refused(tmp_path):
    with files.Publication() as run, pytest.raises(OutputError, match="two outputs"):
        run.temporary(tmp_path / "x.csv")
        run.temporary(tmp_path / "sub" / ".." / "x.csv")


def test_a_failed_write_names_the_output_not_the_hidden_temporary(tmp_path):
    final = tmp_path / "table.csv"
    with files.Publication() as run:
        tmp = run.temporary(final)
        os.mkdir(tmp)  # the write fails
        with pytest.raises(OutputError) as caught:
            run.write_text(tmp, "x")
        os.rmdir(tmp)
    assert str(caught.value).startswith(f"Cannot write {final}: ")
    assert os.path.basename(tmp) not in str(caught.value) and snapshot(tmp_path) == {}


READ_ONLY_RUN = """
import sys
root, base = sys.argv[1], sys.argv[2]
sys.path[:0] = [root, root + "/tests", root + "/tools"]
import numpy as np
from rasterio.transform import from_origin
from make_world import write_tif
from tiny_models import save_linear_point_model
from geoplant_qgis.core import files
from geoplant_qgis.core.engine import predict
from geoplant_qgis.core.extract import GridArea, sample_environment
from geoplant_qgis.core.errors import GeoPlantError

model = save_linear_point_model(base + "/in/m.onnx")
bio = write_tif(base + "/in/bio.tif", np.ones((2, 10, 10), "float32"),
                from_origin(3700000, 2701000, 100, 100), "EPSG:3035", descriptions=("Bio1", "Bio12"))
extent = (3700000, 2700000, 3701000, 2701000)
calls = [
    lambda: files.write_text(base + "/ro/x.csv", "x"),
    lambda: predict(model, [bio], extent=extent, extent_crs="EPSG:3035", cell_size=100,
                    output_richness=base + "/ro/r.tif"),
    lambda: sample_environment(base + "/ro/env.csv", [bio],
                               grid=GridArea("EPSG:3035", 100, extent, "EPSG:3035")),
]
for call in calls:
    try:
        call()
        print("WROTE")
    except GeoPlantError as error:
        print(error)
"""


def test_a_read_only_folder_is_refused_in_words():
    """As a user who may not write there (root writes everywhere: the runs go as nobody)."""
    import shutil
    import sys
    import tempfile

    base = tempfile.mkdtemp()
    try:
        os.chmod(base, 0o755)
        os.mkdir(os.path.join(base, "in"))
        os.chmod(os.path.join(base, "in"), 0o777)
        folder = os.path.join(base, "ro")
        os.mkdir(folder)
        os.chmod(folder, 0o555)
        root = str(Path(__file__).resolve().parents[1])
        as_nobody = (lambda: (os.setgid(65534), os.setuid(65534))) if os.geteuid() == 0 else None
        env = {**os.environ, "HOME": base, "XDG_CACHE_HOME": base + "/in"}
        done = subprocess.run(
            [sys.executable, "-c", READ_ONLY_RUN, root, base],
            capture_output=True,
            text=True,
            preexec_fn=as_nobody,
            env=env,
            timeout=120,
        )
        lines = done.stdout.splitlines()
        assert len(lines) == 3 and "Traceback" not in done.stderr, done.stdout + done.stderr
        for line in lines:
            assert f"Cannot write in the folder {folder}: permission denied" in line, line
        assert os.listdir(folder) == []
    finally:
        shutil.rmtree(base, ignore_errors=True)


# -- outputs that are inputs ----------------------------------------------------------------


def test_outputs_that_are_inputs_are_refused_whatever_the_spelling(tmp_path):
    raster = tmp_path / "bio1.tif"
    raster.write_bytes(b"raster")
    (tmp_path / "bio1.tif.aux.xml").write_bytes(b"stats")
    (tmp_path / "sub").mkdir()
    os.symlink(raster, tmp_path / "link.tif")
    os.link(raster, tmp_path / "hard.tif")
    inputs = {"RASTERS": [str(raster)], "MODEL": str(tmp_path / "m.onnx")}
    for spelling in (
        raster,
        tmp_path / "sub" / ".." / "bio1.tif",
        tmp_path / "link.tif",
        tmp_path / "hard.tif",
        f"{tmp_path}/./bio1.tif",
    ):
        with pytest.raises(OutputError, match="OUTPUT_RICHNESS .* is the same file as RASTERS"):
            files.check_outputs({"OUTPUT_RICHNESS": [spelling]}, inputs)
    # an output's sidecar that is an input's sidecar, or an input's sidecar as an output
    with pytest.raises(OutputError, match="sidecar"):
        files.check_outputs({"OUTPUT_TOPK": [tmp_path / "x.tif", raster]}, inputs)
    with pytest.raises(OutputError, match="RASTERS \\(its sidecar\\)"):
        files.check_outputs({"OUTPUT_TABLE": [tmp_path / "bio1.tif.aux.xml"]}, inputs)
    # two outputs on one file, even before it exists
    with pytest.raises(OutputError, match="OUTPUT_REPORT .* is the same file as OUTPUT_TABLE"):
        files.check_outputs({"OUTPUT_TABLE": [tmp_path / "r.html"], "OUTPUT_REPORT": [tmp_path / "r.html"]})
    files.check_outputs({"OUTPUT_RICHNESS": [tmp_path / "richness.tif"]}, inputs)  # fine
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "bio1.tif",
        "bio1.tif.aux.xml",
        "hard.tif",
        "link.tif",
        "sub",
    ]


def test_dataset_names_point_to_their_files(tmp_path):
    gpkg = tmp_path / "p.gpkg"
    gpkg.write_bytes(b"x")
    assert files.dataset_file(f"{gpkg}|layername=points") == str(gpkg)
    assert files.dataset_file(f"GPKG:{gpkg}:rasters") == str(gpkg)
    assert files.dataset_file(f"/vsizip/{tmp_path}/a.zip/b.tif") == str(tmp_path / "a.zip")
    assert files.dataset_file("/vsicurl/https://example.org/a.tif") is None
    with pytest.raises(OutputError):
        files.check_outputs({"OUTPUT": [gpkg]}, {"POINTS": f"{gpkg}|layername=points"})


# -- termination signals ---------------------------------------------------------------------


class Looping(Progress):
    """A run that checks for cancellation until told to stop."""


def test_sigterm_inside_the_block_is_a_cancellation_and_outside_it_is_not_caught():
    progress = Looping()
    with signals.cancel_on_signals():
        threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGTERM)).start()
        with pytest.raises(CancelledError, match="SIGTERM"):
            for _ in range(200):
                progress.check_cancelled()
                time.sleep(0.02)
    assert signals.requested() is None
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    progress.check_cancelled()  # no longer cancelled


def test_sigterm_calls_the_callback_once():
    called = []
    with signals.cancel_on_signals(lambda: called.append(1)):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        assert signals.requested() == "SIGTERM"
    assert called == [1]
