"""Inference: the model with its pre- and post-processing, run on micro-batches by workers.

:class:`Pipeline` is the plan of one run's inference, chosen explicitly and logged
(:attr:`Pipeline.plan`): preferably ONE fused session per worker (the card's
normalisation prepended to the model's graph, the post-processing appended: activation,
richness, top-K, probability columns, value checks), else, only when the graph surgery
cannot apply to this model (:func:`fused_unsupported`: opset below 13; weights in external
files are fused too), two sessions per worker (the model as it is, then the post-processing graph),
normalising in numpy. Top-K ties (equal probabilities) are broken by column order: the
species listed first in the model card comes first (ONNX TopK's rule).
"""

from __future__ import annotations

import itertools
import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ModelCardError
from ..postprocess import (
    APPENDED_OUTPUTS,
    CHECKS,
    PREPENDED_PREFIX,
    append_postprocess,
    default_opset,
    postprocess_graph,
    prepend_normalisation,
)
from .model import session, workers

if TYPE_CHECKING:
    from ..modelcard import InputSpec
    from .model import LoadedModel

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
#: the lowest default-domain opset the graph surgery (:mod:`core.postprocess`) supports
FUSED_MIN_OPSET = 13
#: how far outside [0, 1] the values of a model whose card says activation "none" may be
#: (float rounding in its own sigmoid/softmax) before the run stops
PROBABILITY_TOLERANCE = 1e-6


def fused_unsupported(data: bytes) -> str | None:
    """Why the normalisation and post-processing cannot be fused into this model's graph,
    in words, or None when they can: a default-domain opset below :data:`FUSED_MIN_OPSET`
    (the appended nodes need opset 13's ReduceSum/Softmax forms). Weights in external
    files (models over 2 GB) are fine: the fused session is told the model's folder."""
    opset = default_opset(data)
    if opset < FUSED_MIN_OPSET:
        return f"the model's opset {opset} is below {FUSED_MIN_OPSET}"
    return None


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
            what = " and ".join(found) or "values outside [0, 1]"
            return (
                f"The model's outputs are not probabilities: {what} "
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


#: the name of the inference workers' threads starts with this
_THREAD_PREFIX = "geoplant-ort"


def lazy_patches(spec: InputSpec) -> bool:
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
    :meth:`_Inputs.prepare`). Otherwise (opset < 13) the model's own
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
        self.workers, threads = workers(model.threads)
        self.fused = False
        #: inputs whose normalisation runs in the graph (the caller feeds them raw)
        self.graph_normalises: frozenset[str] = frozenset()
        self.rename: dict[str, str] = {}
        self.model_sessions: list[Any] = []
        self.fallback = fused_unsupported(model.data)
        if self.fallback is None:
            # not patch inputs fed as PatchSelection: those are normalised on the fine
            # grid before the patches are cut, a small share of the pixels (inputs.Inputs)
            steps = [(spec.name, *spec.affine()) for spec in card.inputs if not lazy_patches(spec)]
            data = prepend_normalisation(model.data, steps)
            graph = append_postprocess(data, card.output.name, n, card.output.activation, **args)
            folder = os.path.dirname(os.path.abspath(model.path))  # its external data, if any
            self.sessions = [session(graph, threads, folder, model.execution) for _ in range(self.workers)]
            self.names = [APPENDED_OUTPUTS[k] for k in (*wanted, *self.checks)]
            self.rename = {
                name: PREPENDED_PREFIX + name
                for name, mul, add in steps
                if mul is not None or add is not None
            }
            self.fused = True
            self.graph_normalises = frozenset(name for name, _, _ in steps)
        else:  # two sessions: the model as it is, then the post-processing graph
            post = postprocess_graph(n, card.output.activation, **args)
            run_on = model.execution
            self.model_sessions = [session(model.path, threads, None, run_on) for _ in range(self.workers)]
            self.sessions = [session(post, threads, None, run_on) for _ in range(self.workers)]
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

    @property
    def plan(self) -> str:
        """ "fused" (one session per worker) or "two sessions" (see :func:`fused_unsupported`)."""
        return "fused" if self.fused else "two sessions"

    def describe(self) -> str:
        """The inference plan in words, for the run's log."""
        how = (
            "one session per worker on the model with the normalisation and post-processing fused in"
            if self.fused
            else f"two sessions per worker (the model, then the post-processing) because {self.fallback}"
        )
        return f"Inference: {self.workers} worker(s), {how}; micro-batches of up to {self.micro_batch} rows."

    def split(self, n: int, micro_batch: int | None = None) -> list[tuple[int, int]]:
        """The (start, stop) rows of the micro-batches :meth:`submit` cuts ``n`` rows into.

        By default a multiple of ``workers`` micro-batches of equal size (at most about
        ``self.micro_batch``, whole top-K groups): 677 rows in 256-row pieces gave one
        worker two pieces and the other one, idle a third of the time."""
        if micro_batch:
            step = int(micro_batch)
        else:  # about MICRO_BATCH rows, the same number of micro-batches for every worker
            parts = math.ceil(n / (self.micro_batch * self.workers)) * self.workers
            step = -(-math.ceil(n / parts) // self.group) * self.group  # whole top-K groups
        step = max(1, step)
        return [(start, min(start + step, n)) for start in range(0, n, step)]

    def padded(self, rows: int) -> int:
        """The rows one onnxruntime call gets for ``rows`` rows: whole top-K groups (the
        last row repeated)."""
        return rows + (-rows % self.group)

    def worker_threads(self) -> list[threading.Thread]:
        """The worker pool's live threads (none before the first :meth:`submit` and after
        :meth:`close`)."""
        names = f"{_THREAD_PREFIX}-{id(self):x}"
        return [t for t in threading.enumerate() if t.name.startswith(names + "_")]

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
        out = {k: np.empty((n, *self.layout[k][0]), dtype=self.layout[k][1]) for k in self.keys}
        pool = self._pool()
        futures = [
            pool.submit(self._work, {k: v[start:stop] for k, v in feeds.items()}, out, start)
            for start, stop in self.split(n, micro_batch)
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
                thread_name_prefix=f"{_THREAD_PREFIX}-{id(self):x}",
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
