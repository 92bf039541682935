"""The converter (geoplant_qgis.convert): PyTorch modules and GeoPlant checkpoints -> ONNX.

Needs PyTorch (tools/requirements-convert.txt; `make test` installs it). The full-size
multimodal ensemble (11,255 species, ~108 M parameters) is converted once per preset:
GLC24 from a Lightning .ckpt, GLC25 from a plain .pth.
"""

import os
import pickle
import subprocess
import sys
import time

import numpy as np
import pytest

torch = pytest.importorskip(
    "torch",
    reason="PyTorch is not installed: the converter's tests need it "
    "(.venv/bin/python -m pip install -c constraints.txt -r tools/requirements-convert.txt)",
)
pytest.importorskip("onnx", reason="the converter needs the onnx package (requirements-dev.txt)")

from geoplant_qgis.convert import checkpoint, presets, species  # noqa: E402
from geoplant_qgis.convert import malpolon as mme  # noqa: E402
from geoplant_qgis.convert.api import export, random_inputs, verify  # noqa: E402
from geoplant_qgis.convert.cli import main  # noqa: E402
from geoplant_qgis.convert.errors import ConversionError  # noqa: E402
from geoplant_qgis.core.modelcard import ModelCard, read_model_card  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.core]  # no QGIS needed
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPECIES = 11255


@pytest.fixture(autouse=True, scope="module")
def _threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    yield
    torch.set_num_threads(previous)


# -- the Python API on small modules -----------------------------------------------------


class PointCube(torch.nn.Module):
    """Two inputs (a point vector and a cube), a few species."""

    def __init__(self, species=5):
        super().__init__()
        self.point = torch.nn.Linear(3, 8)
        self.cube = torch.nn.Conv2d(2, 4, 3, padding=1)
        self.head = torch.nn.Linear(8 + 4, species)

    def forward(self, env, cube):
        c = self.cube(cube).mean(dim=(2, 3))
        return self.head(torch.cat([torch.relu(self.point(env)), c], dim=1))


def small_card(activation="sigmoid", species=5, cube_shape=(2, 4, 6)):
    return {
        "format": "geoplant-onnx/1",
        "name": "small",
        "species": [{"id": 100 + i, "name": f"s{i}"} for i in range(species)],
        "output": {"name": "scores", "activation": activation},
        "inputs": [
            {"name": "env", "kind": "point", "variables": ["bio1", "bio12", "elev"]},
            {
                "name": "cube",
                "kind": "cube",
                "shape": list(cube_shape),
                "variables": [f"c{i}" for i in range(int(np.prod(cube_shape)))],
            },
        ],
    }


@pytest.mark.parametrize("activation", ["sigmoid", "softmax"])
def test_export_small_module_dynamic_batch(tmp_path, activation):
    torch.manual_seed(0)
    module = PointCube()
    out = tmp_path / "small.onnx"
    report = export(module, small_card(activation), out)
    assert report.verify.passed and set(report.verify.per_batch) == {1, 3}
    assert report.verify.max_abs_diff < 1e-5
    card = read_model_card(out)  # the plugin's own reading and graph check
    assert [x.name for x in card.inputs] == ["env", "cube"] and card.output.activation == activation
    import onnxruntime as ort

    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.shape[0] for i in session.get_inputs()] == ["N", "N"]
    arrays = random_inputs(card, 7, seed=5)
    (got,) = session.run(None, {"env": arrays[0], "cube": arrays[1]})
    with torch.no_grad():
        expected = module(*(torch.from_numpy(a) for a in arrays)).numpy()
    assert got.shape == (7, 5)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    # nothing but the output in the folder: the temporary name was renamed
    assert sorted(p.name for p in tmp_path.iterdir()) == ["small.onnx"]


def test_verify_refuses_a_different_module(tmp_path):
    torch.manual_seed(0)
    module = PointCube()
    out = tmp_path / "small.onnx"
    export(module, small_card(), out)
    other = PointCube()
    with torch.no_grad():
        other.load_state_dict(module.state_dict())
        other.head.bias += 0.01  # shifts every probability by up to 0.0025
    with pytest.raises(ConversionError, match=r"does not reproduce the PyTorch module: max \|ONNX - torch\|"):
        verify(other, out)
    report = verify(other, out, tolerance=0.01)
    assert 1e-4 < report.max_abs_diff < 0.0026


