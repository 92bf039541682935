"""DEVICE: where an algorithm's model runs (auto, cpu, cuda, ...; ``core.devices``).

An enum with static strings, so ``DEVICE=cpu`` works on the ``qgis_process`` command line
(an index, as older scripts pass enums, works too). Imports nothing heavy.
"""

from __future__ import annotations

from qgis.core import QgsProcessingException, QgsProcessingParameterDefinition, QgsProcessingParameterEnum

from ..core.devices import DEFAULT_DEVICE, DEVICE_NAMES, check_device
from ..core.errors import GeoPlantError


def help_text() -> str:
    """The DEVICE paragraph of an algorithm's HELP."""
    return (
        f"DEVICE (advanced, default {DEFAULT_DEVICE}): where the model runs: {', '.join(DEVICE_NAMES)}. "
        "auto takes a GPU when the installed onnxruntime offers one (CUDA first), else the CPU. A device "
        "that is not installed or fails to start falls back to the CPU with a warning saying how to "
        "install it (CUDA: onnxruntime-gpu with CUDA 12 and cuDNN 9); the log names the provider that ran."
    )


def add_device(alg) -> None:
    """The advanced DEVICE parameter."""
    parameter = QgsProcessingParameterEnum(
        "DEVICE",
        alg.tr("Device (where the model runs)"),
        options=list(DEVICE_NAMES),
        allowMultiple=False,
        defaultValue=DEFAULT_DEVICE,
        optional=True,
        usesStaticStrings=True,
    )
    parameter.setFlags(parameter.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
    alg.addParameter(parameter)


def read_device(alg, parameters, context, name: str = "DEVICE") -> str:
    """DEVICE's name: given by name (``DEVICE=cuda``) or by index; default auto."""
    value = parameters.get(name)
    if value is None or (isinstance(value, str) and not value.strip()):
        return DEFAULT_DEVICE
    if isinstance(value, int) or (isinstance(value, str) and value.strip().isdigit()):
        index = int(value)
        if 0 <= index < len(DEVICE_NAMES):
            return DEVICE_NAMES[index]
        raise QgsProcessingException(
            f"{name} {value} is not a device; give one of {', '.join(DEVICE_NAMES)}."
        )
    try:
        return check_device(value)
    except GeoPlantError as error:
        raise QgsProcessingException(str(error)) from None
