"""Fixtures of the decision algorithms' tests: probability rasters with known values, surveys,
and a folder's fingerprint (every file's sha256) to prove a refused run left it as it was."""

from __future__ import annotations

import numpy as np
import pandas as pd
from filestate import own_temporaries, snapshot
from make_world import write_tif
from rasterio.transform import from_origin

from geoplant_qgis.core.geoplant.observations import STANDARD_COLUMNS

X0, Y0, CELL = 3_800_000.0, 2_300_000.0, 100.0
CRS = "EPSG:3035"
NODATA = -9999.0
SPECIES = [("Species A", 101), ("Species B", 102), ("Species C", 103)]
DESCRIPTIONS = [f"{name} ({sid})" for name, sid in SPECIES]


def probabilities(seed=0, shape=(3, 30, 40), nodata_cells=((0, 0), (5, 7))) -> np.ndarray:
    """float32 [species, rows, cols] in [0, 1] (rounded to 1/1000: many ties), nodata at
    ``nodata_cells`` in every band, and one more nodata cell in band 2 only."""
    rng = np.random.default_rng(seed)
    values = np.round(rng.random(shape), 3).astype(np.float32)
    for r, c in nodata_cells:
        values[:, r, c] = NODATA
    values[1, 10, 10] = NODATA
    return values


def write_probabilities(path, values, descriptions=DESCRIPTIONS, crs=CRS, x0=X0, y0=Y0, cell=CELL) -> str:
    return write_tif(
        path, values, from_origin(x0, y0, cell, cell), crs, NODATA, list(descriptions), tiled=False
    )


def cell_centre(row: int, col: int) -> tuple[float, float]:
    return X0 + (col + 0.5) * CELL, Y0 - (row + 0.5) * CELL


def pa_csv(path, surveys) -> str:
    """surveys: (surveyId, x3035, y3035, species ids) -> a GeoPlant PA CSV in lon/lat (a survey
    without species has no row)."""
    from rasterio.warp import transform

    rows = []
    for sid, x, y, species in surveys:
        (lon,), (lat,) = transform(CRS, "EPSG:4326", [x], [y])
        for s in species:
            rows.append((lon, lat, 2020, 10.0, 25.0, "ALPINE", "France", float(s), sid))
    pd.DataFrame(rows, columns=list(STANDARD_COLUMNS)).to_csv(path, index=False)
    return str(path)


fingerprint = snapshot  # every file (sha256) and folder under a folder
temporaries = own_temporaries
