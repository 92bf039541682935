"""The streaming reader of PA / PO metadata CSVs: typed frames of the standard columns.

The file is read in byte blocks; the fields of every line are counted with numpy (commas
per line) and the block is parsed by pandas' C parser with as many columns as its widest
line, so a row of the wrong width is caught wherever it is, at numpy speed. A block holding
a double quote (quoted fields may hold commas or line breaks) sends the rest of the file to
Python's ``csv`` reader, which counts each row's fields itself.
"""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Iterator

import numpy as np
import pandas as pd

from ...errors import InputDataError
from ...modelcard import shorten
from ...progress import as_progress
from .rows import REQUIRED_COLUMNS, STANDARD_COLUMNS, Problems, ReadStats, validate_chunk

# Every field read as raw text (values are validated by our own parsing), line numbers kept.
_AS_TEXT = dict(
    index_col=False,
    dtype=str,
    keep_default_na=False,
    na_filter=False,
    skip_blank_lines=False,
    encoding="utf-8-sig",
)
#: bytes read at a time by :func:`read_observations`; a chunk (a frame) is at most a block's
#: lines. A 400,000-row PO-like file (32 MB), peak RSS / CPU s (min of 4, 2 cores) of
#: reading and of survey_table: the former pandas chunked reader (100,000 rows) 146 MB
#: 2.9 s, 168 MB 3.8 s; 4 MB blocks (~50,000 rows) 150-160 MB 3.0 s, 178 MB 3.6 s. 16 MB
#: blocks cut in 100,000-row chunks peaked at 235 MB, 100,000-row chunks of 2 MB blocks at
#: 195 MB; 2 MB blocks alone made survey_table ~25% slower (more, smaller frames)
BLOCK_BYTES = 4 * 1024 * 1024


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
    problems = Problems()
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
            frame = validate_chunk(raw, header, next_line, problems, stats, np.where(empty, width, fields))
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
        frame = validate_chunk(raw, header, np.array(lines), problems, stats)
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
