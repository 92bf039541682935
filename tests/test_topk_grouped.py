"""The neighbour top-K (postprocess._grouped_topk) gives exactly a stable descending argsort.

Rows are made so that every branch runs: neighbours with the same top-K set (the cheap
path), neighbours with a different set, ties at the bound and inside the top-K, rows of
unrelated random values, and micro-batches that are not a multiple of the group (the
engine pads them); with and without a margin of extra candidate columns, up to every
column. Deliberately broken bounds must make these comparisons fail.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from geoplant_qgis.core import engine, postprocess
from geoplant_qgis.core.postprocess import append_postprocess, postprocess_graph
from geoplant_qgis.core.predict import inference

pytestmark = pytest.mark.core

KINDS = ["smooth", "random", "ties", "swap"]


def session(data: bytes):
    return ort.InferenceSession(data, providers=["CPUExecutionProvider"])


def expected(p, ids, k):
    return np.asarray(ids)[np.argsort(-p, axis=1, kind="stable")[:, :k]]


def rows(kind: str, n: int, s: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "smooth":  # neighbours nearly equal: mostly the leader's set
        base = rng.random(s)
        drift = np.cumsum(rng.normal(scale=0.01, size=(n, s)), axis=0)
        return (base + drift).astype(np.float32)
    if kind == "random":
        return rng.random((n, s), dtype=np.float32)
    if kind == "ties":  # few distinct values: ties at the bound and inside the top-K
        return (rng.integers(0, 6, size=(n, s)) / 5.0).astype(np.float32)
    if kind == "swap":  # each row the previous one with two columns swapped in and out
        p = np.tile(np.linspace(1.0, 0.0, s, dtype=np.float32), (n, 1))
        for i in range(1, n):
            p[i] = p[i - 1]
            a, b = rng.integers(0, s, size=2)
            p[i, [a, b]] = p[i, [b, a]]
        return p
    raise ValueError(kind)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("margin", [0, 3, 16])
@pytest.mark.parametrize(("group", "k"), [(2, 3), (3, 5), (8, 5), (8, 1), (4, 39), (16, 7), (32, 5)])
def test_grouped_topk_equals_stable_argsort(kind, margin, group, k):
    s, n = 40, 96  # n a multiple of every group; k + margin up to past every column (c = s)
    ids = np.arange(s)[::-1] * 10 + 7  # ids differ from columns
    p = rows(kind, n, s, seed=group + margin)
    data = postprocess_graph(s, "none", species_ids=ids, top_k=k, topk_group=group, topk_margin=margin)
    onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    got = session(data).run(["topk"], {"raw": p})[0]
    np.testing.assert_array_equal(got, expected(p, ids, k))
    assert got.dtype == np.int32


def cheap_rows(p, k, group, margin):
    """Which rows should take the cheap path, by the definition: the K-th largest of a row's
    values at its leader's top K + margin columns (stable order) is above all its other values."""
    g = p.reshape(-1, group, p.shape[1])
    lead = np.argsort(-g[:, 0], axis=1, kind="stable")[:, : k + margin]
    cols = np.repeat(lead[:, None, :], group, axis=1)
    values = np.take_along_axis(g, cols, axis=2)
    bound = -np.sort(-values, axis=2)[:, :, k - 1]
    rest = g.copy()
    np.put_along_axis(rest, cols, -np.inf, axis=2)
    return (rest.max(axis=2) < bound).reshape(-1)


def with_outputs(data: bytes, names) -> bytes:
    model = onnx.load_from_string(data)
    model.graph.output.extend(onnx.ValueInfoProto(name=x) for x in names)
    return model.SerializeToString()


@pytest.mark.parametrize(("kind", "least"), [("smooth", 0.9), ("swap", 0.1), ("ties", 0.0)])
def test_cheap_path_rows_are_the_expected_ones(kind, least):
    """The graph's cheap-path mask equals the numpy definition row by row, and the margin
    takes far more smooth rows there than the leader's K columns alone."""
    s, n, k, group = 200, 256, 10, 32
    p = rows(kind, n, s, seed=5)
    shares = {}
    for margin in (0, 16):
        data = postprocess_graph(
            s, "none", species_ids=range(s), top_k=k, topk_group=group, topk_margin=margin
        )
        got = session(with_outputs(data, ["topk/same_set"])).run(["topk/same_set"], {"raw": p})[0]
        want = cheap_rows(p, k, group, margin)
        np.testing.assert_array_equal(got.reshape(-1), want)
        shares[margin] = want.mean()
    assert shares[16] >= least
    if kind == "smooth":
        assert shares[16] > shares[0] + 0.2


