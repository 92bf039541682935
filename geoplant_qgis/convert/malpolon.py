"""GeoPlant's multimodal ensemble (malpolon's ``glc24_multimodal_ensemble``, the "MME").

``forward(landsat [B,6,4,21], bioclim [B,4,19,12], sentinel [B,4,H,W])``: each cube goes
through a ``LayerNorm`` over the whole cube and a ResNet-18 whose first convolution is 3x3,
stride 1, and whose max-pool is removed, then a ``LayerNorm(1000)``; Sentinel-2 through a
Swin-T with a 4-channel patch embedding and no head (768 features); the three concatenated
(2768) into ``fc1`` (4096), dropout, ``fc2`` (one logit per species).

:func:`build` makes the network from, in this order of preference: malpolon's own class
(when malpolon imports), torchvision's ``resnet18``/``swin_t`` (when torchvision imports),
or :mod:`.layers` (torch alone). All three have the same parameter names, so one state dict
fits each. :func:`load_weights` checks a state dict against the network key by key and
refuses, in words, one made for another architecture.
"""

from __future__ import annotations

import contextlib
import types

import torch
from torch import nn

from .errors import ConversionError

INPUT_NAMES = ("landsat", "bioclim", "sentinel")
OUTPUT_NAME = "logits"
NUM_CLASSES = 11255
BACKENDS = ("malpolon", "torchvision", "torch")
#: buffers a checkpoint may lack: computed by the constructor, not learned
DERIVED = ("relative_position_index", "num_batches_tracked")
#: (key, expected shape without the classes axis) that identify the MME
SIGNATURE = {
    "landsat_model.conv1.weight": (64, 6, 3, 3),
    "bioclim_model.conv1.weight": (64, 4, 3, 3),
    "sentinel_model.features.0.0.weight": (96, 4, 4, 4),
    "fc1.weight": (4096, 2768),
}


