"""PA / PO metadata CSVs: streaming reader, malformed rows, survey aggregation."""

import numpy as np
import pandas as pd
import pytest

from geoplant_qgis.core.errors import CancelledError, InputDataError
from geoplant_qgis.core.geoplant.observations import (
    STANDARD_COLUMNS,
    SURVEY_COLUMNS,
    ReadStats,
    aggregate_surveys,
    read_observations,
    survey_table,
)
from geoplant_qgis.core.progress import Progress

pytestmark = pytest.mark.core

HEADER = "lon,lat,year,geoUncertaintyInM,areaInM2,region,country,speciesId,surveyId"


class Recorder(Progress):
    def __init__(self, cancel_after=None):
        self.warnings, self.infos, self.percents = [], [], []
        self.cancel_after = cancel_after

    def warning(self, message):
        self.warnings.append(message)

    def info(self, message):
        self.infos.append(message)

    def set_progress(self, percent):
        self.percents.append(percent)

    def is_cancelled(self):
        return self.cancel_after is not None and len(self.percents) >= self.cancel_after


def write(tmp_path, text, name="obs.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def read_all(path, **kwargs):
    frames = list(read_observations(path, **kwargs))
    return pd.concat(frames) if frames else pd.DataFrame(columns=STANDARD_COLUMNS)


def test_glc24_sample_rows_and_values(samples_dir):
    path = samples_dir / "glc24" / "metadata.csv"
    expected = pd.read_csv(path)  # independent read: every row of the sample is valid
    stats = ReadStats()
    progress = Recorder()
    frame = read_all(path, progress=progress, stats=stats)
    assert list(frame.columns) == list(STANDARD_COLUMNS)
    assert len(frame) == len(expected) == 100
    assert stats.rows == 100 and stats.malformed == 0 and progress.warnings == []
    np.testing.assert_array_equal(frame["lon"].to_numpy(), expected["lon"].to_numpy())
    np.testing.assert_array_equal(frame["surveyId"].to_numpy(), expected["surveyId"].to_numpy())
    np.testing.assert_array_equal(
        frame["speciesId"].to_numpy(np.int64), expected["speciesId"].astype(np.int64)
    )
    # -inf areas (2 rows in the sample) and empty areas are both read as NaN
    assert np.isneginf(expected["areaInM2"]).sum() == 2
    assert stats.infinite_area == 2
    assert frame["areaInM2"].isna().sum() == expected["areaInM2"].isna().sum() + 2
    finite = np.isfinite(expected["areaInM2"].to_numpy())
    np.testing.assert_array_equal(
        frame["areaInM2"].to_numpy()[finite], expected["areaInM2"].to_numpy()[finite]
    )
    assert any("-inf" in m and "2 row" in m for m in progress.infos)
    row = frame[frame["surveyId"] == 1322301].iloc[0]
    assert (row["lon"], row["lat"], row["year"], row["country"], row["region"]) == (
        5.19824,
        51.08484,
        2020,
        "Belgium",
        "ATLANTIC",
    )
    assert row["speciesId"] == 8748 and np.isnan(row["areaInM2"])
    assert progress.percents[-1] == pytest.approx(100.0)


def test_glc24_sample_aggregated(samples_dir):
    path = samples_dir / "glc24" / "metadata.csv"
    expected = pd.read_csv(path)
    species = expected.groupby("surveyId")["speciesId"].apply(lambda s: sorted({int(v) for v in s}))
    surveys = aggregate_surveys(path)
    assert list(surveys.columns) == list(SURVEY_COLUMNS)
    assert len(surveys) == expected["surveyId"].nunique() == 99
    assert surveys["surveyId"].is_monotonic_increasing
    assert surveys.set_index("surveyId")["speciesIds"].to_dict() == species.to_dict()
    assert (surveys["richness"] == surveys["speciesIds"].map(len)).all()
    assert surveys["richness"].sum() == 100


def test_glc25_sample_survey_with_two_species_and_moved_rows(samples_dir):
    progress = Recorder()
    surveys = aggregate_surveys(samples_dir / "glc25" / "metadata.csv", progress=progress).set_index(
        "surveyId"
    )
    assert len(surveys) == 97
    s = surveys.loc[5000108]
    assert s["speciesIds"] == [1, 2] and s["richness"] == 2
    assert (s["lon"], s["lat"], s["year"], s["areaInM2"], s["country"]) == (
        -2.23632,
        52.721129,
        2017,
        1.0,
        "United Kingdom",
    )
    # the fixture's authors moved one row of survey 1027998: first position kept, warned
    assert surveys.loc[1027998, "speciesIds"] == [10111, 10112, 10113]
    assert (surveys.loc[1027998, "lon"], surveys.loc[1027998, "lat"]) == (10.3555, 57.01814)
    assert len(progress.warnings) == 1 and "survey 1027998" in progress.warnings[0]


def test_file_without_species_id(tmp_path):
    path = write(
        tmp_path,
        "lon,lat,year,geoUncertaintyInM,areaInM2,region,country,surveyId\n"
        "3.5,43.6,2021,5.0,100.0,MEDITERRANEAN,France,7\n"
        "4.5,44.6,2020,,-inf,MEDITERRANEAN,France,3\n",
    )
    progress = Recorder()
    frame = read_all(path, progress=progress)
    assert frame["speciesId"].isna().all()
    surveys = aggregate_surveys(path, progress=progress)
    assert surveys["surveyId"].tolist() == [3, 7]
    assert surveys["speciesIds"].tolist() == [[], []]
    assert surveys["richness"].tolist() == [0, 0]
    assert np.isnan(surveys["areaInM2"][0]) and surveys["areaInM2"][1] == 100.0
    assert np.isnan(surveys["geoUncertaintyInM"][0])
    assert any("no speciesId" in m for m in progress.infos)
    assert progress.warnings == []


def test_missing_required_columns_named(tmp_path):
    path = write(tmp_path, "latitude,lat,speciesId\n1,2,3\n")
    with pytest.raises(InputDataError, match=r"lacks the required column\(s\) lon, surveyId"):
        list(read_observations(path))
    with pytest.raises(InputDataError, match="lon, surveyId"):
        aggregate_surveys(path)


@pytest.mark.parametrize(
    "content, message",
    [("", "empty"), (None, "not found")],
)
def test_empty_or_missing_file(tmp_path, content, message):
    path = tmp_path / "x.csv"
    if content is not None:
        path.write_text(content)
    with pytest.raises(InputDataError, match=message):
        list(read_observations(path))


def test_header_only_gives_no_rows(tmp_path):
    path = write(tmp_path, HEADER + "\n")
    assert list(read_observations(path)) == []
    surveys = aggregate_surveys(path)
    assert len(surveys) == 0 and list(surveys.columns) == list(SURVEY_COLUMNS)


MALFORMED = "\n".join(
    [
        HEADER,
        "1.0,45.0,2019,1.0,10.0,ALPINE,France,10.0,100",  # line 2 ok
        "abc,45.0,2019,1.0,10.0,ALPINE,France,11.0,100",  # 3 text in lon
        "1.0,95.0,2019,1.0,10.0,ALPINE,France,12.0,100",  # 4 lat out of range
        "1.0,45.0,2019,1.0,10.0,ALPINE,France,13.0,",  # 5 surveyId missing
        "1.0,45.0,2019,1.0,10.0,ALPINE,France,13.5,101",  # 6 speciesId not whole
        "1.0,45.0,20x9,1.0,10.0,ALPINE,France,14.0,101",  # 7 text in year
        "2.0,46.0,2020,1.0,10.0,ALPINE,France,15.0,101,extra",  # 8 too many fields
        "",  # 9 blank line: not data, not malformed
        "-181.0,46.0,2020,1.0,10.0,ALPINE,France,15.0,102",  # 10 lon out of range
        "2.0,46.0,2020,,,,,16.0,101",  # 11 ok, optional values empty
        "1.0,45.0,2019,1.0,10.0,ALPINE,France,11.0,100",  # 12 ok
    ]
)


def test_malformed_rows_skipped_counted_and_reported(tmp_path):
    path = write(tmp_path, MALFORMED + "\n")
    progress, stats = Recorder(), ReadStats()
    frame = read_all(path, progress=progress, stats=stats)
    assert frame.index.tolist() == [2, 11, 12]
    assert frame["speciesId"].tolist() == [10, 16, 11]
    assert frame["surveyId"].tolist() == [100, 101, 100]
    assert frame.loc[11, "region"] is None and np.isnan(frame.loc[11, "areaInM2"])
    assert frame.loc[11, "year"] == 2020 and np.isnan(frame.loc[11, "geoUncertaintyInM"])
    assert stats.rows == 10 and stats.malformed == 7 and stats.kept == 3
    assert len(progress.warnings) == 1
    message = progress.warnings[0]
    assert "skipped 7 malformed row(s) of 10" in message
    assert "text in numeric columns: 2" in message
    assert "lon/lat out of range: 2" in message
    assert "missing values: 1" in message
    assert "not whole numbers: 1" in message
    assert "too many fields: 1" in message
    assert "line 3: lon is 'abc' (not a number)" in message
    assert "line 5: surveyId is empty" in message


def test_rows_with_very_many_fields_fall_back_and_are_counted(tmp_path):
    lines = [HEADER]
    for i in range(10):
        lines.append(f"{i}.0,45.0,2019,1.0,10.0,ALPINE,France,{i}.0,{200 + i}")
    lines[4] = lines[4] + ",x" * 60  # line 5 with 69 fields
    path = write(tmp_path, "\n".join(lines) + "\n")
    progress, stats = Recorder(), ReadStats()
    frame = read_all(path, progress=progress, stats=stats, chunksize=3)
    assert frame["surveyId"].tolist() == [200, 201, 202, 204, 205, 206, 207, 208, 209]
    assert stats.malformed == 1
    assert "too many fields: 1" in progress.warnings[0]


def test_bounds_filter(tmp_path):
    path = write(
        tmp_path,
        HEADER + "\n1.0,45.0,,,,,,1.0,1\n3.0,45.0,,,,,,1.0,2\n2.0,44.0,,,,,,1.0,3\n2.0,46.0,,,,,,2.0,3\n",
    )
    stats = ReadStats()
    frame = read_all(path, bounds=(1.0, 44.5, 2.5, 46.0), stats=stats)
    assert frame["surveyId"].tolist() == [1, 3]
    assert stats.outside_bounds == 2
    assert aggregate_surveys(path, bounds=(1.5, 43, 2.5, 47))["speciesIds"].tolist() == [[1, 2]]
    with pytest.raises(InputDataError, match="minimum above maximum"):
        list(read_observations(path, bounds=(3, 0, 1, 1)))


def test_aggregation_across_chunks_matches_pandas(tmp_path):
    rng = np.random.default_rng(1)
    n = 500
    surveys = rng.integers(1, 60, n)
    species = rng.integers(1, 15, n)
    lon = (surveys * 0.1).round(3)  # one position per survey
    frame = pd.DataFrame(
        {
            "lon": lon,
            "lat": 45.0,
            "year": 2020,
            "geoUncertaintyInM": 1.0,
            "areaInM2": 10.0,
            "region": np.where(surveys % 2, "ALPINE", "ATLANTIC"),
            "country": np.where(surveys % 3, "France", "Italy"),
            "speciesId": species.astype(float),
            "surveyId": surveys,
        }
    )
    path = tmp_path / "big.csv"
    frame.to_csv(path, index=False)
    small = survey_table(path, chunksize=7)
    table = small.to_frame()
    big = aggregate_surveys(path, chunksize=10_000)
    pd.testing.assert_frame_equal(table, big)
    expected = frame.groupby("surveyId")["speciesId"].apply(lambda s: sorted({int(v) for v in s}))
    assert table.set_index("surveyId")["speciesIds"].to_dict() == expected.to_dict()
    first = frame.drop_duplicates("surveyId").set_index("surveyId").sort_index()
    assert table["region"].tolist() == first["region"].tolist()
    assert table["country"].tolist() == first["country"].tolist()
    strings = small.species_strings()
    assert strings == [" ".join(str(v) for v in ids) for ids in table["speciesIds"]]
    assert small.species_strings(3, 5) == strings[3:5]


def test_cancel_stops_reading(tmp_path):
    path = write(tmp_path, HEADER + "\n" + "1.0,45.0,,,,,,1.0,1\n" * 50)
    with pytest.raises(CancelledError):
        list(read_observations(path, chunksize=5, progress=Recorder(cancel_after=2)))
