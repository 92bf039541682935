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

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsDistanceArea,
    QgsGeometry,
    QgsProject,
)

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
#: the output folder when the project is not saved (created at the first run); a saved
#: project's default is its own folder (docs/dock.md)
DEFAULT_FOLDER = os.path.join(os.path.expanduser("~"), "GeoPlant")
#: the run's time besides the model: seconds per cell per input raster file (windowed reads,
#: resampling) and per cell for the writers, plus a fixed start (session, files, overviews).
#: Calibrated against real runs (tests/test_desktop.py logs the estimate and the real time);
#: after a run the dock uses that run's own seconds per cell instead
SAMPLE_SECONDS_PER_CELL_AND_FILE = 2e-7
WRITE_SECONDS_PER_CELL = 4e-7
#: reading and resampling a patch or cube input: seconds per value of a cell's tensor
#: (a 4 x 64 x 64 Sentinel-2 patch: ~3e-4 s a cell, measured on the demo world, 2 cores)
PATCH_SECONDS_PER_VALUE = 2e-8
START_SECONDS = 0.3
#: a finished run of at least this many cells sets the pace of the next estimates (a smaller
#: one is mostly start-up time)
MIN_CELLS_TO_CALIBRATE = 20_000


def default_output_folder(project=None) -> str:
    """The project's folder when the project is saved, else :data:`DEFAULT_FOLDER`."""
    project = project or QgsProject.instance()
    if project.fileName():
        folder = project.absolutePath()
        if folder and os.path.isdir(folder):
            return folder
    return DEFAULT_FOLDER


def area_m2(geometry: QgsGeometry, crs) -> float | None:
    """The ellipsoidal area of ``geometry`` (in ``crs``) in square metres (QgsDistanceArea on
    the CRS's ellipsoid, WGS84 when it has none); None when it cannot be measured."""
    measure = QgsDistanceArea()
    measure.setSourceCrs(crs, QgsProject.instance().transformContext())
    measure.setEllipsoid(crs.ellipsoidAcronym() or "EPSG:7030")
    try:
        value = measure.measureArea(geometry)
        value = measure.convertAreaMeasurement(value, 0)  # QgsUnitTypes.AreaSquareMeters
    except Exception:  # noqa: BLE001 - QgsCsException
        return None
    return float(value) if value == value and value > 0 else None


