"""DEVICE: execution providers resolved against the installed onnxruntime, with the CPU
fallback (a missing, failing or silently dropped provider: a warning, never a crash) and the
provider that ran said once per run. This machine has no GPU: every accelerator falls back."""

from __future__ import annotations

import numpy as np
import onnxruntime
import pytest
import rasterio
import test_engine
from test_engine import EXTENT, POINT_INPUT, B, W, make_model

from geoplant_qgis.core import engine
from geoplant_qgis.core.devices import DEVICE_NAMES, check_device
from geoplant_qgis.core.errors import InputDataError
from geoplant_qgis.core.predict import Extent, PredictRequest
from geoplant_qgis.core.predict.model import Execution, LoadedModel
from geoplant_qgis.core.progress import Progress

pytestmark = pytest.mark.core
climate = test_engine.climate
CUDA = "CUDAExecutionProvider"


class Recorder(Progress):
    def __init__(self):
        self.infos: list[str] = []
        self.warnings: list[str] = []

    def info(self, message):
        self.infos.append(message)

    def warning(self, message):
        self.warnings.append(message)

    def provider_lines(self):
        return [m for m in self.infos if m.startswith("Execution provider:")]


def predict(model, climate, path, device, progress):
    engine.predict(
        model,
        climate,
        extent=EXTENT,
        extent_crs="EPSG:3035",
        cell_size=1000,
        top_k=3,
        output_richness=str(path / f"{device}_r.tif"),
        output_probabilities=str(path / f"{device}_p.tif"),
        progress=progress,
        device=device,
    )
    out = []
    for kind in ("r", "p"):
        with rasterio.open(path / f"{device}_{kind}.tif") as src:
            out.append(src.read())
    return out


@pytest.fixture
def model(tmp_path):
    return make_model(tmp_path / "m.onnx", [POINT_INPUT], W, B)


def test_auto_runs_on_the_cpu_here_and_says_so_once(tmp_path, climate, model):
    assert CUDA not in onnxruntime.get_available_providers(), "this test expects a machine without CUDA"
    progress = Recorder()
    predict(model, climate, tmp_path, "auto", progress)
    assert progress.provider_lines() == [
        "Execution provider: CPUExecutionProvider (device auto: the installed onnxruntime offers no GPU "
        "provider)."
    ]
    assert progress.warnings == []


def test_cuda_missing_falls_back_to_the_cpu_with_a_warning_and_the_same_values(tmp_path, climate, model):
    cpu = Recorder()
    expected = predict(model, climate, tmp_path, "cpu", cpu)
    assert cpu.provider_lines() == ["Execution provider: CPUExecutionProvider (device cpu)."]
    progress = Recorder()
    got = predict(model, climate, tmp_path, "cuda", progress)
    assert len(progress.warnings) == 1  # once per run, not once per worker session
    warning = progress.warnings[0]
    assert "CUDAExecutionProvider" in warning and "not available" in warning and "CPU instead" in warning
    assert "onnxruntime-gpu" in warning and "CUDA 12" in warning and "cuDNN 9" in warning
    assert progress.provider_lines() == ["Execution provider: CPUExecutionProvider (device cuda)."]
    for a, b in zip(expected, got, strict=True):
        np.testing.assert_array_equal(a, b)


def offer_cuda(monkeypatch, fail: bool):
    """onnxruntime pretending to offer CUDA; its sessions on CUDA raise (``fail``) or come
    back on the CPU only (the real onnxruntime drops a provider it cannot load)."""
    real = onnxruntime.InferenceSession
    asked = []

    def session(model, options=None, providers=None, **kwargs):
        asked.append(list(providers or []))
        if fail and providers and providers[0] == CUDA:
            raise RuntimeError(
                "[ONNXRuntimeError] : 1 : FAIL : libcudnn.so.9: cannot open shared object file"
            )
        return real(model, options, providers=[p for p in providers or [] if p != CUDA] or None, **kwargs)

    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: [CUDA, "CPUExecutionProvider"])
    monkeypatch.setattr(onnxruntime, "InferenceSession", session)
    return asked


