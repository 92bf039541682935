"""The converter's one error type: a message that says what is wrong and what to do."""

from __future__ import annotations

from ..core.errors import GeoPlantError


class ConversionError(GeoPlantError):
    """A checkpoint, a card or a model the converter refuses; the message is shown as it is."""
