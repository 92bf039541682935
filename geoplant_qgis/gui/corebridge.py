"""The dock's one door into core: the request, its validation, the run, the point prediction.

The dock builds core's :class:`~geoplant_qgis.core.predict.request.PredictRequest` directly
from its :class:`~.state.DockState` (extent rectangle + CRS, area geometries + CRS, the
mapping as ``{variable: BandRef}``): no parameter text, no temporary file. The rules
(softmax richness needs a threshold, outputs that are inputs...) are core's; the dock only
shows what core says. :func:`run_request` and :func:`predict_point` run models: call them
from a background task only, never on the GUI thread.
"""

from __future__ import annotations

from ..core.errors import GeoPlantError

#: species listed by "What grows here?" when it runs the model
IDENTIFY_SPECIES = 10


def build_request(state, run_name: str | None = None, check_limit: bool = False):
    """The core request of the state's choices (outputs under ``run_name``); raises core's
    :class:`GeoPlantError` with its plain-words message. Reads no raster, runs no model (the
    card is the state's)."""
    from ..core.predict.request import Area, Extent, PredictRequest

    typed = state.request(run_name)
    area = None
    if typed.area is not None:
        area = Area(tuple(typed.area), typed.area_crs)
    return PredictRequest.build(
        typed.model_path,
        typed.raster_paths,
        mapping=typed.mapping,
        extent=Extent(*typed.extent, typed.extent_crs),
        area=area,
        crs=typed.crs,
        cell_size=typed.cell_size,
        top_k=typed.top_k,
        species=typed.species or None,
        threshold=typed.threshold,
        outputs=typed.outputs,
        card=state.card,
        seconds_per_cell=state.seconds_per_cell,
        check_limit=check_limit,
        device=typed.device,
    )


def request_problem(state) -> str | None:
    """Core's objection to the current choices, in its words, or None. Only asked when the
    dock's own checks (model, area, projected grid CRS, an output, an existing folder) pass."""
    import os

    out = state.outputs
    crs = state.grid_crs
    if (
        state.card is None
        or state.area is None
        or not crs.isValid()
        or crs.isGeographic()
        or not (out.richness or out.top_k or out.species)
        or not out.folder
        or not os.path.isdir(out.folder)
        or not out.run_name.strip()
    ):
        return None
    try:
        build_request(state)
    except GeoPlantError as error:
        return str(error)
    except Exception as error:  # noqa: BLE001 - e.g. an area the grid CRS cannot hold
        return f"The run cannot be set up: {error}"
    return None


def run_request(request, progress):
    """Run a built request (worker thread) by ``core.predict.run``."""
    from ..core.predict import run

    return run(request, progress)


def predict_point(model_path, card, mapping, x: float, y: float, crs: str, threshold=None):
    """ "What grows here?" by the model at one point (worker thread), with predict's rules:
    probabilities from the same point API, richness the sum of probabilities or, with a
    ``threshold``, the number of species at or above it (as predict's richness; None for a
    softmax model without threshold). None when an input has no data there."""
    import numpy as np

    from ..core.engine import point_prediction

    raster_paths = list(dict.fromkeys(ref.path for ref in mapping.values()))
    # richness and top-K by predict's own post-processing graph (same THRESHOLD rule)
    point = point_prediction(
        model_path,
        raster_paths,
        np.array([x]),
        np.array([y]),
        crs,
        mapping=dict(mapping),
        threshold=threshold,
        top_k=IDENTIFY_SPECIES,
    )
    row = point.probabilities[0]
    if not np.all(np.isfinite(row)):
        return None
    column = {s.id: i for i, s in enumerate(card.species)}
    top = point.topk[0] if point.topk is not None else []
    species = [(int(sid), card.species[column[int(sid)]].name, float(row[column[int(sid)]])) for sid in top]
    richness = None if point.richness is None else float(point.richness[0])
    return {"richness": richness, "species": species, "threshold": threshold}


def point_probabilities(model_path, card, mapping, x: float, y: float, crs: str) -> dict | None:
    """``{species id: p}`` of every species of the model at one point (worker thread): what
    "What grows here?" adds to a run's outputs that lack some probabilities, asked at the
    output cell's centre (where the run sampled). None when an input has no data there."""
    import numpy as np

    from ..core.engine import predict_points

    raster_paths = list(dict.fromkeys(ref.path for ref in mapping.values()))
    probabilities = predict_points(
        model_path, raster_paths, np.array([x]), np.array([y]), crs, mapping=dict(mapping)
    )
    row = np.asarray(probabilities, dtype=np.float32)[0]
    if not np.all(np.isfinite(row)):
        return None
    return {card.species[i].id: float(row[i]) for i in range(len(card.species))}
