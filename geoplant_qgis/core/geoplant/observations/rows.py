"""The rows of an observations CSV checked and typed, a chunk at a time.

A row is malformed when a required value is missing, a numeric column holds text, an id or
the year is not a whole number or lies outside the 64-bit integer range, lon/lat are out of
range, or the row has more or fewer fields than the header. Malformed rows are counted per
reason with the first examples (:class:`Problems`), reported once the file is read.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import numpy as np
import pandas as pd

STANDARD_COLUMNS = (
    "lon",
    "lat",
    "year",
    "geoUncertaintyInM",
    "areaInM2",
    "region",
    "country",
    "speciesId",
    "surveyId",
)
REQUIRED_COLUMNS = ("lon", "lat", "surveyId")
FLOAT_COLUMNS = ("lon", "lat", "geoUncertaintyInM", "areaInM2")
INTEGER_COLUMNS = ("year", "speciesId", "surveyId")
TEXT_COLUMNS = ("region", "country")
EMPTY_TOKENS = frozenset({"", "nan", "NaN", "NAN", "NA", "N/A", "null", "NULL", "None"})
MAX_EXAMPLES = 5
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
#: float64 holds every whole number below this exactly; larger ids are read from their text
_EXACT_FLOAT = 2.0**53


class Problems:
    """Malformed-row bookkeeping: counts per reason and the first examples."""

    def __init__(self):
        self.counts: dict[str, int] = {}
        self.examples: list[str] = []
        self.total = 0

    def add(self, reason: str, example: str, count: int = 1):
        self.counts[reason] = self.counts.get(reason, 0) + count
        self.total += count
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(example)

    def report(self, progress, name: str, rows: int):
        if not self.total:
            return
        parts = ", ".join(f"{reason}: {n}" for reason, n in sorted(self.counts.items()))
        progress.warning(
            f"{name}: skipped {self.total} malformed row(s) of {rows} ({parts}). "
            f"Examples: {'; '.join(self.examples)}"
        )


@dataclass
class ReadStats:
    """What a pass over a file found (filled while ``read_observations`` runs)."""

    rows: int = 0  # data rows seen (blank lines excluded)
    kept: int = 0
    malformed: int = 0
    outside_bounds: int = 0
    infinite_area: int = 0
    has_species: bool = True


def numeric_text(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(float values, mask of non-empty text that is not a number)."""
    stripped = values.str.strip()
    empty = stripped.isin(EMPTY_TOKENS).to_numpy()
    numbers = pd.to_numeric(stripped.where(~empty), errors="coerce").to_numpy(dtype=np.float64)
    bad = np.isnan(numbers) & ~empty
    return numbers, bad


def _exact_integers(text: pd.Series, rows: np.ndarray):
    """(int64 values, in int64 range, whole) of the numbers written in ``text[rows]``: ids
    too large for float64 to hold exactly (rare rows only)."""
    values = np.zeros(len(rows), np.int64)
    in_range = np.zeros(len(rows), bool)
    whole = np.ones(len(rows), bool)
    for k, written in enumerate(text.to_numpy()[rows]):
        try:
            number = Decimal(str(written).strip())
        except InvalidOperation:  # pragma: no cover - pandas read it as a number
            continue
        if number != number.to_integral_value():
            whole[k] = False
            continue
        integer = int(number)
        if INT64_MIN <= integer <= INT64_MAX:
            values[k], in_range[k] = integer, True
    return values, in_range, whole


def _as_int64(numbers: np.ndarray, exact) -> np.ndarray:
    """Whole float64 values as int64 (0 where NaN), ``exact`` = (rows, int64 values) put in."""
    safe = np.isfinite(numbers) & (np.abs(numbers) < _EXACT_FLOAT)
    out = np.where(safe, numbers, 0.0).astype(np.int64)
    if exact is not None:
        out[exact[0]] = exact[1]
    return out


