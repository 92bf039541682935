"""``geoplant predict``: geoplant:predict's parameters as options -> one core ``PredictRequest``.

The options mean what the Processing parameters mean and go to the same
``PredictRequest.build`` (every rule checked there, once, with the same message); the
run is core's ``run``, or with ``--scheduler`` the Dask runner (``core.cluster``), which
alone imports dask.
"""

from __future__ import annotations

import argparse
import inspect
from typing import Any

from .common import (
    HelpFormatter,
    TerminalProgress,
    UsageError,
    model_path,
    output_tif,
    parse_extent,
    read_area,
)

OUTPUTS = (
    ("output_richness", "--output-richness", "richness"),
    ("output_topk", "--output-topk", "topk"),
    ("output_probabilities", "--output-probabilities", "probabilities"),
)

DESCRIPTION = """\
Runs a GeoPlant ONNX model (with its geoplant-onnx/1 card) over every cell of a grid and
writes GeoTIFFs: geoplant:predict without QGIS (same options, same checks, same outputs).

Variables: a raster band whose description is the variable's name, or a one-band raster
named after it (case, '_', '-' and spaces ignored); --mapping overrides. Cells whose centre
is outside --area, or where any input has no data, are nodata. The grid (--crs, --cell-size:
projected, metres; default the card's grid, else EPSG:3035 and 100 m) is snapped to
multiples of the cell size. Files appear under their names only when the run succeeds.
"""

EPILOG = """\
example:
  python -m geoplant_qgis predict --model model.onnx --raster bio1.tif --raster bio12.tif \\
      --extent '3700000,3800000,2600000,2700000 [EPSG:3035]' --cell-size 100 --top-k 25 \\
      --output-richness richness.tif --output-topk top25.tif

exit status: 0 done; 1 refused, failed or stopped (SIGTERM/SIGHUP: nothing published);
2 wrong options; 3 an unexpected error (its details are logged, the message says where).
"""


def build_takes(name: str) -> bool:
    """True when core's ``PredictRequest.build`` takes the keyword ``name`` (``device``,
    ``topk_mode``...: options that newer cores have)."""
    from ..core.predict.request import PredictRequest

    return name in inspect.signature(PredictRequest.build).parameters


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "predict",
        help="a model over every cell of a grid: richness, top-K species, probabilities (GeoTIFFs)",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=HelpFormatter,
    )
    p.add_argument("--model", metavar="M.onnx", help="the .onnx model (default: the bundled demo model)")
    p.add_argument(
        "--raster", action="append", default=[], metavar="R.tif",
        help="a raster holding model variables (repeat for several)",
    )  # fmt: skip
    p.add_argument(
        "--mapping", metavar="FILE_OR_TEXT",
        help="variable overrides: 'variable=path[#band];...' or a CSV file variable,path,band",
    )  # fmt: skip
    p.add_argument(
        "--extent", metavar="'xmin,xmax,ymin,ymax [CRS]'",
        help="the rectangle to predict over, QGIS's form: x range, then y range, then the CRS "
        "in brackets (default: the grid CRS). With --area too, the grid covers this extent",
    )  # fmt: skip
    p.add_argument(
        "--area", metavar="FILE",
        help="polygons (GeoPackage, GeoJSON, shapefile...; 'FILE|layername=NAME' for one layer): "
        "cells whose centre is outside are nodata",
    )  # fmt: skip
    p.add_argument("--crs", metavar="EPSG:xxxx", help="the grid's CRS, projected in metres")
    p.add_argument("--cell-size", metavar="METRES", help="the grid's cell size in metres")
    p.add_argument(
        "--top-k", metavar="K", default="25", help="K most probable species (0 = none; default 25)"
    )
    p.add_argument(
        "--topk-mode", metavar="MODE",
        help="K of each cell's top-K: fixed (default: --top-k) or richness (each cell's K is its "
        "richness rounded, plus --topk-margin, kept from 1 to --top-k; the ranks after it nodata)",
    )  # fmt: skip
    p.add_argument(
        "--topk-margin", metavar="N", help="added to each cell's rounded richness (--topk-mode richness)"
    )
    p.add_argument(
        "--species", metavar="IDS",
        help="species of the probability bands (ids or names, comma separated; default all)",
    )  # fmt: skip
    p.add_argument(
        "--threshold", metavar="T",
        help="presence threshold: the richness counts p >= T (softmax models need it)",
    )  # fmt: skip
    p.add_argument("--output-richness", metavar="F.tif", help="richness (float32)")
    p.add_argument(
        "--output-topk", metavar="F.tif",
        help="top-K species ids (int32, K bands), with a CSV of names and a QGIS style",
    )  # fmt: skip
    p.add_argument(
        "--output-probabilities", metavar="F.tif", help="probabilities (float32, a band per species)"
    )
    p.add_argument(
        "--max-cells", metavar="N",
        help="the most grid cells one run may cover (default $GEOPLANT_MAX_CELLS, else 50,000,000): "
        "a larger grid is refused before anything is written, with its cells, disk and time",
    )  # fmt: skip
    p.add_argument(
        "--device", metavar="DEVICE",
        help="where the model runs: auto (default), cpu, cuda...; a missing or failing GPU falls "
        "back to the CPU with a warning",
    )  # fmt: skip
    p.add_argument(
        "--scheduler", metavar="ADDRESS",
        help="run on Dask: 'tcp://host:port' (a running scheduler) or 'local:N' (N local worker "
        "processes); needs dask and distributed (pip install 'geoplant_qgis[cluster]'); "
        "see docs/cluster.md",
    )  # fmt: skip
    p.set_defaults(run=run)
    return p


