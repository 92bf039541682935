"""GeoPlant / GeoLifeCLEF presence-absence and presence-only metadata CSVs, streamed.

Columns (GLC24/GLC25): ``lon,lat,year,geoUncertaintyInM,areaInM2,region,country,
speciesId,surveyId``; GeoPlant adds ``county,district``, PO files add publisher, date,
... (ignored here). One row per (survey, species); ``speciesId`` is written as a float
(``6310.0``); test files have no ``speciesId`` column. Coordinates are WGS84.

Decisions (see docs/geoplant-formats.md):

* required columns are ``lon``, ``lat`` and ``surveyId``; the other standard columns are
  optional (filled with empty values when absent);
* ``areaInM2`` written as ``-inf`` (or ``inf``) means "unknown" in the dataset: it is read
  as NaN (an empty field in a GeoPackage), like an empty ``areaInM2``; the count is reported;
* a row is malformed when a required value is missing, a numeric column holds text, an id
  or the year is not a whole number or lies outside the 64-bit integer range
  (-9223372036854775808..9223372036854775807), lon/lat are out of range, or the row has
  more or fewer fields than the header (at any line). Malformed rows are skipped, counted,
  and reported with examples through ``progress.warning`` at the end of the file, never
  silently. Blank lines are not rows.

Reading: the file is read in byte blocks; the fields of every line are counted with numpy
(commas per line) and the block is parsed by pandas' C parser with as many columns as its
widest line, so a row of the wrong width is caught wherever it is, at numpy speed. A block
holding a double quote (quoted fields may hold commas or line breaks) sends the rest of
the file to Python's ``csv`` reader, which counts each row's fields itself.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

import numpy as np
import pandas as pd

from ..errors import InputDataError
from ..modelcard import shorten
from ..progress import as_progress

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
# Every field read as raw text (values are validated by our own parsing), line numbers kept.
_AS_TEXT = dict(
    index_col=False,
    dtype=str,
    keep_default_na=False,
    na_filter=False,
    skip_blank_lines=False,
    encoding="utf-8-sig",
)
FLOAT_COLUMNS = ("lon", "lat", "geoUncertaintyInM", "areaInM2")
INTEGER_COLUMNS = ("year", "speciesId", "surveyId")
TEXT_COLUMNS = ("region", "country")
#: survey attributes of the aggregated table, in output order
SURVEY_COLUMNS = (
    "surveyId",
    "lon",
    "lat",
    "year",
    "country",
    "region",
    "geoUncertaintyInM",
    "areaInM2",
    "speciesIds",
    "richness",
)
EMPTY_TOKENS = frozenset({"", "nan", "NaN", "NAN", "NA", "N/A", "null", "NULL", "None"})
MAX_EXAMPLES = 5
#: bytes read at a time by :func:`read_observations`; a chunk (a frame) is at most a block's
#: lines. A 400,000-row PO-like file (32 MB), peak RSS / CPU s (min of 4, 2 cores) of
#: reading and of survey_table: the former pandas chunked reader (100,000 rows) 146 MB
#: 2.9 s, 168 MB 3.8 s; 4 MB blocks (~50,000 rows) 150-160 MB 3.0 s, 178 MB 3.6 s. 16 MB
#: blocks cut in 100,000-row chunks peaked at 235 MB, 100,000-row chunks of 2 MB blocks at
#: 195 MB; 2 MB blocks alone made survey_table ~25% slower (more, smaller frames)
BLOCK_BYTES = 4 * 1024 * 1024
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
#: float64 holds every whole number below this exactly; larger ids are read from their text
_EXACT_FLOAT = 2.0**53


def _read_header(path) -> list[str]:
    try:
        with open(path, newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle), None)
    except FileNotFoundError:
        raise InputDataError(f"Observations file not found: {path}") from None
    except IsADirectoryError:
        raise InputDataError(f"{path} is a folder, not an observations CSV file.") from None
    except UnicodeDecodeError:
        raise InputDataError(f"{path} is not a UTF-8 text CSV file.") from None
    if not header:
        raise InputDataError(f"Observations file {path} is empty (no header line).")
    return [name.strip() for name in header]


def check_columns(path) -> list[str]:
    """The header of ``path``; :class:`InputDataError` naming missing required columns."""
    header = _read_header(path)
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise InputDataError(
            f"{os.path.basename(os.fspath(path))} lacks the required column(s) {', '.join(missing)} "
            f"(found: {', '.join(header) or 'none'}). GeoPlant observation files have "
            f"{', '.join(STANDARD_COLUMNS)}."
        )
    return header


class _Problems:
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
    """What a pass over a file found (filled while :func:`read_observations` runs)."""

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


def _validate_chunk(
    raw: pd.DataFrame, header: list[str], first_line, problems: _Problems, stats, fields=None
):
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


def _filter_bounds(frame: pd.DataFrame, bounds, stats) -> pd.DataFrame:
    if bounds is None:
        return frame
    lon_min, lat_min, lon_max, lat_max = (float(b) for b in bounds)
    inside = frame["lon"].between(lon_min, lon_max) & frame["lat"].between(lat_min, lat_max)
    stats.outside_bounds += int((~inside).sum())
    return frame[inside.to_numpy()]


def _check_bounds(bounds):
    if bounds is None:
        return
    try:
        lon_min, lat_min, lon_max, lat_max = (float(b) for b in bounds)
    except (TypeError, ValueError):
        raise InputDataError(
            f"Bounds must be (lon_min, lat_min, lon_max, lat_max); got {bounds!r}."
        ) from None
    if not (lon_min <= lon_max and lat_min <= lat_max):
        raise InputDataError(f"Empty bounds {bounds!r}: minimum above maximum.")


def read_observations(
    path, chunksize: int = 100_000, progress=None, bounds=None, stats: ReadStats | None = None
) -> Iterator[pd.DataFrame]:
    """Stream a PA/PO metadata CSV as typed frames of the standard columns.

    Each yielded frame has the columns of :data:`STANDARD_COLUMNS` (lon, lat, areaInM2 ...
    float64; year, speciesId nullable Int64; surveyId int64; region, country object)
    indexed by the file line number. Malformed rows are skipped and reported through
    ``progress.warning`` when the file is exhausted; ``bounds`` = (lon_min, lat_min,
    lon_max, lat_max) keeps the rows inside (edges included). Pass a :class:`ReadStats`
    to get the counts.
    """
    progress = as_progress(progress)
    stats = stats if stats is not None else ReadStats()
    _check_bounds(bounds)
    header = check_columns(path)
    if len(set(header)) != len(header):
        dupes = sorted({c for c in header if header.count(c) > 1})
        raise InputDataError(f"{os.path.basename(os.fspath(path))} repeats the column(s) {', '.join(dupes)}.")
    stats.has_species = "speciesId" in header
    if not stats.has_species:
        progress.info(
            f"{os.path.basename(os.fspath(path))} has no speciesId column (a test file?): surveys only."
        )
    name = os.path.basename(os.fspath(path))
    size = max(os.path.getsize(path), 1)
    problems = _Problems()
    width = len(header)
    next_line = 2  # the file line of the next row
    with open(path, "rb") as handle:
        handle.readline()  # the header (read above)
        offset = handle.tell()  # the file offset of line next_line
        slow = False
        for parts in _pieces(handle, chunksize):
            progress.check_cancelled()
            if any(b'"' in part[0] for part in parts):  # quoted fields: the rest by the csv module
                slow = True
                break
            fields = np.concatenate([part[1] for part in parts]) if len(parts) > 1 else parts[0][1]
            empty = np.concatenate([part[2] for part in parts]) if len(parts) > 1 else parts[0][2]
            try:
                raws = [_parse(piece, fields_, empty_, header) for piece, fields_, empty_ in parts]
            except UnicodeDecodeError:
                raise InputDataError(f"{name} is not UTF-8 text near line {next_line}.") from None
            except (pd.errors.ParserError, ValueError):  # pragma: no cover - lines counted above
                slow = True
                break
            raw = pd.concat(raws, ignore_index=True) if len(raws) > 1 else raws[0]
            if len(raw) != len(fields):  # pragma: no cover - a line break pandas does not see as ours
                slow = True
                break
            offset += sum(len(part[0]) for part in parts)
            frame = _validate_chunk(raw, header, next_line, problems, stats, np.where(empty, width, fields))
            del raw, raws, parts  # the text of the chunk, before the next one is read
            next_line += len(fields)
            frame = _filter_bounds(frame, bounds, stats)
            stats.kept += len(frame)
            progress.set_progress(100.0 * min(offset / size, 1.0))
            if len(frame):
                yield frame
    if slow:
        yield from _read_rest_csv(
            path, offset, next_line, header, chunksize, progress, bounds, stats, problems
        )
    problems.report(progress, name, stats.rows)
    if stats.infinite_area:
        progress.info(
            f"{name}: {stats.infinite_area} row(s) have areaInM2 = -inf (unknown area), read as empty."
        )
    if bounds is not None:
        progress.info(f"{name}: {stats.outside_bounds} row(s) outside the extent left out.")


def _pieces(handle, chunksize: int, block: int | None = None):
    """Lists of (bytes of whole lines, fields per line, empty lines) of at most ``chunksize``
    lines in all and at most one block's, from ``handle``'s position on, read ``block``
    bytes at a time (a list holds one item per block it draws from: parsed apart).
    Fields are counted as commas + 1 (right unless the bytes hold a double quote: the
    caller checks); an empty line is one without a character (or a lone carriage return)."""
    chunksize = max(1, int(chunksize))
    block = int(block or BLOCK_BYTES)
    carry = b""
    parts: list = []  # the lines not yet handed out
    counted = 0
    while True:
        data = handle.read(block)
        buf = carry + data
        if not data and buf and not buf.endswith(b"\n"):
            buf += b"\n"
        view = np.frombuffer(buf, np.uint8)
        ends = np.flatnonzero(view == 10)
        carry = buf[ends[-1] + 1 :] if len(ends) else buf
        if len(ends):
            starts = np.empty_like(ends)
            starts[0], starts[1:] = 0, ends[:-1] + 1
            # commas per line + 1 (the comma positions: a tenth of reduceat's time on a bool mask)
            per_line = np.diff(np.searchsorted(np.flatnonzero(view == 44), ends), prepend=0) + 1
            length = ends - starts
            carriage = length > 0
            carriage[carriage] = view[ends[carriage] - 1] == 13
            empty = (length - carriage) == 0
            first = 0
            while first < len(ends):
                last = first + min(chunksize - counted, len(ends) - first)
                piece = buf[starts[first] : ends[last - 1] + 1]
                parts.append((piece, per_line[first:last], empty[first:last]))
                counted += last - first
                first = last
                if counted == chunksize:
                    yield parts
                    parts, counted = [], 0
            if parts:  # chunks end with a block (see BLOCK_BYTES)
                yield parts
                parts, counted = [], 0
        if not data:
            if counted:
                yield parts
            return


def _parse(piece: bytes, fields, empty, header: list[str]) -> pd.DataFrame:
    """The header's columns of lines without a double quote, as text (pandas' C parser)."""
    width = len(header)
    if empty.all():  # blank lines only (pandas would see no columns)
        return pd.DataFrame({c: np.full(len(empty), "", dtype=object) for c in header})
    extra = max(0, int(fields.max()) - width)
    names = header + [f"\x00extra{i}" for i in range(extra)]
    raw = pd.read_csv(io.BytesIO(piece), header=None, names=names, **_AS_TEXT, on_bad_lines="error")
    return raw[header] if extra else raw


def _read_rest_csv(path, offset, first_line, header, chunksize, progress, bounds, stats, problems):
    """Rows from byte ``offset`` (file line ``first_line``) on with Python's csv reader,
    which reads quoted fields (commas, line breaks inside) and gives each row's fields."""
    name = os.path.basename(os.fspath(path))
    width = len(header)
    size = max(os.path.getsize(path), 1)
    rows: list = []
    lines: list = []

    def chunk():
        raw = pd.DataFrame(rows, columns=header, dtype=object)
        frame = _validate_chunk(raw, header, np.array(lines), problems, stats)
        rows.clear()
        lines.clear()
        frame = _filter_bounds(frame, bounds, stats)
        stats.kept += len(frame)
        return frame

    with open(path, "rb") as binary:
        binary.seek(offset)
        text = io.TextIOWrapper(binary, encoding="utf-8", newline="")
        reader = csv.reader(text)
        done = 0  # physical lines read before the current row
        try:
            for fields in reader:
                line = first_line + done
                done = reader.line_num
                if not fields:  # a blank line
                    continue
                if len(fields) != width:
                    stats.rows += 1
                    stats.malformed += 1
                    why = "too many fields" if len(fields) > width else "too few fields"
                    problems.add(why, f"line {line}: {len(fields)} fields, the header has {width}")
                    continue
                rows.append(fields)
                lines.append(line)
                if len(rows) >= chunksize:
                    progress.check_cancelled()
                    frame = chunk()
                    progress.set_progress(100.0 * min(binary.tell() / size, 1.0))
                    if len(frame):
                        yield frame
        except UnicodeDecodeError:
            raise InputDataError(f"{name} is not UTF-8 text near line {first_line + done}.") from None
        except csv.Error as error:
            raise InputDataError(
                f"{name}: line {first_line + done} cannot be read as CSV ({shorten(error)})."
            ) from None
    if rows:
        frame = chunk()
        if len(frame):
            yield frame


