"""Which raster band holds each variable a model (or a sampling run) needs.

Rules (docs/model-contract.md): a band whose description equals the variable name, else a
one-band raster whose file name without extension equals it; names compare ignoring case,
``_``, ``-`` and spaces. An explicit mapping (``var=path[#band];...`` or a CSV file
``variable,path,band``) overrides both. A raster entry that is a folder stands for every
raster file directly in it (:func:`expand_rasters`), e.g. one GeoTIFF per month of a
climate cube named after its element (``tas_2018-01.tif``).
"""

from __future__ import annotations

import csv
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import rasterio

from .errors import InputDataError

_IGNORED = re.compile(r"[\s_\-]+")


@dataclass(frozen=True)
class BandRef:
    """One band of one raster file; ``band`` is 1-based as in GDAL."""

    path: str
    band: int = 1

    def __str__(self) -> str:
        return f"{self.path}#{self.band}"


def normalise_name(s: str) -> str:
    """The form names are compared in: lower case, without ``_``, ``-`` or spaces."""
    return _IGNORED.sub("", str(s)).casefold()


def _stem(path: str) -> str:
    name = os.path.basename(str(path).rstrip("/\\"))
    stem, ext = os.path.splitext(name)
    return stem if ext else name


def raster_band_names(path) -> list[str]:
    """The band descriptions of a raster ("" for a band without one)."""
    path = os.fspath(path)
    try:
        with rasterio.open(path) as src:
            return [d or "" for d in src.descriptions]
    except rasterio.errors.RasterioIOError as error:
        raise InputDataError(f"Cannot open the raster '{path}': {error}") from None


#: file extensions of the rasters a folder given as a raster stands for
RASTER_EXTENSIONS = (".tif", ".tiff", ".vrt", ".img", ".jp2", ".nc", ".asc", ".bil", ".gpkg")


def expand_rasters(raster_paths: Iterable) -> list[str]:
    """The raster paths with each folder replaced by the raster files directly in it
    (extensions :data:`RASTER_EXTENSIONS`, not hidden, by name); other entries as given."""
    out: list[str] = []
    for p in raster_paths:
        path = os.fspath(p)
        if os.path.isdir(path):
            try:
                names = sorted(os.listdir(path))
            except OSError as error:
                raise InputDataError(f"Cannot list the raster folder '{path}': {error.strerror}.") from None
            found = [
                os.path.join(path, n)
                for n in names
                if not n.startswith(".")
                and n.lower().endswith(RASTER_EXTENSIONS)
                and os.path.isfile(os.path.join(path, n))
            ]
            if not found:
                raise InputDataError(
                    f"The raster folder '{path}' holds no raster file ({', '.join(RASTER_EXTENSIONS)})."
                )
            out.extend(found)
        else:
            out.append(path)
    return out


def _catalogue(raster_paths: Iterable) -> list[tuple[str, list[str]]]:
    return [(p, raster_band_names(p)) for p in expand_rasters(raster_paths)]


class _Index:
    """Band descriptions and one-band file stems of a catalogue, by normalised name (the
    first in raster and band order wins, as the rules say)."""

    def __init__(self, catalogue: list[tuple[str, list[str]]]):
        self.described: dict[str, BandRef] = {}
        self.stems: dict[str, BandRef] = {}
        for path, descriptions in catalogue:
            for i, description in enumerate(descriptions):
                if description:
                    self.described.setdefault(normalise_name(description), BandRef(path, i + 1))
            if len(descriptions) == 1:
                self.stems.setdefault(normalise_name(_stem(path)), BandRef(path, 1))

    def find(self, name: str) -> BandRef | None:
        key = normalise_name(name)
        if not key:
            return None
        return self.described.get(key) or self.stems.get(key)


def find_band(name: str, raster_paths: Sequence) -> BandRef | None:
    """The band holding variable ``name`` among ``raster_paths``, or None.

    First a band whose description matches (rasters and bands in order), else a one-band
    raster whose file stem matches.
    """
    return find_bands([name], raster_paths)[name]


def find_bands(names: Sequence[str], raster_paths: Sequence) -> dict[str, BandRef | None]:
    """:func:`find_band` for several names, each raster opened once for all of them."""
    index = _Index(_catalogue(raster_paths))
    return {name: index.find(name) for name in names}


