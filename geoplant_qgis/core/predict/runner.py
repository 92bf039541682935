"""Runner: a checked request planned, streamed block by block, and published.

:func:`run` takes a :class:`.request.PredictRequest` through three steps that never go
back: **plan** (:class:`Plan`: the model's sessions, the samplers, the block windows, the
output writers, each decided once), **stream** (:func:`_stream`: the blocks through three
kinds of threads) and **publish** (:mod:`.publish`).

Threads of the stream, and what they hand over:

- the **prefetch thread** computes each :class:`Block` (cell centres, the AREA mask, the
  cells no source reaches, the model's feeds) and puts it into the main thread's inbox; at
  most :data:`.blocks.PREFETCH_DEPTH` blocks wait there, one more being prepared (a
  semaphore the main thread releases as it takes one);
- the **main thread** submits a block's valid cells to the inference workers, collects
  the previous block (one block in flight, so the workers never wait on it), lays its
  results out as raster blocks and queues them for the writer; progress and cancellation
  every block;
- the **onnxruntime workers** (:class:`.inference.Pipeline`) run the micro-batches;
- the **writer thread** puts the raster blocks into the GeoTIFFs.

One error channel: the prefetch and the writer threads put a :class:`_Failed` into the
main thread's inbox (it blocks on that queue only: no polling); the main thread raises it,
stops the others (the stop event, the semaphore released, the end marker queued) and joins
them before the inputs are closed. Every thread of a run has ended when :func:`run` returns.
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputDataError
from ..files import Publication
from ..geotiff import GeoTiffWriter, check_disk_space, estimate_bytes
from ..progress import as_progress
from .blocks import PREFETCH_DEPTH, block_windows, default_block_cells
from .inference import OutputValuesError, PendingRun, Pipeline
from .inputs import Inputs
from .model import LoadedModel
from .outputs import mask_topk_by_richness
from .publish import discard, finish_and_publish

if TYPE_CHECKING:
    from rasterio.windows import Window

    from ..grid import Grid
    from .outputs import OutputSpec
    from .request import PredictRequest

#: GDAL block cache during a run, MB
GDAL_CACHE_MB = 64
#: warn before the run when at least this share of the grid lies outside the sources
OUTSIDE_WARNING = 0.25


@dataclass
class PredictResult:
    cells: int
    valid_cells: int
    species: int
    seconds: float
    cells_per_second: float
    outputs: dict[str, str] = field(default_factory=dict)  # "richness" | "topk" | "probabilities" -> path

    @classmethod
    def of(cls, request: PredictRequest, valid: int, seconds: float) -> PredictResult:
        """The result of ``request`` run in ``seconds``, ``valid`` of its grid's cells predicted."""
        cells = request.grid.width * request.grid.height
        return cls(
            cells=cells,
            valid_cells=valid,
            species=len(request.card.species),
            seconds=seconds,
            cells_per_second=cells / seconds if seconds > 0 else float("inf"),
            outputs=dict(request.outputs),
        )


def check_some_valid(request: PredictRequest, valid: int) -> None:
    """InputDataError when no cell of the grid was predicted (``valid`` cells): then nothing
    is written."""
    if valid == 0:
        raise InputDataError(
            "No cell of the grid has data for every model input"
            + (" inside the AREA" if request.area is not None else "")
            + ": the rasters have no data there (nodata or outside). Check the extent, the "
            "area and the rasters; nothing was written."
        )


@dataclass(frozen=True)
class Block:
    """One window of the grid, ready for inference: the feeds of its valid cells (None when
    it has none) and ``valid`` (bool, rows x cols in row-major order)."""

    row: int
    col: int
    rows: int
    cols: int
    feeds: dict[str, Any] | None
    valid: np.ndarray

    @cached_property
    def n_valid(self) -> int:
        """Valid cells (counted once: the stream asks for it several times per block)."""
        return int(self.valid.sum())

    def where(self) -> str:
        return (
            f"the block of grid rows {self.row}-{self.row + self.rows - 1}, "
            f"columns {self.col}-{self.col + self.cols - 1}"
        )