@dataclass
class SurveyTable:
    """Surveys in compressed form: attributes plus species ids in CSR layout.

    ``attributes`` has one row per survey (sorted by surveyId; columns of
    :data:`SURVEY_COLUMNS` except speciesIds/richness); the species of survey ``i`` are
    ``species[offsets[i]:offsets[i + 1]]`` (distinct, ascending).
    """

    attributes: pd.DataFrame
    offsets: np.ndarray
    species: np.ndarray

    def __len__(self):
        return len(self.attributes)

    @property
    def richness(self) -> np.ndarray:
        return np.diff(self.offsets).astype(np.int64)

    def species_strings(self, start: int = 0, stop: int | None = None) -> list[str]:
        """Space-separated species ids of surveys ``start..stop`` (for GIS attribute tables)."""
        stop = len(self) if stop is None else stop
        flat = self.species[self.offsets[start] : self.offsets[stop]].astype(str).tolist()
        base = self.offsets[start]
        return [
            " ".join(flat[a - base : b - base])
            for a, b in zip(self.offsets[start:stop], self.offsets[start + 1 : stop + 1], strict=True)
        ]

    def to_frame(self) -> pd.DataFrame:
        frame = self.attributes.copy()
        flat = self.species.tolist()
        frame["speciesIds"] = [flat[a:b] for a, b in zip(self.offsets[:-1], self.offsets[1:], strict=True)]
        frame["richness"] = self.richness
        return frame.reset_index(drop=True)[list(SURVEY_COLUMNS)]


