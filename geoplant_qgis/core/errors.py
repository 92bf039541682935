"""Errors whose message is shown to a user as it is (no traceback), and the words for any other.

Every entry point (Processing, the dock, the command line) shows a :class:`GeoPlantError`'s
message as it is, and turns anything else into :func:`plain_message`: what happened in
words, and for a real bug where the details were logged (:func:`log_unexpected`).
"""

from __future__ import annotations

import datetime
import os
import traceback


class GeoPlantError(Exception):
    """Base class of every error a user can fix: the message says what and how."""


class ModelCardError(GeoPlantError):
    """The ONNX model has no valid ``geoplant`` card, or it does not match the graph."""


class InputDataError(GeoPlantError):
    """Input data is missing, malformed, in the wrong CRS or outside the area."""


class OutputError(GeoPlantError):
    """An output cannot be written (disk space, band limit, path)."""


class CancelledError(GeoPlantError):
    """The user cancelled the run; nothing was left under the output names."""

    def __init__(
        self, message="Cancelled: nothing was published, and files that were there before are as they were."
    ):
        super().__init__(message)


class MissingDependencyError(GeoPlantError):
    """A Python package the feature needs is not installed."""


def log_path() -> str:
    """Where unexpected errors are logged: ``$GEOPLANT_LOG``, else
    ``$XDG_CACHE_HOME/geoplant_qgis/errors.log`` (``~/.cache`` by default)."""
    if os.environ.get("GEOPLANT_LOG"):
        return os.path.abspath(os.environ["GEOPLANT_LOG"])
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(cache, "geoplant_qgis", "errors.log")


def log_unexpected(error: BaseException, context: str = "") -> str | None:
    """Append ``error``'s traceback to :func:`log_path`; the path, or None when it cannot be
    written."""
    path = log_path()
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "a", encoding="utf-8") as handle:
            stamp = datetime.datetime.now().isoformat(timespec="seconds")
            handle.write(f"--- {stamp} {context}\n")
            handle.write("".join(traceback.format_exception(type(error), error, error.__traceback__)))
    except OSError:
        return None
    return path


def plain_message(error: BaseException, context: str = "") -> str:
    """Words for any error a run can end with: a GeoPlantError's own message; the file and
    the reason for a file-system error; for anything else (a bug), what it was and where
    its details are logged."""
    if isinstance(error, GeoPlantError):
        return str(error)
    if isinstance(error, MemoryError):
        return (
            "Out of memory. Use a larger cell size, a smaller area, fewer outputs or species, "
            "or close other programs."
        )
    if isinstance(error, PermissionError):
        name = error.filename or "a file"
        return f"Permission denied for {name}: choose a file or folder you can read and write."
    if isinstance(error, FileNotFoundError):
        return f"No such file or folder: {error.filename or error}."
    if isinstance(error, OSError) and error.strerror:
        where = f" ({error.filename})" if error.filename else ""
        return f"{error.strerror}{where}."
    if isinstance(error, RecursionError):
        return "The input is nested too deeply to be read (a malformed file?)."
    path = log_unexpected(error, context)
    where = f"; the details are in {path}" if path else ""
    kind = type(error).__name__
    text = str(error).splitlines()[0][:200] if str(error) else ""
    return (
        f"Unexpected internal error ({kind}{': ' + text if text else ''}). This is a bug in GeoPlant, "
        f"not in your data{where}. Please report it with that file."
    )