@dataclass(frozen=True)
class RasterBlock:
    """The output blocks of one window: {kind: [bands, rows, cols]}, for the writer."""

    row: int
    col: int
    arrays: dict[str, np.ndarray]


@dataclass(frozen=True)
class _Failed:
    """An error of the prefetch or the writer thread, for the main thread to raise."""

    error: BaseException


_END = object()


@dataclass
class Plan:
    """Everything a run decided before its first block: the model's inference pipeline,
    the inputs' samplers (normalising what the pipeline does not), the windows and the
    output writers (under temporary names, registered with ``publication``)."""

    request: PredictRequest
    pipeline: Pipeline
    inputs: Inputs
    specs: dict[str, OutputSpec]
    writers: dict[str, GeoTiffWriter]
    windows: list[Window]
    block_cells: int
    publication: Publication

    @classmethod
    def make(cls, request: PredictRequest, progress: Any) -> Plan:
        grid = request.grid
        specs = request.output_specs()
        publication = Publication(progress)
        inputs = pipeline = None
        try:
            for spec in specs.values():
                publication.folder(spec.path)
            check_disk_space(
                (s.path, estimate_bytes(grid.width, grid.height, s.count, s.dtype)) for s in specs.values()
            )
            model = LoadedModel(
                request.model, request.threads, card=request.card, device=request.device, progress=progress
            )
            pipeline = Pipeline(
                model,
                list(request.columns),
                top_k=request.top_k,
                # TOPK_MODE "richness": each cell's K comes from its richness (computed then
                # even when the richness raster is not written)
                richness="richness" in specs or request.topk_mode == "richness",
                threshold=request.threshold,
                probabilities="probabilities" in specs,
            )
            progress.info(pipeline.describe())
            if request.topk_mode == "richness":
                progress.info(
                    f"Top-K: each cell's K is its richness rounded plus {request.topk_margin} "
                    f"(from 1 to {request.top_k}); the ranks after it are nodata (-1)."
                )
            inputs = Inputs(
                request.card, request.rasters, request.mapping, grid.crs, pipeline.graph_normalises
            )
            inputs.check_overlap(grid)
            block_cells = request.block_cells or default_block_cells(
                request.card, grid.cell_size, sum(s.bytes_per_cell for s in specs.values())
            )
            _warn_outside(inputs, grid, progress)
            progress.info(
                f"Grid: {grid.width} x {grid.height} cells of {grid.cell_size:g} m in {grid.crs}, "
                f"{len(request.card.species)} species"
                + (f" ({len(request.columns)} probability bands)" if "probabilities" in specs else "")
                + f", blocks of {block_cells} cells."
            )
            writers = {k: s.writer(grid, publication) for k, s in specs.items()}
            strip = min((w.tile_h for w in writers.values()), default=256)
            windows = block_windows(grid, block_cells, strip)
        except BaseException:
            if inputs is not None:
                inputs.close()
            if pipeline is not None:
                pipeline.close()
            publication.discard()
            raise
        return cls(request, pipeline, inputs, specs, writers, windows, block_cells, publication)

    def close(self) -> None:
        """Close the samplers and stop the inference workers; remove the temporaries of a
        run that did not publish. Only after every thread of the stream has ended."""
        try:
            self.inputs.close()
            self.pipeline.close()
        finally:
            if not self.publication.published:
                self.publication.discard()


def _warn_outside(inputs: Inputs, grid: Grid, progress: Any) -> None:
    outside = inputs.share_outside(grid)
    if outside >= OUTSIDE_WARNING:
        share = "Almost all (over 99.5%)" if outside > 0.995 else f"About {100 * outside:.0f}%"
        progress.warning(
            f"{share} of the grid's {grid.width * grid.height:,} cells lie outside the input "
            "rasters: they will be nodata (they are skipped, not computed). If that is not what you "
            "meant, check the extent (its CRS, and the order of its coordinates)."
        )