_ATTRIBUTE_COLUMNS = [c for c in SURVEY_COLUMNS if c not in ("speciesIds", "richness")]


def _merge_attributes(parts: list[pd.DataFrame], conflicts: dict) -> pd.DataFrame:
    """Concatenate per-chunk survey attributes; the first row of a survey wins.

    Surveys seen at more than one position are recorded in ``conflicts`` (id -> positions).
    """
    if len(parts) > 1:
        for column in TEXT_COLUMNS:
            union = pd.api.types.union_categoricals(
                [p[column].astype("category") for p in parts], ignore_order=True
            )
            for p in parts:
                p[column] = pd.Categorical(p[column], categories=union.categories)
        merged = pd.concat(parts, ignore_index=True)
    else:
        merged = parts[0]
    positions = merged.drop_duplicates(["surveyId", "lon", "lat"], keep="first")
    repeated = positions["surveyId"].duplicated(keep=False).to_numpy()
    if repeated.any():
        for survey, lon, lat in positions.loc[repeated, ["surveyId", "lon", "lat"]].itertuples(index=False):
            conflicts.setdefault(int(survey), [])
            if len(conflicts[int(survey)]) < 3:
                conflicts[int(survey)].append((lon, lat))
    return positions.drop_duplicates("surveyId", keep="first")


