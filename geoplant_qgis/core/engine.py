"""The prediction engine: a model over every cell of a grid, block by block.

:func:`predict` streams blocks of grid cells. For each block a prefetch thread computes
the cell centres and the AREA mask, samples every model input (one windowed read per
source file per block, see :mod:`.sampling`), applies ``fill`` and marks invalid cells.
The main thread submits the block's valid cells to a pool of onnxruntime workers (one
single-threaded session per core, micro-batches of a few hundred rows) running the model
with the card's normalisation prepended and the post-processing appended
(:mod:`.postprocess`: activation, richness and top-K over every species, the probability
bands of the requested species), so the per-species work also runs in onnxruntime. One
block is in flight while the next is submitted, so the workers never wait for the main
thread. A writer thread puts the output blocks into the GeoTIFFs (:mod:`.geotiff`), which
live under temporary names until the run succeeds. Memory is bounded by the block size,
not by the area.

Top-K ties (equal probabilities) are broken by column order: the species listed first
in the model card comes first (ONNX TopK's rule).
"""

from __future__ import annotations

import itertools
import math
import os
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from .errors import GeoPlantError, InputDataError, MissingDependencyError, ModelCardError, OutputError
from .files import Publication
from .geotiff import (
    SPECIES_CSV_SUFFIX,
    GeoTiffWriter,
    check_band_count,
    check_disk_space,
    estimate_bytes,
    probability_band_description,
    publish_all,
    species_csv_text,
    topk_style_qml,
)
from .modelcard import listed
from .postprocess import (
    APPENDED_OUTPUTS,
    CHECKS,
    PREPENDED_PREFIX,
    append_postprocess,
    postprocess_graph,
    prepend_normalisation,
)
from .progress import as_progress

DEFAULT_CRS = "EPSG:3035"
DEFAULT_CELL_SIZE = 100.0
RICHNESS_NODATA = -9999.0
PROBABILITY_NODATA = -9999.0
TOPK_NODATA = -1
#: memory one block may use (inputs + model output + outputs), bytes
BLOCK_BUDGET_BYTES = 128 * 1024 * 1024
#: reference case (1M cells, 2 cores): 32,768 and 65,536 equally fast (4.3-4.4 s), 16,384
#: 4.5 s, 5,500 5.7 s; peak RSS 4x the cells / 1x: 1.09 at 32,768, 1.19 at 65,536 (a
#: 250,000-cell run then has too few blocks to fill the pipeline)
MAX_BLOCK_CELLS = 32768
#: rows per onnxruntime call (see Pipeline.run); measured best for the reference MLP
MICRO_BATCH = 256
#: top-K over groups of this many neighbouring rows (exact; postprocess._grouped_topk, the
#: leader's TopK taking postprocess.TOPK_MARGIN = 16 extra candidates): fused graph on the
#: bench MLP's rows, 2 sessions, us/row: plain 4.08, group 8 without margin 3.83 (73% of rows
#: on the cheap path), 8 / margin 16 3.70, 16 3.55-3.60, 32 3.48-3.57 (99%), 64 3.42-3.50.
#: With the -inf mask added per group: 32 3.23-3.25, 64 3.15-3.16, 64 / margin 24 3.18-3.23,
#: 128 / 24 3.12-3.18
TOPK_GROUP = 64
#: ... and at most about this many bytes of input + model output per call: measured on the
#: bench CNN (64 KB of patch per row), 32 rows gave 29 us/patch vs 44 at 256 (its conv
#: activations then stay in the caches); 2 MB keeps the MLP's 256 (8 KB per row)
MICRO_BATCH_BYTES = 2 * 1024 * 1024
#: at most this many concurrent onnxruntime sessions (one per core)
MAX_WORKERS = 4
#: blocks the prefetch thread prepares ahead of the inference
PREFETCH_DEPTH = 2
#: GDAL block cache during a run, MB
GDAL_CACHE_MB = 64
#: cells per side of the tiles :meth:`_Inputs.reach` checks against the sources
REACH_TILE = 32
#: warn before the run when at least this share of the grid lies outside the sources
OUTSIDE_WARNING = 0.25
#: how far outside [0, 1] the values of a model whose card says activation "none" may be
#: (float rounding in its own sigmoid/softmax) before the run stops
PROBABILITY_TOLERANCE = 1e-6
_DONE = object()


@dataclass
class PredictResult:
    cells: int
    valid_cells: int
    species: int
    seconds: float
    cells_per_second: float
    outputs: dict[str, str] = field(default_factory=dict)  # "richness" | "topk" | "probabilities" -> path


class OutputValuesError(ModelCardError):
    """The model's outputs cannot be probabilities: NaN, or for activation "none" values
    outside [0, 1]. ``where`` names the cells (:meth:`at` rewords it)."""

    def __init__(self, activation, low, high, nan, where):
        self.activation, self.low, self.high, self.nan, self.where = activation, low, high, nan, where
        super().__init__(self._message())

    def at(self, where: str, suffix: str = "") -> OutputValuesError:
        """The same error about ``where`` (e.g. a block of the grid), ``suffix`` appended."""
        error = OutputValuesError(self.activation, self.low, self.high, self.nan, where)
        error.args = (error.args[0] + suffix,)
        return error

    def _message(self) -> str:
        if self.activation == "none":
            found = []
            if self.low is not None and (
                self.low < -PROBABILITY_TOLERANCE or self.high > 1.0 + PROBABILITY_TOLERANCE
            ):
                found.append(f"values from {self.low:.6g} to {self.high:.6g}")
            if self.nan:
                found.append("NaN (not a number)")
            found = " and ".join(found) or "values outside [0, 1]"
            return (
                f"The model's outputs are not probabilities: {found} "
                f"in {self.where}, but its card says activation 'none' (the model itself outputs "
                "probabilities in [0, 1]). Set the card's output activation to 'sigmoid' or 'softmax' "
                "if the model outputs logits (scores), or fix the model."
            )
        return (
            f"The model's outputs hold NaN (not a number) in {self.where}: its {self.activation} "
            "activation cannot turn them into probabilities, so richness, top-K and probabilities "
            "there would be meaningless. Cells without data never reach the model, so check the "
            "card's normalisation (scale, mean, std), the input rasters' values (e.g. a nodata "
            "value not declared as nodata) and the model itself."
        )


def _ort():
    try:
        import onnxruntime as ort
    except ImportError as error:  # pragma: no cover - depends on the install
        raise MissingDependencyError(
            "Running a model needs the onnxruntime package (pip install onnxruntime)."
        ) from error
    return ort