def broken(data: bytes, how: str) -> bytes:
    model = onnx.load_from_string(data)
    if how == "bound is the largest candidate":  # too high: rows with another top-K look cheap
        for init in model.graph.initializer:
            if init.name in ("topk/last_start", "topk/last_end"):
                first = np.array([0 if init.name.endswith("start") else 1], np.int64)
                init.CopyFrom(onnx.numpy_helper.from_array(first, init.name))
    elif how == "ties at the bound pass":  # an outside value equal to the bound is ignored
        for node in model.graph.node:
            if node.name == "topk/same_set":
                node.op_type = "LessOrEqual"
    elif how == "no candidate masked":  # the leader's columns are not set to -inf: never cheap
        for node in model.graph.node:
            if node.name == "topk/rest":
                node.op_type, node.input[:] = "Identity", [node.input[0]]
                del node.attribute[:]
    return model.SerializeToString()


@pytest.mark.parametrize(
    "how", ["bound is the largest candidate", "ties at the bound pass", "no candidate masked"]
)
def test_a_broken_bound_is_caught(how):
    """The comparisons above can fail: each deliberately wrong check gives a wrong top-K on
    some of the rows (the last one is only slower, so it is caught by the cheap-path mask)."""
    s, n, k, group, margin = 40, 96, 5, 8, 3
    wrong = 0
    for kind in KINDS:
        for seed in range(3):
            p = rows(kind, n, s, seed=seed)
            data = postprocess_graph(
                s, "none", species_ids=range(s), top_k=k, topk_group=group, topk_margin=margin
            )
            good = session(data).run(["topk"], {"raw": p})[0]
            np.testing.assert_array_equal(good, expected(p, range(s), k))
            bad = session(with_outputs(broken(data, how), ["topk/same_set"]))
            got, same = bad.run(["topk", "topk/same_set"], {"raw": p})
            if how == "no candidate masked":
                wrong += int(not np.array_equal(same.reshape(-1), cheap_rows(p, k, group, margin)))
            else:
                wrong += int(not np.array_equal(got, expected(p, range(s), k)))
    assert wrong > 0


def test_default_margin_is_used():
    """Without topk_margin the graph takes postprocess.TOPK_MARGIN extra candidates."""
    s, k = 100, 5
    data = postprocess_graph(s, "none", species_ids=range(s), top_k=k, topk_group=4)
    model = onnx.load_from_string(data)
    (c,) = [onnx.numpy_helper.to_array(i) for i in model.graph.initializer if i.name == "topk/candidates"]
    assert c.tolist() == [k + postprocess.TOPK_MARGIN] and postprocess.TOPK_MARGIN > 0


def test_ties_keep_the_lower_column_even_when_the_leader_order_differs():
    """The leader's top columns by value are (3, 1); the follower has them equal: 1 first."""
    p = np.array([[0.0, 0.8, 0.0, 0.9, 0.1], [0.0, 0.5, 0.0, 0.5, 0.1]], np.float32)
    data = postprocess_graph(5, "none", species_ids=list(range(5)), top_k=2, topk_group=2)
    got = session(data).run(["topk"], {"raw": p})[0]
    np.testing.assert_array_equal(got, [[3, 1], [1, 3]])
    # and another element equal to the bound with a lower column: it wins the tie
    p = np.array([[0.0, 0.8, 0.0, 0.9, 0.1], [0.5, 0.6, 0.0, 0.5, 0.1]], np.float32)
    got = session(data).run(["topk"], {"raw": p})[0]
    np.testing.assert_array_equal(got, [[3, 1], [1, 0]])


@pytest.mark.parametrize("opset", [13, 17, 18])
def test_appended_grouped_topk_every_opset(opset):
    """ReduceMin/ReduceMax take their axes as an attribute before opset 18, as an input after."""
    s, k = 30, 4
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["logits"])],
        "m",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", s])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", s])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    data = append_postprocess(
        model.SerializeToString(), "logits", s, "sigmoid", species_ids=list(range(s)), top_k=k, topk_group=4
    )
    onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    x = rows("smooth", 24, s, seed=opset) * 4 - 2
    got = session(data).run(["geoplant_post/topk"], {"x": x})[0]
    p = 1.0 / (1.0 + np.exp(-x.astype(np.float64)))
    # sigmoid in float32 may merge close logits into equal probabilities: compare with ORT's own
    probs = session(
        append_postprocess(model.SerializeToString(), "logits", s, "sigmoid", probabilities=True)
    ).run(["geoplant_post/probabilities"], {"x": x})[0]
    np.testing.assert_allclose(probs, p, rtol=1e-6)
    np.testing.assert_array_equal(got, expected(probs, range(s), k))


def linear_model(tmp_path, seed: int, ids: list[int], s: int = 40):
    """A 2-variable linear model with sigmoid over ``s`` species (ids ``ids``): (path, p(x))
    with p the probabilities computed in float64, and the seeded generator for the rows."""
    from tiny_models import save_linear_point_model

    rng = np.random.default_rng(seed)
    w = rng.normal(size=(2, s)).astype(np.float32)
    b = rng.normal(size=s).astype(np.float32)
    species = [{"id": i, "name": f"Species {i}"} for i in ids]
    model = save_linear_point_model(
        tmp_path / "m.onnx", weights=w, bias=b, variables=("a", "c"), species=species
    )
    return model, (lambda x: 1.0 / (1.0 + np.exp(-(x.astype(np.float64) @ w + b)))), rng


