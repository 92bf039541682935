"""``python -m geoplant_qgis``: the command line (:mod:`geoplant_qgis.cli`), without QGIS."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main(prog="python -m geoplant_qgis"))
