"""Makes QGIS absent from one Python environment: `make test-core` installs this file with a
.pth line into .venv-core, a venv that still sees Debian's numpy, rasterio, pandas and GDAL.

Importing qgis, PyQt5/PyQt6, sip, QGIS's `processing` plugin or pytest-qgis then fails exactly
as on a machine without QGIS (ModuleNotFoundError), so `pytest -m core` there proves that the
core tests need none of them.
"""

import importlib.abc
import sys

BLOCKED = ("qgis", "PyQt5", "PyQt6", "sip", "processing", "pytest_qgis")


class _NoQgis(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {fullname!r} (blocked: no QGIS here)", name=fullname)
        return None


if not any(isinstance(finder, _NoQgis) for finder in sys.meta_path):
    sys.meta_path.insert(0, _NoQgis())