def run(request: PredictRequest, progress: Any = None) -> PredictResult:
    """Run the model over every cell of ``request``'s grid and publish the requested rasters.

    The outputs are written under temporary names and published together when the run
    succeeds; a failed or cancelled run leaves the files that were there as they were and
    removes the folders it made."""
    import rasterio

    progress = as_progress(progress)
    started = time.perf_counter()
    for warning in request.warnings:
        progress.warning(warning)
    plan = Plan.make(request, progress)
    try:
        # GDAL's block cache (5% of RAM by default) would otherwise grow with the area
        # (written tiles, source tiles): cap it for the run so memory stays flat.
        with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
            writers = list(plan.writers.values())
            try:
                valid = _stream(plan, progress)
                check_some_valid(request, valid)
                finish_and_publish(writers, progress)
            except BaseException:
                discard(writers)
                raise
    finally:
        plan.close()
    seconds = time.perf_counter() - started
    result = PredictResult.of(request, valid, seconds)
    cells, n_species = result.cells, result.species
    progress.info(
        f"Predicted {cells:,} cells ({valid:,} valid), {n_species} species, "
        f"in {seconds:.1f} s: {result.cells_per_second:,.0f} cells/s."
    )
    return result


# --- the stream ------------------------------------------------------------------------


def _prepare(plan: Plan, window: Window) -> Block:
    """The :class:`Block` of ``window``: cells no required source reaches and cells outside
    the AREA are nodata, never sampled nor transformed."""
    from ..grid import area_mask

    grid, area = plan.request.grid, plan.request.area
    row, col, rows, cols = int(window.row_off), int(window.col_off), int(window.height), int(window.width)
    inside = plan.inputs.reach(grid, row, col, rows, cols)
    if inside is not None and not inside.any():
        return Block(row, col, rows, cols, None, np.zeros(rows * cols, dtype=bool))
    xs, ys = grid.cell_centres(row, row + rows, col, col + cols)
    xs, ys = np.asarray(xs).ravel(), np.asarray(ys).ravel()
    if area is not None:
        mask = np.asarray(area_mask(grid, list(area), window=window), dtype=bool).ravel()
        inside = mask if inside is None else inside & mask
    if inside is not None:
        xs, ys = xs[inside], ys[inside]
    feeds: dict[str, Any] | None = None
    valid = np.zeros(0, dtype=bool)
    if len(xs):
        feeds, valid = plan.inputs.prepare(xs, ys)
    if inside is not None:
        full = np.zeros(rows * cols, dtype=bool)
        full[np.flatnonzero(inside)[valid]] = True
        valid = full
    return Block(row, col, rows, cols, feeds, valid)


def _prefetch(plan: Plan, inbox: queue.Queue, slots: threading.Semaphore, stop: threading.Event) -> None:
    """The prefetch thread: every window's :class:`Block` into ``inbox`` (a slot each),
    then the end marker; an error as a :class:`_Failed`."""
    try:
        for window in plan.windows:
            slots.acquire()
            if stop.is_set():
                return
            inbox.put(_prepare(plan, window))
        inbox.put(_END)
    except BaseException as error:  # handed to the main thread
        inbox.put(_Failed(error))


def _write(plan: Plan, to_write: queue.Queue, inbox: queue.Queue) -> None:
    """The writer thread: raster blocks into the GeoTIFFs until the end marker. After an
    error (reported once, through the inbox) it only takes blocks, so the main thread
    never blocks on a full queue."""
    failed = False
    while True:
        item = to_write.get()
        if item is _END:
            return
        if failed:
            continue
        try:
            for kind, array in item.arrays.items():
                plan.writers[kind].write(array, item.row, item.col)
        except BaseException as error:
            failed = True
            inbox.put(_Failed(error))


