"""Environmental-values CSVs: read with text counted, write with nodata as empty."""

import os

import numpy as np
import pandas as pd
import pytest

from geoplant_qgis.core.errors import InputDataError, OutputError
from geoplant_qgis.core.geoplant.envvalues import read_env_values, write_env_values
from geoplant_qgis.core.progress import Progress

pytestmark = pytest.mark.core


class Recorder(Progress):
    def __init__(self):
        self.warnings = []

    def warning(self, message):
        self.warnings.append(message)


def test_read_values_and_text(tmp_path):
    path = tmp_path / "env.csv"
    path.write_text(
        "surveyId,Bio1,Bio2,Soilgrid-phh2o,LandCover-1,Elevation,HumanFootprint-Built1994\n"
        "212,13.47,8.1,61,0,123.5,2\n"
        "5000108,,7.9,abc,1,-3.25,\n"
        "x9,1,1,1,1,1,1\n"
        "3,1e3,NaN,62,,0,7\n"
        "212,99,99,99,99,99,99\n"
    )
    progress = Recorder()
    frame = read_env_values(path, progress=progress)
    assert frame.index.name == "surveyId" and frame.index.tolist() == [212, 5000108, 3]
    assert list(frame.columns) == [
        "Bio1",
        "Bio2",
        "Soilgrid-phh2o",
        "LandCover-1",
        "Elevation",
        "HumanFootprint-Built1994",
    ]
    expected = np.array(
        [
            [13.47, 8.1, 61, 0, 123.5, 2],
            [np.nan, 7.9, np.nan, 1, -3.25, np.nan],
            [1000, np.nan, 62, np.nan, 0, 7],
        ]
    )
    np.testing.assert_array_equal(frame.to_numpy(), expected)
    assert len(progress.warnings) == 3
    assert (
        "skipped 1 row(s) without a valid surveyId" in progress.warnings[0] and "'x9'" in progress.warnings[0]
    )
    assert (
        "1 value(s) are text" in progress.warnings[1]
        and "line 3: Soilgrid-phh2o is 'abc'" in progress.warnings[1]
    )
    assert "1 repeated surveyId" in progress.warnings[2] and "212" in progress.warnings[2]


def test_missing_survey_id_column(tmp_path):
    path = tmp_path / "env.csv"
    path.write_text("id,Bio1\n1,2\n")
    with pytest.raises(InputDataError, match="lacks the surveyId column"):
        read_env_values(path)
    with pytest.raises(InputDataError, match="not found"):
        read_env_values(tmp_path / "missing.csv")
    with pytest.raises(InputDataError, match="is a folder, not an environmental values CSV"):
        read_env_values(tmp_path)


def test_write_then_read_round_trip(tmp_path):
    frame = pd.DataFrame(
        {"Bio1": [13.479166666666666, np.nan, -0.1], "Elevation": [1.0, 2.5, np.nan]},
        index=pd.Index([7, 5000108, 212], name="surveyId"),
    )
    path = tmp_path / "out" / "env.csv"
    assert write_env_values(path, frame) == str(path)
    assert os.listdir(path.parent) == ["env.csv"]
    lines = path.read_text().splitlines()
    assert lines[0] == "surveyId,Bio1,Elevation"
    assert lines[2] == "5000108,,2.5"  # nodata as empty
    back = read_env_values(path)
    pd.testing.assert_frame_equal(back, frame)
    # a surveyId column works too
    write_env_values(path, frame.reset_index())
    pd.testing.assert_frame_equal(read_env_values(path), frame)


def test_write_refuses_missing_ids(tmp_path):
    frame = pd.DataFrame({"surveyId": [1.0, np.nan], "Bio1": [1.0, 2.0]})
    with pytest.raises(OutputError, match="needs a surveyId"):
        write_env_values(tmp_path / "e.csv", frame)
    assert os.listdir(tmp_path) == []