def test_export_refuses_a_card_that_does_not_fit_the_module(tmp_path):
    with pytest.raises(ConversionError, match="could not be run on the card's inputs"):
        export(PointCube(), small_card(cube_shape=(3, 4, 6)), tmp_path / "bad.onnx")  # conv wants 2 channels
    with pytest.raises(ConversionError, match="species"):
        export(PointCube(species=5), small_card(species=4), tmp_path / "wrong_species.onnx")
    with pytest.raises(ConversionError, match="Invalid model card"):
        export(PointCube(), {**small_card(), "format": "geoplant-onnx/2"}, tmp_path / "x.onnx")
    assert not (tmp_path / "wrong_species.onnx").exists() and not (tmp_path / "x.onnx").exists()
    assert list(tmp_path.iterdir()) == []


# -- checkpoints ------------------------------------------------------------------------


class Trap:
    """Unpickling it would call open(marker, 'w'): a file appears if code runs."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("how", ["torch.save", "pickle.dump"])
def test_malicious_pickle_is_refused(tmp_path, capsys, how):
    marker = tmp_path / "pwned.txt"
    ckpt = tmp_path / "evil.ckpt"
    payload = {"state_dict": {"model.fc2.weight": torch.zeros(2, 2)}, "hyper_parameters": Trap(str(marker))}
    if how == "torch.save":
        torch.save(payload, ckpt)
    else:
        with open(ckpt, "wb") as handle:  # no tensors: plain pickle would reduce them through torch
            pickle.dump(
                {"state_dict": {}, "hyper_parameters": Trap(str(marker))}, handle, protocol=2
            )  # torch.load's legacy (non-zip) format
    code = main(
        ["malpolon", "--checkpoint", str(ckpt), "--preset", "glc24", "--output", str(tmp_path / "o.onnx")]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "evil.ckpt' was refused: the checkpoint asks to run code" in err and "weights_only=True" in err
    assert "('io.open')" in err  # the callable it asked for is named
    assert "Traceback" not in err
    assert not marker.exists(), "the pickle's code ran"
    assert not (tmp_path / "o.onnx").exists()


def test_malicious_pickle_refused_by_the_command_line(tmp_path):
    marker = tmp_path / "pwned.txt"
    ckpt = tmp_path / "evil.pth"
    torch.save({"fc2.weight": Trap(str(marker))}, ckpt)
    run = subprocess.run(
        [sys.executable, "-m", "geoplant_qgis.convert", "malpolon", "--checkpoint", str(ckpt)]
        + ["--preset", "glc25", "--output", str(tmp_path / "o.onnx")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 1, run.stderr
    assert "refused" in run.stderr and "Traceback" not in run.stderr
    assert not marker.exists()


def test_not_a_checkpoint(tmp_path, capsys):
    bad = tmp_path / "notes.pth"
    bad.write_text("hello")
    assert (
        main(
            ["malpolon", "--checkpoint", str(bad), "--preset", "glc24", "--output", str(tmp_path / "o.onnx")]
        )
        == 1
    )
    assert "is not a PyTorch checkpoint torch.load can read" in capsys.readouterr().err
    missing = tmp_path / "missing.ckpt"
    assert (
        main(
            [
                "malpolon",
                "--checkpoint",
                str(missing),
                "--preset",
                "glc24",
                "--output",
                str(tmp_path / "o.onnx"),
            ]
        )
        == 1
    )
    assert "Checkpoint not found" in capsys.readouterr().err
    assert main(["malpolon", "--preset", "glc24"]) == 2


def _signature(classes=30, **changes):
    """The few tensors check_architecture looks at: enough to be refused early."""
    state = {k: torch.zeros(shape) for k, shape in mme.SIGNATURE.items()}
    state["fc2.weight"] = torch.zeros(classes, 4096)
    state["fc2.bias"] = torch.zeros(classes)
    state.update(changes)
    return state


@pytest.mark.parametrize(
    "state, words",
    [
        (
            {"conv1.weight": torch.zeros(64, 3, 7, 7), "fc.weight": torch.zeros(10, 512)},
            "is not a GeoPlant multimodal ensemble",
        ),
        (_signature(**{"fc3.weight": torch.zeros(30, 4096)}), "modality-specific ensemble"),
        (
            _signature(**{"fc1.weight": torch.zeros(4096, 2000)}),
            "fc1.weight is [4096, 2000], the MME has [4096, 2768]",
        ),
        (
            _signature(**{"sentinel_model.features.0.0.weight": torch.zeros(96, 3, 4, 4)}),
            "sentinel_model.features.0.0.weight is [96, 3, 4, 4]",
        ),
        (_signature(), "do not fit the multimodal ensemble: "),  # the signature alone: the rest is missing
    ],
    ids=["resnet", "modality-specific", "fc1", "3-band", "missing"],
)
def test_bad_checkpoint_keys_are_refused(tmp_path, capsys, state, words):
    path = tmp_path / "other.pth"
    torch.save(state, path)
    code = main(
        [
            "malpolon",
            "--checkpoint",
            str(path),
            "--preset",
            "glc24",
            "--backend",
            "torch",
            "--output",
            str(tmp_path / "o.onnx"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1 and words in err and "Traceback" not in err, err
    assert not (tmp_path / "o.onnx").exists()


def test_num_classes_must_match_the_checkpoint(tmp_path, capsys):
    path = tmp_path / "sig.ckpt"
    torch.save(
        {"state_dict": {f"model.{k}": v for k, v in _signature(30).items()}, "hyper_parameters": {}}, path
    )
    code = main(
        ["malpolon", "--checkpoint", str(path), "--preset", "glc24", "--num-classes", "11255"]
        + ["--output", str(tmp_path / "o.onnx")]
    )
    assert code == 1
    assert (
        "--num-classes 11255 does not match the checkpoint, whose fc2 predicts 30 species"
        in capsys.readouterr().err
    )
    loaded = checkpoint.load(path)
    assert loaded.layout == "lightning" and loaded.prefix == "model." and "fc2.weight" in loaded.state_dict


def test_species_csv(tmp_path):
    csv = tmp_path / "species.csv"
    csv.write_text("speciesId,name\n0,Quercus ilex\n7.0,Pinus halepensis\n", encoding="utf-8")
    assert species.read_names(csv, 10) == {0: "Quercus ilex", 7: "Pinus halepensis"}
    plain = tmp_path / "plain.csv"
    plain.write_text("3;Thymus vulgaris\n", encoding="utf-8")
    assert species.read_names(plain, 10) == {3: "Thymus vulgaris"}
    card = presets.card("glc24", 10, species.read_names(csv, 10))
    assert (
        card["species"][0] == {"id": 0, "name": "Quercus ilex"} and card["species"][1]["name"] == "species 1"
    )
    for text, words in [
        ("speciesId,name\n10,Out of range\n", "outside the model's outputs 0..9"),
        ("speciesId,name\n1,a\n1,b\n", "given twice"),
        ("speciesId,name\nabc,a\n", "not a whole number"),
        ("taxon,label\n1,a\n", "needs the columns speciesId and name"),
    ]:
        bad = tmp_path / "bad.csv"
        bad.write_text(text, encoding="utf-8")
        with pytest.raises(ConversionError, match=words):
            species.read_names(bad, 10)


def test_presets_are_valid_cards():
    presets.check_table()
    for name, size in (("glc24", 128), ("glc25", 64)):
        card = ModelCard.from_dict(presets.card(name))
        shapes = {x.name: x.tensor_shape(1)[1:] for x in card.inputs}
        assert shapes == {"landsat": (6, 4, 21), "bioclim": (4, 19, 12), "sentinel": (4, size, size)}
        assert len(card.species) == SPECIES and card.output.activation == "sigmoid"
        bioclim = card.inputs[1]
        assert (
            bioclim.variables[:2] == ("pr_2000-01", "pr_2000-02")
            and bioclim.variables[-1] == "tasmin_2018-12"
        )
        assert card.inputs[0].variables[:2] == ("landsat_red_2000_q1", "landsat_red_2001_q1")
        assert all(x.fill == 0.0 for x in card.inputs)
        proposed = presets.proposed_card(name)
        assert proposed["inputs"][1]["name_template"] == "{variable}_{year}-{month:02d}"
        assert proposed["inputs"][2]["preprocess"][-1]["op"] == "normalise"

    def normalise(x):
        (step,) = [s for s in x.steps if s.op == "normalise"]
        return step.mean, step.std

    glc24 = ModelCard.from_dict(presets.card("glc24")).inputs
    assert normalise(glc24[0]) == ((30.071,), (24.86,))
    assert normalise(glc24[1]) == ((3884.726,), (2939.538,))
    assert normalise(glc24[2]) == ((78.761, 82.859, 71.288, 146.082), (26.074, 24.484, 23.275, 39.518))
    assert [s.op for s in glc24[2].steps] == ["fill_nan", "clip", "scale", "power", "scale", "normalise"]
    glc25 = ModelCard.from_dict(presets.card("glc25")).inputs
    assert normalise(glc25[2]) == ((629.624, 691.815, 460.605, 2959.37), (435.995, 371.396, 342.897, 925.369))
    legacy = ModelCard.from_dict(presets.legacy_card("glc24")).inputs
    assert legacy[0].mean == (30.071,) and legacy[1].variables == glc24[1].variables


# -- backends: our torch-only layers against torchvision / malpolon -----------------------


def test_torch_only_layers_equal_torchvision():
    backends = mme.available_backends()
    if "torchvision" not in backends:
        pytest.skip(
            "torchvision is not importable here (no build matches torch 2.13.0 CPU): the torch-only "
            "layers are compared with torchvision where it is installed (torch 2.14.1 + torchvision 0.29.1)"
        )
    torch.manual_seed(1)
    ours, _ = mme.build(40, "torch")
    for backend in [b for b in backends if b != "torch"]:
        theirs, _ = mme.build(40, backend)
        assert list(ours.state_dict()) == list(theirs.state_dict()), backend
        theirs.load_state_dict(ours.state_dict())
        ours.eval(), theirs.eval()
        for size in (64, 128):
            inputs = [torch.randn(3, 6, 4, 21), torch.randn(3, 4, 19, 12), torch.randn(3, 4, size, size)]
            with torch.no_grad():
                diff = (ours(*inputs) - theirs(*inputs)).abs().max().item()
            assert diff < 1e-4, (backend, size, diff)


# -- the full-size multimodal ensemble ----------------------------------------------------


@pytest.fixture(scope="module")
def full_size(tmp_path_factory):
    """A full-size MME with random weights (11,255 species) and its state dict on disk as a
    Lightning .ckpt and a plain .pth."""
    folder = tmp_path_factory.mktemp("mme")
    torch.manual_seed(2024)
    model, backend = mme.build(SPECIES, "auto")
    with torch.no_grad():  # non-trivial batch-norm statistics, so that they matter
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    model.eval()
    state = model.state_dict()
    ckpt = folder / "mme.ckpt"
    torch.save(
        {
            "epoch": 11,
            "global_step": 1234,
            "pytorch-lightning_version": "2.2.1",
            "state_dict": {f"model.{k}": v for k, v in state.items()},
            "hyper_parameters": {
                "num_classes": SPECIES,
                "lr": 0.00025,
                "model": {"model_name": "glc24_multimodal_ensemble"},
            },
        },
        ckpt,
    )
    pth = folder / "mme.pth"
    torch.save(state, pth)
    return model, ckpt, pth, folder


def _against_original(model, out, card, batches=(1, 3)):
    """|probability| differences between the written ONNX file and the original module."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    worst = 0.0
    for i, batch in enumerate(batches):
        arrays = random_inputs(card, batch, seed=100 + i)
        (got,) = session.run(None, {x.name: a for x, a in zip(card.inputs, arrays, strict=True)})
        with torch.no_grad():
            expected = model(*(torch.from_numpy(a) for a in arrays)).numpy()
        worst = max(
            worst,
            float(
                np.abs(
                    torch.sigmoid(torch.from_numpy(got)).numpy()
                    - torch.sigmoid(torch.from_numpy(expected)).numpy()
                ).max()
            ),
        )
    return worst


