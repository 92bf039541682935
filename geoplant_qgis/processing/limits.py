"""MAX_CELLS: the advanced parameter of the grid-based algorithms (``core.limits``).

Its default is read when the algorithm is created: ``$GEOPLANT_MAX_CELLS`` (or
``$GEOPLANT_MAX_PATCHES`` for extractpatches) when set, else 50,000,000 cells (1,000,000
patches). Imports nothing heavy (``core.limits`` is pure Python).
"""

from __future__ import annotations

from qgis.core import QgsProcessingParameterDefinition, QgsProcessingParameterNumber

from ..core.limits import (
    DEFAULT_MAX_CELLS,
    DEFAULT_MAX_PATCHES,
    ENV_MAX_CELLS,
    ENV_MAX_PATCHES,
    default_max_cells,
)


def help_text(patches: bool = False) -> str:
    """The MAX_CELLS paragraph of an algorithm's HELP."""
    if patches:
        return (
            f"MAX_CELLS (advanced, default {DEFAULT_MAX_PATCHES:,}, or the environment variable "
            f"{ENV_MAX_PATCHES}): the most grid cells (each one a patch file) one run may cut. A larger "
            "grid is refused before anything is written, with its cells, disk and time, the smallest "
            "CELL_SIZE that fits, and the other ways out: a smaller area, tiles run in batch, or a "
            "higher MAX_CELLS. POINTS are not limited."
        )
    return (
        f"MAX_CELLS (advanced, default {DEFAULT_MAX_CELLS:,}, or the environment variable "
        f"{ENV_MAX_CELLS}): the most grid cells one run may cover. A larger grid is refused before "
        "anything is written, with its cells, disk and time, the smallest CELL_SIZE that fits, and "
        "the other ways out: a smaller area, tiles run in batch, or a higher MAX_CELLS."
    )


def add_max_cells(alg, patches: bool = False) -> None:
    """The advanced MAX_CELLS parameter (a Double: limits past 2^31 are allowed)."""
    label = "Most patches (grid cells) in one run" if patches else "Most grid cells in one run"
    parameter = QgsProcessingParameterNumber(
        "MAX_CELLS",
        alg.tr(label),
        QgsProcessingParameterNumber.Double,
        defaultValue=float(default_max_cells(patches)),
        minValue=1.0,
    )
    parameter.setFlags(parameter.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
    alg.addParameter(parameter)


def read_max_cells(alg, parameters, context) -> float:
    """MAX_CELLS as core takes it (its default when not given), checked like every number."""
    from .params import read_number

    return read_number(alg, parameters, "MAX_CELLS", context)