def validate_chunk(raw: pd.DataFrame, header: list[str], first_line, problems: Problems, stats, fields=None):
    """Typed standard columns of the valid rows of ``raw`` (all columns are strings).

    ``first_line``: the file line of the first row (rows on consecutive lines), or every
    row's line number; ``fields``: the number of fields of each row (None: all right).
    """
    n = len(raw)
    width = len(header)
    if np.ndim(first_line):
        line_numbers = np.asarray(first_line)
    else:
        line_numbers = np.arange(first_line, first_line + n)
    blank = (raw[header] == "").all(axis=1).to_numpy()
    if fields is not None:
        blank &= fields == width  # ",," is a short row, not a blank line

    reason = np.full(n, "", dtype=object)
    detail = np.full(n, "", dtype=object)

    def flag(mask, why, what):
        """``what``: the detail text, or a function of the flagged rows' mask giving theirs
        (built for those rows only: formatting every row took half of a clean chunk's time)."""
        mask = mask & (reason == "") & ~blank
        if mask.any():
            reason[mask] = why
            detail[mask] = what if isinstance(what, str) else what(mask)

    def quoted(text, mask):  # the flagged rows' text, cut to 30 characters
        return ("'" + text[mask].str.slice(0, 30) + "'").to_numpy(dtype=object)

    if fields is not None:
        for wrong, why in ((fields > width, "too many fields"), (fields < width, "too few fields")):
            flag(
                wrong,
                why,
                lambda m: np.array([f"{k} fields, the header has {width}" for k in fields[m]], dtype=object),
            )
    columns = {}
    exact = {}  # integer column -> (rows, exact int64 values) of ids beyond float64's precision
    for name in STANDARD_COLUMNS:
        if name not in header:
            continue
        text = raw[name]
        if name in TEXT_COLUMNS:
            stripped = text.str.strip()
            columns[name] = stripped.where(~stripped.isin(EMPTY_TOKENS), None)
            continue
        numbers, bad = numeric_text(text)
        columns[name] = numbers
        if name in REQUIRED_COLUMNS or name == "speciesId":
            flag(np.isnan(numbers) & ~bad, "missing values", f"{name} is empty")
        flag(
            bad,
            "text in numeric columns",
            lambda m, t=text, c=name: f"{c} is " + quoted(t, m) + " (not a number)",
        )
        if name in INTEGER_COLUMNS:
            finite = np.isfinite(numbers)
            frac = np.zeros(n, bool)
            frac[finite] = numbers[finite] != np.round(numbers[finite])
            flag(
                frac | np.isinf(numbers),
                "not whole numbers",
                lambda m, t=text, c=name: f"{c} is " + quoted(t, m) + " (not a whole number)",
            )
            big = finite & (np.abs(numbers) >= _EXACT_FLOAT) & (reason == "")
            if big.any():
                rows = np.flatnonzero(big)
                values, in_range, whole = _exact_integers(text, rows)
                exact[name] = (rows[in_range & whole], values[in_range & whole])
                for mask_rows, why, what in (
                    (rows[~whole], "not whole numbers", "(not a whole number)"),
                    (rows[whole & ~in_range], "whole numbers out of range",
                     f"(outside the 64-bit range {INT64_MIN}..{INT64_MAX})"),
                ):  # fmt: skip
                    if len(mask_rows):
                        mask = np.zeros(n, bool)
                        mask[mask_rows] = True
                        flag(mask, why, lambda m, t=text, c=name, w=what: f"{c} is " + quoted(t, m) + f" {w}")
    if "lon" in columns:
        lon, lat = columns["lon"], columns["lat"]
        with np.errstate(invalid="ignore"):
            out = (np.abs(lon) > 180) | (np.abs(lat) > 90)
        flag(
            out,
            "lon/lat out of range",
            lambda m: np.array(
                [f"lon {a} lat {b} outside -180..180 / -90..90" for a, b in zip(lon[m], lat[m], strict=True)],
                dtype=object,
            ),
        )

    bad_rows = reason != ""
    if bad_rows.any():
        idx = np.flatnonzero(bad_rows)
        for why in pd.unique(reason[idx]):
            sel = idx[reason[idx] == why]
            for k, i in enumerate(sel):
                if len(problems.examples) >= MAX_EXAMPLES:
                    problems.add(why, "", len(sel) - k)
                    break
                problems.add(why, f"line {line_numbers[i]}: {detail[i]}")
    keep = ~bad_rows & ~blank
    stats.rows += int((~blank).sum())
    stats.malformed += int(bad_rows.sum())

    frame = pd.DataFrame(index=pd.RangeIndex(int(keep.sum())))
    for name in STANDARD_COLUMNS:
        if name not in columns:
            if name in TEXT_COLUMNS:
                frame[name] = pd.Series([None] * len(frame), dtype=object)
            elif name in INTEGER_COLUMNS:
                frame[name] = pd.array([pd.NA] * len(frame), dtype="Int64")
            else:
                frame[name] = np.full(len(frame), np.nan)
            continue
        values = columns[name]
        if name in TEXT_COLUMNS:
            frame[name] = values.to_numpy(dtype=object)[keep]
        elif name == "surveyId":
            frame[name] = _as_int64(values, exact.get(name))[keep]
        elif name in INTEGER_COLUMNS:
            kept = values[keep]
            frame[name] = pd.array(_as_int64(values, exact.get(name))[keep], dtype="Int64")
            frame.loc[np.isnan(kept), name] = pd.NA
        else:
            kept = values[keep].copy()
            if name == "areaInM2":
                inf = np.isinf(kept)
                stats.infinite_area += int(inf.sum())
                kept[inf] = np.nan
            frame[name] = kept
    frame.index = pd.Index(line_numbers[keep], name="line")
    return frame
