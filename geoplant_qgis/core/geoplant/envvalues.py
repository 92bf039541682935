"""Environmental-values CSVs: values of rasters extracted at surveys (GeoPlant shape).

``surveyId`` then one column per variable (``Bio1`` .. ``Bio19``, ``Soilgrid-*``,
``LandCover-*``, ``Elevation``, ``HumanFootprint-*`` ...); missing values are empty
fields. Reading turns text in a numeric column into NaN and reports it (count and
examples); writing uses a temporary name in the destination folder, renamed at the end.
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd

from ..errors import InputDataError, OutputError
from ..files import check_outputs, write_text
from ..progress import as_progress
from .observations import MAX_EXAMPLES, numeric_text

ID_COLUMN = "surveyId"


def read_env_values(path, progress=None) -> pd.DataFrame:
    """The file as float64 columns indexed by ``surveyId`` (int64), in file order.

    Non-numeric text becomes NaN and is reported through ``progress.warning``; rows
    without a whole-number surveyId are skipped and reported; duplicated surveyIds keep
    their first row (reported).
    """
    progress = as_progress(progress)
    name = os.path.basename(os.fspath(path))
    try:
        raw = pd.read_csv(path, dtype=str, keep_default_na=False, na_filter=False, skip_blank_lines=True)
    except FileNotFoundError:
        raise InputDataError(f"Environmental values file not found: {path}") from None
    except pd.errors.EmptyDataError:
        raise InputDataError(f"{name} is empty.") from None
    except IsADirectoryError:
        raise InputDataError(f"{path} is a folder, not an environmental values CSV file.") from None
    except OSError as error:
        raise InputDataError(f"Cannot read {path}: {error.strerror or error}.") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise InputDataError(f"{name} is not a readable CSV file: {error}") from None
    raw.columns = [c.strip() for c in raw.columns]
    if ID_COLUMN not in raw.columns:
        raise InputDataError(
            f"{name} lacks the surveyId column (found: {', '.join(raw.columns)}); an environmental "
            "values file has surveyId then one column per variable."
        )
    lines = np.arange(2, len(raw) + 2)
    ids, _ = numeric_text(raw[ID_COLUMN])
    with np.errstate(invalid="ignore"):
        good_id = np.isfinite(ids) & (ids == np.round(ids)) & (ids >= 0)
    if not good_id.all():
        bad = np.flatnonzero(~good_id)
        examples = "; ".join(
            f"line {lines[i]}: surveyId {raw[ID_COLUMN].iloc[i]!r}" for i in bad[:MAX_EXAMPLES]
        )
        progress.warning(f"{name}: skipped {len(bad)} row(s) without a valid surveyId. Examples: {examples}")
    values = {}
    problems, bad_values = 0, list[str]()
    for column in raw.columns:
        if column == ID_COLUMN:
            continue
        numbers, bad = numeric_text(raw[column])
        bad &= good_id
        if bad.any():
            problems += int(bad.sum())
            for i in np.flatnonzero(bad)[: MAX_EXAMPLES - len(bad_values)]:
                bad_values.append(f"line {lines[i]}: {column} is {raw[column].iloc[i]!r}")
        values[column] = numbers[good_id]
    if problems:
        progress.warning(
            f"{name}: {problems} value(s) are text, not numbers; read as empty. "
            f"Examples: {'; '.join(bad_values)}"
        )
    frame = pd.DataFrame(values, index=pd.Index(ids[good_id].astype(np.int64), name=ID_COLUMN))
    duplicated = frame.index.duplicated(keep="first")
    if duplicated.any():
        dupes = sorted(set(frame.index[duplicated].tolist()))
        progress.warning(
            f"{name}: {int(duplicated.sum())} repeated surveyId row(s) ignored (first row kept), e.g. "
            + ", ".join(str(d) for d in dupes[:MAX_EXAMPLES])
        )
        frame = frame[~duplicated]
    return frame


def write_env_values(path, frame: pd.DataFrame, inputs=None) -> str:
    """Write ``frame`` (index or column ``surveyId``, then variables) as a GeoPlant CSV.

    NaN is written as an empty field; numbers keep full precision. Written under a
    temporary name in the destination folder and renamed at the end; returns the path.
    ``inputs``: {label: path} of the files the values came from: ``path`` must be none of
    them (:func:`..files.check_outputs`, refused before anything is written).
    """
    if inputs:
        check_outputs({"OUTPUT": path}, inputs)
    if ID_COLUMN in frame.columns:
        out = frame.set_index(ID_COLUMN)
    else:
        out = frame.copy()
        out.index.name = ID_COLUMN
    if out.index.hasnans:
        raise OutputError("Every row of an environmental values file needs a surveyId.")
    return write_text(path, out.to_csv(na_rep="", index=True, index_label=ID_COLUMN))
