"""Issue #10 for the patch trees and the vector output: a run never deletes or changes a file
it did not create.

extractpatches, loadpatches and loadobservations into a folder that already holds an earlier
run's outputs, an unrelated user file and empty folders of the user's, then cancelled at
several points, failing on a corrupt input, or failing on a rename while publishing: every
file that was there is byte-identical, nothing is added or removed (empty folders kept), no
temporary is left; a successful re-run replaces the outputs and leaves no temporary; an
output that is an input is refused before anything is written.
"""

import gc
import os
import warnings

import numpy as np
import pytest
import rasterio
from filestate import snapshot
from rasterio.transform import from_origin

from geoplant_qgis.core import files
from geoplant_qgis.core.errors import CancelledError, GeoPlantError, OutputError
from geoplant_qgis.core.files import is_own_temporary
from geoplant_qgis.core.geoplant.layout import glc25_patch_relpath, write_glc25_patch
from geoplant_qgis.core.progress import Progress

pytestmark = pytest.mark.core

X0, Y0, PX = 4_000_000.0, 3_000_000.0, 10.0  # a LAEA Europe raster, 10 m pixels
IDS = [5000108, 1322301, 212, 5, 1027998, 4401, 98765432, 300, 1200, 777, 60001, 42]


# -- helpers ---------------------------------------------------------------------------


def temporaries(root):
    return [
        os.path.join(d, n) for d, dirs, names in os.walk(root) for n in dirs + names if is_own_temporary(n)
    ]


class CancelAfter(Progress):
    """Cancelled from the (n + 1)-th check on; counts the checks."""

    def __init__(self, n=None):
        self.n, self.calls = n, 0

    def is_cancelled(self):
        self.calls += 1
        return self.n is not None and self.calls > self.n


