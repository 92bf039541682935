"""The predict request: every argument of a run, checked once, as one frozen typed value.

How to build and run one (Processing, the dock, a script or a command line alike), with
``Area``, ``Extent``, ``PredictRequest`` and ``run`` from ``core.predict``::

    request = PredictRequest.build(
        "model.onnx",
        ["bio.tif"],
        extent=Extent(3700000, 2600000, 3800000, 2700000, "EPSG:3035"),  # or area=Area(...)
        outputs={"richness": "/out/richness.tif", "topk": "/out/topk.tif"},
        top_k=25,
    )
    request.estimate()          # cells, grid size, bytes per file, warnings: no model run
    result = run(request, progress)   # -> PredictResult

:meth:`PredictRequest.build` raises a :class:`GeoPlantError` subclass with a plain-words
message for anything wrong (types, ranges, an output that is an input, an unknown species,
a softmax richness without THRESHOLD, an extent that cannot be transformed, a grid beyond
MAX_CELLS...). Nothing downstream checks the arguments again. It reads the model card
(an onnxruntime session without optimisation: pass ``card=`` to reuse one) and, for a
MAPPING file, the file; it neither opens the rasters nor runs the model.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import GeoPlantError, InputDataError, OutputError
from .outputs import KINDS, output_files, output_specs

if TYPE_CHECKING:
    from ..estimate import Estimate
    from ..grid import Grid
    from ..modelcard import ModelCard, Species
    from ..sources import BandRef
    from .outputs import OutputSpec

DEFAULT_CRS = "EPSG:3035"
DEFAULT_CELL_SIZE = 100.0
#: rows of the model timed (once, only to word a refusal) for the estimated time
LIMIT_TIMING_BATCH = 64

PathLike = str | os.PathLike[str]


@dataclass(frozen=True)
class Extent:
    """A rectangle (xmin, ymin, xmax, ymax) in ``crs`` (None: the grid's CRS)."""

    xmin: float
    ymin: float
    xmax: float
    ymax: float
    crs: str | None = None

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        return (self.xmin, self.ymin, self.xmax, self.ymax)

    @classmethod
    def of(cls, value: Extent | Sequence[Any], crs: str | None = None) -> Extent:
        """An Extent from itself or four coordinates (checked: :func:`core.checks.extent`)."""
        from .. import checks

        if isinstance(value, Extent):
            return value if crs is None or value.crs is not None else Extent(*value.bounds, crs)
        return cls(*checks.extent(value), crs)


@dataclass(frozen=True, eq=False)
class Area:
    """Polygons (WKB, WKT, GeoJSON text or dicts, objects with ``__geo_interface__``) in
    ``crs`` (None: the grid's CRS). Cells whose centre is outside are nodata."""

    geometries: tuple[Any, ...]
    crs: str | None = None

    @classmethod
    def of(cls, value: Area | Any, crs: str | None = None) -> Area:
        if isinstance(value, Area):
            return value if crs is None or value.crs is not None else Area(value.geometries, crs)
        single = isinstance(value, dict | str | bytes | bytearray | memoryview) or hasattr(
            value, "__geo_interface__"
        )
        return cls((value,) if single else tuple(value), crs)


def run_input_files(
    model_path: PathLike | None = None,
    raster_paths: Iterable[PathLike] = (),
    mapping: Any = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Every file a run reads, by parameter name, for :func:`core.files.check_outputs`: the
    MODEL, the RASTERS, the MAPPING file (when MAPPING names one) and the rasters the
    MAPPING names, and ``extra`` ({label: path or paths}: an AREA layer's file...)."""
    from ..sources import parse_mapping

    inputs: dict[str, Any] = {}
    if model_path:
        inputs["MODEL"] = model_path
    inputs["RASTERS"] = [p for p in (raster_paths or []) if p]
    if mapping:
        if isinstance(mapping, str | os.PathLike):
            candidate = os.fspath(mapping).strip().strip('"')
            if os.path.isfile(candidate):
                inputs["MAPPING"] = candidate
            try:
                mapping = parse_mapping(mapping)
            except GeoPlantError:  # reported where the mapping is parsed for the run
                mapping = {}
        inputs["a raster of MAPPING"] = [ref.path for ref in dict(mapping).values()]
    for label, value in (extra or {}).items():
        if value:
            inputs[label] = value
    return inputs


def _resolve_outputs(outputs: Mapping[str, PathLike | None] | None) -> dict[str, str]:
    unknown = [k for k in (outputs or {}) if k not in KINDS]
    if unknown:
        raise OutputError(f"Unknown output kind {unknown[0]!r}: give {', '.join(KINDS)}.")
    bad = [(k, v) for k, v in (outputs or {}).items() if v and not isinstance(v, str | os.PathLike)]
    if bad:
        raise OutputError(f"The {bad[0][0]} output must be a file path (text), not {bad[0][1]!r:.80}.")
    resolved = {k: os.path.abspath(os.fspath(v)) for k, v in (outputs or {}).items() if v}
    resolved = {k: resolved[k] for k in KINDS if k in resolved}
    if not resolved:
        raise OutputError(
            "No output requested: give at least one of the richness, top-K or probabilities rasters."
        )
    paths = list(resolved.values())
    if len(set(paths)) != len(paths):
        raise OutputError("Two outputs have the same file name; give each output its own file.")
    return resolved


def _topk_mode(mode: Any, margin: Any) -> tuple[str, int]:
    """TOPK_MODE ("fixed" or "richness"; None: "fixed") and TOPK_MARGIN (a whole number,
    may be negative; None: 0), checked."""
    from .. import checks
    from .outputs import TOPK_MODES

    text = "fixed" if mode is None else str(mode).strip().lower()
    if text not in TOPK_MODES:
        raise InputDataError(
            f"TOPK_MODE must be 'fixed' (every cell its TOP_K species) or 'richness' (each cell's K "
            f"from its expected richness plus TOPK_MARGIN); got {mode!r}."
        )
    value = int(
        checks.number(
            0 if margin is None else margin,
            "TOPK_MARGIN",
            minimum=-checks.MAX_TOP_K,
            maximum=checks.MAX_TOP_K,
            integer=True,
            what="species added to each cell's rounded richness to make its K, e.g. 0 or 2",
        )
    )
    return text, value


def _raster_list(raster_paths: Any) -> list[str]:
    if raster_paths is None:
        return []
    if isinstance(raster_paths, str | os.PathLike):
        raster_paths = [raster_paths]  # one raster given as a path, not a list
    else:
        try:
            raster_paths = list(raster_paths)
        except TypeError:
            raise InputDataError(f"The rasters must be a list of file paths; got {raster_paths!r}.") from None
    bad = [p for p in raster_paths if not isinstance(p, str | os.PathLike)]
    if bad:
        raise InputDataError(f"The rasters must be file paths; got {bad[0]!r}.")
    return [os.fspath(p) for p in raster_paths]


@dataclass(frozen=True, eq=False)
class PredictRequest:
    """A checked predict run: build it with :meth:`build`, run it with :func:`core.predict.run`.

    Every field is final: the grid is the snapped grid of the run, ``area`` is already in
    its CRS, ``top_k`` is at most the model's species, ``columns`` are the card columns of
    the probability bands. ``warnings`` are said (through the progress) when it runs.
    """

    model: str
    card: ModelCard
    rasters: tuple[str, ...]
    #: explicit variable -> band overrides (MAPPING, parsed once); the rest by name rules
    mapping: Mapping[str, BandRef]
    grid: Grid
    #: the AREA's polygons as GeoJSON-like dicts in the grid's CRS, or None
    area: tuple[dict[str, Any], ...] | None
    #: {"richness" | "topk" | "probabilities": absolute path}
    outputs: Mapping[str, str]
    columns: tuple[int, ...]
    top_k: int
    threshold: float | None
    max_cells: float
    block_cells: int | None = None
    threads: int | None = None
    input_files: Mapping[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    #: where the model runs: one of :data:`.model.DEVICE_NAMES` (see :class:`.model.Execution`)
    device: str = "auto"
    #: TOPK_MODE: "fixed" (every cell its ``top_k`` species) or "richness" (each cell's K
    #: is its richness rounded, plus ``topk_margin``, from 1 to ``top_k``; later ranks -1)
    topk_mode: str = "fixed"
    topk_margin: int = 0

    # -- building ------------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        model: PathLike,
        rasters: Iterable[PathLike] | PathLike | None = (),
        *,
        mapping: Mapping[str, BandRef] | PathLike | None = None,
        extent: Extent | Sequence[float] | None = None,
        extent_crs: str | None = None,
        area: Area | Any = None,
        area_crs: str | None = None,
        crs: str | None = None,
        cell_size: float | None = None,
        top_k: int | None = 25,
        species: str | Sequence[int | str] | None = None,
        threshold: float | None = None,
        outputs: Mapping[str, PathLike | None] | None = None,
        block_cells: int | None = None,
        threads: int | None = None,
        input_files: Mapping[str, Any] | None = None,
        max_cells: float | None = None,
        card: ModelCard | None = None,
        seconds_per_cell: float | None = None,
        check_limit: bool = True,
        device: str | None = "auto",
        topk_mode: str | None = "fixed",
        topk_margin: int | None = 0,
    ) -> PredictRequest:
        """Check every argument once and return the request, or raise a :class:`GeoPlantError`.

        ``model``: the .onnx file; ``rasters``: raster files holding the variables (band
        description or file name, see :mod:`core.sources`); ``mapping``: {variable:
        :class:`BandRef`} or its text forms ('var=path#band;...' or a CSV file).
        ``extent``: an :class:`Extent` (or four numbers in ``extent_crs``); ``area``: an
        :class:`Area` (or geometries in ``area_crs``): give one of them (with an area and no
        extent the extent is the area's bounds). ``crs``/``cell_size``: the grid (default:
        the card's grid, else EPSG:3035 and 100 m). ``top_k``: K of the top-K output;
        ``species``: ids or names of the probability bands (default all); ``threshold``:
        richness counts p >= threshold. ``outputs``: {kind: path}. ``block_cells``,
        ``threads``: tuning; ``input_files``: {label: path} of other files the run reads
        (an AREA layer's file). ``max_cells``: the MAX_CELLS limit (default
        $GEOPLANT_MAX_CELLS, else 50,000,000); the refusal's time estimate uses
        ``seconds_per_cell`` when given, else times the model on a small batch (only when
        refusing); ``check_limit=False`` leaves the limit to :meth:`estimate` (the dock's
        live checks). ``card``: the model's card when already read. ``device``: where the
        model runs ("auto", "cpu", "cuda", ...: :data:`.model.DEVICE_NAMES`; a missing or
        failing GPU falls back to the CPU with a warning when it runs). ``topk_mode``:
        "fixed" or "richness" (each cell's K from its richness, sum of probabilities or with
        ``threshold`` the count, rounded, plus ``topk_margin``, from 1 to ``top_k``; ranks
        after it are nodata -1: :func:`.outputs.richness_k`).
        """
        from .. import checks
        from ..files import check_outputs
        from ..grid import area_bounds, area_in_crs, area_polygons, make_grid
        from ..limits import resolve_max_cells
        from ..modelcard import listed
        from ..sources import BandRef, parse_mapping, unused_mapping_names

        resolved = _resolve_outputs(outputs)
        if not isinstance(model, str | os.PathLike) or not os.fspath(model):
            raise InputDataError(f"The model must be the path of an .onnx file; got {model!r}.")
        raster_list = _raster_list(rasters)
        k = checks.top_k(0 if top_k is None else top_k)
        threshold = checks.threshold(threshold)
        mode, margin = _topk_mode(topk_mode, topk_margin)
        size = None if cell_size is None else checks.cell_size(cell_size)
        if isinstance(extent, Extent):
            extent_value: Extent | None = Extent.of(extent, extent_crs)
        else:
            extent_value = None if extent is None else Extent.of(extent, extent_crs)
        if block_cells is not None:
            block_cells = int(
                checks.number(block_cells, "block_cells", minimum=1, maximum=2**31 - 1, integer=True)
            )
        if threads is not None:
            threads = int(checks.number(threads, "threads", minimum=1, maximum=1024, integer=True))
        from .model import check_device

        device = check_device(device)
        check_outputs(output_files(resolved), run_input_files(model, raster_list, mapping, input_files))
        if "topk" in resolved and k == 0:
            raise InputDataError("A top-K raster was requested but TOP_K is 0; set TOP_K to 1 or more.")
        if isinstance(mapping, Mapping):
            parsed = {str(n): r if isinstance(r, BandRef) else BandRef(*r) for n, r in mapping.items()}
        else:
            parsed = parse_mapping(mapping)

        model_path = os.fspath(model)
        if not os.path.isfile(model_path):
            raise InputDataError(f"Model file not found: {model_path}")
        if card is None:
            from ..modelcard import read_model_card

            card = read_model_card(model_path)
        columns = tuple(card.select_species(species))
        n_species = len(card.species)
        warnings: list[str] = []
        if "richness" in resolved and card.output.activation == "softmax" and threshold is None:
            raise InputDataError(
                "This model's output is a softmax (its probabilities sum to 1 over the species), so the "
                "sum of probabilities is not a species richness. Give a THRESHOLD to count the species "
                "with a probability at or above it, or do not request the richness output."
            )
        if "topk" in resolved and k > n_species:
            warnings.append(f"TOP_K {k} is more than the model's {n_species} species; using {n_species}.")
            k = n_species
        softmax_sum = card.output.activation == "softmax" and threshold is None
        if mode == "richness" and "topk" in resolved and softmax_sum:
            raise InputDataError(
                "TOPK_MODE 'richness' takes each cell's K from its richness, but this model's output is a "
                "softmax (its probabilities sum to 1), so the sum is not a richness. Give a THRESHOLD "
                "(K then follows the number of species with p >= THRESHOLD) or use TOPK_MODE 'fixed'."
            )
        if "topk" not in resolved:
            mode = "fixed"
            k = 0

        grid_crs = crs or (card.grid.crs if card.grid else DEFAULT_CRS)
        if size is None:
            size = card.grid.cell_size_m if card.grid else DEFAULT_CELL_SIZE
        area_value = None if area is None else Area.of(area, area_crs)
        shapes = None if area_value is None else area_polygons(list(area_value.geometries))
        if extent_value is None:
            if shapes is None or area_value is None:
                raise InputDataError("Give an EXTENT or an AREA to predict over.")
            extent_value = Extent(*area_bounds(shapes), area_value.crs)
        grid = make_grid(extent_value.bounds, extent_value.crs or grid_crs, crs=grid_crs, cell_size=size)
        in_grid = None
        if shapes is not None and area_value is not None:
            in_grid = tuple(area_in_crs(shapes, area_value.crs, grid.crs))  # once, not per block
        if parsed:
            unused = unused_mapping_names(card.variable_names(), parsed)
            if unused:
                warnings.append(
                    f"MAPPING names {listed(unused, 20)}, which the model does not use (its variables "
                    f"and bands: {listed(card.variable_names(), 50)}); check for a typo."
                )
        request = cls(
            model=model_path,
            card=card,
            rasters=tuple(raster_list),
            mapping=parsed,
            grid=grid,
            area=in_grid,
            outputs=resolved,
            columns=columns,
            top_k=k,
            threshold=threshold,
            max_cells=resolve_max_cells(max_cells),
            block_cells=block_cells,
            threads=threads,
            input_files=dict(input_files or {}),
            warnings=tuple(warnings),
            device=device,
            topk_mode=mode,
            topk_margin=margin,
        )
        if check_limit:
            request.check_limit(seconds_per_cell)
        from ..geotiff import check_band_count

        for kind, spec in request.output_specs().items():
            check_band_count(spec.count, f"The {kind} raster {os.path.basename(spec.path)}")
        return request

    # -- what it asks for ----------------------------------------------------------------

    @property
    def species(self) -> list[Species]:
        """The species of the probability bands, in band order."""
        return [self.card.species[c] for c in self.columns]

    def output_specs(self) -> dict[str, OutputSpec]:
        """{kind: :class:`OutputSpec`}: bands, dtype, nodata, band names, sidecars."""
        return output_specs(
            self.outputs,
            [(s.id, s.name) for s in self.card.species],
            [(s.id, s.name) for s in self.species],
            self.top_k,
            self.threshold,
        )

    def bands(self) -> dict[str, int]:
        """{kind: bands of that file}."""
        return {kind: spec.count for kind, spec in self.output_specs().items()}

    def estimate(self, seconds_per_cell: float | None = None, free_bytes: int | None = None) -> Estimate:
        """Cells, grid size, bytes and warnings of this run (:func:`core.estimate.estimate_run`):
        the band limit per file, the MAX_CELLS refusal text. Runs and times no model; the
        time only from a measured ``seconds_per_cell``."""
        from ..estimate import estimate_run

        return estimate_run(
            self.grid.width,
            self.grid.height,
            richness="richness" in self.outputs,
            top_k=self.top_k,
            probabilities=len(self.columns) if "probabilities" in self.outputs else 0,
            seconds_per_cell=seconds_per_cell,
            cell_limit=self.max_cells,
            free_bytes=free_bytes,
            cell_size=self.grid.cell_size,
        )

    def check_limit(self, seconds_per_cell: float | None = None) -> None:
        """Refuse a grid beyond MAX_CELLS (:func:`core.limits.check_grid`). The time in the
        message: ``seconds_per_cell``, else the model timed on a small batch (only then)."""
        from ..estimate import expected_seconds, output_bytes
        from ..limits import check_grid
        from .model import seconds_per_row

        def seconds(cells: int) -> float | None:
            per_cell = seconds_per_cell
            if per_cell is None:
                per_cell = seconds_per_row(self.model, batch=LIMIT_TIMING_BATCH, repeats=1)
            return expected_seconds(cells, per_cell)

        outputs = self.outputs
        check_grid(
            self.grid.width,
            self.grid.height,
            self.grid.cell_size,
            self.max_cells,
            bytes_needed=lambda cells: output_bytes(
                cells,
                "richness" in outputs,
                self.top_k,
                len(self.columns) if "probabilities" in outputs else 0,
            ),
            seconds=seconds,
        )


__all__ = ["Area", "Extent", "PredictRequest", "run_input_files", "DEFAULT_CRS", "DEFAULT_CELL_SIZE"]