def _session(model, threads: int | None = None):
    ort = _ort()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if threads:
        options.intra_op_num_threads = threads
    # Busy-waiting worker threads would steal the cores the prefetch/writer threads need.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def _workers(threads: int | None) -> tuple[int, int]:
    """(concurrent onnxruntime runs, intra-op threads of each).

    By default one single-threaded session per core, fed micro-batches in parallel:
    measured on the reference MLP (2 cores), 2 sessions x 1 thread beat 1 session x 2
    threads by ~15-20%, mostly because onnxruntime's TopK runs on one thread (so with
    one session a core idles during it) and small GEMMs scale poorly across threads.
    An explicit ``threads`` keeps one session with that many threads.
    """
    if threads:
        return 1, int(threads)
    return max(1, min(MAX_WORKERS, os.cpu_count() or 1)), 1


def default_block_cells(card, cell_size: float, output_bytes: int) -> int:
    """Cells per block: what fits BLOCK_BUDGET_BYTES, between 256 and MAX_BLOCK_CELLS.

    Per cell: its inputs, alive in up to PREFETCH_DEPTH + 3 blocks at once (see
    _run_blocks), and ``output_bytes`` of outputs, in up to 4 (two blocks' results, two
    queued for the writer). The model's [rows, species] output exists per micro-batch
    only. A patch input without fill is held as fine grids (with some halo), not patches.
    """
    inputs = 0
    for spec in card.inputs:
        if _lazy_patches(spec):
            inputs += int(2 * 4 * len(spec.source_names) * max(1.0, cell_size / spec.pixel_size_m) ** 2)
        else:
            inputs += 4 * math.prod(spec.tensor_shape(1))
    cell = (PREFETCH_DEPTH + 3) * inputs + 4 * int(output_bytes)
    return min(MAX_BLOCK_CELLS, max(256, BLOCK_BUDGET_BYTES // max(1, cell)))


def _lazy_patches(spec) -> bool:
    """Whether an input is fed as a :class:`.sampling.PatchSelection` (patches cut by the
    inference threads; normalised on the fine grid, not in the graph)."""
    return spec.kind == "patch" and spec.fill is None


def _number_worker(local: threading.local, counter) -> None:
    """A pool thread's start: it takes the next session index (0 .. workers - 1)."""
    local.worker = next(counter)


class PendingRun:
    """The outputs of a :meth:`Pipeline.submit` call, once its micro-batches are done."""

    def __init__(self, out: dict, futures: list):
        self._out, self._futures = out, futures

    def result(self) -> dict:
        """Wait for every micro-batch; the first error is raised (the rest cancelled)."""
        try:
            for future in self._futures:
                future.result()
        except BaseException:
            self.cancel()
            raise
        return self._out

    def cancel(self) -> None:
        """Drop the micro-batches not started yet (those running finish)."""
        for future in self._futures:
            future.cancel()


class Pipeline:
    """Model + pre/post-processing: ``run(feeds)`` -> {"richness"|"topk"|"probabilities": array}.

    Richness and top-K cover every species of the card; ``columns`` (card column indices,
    None: all) are the species of the probabilities output, in that order.

    Preferably one onnxruntime session on the model with the card's normalisation
    prepended (:func:`.postprocess.prepend_normalisation`) and the post-processing
    appended (:func:`.postprocess.append_postprocess`) to its graph: the activation can
    fuse into the last layer, the raw [N, S] output never reaches Python and the
    normalisation runs in onnxruntime (``graph_normalises`` names those inputs; patch
    inputs fed as :class:`.sampling.PatchSelection` are normalised on their fine grid by
    :meth:`_Inputs.prepare`). Otherwise (opset < 13, external weights...) the model's own
    session followed by the post-processing graph, normalising in numpy. There are
    ``workers`` such sessions (see :func:`_workers`), run on micro-batches by a pool of as
    many threads.
    """

    def __init__(self, model: LoadedModel, columns, **options):
        card = model.card
        n = len(card.species)
        columns = list(range(n)) if columns is None else list(columns)
        subset = None if columns == list(range(n)) else columns
        args = dict(columns=subset, species_ids=[s.id for s in card.species], **options)
        wanted = [k for k in ("richness", "topk", "probabilities") if _requested(k, options)]
        top_k = int(options.get("top_k") or 0)
        # rows per onnxruntime call: MICRO_BATCH, fewer when a row's input + output is big
        row_bytes = sum(4 * math.prod(spec.tensor_shape(1)) for spec in card.inputs) + 4 * n
        self.micro_batch = max(16, min(MICRO_BATCH, MICRO_BATCH_BYTES // row_bytes))
        # rows per group of the neighbour top-K (see postprocess._grouped_topk); 1: plain TopK.
        # No larger than a micro-batch, which is a whole number of groups: 64-row groups made
        # the bench CNN's 32-patch micro-batches 64 (patch case 1.45 -> 1.79 s)
        self.group = 1
        if 0 < top_k < n:
            self.group = TOPK_GROUP
            while self.group > 1 and self.group > self.micro_batch:
                self.group //= 2
        args["topk_group"] = self.group
        # what the outputs are checked for (see _check_values): activation "none" claims
        # probabilities, so min, max and NaN of every value are computed in the graph; a
        # sigmoid/softmax is in [0, 1] by construction but gives NaN for a NaN logit, which
        # a plain richness (a sum) already shows: no extra pass over [rows, species] then
        self.activation = card.output.activation
        self.threshold = options.get("threshold")
        if self.activation == "none":
            args["checks"] = "range"
        elif "richness" in wanted and self.threshold is None:
            args["checks"] = None
        else:
            args["checks"] = "sum"
        self.checks = CHECKS[args["checks"]]
        self.workers, threads = _workers(model.threads)
        self.fused = False
        #: inputs whose normalisation runs in the graph (the caller feeds them raw)
        self.graph_normalises: frozenset[str] = frozenset()
        self.rename = {}
        self.model_sessions = []
        try:
            # not patch inputs fed as PatchSelection: those are normalised on the fine
            # grid before the patches are cut, a small share of the pixels (_Inputs.prepare)
            steps = [(spec.name, *spec.affine()) for spec in card.inputs if not _lazy_patches(spec)]
            data = prepend_normalisation(model.data, steps)
            graph = append_postprocess(data, card.output.name, n, card.output.activation, **args)
            self.sessions = [_session(graph, threads) for _ in range(self.workers)]
            self.names = [APPENDED_OUTPUTS[k] for k in (*wanted, *self.checks)]
            self.rename = {
                name: PREPENDED_PREFIX + name
                for name, mul, add in steps
                if mul is not None or add is not None
            }
            self.fused = True
            self.graph_normalises = frozenset(name for name, _, _ in steps)
        except Exception:  # fall back to two sessions (the model as it is)
            post = postprocess_graph(n, card.output.activation, **args)
            self.model_sessions = [_session(model.path, threads) for _ in range(self.workers)]
            self.sessions = [_session(post, threads) for _ in range(self.workers)]
            self.names = [*wanted, *self.checks]
        self._executor: ThreadPoolExecutor | None = None
        self._local = threading.local()
        self.keys = wanted
        self.raw_name = card.output.name
        self.layout = {
            "richness": ((), np.float32),
            "topk": ((top_k,), np.int32),
            "probabilities": ((len(columns),), np.float32),
        }

    def run(self, feeds: dict, micro_batch: int | None = None) -> dict:
        """The outputs of the rows of ``feeds``: ``submit(feeds, micro_batch).result()``."""
        return self.submit(feeds, micro_batch).result()

    def submit(self, feeds: dict, micro_batch: int | None = None) -> PendingRun:
        """Start computing the rows of ``feeds``, ``micro_batch`` rows at a time; returns at once.

        Micro-batches keep the model's [rows, species] output in the CPU caches while the
        activation, the sum and the top-K pass over it (one 65k-row run makes a matrix of
        hundreds of MB that every pass reads from memory again). They go to a pool of
        ``workers`` threads, one session each (onnxruntime releases the GIL), which
        outlives the call: the engine submits the next block before it collects this one,
        so no core idles while the last micro-batch of a block finishes. By default the
        rows are cut into a multiple of ``workers`` micro-batches of equal size (at most
        about ``self.micro_batch``): 677 rows in 256-row pieces gave one worker two
        pieces and the other one, idle a third of the time.
        """
        n = len(next(iter(feeds.values())))
        if micro_batch:
            step = int(micro_batch)
        else:  # about MICRO_BATCH rows, the same number of micro-batches for every worker
            parts = math.ceil(n / (self.micro_batch * self.workers)) * self.workers
            step = -(-math.ceil(n / parts) // self.group) * self.group  # whole top-K groups
        step = max(1, step)
        out = {k: np.empty((n, *self.layout[k][0]), dtype=self.layout[k][1]) for k in self.keys}
        pool = self._pool()
        futures = [
            pool.submit(self._work, {k: v[start : start + step] for k, v in feeds.items()}, out, start)
            for start in range(0, n, step)
        ]
        return PendingRun(out, futures)

    def close(self) -> None:
        """Stop the worker threads (after the micro-batches already running)."""
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _pool(self) -> ThreadPoolExecutor:
        if self._executor is None:
            # the initializer gets the thread-local and a counter, not self: a worker
            # thread holding the pipeline would keep it (and the pool) alive for ever
            self._executor = ThreadPoolExecutor(
                self.workers,
                thread_name_prefix="geoplant-ort",
                initializer=_number_worker,
                initargs=(self._local, itertools.count()),
            )
        return self._executor

    def _work(self, feeds: dict, out: dict, start: int) -> None:
        part = self._run(self._local.worker, feeds)
        for k, v in part.items():
            out[k][start : start + len(v)] = v

    def _run(self, worker: int, feeds: dict) -> dict:
        n = len(next(iter(feeds.values())))
        pad = -n % self.group  # the grouped top-K takes whole groups: repeat the last row
        ready = {}
        for k, v in feeds.items():
            if hasattr(v, "copy_into"):  # a sampling.PatchSelection (no rasterio import here)
                buffer = self._patch_buffer(k, n + pad, v.patch_shape)
                v.copy_into(buffer)
                if pad:
                    buffer[n : n + pad] = buffer[n - 1]
                ready[k] = buffer[: n + pad]
            else:
                ready[k] = np.concatenate([v, np.repeat(v[-1:], pad, axis=0)]) if pad else v
        out = self._run_session(worker, ready)
        return {k: v[:n] for k, v in out.items()} if pad else out

    def _patch_buffer(self, name: str, rows: int, patch_shape: tuple) -> np.ndarray:
        """This worker thread's float32 buffer for a patch input, reused call after call
        (the same memory, warm in its core's caches, instead of fresh pages each time)."""
        buffers = self._local.__dict__.setdefault("buffers", {})
        buffer = buffers.get(name)
        if buffer is None or len(buffer) < rows or buffer.shape[1:] != patch_shape:
            buffer = buffers[name] = np.empty((rows, *patch_shape), dtype=np.float32)
        return buffer

    def _run_session(self, worker: int, feeds: dict) -> dict:
        if self.fused:
            feeds = {self.rename.get(k, k): v for k, v in feeds.items()}
        else:
            feeds = {"raw": self.model_sessions[worker].run([self.raw_name], feeds)[0]}
        values = self.sessions[worker].run(self.names, feeds)
        out = dict(zip(self.keys, values, strict=False))
        self._check_values(out, dict(zip(self.checks, values[len(self.keys) :], strict=True)))
        return out

    def _check_values(self, out: dict, checks: dict) -> None:
        """Raise :class:`OutputValuesError` when the probabilities of these rows cannot be
        true: NaN anywhere (a sum is NaN then), or, for activation "none", a value outside
        [0, 1] (with a tolerance of :data:`PROBABILITY_TOLERANCE`)."""
        if "check_sum" in checks:
            nan = bool(np.isnan(checks["check_sum"]))
        elif "richness" in out and self.threshold is None:
            nan = bool(np.isnan(out["richness"]).any())
        else:
            nan = False
        low = high = None
        if "check_min" in checks:
            low, high = float(checks["check_min"]), float(checks["check_max"])
            outside = low < -PROBABILITY_TOLERANCE or high > 1.0 + PROBABILITY_TOLERANCE
            if not (nan or outside):
                return
        elif not nan:
            return
        rows = len(next(iter(out.values())))
        raise OutputValuesError(self.activation, low, high, nan, f"a batch of {rows} cells")


def _requested(key, options) -> bool:
    return bool(options.get({"topk": "top_k"}.get(key, key)))


class LoadedModel:
    """An ONNX model and its validated card."""

    def __init__(self, model_path, threads: int | None = None):
        from .modelcard import read_model_card

        path = os.fspath(model_path)
        if not os.path.isfile(path):
            raise InputDataError(f"Model file not found: {path}")
        self.path = path
        self.card = read_model_card(path)
        with open(path, "rb") as handle:
            self.data = handle.read()
        self.threads = threads

    def pipeline(
        self, columns=None, *, top_k=0, richness=False, threshold=None, probabilities=False
    ) -> Pipeline:
        return Pipeline(
            self, columns, top_k=top_k, richness=richness, threshold=threshold, probabilities=probabilities
        )


# --- inputs ----------------------------------------------------------------------------


class _Inputs:
    """The samplers of every model input, and the cell -> tensor preparation."""

    def __init__(self, card, raster_paths, mapping, crs):
        from .sampling import PatchSampler, PointSampler
        from .sources import parse_mapping, resolve_variables

        if isinstance(mapping, str):
            mapping = parse_mapping(mapping)
        refs = resolve_variables(card.variable_names(), list(raster_paths or []), mapping or None)
        self.specs = card.inputs
        self.refs = {spec.name: [refs[n] for n in spec.source_names] for spec in card.inputs}
        self.samplers = []
        self._required_cache = None
        self._inside_key, self._inside = None, False
        try:
            for spec in card.inputs:
                if spec.kind == "patch":
                    sampler = PatchSampler(self.refs[spec.name], spec.size, spec.pixel_size_m, crs)
                else:
                    sampler = PointSampler(self.refs[spec.name], crs)
                self.samplers.append(sampler)
        except BaseException:
            self.close()
            raise

    def prepare(self, xs, ys, leave_raw=frozenset()):
        """Cell centres -> (feeds of the valid cells, valid bool [N]).

        ``fill`` replaces NaN (a raw value); otherwise a cell with any NaN is invalid. The
        card's normalisation is applied except to the inputs named in ``leave_raw`` (the
        graph normalises those). A patch input without ``fill`` is fed as a
        :class:`.sampling.PatchSelection`, not yet copied (see :meth:`Pipeline._run`).
        """
        n = len(xs)
        valid = np.ones(n, dtype=bool)
        tensors, lazy = {}, {}
        for spec, sampler in zip(self.specs, self.samplers, strict=True):
            if _lazy_patches(spec):
                # validity from the fine grid; the valid patches are cut by the inference threads
                lazy[spec.name] = patches = sampler.patches(xs, ys)
                valid &= patches.valid
                continue
            tensor, complete = spec.prepare(sampler.sample(xs, ys), normalise=spec.name not in leave_raw)
            valid &= complete
            tensors[spec.name] = tensor
        if valid.all():
            feeds = {k: np.ascontiguousarray(t, dtype=np.float32) for k, t in tensors.items()}
        else:
            feeds = {k: np.ascontiguousarray(t[valid], dtype=np.float32) for k, t in tensors.items()}
        for spec in self.specs:
            if spec.name in lazy:
                patches = lazy[spec.name]
                if spec.name not in leave_raw:
                    patches.normalise(*spec.affine())
                feeds[spec.name] = patches.selection(None if valid.all() else valid)
        return feeds, valid

    # -- where the sources can give values ------------------------------------------------

    def _required(self):
        """The source files an input without ``fill`` reads (a cell none of them reaches gets
        no value), grouped by CRS: [(CRS, same as the grid's, bounds [m, 4] (left, bottom,
        right, top of the corners), halos [m] (patch half-width, grid metres), sources)]."""
        if self._required_cache is None:
            groups: dict[str, list] = {}
            seen = set()
            for spec, sampler in zip(self.specs, self.samplers, strict=True):
                if spec.fill is not None:
                    continue
                halo = spec.size * spec.pixel_size_m / 2.0 if spec.kind == "patch" else 0.0
                for source, same in zip(sampler.sources, sampler._same_crs, strict=True):
                    if (source.path, halo) in seen:
                        continue
                    seen.add((source.path, halo))
                    cx, cy = source.transform * (
                        np.array([0, source.width, 0, source.width], dtype=np.float64),
                        np.array([0, 0, source.height, source.height], dtype=np.float64),
                    )
                    group = groups.setdefault(source.crs.to_wkt(), [source.crs, same, [], [], []])
                    group[2].append((cx.min(), cy.min(), cx.max(), cy.max()))
                    group[3].append(halo)
                    group[4].append(source)
            self._required_cache = [
                (crs, same, np.array(bounds, dtype=np.float64), np.array(halos), sources)
                for crs, same, bounds, halos, sources in groups.values()
            ]
        return self._required_cache

    def _transform(self, crs, xs, ys):
        from rasterio.warp import transform

        with np.errstate(invalid="ignore"):
            tx, ty = transform(self.samplers[0].crs, crs, xs.ravel(), ys.ravel())
        return (
            np.asarray(tx, dtype=np.float64).reshape(xs.shape),
            np.asarray(ty, dtype=np.float64).reshape(xs.shape),
        )

    def _grid_inside(self, grid) -> bool:
        """True when the whole grid lies inside every required source (its densified outline
        transformed): then :meth:`reach` has nothing to cut. A wrong True would only cost
        time (every cell sampled, as before), never values."""
        key = (grid.crs, grid.left, grid.top, grid.width, grid.height, grid.cell_size)
        if self._inside_key != key:
            self._inside_key, self._inside = key, False
            left, bottom, right, top = grid.bounds
            t = np.linspace(0.0, 1.0, 65)
            xs = np.concatenate([left + (right - left) * t, np.full_like(t, right), left + (right - left) * t,
                                 np.full_like(t, left)])  # fmt: skip
            ys = np.concatenate([np.full_like(t, top), bottom + (top - bottom) * t, np.full_like(t, bottom),
                                 bottom + (top - bottom) * t])  # fmt: skip
            inside = True
            for crs, same, bounds, halos, _ in self._required():
                try:
                    tx, ty = (xs, ys) if same else self._transform(crs, xs, ys)
                except Exception:
                    return False
                if not (np.isfinite(tx).all() and np.isfinite(ty).all()):
                    return False
                x0, x1, y0, y1 = tx.min(), tx.max(), ty.min(), ty.max()
                pad = 0.01 * max(x1 - x0, y1 - y0) * (1.0 + halos / max(right - left, top - bottom))
                inside &= bool(
                    np.all((bounds[:, 0] < x0 - pad) & (bounds[:, 2] > x1 + pad))
                    and np.all((bounds[:, 1] < y0 - pad) & (bounds[:, 3] > y1 + pad))
                )
            self._inside = inside
        return self._inside

    def reach(self, grid, row: int, col: int, rows: int, cols: int, tile: int = REACH_TILE):
        """bool [rows * cols]: False for the cells of the window that cannot get a value for
        every input without ``fill`` (no required source overlaps them); None when all may.

        The window is cut into tiles of ``tile`` x ``tile`` cells; the tile corners are
        transformed to each source CRS (once per CRS) and a tile is kept when the bounding
        box of its corners, widened by a quarter of its size (curvature) and by the patch
        half-width, overlaps the source's. Conservative: a tile whose corners do not all
        transform is kept (its cells are then sampled and found invalid as before).
        """
        required = self._required()
        if not required or self._grid_inside(grid):
            return None
        r_edges = np.unique(np.r_[np.arange(row, row + rows, tile), row + rows])
        c_edges = np.unique(np.r_[np.arange(col, col + cols, tile), col + cols])
        size = grid.cell_size
        px, py = np.meshgrid(grid.left + c_edges * size, grid.top - r_edges * size)
        tile_w = (np.diff(c_edges)[None, :] * size)[None]  # metres, [1, 1, tiles x]
        tile_h = (np.diff(r_edges)[:, None] * size)[None]
        keep = np.ones((len(r_edges) - 1, len(c_edges) - 1), dtype=bool)
        for crs, same, bounds, halos, _ in required:
            try:
                tx, ty = (px, py) if same else self._transform(crs, px, py)
            except Exception:  # no transformation: keep everything
                return None
            corners_x = np.stack([tx[:-1, :-1], tx[:-1, 1:], tx[1:, :-1], tx[1:, 1:]])
            corners_y = np.stack([ty[:-1, :-1], ty[:-1, 1:], ty[1:, :-1], ty[1:, 1:]])
            finite = np.isfinite(corners_x).all(axis=0) & np.isfinite(corners_y).all(axis=0)
            with np.errstate(invalid="ignore"):
                x0, x1 = corners_x.min(axis=0)[None], corners_x.max(axis=0)[None]
                y0, y1 = corners_y.min(axis=0)[None], corners_y.max(axis=0)[None]
                w, h = x1 - x0, y1 - y0
                per_metre = np.maximum(w / tile_w, h / tile_h)
                margin = (
                    0.25 * np.maximum(w, h)
                    + halos[:, None, None] * per_metre
                    + 1e-9 * (np.abs(x0) + np.abs(y0) + 1.0)
                )  # [sources, tiles y, tiles x]
                b = bounds[:, :, None, None]
                overlaps = (x0 - margin < b[:, 2]) & (x1 + margin > b[:, 0])
                overlaps &= (y0 - margin < b[:, 3]) & (y1 + margin > b[:, 1])
            keep &= ~finite | overlaps.all(axis=0)
        if keep.all():
            return None
        counts_r, counts_c = np.diff(r_edges), np.diff(c_edges)
        return np.repeat(np.repeat(keep, counts_r, axis=0), counts_c, axis=1).ravel()

    def share_outside(self, grid, samples: int = 256) -> float:
        """Share of the grid's cells (estimated on up to ``samples`` x ``samples`` cell
        centres) that lie outside a source of an input without ``fill``."""
        required = self._required()
        if not required:
            return 0.0
        height, width = grid.shape
        rows = np.unique(np.linspace(0, height - 1, min(samples, height)).round().astype(np.int64))
        cols = np.unique(np.linspace(0, width - 1, min(samples, width)).round().astype(np.int64))
        size = grid.cell_size
        px, py = np.meshgrid(grid.left + (cols + 0.5) * size, grid.top - (rows + 0.5) * size)
        px, py = px.ravel(), py.ravel()
        inside = np.ones(px.size, dtype=bool)
        for crs, same, _, _, sources in required:
            try:
                tx, ty = (px, py) if same else self._transform(crs, px, py)
            except Exception:
                return 0.0
            for source in sources:
                c, r = source.inverse * (tx, ty)
                with np.errstate(invalid="ignore"):
                    inside &= (c >= 0) & (c < source.width) & (r >= 0) & (r < source.height)
        return 1.0 - float(inside.mean())

    def close(self):
        for sampler in self.samplers:
            try:
                sampler.close()
            except Exception:  # closing read-only datasets
                pass
        self.samplers = []

    def check_overlap(self, grid) -> None:
        """Refuse up front a grid that does not overlap a source (of an input without fill).

        The samplers' open datasets are used, and the grid's bounds are transformed once per
        source CRS (each costs tens of ms; a card may name 19 variables in one CRS)."""
        from rasterio.warp import transform_bounds

        left, bottom, right, top = grid.bounds
        sources = {source.path: source for sampler in self.samplers for source in sampler.sources}
        in_crs: dict[str, tuple | None] = {}  # CRS WKT -> the grid's bounds in it (None: no transform)
        for spec in self.specs:
            if spec.fill is not None:
                continue
            for name, ref in zip(spec.source_names, self.refs[spec.name], strict=True):
                source = sources[str(ref.path)]
                key = source.crs.to_wkt()
                if key not in in_crs:
                    try:
                        in_crs[key] = transform_bounds(
                            grid.crs, source.crs, left, bottom, right, top, densify_pts=21
                        )
                    except Exception:  # no valid transform: leave it to the sampler
                        in_crs[key] = None
                b, s = in_crs[key], source.ds.bounds
                if b is None:
                    continue
                if b[0] >= s.right or b[2] <= s.left or b[1] >= s.top or b[3] <= s.bottom:
                    raise InputDataError(
                        f"The extent does not overlap the raster of variable '{name}' "
                        f"({os.path.basename(ref.path)}): the grid covers "
                        f"({left:.0f}, {bottom:.0f}, {right:.0f}, {top:.0f}) in {grid.crs}, i.e. "
                        f"({b[0]:.4f}, {b[1]:.4f}, {b[2]:.4f}, {b[3]:.4f}) in the raster's CRS, "
                        f"and the raster covers ({s.left:.4f}, {s.bottom:.4f}, {s.right:.4f}, "
                        f"{s.top:.4f}). Choose an extent inside the rasters."
                    )


# --- the run ---------------------------------------------------------------------------


def _blocks(height: int, width: int, cells: int, max_rows: int = 256):
    """(row_off, col_off, rows, cols) tiles of about ``cells`` cells, in row order.

    Tiles are near-square: a patch model reads and warps a window of the block plus half a
    patch on every side, which for a one-row strip is several times the block itself. Their
    height is a power of two no larger than ``max_rows`` (the writers' strip height, also a
    power of two), so a row of tiles never straddles two of the writers' strips.
    """
    cells = max(1, int(cells))
    rows = 1
    while rows * 2 <= min(math.isqrt(cells), max_rows):
        rows *= 2
    cols = min(width, max(1, cells // min(rows, height)))
    if cols == width:  # the whole width fits: use the budget for more rows
        while rows * 2 <= max_rows and rows * 2 * width <= cells:
            rows *= 2
    for r in range(0, height, rows):
        for c in range(0, width, cols):
            yield r, c, min(rows, height - r), min(cols, width - c)


def _first_block_split(windows: list, pieces: int = 4, min_cells: int = 1024) -> list:
    """The first window cut into up to ``pieces`` narrower ones: the inference cannot start
    before the first block is sampled, so a smaller first block lets it start sooner
    (patch bench: the first of 8,176 cells took 0.08 s of a 1.4 s run, both cores idle)."""
    if len(windows) < 2:
        return windows
    row, col, rows, cols = windows[0]
    n = max(1, min(pieces, cols, rows * cols // min_cells))
    edges = [col + (cols * i) // n for i in range(n + 1)]
    return [(row, a, rows, b - a) for a, b in zip(edges[:-1], edges[1:], strict=True)] + windows[1:]


def _resolve_outputs(output_richness, output_topk, output_probabilities):
    outputs = {
        k: os.path.abspath(os.fspath(v))
        for k, v in (
            ("richness", output_richness),
            ("topk", output_topk),
            ("probabilities", output_probabilities),
        )
        if v
    }
    if not outputs:
        raise OutputError(
            "No output requested: give at least one of the richness, top-K or probabilities rasters."
        )
    paths = list(outputs.values())
    if len(set(paths)) != len(paths):
        raise OutputError("Two outputs have the same file name; give each output its own file.")
    return outputs


#: the Processing names of predict's outputs (what a refusal names)
OUTPUT_LABELS = {
    "richness": "OUTPUT_RICHNESS",
    "topk": "OUTPUT_TOPK",
    "probabilities": "OUTPUT_PROBABILITIES",
}


def topk_sidecars(path) -> list[str]:
    """The files written next to a top-K raster: its species table and its QGIS style."""
    stem = os.path.splitext(os.path.abspath(os.fspath(path)))[0]
    return [stem + SPECIES_CSV_SUFFIX, stem + ".qml"]


def run_input_files(model_path=None, raster_paths=(), mapping=None, extra=None) -> dict:
    """Every file a run reads, by parameter name, for :func:`.files.check_outputs`: the
    MODEL, the RASTERS, the MAPPING file (when MAPPING names one) and the rasters the
    MAPPING names, and ``extra`` ({label: path or paths}: an AREA layer's file...)."""
    from .sources import parse_mapping

    inputs: dict = {}
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
            except GeoPlantError:  # reported where the mapping is used
                mapping = {}
        inputs["a raster of MAPPING"] = [ref.path for ref in dict(mapping).values()]
    for label, value in (extra or {}).items():
        if value:
            inputs[label] = value
    return inputs


def _output_files(outputs: dict) -> dict:
    """{label: [output, its sidecars...]} of predict's outputs (see ``check_outputs``)."""
    from .files import RASTER_SIDECARS

    files = {}
    for key, path in outputs.items():
        names = [path, *(path + s for s in RASTER_SIDECARS)]
        if key == "topk":
            names += topk_sidecars(path)
        files[OUTPUT_LABELS[key]] = names
    return files


def _check_arguments(model_path, raster_paths, top_k, threshold, cell_size, extent, block_cells, threads):
    """:func:`predict`'s arguments checked in one place, before anything is read: their
    types and ranges, each refusal an InputDataError saying what was given and what to give.
    Returns (raster_paths as a list, top_k, threshold, cell_size, extent, block_cells, threads)."""
    from . import checks

    if not isinstance(model_path, str | os.PathLike | bytes) or not os.fspath(model_path):
        raise InputDataError(f"The model must be the path of an .onnx file; got {model_path!r}.")
    if raster_paths is None:
        raster_paths = []
    elif isinstance(raster_paths, str | os.PathLike):
        raster_paths = [raster_paths]  # one raster given as a path, not a list
    else:
        try:
            raster_paths = list(raster_paths)
        except TypeError:
            raise InputDataError(f"The rasters must be a list of file paths; got {raster_paths!r}.") from None
    bad = [p for p in raster_paths if not isinstance(p, str | os.PathLike)]
    if bad:
        raise InputDataError(f"The rasters must be file paths; got {bad[0]!r}.")
    top_k = checks.top_k(0 if top_k is None else top_k)
    threshold = checks.threshold(threshold)
    if cell_size is not None:
        cell_size = checks.cell_size(cell_size)
    if extent is not None:
        extent = checks.extent(extent)
    if block_cells is not None:
        block_cells = checks.number(block_cells, "block_cells", minimum=1, maximum=2**31 - 1, integer=True)
    if threads is not None:
        threads = checks.number(threads, "threads", minimum=1, maximum=1024, integer=True)
    return raster_paths, top_k, threshold, cell_size, extent, block_cells, threads


#: rows of the model timed (once, only to word a refusal) for the estimated time
LIMIT_TIMING_BATCH = 64


def _check_limit(model, grid, outputs, top_k: int, probabilities: int, max_cells) -> None:
    """Refuse a grid beyond MAX_CELLS (:func:`core.limits.check_grid`) as soon as its size is
    known. The bytes and time are the dock's estimate (:mod:`core.estimate`); the model is
    timed on a small batch only when the run is refused."""
    from .estimate import expected_seconds, output_bytes, time_model
    from .limits import check_grid

    check_grid(
        grid.width,
        grid.height,
        grid.cell_size,
        max_cells,
        bytes_needed=lambda cells: output_bytes(
            cells,
            "richness" in outputs,
            top_k if "topk" in outputs else 0,
            probabilities if "probabilities" in outputs else 0,
        ),  # fmt: skip
        seconds=lambda cells: expected_seconds(
            cells, time_model(model.path, batch=LIMIT_TIMING_BATCH, repeats=1)
        ),
    )


def predict(
    model_path,
    raster_paths,
    *,
    mapping=None,
    extent=None,
    extent_crs=None,
    area=None,
    area_crs=None,
    crs=None,
    cell_size=None,
    top_k=25,
    species=None,
    threshold=None,
    output_richness=None,
    output_topk=None,
    output_probabilities=None,
    progress=None,
    block_cells=None,
    threads=None,
    input_files=None,
    max_cells=None,
) -> PredictResult:
    """Run the model over every cell of the grid and write the requested rasters.

    ``extent``: (xmin, ymin, xmax, ymax) in ``extent_crs`` (default: the grid CRS);
    ``area``: polygon geometries (see :func:`.grid.area_mask`) in ``area_crs``: cells whose
    centre is outside are nodata (its bounds are the extent when no extent is given).
    ``crs``/``cell_size``: the grid (default: the card's grid, else EPSG:3035 and 100 m).
    ``species``: ids or names (comma-separated text or a list) of the species whose
    probability bands are written, in that order (default all); richness and top-K always
    cover every species of the model. ``threshold``: richness counts species with p >= threshold.
    ``block_cells``: cells per block (default from a memory budget); ``threads``:
    onnxruntime threads of one session (default: one single-threaded session per core).
    ``input_files``: {label: path} of other files the run reads (the AREA layer's file).
    ``max_cells``: a grid of more cells is refused as soon as its size is known, before any
    output is opened, with the numbers and what to do instead (:func:`core.limits.check_grid`;
    default $GEOPLANT_MAX_CELLS, else 50,000,000).

    An output (or its sidecars: ``.aux.xml``, the top-K's ``_species.csv`` and ``.qml``)
    that is an input or another output is refused before anything starts; the outputs are
    written under temporary names and published together when the run succeeds; a failed
    or cancelled run leaves the files that were there as they were and removes the
    folders it made.
    """
    from .files import check_outputs
    from .grid import area_bounds, area_in_crs, area_polygons, make_grid

    progress = as_progress(progress)
    started = time.perf_counter()
    outputs = _resolve_outputs(output_richness, output_topk, output_probabilities)
    raster_paths, top_k, threshold, cell_size, extent, block_cells, threads = _check_arguments(
        model_path, raster_paths, top_k, threshold, cell_size, extent, block_cells, threads
    )
    check_outputs(_output_files(outputs), run_input_files(model_path, raster_paths, mapping, input_files))
    if "topk" in outputs and top_k == 0:
        raise InputDataError("A top-K raster was requested but TOP_K is 0; set TOP_K to 1 or more.")

    model = LoadedModel(model_path, threads)
    card = model.card
    columns = card.select_species(species)
    kept = [card.species[c] for c in columns]  # the probability bands
    n_species = len(card.species)
    if "richness" in outputs and card.output.activation == "softmax" and threshold is None:
        raise InputDataError(
            "This model's output is a softmax (its probabilities sum to 1 over the species), so the "
            "sum of probabilities is not a species richness. Give a THRESHOLD to count the species "
            "with a probability at or above it, or do not request the richness output."
        )
    if "topk" in outputs and top_k > n_species:
        progress.warning(f"TOP_K {top_k} is more than the model's {n_species} species; using {n_species}.")
        top_k = n_species

    grid_crs = crs or (card.grid.crs if card.grid else DEFAULT_CRS)
    size = cell_size if cell_size is not None else (card.grid.cell_size_m if card.grid else DEFAULT_CELL_SIZE)
    if area is not None:
        area = area_polygons(area)
    if extent is None:
        if area is None:
            raise InputDataError("Give an EXTENT or an AREA to predict over.")
        extent, extent_crs = area_bounds(area), area_crs
    grid = make_grid(tuple(extent), extent_crs or grid_crs, crs=grid_crs, cell_size=size)
    if area is not None:
        area = area_in_crs(area, area_crs, grid.crs)  # once, not per block
    height, width = grid.shape
    _check_limit(model, grid, outputs, top_k, len(kept), max_cells)

    # outputs: bands, descriptions, disk space, band limit, all before any work
    specs = {}
    if "richness" in outputs:
        specs["richness"] = dict(
            count=1,
            dtype="float32",
            nodata=RICHNESS_NODATA,
            resampling="average",
            descriptions=["richness" if threshold is None else f"species with p >= {threshold:g}"],
        )
    if "topk" in outputs:
        stem = os.path.splitext(outputs["topk"])[0]
        table = [(s.id, s.name) for s in card.species]
        specs["topk"] = dict(
            count=top_k,
            dtype="int32",
            nodata=TOPK_NODATA,
            resampling="nearest",
            descriptions=[f"rank {i}" for i in range(1, top_k + 1)],
            sidecars={
                stem + SPECIES_CSV_SUFFIX: species_csv_text(table),
                stem + ".qml": topk_style_qml(table),
            },
        )
    if "probabilities" in outputs:
        specs["probabilities"] = dict(
            count=len(kept),
            dtype="float32",
            nodata=PROBABILITY_NODATA,
            resampling="average",
            descriptions=[probability_band_description(s.name, s.id) for s in kept],
        )
    for key, spec in specs.items():
        check_band_count(spec["count"], f"The {key} raster {os.path.basename(outputs[key])}")
    # the run's temporaries and the folders it makes: removed again unless it publishes
    publication = Publication(progress)
    try:
        for key in specs:
            publication.folder(outputs[key])
        check_disk_space(
            (outputs[k], estimate_bytes(width, height, s["count"], s["dtype"])) for k, s in specs.items()
        )
        inputs = _Inputs(card, raster_paths, mapping, grid.crs)
    except BaseException:
        publication.discard()
        raise
    if mapping:
        from .sources import unused_mapping_names

        unused = unused_mapping_names(card.variable_names(), mapping)
        if unused:
            progress.warning(
                f"MAPPING names {listed(unused, 20)}, which the model does not use (its variables and "
                f"bands: {listed(card.variable_names(), 50)}); check for a typo."
            )
    post = None
    try:
        inputs.check_overlap(grid)
        post = model.pipeline(
            columns,
            top_k=top_k if "topk" in outputs else 0,
            richness="richness" in outputs,
            threshold=threshold,
            probabilities="probabilities" in outputs,
        )
        if block_cells is None:
            block_cells = default_block_cells(card, size, sum(s["count"] * 4 for s in specs.values()))
        outside = inputs.share_outside(grid)
        if outside >= OUTSIDE_WARNING:
            share = "Almost all (over 99.5%)" if outside > 0.995 else f"About {100 * outside:.0f}%"
            progress.warning(
                f"{share} of the grid's {width * height:,} cells lie outside the input "
                "rasters: they will be nodata (they are skipped, not computed). If that is not what you "
                "meant, check the extent (its CRS, and the order of its coordinates)."
            )
        progress.info(
            f"Grid: {width} x {height} cells of {size:g} m in {grid.crs}, "
            f"{n_species} species"
            + (f" ({len(kept)} probability bands)" if "probabilities" in outputs else "")
            + f", blocks of {block_cells} cells."
        )
        writers = {
            k: GeoTiffWriter(
                outputs[k],
                width=width,
                height=height,
                crs=grid.crs,
                transform=grid.transform,
                publication=publication,
                **s,
            )
            for k, s in specs.items()
        }
        import rasterio

        # GDAL's block cache (5% of RAM by default) would otherwise grow with the area
        # (written tiles, source tiles): cap it for the run so memory stays flat.
        with rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_MB):
            valid_total = _run_blocks(grid, inputs, post, writers, area, block_cells, progress)
    finally:
        inputs.close()
        if post is not None:
            post.close()
        if not publication.published:
            publication.discard()

    seconds = time.perf_counter() - started
    cells = width * height
    result = PredictResult(
        cells=cells,
        valid_cells=valid_total,
        species=n_species,
        seconds=seconds,
        cells_per_second=cells / seconds if seconds > 0 else float("inf"),
        outputs=dict(outputs),
    )
    progress.info(
        f"Predicted {cells:,} cells ({valid_total:,} valid), {n_species} species, "
        f"in {seconds:.1f} s: {result.cells_per_second:,.0f} cells/s."
    )
    return result


def _run_blocks(grid, inputs, post, writers, area, block_cells, progress):
    """The block loop with its prefetch and writer threads; returns the number of valid cells.
    ``area``: polygons already in the grid CRS (or None)."""
    from rasterio.windows import Window

    from .grid import area_mask

    height, width = grid.shape
    strip = min((w.tile_h for w in writers.values()), default=256)
    windows = _first_block_split(list(_blocks(height, width, block_cells, strip)))
    stop = threading.Event()
    # blocks prepared ahead; with the one being prepared, the one submitted and the one in
    # flight, at most PREFETCH_DEPTH + 3 blocks' feeds are alive at once (default_block_cells)
    ready: queue.Queue = queue.Queue(maxsize=PREFETCH_DEPTH)
    to_write: queue.Queue = queue.Queue(maxsize=2)
    write_error: list[BaseException] = []

    def produce():
        try:
            for row, col, rows, cols in windows:
                if stop.is_set():
                    return
                # cells no required source reaches: nodata, never sampled nor transformed
                inside = inputs.reach(grid, row, col, rows, cols)
                if inside is not None and not inside.any():
                    _put_until(ready, (row, col, rows, cols, None, np.zeros(rows * cols, dtype=bool)), stop)
                    continue
                xs, ys = grid.cell_centres(row, row + rows, col, col + cols)
                xs, ys = np.asarray(xs).ravel(), np.asarray(ys).ravel()
                if area is not None:
                    mask = area_mask(grid, area, window=Window(col, row, cols, rows))
                    mask = np.asarray(mask, dtype=bool).ravel()
                    inside = mask if inside is None else inside & mask
                if inside is not None:
                    xs, ys = xs[inside], ys[inside]
                if len(xs):
                    feeds, valid = inputs.prepare(xs, ys, leave_raw=post.graph_normalises)
                else:
                    feeds, valid = None, np.zeros(0, dtype=bool)
                if inside is not None:
                    full = np.zeros(rows * cols, dtype=bool)
                    full[np.flatnonzero(inside)[valid]] = True
                    valid = full
                _put_until(ready, (row, col, rows, cols, feeds, valid), stop)
        except BaseException as error:  # handed to the main thread
            _put_until(ready, error, stop)
            return
        _put_until(ready, _DONE, stop)

    def consume():
        try:
            while True:
                item = to_write.get()
                if item is _DONE:
                    return
                row, col, blocks = item
                for key, block in blocks.items():
                    writers[key].write(block, row, col)
        except BaseException as error:  # reported by the main thread
            write_error.append(error)
            stop.set()
            while to_write.get() is not _DONE:  # drain so the main thread never blocks
                pass

    nodata = {"richness": RICHNESS_NODATA, "topk": TOPK_NODATA, "probabilities": PROBABILITY_NODATA}
    valid_total = 0
    reader = threading.Thread(target=produce, name="geoplant-prefetch", daemon=True)
    writer = threading.Thread(target=consume, name="geoplant-writer", daemon=True)
    try:
        for w in writers.values():
            w.open()
        reader.start()
        writer.start()
        done = [0]  # blocks handed to the writer
        # One block in flight: block k + 1 is submitted to the onnxruntime workers before
        # block k is collected, assembled and handed to the writer, so the workers never
        # wait for the main thread between blocks.
        in_flight = None

        def collect(entry) -> int:
            row, col, rows, cols, valid, n_valid, pending = entry
            try:
                results = pending.result() if pending is not None else None
            except OutputValuesError as error:
                where = f"the block of grid rows {row}-{row + rows - 1}, columns {col}-{col + cols - 1}"
                raise error.at(where, " Nothing was written.") from None
            blocks = {}
            for key, w in writers.items():
                if n_valid == len(valid):
                    values = results[key]
                    block = values.T if values.ndim == 2 else values[None]
                    block = block.reshape(w.count, rows, cols)
                else:
                    block = np.full((w.count, rows * cols), nodata[key], dtype=w.dtype)
                    if n_valid:
                        values = results[key]
                        block[:, valid] = values.T if values.ndim == 2 else values[None]
                    block = block.reshape(w.count, rows, cols)
                blocks[key] = block
            to_write.put((row, col, blocks))
            done[0] += 1
            progress.set_progress(100.0 * done[0] / len(windows))
            return n_valid

        try:
            while True:
                progress.check_cancelled()
                item = _get_until(ready, write_error)
                if item is _DONE:
                    break
                if isinstance(item, BaseException):
                    raise item
                if write_error:
                    raise write_error[0]
                row, col, rows, cols, feeds, valid = item
                n_valid = int(valid.sum())
                pending = post.submit(feeds) if n_valid else None
                entry = (row, col, rows, cols, valid, n_valid, pending)
                if in_flight is not None:
                    valid_total += collect(in_flight)
                in_flight = entry
            if in_flight is not None:
                entry, in_flight = in_flight, None
                valid_total += collect(entry)
        finally:
            if in_flight is not None and in_flight[-1] is not None:
                in_flight[-1].cancel()
        progress.check_cancelled()
        to_write.put(_DONE)
        writer.join()
        if write_error:
            raise write_error[0]
        if valid_total == 0:
            raise InputDataError(
                "No cell of the grid has data for every model input"
                + (" inside the AREA" if area is not None else "")
                + ": the rasters have no data there (nodata or outside). Check the extent, the "
                "area and the rasters; nothing was written."
            )
        # one after the other: building two GTiffs' overviews from two threads at once
        # corrupted memory with Debian 12's GDAL 3.6 (aborts in libtiff), measured
        for w in writers.values():
            progress.check_cancelled()  # a cancel while the overviews are built
            w.finish()
        progress.check_cancelled()  # the last moment before anything is replaced
        publish_all(list(writers.values()))
        return valid_total
    except BaseException:
        stop.set()
        if writer.is_alive():
            _put_until(to_write, _DONE, None)
            writer.join()
        for w in writers.values():
            w.discard()
        raise
    finally:
        stop.set()
        if reader.is_alive():
            try:
                while True:
                    ready.get_nowait()
            except queue.Empty:
                pass
            reader.join(timeout=30)


def _get_until(q: queue.Queue, errors: list):
    """The next item of ``q``; raises the first of ``errors`` (the writer's) as soon as there
    is one: the prefetch thread stops then without handing over anything more."""
    while True:
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            if errors:
                raise errors[0] from None


def _put_until(q: queue.Queue, item, stop) -> None:
    while True:
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            if stop is not None and stop.is_set() and item is not _DONE:
                return
            if stop is not None and stop.is_set():
                try:
                    q.get_nowait()
                except queue.Empty:
                    pass


# --- points ----------------------------------------------------------------------------


def predict_points(model_path, raster_paths, xs, ys, crs, mapping=None, *, batch=4096) -> np.ndarray:
    """Probabilities of every species of the card at arbitrary points: float32 [N, S].

    ``model_path``: an ONNX file, or a :class:`LoadedModel` already read.

    ``xs``, ``ys`` in ``crs``; rows of points where an input has no data are NaN. Patch
    inputs are cut in the card's grid CRS (else EPSG:3035) when ``crs`` is geographic.
    """
    from rasterio.warp import transform

    from .grid import parse_crs

    model = model_path if isinstance(model_path, LoadedModel) else LoadedModel(model_path)
    card = model.card
    xs = np.asarray(xs, dtype=np.float64).ravel()
    ys = np.asarray(ys, dtype=np.float64).ravel()
    if xs.shape != ys.shape:
        raise InputDataError("xs and ys must have the same length.")
    sample_crs = crs
    if any(s.kind == "patch" for s in card.inputs) and parse_crs(crs, "points' CRS").is_geographic:
        sample_crs = card.grid.crs if card.grid else DEFAULT_CRS
        if len(xs):
            tx, ty = transform(crs, sample_crs, xs.tolist(), ys.tolist())
            xs, ys = np.asarray(tx), np.asarray(ty)
    out = np.full((len(xs), len(card.species)), np.nan, dtype=np.float32)
    if not len(xs):
        return out
    post = model.pipeline(None, probabilities=True)
    try:
        inputs = _Inputs(card, raster_paths, mapping, sample_crs)
    except BaseException:
        post.close()
        raise
    try:
        for start in range(0, len(xs), batch):
            stop = min(start + batch, len(xs))
            feeds, valid = inputs.prepare(xs[start:stop], ys[start:stop], leave_raw=post.graph_normalises)
            if valid.any():
                try:
                    probs = post.run(feeds)["probabilities"]
                except OutputValuesError as error:
                    raise error.at(f"the points {start + 1}-{stop}") from None
                out[start:stop][valid] = probs
    finally:
        inputs.close()
        post.close()
    return out


__all__ = [
    "GeoPlantError",
    "PredictResult",
    "predict",
    "predict_points",
    "LoadedModel",
    "default_block_cells",
]
