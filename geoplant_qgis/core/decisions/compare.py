"""Comparing the grids and species of several probability rasters: the differences, named.

:func:`differences` lists, in words, how a raster differs from a reference one (CRS,
transform, size, species ids or their order); :func:`check_same` refuses a set of rasters
that differ, naming the first two that do and every difference between them.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import InputDataError
from .rasters import ProbabilityRaster

#: transforms within this fraction of a cell are the same grid (rounding in writers)
TOLERANCE = 1e-9


def _crs_text(crs) -> str:
    if crs is None:
        return "none"
    try:
        epsg = crs.to_epsg()
    except Exception:  # noqa: BLE001
        epsg = None
    return f"EPSG:{epsg}" if epsg else str(crs.to_string())[:80]


def _same_transform(a, b, cell: float) -> bool:
    return all(
        abs(x - y) <= TOLERANCE * max(cell, 1.0) for x, y in zip(tuple(a)[:6], tuple(b)[:6], strict=True)
    )


def differences(reference: ProbabilityRaster, other: ProbabilityRaster) -> list[str]:
    """How ``other`` differs from ``reference``, one phrase per difference (empty: none)."""
    out = []
    if reference.crs != other.crs:
        out.append(f"CRS {_crs_text(reference.crs)} vs {_crs_text(other.crs)}")
    if (reference.width, reference.height) != (other.width, other.height):
        out.append(
            f"size {reference.width} x {reference.height} vs {other.width} x {other.height} "
            "cells (columns x rows)"
        )
    ta, tb = reference.transform, other.transform
    cell = abs(ta.a) if ta is not None else 1.0  # type: ignore[attr-defined]
    if not _same_transform(ta, tb, cell):
        if (abs(ta.a), abs(ta.e)) != (abs(tb.a), abs(tb.e)):  # type: ignore[attr-defined]
            out.append(
                f"cell size {abs(ta.a):g} x {abs(ta.e):g} vs {abs(tb.a):g} x {abs(tb.e):g}"  # type: ignore[attr-defined]
            )
        else:
            out.append(f"origin ({ta.c:g}, {ta.f:g}) vs ({tb.c:g}, {tb.f:g})")  # type: ignore[attr-defined]
    ids_a, ids_b = list(reference.species_ids), list(other.species_ids)
    if ids_a != ids_b:
        set_a, set_b = set(ids_a), set(ids_b)
        only_a = [i for i in ids_a if i not in set_b]
        only_b = [i for i in ids_b if i not in set_a]
        if only_a or only_b:
            parts = []
            if only_a:
                parts.append(f"species {_ids(only_a)} only in the first")
            if only_b:
                parts.append(f"species {_ids(only_b)} only in the second")
            out.append("; ".join(parts))
        else:
            band = next(i for i, (x, y) in enumerate(zip(ids_a, ids_b, strict=True), start=1) if x != y)
            out.append(
                f"the same species in another order (band {band} is species {ids_a[band - 1]} vs "
                f"{ids_b[band - 1]})"
            )
    return out


def _ids(ids: Sequence[int]) -> str:
    shown = ", ".join(map(str, ids[:5]))
    return shown + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")


def check_same(rasters: Sequence[ProbabilityRaster], label: str = "INPUTS") -> None:
    """Refuse rasters that do not share the grid (CRS, transform, size) and the species (ids,
    in the same band order), naming the two rasters and every difference."""
    if not rasters:
        return
    first = rasters[0]
    for i, other in enumerate(rasters[1:], start=2):
        found = differences(first, other)
        if found:
            raise InputDataError(
                f"{label}: {first.name} (1st) and {other.name} ({_ordinal(i)}) do not share the grid and the "
                f"species: {'; '.join(found)}. Give probability rasters predicted on the same grid for the "
                "same species (same CRS, CELL_SIZE, extent and SPECIES)."
            )


def _ordinal(n: int) -> str:
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"
