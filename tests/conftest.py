"""Shared fixtures. QGIS runs headless; pytest-qgis owns the one QgsApplication."""

import os
import sys
from pathlib import Path

# Must be set before pytest-qgis creates the QgsApplication.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

ROOT = Path(__file__).resolve().parents[1]
# The real GeoPlant samples sit beside the clone (CI lays shared/ there); GEOPLANT_SAMPLES overrides.
SAMPLES = Path(os.environ.get("GEOPLANT_SAMPLES", ROOT.parent / "shared" / "data" / "geoplant-samples"))
PROCESSING_PLUGINS = "/usr/share/qgis/python/plugins"
if PROCESSING_PLUGINS not in sys.path:
    sys.path.append(PROCESSING_PLUGINS)
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
if str(ROOT / "tools") not in sys.path:  # tests import tools' modules (make_world, install_plugin)
    sys.path.insert(0, str(ROOT / "tools"))

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def samples_dir():
    """The real GeoPlant sample files (read-only, never copied into the repo)."""
    if not SAMPLES.is_dir():
        pytest.fail(f"GeoPlant samples not found at {SAMPLES}: set GEOPLANT_SAMPLES to their folder")
    return SAMPLES


@pytest.fixture(scope="session")
def geoplant_provider(qgis_app, qgis_processing):
    """The GeoPlant provider registered in the running QGIS, removed at the end."""
    from qgis.core import QgsApplication

    from geoplant_qgis.processing.provider import GeoPlantProvider

    registry = QgsApplication.processingRegistry()
    existing = registry.providerById("geoplant")
    if existing is not None:
        yield existing
        return
    provider = GeoPlantProvider()
    registry.addProvider(provider)
    yield provider
    registry.removeProvider(provider)
