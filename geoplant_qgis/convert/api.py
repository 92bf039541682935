"""Any ``torch.nn.Module`` with a card -> a ``geoplant-onnx/1`` model, checked twice.

:func:`export` traces the module to ONNX (opset 17, the batch axis dynamic, one graph
input per card input in the order of ``forward``'s arguments), embeds the card, checks the
card against the graph with the plugin's own :func:`read_model_card`, and runs
:func:`verify`: the ONNX model through onnxruntime against the module on random inputs of
the card's shapes, a few batch sizes, refusing a probability difference over the tolerance.
The file is written under a temporary name and renamed only when all of that passed.
"""

from __future__ import annotations

import io
import os
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ..core.errors import ModelCardError
from ..core.files import Publication
from ..core.modelcard import ModelCard, embed_model_card, read_model_card
from .errors import ConversionError

OPSET = 17
TOLERANCE = 1e-4
BATCHES = (1, 3)
BATCH_AXIS = "N"


@dataclass
class VerifyReport:
    """The largest |probability(ONNX) - probability(torch)|, overall and per batch size."""

    max_abs_diff: float
    per_batch: dict[int, float] = field(default_factory=dict)
    max_abs_logit_diff: float = 0.0
    tolerance: float = TOLERANCE
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.max_abs_diff <= self.tolerance

    def text(self) -> str:
        batches = ", ".join(f"batch {b}: {d:.2e}" for b, d in self.per_batch.items())
        return (
            f"max |ONNX - torch| probability {self.max_abs_diff:.2e} "
            f"(tolerance {self.tolerance:g}; {batches})"
        )


@dataclass
class ExportReport:
    output: str
    card: ModelCard
    verify: VerifyReport
    bytes: int
    seconds_export: float


def _card(card) -> ModelCard:
    if isinstance(card, ModelCard):
        return card
    try:
        return ModelCard.from_dict(card)
    except ModelCardError as error:
        raise ConversionError(str(error)) from None