def _raster_block(plan: Plan, block: Block, results: dict[str, np.ndarray] | None) -> RasterBlock:
    """A block's results laid out as [bands, rows, cols] per output, nodata where invalid."""
    arrays = {}
    n_valid = block.n_valid
    if results is not None and plan.request.topk_mode == "richness" and "topk" in results:
        mask_topk_by_richness(results["topk"], results["richness"], plan.request.topk_margin)
    for kind, spec in plan.specs.items():
        shape = (spec.count, block.rows, block.cols)
        if results is not None and n_valid == len(block.valid):
            values = results[kind]
            arrays[kind] = (values.T if values.ndim == 2 else values[None]).reshape(shape)
            continue
        array = np.full((spec.count, block.rows * block.cols), spec.nodata, dtype=spec.dtype)
        if results is not None and n_valid:
            values = results[kind]
            array[:, block.valid] = values.T if values.ndim == 2 else values[None]
        arrays[kind] = array.reshape(shape)
    return RasterBlock(block.row, block.col, arrays)


def _collect(block: Block, pending: PendingRun | None) -> dict[str, np.ndarray] | None:
    if pending is None:
        return None
    try:
        return pending.result()
    except OutputValuesError as error:
        raise error.at(block.where(), " Nothing was written.") from None


def _stream(plan: Plan, progress: Any) -> int:
    """Every block through the prefetch thread, the inference workers and the writer
    thread; returns the number of valid cells. Every thread started here has ended when it
    returns or raises."""
    inbox: queue.Queue = queue.Queue()  # blocks and the other threads' failures, in order
    # blocks prepared (or being prepared) ahead of the inference
    slots = threading.Semaphore(PREFETCH_DEPTH + 1)
    to_write: queue.Queue = queue.Queue(maxsize=2)
    stop = threading.Event()
    for writer in plan.writers.values():
        writer.open()
    reader = threading.Thread(
        target=_prefetch, args=(plan, inbox, slots, stop), name="geoplant-prefetch", daemon=True
    )
    writer_thread = threading.Thread(
        target=_write, args=(plan, to_write, inbox), name="geoplant-writer", daemon=True
    )
    reader.start()
    writer_thread.start()
    in_flight: tuple[Block, PendingRun | None] | None = None
    valid_total = written = 0

    def finish(block: Block, pending: PendingRun | None) -> None:
        """Collect a submitted block and queue its raster blocks for the writer."""
        nonlocal valid_total, written
        to_write.put(_raster_block(plan, block, _collect(block, pending)))
        valid_total += block.n_valid
        written += 1
        progress.set_progress(100.0 * written / len(plan.windows))

    try:
        while True:
            progress.check_cancelled()
            item = inbox.get()
            if isinstance(item, _Failed):
                raise item.error
            if item is _END:
                break
            slots.release()
            block: Block = item
            # one block in flight: block k + 1 is submitted before block k is collected
            pending = plan.pipeline.submit(block.feeds) if block.n_valid and block.feeds else None
            previous, in_flight = in_flight, (block, pending)
            if previous is not None:
                finish(*previous)
        if in_flight is not None:
            last, in_flight = in_flight, None
            finish(*last)
        progress.check_cancelled()
        to_write.put(_END)
        writer_thread.join()
        _raise_failure(inbox)
        return valid_total
    finally:
        if in_flight is not None and in_flight[1] is not None:
            in_flight[1].cancel()
        stop.set()
        for _ in range(PREFETCH_DEPTH + 1):  # wake the prefetch thread waiting for a slot
            slots.release()
        if writer_thread.is_alive():
            to_write.put(_END)
            writer_thread.join()
        reader.join()  # the samplers are closed only after it has really finished


def _raise_failure(inbox: queue.Queue) -> None:
    """Raise the first failure the writer reported while the last blocks were written."""
    while True:
        try:
            item = inbox.get_nowait()
        except queue.Empty:
            return
        if isinstance(item, _Failed):
            raise item.error


def stream(plan: Plan, progress: Any = None) -> int:
    """The stream stage alone (:func:`_stream`): every window of ``plan`` computed and put
    into ``plan.writers`` (opened here, neither finished nor published); the valid cells.
    For runners that cut the grid themselves (:mod:`core.cluster`: one tile's windows into
    its tile files, with a pipeline kept across tiles)."""
    return _stream(plan, as_progress(progress))