@pytest.mark.parametrize("preset, fmt", [("glc24", "ckpt"), ("glc25", "pth")])
def test_full_size_mme(full_size, capsys, preset, fmt):
    model, ckpt, pth, folder = full_size
    out = folder / f"mme_{preset}.onnx"
    args = [
        "malpolon",
        "--checkpoint",
        str(ckpt if fmt == "ckpt" else pth),
        "--preset",
        preset,
        "--output",
        str(out),
    ]
    if preset == "glc24":
        csv = folder / "species.csv"
        csv.write_text(
            "speciesId,name\n0,Abies alba\n11254,Zostera noltei\n5000,Quercus ilex\n", encoding="utf-8"
        )
        args += ["--species", str(csv), "--num-classes", str(SPECIES)]
    start = time.perf_counter()
    code = main(args)
    seconds = time.perf_counter() - start
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "max |ONNX - torch| probability" in captured.out
    card = read_model_card(out)
    assert len(card.species) == SPECIES and card.output.name == "logits"
    size = 128 if preset == "glc24" else 64
    assert card.inputs[2].size == size
    names = {s.id: s.name for s in card.species}
    if preset == "glc24":
        assert (names[0], names[5000], names[11254], names[1]) == (
            "Abies alba",
            "Quercus ilex",
            "Zostera noltei",
            "species 1",
        )
    else:
        assert names[0] == "species 0"
    worst = _against_original(model, out, card)
    with capsys.disabled():
        print(
            f"\n[convert] {preset} .{fmt}: {out.stat().st_size / 1e6:.0f} MB in {seconds:.0f} s; "
            f"max |ONNX - original torch| probability {worst:.2e}; "
            f"converter: {captured.out.strip().splitlines()[-2]}"
        )
    assert worst < 1e-4
