"""Find the plugin's runtime dependencies without touching QGIS's own packages.

``make install`` puts onnxruntime, onnx and protobuf (only what QGIS lacks) into
``<plugin folder>/_deps``. That folder is *appended* to ``sys.path``, so the numpy,
GDAL and Qt that QGIS was built against always win over anything in it.
"""

from __future__ import annotations

import importlib.util
import os
import sys

PLUGIN_DIR = os.path.dirname(os.path.abspath(__file__))
DEPS_DIR = os.path.join(PLUGIN_DIR, "_deps")

# module name -> (what it is for, how to install it on Debian/Ubuntu)
RUNTIME_DEPENDENCIES = {
    "numpy": ("arrays", "apt-get install python3-numpy"),
    "rasterio": ("raster reading and writing", "apt-get install python3-rasterio"),
    "pandas": ("CSV tables", "apt-get install python3-pandas"),
    # GDAL's own bindings (a QGIS dependency): WKB/WKT geometries, VRT mosaics.
    "osgeo": ("area geometries, patch mosaics", "apt-get install python3-gdal"),
    "onnxruntime": (
        "running models",
        "make install (from the source tree), or "
        "/usr/bin/python3 -m pip install --user 'onnxruntime==1.32.0' 'numpy<2'",
    ),
    # the model's graph with its normalisation and post-processing (core/postprocess.py);
    # onnx 1.17: the last release working with numpy < 2
    "onnx": (
        "building the model's graph",
        "make install (from the source tree), or "
        "/usr/bin/python3 -m pip install --user 'onnx==1.17.0' 'protobuf==7.36.2' 'numpy<2'",
    ),
    # onnx's message library (not in QGIS's Python): a separate entry, as onnx is found
    # without importing it
    "google.protobuf": (
        "ONNX graphs (needed by onnx)",
        "make install (from the source tree), or /usr/bin/python3 -m pip install --user 'protobuf==7.36.2'",
    ),
}

#: what running a model needs (predict, evaluate with a MODEL, the panel's runs)
MODEL_RUN_DEPENDENCIES = ("onnxruntime", "onnx", "google.protobuf")


def add_bundled_dependencies() -> None:
    """Append the plugin's private dependency folder to sys.path (idempotent)."""
    if os.path.isdir(DEPS_DIR) and DEPS_DIR not in sys.path:
        sys.path.append(DEPS_DIR)


def is_available(module: str) -> bool:
    add_bundled_dependencies()
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_dependencies(modules=None) -> list[str]:
    """Names of the runtime modules that cannot be imported."""
    modules = modules or RUNTIME_DEPENDENCIES
    return [m for m in modules if not is_available(m)]


def check_model_run_dependencies() -> None:
    """MissingDependencyError, with what to install, when running a MODEL cannot work."""
    missing = missing_dependencies(MODEL_RUN_DEPENDENCIES)
    if missing:
        from .core.errors import MissingDependencyError

        raise MissingDependencyError("Running a MODEL needs onnxruntime and onnx. " + install_hint(missing))


def install_hint(modules) -> str:
    """A plain-words sentence telling the user what to install."""
    parts = []
    for m in modules:
        purpose, how = RUNTIME_DEPENDENCIES.get(m, ("", f"pip install {m}"))
        parts.append(f"{m} ({purpose}): {how}")
    return "Missing Python packages. Install " + "; ".join(parts) + ". Then restart QGIS."