def _text(value: str | None) -> Any:
    """A number option's text for core, which reads and checks it (its message names the
    parameter as geoplant:predict does: CELL_SIZE, TOP_K, THRESHOLD, MAX_CELLS)."""
    return None if value is None else value.strip()


def build_request(args: argparse.Namespace) -> Any:
    """The options as core's ``PredictRequest`` (checked by ``PredictRequest.build``)."""
    from ..core.predict import Area, PredictRequest

    outputs = {kind: output_tif(getattr(args, attr), option) for attr, option, kind in OUTPUTS}
    outputs = {kind: path for kind, path in outputs.items() if path}
    extent: Any = None
    extent_crs: str | None = None
    if args.extent is not None:
        extent, extent_crs = parse_extent(args.extent)
    area = area_file = None
    if args.area is not None:
        geometries, area_crs, area_file = read_area(args.area)
        area = Area(geometries, area_crs)
    model = model_path(args.model)
    extra: dict[str, Any] = {}
    for option, keyword, value in (
        ("--device", "device", args.device),
        ("--topk-mode", "topk_mode", args.topk_mode),
        ("--topk-margin", "topk_margin", _text(args.topk_margin)),
    ):
        if value is not None:
            if not build_takes(keyword):
                raise UsageError(f"{option} is not supported by this version of GeoPlant's core.")
            extra[keyword] = value
    return PredictRequest.build(
        model,
        list(args.raster),
        mapping=args.mapping or None,
        extent=extent,
        extent_crs=extent_crs,
        area=area,
        crs=args.crs or None,
        cell_size=_text(args.cell_size),
        top_k=_text(args.top_k),
        species=args.species or None,
        threshold=_text(args.threshold),
        outputs=outputs,
        input_files={"AREA": area_file},
        max_cells=_text(args.max_cells),
        **extra,
    )


def run(args: argparse.Namespace, progress: TerminalProgress) -> int:
    request = build_request(args)
    if args.scheduler:
        try:
            from ..core.cluster import run_on_cluster  # imports dask only when it runs
        except ModuleNotFoundError as error:
            if not (error.name or "").startswith("geoplant_qgis.core.cluster"):
                raise
            raise UsageError("--scheduler: this installation has no Dask runner (core.cluster).") from None

        result = run_on_cluster(request, args.scheduler, progress)
    else:
        from ..core.predict import run as run_request

        result = run_request(request, progress)
    progress.finish()
    print(f"cells: {result.cells}")
    print(f"valid cells: {result.valid_cells}")
    print(f"seconds: {result.seconds:.1f}")
    for _, _, kind in OUTPUTS:
        if kind in result.outputs:
            print(f"{kind}: {result.outputs[kind]}")
    return 0
