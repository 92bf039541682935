"""Presence maps: one uint8 band per species, 1 present (p >= the rule's threshold), 0 absent.

:func:`presence_maps` chooses each species' cut-off by a named rule (:mod:`.thresholds`):
``fixed`` takes THRESHOLD; the data-driven rules take the species' probabilities at the
presence-absence surveys (the raster cell containing each survey point; surveys off the
raster are counted and reported) and search the cut-off on them. A species without both
presences and absences among the surveys gets nodata (255) in its whole band and a row in
the thresholds table saying why. Each band keeps its input description ``"<name> (<id>)"``
and carries the rule and the threshold in its metadata tags (``GEOPLANT_RULE``,
``GEOPLANT_THRESHOLD``, ``GEOPLANT_NOTE``), so the map says which threshold made it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputDataError
from ..files import Publication, check_outputs
from ..progress import as_progress
from .rasters import ProbabilityRaster, blocks, cells_of_points, open_probabilities, read_block, values_at
from .thresholds import DATA_DRIVEN, Threshold, check_rule, choose
from .writer import RasterOutput, csv_text

PRESENT, ABSENT, NODATA = 1, 0, 255
THRESHOLD_COLUMNS = (
    "speciesId",
    "species",
    "rule",
    "threshold",
    "tss",
    "sensitivity",
    "specificity",
    "presences",
    "absences",
    "note",
)


@dataclass
class PresenceResult:
    rule: str
    thresholds: list[Threshold]
    species_ids: list[int]
    species_names: list[str]
    surveys_used: int = 0
    surveys_outside: int = 0
    outputs: dict[str, str] = field(default_factory=dict)


def check_threshold(value, name: str = "THRESHOLD") -> float:
    """A probability cut-off in (0, 1] (``p >= 0`` would mark every cell present)."""
    from ..checks import threshold

    checked = threshold(value, name)
    if checked is None:
        raise InputDataError(f"{name} is needed: a probability, e.g. 0.5.")
    return checked


@dataclass
class SurveyValues:
    """The surveys that fall on the raster: presence labels and probabilities [surveys, species]."""

    labels: np.ndarray
    values: np.ndarray
    outside: int


def survey_values(raster: ProbabilityRaster, surveys, crs, progress=None) -> SurveyValues:
    """Each survey's presence of every species of the raster and its probabilities there.

    ``surveys``: surveyId, x, y (in ``crs``), speciesIds (a list per survey) as
    :func:`core.evaluate.surveys_from_csv` gives them. InputDataError when no survey falls on
    the raster, or when the surveys list none of the raster's species."""
    xs = np.asarray(surveys["x"], dtype=np.float64)
    ys = np.asarray(surveys["y"], dtype=np.float64)
    lists = list(surveys["speciesIds"])
    if not len(xs):
        raise InputDataError("SURVEYS holds no survey.")
    rows, cols, inside = cells_of_points(raster, xs, ys, crs)
    outside = int((~inside).sum())
    if not inside.any():
        raise InputDataError(
            f"None of the {len(xs)} surveys falls on {raster.name}: check that SURVEYS and PROBABILITIES "
            "cover the same area (and that the surveys' CRS is right)."
        )
    column = {sid: j for j, sid in enumerate(raster.species_ids)}
    kept = np.flatnonzero(inside)
    labels = np.zeros((kept.size, raster.count), dtype=bool)
    for i, index in enumerate(kept.tolist()):
        for sid in lists[index] or ():
            j = column.get(int(sid))
            if j is not None:
                labels[i, j] = True
    if not labels.any():
        raise InputDataError(
            f"The {kept.size} surveys on the raster list none of the {raster.count} species of "
            f"{raster.name} (ids {', '.join(map(str, raster.species_ids[:5]))}"
            f"{'...' if raster.count > 5 else ''}): give presence-absence surveys of these species."
        )
    values = values_at(raster, rows[kept], cols[kept], progress)
    return SurveyValues(labels=labels, values=values, outside=outside)