def failing_replace(monkeypatch, n):
    """os.replace fails on its n-th call from now on (and only that one)."""
    real = os.replace
    calls = {"n": 0}

    def replace(src, dst, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == n:
            raise OSError(28, "No space left on device (test)")
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(files.os, "replace", replace)
    return calls


def add_user_files(root):
    """An unrelated user file, one inside a CD folder, and empty folders (one looking like CD/AB)."""
    (root / "notes.txt").write_text("mine")
    cd = root / glc25_patch_relpath(IDS[0]).split("/")[0]
    cd.mkdir(parents=True, exist_ok=True)
    (cd / "user.txt").write_text("mine too")
    (root / "empty").mkdir()
    (root / "99" / "77").mkdir(parents=True)
    # statistics QGIS keeps beside a patch it showed: they go with the patch when it is replaced
    (root / (glc25_patch_relpath(IDS[2]) + ".aux.xml")).write_text("<PAMDataset/>")


def cancel_points(total):
    """Cancel before the first check, after 1, 3, half and all but the last."""
    return sorted({0, 1, min(3, total - 1), total // 2, total - 1})


# -- extractpatches --------------------------------------------------------------------


@pytest.fixture
def mosaic(tmp_path):
    """A 4-band int16 raster in EPSG:3035 (red, green, blue, nir) and the points of IDS on it."""
    h = w = 400
    r, c = np.mgrid[0:h, 0:w]
    data = np.stack([(r * 7 + c * 3 + b) % 3000 for b in range(4)]).astype(np.int16)
    path = tmp_path / "inputs" / "s2.tif"
    path.parent.mkdir()
    profile = dict(
        driver="GTiff", width=w, height=h, count=4, dtype="int16", crs="EPSG:3035",
        transform=from_origin(X0, Y0, PX, PX), nodata=-1,
    )  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        for i, name in enumerate(("red", "green", "blue", "nir"), start=1):
            dst.set_band_description(i, name)
    return path


def points(shift=0.0, ids=IDS):
    from geoplant_qgis.core.extract import Points

    k = np.arange(len(ids))
    xs = X0 + 300 + 250 * (k % 6) + shift
    ys = Y0 - 300 - 900 * (k // 6) - shift
    return Points(np.array(ids), xs, ys, "EPSG:3035")


def extract(out, raster, pts, progress=None):
    from geoplant_qgis.core.extract import extract_patches

    return extract_patches(out, raster, size=16, pixel_size=10.0, points=pts, progress=progress)


@pytest.fixture
def earlier_extract(mosaic, tmp_path, monkeypatch):
    """OUTPUT_FOLDER after a successful first run, plus the user's own files and folders."""
    from geoplant_qgis.core import extract as extract_module

    monkeypatch.setattr(extract_module, "PATCH_BLOCK", 2)
    out = tmp_path / "patches"
    result = extract(out, mosaic, points())
    assert len(result.paths) == len(IDS)
    add_user_files(out)
    return out


def test_extractpatches_cancelled_anywhere_leaves_the_earlier_tree(earlier_extract, mosaic):
    out = earlier_extract
    before = snapshot(out)
    # a second run with other pixels and more ids (new CD/AB folders)
    second = points(shift=55.0, ids=[*IDS, 3456789, 11])
    counter = CancelAfter()
    extract(out / ".." / "probe", mosaic, second, progress=counter)  # how many checks a run makes
    total = counter.calls
    assert total >= 6
    for n in cancel_points(total):
        with pytest.raises(CancelledError):
            extract(out, mosaic, second, progress=CancelAfter(n))
        assert snapshot(out) == before, f"cancelled after {n} check(s)"
        assert temporaries(out) == []


@pytest.mark.parametrize("nth", [1, 2, 7, "last"])
def test_extractpatches_failed_publish_leaves_the_earlier_tree(earlier_extract, mosaic, monkeypatch, nth):
    out = earlier_extract
    before = snapshot(out)
    second = points(shift=55.0, ids=[*IDS, 3456789, 11])
    # each of the 12 existing patches: backup + rename; each new one: rename
    last = 2 * len(IDS) + 2
    failing_replace(monkeypatch, last if nth == "last" else nth)
    with pytest.raises(OutputError, match="No space left on device"):
        extract(out, mosaic, second)
    monkeypatch.undo()
    assert snapshot(out) == before
    assert temporaries(out) == []


def test_extractpatches_write_failure_midway_leaves_the_earlier_tree(earlier_extract, mosaic, monkeypatch):
    from geoplant_qgis.core.geoplant import layout

    out = earlier_extract
    before = snapshot(out)
    real, calls = layout._write_tiff, {"n": 0}

    def write(tmp, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            open(tmp, "wb").write(b"half a tiff")  # a partial temporary, then the failure
            raise OutputError("disk full (test)")
        return real(tmp, *args, **kwargs)

    monkeypatch.setattr(layout, "_write_tiff", write)
    with pytest.raises(OutputError, match="disk full"):
        extract(out, mosaic, points(shift=55.0, ids=[*IDS, 3456789]))
    assert snapshot(out) == before
    assert temporaries(out) == []


def test_extractpatches_rerun_replaces_the_patches(earlier_extract, mosaic):
    out = earlier_extract
    before = snapshot(out)
    result = extract(out, mosaic, points(shift=55.0, ids=[*IDS, 3456789]))
    after = snapshot(out)
    assert len(result.paths) == len(IDS) + 1
    assert temporaries(out) == []
    for i in IDS:  # replaced with the new pixels
        rel = glc25_patch_relpath(i)
        assert after[rel] != before[rel]
    added = set(after) - set(before)
    assert glc25_patch_relpath(3456789) in added
    assert added <= {glc25_patch_relpath(3456789), "89/67", "89"}
    assert set(before) - set(after) == {glc25_patch_relpath(IDS[2]) + ".aux.xml"}
    # the user's files and empty folders are kept
    user_file = os.path.join(glc25_patch_relpath(IDS[0]).split("/")[0], "user.txt")
    for rel in ("notes.txt", "empty", "99/77", "99", user_file):
        assert after[rel] == before[rel]


def test_extractpatches_into_a_new_folder_cancelled_removes_its_folders(mosaic, tmp_path):
    out = tmp_path / "new" / "patches"
    with pytest.raises(CancelledError):
        extract(out, mosaic, points(), progress=CancelAfter(1))  # after every patch was written
    assert not (tmp_path / "new").exists()


def test_extractpatches_refuses_a_patch_name_that_is_the_raster(earlier_extract, mosaic, tmp_path):
    out = earlier_extract
    # the raster itself placed where the patch of IDS[1] goes
    rel = glc25_patch_relpath(IDS[1])
    os.replace(out / rel, tmp_path / "old.tiff")
    os.link(mosaic, out / rel)
    before = snapshot(out)
    with pytest.raises(OutputError, match="RASTER") as refused:
        extract(out, out / rel, points())
    assert str(out / rel) in str(refused.value) and str(out) in str(refused.value)
    assert snapshot(out) == before and temporaries(out) == []
    # the same file under another name (a hard link outside the tree), and through a
    # symbolic link to the output folder
    alias = tmp_path / "alias"
    alias.symlink_to(out, target_is_directory=True)
    for raster, target in ((mosaic, out), (out / rel, alias)):
        with pytest.raises(OutputError, match="same file as RASTER|is the RASTER"):
            extract(target, raster, points())
        assert snapshot(out) == before and temporaries(out) == []


def test_extractpatches_processing_refuses_the_raster_as_a_patch(geoplant_provider, mosaic, tmp_path):
    import processing
    from pyproj import Transformer
    from qgis.core import QgsProcessingException
    from test_sampleenvironment_alg import point_layer

    out = tmp_path / "tree"
    rel = glc25_patch_relpath(5000108)
    (out / rel).parent.mkdir(parents=True)
    raster = out / rel
    os.link(mosaic, raster)
    (out / "notes.txt").write_text("mine")
    before = snapshot(out)
    lon, lat = Transformer.from_crs("EPSG:3035", "EPSG:4326", always_xy=True).transform(X0 + 500, Y0 - 500)
    with pytest.raises(QgsProcessingException, match="RASTER") as refused:
        processing.run(
            "geoplant:extractpatches",
            {"POINTS": point_layer([(lon, lat)], [5000108]), "RASTER": str(raster), "OUTPUT_FOLDER": str(out),
             "SIZE": 8},
        )  # fmt: skip
    assert str(raster) in str(refused.value)
    assert snapshot(out) == before and temporaries(out) == []


# -- loadpatches -----------------------------------------------------------------------


def make_dataset(root, ids, seed):
    """A GLC25 dataset: SatelitePatches/PA-test/CD/AB/<id>.tiff, 4 x 8 x 8 int16."""
    rng = np.random.default_rng(seed)
    base = root / "SatelitePatches" / "PA-test"
    for k, i in enumerate(ids):
        data = rng.integers(0, 3000, (4, 8, 8)).astype(np.int16)
        write_glc25_patch(base / glc25_patch_relpath(i), data, (10, 0, X0 + 100 * k, 0, -10, Y0), "EPSG:3035")
    return base


def export(dataset, out, progress=None):
    from geoplant_qgis.core.geoplant.patches import export_patches

    return export_patches(dataset, out, progress=progress)


@pytest.fixture
def earlier_export(tmp_path):
    """An export folder made by a first successful export, plus the user's files and folders;
    the dataset then changes (other pixels, more surveys)."""
    dataset = tmp_path / "dataset"
    make_dataset(dataset, IDS, seed=1)
    out = tmp_path / "export"
    result = export(dataset, out)
    assert len(result.paths) == len(IDS) and os.path.isfile(out / "patches.vrt")
    add_user_files(out)
    make_dataset(dataset, [*IDS, 3456789], seed=2)
    return dataset, out


def test_loadpatches_cancelled_anywhere_leaves_the_earlier_export(earlier_export, tmp_path):
    dataset, out = earlier_export
    before = snapshot(out)
    counter = CancelAfter()
    export(dataset, tmp_path / "probe", progress=counter)
    total = counter.calls
    assert total >= len(IDS) + 1
    for n in cancel_points(total):
        with pytest.raises(CancelledError):
            export(dataset, out, progress=CancelAfter(n))
        assert snapshot(out) == before, f"cancelled after {n} check(s)"
        assert temporaries(out) == []


@pytest.mark.parametrize("which", [0, 6, len(IDS)])
def test_loadpatches_corrupt_input_patch_leaves_the_earlier_export(earlier_export, which):
    from geoplant_qgis.core.geoplant.patches import PatchDataset

    dataset, out = earlier_export
    before = snapshot(out)
    order = list(PatchDataset(dataset).survey_ids())
    bad = dataset / "SatelitePatches" / "PA-test" / glc25_patch_relpath(order[which])
    bad.write_bytes(bad.read_bytes()[:100])  # truncated
    with pytest.raises(GeoPlantError, match=str(order[which])):
        export(dataset, out)
    assert snapshot(out) == before
    assert temporaries(out) == []


@pytest.mark.parametrize("nth", [1, 2, 9, "vrt-backup", "last"])
def test_loadpatches_failed_publish_leaves_the_earlier_export(earlier_export, monkeypatch, nth):
    dataset, out = earlier_export
    before = snapshot(out)
    last = 2 * len(IDS) + 1 + 2  # 12 replaced (backup + rename), 1 new, the VRT (backup + rename)
    failing_replace(monkeypatch, {"last": last, "vrt-backup": last - 1}.get(nth, nth))
    with pytest.raises(OutputError, match="No space left on device"):
        export(dataset, out)
    monkeypatch.undo()
    assert snapshot(out) == before
    assert temporaries(out) == []


def test_loadpatches_rerun_replaces_the_export(earlier_export):
    dataset, out = earlier_export
    before = snapshot(out)
    result = export(dataset, out)
    after = snapshot(out)
    assert temporaries(out) == []
    assert len(result.paths) == len(IDS) + 1
    for i in IDS:
        assert after[glc25_patch_relpath(i)] != before[glc25_patch_relpath(i)]
    assert set(before) - set(after) == {glc25_patch_relpath(IDS[2]) + ".aux.xml"}
    for rel in ("notes.txt", "empty", "99/77"):
        assert after[rel] == before[rel]
    # the mosaic names the final patches, not their temporaries, and reads
    text = (out / "patches.vrt").read_text()
    assert ".part" not in text and "geoplant-" not in text
    with rasterio.open(out / "patches.vrt") as vrt:
        assert vrt.count == 4 and vrt.read(1).size
        assert sorted(os.path.basename(f) for f in vrt.files if f.endswith(".tiff")) == sorted(
            f"{i}.tiff" for i in [*IDS, 3456789]
        )


def test_loadpatches_into_a_new_folder_failing_removes_its_folders(earlier_export, tmp_path):
    dataset, _ = earlier_export
    out = tmp_path / "fresh" / "export"
    with pytest.raises(CancelledError):
        export(dataset, out, progress=CancelAfter(5))
    assert not (tmp_path / "fresh").exists()


def test_loadpatches_refuses_output_inside_the_dataset(earlier_export, tmp_path):
    dataset, out = earlier_export
    before_ds, before_out = snapshot(dataset), snapshot(out)
    inside = dataset / "SatelitePatches" / "PA-test"
    with pytest.raises(OutputError, match="inside INPUT") as refused:
        export(dataset, inside)
    assert str(inside) in str(refused.value) and os.path.realpath(dataset) in str(refused.value)
    # through a symbolic link to the dataset, and through a CD folder that links into it
    (tmp_path / "link").symlink_to(dataset, target_is_directory=True)
    with pytest.raises(OutputError, match="inside INPUT"):
        export(dataset, tmp_path / "link" / "out")
    cd = glc25_patch_relpath(IDS[1]).split("/")[0]
    (out / cd).rename(tmp_path / "moved-cd")
    (out / cd).symlink_to(inside / cd, target_is_directory=True)
    before_out = snapshot(out)
    with pytest.raises(OutputError, match="inside INPUT"):
        export(dataset, out)
    assert snapshot(dataset) == before_ds and snapshot(out) == before_out
    assert temporaries(out) == [] and temporaries(dataset) == []


def test_loadpatches_processing_refuses_output_inside_input(geoplant_provider, earlier_export):
    import processing
    from qgis.core import QgsProcessingException

    dataset, _ = earlier_export
    before = snapshot(dataset)
    inside = dataset / "SatelitePatches" / "out"
    with pytest.raises(QgsProcessingException, match="inside INPUT") as refused:
        processing.run("geoplant:loadpatches", {"INPUT": str(dataset), "OUTPUT_FOLDER": str(inside)})
    assert str(inside) in str(refused.value)
    assert snapshot(dataset) == before


def test_loadpatches_closes_its_folder_scans(earlier_export, tmp_path):
    dataset, _ = earlier_export
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        export(dataset, tmp_path / "scan")
        gc.collect()
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []


# -- loadobservations ------------------------------------------------------------------

HEADER = "lon,lat,year,geoUncertaintyInM,areaInM2,region,country,speciesId,surveyId"


def observations_csv(path, surveys=60, species=1):
    rows = [HEADER]
    for s in range(surveys):
        for k in range(2):
            place = f"{3 + s * 0.01},{43 + s * 0.01},2020,10.0,100.0,MEDITERRANEAN,France"
            rows.append(f"{place},{k + species},{1000 + s}")
    path.write_text("\n".join(rows) + "\n")
    return path


def run_observations(params, feedback=None):
    import processing

    return processing.run("geoplant:loadobservations", params, feedback=feedback)


def cancelling_feedback(n):
    from qgis.core import QgsProcessingFeedback

    class Feedback(QgsProcessingFeedback):
        calls = 0

        def isCanceled(self):  # noqa: N802 (Qt's name)
            self.calls += 1
            return n is not None and self.calls > n

    return Feedback()


@pytest.fixture
def earlier_observations(geoplant_provider, tmp_path, monkeypatch):
    from geoplant_qgis.processing import loadobservations

    monkeypatch.setattr(loadobservations, "_BATCH", 10)
    csv = observations_csv(tmp_path / "obs.csv")
    out = tmp_path / "layers"
    run_observations({"INPUT": str(csv), "OUTPUT": str(out / "obs.gpkg")})
    (out / "notes.txt").write_text("mine")
    (out / "empty").mkdir()
    observations_csv(csv, surveys=70, species=5)  # the CSV changes before the second run
    return csv, out


def test_loadobservations_cancelled_anywhere_leaves_the_earlier_layer(earlier_observations, tmp_path):
    from qgis.core import QgsProcessingException

    csv, out = earlier_observations
    before = snapshot(out)
    counter = cancelling_feedback(None)
    run_observations({"INPUT": str(csv), "OUTPUT": str(tmp_path / "probe" / "obs.gpkg")}, counter)
    total = counter.calls
    assert total >= 8
    for n in cancel_points(total):
        with pytest.raises(QgsProcessingException, match="[Cc]ancel"):
            run_observations({"INPUT": str(csv), "OUTPUT": str(out / "obs.gpkg")}, cancelling_feedback(n))
        assert snapshot(out) == before, f"cancelled after {n} check(s)"
        assert temporaries(out) == []
    # into a folder that does not exist yet: the folders made for it go too
    with pytest.raises(QgsProcessingException):
        run_observations(
            {"INPUT": str(csv), "OUTPUT": str(tmp_path / "new" / "sub" / "obs.gpkg")}, cancelling_feedback(3)
        )
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("nth", [1, 2])
def test_loadobservations_failed_publish_keeps_layer_and_journal(earlier_observations, monkeypatch, nth):
    from qgis.core import QgsProcessingException

    csv, out = earlier_observations
    (out / "obs.gpkg-wal").write_bytes(b"journal of the layer open in QGIS")
    (out / "obs.gpkg-shm").write_bytes(b"shared memory")
    before = snapshot(out)
    failing_replace(monkeypatch, nth)
    with pytest.raises(QgsProcessingException, match="No space left on device"):
        run_observations({"INPUT": str(csv), "OUTPUT": str(out / "obs.gpkg")})
    monkeypatch.undo()
    assert snapshot(out) == before
    assert temporaries(out) == []


def test_loadobservations_rerun_replaces_the_layer(earlier_observations):
    from qgis.core import QgsVectorLayer

    csv, out = earlier_observations
    before = snapshot(out)
    result = run_observations({"INPUT": str(csv), "OUTPUT": str(out / "obs.gpkg")})
    after = snapshot(out)
    assert result["COUNT"] == 70 and temporaries(out) == []
    assert after["obs.gpkg"] != before["obs.gpkg"]
    assert set(after) == set(before)
    layer = QgsVectorLayer(str(out / "obs.gpkg"), "obs", "ogr")
    assert layer.isValid() and layer.featureCount() == 70
    del layer


def test_loadobservations_rerun_takes_the_old_journal_away(earlier_observations):
    csv, out = earlier_observations
    (out / "obs.gpkg-wal").write_bytes(b"journal of the old layer")
    (out / "obs.gpkg-shm").write_bytes(b"shared memory of the old layer")
    run_observations({"INPUT": str(csv), "OUTPUT": str(out / "obs.gpkg")})
    # an old write-ahead log beside the new GeoPackage would be replayed into it
    assert not (out / "obs.gpkg-wal").exists() and not (out / "obs.gpkg-shm").exists()
    assert temporaries(out) == []


def test_loadobservations_refuses_the_input_as_output(geoplant_provider, tmp_path):
    from qgis.core import QgsProcessingException

    csv = observations_csv(tmp_path / "obs.csv")
    (tmp_path / "alias.csv").symlink_to(csv)
    before = snapshot(tmp_path)
    for output in (csv, tmp_path / "alias.csv", tmp_path / "sub" / ".." / "obs.csv"):
        with pytest.raises(QgsProcessingException, match="same file as INPUT") as refused:
            run_observations({"INPUT": str(csv), "OUTPUT": str(output)})
        assert str(csv) in str(refused.value)
        assert snapshot(tmp_path) == before and temporaries(tmp_path) == []


def test_a_later_run_removes_what_a_killed_run_left_in_the_cd_ab_folders(earlier_extract, mosaic):
    out = earlier_extract
    pid = 4_000_000
    while True:  # a process id nobody has
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        except OSError:
            pass
        pid -= 1
    folder = out / os.path.dirname(glc25_patch_relpath(IDS[3]))
    left = folder / f".{IDS[3]}.geoplant-{files._host()}-{pid}-0123abcd.part.tiff"
    left.write_bytes(b"half a patch of a killed run")
    other_host = folder / f".{IDS[3]}.geoplant-elsewhere-{pid}-0123abcd.part.tiff"
    other_host.write_bytes(b"another machine's run: not ours to judge")
    extract(out, mosaic, points())
    assert not left.exists() and other_host.exists()
    other_host.unlink()
    assert temporaries(out) == []


def test_extractpatches_refuses_to_replace_a_source_of_a_vrt_raster(earlier_export, tmp_path):
    """RASTER is an earlier export's mosaic, OUTPUT_FOLDER that export: the patches are its sources."""
    from geoplant_qgis.core.extract import Points, extract_patches

    _, out = earlier_export
    before = snapshot(out)
    with rasterio.open(out / "patches.vrt") as vrt:
        x, y = vrt.xy(2, 2)
    with pytest.raises(OutputError, match="same file as RASTER") as refused:
        pts = Points(np.array(IDS[:1]), [x], [y], "EPSG:3035")
        extract_patches(out, out / "patches.vrt", size=4, points=pts)
    assert str(out / glc25_patch_relpath(IDS[0])) in str(refused.value)
    assert snapshot(out) == before and temporaries(out) == []
