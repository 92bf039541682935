"""``python -m geoplant_qgis.convert``: see :mod:`geoplant_qgis.convert.cli`."""

import sys

from .cli import main

sys.exit(main())
