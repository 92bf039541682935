"""The post-processing ONNX graph: activation, richness, top-K and probabilities.

Sigmoid/softmax, a sum and a top-K over thousands of species cost about as much as the
model itself when done in numpy, so :func:`predict` runs them in onnxruntime: appended to
the model's own graph (:func:`append_postprocess`, one fused session, the card's
normalisation prepended by :func:`prepend_normalisation`), or as a second, small session
fed with the model's raw output (:func:`postprocess_graph`). The graph depends on the run
(activation, species subset, K, threshold), so it is built here, at run time, with the
``onnx`` package (``onnx.helper``, ``onnx.numpy_helper``), imported when a graph is built:
the plugin loads without it.

Models over 2 GB keep their weights in external data files (a protobuf message cannot
exceed 2 GB). The graph edits here parse and write the model file's own bytes only: the
initializers stored outside stay references (their ``location`` relative to the model's
folder) and are never read into Python; the session that runs the result is told that
folder (``session.model_external_initializers_file_folder_path``, see
:data:`EXTERNAL_DATA_FOLDER_KEY`).

Graph (opset 13), input ``raw`` float32 [N, S]:

- ``p = Sigmoid(raw)`` / ``Softmax(raw, axis=-1)`` / ``raw`` (activation "none")
- ``richness = ReduceSum(p, axis 1)``, or with a threshold the number of columns with
  ``p >= threshold`` (float32 [N]): always over every species
- ``topk = Gather(ids, TopK(p, K).indices)`` int32 [N, K]: species ids by decreasing
  probability over every species; ONNX TopK breaks ties by the lower index, i.e. column
  (card) order. With ``topk_group`` the same indices come from a cheaper exact
  computation over groups of neighbouring rows (:func:`_grouped_topk`).
- ``probabilities = Gather(p, columns, axis=1)`` float32 [N, S'] (``Identity`` when all
  species are requested): SPECIES selects these bands only.
- checks, when asked (``checks``): ``check_sum = ReduceSum(p)`` over every value (float32
  scalar, NaN when a value is NaN) and, for ``checks="range"``, ``check_min`` and
  ``check_max`` (``ReduceMin``/``ReduceMax`` of ``p``): the engine refuses a model whose
  "probabilities" leave [0, 1] or hold NaN (:data:`CHECKS`). The raw [N, S] never reaches
  Python, so these three scalars per call are what it looks at.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

import numpy as np

from .errors import MissingDependencyError

if TYPE_CHECKING:
    from onnx import ModelProto, NodeProto, TensorProto, ValueInfoProto

#: a model given to the graph edits, and what they give back: its serialized bytes (the
#: model file's content) -> new bytes; or an ``onnx.ModelProto``, changed in place and
#: returned: a caller chaining :func:`prepend_normalisation` and :func:`append_postprocess`
#: on one proto parses and serializes the model once instead of twice (and holds one copy of
#: its weights less)
Model = TypeVar("Model", bytes, "ModelProto")

OPSET = 13
IR_VERSION = 7

# onnx.proto TensorProto.DataType (the values of onnx.TensorProto.FLOAT, INT32, INT64)
FLOAT, INT32, INT64 = 1, 6, 7
# AttributeProto.AttributeType (onnx.AttributeProto.FLOAT, INT, INTS)
ATTR_FLOAT, ATTR_INT, ATTR_INTS = 1, 2, 7

#: onnxruntime session option naming the folder of a model's external data when the session
#: is made from bytes (the fused graph): set it to the model file's folder
EXTERNAL_DATA_FOLDER_KEY = "session.model_external_initializers_file_folder_path"

#: extra candidate columns of a group leader's TopK in the grouped top-K (see
#: :func:`_grouped_topk`); 0 = exactly the leader's K columns. Bench MLP's rows (K = 25 of
#: 2000), share of rows on the cheap path: margin 0 73% (groups of 8), 8 98%, 16 99%
#: (groups of 8 to 64); fused graph us/row in engine.TOPK_GROUP's comment
TOPK_MARGIN = 16

#: ``checks`` of the post-processing -> its scalar outputs: "sum" (NaN anywhere in p) for a
#: sigmoid/softmax whose outputs do not already show NaN; "range" (min, max and NaN) for
#: activation "none", whose values are in [0, 1] only if the model says the truth
CHECKS: dict[str | None, tuple[str, ...]] = {
    None: (),
    "sum": ("check_sum",),
    "range": ("check_min", "check_max", "check_sum"),
}


def _onnx() -> Any:
    """The ``onnx`` package (MissingDependencyError naming it when it is not installed)."""
    try:
        import onnx
    except ImportError as error:
        raise MissingDependencyError(
            "Running a model needs the onnx package (the plugin's 'make install' puts it in its "
            "_deps folder; or /usr/bin/python3 -m pip install --user 'onnx==1.17.0' 'numpy<2')."
        ) from error
    return onnx


# --- ONNX messages ---------------------------------------------------------------------


def _tensor(name: str, array: np.ndarray) -> TensorProto:
    from onnx import numpy_helper

    return numpy_helper.from_array(np.asarray(array), name)


def _node(op_type: str, inputs: Sequence[str], outputs: Sequence[str], name: str, **attrs: Any) -> NodeProto:
    from onnx import helper

    return helper.make_node(op_type, list(inputs), list(outputs), name=name, **attrs)


def _value_info(name: str, elem_type: int, dims: Sequence[int | str]) -> ValueInfoProto:
    from onnx import helper

    return helper.make_tensor_value_info(name, elem_type, list(dims))


def _reduce(
    op: str, x: str, out: str, axis: int, opset: int, inits: list[TensorProto], name: Callable[[str], str]
) -> NodeProto:
    """ReduceMin/ReduceMax over one axis, keepdims: axes an attribute before opset 18, an input after."""
    if opset < 18:
        return _node(op, [x], [out], out, axes=[axis], keepdims=1)
    axes = name(f"{op}_axes")
    inits.append(_tensor(axes, np.array([axis], dtype=np.int64)))
    return _node(op, [x, axes], [out], out, keepdims=1)


def _grouped_topk(
    nodes: list[NodeProto], inits: list[TensorProto], p: str, k: str, result: str, n_species: int,
    top_k: int, group: int, opset: int, name: Callable[[str], str], margin: int = 0,
) -> None:  # fmt: skip
    """TopK column indices (int64 [N, K]) of ``p`` [N, S], exact, using neighbouring rows.

    The rows come in groups of ``group`` (N must be a multiple of it: the engine pads);
    valid cells arrive in row-major order, so the rows of a group are neighbouring cells
    with nearly the same top-K species. Only the first row of each group (the leader) goes
    through a full TopK, of K + ``margin`` columns (the candidates; at most S). For every
    row of the group, ``bound`` = the K-th largest of its own values at the candidates: K
    distinct elements of the row are >= bound. When every element of the row outside the
    candidates is < bound (one max pass over the row with the candidates set to -inf), the
    row's top-K are among its candidates (every value >= bound, ties at the bound
    included, is a candidate), so a TopK over the K + margin gathered values gives them,
    the candidate columns sorted ascending first so that equal values keep the lower
    column first (ONNX TopK's tie rule). The other rows (a value outside the candidates
    reaches the bound) go through a full TopK of their own. Either way the result equals a
    TopK of each row. The margin lets a follower whose K-th species differs from the
    leader's (a common case between neighbours) still take the cheap path.
    """

    def n(x: str) -> str:
        return name(f"topk/{x}")

    g, s, kk = int(group), int(n_species), int(top_k)
    c = min(s, kk + max(0, int(margin)))  # candidates per group
    for init, value in (
        ("grouped_shape", [-1, g, s]),
        ("leader", 0),
        ("tile", [1, g, 1]),
        ("axis1", [1]),
        ("k_shape", [-1, kk]),
        ("flat", [-1]),
        ("candidates", [c]),
        ("last_start", [kk - 1]),
        ("last_end", [kk]),
        ("axis2", [2]),
    ):
        inits.append(_tensor(n(init), np.array(value, dtype=np.int64)))
    inits.append(_tensor(n("minus_inf"), np.array(-np.inf, dtype=np.float32)))

    def topk(x: str, count: str, values: str, indices: str, node: str, largest: int = 1) -> NodeProto:
        return _node("TopK", [x, count], [values, indices], node, axis=-1, largest=largest, sorted=1)

    nodes += [
        _node("Reshape", [p, n("grouped_shape")], [n("p3")], n("p3")),  # [M, G, S]
        _node("Gather", [n("p3"), n("leader")], [n("lead")], n("lead"), axis=1),  # [M, S]
        topk(n("lead"), n("candidates"), n("lead_values"), n("lead_columns"), n("lead_topk")),  # [M, C]
        # the candidates in ascending column order (so equal values keep the lower column first)
        topk(n("lead_columns"), n("candidates"), n("columns"), n("columns_order"), n("columns_sort"), 0),
        _node("Unsqueeze", [n("columns"), n("axis1")], [n("columns1")], n("columns1")),  # [M, 1, C]
        _node("Tile", [n("columns1"), n("tile")], [n("columns3")], n("columns3")),  # [M, G, C]
        _node("GatherElements", [n("p3"), n("columns3")], [n("values")], n("values"), axis=2),
        # each row's top K of its candidates (its answer when it takes the cheap path)
        topk(n("values"), k, n("sorted_values"), n("positions"), n("order")),  # [M, G, K]
        _node(
            "Slice",
            [n("sorted_values"), n("last_start"), n("last_end"), n("axis2")],
            [n("bound")],
            n("bound"),
        ),  # [M, G, 1]: the K-th largest candidate value
        # -inf at the group's candidate columns, 0 elsewhere: one [M, 1, S] mask per group,
        # added to the rows (cheaper than writing -inf into a copy of every row)
        _node("Shape", [n("lead")], [n("lead_shape")], n("lead_shape")),
        _node("ConstantOfShape", [n("lead_shape")], [n("zeros")], n("zeros")),  # [M, S]
        _node("Shape", [n("columns")], [n("columns_shape")], n("columns_shape")),
        _node("Expand", [n("minus_inf"), n("columns_shape")], [n("minus_infs")], n("minus_infs")),
        _node("ScatterElements", [n("zeros"), n("columns"), n("minus_infs")], [n("mask")], n("mask"), axis=1),
        _node("Unsqueeze", [n("mask"), n("axis1")], [n("mask3")], n("mask3")),  # [M, 1, S]
        _node("Add", [n("p3"), n("mask3")], [n("rest")], n("rest")),
        _reduce("ReduceMax", n("rest"), n("rest_max"), 2, opset, inits, n),  # [M, G, 1]
        _node("Less", [n("rest_max"), n("bound")], [n("same_set")], n("same_set")),
        _node("GatherElements", [n("columns3"), n("positions")], [n("fast3")], n("fast3"), axis=2),
        _node("Reshape", [n("fast3"), n("k_shape")], [n("fast")], n("fast")),  # [N, K]
        # the other rows: a TopK of their own
        _node("Reshape", [n("same_set"), n("flat")], [n("same_flat")], n("same_flat")),
        _node("Not", [n("same_flat")], [n("other")], n("other")),
        _node("NonZero", [n("other")], [n("other_rows")], n("other_rows")),  # [1, R]
        _node("Transpose", [n("other_rows")], [n("other_index")], n("other_index"), perm=[1, 0]),
        _node("GatherND", [p, n("other_index")], [n("other_p")], n("other_p")),  # [R, S]
        topk(n("other_p"), k, n("other_values"), n("other_columns"), n("other_topk")),
        _node("ScatterND", [n("fast"), n("other_index"), n("other_columns")], [result], n("scatter")),
    ]


def _parts(
    n_species: int, activation: str, columns: Sequence[int] | None, species_ids: Sequence[int] | None,
    top_k: int, richness: bool, threshold: float | None, probabilities: bool, source: str,
    name: Callable[[str], str], out: Callable[[str], str], topk_group: int = 1, opset: int = OPSET,
    topk_margin: int | None = None, checks: str | None = None,
) -> tuple[list[NodeProto], list[TensorProto], list[ValueInfoProto]]:  # fmt: skip
    """(nodes, initializers, outputs) of the post-processing, as ``onnx`` messages.

    ``source``: the tensor holding the raw output; ``name(x)``: internal tensor/node names;
    ``out(x)``: the graph output names ("richness", "topk", "probabilities"). Richness and
    top-K cover every column; ``columns`` selects the probability columns only.
    """
    if activation not in ("sigmoid", "softmax", "none"):
        raise ValueError(f"unknown activation {activation!r}")
    nodes: list[NodeProto] = []
    inits: list[TensorProto] = []
    outputs: list[ValueInfoProto] = []
    p = name("p")
    if activation == "sigmoid":
        nodes.append(_node("Sigmoid", [source], [p], name("activation")))
    elif activation == "softmax":
        nodes.append(_node("Softmax", [source], [p], name("activation"), axis=-1))
    else:
        nodes.append(_node("Identity", [source], [p], name("activation")))
    if probabilities:
        if columns is not None:
            inits.append(_tensor(name("columns"), np.asarray(columns, dtype=np.int64)))
            nodes.append(
                _node("Gather", [p, name("columns")], [out("probabilities")], name("probabilities"), axis=1)
            )
        else:
            nodes.append(_node("Identity", [p], [out("probabilities")], name("probabilities")))
        n_kept = n_species if columns is None else len(columns)
        outputs.append(_value_info(out("probabilities"), FLOAT, ["N", n_kept]))
    if richness:
        axes = name("sum_axes")
        inits.append(_tensor(axes, np.array([1], dtype=np.int64)))
        if threshold is None:
            nodes.append(_node("ReduceSum", [p, axes], [out("richness")], name("richness"), keepdims=0))
        else:
            t, present, present_f = name("threshold"), name("present"), name("present_f")
            inits.append(_tensor(t, np.array(threshold, dtype=np.float32)))
            nodes.append(_node("GreaterOrEqual", [p, t], [present], present))
            nodes.append(_node("Cast", [present], [present_f], present_f, to=FLOAT))
            nodes.append(
                _node("ReduceSum", [present_f, axes], [out("richness")], name("richness"), keepdims=0)
            )
        outputs.append(_value_info(out("richness"), FLOAT, ["N"]))
    if top_k:
        if species_ids is None or len(species_ids) != n_species:
            raise ValueError("species_ids must give one id per species (output column)")
        k, ids = name("k"), name("ids")
        inits.append(_tensor(k, np.array([top_k], dtype=np.int64)))
        inits.append(_tensor(ids, np.asarray(species_ids, dtype=np.int32)))
        if topk_group > 1 and top_k < n_species:
            margin = TOPK_MARGIN if topk_margin is None else topk_margin
            _grouped_topk(
                nodes, inits, p, k, name("top_columns"), n_species, top_k, topk_group, opset, name, margin
            )
        else:
            nodes.append(
                _node(
                    "TopK",
                    [p, k],
                    [name("top_values"), name("top_columns")],
                    name("topk"),
                    axis=-1,
                    largest=1,
                    sorted=1,
                )
            )
        nodes.append(_node("Gather", [ids, name("top_columns")], [out("topk")], name("topk_ids"), axis=0))
        outputs.append(_value_info(out("topk"), INT32, ["N", top_k]))
    if not outputs:
        raise ValueError("no output requested")
    if checks not in CHECKS:
        raise ValueError(f"unknown checks {checks!r}")
    ops = {"check_min": "ReduceMin", "check_max": "ReduceMax", "check_sum": "ReduceSum"}
    for key in CHECKS[checks]:  # over every axis (no axes given), a float32 scalar
        nodes.append(_node(ops[key], [p], [out(key)], name(key), keepdims=0))
        outputs.append(_value_info(out(key), FLOAT, []))
    return nodes, inits, outputs


def postprocess_graph(
    n_species: int,
    activation: str,
    *,
    columns: Sequence[int] | None = None,
    species_ids: Sequence[int] | None = None,
    top_k: int = 0,
    richness: bool = False,
    threshold: float | None = None,
    probabilities: bool = False,
    topk_group: int = 1,
    topk_margin: int | None = None,
    checks: str | None = None,
) -> bytes:
    """Serialized ONNX model turning the raw output [N, n_species] (input ``raw``) into the outputs.

    ``columns``: the columns written as probabilities (species subset, in that order;
    default all); richness and top-K always cover every column.
    ``species_ids``: the ids of all ``n_species`` columns (top-K output values).
    Outputs, those requested only: ``richness`` float32 [N], ``topk`` int32 [N, K],
    ``probabilities`` float32 [N, S'].
    ``topk_group`` > 1: the top-K of groups of that many neighbouring rows is found from
    the group's first row (:func:`_grouped_topk`; same result); N must then be a multiple
    of it.
    ``checks``: None, "sum" or "range": the scalar outputs of :data:`CHECKS` too.
    """
    helper = _onnx().helper
    nodes, inits, outputs = _parts(
        n_species, activation, columns, species_ids, top_k, richness, threshold, probabilities,
        "raw", lambda x: x, lambda x: x, topk_group, OPSET, topk_margin, checks,
    )  # fmt: skip
    graph = helper.make_graph(
        nodes, "geoplant_postprocess", [_value_info("raw", FLOAT, ["N", n_species])], outputs, inits
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        ir_version=IR_VERSION,
        producer_name="geoplant_qgis",
    )
    return bytes(model.SerializeToString())


# --- appending to a model --------------------------------------------------------------

#: graph output names of the appended post-processing
APPENDED_OUTPUTS = {
    "richness": "geoplant_post/richness",
    "topk": "geoplant_post/topk",
    "probabilities": "geoplant_post/probabilities",
    **{key: f"geoplant_post/{key}" for key in CHECKS["range"]},
}


def _load(model: bytes | ModelProto) -> ModelProto:
    """The model as an ``onnx.ModelProto`` (parsed from its bytes: the model file's own,
    external data left where it is; a ModelProto itself, not a copy) with a single graph
    (ValueError otherwise)."""
    onnx = _onnx()
    if isinstance(model, bytes | bytearray | memoryview):
        try:
            proto: ModelProto = onnx.ModelProto.FromString(bytes(model))
        except Exception as error:  # google.protobuf.message.DecodeError
            raise ValueError(f"not an ONNX model: {error}") from None
    else:
        proto = model
    if not proto.HasField("graph"):
        raise ValueError("the model has no single graph")
    return proto


def _same_kind(proto: ModelProto, model: Model) -> Model:
    """``proto`` serialized when the caller gave bytes, else as it is."""
    if isinstance(model, bytes | bytearray | memoryview):
        return cast(Model, bytes(proto.SerializeToString()))
    return cast(Model, proto)


def default_opset(model: bytes | ModelProto) -> int:
    """The model's opset version of the default ONNX domain (0 if none)."""
    proto = _load(model) if isinstance(model, bytes | bytearray | memoryview) else model
    for opset in proto.opset_import:
        if opset.domain in ("", "ai.onnx"):
            return int(opset.version)
    return 0


def uses_external_data(model: bytes | ModelProto) -> bool:
    """Whether some of the model's initializers are stored in external data files (models
    over 2 GB): a session made from its bytes then needs :data:`EXTERNAL_DATA_FOLDER_KEY`."""
    proto = _load(model) if isinstance(model, bytes | bytearray | memoryview) else model
    external = _onnx().TensorProto.EXTERNAL
    return any(t.data_location == external for t in proto.graph.initializer)


def append_postprocess(
    model: Model,
    output_name: str,
    n_species: int,
    activation: str,
    *,
    columns: Sequence[int] | None = None,
    species_ids: Sequence[int] | None = None,
    top_k: int = 0,
    richness: bool = False,
    threshold: float | None = None,
    probabilities: bool = False,
    topk_group: int = 1,
    topk_margin: int | None = None,
    checks: str | None = None,
) -> Model:
    """The model's bytes with the post-processing appended to its graph (an
    ``onnx.ModelProto`` instead: changed in place and returned, see :data:`Model`).

    The raw output ``output_name`` stops being a graph output (so onnxruntime may fuse the
    activation into the last layer and never hands the [N, S] matrix to Python); the new
    outputs are :data:`APPENDED_OUTPUTS` (``topk_group``: see :func:`postprocess_graph`).
    Needs default-domain opset >= 13 (ValueError otherwise; the caller then runs
    :func:`postprocess_graph` as a second session). Initializers in external data stay
    there (see the module's docstring).
    """
    proto = _load(model)
    opset = default_opset(proto)
    if opset < OPSET:
        raise ValueError(f"model opset {opset} < {OPSET}")
    nodes, inits, outputs = _parts(
        n_species, activation, columns, species_ids, top_k, richness, threshold, probabilities,
        output_name, lambda x: f"geoplant_post/{x}", lambda x: APPENDED_OUTPUTS[x], topk_group, opset,
        topk_margin, checks,
    )  # fmt: skip
    graph = proto.graph
    kept = [o for o in graph.output if o.name != output_name]  # the raw output: no longer an output
    if len(kept) != len(graph.output):
        del graph.output[:]
        graph.output.extend(kept)
    graph.node.extend(nodes)
    graph.initializer.extend(inits)
    graph.output.extend(outputs)
    return _same_kind(proto, model)


# --- prepending the normalisation ------------------------------------------------------

PREPENDED_PREFIX = "geoplant_pre/"


def prepend_normalisation(
    model: Model, inputs: Sequence[tuple[str, np.ndarray | None, np.ndarray | None]]
) -> Model:
    """The model's bytes with ``x * mul + add`` computed in the graph for each named input
    (an ``onnx.ModelProto`` instead: changed in place and returned, see :data:`Model`).

    ``inputs``: (input name, mul, add) with float32 arrays broadcasting against the input
    tensor without its batch axis (None: skip that step). The graph input ``name`` is
    renamed ``geoplant_pre/<name>``; the new nodes come first and produce ``name``, so the
    rest of the graph is untouched. Callers then feed raw (scaled) values under the new
    names. Nothing to do: the model itself is returned.
    """
    steps = [(n, m, a) for n, m, a in inputs if m is not None or a is not None]
    if not steps:
        return model
    proto = _load(model)
    nodes: list[NodeProto] = []
    inits: list[TensorProto] = []
    for name, mul, add in steps:
        current = PREPENDED_PREFIX + name
        if mul is not None:
            target = name if add is None else f"{PREPENDED_PREFIX}{name}/scaled"
            inits.append(_tensor(f"{PREPENDED_PREFIX}{name}/mul", np.asarray(mul, np.float32)))
            nodes.append(_node("Mul", [current, f"{PREPENDED_PREFIX}{name}/mul"], [target], target + "/node"))
            current = target
        if add is not None:
            inits.append(_tensor(f"{PREPENDED_PREFIX}{name}/add", np.asarray(add, np.float32)))
            nodes.append(_node("Add", [current, f"{PREPENDED_PREFIX}{name}/add"], [name], name + "/add_node"))
    graph = proto.graph
    if {n for n, _, _ in steps} - {value.name for value in graph.input}:  # checked before any change
        raise ValueError("the model has no single graph with these inputs")
    renamed = {n for n, _, _ in steps}
    for value in graph.input:  # graph input ``name`` -> ``geoplant_pre/<name>``
        if value.name in renamed:
            renamed.discard(value.name)
            value.name = PREPENDED_PREFIX + value.name
    existing = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + existing)
    graph.initializer.extend(inits)
    return _same_kind(proto, model)
