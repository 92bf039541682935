"""geoplant:presence and core.decisions.presence: maps equal p >= the rule's threshold, the
data-driven thresholds equal brute-force searches, bad input leaves the folder as it was."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
import rasterio
from decisions_support import (
    CRS,
    DESCRIPTIONS,
    NODATA,
    cell_centre,
    fingerprint,
    pa_csv,
    probabilities,
    temporaries,
    write_probabilities,
)

from geoplant_qgis.core.decisions import thresholds as th
from geoplant_qgis.core.decisions.presence import presence_maps
from geoplant_qgis.core.errors import InputDataError

pytestmark = pytest.mark.core


def surveys_frame(values, n=120, seed=1):
    """Surveys at random cell centres; species 101 present with probability p (so the rasters'
    values are informative), 102 present where p > 0.3 on a coin, 103 never present."""
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, values.shape[1], n)
    cols = rng.integers(0, values.shape[2], n)
    records = []
    for i, (r, c) in enumerate(zip(rows.tolist(), cols.tolist(), strict=True)):
        x, y = cell_centre(r, c)
        species = [999]  # every survey lists something: the others are absences
        if values[0, r, c] != NODATA and rng.random() < values[0, r, c]:
            species.append(101)
        if values[1, r, c] != NODATA and values[1, r, c] > 0.3 and rng.random() < 0.7:
            species.append(102)
        records.append((i + 1, x, y, species))
    frame = pd.DataFrame(
        [(sid, x, y, s) for sid, x, y, s in records], columns=["surveyId", "x", "y", "speciesIds"]
    )
    return frame, rows, cols


def brute(rule, labels, probs):
    """Independent search: every distinct probability as cut-off, present when p >= t, the
    lowest cut-off among equal best scores."""
    pairs = [(p, y) for p, y in zip(probs, labels, strict=True) if not math.isnan(p)]
    n1 = sum(1 for _, y in pairs if y)
    n0 = len(pairs) - n1
    best = None
    for t in sorted({p for p, _ in pairs}):
        tp = sum(1 for p, y in pairs if y and p >= t)
        fp = sum(1 for p, y in pairs if not y and p >= t)
        fn, tn = n1 - tp, n0 - fp
        sens, spec = tp / n1, tn / n0
        tss = sens + spec - 1
        if rule == "max_tss":
            key = (round(tss, 12),)
        elif rule == "max_kappa":
            n = n1 + n0
            po = (tp + tn) / n
            pe = ((tp + fp) * (tp + fn) + (fn + tn) * (fp + tn)) / n**2
            key = (round((po - pe) / (1 - pe) if pe != 1 else 0.0, 12),)
        else:
            key = (-round(abs(sens - spec), 12), round(tss, 12))
        if best is None or key > best[0]:
            best = (key, t, tss, sens, spec)
    return best[1:]


@pytest.fixture
def world(tmp_path):
    values = probabilities()
    raster = write_probabilities(tmp_path / "in" / "p.tif", values)
    return tmp_path, values, raster


def read(path):
    with rasterio.open(path) as ds:
        return (
            ds.read(),
            ds.descriptions,
            [ds.tags(b) for b in range(1, ds.count + 1)],
            ds.nodata,
            ds.dtypes[0],
        )


def test_fixed_rule_is_p_at_least_threshold(world):
    tmp_path, values, raster = world
    out = tmp_path / "out" / "presence.tif"
    presence_maps(raster, "fixed", threshold=0.5, output=out, output_thresholds=tmp_path / "out" / "t.csv")
    got, descriptions, tags, nodata, dtype = read(out)
    expected = np.where(values == NODATA, 255, values >= np.float32(0.5)).astype(np.uint8)
    assert dtype == "uint8" and nodata == 255
    np.testing.assert_array_equal(got, expected)
    assert list(descriptions) == DESCRIPTIONS
    assert all(t["GEOPLANT_RULE"] == "fixed" and float(t["GEOPLANT_THRESHOLD"]) == 0.5 for t in tags)
    table = pd.read_csv(tmp_path / "out" / "t.csv")
    assert list(table.columns[:9]) == [
        "speciesId", "species", "rule", "threshold", "tss", "sensitivity", "specificity",
        "presences", "absences",
    ]  # fmt: skip
    assert table["speciesId"].tolist() == [101, 102, 103] and set(table["threshold"]) == {0.5}
    assert temporaries(tmp_path) == []


@pytest.mark.parametrize("rule", ["max_tss", "equal_sens_spec", "max_kappa"])
def test_data_driven_rules_equal_a_brute_force_search(world, rule):
    tmp_path, values, raster = world
    surveys, rows, cols = surveys_frame(values)
    out = tmp_path / "out" / "presence.tif"
    table_path = tmp_path / "out" / "thresholds.csv"
    result = presence_maps(
        raster, rule, surveys=surveys, surveys_crs=CRS, output=out, output_thresholds=table_path
    )
    got, descriptions, tags, _, _ = read(out)
    table = pd.read_csv(table_path)
    for j, sid in enumerate((101, 102)):
        p = values[j, rows, cols].astype(np.float64)
        p[p == NODATA] = np.nan
        labels = [sid in s for s in surveys["speciesIds"]]
        t, tss, sens, spec = brute(rule, labels, p.tolist())
        chosen = result.thresholds[j]
        assert chosen.threshold == pytest.approx(t, abs=0) and chosen.tss == pytest.approx(tss)
        assert (chosen.sensitivity, chosen.specificity) == pytest.approx((sens, spec))
        row = table.iloc[j]
        assert row["threshold"] == pytest.approx(t, rel=1e-7) and row["tss"] == pytest.approx(tss, abs=1e-6)
        assert (
            row["presences"] == sum(labels)
            and row["absences"] == len(labels) - sum(labels) - np.isnan(p).sum()
        )
        assert tags[j]["GEOPLANT_RULE"] == rule and float(tags[j]["GEOPLANT_THRESHOLD"]) == pytest.approx(t)
        band = values[j]
        expected = np.where(band == NODATA, 255, band.astype(np.float64) >= t).astype(np.uint8)
        np.testing.assert_array_equal(got[j], expected)
    # species 103 is never present: no threshold, all nodata, and a row saying why
    assert (got[2] == 255).all() and not result.thresholds[2].usable
    assert "no presence" in table.iloc[2]["note"] and math.isnan(table.iloc[2]["threshold"])
    assert list(descriptions) == DESCRIPTIONS


def test_max_tss_ties_go_to_the_lowest_cutoff():
    labels = [True, True, False, False]
    probs = [0.9, 0.5, 0.5, 0.1]  # t = 0.5: sens 1, spec 0.5; t = 0.9: sens 0.5, spec 1 -> equal TSS
    chosen = th.choose("max_tss", labels, probs)
    assert chosen.threshold == 0.5 and chosen.tss == pytest.approx(0.5)


def test_surveys_outside_are_counted(world):
    tmp_path, values, raster = world
    surveys, _, _ = surveys_frame(values, n=40)
    far = pd.DataFrame([(1000, 0.0, 0.0, [101]), (1001, 1.0, 1.0, [999])], columns=surveys.columns)
    result = presence_maps(
        raster, "max_tss", surveys=pd.concat([surveys, far]), surveys_crs=CRS, output=tmp_path / "o.tif"
    )
    assert result.surveys_outside == 2 and result.surveys_used == 40


@pytest.mark.parametrize(
    "case, message",
    [
        ("threshold", "THRESHOLD must be"),
        ("no species", "list none of the 3 species"),
        ("no surveys", "chooses each species' threshold from presence-absence SURVEYS"),
        ("outside", "None of the 2 surveys falls on"),
        ("not probabilities", "is not a species probability band"),
    ],
)
def test_bad_input_is_refused_and_leaves_the_folder_as_it_was(world, case, message):
    tmp_path, values, raster = world
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "presence.tif").write_bytes(b"an earlier map")
    (out_dir / "notes.txt").write_text("the user's own file")
    before = fingerprint(tmp_path)
    surveys, _, _ = surveys_frame(values, n=30)
    kwargs = dict(output=out_dir / "presence.tif", output_thresholds=out_dir / "t.csv")
    if case == "threshold":
        args = (raster, "fixed")
        kwargs["threshold"] = 1.5
    elif case == "no species":
        surveys["speciesIds"] = [[999]] * len(surveys)
        args = (raster, "max_tss")
        kwargs.update(surveys=surveys, surveys_crs=CRS)
    elif case == "no surveys":
        args = (raster, "max_kappa")
    elif case == "outside":
        far = pd.DataFrame([(1, 0.0, 0.0, [101]), (2, 1.0, 1.0, [999])], columns=surveys.columns)
        args = (raster, "max_tss")
        kwargs.update(surveys=far, surveys_crs=CRS)
    else:
        bad = write_probabilities(tmp_path / "in" / "bad.tif", values, ["a (1)", "no id", "c (3)"])
        before = fingerprint(tmp_path)
        args = (bad, "fixed")
        kwargs["threshold"] = 0.5
    with pytest.raises(InputDataError, match=re.escape(message)):
        presence_maps(*args, **kwargs)
    assert fingerprint(tmp_path) == before and temporaries(tmp_path) == []


def test_cancel_leaves_nothing(world):
    from geoplant_qgis.core.errors import CancelledError
    from geoplant_qgis.core.progress import Progress

    class CancelSoon(Progress):
        calls = 0

        def is_cancelled(self):
            self.calls += 1
            return self.calls > 1

    tmp_path, _, raster = world
    before = fingerprint(tmp_path)
    with pytest.raises(CancelledError):
        presence_maps(
            raster, "fixed", threshold=0.5, output=tmp_path / "new" / "p.tif", progress=CancelSoon()
        )
    assert fingerprint(tmp_path) == before and temporaries(tmp_path) == []


def test_processing_rule_by_name_with_csv_surveys(world, geoplant_provider):
    import processing

    tmp_path, values, raster = world
    surveys, rows, cols = surveys_frame(values)
    csv = pa_csv(tmp_path / "pa.csv", list(surveys.itertuples(index=False, name=None)))
    out = processing.run(
        "geoplant:presence",
        {
            "PROBABILITIES": raster,
            "RULE": "max_tss",
            "SURVEYS": csv,
            "OUTPUT": str(tmp_path / "o.tif"),
            "OUTPUT_THRESHOLDS": str(tmp_path / "t.csv"),
        },
    )
    table = pd.read_csv(out["OUTPUT_THRESHOLDS"])
    assert table["rule"].tolist() == ["max_tss"] * 3
    p = values[0, rows, cols].astype(np.float64)
    p[p == NODATA] = np.nan
    t, *_ = brute("max_tss", [101 in s for s in surveys["speciesIds"]], p.tolist())
    assert table.iloc[0]["threshold"] == pytest.approx(t, rel=1e-7)
    got, *_ = read(out["OUTPUT"])
    np.testing.assert_array_equal(got[0], np.where(values[0] == NODATA, 255, values[0] >= t))


@pytest.mark.qgis_process
def test_qgis_process_takes_the_rule_by_name(world, tmp_path_factory):
    from support import install_into, qgis_process

    tmp_path, values, raster = world
    profile = tmp_path_factory.mktemp("profile-presence")
    install_into(profile, with_dependencies=False)
    surveys, rows, cols = surveys_frame(values)
    csv = pa_csv(tmp_path / "pa.csv", list(surveys.itertuples(index=False, name=None)))
    table = tmp_path / "t.csv"
    done = qgis_process(
        profile, "run", "geoplant:presence", "--", f"PROBABILITIES={raster}", "RULE=max_tss",
        f"SURVEYS={csv}", f"OUTPUT={tmp_path / 'o.tif'}", f"OUTPUT_THRESHOLDS={table}",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    frame = pd.read_csv(table)
    assert frame["rule"].tolist() == ["max_tss"] * 3
    p = values[0, rows, cols].astype(np.float64)
    p[p == NODATA] = np.nan
    t, *_ = brute("max_tss", [101 in s for s in surveys["speciesIds"]], p.tolist())
    assert frame.iloc[0]["threshold"] == pytest.approx(t, rel=1e-7)
