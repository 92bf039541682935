"""Species names for a card from a CSV ``speciesId,name`` (header optional)."""

from __future__ import annotations

import csv
import os

from .errors import ConversionError

ID_COLUMNS = ("speciesid", "species_id", "id")
NAME_COLUMNS = ("name", "species", "scientificname", "speciesname")


def read_names(path, num_classes: int) -> dict[int, str]:
    """``{speciesId: name}`` from ``path``; ids must be whole numbers in 0..num_classes-1
    (the model's output index is the speciesId), each given once."""
    path = os.fspath(path)
    base = os.path.basename(path)
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            sample = handle.read(65536)
            handle.seek(0)
            try:
                delimiter = csv.Sniffer().sniff(sample, delimiters=",;\t").delimiter
            except csv.Error:
                delimiter = ","
            rows = list(csv.reader(handle, delimiter=delimiter))
    except FileNotFoundError:
        raise ConversionError(f"Species file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConversionError(f"Cannot read the species file {base}: {error}") from None
    rows = [r for r in rows if any(c.strip() for c in r)]
    if not rows:
        raise ConversionError(f"The species file {base} is empty: give one 'speciesId,name' row per species.")
    id_col, name_col, start = 0, 1, 0
    header = [c.strip().casefold() for c in rows[0]]
    if not _whole(rows[0][0]):
        id_col = next((header.index(c) for c in ID_COLUMNS if c in header), None)
        name_col = next((header.index(c) for c in NAME_COLUMNS if c in header), None)
        if id_col is None or name_col is None:
            raise ConversionError(
                f"The species file {base} has the header {rows[0]}: it needs the columns speciesId and name."
            )
        start = 1
    names: dict[int, str] = {}
    for line, row in enumerate(rows[start:], start=start + 1):
        if len(row) <= max(id_col, name_col):
            raise ConversionError(f"{base} line {line}: expected 'speciesId,name', found {row}.")
        raw, name = row[id_col].strip(), row[name_col].strip()
        if not _whole(raw):
            raise ConversionError(f"{base} line {line}: speciesId '{raw}' is not a whole number.")
        sid = int(float(raw))
        if not 0 <= sid < num_classes:
            raise ConversionError(
                f"{base} line {line}: speciesId {sid} is outside the model's outputs 0..{num_classes - 1} "
                "(the output index is the speciesId)."
            )
        if sid in names:
            raise ConversionError(f"{base} line {line}: speciesId {sid} is given twice.")
        if name:
            names[sid] = name
    return names


def _whole(text: str) -> bool:
    try:
        value = float(text.strip())
    except ValueError:
        return False
    return value.is_integer()