def area_words(square_metres: float | None) -> str:
    """'12.3 km² (1,230 ha)' / '4.5 ha' ."""
    if square_metres is None:
        return ""
    hectares = square_metres / 10_000.0
    if square_metres >= 1_000_000:
        return f"{square_metres / 1e6:,.2f} km² ({hectares:,.0f} ha)"
    return f"{hectares:,.2f} ha"


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

    def square_metres(self) -> float | None:
        return area_m2(self.geometry, self.crs)

    def text(self) -> str:
        xmin, ymin, xmax, ymax = self.bounds()
        digits = 4 if self.crs.isGeographic() else 0
        size = area_words(self.square_metres())
        return (
            f"{self.description}" + (f": {size}" if size else "") + "\n"
            f"x {xmin:,.{digits}f} – {xmax:,.{digits}f}\n"
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
    device: str = "auto"  # core.devices.DEVICE_NAMES

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
        #: where the model runs: core.devices.DEVICE_NAMES ("auto": a GPU when offered)
        self.device: str = "auto"
        self.outputs = Outputs()
        self.estimate: estimate.Estimate | None = None
        self.estimate_problem = ""
        #: where the area lies outside the input rasters, in words (None: it does not)
        self.coverage: str | None = None
        self.coverage_blocks = False
        #: {raster path: (QgsRectangle, QgsCoordinateReferenceSystem)} of the chosen inputs,
        #: from the project's layers (no file opened)
        self.footprints: dict = {}
        #: {model path: seconds per cell} measured by the last finished run of that model
        self.run_rate: dict = {}
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

    def area_geometry_in_grid_crs(self):
        """The area as a (densified) geometry in the grid CRS, None when it cannot be."""
        if self.area is None:
            return None
        geometry = QgsGeometry(self.area.geometry)
        if self.area.crs != self.grid_crs:
            geometry = geometry.densifyByCount(32)
            transform = QgsCoordinateTransform(self.area.crs, self.grid_crs, QgsProject.instance())
            try:
                geometry.transform(transform)
            except Exception:  # noqa: BLE001 - QgsCsException
                return None
        return geometry

    def update_coverage(self) -> str | None:
        """Where the area lies outside the chosen input rasters, in words (None when inside
        all of them). Compares the area with each input's raster footprint in the grid CRS;
        ``coverage_blocks`` when the area misses a raster entirely (every cell would be empty)."""
        self.coverage, self.coverage_blocks = None, False
        crs = self.grid_crs
        if self.area is None or not crs.isValid() or crs.isGeographic():
            return None
        area = self.area_geometry_in_grid_crs()
        if area is None or area.isEmpty() or area.area() <= 0:
            return None
        outside, partly = [], []
        for name, ref in self.inputs.items():
            footprint = self.footprints.get(ref.path) if ref is not None else None
            if footprint is None:
                continue
            rect, raster_crs = footprint
            shape = QgsGeometry.fromRect(rect)
            if raster_crs != crs:
                shape = shape.densifyByCount(32)
                try:
                    shape.transform(QgsCoordinateTransform(raster_crs, crs, QgsProject.instance()))
                except Exception:  # noqa: BLE001 - QgsCsException
                    continue
            inside = area.intersection(shape).area() / area.area()
            if inside <= 1e-9:
                outside.append(name)
            elif inside < 0.999:
                partly.append((name, 1.0 - inside))
        if outside:
            self.coverage_blocks = True
            self.coverage = (
                f"The area lies outside the raster of {', '.join(outside)}: every cell would be "
                "empty. Draw the area over the input rasters (or zoom to a raster layer and use "
                "Layer extent)."
            )
        elif partly:
            share = max(fraction for _, fraction in partly)
            names = ", ".join(name for name, _ in partly)
            amount = "Nearly all" if share >= 0.995 else f"About {max(share, 0.01):.0%}"
            self.coverage = (
                f"{amount} of the area lies outside the raster of {names}: "
                "those cells will be empty (nodata)."
            )
        return self.coverage

    def seconds_per_cell_of_run(self) -> float | None:
        """Expected seconds per cell of a whole run: the last run of this model when there
        is one, else the model's timing plus sampling and writing (see the constants)."""
        measured = self.run_rate.get(self.model_path)
        if measured is not None:
            return measured / 1.25  # estimate_run multiplies by its model overhead
        if self.seconds_per_cell is None:
            return None
        files = len({ref.path for ref in self.inputs.values() if ref is not None}) or 1
        # estimate_run multiplies by its model overhead (1.25): the I/O is added before it
        io = files * SAMPLE_SECONDS_PER_CELL_AND_FILE + WRITE_SECONDS_PER_CELL
        for spec in getattr(self.card, "inputs", ()) or ():
            tensor = spec.tensor_shape(1)[1:] if spec.kind != "point" else ()
            values = 1
            for n in tensor:
                values *= int(n)
            if spec.kind != "point":
                io += values * PATCH_SECONDS_PER_VALUE
        return self.seconds_per_cell + io / 1.25

    def record_run(self, cells: int, seconds: float) -> None:
        """A finished run of the current model: its pace (start-up left out) is the next
        estimates' seconds per cell, when the run was large enough to tell."""
        if cells >= MIN_CELLS_TO_CALIBRATE and seconds > START_SECONDS:
            self.run_rate[self.model_path] = (seconds - START_SECONDS) / cells

    def update_estimate(self) -> estimate.Estimate | None:
        """Cells, disk and time of the run as it stands (None without an area or a projected
        CRS); the coverage of the inputs too (:meth:`update_coverage`)."""
        self.estimate = None
        self.estimate_problem = ""
        self.update_coverage()
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
        if folder and not os.path.isdir(folder) and folder == DEFAULT_FOLDER:
            folder = os.path.dirname(folder)  # made at the first run
        free = shutil.disk_usage(folder).free if folder and os.path.isdir(folder) else None
        self.estimate = estimate.estimate_run(
            width,
            height,
            richness=self.outputs.richness,
            top_k=self.outputs.top_k,
            probabilities=len(self.outputs.species),
            seconds_per_cell=self.seconds_per_cell_of_run(),  # one run gives every output
            free_bytes=free,
            cell_size=self.cell_size,  # beyond MAX_CELLS: predict's very refusal
        )
        if self.estimate.seconds is not None:
            import dataclasses

            self.estimate = dataclasses.replace(self.estimate, seconds=self.estimate.seconds + START_SECONDS)
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
        elif self.coverage_blocks and self.coverage:
            reasons.append(self.coverage)
        out = self.outputs
        if not (out.richness or out.top_k or out.species):
            reasons.append("Choose at least one output.")
        problem = self.rule_problem()
        if problem:
            reasons.append(problem)
        if not out.folder:
            reasons.append("Choose an output folder.")
        elif not os.path.isdir(out.folder) and out.folder != DEFAULT_FOLDER:
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
        # a rectangle in another CRS than the grid's is an AREA: its image in the grid CRS is
        # no rectangle, so the cells outside the drawn outline are left empty
        as_polygon = area.polygon or area.crs != self.grid_crs
        return RunRequest(
            model_path=self.model_path,
            mapping={k: v for k, v in self.inputs.items() if v is not None},
            extent=area.bounds(),
            extent_crs=crs_text(area.crs),
            area=[area.wkb() if area.polygon else bytes(area.geometry.densifyByCount(64).asWkb())]
            if as_polygon
            else None,
            area_crs=crs_text(area.crs) if as_polygon else None,
            crs=crs_text(self.grid_crs),
            cell_size=float(self.cell_size),
            top_k=int(out.top_k),
            species=list(out.species),
            threshold=out.threshold,
            outputs=paths,
            name=name,
            device=getattr(self, "device", "auto"),
        )
