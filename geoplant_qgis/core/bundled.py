"""Files shipped inside the plugin."""

from __future__ import annotations

import os

MODELS_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "models")
DEFAULT_MODEL_NAME = "geoplant_demo.onnx"


def default_model_path() -> str | None:
    """The bundled demo model (default model of the dock and of geoplant:predict), if present."""
    path = os.path.join(MODELS_DIR, DEFAULT_MODEL_NAME)
    return path if os.path.exists(path) else None
