"""Loading a model: its card and bytes, the ONE onnxruntime session recipe, the workers.

Every onnxruntime session of GeoPlant that runs a model for its values (predict, the
point API, the estimate's timing, extract) is made by :func:`session`: same options, same
execution providers (:data:`PROVIDERS`; CPU only for now).
"""

from __future__ import annotations

import math
import os
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputDataError, MissingDependencyError, ModelCardError
from ..postprocess import EXTERNAL_DATA_FOLDER_KEY

if TYPE_CHECKING:
    from ..modelcard import ModelCard

#: the execution providers of every session, in order of preference
PROVIDERS: tuple[str, ...] = ("CPUExecutionProvider",)
#: at most this many concurrent onnxruntime sessions (one per core)
MAX_WORKERS = 4


def onnxruntime() -> Any:
    """The onnxruntime module, or MissingDependencyError saying how to install it."""
    try:
        import onnxruntime as ort
    except ImportError as error:  # pragma: no cover - depends on the install
        raise MissingDependencyError(
            "Running a model needs the onnxruntime package (pip install onnxruntime)."
        ) from error
    return ort


def session(model: str | bytes, threads: int | None = None, folder: str | None = None) -> Any:
    """An onnxruntime session on ``model`` (a path or the model's bytes): full graph
    optimisation, sequential execution, ``threads`` intra-op threads (default onnxruntime's),
    no busy-waiting, :data:`PROVIDERS`. ``folder``: where the external data files of a
    model given as bytes are (the model file's folder; models over 2 GB keep their weights
    there, see :mod:`..postprocess`)."""
    ort = onnxruntime()
    options = ort.SessionOptions()
    options.log_severity_level = 3
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if threads:
        options.intra_op_num_threads = int(threads)
    # Busy-waiting worker threads would steal the cores the prefetch/writer threads need.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if folder:
        options.add_session_config_entry(EXTERNAL_DATA_FOLDER_KEY, os.path.abspath(folder))
    return ort.InferenceSession(model, options, providers=list(PROVIDERS))


def workers(threads: int | None) -> tuple[int, int]:
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


class LoadedModel:
    """An ONNX model and its validated card (``card=``: one already read from this file)."""

    def __init__(
        self, model_path: str | os.PathLike[str], threads: int | None = None, card: ModelCard | None = None
    ):
        path = os.fspath(model_path)
        if not os.path.isfile(path):
            raise InputDataError(f"Model file not found: {path}")
        if card is None:
            from ..modelcard import read_model_card

            card = read_model_card(path)
        self.path = path
        self.card: ModelCard = card
        with open(path, "rb") as handle:
            self.data = handle.read()
        self.threads = threads

    def pipeline(
        self,
        columns: Any = None,
        *,
        top_k: int = 0,
        richness: bool = False,
        threshold: float | None = None,
        probabilities: bool = False,
    ) -> Any:
        """The model's :class:`.inference.Pipeline` for these outputs."""
        from .inference import Pipeline

        return Pipeline(
            self, columns, top_k=top_k, richness=richness, threshold=threshold, probabilities=probabilities
        )


def _input_arrays(sess: Any, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    feeds = {}
    for node in sess.get_inputs():
        shape = []
        for i, dim in enumerate(node.shape):
            if isinstance(dim, int) and dim > 0:
                shape.append(dim if i > 0 else batch)
            else:
                shape.append(batch if i == 0 else 1)
        if node.type not in ("tensor(float)", "tensor(float16)", "tensor(double)"):
            raise ModelCardError(
                f"Model input '{node.name}' has type {node.type}; GeoPlant models take float32."
            )
        dtype = {"tensor(float)": np.float32, "tensor(float16)": np.float16}.get(node.type, np.float64)
        feeds[node.name] = rng.standard_normal(shape).astype(dtype)
    return feeds


def seconds_per_row(
    model_path: str | os.PathLike[str], batch: int = 256, repeats: int = 3, threads: int | None = None
) -> float:
    """Seconds per cell of the model alone (:func:`session`), measured on random inputs of
    ``batch`` rows. The first call (warm-up) is not counted; the best of ``repeats`` timed
    calls is used. Raises :class:`ModelCardError` when onnxruntime cannot load it."""
    try:
        sess = session(os.fspath(model_path), threads)
    except MissingDependencyError:
        raise
    except Exception as error:  # onnxruntime raises its own exception classes
        raise ModelCardError(f"onnxruntime cannot load the model {model_path}: {error}") from error
    rng = np.random.default_rng(0)
    feeds = _input_arrays(sess, batch, rng)
    sess.run(None, feeds)
    best = math.inf
    for _ in range(max(int(repeats), 1)):
        start = time.perf_counter()
        sess.run(None, feeds)
        best = min(best, time.perf_counter() - start)
    return best / batch
