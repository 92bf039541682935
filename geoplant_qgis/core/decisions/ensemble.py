"""Ensembles of probability rasters: per species mean, population SD, and agreement counts.

:func:`ensemble` takes several probability rasters on the same grid with the same species
bands (e.g. several models' runs; anything else is refused with the difference named,
:mod:`.compare`) and writes, block by block, the mean and the population standard
deviation (``ddof = 0``) across members as float32 per species, and with a THRESHOLD the
agreement: how many members have ``p >= threshold`` (uint8). A cell that is nodata in any
member is nodata in every output (-9999 for the floats, 255 for the agreement).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputDataError
from ..files import Publication, check_outputs
from ..progress import as_progress
from .compare import check_same
from .presence import check_threshold
from .rasters import blocks, open_probabilities, read_block
from .writer import RasterOutput

FLOAT_NODATA = -9999.0
AGREEMENT_NODATA = 255
#: the agreement is a uint8 count, 255 being nodata
MAX_MEMBERS = 254


@dataclass
class EnsembleResult:
    members: list[str]
    species_ids: list[int]
    outputs: dict[str, str] = field(default_factory=dict)


def ensemble(
    inputs: Sequence[object],
    *,
    output_mean=None,
    output_sd=None,
    threshold=None,
    output_agreement=None,
    progress=None,
    input_files: Mapping[str, object] | None = None,
) -> EnsembleResult:
    """Write the ensemble's mean, SD and (with ``threshold``) agreement rasters; see the module."""
    progress = as_progress(progress)
    paths = [os.fspath(p) for p in inputs]  # type: ignore[call-overload]
    if len(paths) < 2:
        raise InputDataError(f"INPUTS needs at least two probability rasters to combine; got {len(paths)}.")
    seen: dict[object, str] = {}
    for path in paths:
        try:
            key: object = (os.stat(path).st_dev, os.stat(path).st_ino)
        except OSError:
            key = os.path.realpath(path)
        if key in seen:
            raise InputDataError(
                f"INPUTS gives the same raster twice ({seen[key]} and {path}): its spread would be 0 "
                "and its agreement counted twice, as if two models agreed. Give each member once."
            )
        seen[key] = path
    if len(paths) > MAX_MEMBERS:
        raise InputDataError(f"INPUTS holds {len(paths)} rasters; at most {MAX_MEMBERS} can be combined.")
    cut = None
    if output_agreement and threshold is None:
        raise InputDataError("OUTPUT_AGREEMENT counts members with p >= THRESHOLD: give a THRESHOLD.")
    if threshold is not None:
        cut = check_threshold(threshold)
    wanted = {"OUTPUT_MEAN": output_mean, "OUTPUT_SD": output_sd, "OUTPUT_AGREEMENT": output_agreement}
    wanted = {k: v for k, v in wanted.items() if v}
    if not wanted:
        raise InputDataError("Give at least one of OUTPUT_MEAN, OUTPUT_SD, OUTPUT_AGREEMENT.")
    check_outputs(
        {k: [v, os.fspath(v) + ".aux.xml"] for k, v in wanted.items()},  # type: ignore[call-overload]
        {"INPUTS": paths, **(input_files or {})},
    )
    members = [open_probabilities(p, "INPUTS") for p in paths]
    check_same(members, "INPUTS")
    first = members[0]
    n = len(members)
    tags = {"GEOPLANT_ENSEMBLE_MEMBERS": "; ".join(m.name for m in members)}
    result = EnsembleResult(members=paths, species_ids=list(first.species_ids))
    import rasterio

    with Publication(progress) as publication, ExitStack() as stack:
        sources = [stack.enter_context(rasterio.open(m.path)) for m in members]
        outs: dict[str, RasterOutput] = {}
        for key, kind in (("OUTPUT_MEAN", "mean"), ("OUTPUT_SD", "population SD")):
            if key in wanted:
                outs[key] = stack.enter_context(
                    RasterOutput(
                        publication,
                        wanted[key],
                        like=first,
                        count=first.count,
                        dtype="float32",
                        nodata=FLOAT_NODATA,
                        descriptions=first.descriptions,
                        tags={**tags, "GEOPLANT_STATISTIC": kind},
                    )
                )
        if "OUTPUT_AGREEMENT" in wanted:
            outs["OUTPUT_AGREEMENT"] = stack.enter_context(
                RasterOutput(
                    publication,
                    wanted["OUTPUT_AGREEMENT"],
                    like=first,
                    count=first.count,
                    dtype="uint8",
                    nodata=AGREEMENT_NODATA,
                    descriptions=first.descriptions,
                    band_tags=[{"GEOPLANT_THRESHOLD": f"{cut:.9g}"}] * first.count,
                    tags={**tags, "GEOPLANT_STATISTIC": f"members with p >= {cut:g} (of {n})"},
                )
            )
        parts = list(blocks(first.height, first.width, first.count, budget=max(1 << 16, (4 << 20) // n)))
        for done, block in enumerate(parts, start=1):
            progress.check_cancelled()
            stack_values = np.stack(
                [read_block(s, block, m.nodata) for s, m in zip(sources, members, strict=True)]
            )
            missing = np.isnan(stack_values).any(axis=0)
            if "OUTPUT_MEAN" in outs or "OUTPUT_SD" in outs:
                mean = stack_values.mean(axis=0)
                if "OUTPUT_MEAN" in outs:
                    outs["OUTPUT_MEAN"].write(np.where(missing, FLOAT_NODATA, mean), block.row, block.start)
                if "OUTPUT_SD" in outs:
                    sd = np.sqrt(((stack_values - mean) ** 2).mean(axis=0))
                    outs["OUTPUT_SD"].write(np.where(missing, FLOAT_NODATA, sd), block.row, block.start)
            if "OUTPUT_AGREEMENT" in outs:
                count = (stack_values >= cut).sum(axis=0)
                outs["OUTPUT_AGREEMENT"].write(
                    np.where(missing, AGREEMENT_NODATA, count).astype(np.uint8), block.row, block.start
                )
            progress.set_progress(98 * done / len(parts))
        for out in outs.values():
            out.close()
        progress.check_cancelled()
        publication.publish()
    result.outputs = {k: os.path.abspath(os.fspath(v)) for k, v in wanted.items()}  # type: ignore[call-overload]
    progress.set_progress(100)
    return result