def test_pipeline_pads_micro_batches_to_whole_groups(tmp_path):
    """Any number of rows (1, 7, 13...) in micro-batches of any size gives argsort's answer."""
    s = 40
    model, probabilities, rng = linear_model(tmp_path, 3, list(range(100, 100 + s)))
    loaded = engine.LoadedModel(model)
    pipeline = loaded.pipeline(None, top_k=6)
    assert pipeline.group == engine.TOPK_GROUP > 1
    x = np.cumsum(rng.normal(scale=0.05, size=(29, 2)), axis=0).astype(np.float32)
    p = probabilities(x)
    for n, micro in ((1, None), (7, None), (13, 5), (29, 8), (29, 3)):
        got = pipeline.run({"env": x[:n]}, micro_batch=micro)["topk"]
        np.testing.assert_array_equal(got, expected(p[:n], range(100, 100 + s), 6))


def test_micro_batches_are_balanced_between_workers(tmp_path):
    """677 rows on two workers: an even number of equal micro-batches (whole top-K groups),
    not 256 + 256 + 165 (one worker idle a third of the time); same values."""
    s = 40
    model, probabilities, rng = linear_model(tmp_path, 4, list(range(s)))
    pipeline = engine.LoadedModel(model).pipeline(None, top_k=5, richness=True)
    pipeline.workers, pipeline.sessions = 2, pipeline.sessions[:1] * 2
    assert pipeline.micro_batch == engine.MICRO_BATCH
    x = np.cumsum(rng.normal(scale=0.05, size=(677, 2)), axis=0).astype(np.float32)
    sizes = [pipeline.padded(stop - start) for start, stop in pipeline.split(len(x))]
    fed = []  # the rows each onnxruntime call really got (not only the plan)
    run_session = pipeline._run_session

    def recording(worker, feeds):
        fed.append(len(feeds["env"]))
        return run_session(worker, feeds)

    pipeline._run_session = recording
    got = pipeline.run({"env": x})
    assert engine.TOPK_GROUP == 64
    # 4 pieces of ceil(677 / 4) = 170 rows rounded up to whole groups of 64: 192, 192, 192
    # and the last 101 rows padded to 128
    assert sorted(sizes) == [128, 192, 192, 192]
    assert sorted(fed) == sorted(sizes)
    p = probabilities(x)
    np.testing.assert_array_equal(got["topk"], expected(p, range(s), 5))
    np.testing.assert_allclose(got["richness"], p.sum(axis=1), rtol=1e-5)


def test_submitted_runs_overlap_and_the_pool_stops(tmp_path):
    """Two runs in flight on the pool give each its own answer; close() stops its threads."""
    s = 40
    model, probabilities, rng = linear_model(tmp_path, 5, list(range(s)))
    x = np.cumsum(rng.normal(scale=0.05, size=(700, 2)), axis=0).astype(np.float32)
    y = x[::-1].copy()
    p = probabilities
    with engine.LoadedModel(model).pipeline(None, top_k=5, richness=True) as pipeline:
        first = pipeline.submit({"env": x}, micro_batch=64)
        second = pipeline.submit({"env": y}, micro_batch=96)
        got_y, got_x = second.result(), first.result()
        workers = pipeline.worker_threads()
        assert workers and all(t.is_alive() and t.name.startswith("geoplant-ort") for t in workers)
    np.testing.assert_array_equal(got_x["topk"], expected(p(x), range(s), 5))
    np.testing.assert_array_equal(got_y["topk"], expected(p(y), range(s), 5))
    np.testing.assert_allclose(got_x["richness"], p(x).sum(axis=1), rtol=1e-5)
    np.testing.assert_allclose(got_y["richness"], p(y).sum(axis=1), rtol=1e-5)
    assert not any(t.is_alive() for t in workers)


def test_top_k_groups_never_exceed_a_micro_batch(tmp_path, monkeypatch):
    """Big rows make small micro-batches (a CNN's 64 KB patches: 32 rows); the top-K groups
    shrink to fit instead of making every micro-batch a group long. Same values."""
    s = 40
    model, probabilities, rng = linear_model(tmp_path, 6, list(range(s)))
    row_bytes = 4 * 2 + 4 * s
    monkeypatch.setattr(inference, "MICRO_BATCH_BYTES", 20 * row_bytes)  # 20 rows per call
    pipeline = engine.LoadedModel(model).pipeline(None, top_k=5)
    assert pipeline.micro_batch == 20 and pipeline.group == 16 < engine.TOPK_GROUP
    x = np.cumsum(rng.normal(scale=0.05, size=(300, 2)), axis=0).astype(np.float32)
    p = probabilities(x)
    np.testing.assert_array_equal(pipeline.run({"env": x})["topk"], expected(p, range(s), 5))
