"""The command line: ``python -m geoplant_qgis <command>`` or, after ``pip install .``,
``geoplant <command>``. Runs without QGIS (core only; dask only with ``predict --scheduler``).

Commands (one module each): ``predict`` (geoplant:predict), ``modelinfo``
(geoplant:modelinfo), ``sampleenvironment`` (geoplant:sampleenvironment).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import modelinfo, predict, sampleenvironment
from .common import EXIT_USAGE, HelpFormatter, run_command

#: in the order --help lists them
COMMANDS = (predict, modelinfo, sampleenvironment)

EPILOG = """\
'geoplant COMMAND --help' shows a command's options. Exit status: 0 done, 1 refused or failed
(the message says why), 2 wrong options, 3 an unexpected error (details logged).
"""


def _version() -> str:
    from .. import plugin_version

    return plugin_version()


def parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog or "geoplant",
        description="GeoPlant species distribution models without QGIS: the plugin's engine on "
        "the command line, for shells, batch schedulers and cluster nodes.",
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", title="commands")
    for command in COMMANDS:
        command.add_parser(sub)
    return p


def main(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the command, return the exit status."""
    p = parser(prog)
    args = p.parse_args(list(sys.argv[1:] if argv is None else argv))
    if not getattr(args, "command", None):
        p.print_help(sys.stderr)
        return EXIT_USAGE
    return run_command(args.command, lambda progress: args.run(args, progress))


__all__ = ["main", "parser", "COMMANDS"]