class MultimodalEnsemble(nn.Module):
    """The MME on given backbones: ``resnet()`` and ``swin()`` make torchvision-style
    ResNet-18 and Swin-T modules (1000 classes, 3 input channels) that are then adapted."""

    def __init__(self, num_classes: int, resnet, swin):
        super().__init__()
        self.landsat_model = resnet()
        self.landsat_norm = nn.LayerNorm([6, 4, 21])
        self.landsat_model.conv1 = nn.Conv2d(6, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.landsat_model.maxpool = nn.Identity()
        self.bioclim_model = resnet()
        self.bioclim_norm = nn.LayerNorm([4, 19, 12])
        self.bioclim_model.conv1 = nn.Conv2d(4, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.bioclim_model.maxpool = nn.Identity()
        self.sentinel_model = swin()
        self.sentinel_model.features[0][0] = nn.Conv2d(4, 96, kernel_size=(4, 4), stride=(4, 4))
        self.sentinel_model.head = nn.Identity()
        self.ln1 = nn.LayerNorm(1000)
        self.ln2 = nn.LayerNorm(1000)
        self.fc1 = nn.Linear(2768, 4096)
        self.fc2 = nn.Linear(4096, num_classes)
        self.dropout = nn.Dropout(p=0.1)

    def forward(self, landsat, bioclim, sentinel):
        x = self.ln1(self.landsat_model(self.landsat_norm(landsat)))
        y = self.ln2(self.bioclim_model(self.bioclim_norm(bioclim)))
        z = self.sentinel_model(sentinel)
        return self.fc2(self.dropout(self.fc1(torch.cat((x, y, z), dim=1))))


def _torchvision():
    """torchvision's model constructors, or None when torchvision cannot be imported (a
    build made for another torch fails with RuntimeError, not ImportError)."""
    try:
        from torchvision import models
    except Exception:  # noqa: BLE001 - any failure means "not usable here"
        return None
    return models


def _malpolon_module():
    try:
        from malpolon.models.custom_models import glc2024_multimodal_ensemble_model as module
    except Exception:  # noqa: BLE001
        return None
    return module


@contextlib.contextmanager
def _no_download(module, models):
    """malpolon's constructor asks torchvision for ImageNet Swin-T weights (a download);
    the checkpoint replaces every weight anyway, so build it without them."""
    shim = types.SimpleNamespace(
        resnet18=lambda **kw: models.resnet18(weights=None),
        swin_t=lambda **kw: models.swin_t(weights=None),
    )
    original = module.models
    module.models = shim
    try:
        yield
    finally:
        module.models = original


def available_backends() -> list[str]:
    found = []
    if _malpolon_module() is not None and _torchvision() is not None:
        found.append("malpolon")
    if _torchvision() is not None:
        found.append("torchvision")
    found.append("torch")
    return found


def build(num_classes: int = NUM_CLASSES, backend: str = "auto") -> tuple[nn.Module, str]:
    """An MME with ``num_classes`` outputs (random weights) and the backend that made it."""
    if backend not in ("auto", *BACKENDS):
        raise ConversionError(f"Unknown backend '{backend}': use auto, {', '.join(BACKENDS)}.")
    found = available_backends()
    if backend == "auto":
        backend = found[0]
    elif backend not in found:
        raise ConversionError(
            f"The '{backend}' backend is not importable here (available: {', '.join(found)})."
        )
    if backend == "malpolon":
        module, models = _malpolon_module(), _torchvision()
        with _no_download(module, models):
            return module.MultimodalEnsemble(num_classes=num_classes, pretrained=False), backend
    if backend == "torchvision":
        models = _torchvision()
        return (
            MultimodalEnsemble(
                num_classes, lambda: models.resnet18(weights=None), lambda: models.swin_t(weights=None)
            ),
            backend,
        )
    from .layers import ResNet18, SwinT

    return MultimodalEnsemble(num_classes, ResNet18, SwinT), backend


def num_classes_of(state: dict) -> int:
    """The number of species a state dict predicts (rows of ``fc2.weight``), after
    :func:`check_architecture`."""
    return int(state["fc2.weight"].shape[0])


def check_architecture(state: dict, source: str = "the checkpoint") -> None:
    """Refuse, in words, a state dict that is not the MME's (before building anything)."""
    if "fc3.weight" in state and "fc2.weight" in state:
        raise ConversionError(
            f"{source} looks like malpolon's modality-specific ensemble (it has fc3), which runs one "
            "modality at a time: the converter supports the multimodal ensemble "
            "(glc24_multimodal_ensemble) only."
        )
    missing = [k for k in (*SIGNATURE, "fc2.weight", "fc2.bias") if k not in state]
    if missing:
        sample = ", ".join(sorted(state)[:5]) or "none"
        raise ConversionError(
            f"{source} is not a GeoPlant multimodal ensemble (MME) checkpoint: it lacks "
            f"{', '.join(missing[:4])}{' and more' if len(missing) > 4 else ''} "
            f"({len(state)} parameters, e.g. {sample}). The converter reads malpolon's "
            "glc24_multimodal_ensemble (landsat_model, bioclim_model, sentinel_model, fc1, fc2)."
        )
    wrong = [
        f"{k} is {list(state[k].shape)}, the MME has {list(shape)}"
        for k, shape in SIGNATURE.items()
        if tuple(state[k].shape) != shape
    ]
    if state["fc2.weight"].ndim != 2 or state["fc2.weight"].shape[1] != 4096:
        wrong.append(f"fc2.weight is {list(state['fc2.weight'].shape)}, the MME has [classes, 4096]")
    if wrong:
        raise ConversionError(f"{source} does not fit the multimodal ensemble: " + "; ".join(wrong) + ".")


def load_weights(model: nn.Module, state: dict, source: str = "the checkpoint") -> None:
    """Copy ``state`` into ``model``: every key and shape must match (buffers the
    constructor computes may be absent)."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith(DERIVED)]
    unexpected = [k for k in state if k not in expected]
    mismatched = [
        f"{k} {list(state[k].shape)} vs {list(v.shape)}"
        for k, v in expected.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    problems = []
    if missing:
        problems.append(
            f"{len(missing)} missing ({', '.join(missing[:4])}{', ...' if len(missing) > 4 else ''})"
        )
    if unexpected:
        problems.append(
            f"{len(unexpected)} unexpected "
            f"({', '.join(unexpected[:4])}{', ...' if len(unexpected) > 4 else ''})"
        )
    if mismatched:
        problems.append(f"{len(mismatched)} of another shape ({'; '.join(mismatched[:3])})")
    if problems:
        raise ConversionError(
            f"The weights of {source} do not fit the multimodal ensemble: " + ", ".join(problems) + "."
        )
    model.load_state_dict(state, strict=False)
