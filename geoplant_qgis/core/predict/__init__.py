"""The predict engine as explicit stages: request -> plan -> stream -> publish.

``PredictRequest.build(...)`` (:mod:`.request`) checks every argument once;
:func:`run` (:mod:`.runner`) plans the run (model sessions, samplers, blocks, output
writers), streams the blocks through the prefetch thread, the onnxruntime workers and the
writer thread, and publishes the outputs together. One job per module: request, model,
inputs, inference, blocks, runner, outputs, publish, points. See docs/architecture.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .request import Area, Extent, PredictRequest

if TYPE_CHECKING:
    from .runner import PredictResult


def run(request: PredictRequest, progress: Any = None) -> PredictResult:
    """Run a checked request: every cell of its grid through the model, the outputs written
    and published together (:func:`.runner.run`)."""
    from .runner import run as _run

    return _run(request, progress)


__all__ = ["Area", "Extent", "PredictRequest", "run"]