def presence_maps(
    probabilities,
    rule: str,
    *,
    output,
    threshold=None,
    surveys=None,
    surveys_crs=None,
    output_thresholds=None,
    progress=None,
    input_files: Mapping[str, object] | None = None,
) -> PresenceResult:
    """Write the presence raster ``output`` (and the thresholds CSV ``output_thresholds``)
    from the probability raster ``probabilities`` by ``rule``; see the module's text.

    ``input_files``: {label: path} of the other files the run reads (the SURVEYS file): an
    output that is an input, or the other output, is refused before anything starts."""
    progress = as_progress(progress)
    rule = check_rule(rule)
    fixed = check_threshold(threshold) if rule == "fixed" else None
    if rule in DATA_DRIVEN and surveys is None:
        raise InputDataError(
            f"RULE {rule} chooses each species' threshold from presence-absence SURVEYS: give them, "
            "or use RULE fixed with a THRESHOLD."
        )
    outputs: dict[str, object] = {"OUTPUT": [output, os.fspath(output) + ".aux.xml"]}
    if output_thresholds:
        outputs["OUTPUT_THRESHOLDS"] = output_thresholds
    inputs: dict[str, object] = {"PROBABILITIES": probabilities}
    inputs.update(input_files or {})
    check_outputs(outputs, inputs)
    raster = open_probabilities(probabilities)
    progress.set_progress(2)
    found = None
    if surveys is not None:
        found = survey_values(raster, surveys, surveys_crs, progress)
        if found.outside:
            progress.warning(
                f"{found.outside} of {found.outside + found.labels.shape[0]} surveys fall outside "
                f"{raster.name} and were left out."
            )
    chosen = []
    for j in range(raster.count):
        if found is None:
            chosen.append(Threshold(rule, float(fixed), 0, 0, note="no surveys: not scored"))  # type: ignore[arg-type]
        else:
            chosen.append(choose(rule, found.labels[:, j], found.values[:, j], fixed))
    unusable = [t for t in chosen if not t.usable]
    if unusable:
        progress.warning(
            f"{len(unusable)} of {raster.count} species have no threshold ({unusable[0].note}); their bands "
            "are nodata (255)."
        )
    progress.set_progress(10)
    result = PresenceResult(
        rule=rule,
        thresholds=chosen,
        species_ids=list(raster.species_ids),
        species_names=list(raster.species_names),
        surveys_used=0 if found is None else int(found.labels.shape[0]),
        surveys_outside=0 if found is None else found.outside,
    )
    with Publication(progress) as publication:
        _write_map(publication, raster, output, chosen, progress)
        if output_thresholds:
            publication.write_text(publication.temporary(output_thresholds), thresholds_csv(result))
        progress.check_cancelled()
        publication.publish()
    result.outputs = {"OUTPUT": os.path.abspath(os.fspath(output))}
    if output_thresholds:
        result.outputs["OUTPUT_THRESHOLDS"] = os.path.abspath(os.fspath(output_thresholds))
    progress.set_progress(100)
    return result


def band_tags(t: Threshold) -> dict[str, str]:
    """The metadata of one presence band: the rule, the threshold, how it scored."""
    tags = {"GEOPLANT_RULE": t.rule, "GEOPLANT_THRESHOLD": f"{t.threshold:.9g}" if t.usable else "none"}
    if t.presences or t.absences:
        tags.update(GEOPLANT_PRESENCES=str(t.presences), GEOPLANT_ABSENCES=str(t.absences))
    if not math.isnan(t.tss):
        tags["GEOPLANT_TSS"] = f"{t.tss:.6g}"
    if t.note:
        tags["GEOPLANT_NOTE"] = t.note
    return tags


def _write_map(
    publication: Publication, raster: ProbabilityRaster, output, chosen: Sequence[Threshold], progress
):
    import rasterio

    cutoffs = np.array([t.threshold for t in chosen], dtype=np.float64)
    with (
        rasterio.open(raster.path) as source,
        RasterOutput(
            publication,
            output,
            like=raster,
            count=raster.count,
            dtype="uint8",
            nodata=NODATA,
            descriptions=raster.descriptions,
            band_tags=[band_tags(t) for t in chosen],
            tags={"GEOPLANT_RULE": chosen[0].rule if chosen else "", "GEOPLANT_SOURCE": raster.name},
        ) as out,
    ):
        parts = list(blocks(raster.height, raster.width, raster.count))
        for n, block in enumerate(parts, start=1):
            progress.check_cancelled()
            values = read_block(source, block, raster.nodata)
            t = cutoffs[block.start : block.stop, None, None]
            present = np.where(values >= t, PRESENT, ABSENT).astype(np.uint8)
            present[np.isnan(values) | np.isnan(np.broadcast_to(t, values.shape))] = NODATA
            out.write(present, block.row, block.start)
            progress.set_progress(10 + 88 * n / len(parts))


def thresholds_csv(result: PresenceResult) -> str:
    """The thresholds table: one row per species (``note`` says why a threshold is missing)."""
    rows = []
    for sid, name, t in zip(result.species_ids, result.species_names, result.thresholds, strict=True):
        rows.append(
            [
                sid,
                name,
                t.rule,
                f"{t.threshold:.9g}" if t.usable else "",
                t.tss,
                t.sensitivity,
                t.specificity,
                t.presences,
                t.absences,
                t.note,
            ]
        )
    return csv_text(THRESHOLD_COLUMNS, rows)