def random_inputs(card: ModelCard, batch: int, seed: int = 0) -> list[np.ndarray]:
    """One float32 array per card input, standard normal (what a normalised input looks like)."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(x.tensor_shape(batch), dtype=np.float32) for x in card.inputs]


def _probabilities(values: np.ndarray, activation: str) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64)
    if activation == "sigmoid":
        return 0.5 * (1.0 + np.tanh(0.5 * x))  # exact sigmoid, no overflow
    if activation == "softmax":
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)
    return x


def _session(path: str):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def verify(
    module,
    onnx_path,
    card=None,
    *,
    batches: Sequence[int] = BATCHES,
    tolerance: float = TOLERANCE,
    seed: int = 0,
    session=None,
) -> VerifyReport:
    """Run ``module`` (eval mode) and the ONNX model on the same random inputs for each
    batch size; :class:`ConversionError` when a probability differs by more than
    ``tolerance`` (the maximum is in the message and in the report)."""
    import torch

    start = time.perf_counter()
    path = os.fspath(onnx_path)
    session = session or _session(path)
    card = read_model_card(path, session=session) if card is None else _card(card)
    module.eval()
    report = VerifyReport(max_abs_diff=0.0, tolerance=tolerance)
    for i, batch in enumerate(batches):
        arrays = random_inputs(card, batch, seed + i)
        with torch.no_grad():
            expected = module(*(torch.from_numpy(a) for a in arrays))
        if isinstance(expected, list | tuple):
            expected = expected[0]
        expected = expected.detach().cpu().numpy()
        (got,) = session.run(
            [card.output.name], {x.name: a for x, a in zip(card.inputs, arrays, strict=True)}
        )
        if got.shape != expected.shape:
            raise ConversionError(
                f"The ONNX model gives an output of shape {list(got.shape)} for batch {batch}, "
                f"the module {list(expected.shape)}."
            )
        diff = float(
            np.max(
                np.abs(
                    _probabilities(got, card.output.activation)
                    - _probabilities(expected, card.output.activation)
                )
            )
        )
        if not np.isfinite(diff):
            diff = float("inf")
        report.per_batch[batch] = diff
        report.max_abs_diff = max(report.max_abs_diff, diff)
        report.max_abs_logit_diff = max(
            report.max_abs_logit_diff, float(np.max(np.abs(got.astype(np.float64) - expected)))
        )
    report.seconds = time.perf_counter() - start
    if not report.passed:
        raise ConversionError(
            f"The ONNX model does not reproduce the PyTorch module: {report.text()}. Nothing was written."
        )
    return report


def to_onnx_bytes(module, card: ModelCard, opset: int = OPSET) -> bytes:
    """The module traced to ONNX (TorchScript exporter, no onnxscript needed), batch axis
    dynamic, inputs and output named as the card says, the card embedded."""
    import onnx
    import torch

    module.eval()
    example = tuple(torch.from_numpy(a) for a in random_inputs(card, 2))
    names = [x.name for x in card.inputs]
    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        # shape-dependent Python branches (window shifts, padding) are fixed for the card's
        # shapes; only the batch axis is dynamic, which is what the tracer warns about
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        try:
            module(*example)
        except Exception as error:  # noqa: BLE001 - the module's own words
            shapes = ", ".join(f"{x.name} {list(x.tensor_shape(2))}" for x in card.inputs)
            raise ConversionError(
                f"The module could not be run on the card's inputs ({shapes}, in the order of its "
                f"forward arguments): {type(error).__name__}: {str(error)[:300]}"
            ) from None
        torch.onnx.export(
            module,
            example,
            buffer,
            input_names=names,
            output_names=[card.output.name],
            dynamic_axes={n: {0: BATCH_AXIS} for n in [*names, card.output.name]},
            opset_version=opset,
            do_constant_folding=True,
            dynamo=False,
        )
    model = onnx.load_model_from_string(buffer.getvalue())
    del buffer
    embed_model_card(model, card)
    return model.SerializeToString()


def export(
    module,
    card,
    output,
    *,
    opset: int = OPSET,
    batches: Sequence[int] = BATCHES,
    tolerance: float = TOLERANCE,
    seed: int = 0,
    log=None,
) -> ExportReport:
    """``module`` with ``card`` (a dict or :class:`ModelCard`) to the ONNX file ``output``.

    ``card["inputs"]`` lists the module's ``forward`` arguments in order. Returns an
    :class:`ExportReport`; raises :class:`ConversionError` (nothing written) when the card
    is invalid, does not match the traced graph, or the graph does not reproduce the module.
    """
    log = log or (lambda message: None)
    card = _card(card)
    output = os.path.abspath(os.fspath(output))
    start = time.perf_counter()
    data = to_onnx_bytes(module, card, opset)
    seconds = time.perf_counter() - start
    log(f"exported to ONNX in {seconds:.1f} s ({len(data) / 1e6:,.1f} MB)")
    if len(data) >= 2**31:
        raise ConversionError("The ONNX model is over 2 GB, the limit of a single ONNX file.")
    with Publication() as publication:
        tmp = publication.temporary(output)
        try:
            with open(tmp, "wb") as handle:
                handle.write(data)
        except OSError as error:
            raise ConversionError(f"Cannot write {output}: {error.strerror or error}.") from None
        del data
        session = _session(tmp)
        try:
            read = read_model_card(tmp, session=session)  # validates the card against the graph
        except ModelCardError as error:
            raise ConversionError(f"The exported model's card does not validate: {error}") from None
        report = verify(module, tmp, read, batches=batches, tolerance=tolerance, seed=seed, session=session)
        log(report.text())
        size = os.path.getsize(tmp)
        del session
        publication.publish()
    return ExportReport(output=output, card=read, verify=report, bytes=size, seconds_export=seconds)
