"""Errors whose message is shown to a user as it is (no traceback)."""


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

    def __init__(self, message="Cancelled by the user; no output was written."):
        super().__init__(message)


class MissingDependencyError(GeoPlantError):
    """A Python package the feature needs is not installed."""
