"""``geoplant sampleenvironment``: raster values at survey points (a CSV) or at the cells of a
grid, as a GeoPlant environmental-values CSV (``core.extract.sample_environment``, the code
geoplant:sampleenvironment runs)."""

from __future__ import annotations

import argparse
import csv
import os
from typing import Any

from .common import HelpFormatter, TerminalProgress, UsageError, parse_extent, read_area

ID_FIELD = "surveyId"
X_NAMES = ("lon", "longitude", "x")
Y_NAMES = ("lat", "latitude", "y")


def add_parser(sub: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(
        "sampleenvironment",
        help="raster values at surveys or grid cells, as a GeoPlant environmental-values CSV",
        description="Values of the rasters at survey points (--points), or at the centres of a grid "
        "(--extent or --area, --cell-size, --crs), as a GeoPlant environmental-values CSV: surveyId "
        "(or cellId, x, y) then one column per variable; nodata left empty. A point takes the value "
        "of the pixel containing it, as predict does. Like geoplant:sampleenvironment.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--raster", action="append", default=[], metavar="R.tif", help="a raster (repeat)")
    p.add_argument(
        "--mapping", metavar="FILE_OR_TEXT",
        help="adds or renames variables: 'variable=path[#band];...' or a CSV file variable,path,band",
    )  # fmt: skip
    p.add_argument(
        "--points", metavar="CSV",
        help=f"survey points: a CSV with a {ID_FIELD} column and lon/lat (or x/y) columns "
        "(GeoPlant's metadata CSVs are such files; ',' or ';' separated); when given, the grid "
        "options are not used",
    )  # fmt: skip
    p.add_argument("--extent", metavar="'xmin,xmax,ymin,ymax [CRS]'", help="a grid under this rectangle")
    p.add_argument(
        "--area", metavar="FILE", help="a grid under these polygons (cells whose centre is inside)"
    )
    p.add_argument(
        "--points-crs", metavar="EPSG:xxxx", default="EPSG:4326", help="CRS of --points (EPSG:4326)"
    )
    p.add_argument("--cell-size", metavar="METRES", default="100", help="grid cell size in metres (100)")
    p.add_argument("--crs", metavar="EPSG:xxxx", default="EPSG:3035", help="grid CRS, projected (EPSG:3035)")
    p.add_argument("--output", metavar="F.csv", required=True, help="the CSV to write")
    p.add_argument(
        "--max-cells", metavar="N",
        help="the most grid cells one run may sample (default $GEOPLANT_MAX_CELLS, else 50,000,000)",
    )  # fmt: skip
    p.set_defaults(run=run)
    return p


def _column(names: list[str], wanted: tuple[str, ...]) -> str | None:
    lowered = {n.strip().lower(): n for n in names}
    return next((lowered[w] for w in wanted if w in lowered), None)


def read_points(path: str, crs: str) -> Any:
    """A CSV of surveys as core's ``Points`` (ids as integers when they all are)."""

    if not os.path.isfile(path):
        raise UsageError(f"--points: no such file: {path}")
    try:
        return _read_points(path, crs)
    except UnicodeDecodeError as error:
        raise UsageError(
            f"--points: {path} is not UTF-8 text (byte {error.start}); give a CSV saved as UTF-8."
        ) from None
    except csv.Error as error:
        raise UsageError(f"--points: {path} is not a readable CSV ({error}).") from None


def _read_points(path: str, crs: str) -> Any:
    import numpy as np

    from ..core.extract import Points

    with open(path, newline="", encoding="utf-8-sig") as f:
        sample = f.read(65536)
        f.seek(0)
        delimiter = ";" if sample.count(";") > sample.count(",") else ","
        reader = csv.DictReader(f, delimiter=delimiter)
        names = list(reader.fieldnames or [])
        id_col = _column(names, (ID_FIELD.lower(),))
        x_col, y_col = _column(names, X_NAMES), _column(names, Y_NAMES)
        if id_col is None or x_col is None or y_col is None:
            raise UsageError(
                f"--points {path} needs a {ID_FIELD} column and lon/lat (or x/y) columns "
                f"(columns: {', '.join(names) or 'none'})."
            )
        ids: list[Any] = []
        xs: list[float] = []
        ys: list[float] = []
        for line, row in enumerate(reader, start=2):
            value = (row.get(id_col) or "").strip()
            if not value:
                continue
            try:
                x, y = float(row[x_col]), float(row[y_col])
            except (TypeError, ValueError):
                raise UsageError(f"--points {path}, line {line}: the coordinates are not numbers.") from None
            ids.append(value)
            xs.append(x)
            ys.append(y)
    if not ids:
        raise UsageError(f"--points {path} has no point with a {ID_FIELD}.")
    try:
        array = np.array([int(i) for i in ids], dtype=np.int64)
    except ValueError:
        array = np.array(ids, dtype=object)
    return Points(array, np.array(xs), np.array(ys), crs)


def run(args: argparse.Namespace, progress: TerminalProgress) -> int:
    from ..core.extract import GridArea, sample_environment

    points = grid = None
    inputs: dict[str, Any] = {}
    if args.points:
        points = read_points(args.points, args.points_crs)
        inputs["POINTS"] = args.points
    elif args.extent is not None or args.area is not None:
        extent = extent_crs = area = area_crs = None
        if args.extent is not None:
            extent, extent_crs = parse_extent(args.extent)
        if args.area is not None:
            geometries, area_crs, inputs["AREA"] = read_area(args.area)
            area = list(geometries)
        grid = GridArea(args.crs, args.cell_size.strip(), extent, extent_crs, area, area_crs)  # type: ignore[arg-type]
    else:
        raise UsageError("Give --points, or --extent or --area for a grid.")
    result = sample_environment(
        args.output,
        list(args.raster),
        args.mapping or None,
        points=points,
        grid=grid,
        progress=progress,
        input_files=inputs,
        max_cells=None if args.max_cells is None else args.max_cells.strip(),
    )
    progress.finish()
    print(f"rows: {result.rows}")
    print(f"output: {result.path}")
    return 0