def _line_of_byte(path: str, offset: int) -> int:
    """The 1-based line holding byte ``offset`` of a file (for a decoding error's message)."""
    try:
        with open(path, "rb") as f:
            return f.read(max(0, offset)).count(b"\n") + 1
    except OSError:
        return 1


def _parse_band(text: str, where: str) -> int:
    text = text.strip()
    if not text:
        return 1
    try:
        band = int(text)
    except ValueError:
        band = 0
    if band < 1:
        raise InputDataError(f"MAPPING {where}: band must be a whole number from 1, not '{text}'.")
    return band


def _parse_csv(path: str) -> dict[str, BandRef]:
    base = os.path.dirname(os.path.abspath(path))
    mapping: dict[str, BandRef] = {}
    name = os.path.basename(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except OSError as error:
        raise InputDataError(f"Cannot read the MAPPING file '{path}': {error.strerror}.") from None
    except UnicodeDecodeError as error:
        line = _line_of_byte(path, error.start)
        raise InputDataError(
            f"The MAPPING file '{name}' is not UTF-8 text (line {line} has bytes that are not UTF-8 "
            f"characters; is it a binary file?). Give a CSV file 'variable,path,band' saved as UTF-8."
        ) from None
    except csv.Error as error:
        raise InputDataError(
            f"The MAPPING file '{name}' is not a readable CSV ({error}; is it a binary file?). Give a CSV "
            f"file 'variable,path,band' saved as UTF-8."
        ) from None
    for line, row in enumerate(rows, start=1):
        cells = [c.strip() for c in row]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if line == 1 and [c.lower() for c in cells[:2]] == ["variable", "path"]:
            continue  # header
        where = f"file '{name}' line {line}"
        if any("\x00" in c for c in cells):
            raise InputDataError(
                f"MAPPING {where} holds a NUL byte: this is not a text file (a binary file?). Give a CSV "
                f"file 'variable,path,band' saved as UTF-8."
            )
        if len(cells) < 2 or not cells[0] or not cells[1] or len(cells) > 3:
            raise InputDataError(f"MAPPING {where}: expected 'variable,path[,band]', got '{','.join(row)}'.")
        band = _parse_band(cells[2] if len(cells) > 2 else "", where)
        raster = cells[1]
        if not os.path.isabs(raster) and not raster.startswith("/vsi"):
            raster = os.path.join(base, raster)
        mapping[cells[0]] = BandRef(raster, band)
    return mapping


def parse_mapping(text) -> dict[str, BandRef]:
    """Parse a MAPPING: ``var=path[#band]`` pairs separated by ``;`` (or new lines), or a
    CSV file ``variable,path,band`` (header and band optional; relative paths are relative
    to the CSV). Empty -> {}. Malformed entries -> :class:`InputDataError`.
    """
    if text is None:
        return {}
    text = os.fspath(text) if isinstance(text, os.PathLike) else str(text)
    if not text.strip():
        return {}
    candidate = text.strip().strip('"')
    if os.path.isfile(candidate):
        return _parse_csv(candidate)
    if os.path.isdir(candidate):
        raise InputDataError(
            f"The MAPPING '{candidate}' is a folder. Give a CSV file 'variable,path,band', or "
            f"'variable=path[#band]' pairs separated by ';'."
        )
    if "=" not in candidate and "\n" not in candidate and ";" not in candidate:
        if candidate.lower().endswith((".csv", ".txt")):
            raise InputDataError(f"The MAPPING file '{candidate}' does not exist.")
    mapping: dict[str, BandRef] = {}
    for i, entry in enumerate(re.split(r"[;\n]", text), start=1):
        entry = entry.strip()
        if not entry:
            continue
        where = f"entry {i} '{entry}'"
        if "\x00" in entry:
            raise InputDataError(f"MAPPING entry {i} holds a NUL byte; give 'variable=path[#band]' as text.")
        variable, sep, target = entry.partition("=")
        variable, target = variable.strip(), target.strip().strip('"')
        if not sep or not variable or not target:
            raise InputDataError(f"MAPPING {where}: expected 'variable=path' or 'variable=path#band'.")
        path, hash_, band_text = target.rpartition("#")
        if hash_ and path and band_text.strip().lstrip("-").isdigit():
            band = _parse_band(band_text, where)
        elif hash_ and path and not band_text.strip():
            raise InputDataError(f"MAPPING {where}: a band number must follow '#'.")
        elif hash_ and path and not os.path.exists(target) and not re.search(r"[./\\]", band_text):
            raise InputDataError(
                f"MAPPING {where}: the band after '#' must be a whole number from 1, "
                f"not '{band_text.strip()}'."
            )
        else:
            path, band = target, 1
        mapping[variable] = BandRef(path.strip(), band)
    return mapping


def _check_ref(variable: str, ref: BandRef) -> BandRef:
    try:
        with rasterio.open(ref.path) as src:
            count = src.count
    except rasterio.errors.RasterioIOError:
        path = str(ref.path)
        reason = (
            "no such file"
            if not path.startswith("/vsi") and not os.path.exists(path)
            else "a folder, not a raster"
            if os.path.isdir(path)
            else "not a raster GDAL can read"
        )
        raise InputDataError(
            f"MAPPING for '{variable}': cannot open the raster '{ref.path}' ({reason}). Give the path of a "
            f"raster file, e.g. '{variable}=/path/to/raster.tif#1'."
        ) from None
    if ref.band > count:
        raise InputDataError(
            f"MAPPING for '{variable}': '{ref.path}' has {count} band(s), there is no band {ref.band}."
        )
    return ref


def locate_variables(
    names: Sequence[str], raster_paths: Sequence, mapping=None
) -> tuple[dict[str, BandRef], list[str], list[tuple[str, list[str]]]]:
    """(every name found -> its band, the names not found, the catalogue of the rasters
    opened): :func:`resolve_variables` without the error, for callers that word the
    missing names themselves (a cube's, grouped)."""
    if mapping is None or isinstance(mapping, str | os.PathLike):
        mapping = parse_mapping(mapping)
    by_key = {normalise_name(k): (k, v) for k, v in mapping.items()}
    catalogue: list[tuple[str, list[str]]] = []
    index = None  # the rasters are opened only when a name is not in the mapping
    resolved: dict[str, BandRef] = {}
    missing: list[str] = []
    for name in names:
        if name in resolved:
            continue
        hit = by_key.get(normalise_name(name))
        if hit is not None:
            resolved[name] = _check_ref(name, hit[1])
            continue
        if index is None:
            catalogue = _catalogue(raster_paths)
            index = _Index(catalogue)
        ref = index.find(name)
        if ref is None:
            missing.append(name)
        else:
            resolved[name] = ref
    return resolved, missing, catalogue


def available_text(catalogue: list[tuple[str, list[str]]], limit: int = 0) -> str:
    """What the rasters offer, for a message (``limit`` rasters at most; 0: all)."""
    available = []
    shown = catalogue if not limit else catalogue[:limit]
    for path, descriptions in shown:
        named = [d for d in descriptions if d]
        if named:
            more = f" and {len(named) - 12} more" if len(named) > 12 and limit else ""
            available.append(
                f"{os.path.basename(path)} (bands: {', '.join(named[:12] if limit else named)}{more})"
            )
        elif len(descriptions) == 1:
            available.append(f"{os.path.basename(path)} (one band, name '{_stem(path)}')")
        else:
            available.append(f"{os.path.basename(path)} ({len(descriptions)} bands without descriptions)")
    if limit and len(catalogue) > limit:
        available.append(f"and {len(catalogue) - limit:,} more rasters")
    return "; ".join(available) or "no rasters given"


def resolve_variables(names: Sequence[str], raster_paths: Sequence, mapping=None) -> dict[str, BandRef]:
    """Every name -> its band. ``mapping`` (a dict from :func:`parse_mapping`, or its text)
    overrides the description / file-name rules. Missing names -> :class:`InputDataError`
    listing all of them and what was available.
    """
    resolved, missing, catalogue = locate_variables(names, raster_paths, mapping)
    if missing:
        raise InputDataError(
            f"{len(missing)} variable(s) not found in the rasters: {', '.join(missing)}. "
            f"A variable is a band whose description is its name, or a one-band raster named after it "
            f"(case, '_', '-' and spaces ignored). Available: {available_text(catalogue)}. "
            f"Give the rest with MAPPING, e.g. '{missing[0]}=/path/to/raster.tif#1'."
        )
    return resolved


def unused_mapping_names(names: Sequence[str], mapping) -> list[str]:
    """MAPPING entries that name none of ``names`` (a typo, or a variable of another model)."""
    if mapping is None or isinstance(mapping, str | os.PathLike):
        mapping = parse_mapping(mapping)
    wanted = {normalise_name(n) for n in names}
    return [k for k in mapping if normalise_name(k) not in wanted]
