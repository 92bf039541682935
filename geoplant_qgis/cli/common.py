"""What the commands share: option text read into core's values (EXTENT, AREA files, points),
the terminal progress, and one way to run a command (signals as cancellation, warnings and
errors as plain lines, an exit status).

Nothing here checks a value core checks: an extent's numbers, a CRS, a cell size... go to
core as given (text), and core's message is the one shown. Imports only the standard
library at module level: ``--help`` stays instant and never loads numpy or GDAL.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from ..core.progress import Progress, report_warnings

#: exit statuses: a refusal or a failed / cancelled run, wrong arguments (argparse's), a bug
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_BUG = 0, 1, 2, 3

_EXTENT_TEXT = re.compile(r"^\s*([^\[\]]*?)\s*(?:\[(.*)\])?\s*$", re.S)


class UsageError(Exception):
    """Option text that cannot be read (the message names the option and the form to give)."""


# --- option text -> core's values ------------------------------------------------------------


def parse_extent(text: str, option: str = "--extent") -> tuple[tuple[str, str, str, str], str | None]:
    """QGIS's EXTENT text 'xmin,xmax,ymin,ymax [CRS]' (x range, then y range) as core's order
    (xmin, ymin, xmax, ymax), still text (core checks the numbers), and the CRS text or None."""
    match = _EXTENT_TEXT.match(text or "")
    numbers = [n.strip() for n in match.group(1).split(",")] if match else []
    if not match or len(numbers) != 4:
        raise UsageError(
            f"{option} '{(text or '').strip()}' has {len(numbers)} number(s); give four: "
            f"'xmin,xmax,ymin,ymax [CRS]', e.g. '3700000,3800000,2600000,2700000 [EPSG:3035]'."
        )
    xmin, xmax, ymin, ymax = numbers
    crs = (match.group(2) or "").strip() or None
    return (xmin, ymin, xmax, ymax), crs


def _crs_text(reference: Any) -> str | None:
    """'EPSG:xxxx' when the CRS has an authority code, else its WKT (QGIS's rule), else None."""
    if reference is None:
        return None
    reference.AutoIdentifyEPSG()
    name, code = reference.GetAuthorityName(None), reference.GetAuthorityCode(None)
    if name and code:
        return f"{name}:{code}"
    return reference.ExportToWkt() or None


@dataclass(frozen=True)
class VectorFile:
    """Geometries (ISO WKB) of one layer of a vector file, its fields' values and its CRS text."""

    path: str
    geometries: tuple[bytes, ...]
    attributes: tuple[dict[str, Any], ...]
    crs: str | None


def read_vector(value: str, option: str) -> VectorFile:
    """A GeoPackage, GeoJSON, shapefile... read with GDAL's ogr: 'FILE' (its first layer) or
    'FILE|layername=NAME' (QGIS's form). Features without a geometry are skipped."""
    from osgeo import ogr

    path, _, rest = value.partition("|")
    layer_name = rest.split("=", 1)[1] if rest.lower().startswith("layername=") else None
    if not os.path.exists(path):
        raise UsageError(f"{option}: no such file: {path}")
    try:
        dataset = ogr.Open(path, 0)
    except RuntimeError as error:  # when something in the process turned OGR's exceptions on
        raise UsageError(f"{option}: {path} cannot be read as a vector file ({error}).") from None
    if dataset is None:
        raise UsageError(f"{option}: {path} cannot be read as a vector file.")
    layer = dataset.GetLayerByName(layer_name) if layer_name else dataset.GetLayer(0)
    if layer is None:
        names = [dataset.GetLayer(i).GetName() for i in range(dataset.GetLayerCount())]
        raise UsageError(
            f"{option}: {path} has no layer {layer_name!r} (layers: {', '.join(names) or 'none'})."
        )
    crs = _crs_text(layer.GetSpatialRef())
    geometries, attributes = [], []
    definition = layer.GetLayerDefn()
    fields = [definition.GetFieldDefn(i).GetName() for i in range(definition.GetFieldCount())]
    for feature in layer:
        geometry = feature.GetGeometryRef()
        if geometry is None or geometry.IsEmpty():
            continue
        geometries.append(bytes(geometry.ExportToIsoWkb()))
        attributes.append({name: feature.GetField(name) for name in fields})
    return VectorFile(path, tuple(geometries), tuple(attributes), crs)


def read_area(value: str, option: str = "--area") -> tuple[tuple[bytes, ...], str | None, str]:
    """The polygons of an AREA file as WKB, the layer's CRS text and the file (for core's check
    that no output overwrites it). Geometries that are not polygons are left to core."""
    vector = read_vector(value, option)
    if not vector.geometries:
        raise UsageError(f"The {option} file {vector.path} has no polygon.")
    return vector.geometries, vector.crs, vector.path


def model_path(value: str | None) -> str:
    """``--model``, else the bundled demo model; UsageError when there is neither."""
    from ..core.bundled import default_model_path

    model = value if value is not None else default_model_path()
    if not model:
        raise UsageError("Give --model (an .onnx file with a geoplant card): no bundled model here.")
    return model


def output_tif(value: str | None, option: str) -> str | None:
    """An output raster path; like geoplant:predict, only GeoTIFF (.tif / .tiff)."""
    if not value:
        return None
    if os.path.splitext(value)[1].lower() not in (".tif", ".tiff"):
        raise UsageError(f"{option} must be a GeoTIFF (.tif) file, not {value}.")
    return value


# --- progress --------------------------------------------------------------------------------


class TerminalProgress(Progress):
    """Core's progress on stderr: a bar redrawn in place (``\\r``) on a terminal; plain lines
    (every 10 %) when stderr is a pipe or a file. Messages are lines in both cases.
    Cancellation comes from termination signals only (:mod:`core.signals`)."""

    WIDTH = 30

    def __init__(self, stream: TextIO | None = None, terminal: bool | None = None, label: str = ""):
        self.stream = stream if stream is not None else sys.stderr
        self.terminal = self._isatty() if terminal is None else terminal
        self.label = label
        self.percent = -1.0
        self._bar_shown = False
        self._next_line = 0
        self._start = time.monotonic()

    def _isatty(self) -> bool:
        try:
            return self.stream.isatty()
        except (AttributeError, ValueError):
            return False

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a closed pipe: the run goes on
            pass

    def set_progress(self, percent: float) -> None:
        percent = max(0.0, min(100.0, float(percent)))
        if self.terminal:
            if int(percent * 10) == int(self.percent * 10):
                return
            self.percent = percent
            filled = int(round(self.WIDTH * percent / 100.0))
            bar = "#" * filled + "-" * (self.WIDTH - filled)
            elapsed = time.monotonic() - self._start
            self._write(f"\r{self.label}[{bar}] {percent:5.1f}% {elapsed:6.1f} s")
            self._bar_shown = True
        else:
            self.percent = percent
            while percent >= self._next_line and self._next_line <= 100:
                self._write(f"{self.label}{self._next_line}%\n")
                self._next_line += 10

    def _line(self, text: str) -> None:
        if self.terminal and self._bar_shown:
            self._write("\r\x1b[2K")  # the bar's line cleared, the message, the bar again below
            self._write(text + "\n")
            self._bar_shown = False
            if self.percent >= 0:
                current, self.percent = self.percent, -1.0
                self.set_progress(current)
        else:
            self._write(text + "\n")

    def info(self, message: str) -> None:
        self._line(message)

    def warning(self, message: str) -> None:
        self._line(f"warning: {message}")

    def finish(self) -> None:
        """Ends the bar's line (a terminal)."""
        if self.terminal and self._bar_shown:
            self._write("\n")
            self._bar_shown = False


# --- running a command -----------------------------------------------------------------------


def run_command(name: str, body: Callable[[TerminalProgress], int], stream: TextIO | None = None) -> int:
    """Run ``body(progress)`` with SIGTERM/SIGHUP as cancellation and every error as a plain
    line on stderr (no traceback; an unexpected one through :func:`core.errors.plain_message`,
    which logs its details). Returns the exit status."""
    from ..core.errors import GeoPlantError, plain_message
    from ..core.signals import cancel_on_signals

    progress = TerminalProgress(stream)
    status = EXIT_FAILED
    with cancel_on_signals(), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            status = body(progress)
        except UsageError as error:
            progress.finish()
            _error(progress, str(error))
            status = EXIT_USAGE
        except GeoPlantError as error:
            progress.finish()
            _error(progress, str(error))
            status = EXIT_FAILED
        except KeyboardInterrupt:
            progress.finish()
            _error(
                progress,
                "Interrupted: nothing was published, and files that were there before are as they were.",
            )
            status = 130
        except Exception as error:  # noqa: BLE001 - every error becomes words
            progress.finish()
            _error(progress, plain_message(error, f"geoplant {name}"))
            status = EXIT_BUG
        finally:
            progress.finish()
            report_warnings(caught, progress)
    return status


def _error(progress: TerminalProgress, message: str) -> None:
    progress._write(f"error: {message}\n")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs as written (examples keep their lines)."""