def _merge_pairs(parts: list[np.ndarray]) -> np.ndarray:
    pairs = np.concatenate(parts) if len(parts) > 1 else parts[0]
    return np.unique(pairs, axis=0) if len(pairs) else pairs


def survey_table(path, progress=None, bounds=None, chunksize: int = 100_000, stats=None) -> SurveyTable:
    """Aggregate a PA/PO file into one record per survey, streaming with bounded memory.

    Memory grows with the number of surveys and distinct (survey, species) pairs, not
    with the number of rows. Attributes are those of the survey's first valid row.
    """
    progress = as_progress(progress)
    stats = stats if stats is not None else ReadStats()
    attribute_parts: list[pd.DataFrame] = []
    pair_parts: list[np.ndarray] = []
    pending_rows = 0
    conflicts: dict[int, list] = {}
    for frame in read_observations(path, chunksize=chunksize, progress=progress, bounds=bounds, stats=stats):
        attrs = frame.drop_duplicates(["surveyId", "lon", "lat"], keep="first")[_ATTRIBUTE_COLUMNS]
        attrs = attrs.reset_index(drop=True)
        for column in TEXT_COLUMNS:
            attrs[column] = attrs[column].astype("category")
        attribute_parts.append(attrs)
        if stats.has_species:
            pairs = np.column_stack(
                [frame["surveyId"].to_numpy(np.int64), frame["speciesId"].to_numpy(np.int64)]
            )
            pair_parts.append(np.unique(pairs, axis=0))
        pending_rows += len(frame)
        if len(attribute_parts) >= 16 or pending_rows >= 2_000_000:
            attribute_parts = [_merge_attributes(attribute_parts, conflicts)]
            if pair_parts:
                pair_parts = [_merge_pairs(pair_parts)]
            pending_rows = 0
    if not attribute_parts:
        empty = pd.DataFrame({c: pd.Series(dtype=object) for c in _ATTRIBUTE_COLUMNS})
        empty["surveyId"] = empty["surveyId"].astype(np.int64)
        return SurveyTable(empty, np.zeros(1, np.int64), np.zeros(0, np.int64))
    attributes = (
        _merge_attributes(attribute_parts, conflicts)
        .sort_values("surveyId", kind="stable")
        .reset_index(drop=True)
    )
    for column in TEXT_COLUMNS:
        attributes[column] = attributes[column].astype(object).where(attributes[column].notna(), None)
    survey_ids = attributes["surveyId"].to_numpy(np.int64)
    if conflicts:
        examples = "; ".join(
            f"survey {sid} at " + ", ".join(f"({lon}, {lat})" for lon, lat in where)
            for sid, where in list(conflicts.items())[:MAX_EXAMPLES]
        )
        progress.warning(
            f"{len(conflicts)} survey(s) have rows at different positions; the first row's position "
            f"is used. Examples: {examples}"
        )
    if pair_parts:
        pairs = _merge_pairs(pair_parts)  # sorted by survey then species, distinct
        species = pairs[:, 1].copy()
        counts = np.bincount(np.searchsorted(survey_ids, pairs[:, 0]), minlength=len(survey_ids))
    else:
        species = np.zeros(0, np.int64)
        counts = np.zeros(len(survey_ids), np.int64)
    offsets = np.zeros(len(survey_ids) + 1, np.int64)
    np.cumsum(counts, out=offsets[1:])
    progress.info(f"{len(survey_ids)} survey(s), {len(species)} (survey, species) pair(s).")
    return SurveyTable(attributes, offsets, species)


def aggregate_surveys(path, progress=None, bounds=None, chunksize: int = 100_000) -> pd.DataFrame:
    """One row per survey: surveyId, lon, lat, year, country, region, geoUncertaintyInM,
    areaInM2, speciesIds (sorted list of distinct ints, empty without a speciesId column),
    richness (number of distinct species). Streams the file; sorted by surveyId."""
    return survey_table(path, progress=progress, bounds=bounds, chunksize=chunksize).to_frame()
