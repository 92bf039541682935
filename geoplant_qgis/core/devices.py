"""The devices a model can run on: names a user gives ("auto", "cpu", "cuda", ...) and
onnxruntime's execution providers behind them, with how to install each.

Pure Python (no onnxruntime, no numpy): Processing and the dock read the names when the
plugin loads. The sessions themselves: :class:`core.predict.model.Execution`.
"""

from __future__ import annotations

from typing import Any

from .errors import InputDataError

CPU_PROVIDER = "CPUExecutionProvider"
#: the ``device`` names a run accepts -> onnxruntime's execution provider ("auto": see
#: :meth:`core.predict.model.Execution.resolve`)
DEVICES: dict[str, str | None] = {
    "auto": None,
    "cpu": CPU_PROVIDER,
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "migraphx": "MIGraphXExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
    "directml": "DmlExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
}
DEVICE_NAMES: tuple[str, ...] = tuple(DEVICES)
DEFAULT_DEVICE = "auto"
#: the accelerators "auto" takes, in this order, when the installed onnxruntime offers them
#: (not TensorRT, whose engine build takes minutes, nor OpenVINO, a CPU runtime by default)
AUTO_PROVIDERS: tuple[str, ...] = (
    "CUDAExecutionProvider",
    "ROCMExecutionProvider",
    "MIGraphXExecutionProvider",
    "DmlExecutionProvider",
    "CoreMLExecutionProvider",
)
#: how to get each provider, said when it is missing or fails
INSTALL_HINTS: dict[str, str] = {
    "CUDAExecutionProvider": (
        "install onnxruntime-gpu of the same version in place of onnxruntime (pip uninstall onnxruntime; "
        "pip install onnxruntime-gpu==<version>, into QGIS's Python or the plugin's _deps folder), with an "
        "NVIDIA driver, CUDA 12 and cuDNN 9 (see the README's GPU section)"
    ),
    "TensorrtExecutionProvider": (
        "install onnxruntime-gpu in place of onnxruntime, with CUDA 12, cuDNN 9 and TensorRT 10 "
        "(see the README's GPU section)"
    ),
    "ROCMExecutionProvider": "install onnxruntime-rocm (AMD ROCm) in place of onnxruntime",
    "MIGraphXExecutionProvider": "install onnxruntime-migraphx (AMD ROCm) in place of onnxruntime",
    "OpenVINOExecutionProvider": "install onnxruntime-openvino in place of onnxruntime",
    "DmlExecutionProvider": "install onnxruntime-directml (Windows, DirectX 12) in place of onnxruntime",
    "CoreMLExecutionProvider": "use the standard onnxruntime wheel on macOS",
}


def check_device(device: Any) -> str:
    """``device`` as one of :data:`DEVICE_NAMES` (case and spaces ignored; an onnxruntime
    provider name such as "CUDAExecutionProvider" also works), or InputDataError listing them."""
    text = "" if device is None else str(device).strip()
    if not text:
        return DEFAULT_DEVICE
    key = text.lower()
    if key in DEVICES:
        return key
    for name, provider in DEVICES.items():
        if provider is not None and provider.lower() == key:
            return name
    raise InputDataError(
        f"Unknown device '{text}'. Choose one of: {', '.join(DEVICE_NAMES)} "
        "(auto: a GPU when the installed onnxruntime offers one, else the CPU)."
    )
