"""PyTorch checkpoints read without running any code from them.

``torch.load(..., weights_only=True)`` unpickles tensors, plain containers and numbers
only; a pickle that names any other callable (``os.system``, a class of some library) is
refused before anything is called. Lightning ``.ckpt`` files hold the weights under
``state_dict`` (keys prefixed ``model.``) beside ``hyper_parameters``; ``.pth`` files from
``torch.save(model.state_dict())`` are the state dict itself.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from .errors import ConversionError

#: prefixes stripped when every key has them: Lightning's ``model.`` (a LightningModule
#: holding the network as ``self.model``), DataParallel's ``module.``
PREFIXES = ("model.", "module.")


@dataclass
class Checkpoint:
    path: str
    state_dict: dict
    #: Lightning's hyper_parameters when the file has them (plain values only), else {}
    hyper_parameters: dict = field(default_factory=dict)
    #: "lightning" (a dict with state_dict) or "state_dict" (a plain .pth)
    layout: str = "state_dict"
    #: the prefix removed from every key ("" when none)
    prefix: str = ""


def _refused_global(error: Exception) -> str | None:
    match = re.search(r"GLOBAL ([\w.]+)", str(error)) or re.search(r"global[: ]+'?([\w.]+)", str(error))
    return match.group(1) if match else None


def load(path) -> Checkpoint:
    """The weights of a ``.ckpt`` or ``.pth`` file; :class:`ConversionError` in words for
    a missing file, a file that is not a PyTorch checkpoint, or one that asks for code."""
    import torch

    path = os.fspath(path)
    name = os.path.basename(path)
    if not os.path.isfile(path):
        raise ConversionError(f"Checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        what = _refused_global(error)
        raise ConversionError(
            f"'{name}' was refused: the checkpoint asks to run code while loading"
            + (f" ('{what}')" if what else "")
            + ", and the converter loads only weights (torch.load with weights_only=True). "
            "A GeoPlant checkpoint holds tensors and plain values. If you trust this file and its "
            "author, re-save only its weights in a trusted Python session "
            "(torch.save(checkpoint['state_dict'], 'weights.pth')) and convert that file."
        ) from None
    except Exception as error:  # noqa: BLE001 - torch raises many types for a file it cannot read
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ConversionError(
            f"'{name}' is not a PyTorch checkpoint torch.load can read: {first[:300]}"
        ) from None
    return _weights(obj, path)


def _is_tensor_map(obj) -> bool:
    import torch

    return isinstance(obj, Mapping) and bool(obj) and all(isinstance(v, torch.Tensor) for v in obj.values())


def _weights(obj, path: str) -> Checkpoint:
    name = os.path.basename(path)
    hyper: dict = {}
    layout = "state_dict"
    if isinstance(obj, Mapping) and "state_dict" in obj and _is_tensor_map(obj["state_dict"]):
        layout = "lightning" if "hyper_parameters" in obj or "pytorch-lightning_version" in obj else "wrapped"
        hyper = (
            dict(obj.get("hyper_parameters") or {})
            if isinstance(obj.get("hyper_parameters"), Mapping)
            else {}
        )
        state = obj["state_dict"]
    elif _is_tensor_map(obj):
        state = obj
    else:
        found = sorted(map(str, obj))[:8] if isinstance(obj, Mapping) else type(obj).__name__
        raise ConversionError(
            f"'{name}' holds no model weights: expected a state dict (parameter name -> tensor) or a "
            f"Lightning checkpoint with a 'state_dict', found {found}."
        )
    state = {str(k): v for k, v in state.items()}
    prefix = ""
    for candidate in PREFIXES:
        if all(k.startswith(candidate) for k in state):
            prefix = candidate
            state = {k[len(candidate) :]: v for k, v in state.items()}
            break
    return Checkpoint(path=path, state_dict=state, hyper_parameters=hyper, layout=layout, prefix=prefix)