@pytest.mark.parametrize("device", ["cuda", "auto"])
def test_a_provider_whose_session_fails_falls_back_with_a_warning(
    tmp_path, climate, model, monkeypatch, device
):
    expected = predict(model, climate, tmp_path, "cpu", Recorder())
    asked = offer_cuda(monkeypatch, fail=True)
    progress = Recorder()
    got = predict(model, climate, tmp_path, device, progress)
    assert len(progress.warnings) == 1
    warning = progress.warnings[0]
    assert f"Device '{device}': CUDAExecutionProvider failed to start" in warning
    assert "libcudnn.so.9" in warning and "CPU instead" in warning and "onnxruntime-gpu" in warning
    assert progress.provider_lines() == [f"Execution provider: CPUExecutionProvider (device {device})."]
    # CUDA tried once; every other session of the run went straight to the CPU
    first = [p[0] for p in asked].index(CUDA)
    assert all(p == ["CPUExecutionProvider"] for p in asked[first + 1 :]) and len(asked) > first + 1, asked
    for a, b in zip(expected, got, strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_provider_onnxruntime_drops_falls_back_with_a_warning(tmp_path, climate, model, monkeypatch):
    offer_cuda(monkeypatch, fail=False)
    progress = Recorder()
    predict(model, climate, tmp_path, "cuda", progress)
    assert len(progress.warnings) == 1
    assert "CUDAExecutionProvider could not be started by onnxruntime" in progress.warnings[0]
    assert progress.provider_lines() == ["Execution provider: CPUExecutionProvider (device cuda)."]


def test_an_offered_accelerator_is_taken_by_auto(monkeypatch):
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: [CUDA, "CPUExecutionProvider"])
    assert Execution("auto").resolve(onnxruntime) == [CUDA, "CPUExecutionProvider"]
    assert Execution("cpu").resolve(onnxruntime) == ["CPUExecutionProvider"]
    assert Execution("openvino").resolve(onnxruntime) == ["CPUExecutionProvider"]


def test_unknown_device_refused_in_plain_words(tmp_path, climate, model):
    with pytest.raises(InputDataError) as caught:
        PredictRequest.build(
            model,
            climate,
            extent=Extent(*EXTENT, "EPSG:3035"),
            cell_size=1000,
            outputs={"richness": str(tmp_path / "r.tif")},
            device="gpu",
        )
    message = str(caught.value)
    assert message.startswith("Unknown device 'gpu'. Choose one of: auto, cpu, cuda,")
    assert all(name in message for name in DEVICE_NAMES)
    assert not (tmp_path / "r.tif").exists()
    with pytest.raises(InputDataError, match="Unknown device 'tpu'"):
        LoadedModel(model, device="tpu")
    with pytest.raises(InputDataError, match="Unknown device"):
        engine.predict_points(model, climate, [3_805_000.0], [2_295_000.0], "EPSG:3035", device="tpu")
    # names are taken whatever their case, and onnxruntime's provider names too
    assert check_device(" CUDA ") == "cuda" and check_device("DmlExecutionProvider") == "directml"
    assert check_device(None) == "auto"


def test_points_take_the_device_too(climate, model):
    xs, ys = [3_805_000.0, 3_810_000.0], [2_295_000.0, 2_297_000.0]
    expected = engine.predict_points(model, climate, xs, ys, "EPSG:3035", device="cpu")
    progress = Recorder()
    got = engine.predict_points(model, climate, xs, ys, "EPSG:3035", device="cuda", progress=progress)
    np.testing.assert_array_equal(expected, got)
    assert len(progress.warnings) == 1 and "CUDAExecutionProvider" in progress.warnings[0]
    assert progress.provider_lines() == ["Execution provider: CPUExecutionProvider (device cuda)."]


# --- Processing -------------------------------------------------------------------------


@pytest.mark.parametrize("alg_id", ["geoplant:predict", "geoplant:evaluate", "geoplant:areareport"])
def test_device_parameter_takes_names(geoplant_provider, alg_id):
    from qgis.core import QgsApplication, QgsProcessingParameterDefinition

    alg = QgsApplication.processingRegistry().algorithmById(alg_id)
    parameter = alg.parameterDefinition("DEVICE")
    assert parameter is not None and parameter.usesStaticStrings()
    assert parameter.options() == list(DEVICE_NAMES) and parameter.defaultValue() == "auto"
    assert parameter.flags() & QgsProcessingParameterDefinition.FlagAdvanced
    assert "onnxruntime-gpu" in alg.shortHelpString()


@pytest.mark.qgis_process
def test_qgis_process_takes_device_by_name(tmp_path, climate, model, tmp_path_factory):
    from support import install_into, qgis_process

    profile = tmp_path_factory.mktemp("profile-device")
    install_into(profile, with_dependencies=True)
    xmin, ymin, xmax, ymax = EXTENT
    out = tmp_path / "r.tif"
    done = qgis_process(
        profile, "run", "geoplant:predict", "--", f"MODEL={model}",
        *(f"RASTERS={p}" for p in climate), f"EXTENT={xmin!r},{xmax!r},{ymin!r},{ymax!r} [EPSG:3035]",
        "CELL_SIZE=1000", "TOP_K=0", f"OUTPUT_RICHNESS={out}", "DEVICE=cpu",
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Execution provider: CPUExecutionProvider (device cpu)." in done.stdout + done.stderr
    expected = predict(model, climate, tmp_path, "cpu", Recorder())[0]
    with rasterio.open(out) as src:
        np.testing.assert_array_equal(src.read(), expected)
    done = qgis_process(profile, "run", "geoplant:predict", "--", f"MODEL={model}", "DEVICE=gpu")
    assert done.returncode != 0
