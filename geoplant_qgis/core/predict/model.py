"""Loading a model: its card and bytes, the ONE onnxruntime session recipe, the workers.

Every onnxruntime session of GeoPlant that runs a model for its values (predict, the
point API, the estimate's timing, extract) is made by :func:`session`: same options, and
the execution providers of an :class:`Execution` (the ``device`` asked for, resolved against
the installed onnxruntime; a missing or failing accelerator falls back to the CPU with a
warning), else :data:`PROVIDERS`.
"""

from __future__ import annotations

import math
import os
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from ..devices import (  # noqa: F401 - re-exported: the device names live where Qt code can read them
    AUTO_PROVIDERS,
    CPU_PROVIDER,
    DEFAULT_DEVICE,
    DEVICE_NAMES,
    DEVICES,
    INSTALL_HINTS,
    check_device,
)
from ..errors import InputDataError, MissingDependencyError, ModelCardError
from ..postprocess import EXTERNAL_DATA_FOLDER_KEY

if TYPE_CHECKING:
    from ..modelcard import ModelCard

#: the execution providers of a session made without an :class:`Execution`
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


class Execution:
    """Where the sessions of one run execute: the ``device`` asked for, resolved once
    against ``onnxruntime.get_available_providers()``.

    "auto" takes the first of :data:`AUTO_PROVIDERS` the installed onnxruntime offers, else
    the CPU. A provider that is not installed, that fails to create a session, or that
    onnxruntime silently drops (missing CUDA / cuDNN libraries) falls back to the CPU with a
    warning through ``progress`` saying which provider was asked, why it failed and how to
    install it; never an error. The provider that ran is said once (``progress.info``).
    """

    def __init__(self, device: Any = DEFAULT_DEVICE, progress: Any = None):
        from ..progress import as_progress

        self.device = check_device(device)
        self.progress = as_progress(progress)
        #: the providers of the next session; None until the first session resolves them
        self.providers: list[str] | None = None
        #: the provider that ran the first session, once made
        self.ran: str | None = None
        self.warnings: list[str] = []

    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        self.progress.warning(message)

    def _fallback(self, provider: str, why: str) -> None:
        hint = INSTALL_HINTS.get(provider, "install an onnxruntime build that includes it")
        self._warn(
            f"Device '{self.device}': {provider} {why}; running on the CPU instead. To use it, {hint}."
        )
        self.providers = [CPU_PROVIDER]

    def resolve(self, ort: Any) -> list[str]:
        """The providers for the sessions, in order of preference (warns when falling back)."""
        if self.providers is not None:
            return self.providers
        try:
            available = list(ort.get_available_providers())
        except Exception:  # an odd build: the CPU is always there
            available = [CPU_PROVIDER]
        wanted = DEVICES[self.device]
        if wanted is None:  # auto
            chosen = next((p for p in AUTO_PROVIDERS if p in available), None)
            self.providers = [chosen, CPU_PROVIDER] if chosen else [CPU_PROVIDER]
        elif wanted == CPU_PROVIDER:
            self.providers = [CPU_PROVIDER]
        elif wanted in available:
            self.providers = [wanted, CPU_PROVIDER]
        else:
            version = getattr(ort, "__version__", "?")
            self._fallback(
                wanted,
                f"is not available in the installed onnxruntime {version} (it offers {', '.join(available)})",
            )
        assert self.providers is not None
        return self.providers

    def session(self, ort: Any, model: str | bytes, options: Any) -> Any:
        """An onnxruntime session on the resolved providers, else on the CPU."""
        providers = self.resolve(ort)
        if providers[0] != CPU_PROVIDER:
            asked = providers[0]
            try:
                sess = ort.InferenceSession(model, options, providers=providers)
            except Exception as error:  # onnxruntime raises its own exception classes
                reason = " ".join(str(error).split())[:300] or type(error).__name__
                self._fallback(asked, f"failed to start ({reason})")
            else:
                ran = list(sess.get_providers())
                if ran and ran[0] == asked:
                    self._said(asked)
                    return sess
                self._fallback(asked, "could not be started by onnxruntime (its libraries did not load)")
                self._said(CPU_PROVIDER)
                return sess
        sess = ort.InferenceSession(model, options, providers=[CPU_PROVIDER])
        self._said(CPU_PROVIDER)
        return sess

    def _said(self, provider: str) -> None:
        if self.ran is not None:
            return
        self.ran = provider
        how = ""
        if self.device == "auto" and provider == CPU_PROVIDER and not self.warnings:
            how = ": the installed onnxruntime offers no GPU provider"
        self.progress.info(f"Execution provider: {provider} (device {self.device}{how}).")


def session(
    model: str | bytes,
    threads: int | None = None,
    folder: str | None = None,
    execution: Execution | None = None,
) -> Any:
    """An onnxruntime session on ``model`` (a path or the model's bytes): full graph
    optimisation, sequential execution, ``threads`` intra-op threads (default onnxruntime's),
    no busy-waiting; the providers of ``execution`` (its device, with the CPU fallback),
    else :data:`PROVIDERS`. ``folder``: where the external data files of a
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
    if execution is not None:
        return execution.session(ort, model, options)
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
    """An ONNX model and its validated card (``card=``: one already read from this file).
    ``device``: where its sessions run (:class:`Execution`; warnings and the provider that
    ran go to ``progress``)."""

    def __init__(
        self,
        model_path: str | os.PathLike[str],
        threads: int | None = None,
        card: ModelCard | None = None,
        *,
        device: Any = DEFAULT_DEVICE,
        progress: Any = None,
    ):
        self.execution = Execution(device, progress)
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
