"""Shared fixtures. QGIS runs headless; pytest-qgis owns the one QgsApplication.

Nothing here imports qgis: the tests marked `core` run with plain pytest where QGIS and
pytest-qgis are absent (`make test-core`). There the tests that ask for a QGIS fixture are
skipped, and so are the modules that import qgis, each with the reason.
"""

import os
import re
import sys
from pathlib import Path

# Must be set before pytest-qgis creates the QgsApplication.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

ROOT = Path(__file__).resolve().parents[1]
# The real GeoPlant samples sit beside the clone (CI lays shared/ there); GEOPLANT_SAMPLES overrides.
SAMPLES = Path(os.environ.get("GEOPLANT_SAMPLES", ROOT.parent / "shared" / "data" / "geoplant-samples"))
# GEOPLANT_REQUIRE_SAMPLES=1 (set by .ci/run) makes missing samples a failure instead of a skip.
REQUIRE_SAMPLES = os.environ.get("GEOPLANT_REQUIRE_SAMPLES", "") not in ("", "0")
SAMPLES_HELP = (
    f"GeoPlant samples not found at {SAMPLES}. They are small real GeoPlant / GeoLifeCLEF files "
    "(glc24/, glc25/, rasters/; from the public test fixtures of plantnet/malpolon, MIT), never "
    "copied into this repository: put that folder at ../shared/data/geoplant-samples beside the "
    "clone, or set GEOPLANT_SAMPLES=/path/to/geoplant-samples (see README, 'Data and attribution')"
)
PROCESSING_PLUGINS = "/usr/share/qgis/python/plugins"
if PROCESSING_PLUGINS not in sys.path:
    sys.path.append(PROCESSING_PLUGINS)
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
if str(ROOT / "tools") not in sys.path:  # tests import tools' modules (make_world, install_plugin)
    sys.path.insert(0, str(ROOT / "tools"))

import pytest  # noqa: E402

# pytest-qgis's fixtures, and ours built on them: a test asking for one needs QGIS.
QGIS_FIXTURES = {
    "qgis_app",
    "qgis_version",
    "qgis_iface",
    "qgis_canvas",
    "qgis_parent",
    "qgis_processing",
    "qgis_new_project",
    "qgis_bot",
    "qgis_show_map",
    "qgis_world_map_geopackage",
    "qgis_countries_layer",
    "geoplant_provider",
}
QGIS_MODULE = re.compile(r"No module named '((?:qgis|PyQt5|PyQt6|sip|processing)\b[\w.]*)'")


def _requested_fixtures(item):
    """The fixtures a test asks for, directly or through other fixtures (not pytest-qgis's autouse ones)."""
    info = getattr(item, "_fixtureinfo", None)
    if info is None:
        return set()
    todo = list(info.argnames)
    for mark in item.iter_markers("usefixtures"):
        todo.extend(mark.args)
    seen = set()
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for fixturedef in info.name2fixturedefs.get(name, ())[-1:]:
            todo.extend(fixturedef.argnames)
    return seen


@pytest.hookimpl(tryfirst=True)  # before -m selects by marker
def pytest_collection_modifyitems(config, items):
    """`pytestmark = pytest.mark.core` on a module marks its tests that ask for no QGIS fixture.

    Modules mix core tests with a few through Processing; those ask for `geoplant_provider` or a
    pytest-qgis fixture, so the marker moves from the module to each test that needs no QGIS.
    Where pytest-qgis is absent, the tests that ask for its fixtures are skipped, with the reason.
    """
    core_modules = set()
    for item in items:
        module = item.getparent(pytest.Module)
        if module is not None and any(mark.name == "core" for mark in module.own_markers):
            core_modules.add(module)
    for module in core_modules:
        module.own_markers[:] = [mark for mark in module.own_markers if mark.name != "core"]
    has_qgis = config.pluginmanager.hasplugin("pytest_qgis")
    skip = pytest.mark.skip(
        reason="needs QGIS: pytest-qgis (and its qgis_app, qgis_iface... fixtures) is absent"
    )
    for item in items:
        needs_qgis = bool(QGIS_FIXTURES & _requested_fixtures(item))
        if item.getparent(pytest.Module) in core_modules and not needs_qgis:
            item.add_marker(pytest.mark.core)
        if needs_qgis and not has_qgis:
            item.add_marker(skip)


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector):
    """A test module that imports qgis is skipped, not an error, where QGIS is not installed."""
    report = yield
    if report.failed and isinstance(collector, pytest.Module):
        found = QGIS_MODULE.search(str(report.longrepr))
        if found:
            report.outcome = "skipped"
            report.longrepr = (
                str(collector.path),
                0,
                f"needs QGIS: imports {found.group(1)}, not installed here",
            )
    return report


@pytest.fixture(scope="session")
def samples_dir():
    """The real GeoPlant sample files (read-only, never copied into the repo)."""
    if not SAMPLES.is_dir():
        if REQUIRE_SAMPLES:
            pytest.fail(
                f"{SAMPLES_HELP}. GEOPLANT_REQUIRE_SAMPLES is set: they must be there.", pytrace=False
            )
        pytest.skip(SAMPLES_HELP)
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
