"""Card ``preprocess`` steps, cube ``dimensions`` + ``name_template``, cubes fed from folders
of rasters and from band stacks (issue #12 parts 2 and 3).

The value test converts a small torch module with the converter's own ``export``, predicts
a grid whose cube comes from a folder of one-band GeoTIFFs (EPSG:4326) and whose patch
comes from a Sentinel-2-like mosaic in UTM (the grid is EPSG:3035), and checks each cell
against the torch module on inputs computed here independently: the files sampled with
rasterio at the cell centres (patch pixels: their centres), the steps applied in numpy.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from pyproj import Transformer
from rasterio.transform import from_origin

from geoplant_qgis.core import engine
from geoplant_qgis.core.errors import InputDataError, ModelCardError
from geoplant_qgis.core.modelcard import InputSpec, ModelCard
from geoplant_qgis.core.preprocess import Step, apply_head

pytestmark = pytest.mark.core

VARS, MONTHS = ("tas", "pr"), (1, 2, 3)
TEMPLATE = "{variable}_2018-{month:02d}"
S2_MEAN, S2_STD = [78.761, 146.082], [26.074, 39.518]
S2_STEPS = [
    {"op": "clip", "min": 0, "max": 10000},
    {"op": "scale", "factor": 1e-4},
    {"op": "power", "exponent": 0.4},
    {"op": "scale", "factor": 255},
    {"op": "normalise", "mean": S2_MEAN, "std": S2_STD},
]
CLIM_STEPS = [{"op": "fill_nan", "value": 0}, {"op": "log1p"}, {"op": "normalise", "mean": 3.0, "std": 2.0}]


def card(species=3):
    return json.loads(json.dumps(_card(species)))  # a fresh copy: tests change it


def _card(species):
    return {
        "format": "geoplant-onnx/1",
        "name": "cube + patch",
        "species": [{"id": 10 + i, "name": f"s{i}"} for i in range(species)],
        "output": {"name": "logits", "activation": "sigmoid"},
        "inputs": [
            {
                "name": "clim",
                "kind": "cube",
                "shape": [2, 3],
                "dimensions": [
                    {"name": "variable", "values": list(VARS)},
                    {"name": "month", "values": list(MONTHS)},
                ],
                "name_template": TEMPLATE,
                "preprocess": CLIM_STEPS,
            },
            {"name": "s2", "kind": "patch", "bands": ["red", "nir"], "size": 4, "pixel_size_m": 10,
             "preprocess": S2_STEPS},
        ],
        "grid": {"crs": "EPSG:3035", "cell_size_m": 100},
    }  # fmt: skip


# -- the card ------------------------------------------------------------------------------


def test_template_expands_in_c_order_and_round_trips():
    c = ModelCard.from_dict(card())
    clim = c.inputs[0]
    assert clim.variables == (
        "tas_2018-01",
        "tas_2018-02",
        "tas_2018-03",
        "pr_2018-01",
        "pr_2018-02",
        "pr_2018-03",
    )
    assert clim.fill == 0.0 and [s.op for s in clim.steps] == ["fill_nan", "log1p", "normalise"]
    again = ModelCard.from_json(c.to_json())
    assert again == c and "variables" not in again.to_dict()["inputs"][0]
    # variables given too: they must agree
    d = card()
    d["inputs"][0]["variables"] = list(clim.variables)
    assert ModelCard.from_dict(d).inputs[0].variables == clim.variables
    d["inputs"][0]["variables"][4] = "pr_2018-05"
    with pytest.raises(ModelCardError, match=r"element 4 is 'pr_2018-05' in variables but 'pr_2018-02'"):
        ModelCard.from_dict(d)


def test_legacy_fields_are_the_steps_fill_scale_normalise():
    spec = InputSpec("e", "point", variables=("a", "b"), scale=0.1, mean=(1, 2), std=(2, 4), fill=5.0)
    assert [s.op for s in spec.steps] == ["fill_nan", "scale", "normalise"]
    new = ModelCard.from_dict(
        card()
        | {
            "inputs": [
                {
                    "name": "e",
                    "kind": "point",
                    "variables": ["a", "b"],
                    "preprocess": [s.to_dict() for s in spec.steps],
                }
            ]
        }  # fmt: skip
    ).inputs[0]
    raw = np.array([[np.nan, 30.0], [12.0, 7.0]], np.float32)
    np.testing.assert_allclose(new.prepare(raw)[0], spec.prepare(raw)[0], rtol=1e-6)
    assert new.affine()[0] is not None


def mutate(path, value):
    def apply(d):
        target = d
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return apply


@pytest.mark.parametrize(
    "change, words",
    [
        (mutate(["inputs", 1, "scale"], 2.0), r"inputs\[1\].scale' cannot be given with preprocess"),
        (mutate(["inputs", 1, "preprocess", 0], {"op": "normalize", "mean": 1}), "did you mean 'normalise'"),
        (mutate(["inputs", 1, "preprocess", 0], {"op": "clip"}), "needs min, max or both"),
        (mutate(["inputs", 1, "preprocess", 0], {"op": "clip", "min": 5, "max": 1}), "min 5 is above its"),
        (mutate(["inputs", 1, "preprocess", 1], {"op": "scale", "factor": 0}), "must not be 0"),
        (mutate(["inputs", 1, "preprocess", 1], {"op": "fill_nan", "value": 0}), "fill_nan must be"),
        (mutate(["inputs", 1, "preprocess", 1], {"op": "scale", "fator": 2}), r"fator' is not a field of"),
        (mutate(["inputs", 1, "preprocess", 0], {"op": "normalise", "mean": [1, 2]}),
         "per channel must come after the last clip"),
        (mutate(["inputs", 1, "preprocess", 4], {"op": "normalise", "mean": [1, 2, 3]}), "one per band"),
        (mutate(["inputs", 1, "preprocess", 2], {"op": "power", "exponent": "x"}), "must be a finite number"),
        (mutate(["inputs", 0, "name_template"], "{variable}_{year}"), r"'\{year\}', which is not a dim"),
        (mutate(["inputs", 0, "name_template"], "{variable}"), "does not use the dimension"),
        (mutate(["inputs", 0, "name_template"], "{variable}_{month:02d}_{variable:02d}"), "cannot name"),
        (mutate(["inputs", 0, "shape"], [2, 4]), r"has 3 values but axis 1 of shape \[2, 4\] is 4"),
        (mutate(["inputs", 0, "dimensions", 1, "values"], [1, 1, 2]), "lists a value more than once"),
        (mutate(["inputs", 0, "name_template"], "{variable}-{month}"), None),
        (lambda d: d["inputs"][0].pop("name_template"), "name_template' is missing"),
        (mutate(["inputs", 1, "dimensions"], []), r"inputs\[1\].dimensions' is not a field"),
    ],
)  # fmt: skip
def test_invalid_steps_and_dimensions_are_named(change, words):
    d = card()
    change(d)
    if words is None:
        ModelCard.from_dict(d)
        return
    with pytest.raises(ModelCardError, match=words):
        ModelCard.from_dict(d)


def test_two_elements_with_one_name_are_refused():
    d = card()
    d["inputs"][0]["dimensions"][0]["values"] = ["t_a", "ta"]
    with pytest.raises(ModelCardError, match="same name"):
        ModelCard.from_dict(d)


# -- each step against its numpy formula ---------------------------------------------------


X = np.array([-3.0, -1.0, 0.0, 0.5, 2.0, 9000.0, 12000.0, np.nan], np.float32)


@pytest.mark.parametrize(
    "step, formula",
    [
        (Step("clip", min=0.0, max=10000.0), lambda x: np.clip(x, 0, 10000)),
        (Step("clip", min=1.0), lambda x: np.maximum(x, 1)),
        (Step("clip", max=1.0), lambda x: np.minimum(x, 1)),
        (Step("scale", factor=1e-4), lambda x: x * 1e-4),
        (Step("offset", value=-273.15), lambda x: x - 273.15),
        (Step("power", exponent=0.4), lambda x: np.power(x, 0.4)),
        (Step("power", exponent=2.0), lambda x: x**2),
        (Step("log1p"), np.log1p),
        (Step("normalise", mean=(3.0,), std=(2.0,)), lambda x: (x - 3) / 2),
    ],
)
def test_each_step_is_its_formula(step, formula):
    with np.errstate(invalid="ignore", divide="ignore"):
        want = formula(X.astype(np.float64))
    want[~np.isfinite(want)] = np.nan  # a value a step makes NaN or infinite is nodata
    got = apply_head([step], X.copy())
    np.testing.assert_allclose(got, want, rtol=2e-6, equal_nan=True)
    # as the affine tail the graph applies (scale, offset, normalise)
    if step.op in ("scale", "offset", "normalise"):
        spec = InputSpec("p", "point", variables=("v",), preprocess=(step,))
        mul, add = spec.affine()
        x = X[:, None].astype(np.float32)
        tail = x * (1 if mul is None else mul) + (0 if add is None else add)
        np.testing.assert_allclose(tail[:, 0], want, rtol=2e-6, atol=1e-6, equal_nan=True)


def test_glc24_sentinel_chain_and_validity():
    spec = ModelCard.from_dict(card()).inputs[1]
    raw = np.zeros((2, 2, 4, 4), np.float32) + np.array([-5.0, 12000.0], np.float32)[None, :, None, None]
    raw[0, 0, 0, 0] = 2500.0
    out, valid = spec.prepare(raw)
    jpeg = np.clip(raw.astype(np.float64), 0, 10000) / 10000.0
    jpeg = jpeg**0.4 * 255
    want = (jpeg - np.array(S2_MEAN)[None, :, None, None]) / np.array(S2_STD)[None, :, None, None]
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
    assert valid.all()
    # no fill: NaN makes the cell nodata; log1p of -2 (NaN) too, even with fill_nan
    clim = ModelCard.from_dict(card()).inputs[0]
    rows = np.array([[1, 2, 3, 4, 5, 6], [np.nan, 2, 3, 4, 5, 6], [-2, 2, 3, 4, 5, 6]], np.float32)
    tensor, valid = clim.prepare(rows)
    assert valid.tolist() == [True, True, False]
    np.testing.assert_allclose(tensor[1].ravel(), (np.log1p([0, 2, 3, 4, 5, 6]) - 3) / 2, rtol=1e-6)


# -- a grid prediction against torch --------------------------------------------------------

torch = pytest.importorskip("torch")

GRID = "EPSG:3035"
CELL = 100.0
LEFT, TOP, W, H = 3_760_000.0, 2_300_000.0, 7, 5


class CubePatch(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.cube = torch.nn.Linear(6, 3)
        self.conv = torch.nn.Conv2d(2, 3, 2)
        self.head = torch.nn.Linear(3 * 3 * 3, 3)

    def forward(self, clim, s2):
        a = self.cube(clim.flatten(1))
        b = self.head(torch.tanh(self.conv(s2)).flatten(1))
        return a + b


def _write(path, data, crs, transform, descriptions=None, nodata=None):
    data = np.asarray(data, np.float32)
    if data.ndim == 2:
        data = data[None]
    with rasterio.open(
        path, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=data.shape[0],
        dtype="float32", crs=crs, transform=transform, nodata=nodata,
    ) as dst:  # fmt: skip
        dst.write(data)
        for i, d in enumerate(descriptions or (), start=1):
            dst.set_band_description(i, d)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("cubes")
    to_ll = Transformer.from_crs(GRID, "EPSG:4326", always_xy=True)
    lon, lat = to_ll.transform(LEFT + W * CELL / 2, TOP - H * CELL / 2)
    rng = np.random.default_rng(3)
    folder = root / "chelsa"
    folder.mkdir()
    clim_t = from_origin(lon - 0.02, lat + 0.02, 0.0013, 0.0011)  # ~100 m, not the grid's pixels
    for v in VARS:
        for m in MONTHS:
            _write(folder / TEMPLATE.format(variable=v, month=m).__add__(".tif"),
                   rng.uniform(0, 50, (40, 40)), "EPSG:4326", clim_t)  # fmt: skip
    utm = "EPSG:32631"
    x, y = Transformer.from_crs("EPSG:4326", utm, always_xy=True).transform(lon, lat)
    s2_t = from_origin(round(x) - 700 + 3.3, round(y) + 700 - 1.7, 10, 10)  # off the patch lattice
    s2 = rng.uniform(-500, 12500, (2, 140, 140))
    _write(root / "s2.tif", s2, utm, s2_t, descriptions=["red", "nir"])
    torch.manual_seed(0)
    module = CubePatch().eval()
    from geoplant_qgis.convert.api import export

    export(module, card(), root / "model.onnx")
    return root, module


def _values_at(path, xs, ys, crs, band=1):
    with rasterio.open(path) as src:
        tx, ty = Transformer.from_crs(crs, src.crs, always_xy=True).transform(xs, ys)
        cols, rows = ~src.transform * (np.asarray(tx), np.asarray(ty))
        data = src.read(band).astype(np.float64)
        return data[np.floor(rows).astype(int), np.floor(cols).astype(int)]


def _expected(root, module):
    rows, cols = np.mgrid[0:H, 0:W]
    xs = (LEFT + (cols + 0.5) * CELL).ravel()
    ys = (TOP - (rows + 0.5) * CELL).ravel()
    clim = np.stack(
        [_values_at(root / "chelsa" / f"{TEMPLATE.format(variable=v, month=m)}.tif", xs, ys, GRID)
         for v in VARS for m in MONTHS], axis=1,
    )  # fmt: skip
    clim = ((np.log1p(clim) - 3.0) / 2.0).reshape(-1, 2, 3)
    off = (np.arange(4) - 2 + 0.5) * 10.0
    px = xs[:, None, None] + off[None, None, :]
    py = ys[:, None, None] - off[None, :, None]
    px, py = np.broadcast_arrays(px, py)
    s2 = np.stack(
        [_values_at(root / "s2.tif", px.ravel(), py.ravel(), GRID, b).reshape(px.shape) for b in (1, 2)], 1
    )
    s2 = (np.clip(s2, 0, 10000) / 10000.0) ** 0.4 * 255.0
    s2 = (s2 - np.array(S2_MEAN)[None, :, None, None]) / np.array(S2_STD)[None, :, None, None]
    with torch.no_grad():
        logits = module(torch.tensor(clim, dtype=torch.float32), torch.tensor(s2, dtype=torch.float32))
    return torch.sigmoid(logits).numpy().reshape(H, W, -1)


@pytest.mark.parametrize("layout", ["folder", "stack"])
def test_grid_prediction_equals_torch(world, tmp_path, layout):
    root, module = world
    rasters = [root / "chelsa", root / "s2.tif"]
    if layout == "stack":
        from geoplant_qgis.core.stacks import build_stack

        card_ = ModelCard.from_dict(card())
        stack = build_stack(card_.inputs[0], [root / "chelsa"], tmp_path / "clim.vrt")
        rasters = [stack.path, root / "s2.tif"]
    out = tmp_path / "p.tif"
    result = engine.predict(
        root / "model.onnx", rasters, extent=(LEFT, TOP - H * CELL, LEFT + W * CELL, TOP), extent_crs=GRID,
        crs=GRID, cell_size=CELL, top_k=0, output_probabilities=out,
    )  # fmt: skip
    assert result.valid_cells == W * H
    with rasterio.open(out) as src:
        got = src.read().transpose(1, 2, 0)
    np.testing.assert_allclose(got, _expected(root, module), atol=1e-4)


def test_missing_elements_are_grouped(world, tmp_path):
    root, _ = world
    partial = tmp_path / "partial"
    partial.mkdir()
    for f in (root / "chelsa").iterdir():
        if not f.name.startswith("pr_2018-02") and not f.name.startswith("pr_2018-03"):
            (partial / f.name).symlink_to(f)
    with pytest.raises(InputDataError) as error:
        engine.predict(
            root / "model.onnx", [partial, root / "s2.tif"], extent=(LEFT, TOP - 200, LEFT + 200, TOP),
            extent_crs=GRID, crs=GRID, cell_size=CELL, top_k=0, output_probabilities=tmp_path / "x.tif",
        )  # fmt: skip
    text = str(error.value)
    assert "'clim': 2 of 6 missing: pr_2018-02 to pr_2018-03 (2)" in text, text
    assert "tas_2018-01.tif (one band" in text


def test_describe_missing_runs():
    from geoplant_qgis.core.cubenames import describe_missing

    names = [f"{v}_{y}-{m:02d}" for v in ("pr", "tas") for y in (2017, 2018) for m in range(1, 13)]
    lost = {f"tas_2018-{m:02d}" for m in range(1, 13)} | {"pr_2017-05"}
    assert describe_missing("bioclim", names, lost) == (
        "bioclim: 13 of 48 missing: pr_2017-05, tas_2018-01 to tas_2018-12 (12)"
    )


def test_modelinfo_lists_expanded_names_and_steps(world):
    from geoplant_qgis.core.cardtext import describe_card, inputs_listing

    c = ModelCard.from_dict(card())
    text = "\n".join(describe_card(c))
    assert "6 variables named '{variable}_2018-{month:02d}'" in text
    assert "tas_2018-01, tas_2018-02, tas_2018-03, pr_2018-01, pr_2018-02, pr_2018-03" in text
    assert "1. clip to 0 .. 10000" in text and "3. power: x ** 0.4" in text
    listing = json.loads(json.dumps(inputs_listing(c)))
    assert listing[0]["variables"][3] == "pr_2018-01" and listing[1]["preprocess"][2] == S2_STEPS[2]
    from geoplant_qgis.convert import presets

    big = ModelCard.from_dict(presets.card("glc24", 5))
    text = "\n".join(describe_card(big))
    assert "912 variables" in text and "tasmin_2018-12" in text and len(text) < 6000
    assert len(inputs_listing(big)[1]["variables"]) == 912
