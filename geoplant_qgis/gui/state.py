"""The dock's state as a plain object: what the panel holds and what a run would be, no widgets.

:class:`DockState` keeps the model (path, card, timing), the inputs matched to rasters
(``{variable: BandRef or None}``), the area (geometries + CRS), the grid, the outputs, the
last estimate and the run status. The panels show it and write the user's changes into it;
:meth:`DockState.blockers` says in plain words what stops a run, :meth:`DockState.request`
turns it into the typed request core runs. Everything here is cheap (no model is loaded, no
raster opened), so it runs on the main thread and in tests without any widget.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field

from qgis.core import QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsGeometry, QgsProject

from ..core import estimate
from ..core.errors import GeoPlantError
from ..core.files import RASTER_SIDECARS
from ..core.predict.outputs import SPECIES_CSV_SUFFIX
from ..core.predict.request import DEFAULT_CELL_SIZE, DEFAULT_CRS
from ..core.sources import BandRef

RICHNESS = "richness"
TOPK = "topk"
PROBABILITIES = "probabilities"
OUTPUT_KINDS = (RICHNESS, TOPK, PROBABILITIES)
DEFAULT_RUN_NAME = "geoplant_run"
DEFAULT_TOP_K = 25


def crs_text(crs) -> str | None:
    """'EPSG:xxxx' when the CRS has an authority id, else its WKT; None when invalid."""
    if crs is None or not crs.isValid():
        return None
    return crs.authid() or crs.toWkt()


@dataclass
class Area:
    """The run's area: a polygon geometry in ``crs``; ``polygon`` False for a rectangle (the
    extent), True when cells outside the geometry are left empty."""

    geometry: QgsGeometry
    crs: QgsCoordinateReferenceSystem
    polygon: bool = False
    description: str = "area"

    def bounds(self) -> tuple[float, float, float, float]:
        box = self.geometry.boundingBox()
        return (box.xMinimum(), box.yMinimum(), box.xMaximum(), box.yMaximum())

    def wkb(self) -> bytes:
        return bytes(self.geometry.asWkb())

    def text(self) -> str:
        xmin, ymin, xmax, ymax = self.bounds()
        digits = 4 if self.crs.isGeographic() else 0
        return (
            f"{self.description}\nx {xmin:,.{digits}f} – {xmax:,.{digits}f}\n"
            f"y {ymin:,.{digits}f} – {ymax:,.{digits}f} ({self.crs.authid() or self.crs.description()})"
        )


@dataclass
class Outputs:
    """What a run writes: richness (with an optional threshold), top-K (0: none), the species
    of the probability raster, where and under which name."""

    richness: bool = True
    threshold: float | None = None
    top_k: int = DEFAULT_TOP_K
    species: list[int] = field(default_factory=list)
    folder: str = ""
    run_name: str = DEFAULT_RUN_NAME


@dataclass
class RunStatus:
    """The run in progress (``running``) and what the last one left."""

    running: bool = False
    name: str = ""
    planned: dict = field(default_factory=dict)  # {kind: path} of the run in progress
    outputs: dict = field(default_factory=dict)  # {kind: path} of the last finished run
    message: str = ""
    percent: float = 0.0


@dataclass
class RunRequest:
    """A run of the dock, typed: the model, ``{variable: BandRef}``, the extent (rectangle +
    CRS), the area polygons (WKB + CRS, None for a rectangle), the grid and the outputs."""

    model_path: str
    mapping: dict[str, BandRef]
    extent: tuple[float, float, float, float]
    extent_crs: str
    area: list[bytes] | None
    area_crs: str | None
    crs: str
    cell_size: float
    top_k: int
    species: list[int]
    threshold: float | None
    outputs: dict[str, str]  # {kind: path}
    name: str = ""

    @property
    def raster_paths(self) -> list[str]:
        """The chosen rasters, each once, in first-chosen order."""
        return list(dict.fromkeys(ref.path for ref in self.mapping.values()))


def output_names(folder: str, name: str) -> list[str]:
    """Every file a run named ``name`` may write in ``folder`` (outputs and side-cars)."""
    suffixes = [
        *(f"{kind}.tif" for kind in OUTPUT_KINDS),
        f"topk{SPECIES_CSV_SUFFIX}",
        "topk.qml",
        *(f"{kind}.tif{s}" for kind in OUTPUT_KINDS for s in RASTER_SIDECARS),
    ]
    return [os.path.join(folder, f"{name}_{suffix}") for suffix in suffixes]


def unique_run_name(folder: str, base: str) -> str:
    """``base`` made file-safe, with a number added when any of its files exists (a run never
    replaces a file)."""
    base = "".join(c if c.isalnum() or c in "-_" else "_" for c in base.strip()) or DEFAULT_RUN_NAME
    name, n = base, 1
    while any(os.path.lexists(path) for path in output_names(folder, name)):
        n += 1
        name = f"{base}_{n}"
    return name


class DockState:
    """Everything the dock knows, without widgets (see the module docstring)."""

    def __init__(self):
        self.model_path: str | None = None
        self.card = None
        self.model_error = ""
        self.seconds_per_cell: float | None = None
        self.model_loading = False
        self.inputs: dict[str, BandRef | None] = {}
        self.matching = False
        self.area: Area | None = None
        self.cell_size: float = DEFAULT_CELL_SIZE
        self.grid_crs = QgsCoordinateReferenceSystem(DEFAULT_CRS)
        self.outputs = Outputs()
        self.estimate: estimate.Estimate | None = None
        self.estimate_problem = ""
        self.run = RunStatus()

    # ------------------------------------------------------------------ model
    def set_model(self, path: str | None, card=None, error: str = "", seconds_per_cell=None) -> None:
        """A model read (or refused): its card, timing, inputs and species reset."""
        self.model_path = path or None
        self.card = card
        self.model_error = error
        self.seconds_per_cell = seconds_per_cell
        self.model_loading = False
        self.inputs = {name: None for name in self.variable_names()}
        self.outputs.species = []
        if card is not None:
            self.apply_card_defaults()

    def apply_card_defaults(self) -> None:
        """The card's grid (else EPSG:3035 and 100 m), K = min(25, species), a threshold for a
        softmax model (its richness needs one)."""
        grid = self.card.grid
        self.cell_size = grid.cell_size_m if grid is not None else DEFAULT_CELL_SIZE
        crs = QgsCoordinateReferenceSystem(grid.crs if grid is not None else DEFAULT_CRS)
        if crs.isValid():
            self.grid_crs = crs
        self.outputs.top_k = min(DEFAULT_TOP_K, len(self.card.species))
        if self.card.output.activation == "softmax" and self.outputs.threshold is None:
            self.outputs.threshold = 0.5

    def variable_names(self) -> list[str]:
        return list(self.card.variable_names()) if self.card is not None else []

    def species_names(self) -> dict[int, str]:
        return {s.id: s.name for s in self.card.species} if self.card is not None else {}

    # ------------------------------------------------------------------ inputs
    def missing_inputs(self) -> list[str]:
        return [name for name, ref in self.inputs.items() if ref is None]

    # ------------------------------------------------------------------ area and grid
    def area_in_grid_crs(self):
        """The area's bounding box in the grid CRS (a QgsRectangle), None when it cannot be."""
        if self.area is None:
            return None
        box = self.area.geometry.boundingBox()
        if self.area.crs != self.grid_crs:
            transform = QgsCoordinateTransform(self.area.crs, self.grid_crs, QgsProject.instance())
            try:
                box = transform.transformBoundingBox(box)
            except Exception:  # noqa: BLE001 - QgsCsException: outside the CRS's area
                return None
        return box

    def update_estimate(self) -> estimate.Estimate | None:
        """Cells, disk and time of the run as it stands (None without an area or a projected CRS)."""
        self.estimate = None
        self.estimate_problem = ""
        crs = self.grid_crs
        if self.area is None or not crs.isValid() or crs.isGeographic():
            return None
        try:
            width, height, _ = estimate.grid_size(
                self.area.bounds(), crs_text(self.area.crs), crs_text(crs), self.cell_size
            )
        except GeoPlantError as error:
            self.estimate_problem = str(error)
            return None
        folder = self.outputs.folder
        free = shutil.disk_usage(folder).free if folder and os.path.isdir(folder) else None
        self.estimate = estimate.estimate_run(
            width,
            height,
            richness=self.outputs.richness,
            top_k=self.outputs.top_k,
            probabilities=len(self.outputs.species),
            seconds_per_cell=self.seconds_per_cell,  # one run gives every output
            free_bytes=free,
            cell_size=self.cell_size,  # beyond MAX_CELLS: predict's very refusal
        )
        return self.estimate

    # ------------------------------------------------------------------ run
    def blockers(self) -> list[str]:
        """Plain-words reasons why Run is not possible now (empty when it is)."""
        reasons = []
        if self.run.running:
            reasons.append("A run is in progress.")
        if self.model_loading:
            reasons.append("Reading the model…")
            return reasons
        if self.card is None:
            reasons.append(self.model_error or "Choose a model.")
            return reasons
        if self.estimate is not None and self.estimate.refusal:
            reasons.append(f"{self.estimate.cells:,} cells is too many for one run (see the estimate).")
        missing = self.missing_inputs()
        if self.matching and missing:
            reasons.append("Matching the inputs…")
        elif missing:
            reasons.append(f"Missing inputs: {', '.join(missing)}.")
        if self.area is None:
            reasons.append("Choose an area.")
        crs = self.grid_crs
        if not crs.isValid():
            reasons.append("Choose a CRS for the grid.")
        elif crs.isGeographic():
            reasons.append(f"The grid CRS {crs.authid()} is in degrees: choose a projected CRS (metres).")
        elif self.area is not None and self.area_in_grid_crs() is None:
            reasons.append("The area cannot be expressed in the grid CRS.")
        out = self.outputs
        if not (out.richness or out.top_k or out.species):
            reasons.append("Choose at least one output.")
        problem = self.rule_problem()
        if problem:
            reasons.append(problem)
        if not out.folder:
            reasons.append("Choose an output folder.")
        elif not os.path.isdir(out.folder):
            reasons.append(f"The output folder {out.folder} does not exist.")
        if not out.run_name.strip():
            reasons.append("Give the run a name.")
        return reasons

    def rule_problem(self) -> str:
        """What core's validation of the request says about the model and the outputs (the
        softmax-needs-threshold rule lives there, the dock only shows it)."""
        from . import corebridge

        return corebridge.request_problem(self) or ""

    def request(self, run_name: str | None = None) -> RunRequest:
        """The typed request of the current choices (outputs under ``run_name``, default the
        unique name of the chosen one). Call only when :meth:`blockers` is empty."""
        out = self.outputs
        name = run_name or unique_run_name(out.folder, out.run_name)
        paths = {}
        if out.richness:
            paths[RICHNESS] = os.path.join(out.folder, f"{name}_richness.tif")
        if out.top_k:
            paths[TOPK] = os.path.join(out.folder, f"{name}_topk.tif")
        if out.species:
            # SPECIES chooses the probability bands only: richness and top-K still cover
            # every species of the model, in the same single run
            paths[PROBABILITIES] = os.path.join(out.folder, f"{name}_probabilities.tif")
        area = self.area
        return RunRequest(
            model_path=self.model_path,
            mapping={k: v for k, v in self.inputs.items() if v is not None},
            extent=area.bounds(),
            extent_crs=crs_text(area.crs),
            area=[area.wkb()] if area.polygon else None,
            area_crs=crs_text(area.crs) if area.polygon else None,
            crs=crs_text(self.grid_crs),
            cell_size=float(self.cell_size),
            top_k=int(out.top_k),
            species=list(out.species),
            threshold=out.threshold,
            outputs=paths,
            name=name,
        )
