"""A model's card in its ONNX file: read, checked against the graph, embedded.

Every model carries a JSON object in the ONNX ``metadata_props`` entry ``geoplant``.
:func:`read_model_card` reads it with onnxruntime, validates it field by field
(:class:`core.card.ModelCard`) and checks it against the graph's inputs and outputs;
:func:`embed_model_card` writes one. The contract is written up in
``docs/model-contract.md``. Every name of the card (``core.card``, ``core.cardinput``,
``core.cardfields``) is importable from here too.
"""

from __future__ import annotations

import json
import os

from .card import (
    ACTIVATIONS,
    FORMAT,
    MAX_CARD_BYTES,
    MAX_SPECIES_ID,
    METADATA_KEY,
    GridSpec,
    ModelCard,
    OutputSpec,
    Species,
)
from .cardfields import CONTRACT_DOC, SHOWN_CHARS, SHOWN_ITEMS, listed, shorten, shown
from .cardinput import KINDS, InputSpec
from .errors import ModelCardError

__all__ = [
    "ACTIVATIONS",
    "CONTRACT_DOC",
    "FORMAT",
    "KINDS",
    "MAX_CARD_BYTES",
    "MAX_SPECIES_ID",
    "METADATA_KEY",
    "SHOWN_CHARS",
    "SHOWN_ITEMS",
    "GridSpec",
    "InputSpec",
    "ModelCard",
    "OutputSpec",
    "Species",
    "check_against_graph",
    "embed_model_card",
    "listed",
    "read_model_card",
    "shorten",
    "shown",
]


def _expected_dims(spec: InputSpec) -> tuple[int, ...]:
    """The dimensions after the batch axis the card implies."""
    return tuple(spec.tensor_shape(1)[1:])


def _dims_text(shape) -> str:
    return "[" + ", ".join("?" if not isinstance(s, int) else str(s) for s in shape) + "]"


def check_against_graph(card: ModelCard, graph_inputs, graph_outputs, source: str = "the model") -> None:
    """Check the card against onnxruntime's ``NodeArg`` lists (``name``, ``shape``, ``type``)."""
    graph_in = {a.name: a for a in graph_inputs}
    card_in = {x.name: x for x in card.inputs}
    problems = []
    not_in_graph = [n for n in card_in if n not in graph_in]
    if not_in_graph:
        problems.append(
            f"card inputs {listed(not_in_graph)} are not inputs of the graph "
            f"(graph inputs: {listed(graph_in) or 'none'})"
        )
    not_in_card = [n for n in graph_in if n not in card_in]
    if not_in_card:
        problems.append(f"graph inputs {listed(not_in_card)} are not described in the card")
    for name, spec in card_in.items():
        arg = graph_in.get(name)
        if arg is None:
            continue
        if arg.type not in ("tensor(float)",):
            problems.append(
                f"input '{shorten(name)}' must be float32 (tensor(float)), the graph has {arg.type}"
            )
        expected = _expected_dims(spec)
        shape = list(arg.shape) if arg.shape is not None else None
        if shape is None:
            continue
        if len(shape) != len(expected) + 1:
            problems.append(
                f"input '{shorten(name)}' ({spec.kind}) must have rank {len(expected) + 1} "
                f"[N, {', '.join(map(str, expected))}], the graph has {_dims_text(shape)}"
            )
            continue
        for axis, (got, want) in enumerate(zip(shape[1:], expected, strict=True), start=1):
            if isinstance(got, int) and got > 0 and got != want:
                problems.append(
                    f"input '{shorten(name)}' axis {axis} is {got} in the graph but the card implies {want} "
                    f"(graph {_dims_text(shape)}, card [N, {', '.join(map(str, expected))}])"
                )
    outputs = {a.name: a for a in graph_outputs}
    out = outputs.get(card.output.name)
    if out is None:
        problems.append(
            f"output '{shorten(card.output.name)}' is not an output of the graph (outputs: {listed(outputs)})"
        )
    elif out.shape:
        last = out.shape[-1]
        if isinstance(last, int) and last > 0 and last != len(card.species):
            problems.append(
                f"output '{shorten(card.output.name)}' has {last} columns "
                f"but the card lists {len(card.species)} species"
            )
    if problems:
        raise ModelCardError(
            f"The model card of {source} does not match its graph: " + "; ".join(problems) + "."
        )


def read_model_card(onnx_path, session=None) -> ModelCard:
    """The validated card of an ONNX model, checked against its graph.

    ``session``: an onnxruntime ``InferenceSession`` already open on the file (optional).
    """
    if not isinstance(onnx_path, str | os.PathLike):
        raise ModelCardError(f"The model must be the path of an .onnx file, not {shown(onnx_path)}.")
    path = os.fspath(onnx_path)
    base = os.path.basename(path)
    if session is None:
        if os.path.isdir(path):
            raise ModelCardError(f"{path} is a folder: give the model's .onnx file.")
        if not os.path.isfile(path):
            raise ModelCardError(f"Model file not found: {path}")
        try:
            import onnxruntime as ort
        except ImportError as error:  # pragma: no cover - depends on the install
            from .errors import MissingDependencyError

            raise MissingDependencyError(
                "Reading a model needs the onnxruntime package (pip install onnxruntime)."
            ) from error
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own exception types
            first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ModelCardError(
                f"'{base}' is not an ONNX model onnxruntime can load: {first[:300]}"
            ) from None
    meta = session.get_modelmeta().custom_metadata_map or {}
    text = meta.get(METADATA_KEY)
    if text is None:
        raise ModelCardError(
            f"This model has no '{METADATA_KEY}' card ('{base}' has no metadata entry '{METADATA_KEY}'): "
            f"add one describing its species, inputs and output; see {CONTRACT_DOC}."
        )
    card = ModelCard.from_json(text)
    check_against_graph(card, session.get_inputs(), session.get_outputs(), source=f"'{base}'")
    return card


def embed_model_card(onnx_model_proto, card):
    """Put ``card`` (a :class:`ModelCard` or a dict) in an ``onnx.ModelProto``'s metadata.

    Replaces an existing ``geoplant`` entry; returns the proto. Tools and tests only:
    needs the ``onnx`` package.
    """
    import onnx  # noqa: F401  (imported lazily: loading the plugin does not import it)

    text = card.to_json() if isinstance(card, ModelCard) else json.dumps(card)
    props = onnx_model_proto.metadata_props
    for i in reversed(range(len(props))):
        if props[i].key == METADATA_KEY:
            del props[i]
    entry = props.add()
    entry.key = METADATA_KEY
    entry.value = text
    return onnx_model_proto
