#!/usr/bin/env python3
"""``make demo``: synthetic GeoPlant world -> bundled model -> maps -> score, headless.

1. Generates the synthetic GeoPlant-format world (``tools/make_world.py``) under
   ``OUTPUT/world``, or reuses it when it is present and current.
2. Installs the plugin into a private QGIS profile root (``OUTPUT/qgis-profile``) with
   ``tools/install_plugin.py``, as a batch user would.
3. Runs ``geoplant:predict`` once through ``qgis_process`` over the whole demo area at
   100 m (EPSG:3035): richness and top-25 over every species, and (SPECIES) the
   probability bands of the species whose true suitability the world keeps.
4. Runs ``geoplant:evaluate`` through ``qgis_process`` on the held-out test surveys
   (the model predicts at the surveys), with the training surveys for the naive baseline.
5. Renders PNG previews with PyQGIS print layouts (legend and scale bar): predicted vs
   true richness, predicted vs true suitability of one species.
6. Writes ``OUTPUT/summary.json`` (cells, seconds, cells/s, F1@25 of the model and of the
   naive baseline, Pearson correlation of predicted vs true richness) and prints it.

``--quick`` predicts over a 6 km x 6 km square in the middle only (the test suite's variant).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.path.join(ROOT, "tools")
for path in (ROOT, TOOLS):
    if path not in sys.path:
        sys.path.insert(0, path)

import make_world  # noqa: E402

QGIS_PROCESS = os.environ.get("QGIS_PROCESS", "/usr/bin/qgis_process.bin")
MODEL = os.path.join(ROOT, "geoplant_qgis", "models", "geoplant_demo.onnx")
TARGETS = {"f1_ratio_to_baseline": 1.3, "richness_pearson": 0.8}


def log(message):
    print(f"[demo] {message}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- plugin


def install_plugin(out_dir) -> str:
    """Build the plugin folder (``make build``) and install it in a private profile root."""
    import install_plugin as installer

    profile_root = os.path.join(out_dir, "qgis-profile")
    installer.install(
        installer.build_plugin(Path(ROOT)),
        Path(profile_root),
        requirements=Path(ROOT, "requirements.txt"),
        constraints=Path(ROOT, "constraints.txt"),
    )
    return profile_root


def qgis_process(profile_root, algorithm, params: list[tuple[str, str]]) -> tuple[dict, float]:
    """Run one algorithm through qgis_process --json; (results, wall seconds)."""
    import install_plugin as installer

    env = installer.headless_env(profile_root)
    cmd = [QGIS_PROCESS, "--json", "run", algorithm, "--"] + [f"{k}={v}" for k, v in params]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(
            f"qgis_process {algorithm} failed (exit {proc.returncode}):\n"
            f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    text = proc.stdout
    start = text.find("{")
    try:
        answer = json.loads(text[start:])
    except ValueError:
        raise SystemExit(f"qgis_process {algorithm}: cannot read its JSON answer:\n{text[-2000:]}") from None
    return answer.get("results", answer), seconds


# ----------------------------------------------------------------------------- scoring


def richness_pearson(predicted_path, true_path) -> tuple[float, int]:
    """Pearson r of predicted vs true richness over cells valid in both (same 3035 grid)."""
    import rasterio
    from rasterio.windows import from_bounds

    with rasterio.open(predicted_path) as p, rasterio.open(true_path) as t:
        if p.res != t.res:
            raise SystemExit(f"richness grids differ: {p.res} vs {t.res}")
        pred = p.read(1, masked=True)
        window = from_bounds(*p.bounds, transform=t.transform).round_offsets().round_lengths()
        truth = t.read(1, window=window, masked=True, boundless=True)
    valid = ~np.ma.getmaskarray(pred) & ~np.ma.getmaskarray(truth)
    a = np.asarray(pred)[valid].astype(np.float64)
    b = np.asarray(truth)[valid].astype(np.float64)
    return float(np.corrcoef(a, b)[0, 1]), int(valid.sum())


# ----------------------------------------------------------------------------- maps


def render_pairs(pairs, out_dir) -> list[str]:
    """PNG maps with PyQGIS print layouts: each pair (title, left, right, min, max, unit, png)."""
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ["GDAL_PAM_ENABLED"] = "NO"  # no .aux.xml statistics files next to the outputs
    # QGIS tries to georeference the exported PNG in place, which GDAL's PNG driver cannot do;
    # the export itself is checked through its status below
    os.environ.setdefault("CPL_LOG", os.devnull)
    from qgis.core import (
        QgsApplication,
        QgsCoordinateReferenceSystem,
        QgsLayoutExporter,
        QgsLayoutItemLabel,
        QgsLayoutItemLegend,
        QgsLayoutItemMap,
        QgsLayoutItemScaleBar,
        QgsLayoutPoint,
        QgsLayoutSize,
        QgsMapLayerLegendUtils,
        QgsPrintLayout,
        QgsProject,
        QgsRasterLayer,
        QgsUnitTypes,
    )
    from qgis.PyQt.QtGui import QFont

    from geoplant_qgis.processing.styles import named_ramp, pseudocolor

    app = QgsApplication([], False)
    app.initQgis()
    written = []
    try:
        project = QgsProject.instance()
        for title, panels, png in pairs:
            project.clear()
            project.setCrs(QgsCoordinateReferenceSystem("EPSG:3035"))
            layout = QgsPrintLayout(project)
            layout.initializeDefaults()
            page = layout.pageCollection().page(0)
            page.setPageSize(QgsLayoutSize(300, 165, QgsUnitTypes.LayoutMillimeters))
            heading = QgsLayoutItemLabel(layout)
            heading.setText(title)
            heading.setFont(QFont("Sans", 14))
            heading.attemptMove(QgsLayoutPoint(6, 3, QgsUnitTypes.LayoutMillimeters))
            heading.attemptResize(QgsLayoutSize(288, 9, QgsUnitTypes.LayoutMillimeters))
            layout.addLayoutItem(heading)
            extent = None
            for i, (caption, path, vmin, vmax, unit) in enumerate(panels):
                layer = QgsRasterLayer(path, unit)
                if not layer.isValid():
                    raise SystemExit(f"cannot render {path}")
                viridis = named_ramp("Viridis", ("#440154", "#fde725"))
                pseudocolor(layer, 1, vmin, vmax, viridis, "{:.3g}".format)
                project.addMapLayer(layer)
                x0 = 6 + i * 148
                label = QgsLayoutItemLabel(layout)
                label.setText(caption)
                label.setFont(QFont("Sans", 10))
                label.attemptMove(QgsLayoutPoint(x0, 13, QgsUnitTypes.LayoutMillimeters))
                label.attemptResize(QgsLayoutSize(140, 6, QgsUnitTypes.LayoutMillimeters))
                layout.addLayoutItem(label)
                item = QgsLayoutItemMap(layout)
                item.attemptMove(QgsLayoutPoint(x0, 20, QgsUnitTypes.LayoutMillimeters))
                item.attemptResize(QgsLayoutSize(112, 112, QgsUnitTypes.LayoutMillimeters))
                item.setCrs(layer.crs())
                item.setLayers([layer])
                extent = extent or layer.extent()  # every panel shows the first panel's extent
                item.setExtent(extent)
                item.setFrameEnabled(True)
                layout.addLayoutItem(item)
                legend = QgsLayoutItemLegend(layout)
                legend.setTitle("")
                legend.setLinkedMap(item)
                legend.setAutoUpdateModel(False)
                root = legend.model().rootGroup()
                root.removeAllChildren()
                node = root.addLayer(layer)
                # keep the layer title (the unit) and the colour ramp; drop the "Band 1: ..." line
                nodes = legend.model().layerLegendNodes(node)
                keep = [j for j, n in enumerate(nodes) if not str(n.data(0) or "").startswith("Band ")]
                QgsMapLayerLegendUtils.setLegendNodeOrder(node, keep)
                legend.model().refreshLayerLegend(node)
                legend.attemptMove(QgsLayoutPoint(x0 + 114, 20, QgsUnitTypes.LayoutMillimeters))
                layout.addLayoutItem(legend)
                bar = QgsLayoutItemScaleBar(layout)
                bar.setStyle("Single Box")
                bar.setLinkedMap(item)
                bar.setUnits(QgsUnitTypes.DistanceKilometers)
                bar.setUnitLabel("km")
                extent_km = extent.width() / 1000.0
                step = max(1, int(round(extent_km / 6)))
                bar.setUnitsPerSegment(step)
                bar.setNumberOfSegments(3)
                bar.setNumberOfSegmentsLeft(0)
                bar.attemptMove(QgsLayoutPoint(x0, 136, QgsUnitTypes.LayoutMillimeters))
                layout.addLayoutItem(bar)
            footer = QgsLayoutItemLabel(layout)
            footer.setText("Synthetic GeoPlant-format world (virtual species). EPSG:3035, 100 m cells.")
            footer.setFont(QFont("Sans", 8))
            footer.attemptMove(QgsLayoutPoint(6, 156, QgsUnitTypes.LayoutMillimeters))
            footer.attemptResize(QgsLayoutSize(288, 6, QgsUnitTypes.LayoutMillimeters))
            layout.addLayoutItem(footer)
            settings = QgsLayoutExporter.ImageExportSettings()
            settings.dpi = 110
            final = os.path.join(out_dir, png)
            tmp = os.path.join(out_dir, f".{png}.part.png")
            status = QgsLayoutExporter(layout).exportToImage(tmp, settings)
            if status != QgsLayoutExporter.Success:
                raise SystemExit(f"cannot export {png}: status {status}")
            os.replace(tmp, final)
            written.append(final)
        project.clear()
    finally:
        app.exitQgis()
    return written


# ----------------------------------------------------------------------------- main


def run(out_dir, quick=False, world_dir=None, seed=0) -> dict:
    t_start = time.perf_counter()
    out_dir = os.path.abspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    world_dir = os.path.abspath(world_dir or os.path.join(out_dir, "world"))
    t0 = time.perf_counter()
    world = make_world.ensure_world(world_dir, seed=seed)
    world_seconds = time.perf_counter() - t0
    files = world["files"]
    log(f"world ready in {world_seconds:.1f} s: {world_dir}")

    t0 = time.perf_counter()
    profile_root = install_plugin(out_dir)
    log(f"plugin installed in {profile_root} ({time.perf_counter() - t0:.1f} s)")

    left, bottom, right, top = world["area_epsg3035"]
    if quick:
        cx, cy = (left + right) / 2, (bottom + top) / 2
        left, right = cx - 3000, cx + 3000
        bottom, top = cy - 3000, cy + 3000
    species_ids = list(files["true_suitability"])
    rasters = list(files["rasters"].values()) + [files["mosaic"]]
    outputs = {
        "richness": os.path.join(out_dir, "richness.tif"),
        "topk": os.path.join(out_dir, "top25.tif"),
        "probabilities": os.path.join(out_dir, "probabilities.tif"),
    }
    params = [("MODEL", MODEL)] + [("RASTERS", r) for r in rasters]
    grid = [
        ("EXTENT", f"{left},{right},{bottom},{top} [EPSG:3035]"),
        ("CRS", "EPSG:3035"),
        ("CELL_SIZE", "100"),
    ]
    # One run: richness and top-25 over every species; SPECIES chooses the probability bands.
    log(
        "geoplant:predict through qgis_process (richness, top-25, probabilities of species "
        f"{', '.join(species_ids)}) ..."
    )
    predicted, wall = qgis_process(
        profile_root,
        "geoplant:predict",
        params
        + grid
        + [
            ("TOP_K", "25"),
            ("SPECIES", ",".join(species_ids)),
            ("OUTPUT_RICHNESS", outputs["richness"]),
            ("OUTPUT_TOPK", outputs["topk"]),
            ("OUTPUT_PROBABILITIES", outputs["probabilities"]),
        ],
    )
    cells = int(float(predicted.get("CELLS", 0)))
    seconds = float(predicted.get("SECONDS") or wall)
    log(f"predict: {cells} cells in {seconds:.1f} s ({wall:.1f} s with qgis_process start-up)")

    log("geoplant:evaluate through qgis_process ...")
    evaluated, eval_wall = qgis_process(
        profile_root,
        "geoplant:evaluate",
        params
        + [
            ("SURVEYS", files["pa_test"]),
            ("TRAIN_SURVEYS", files["pa_train"]),
            ("TOP_K", "25"),
            ("OUTPUT_REPORT", os.path.join(out_dir, "evaluation.html")),
            ("OUTPUT_TABLE", os.path.join(out_dir, "evaluation_surveys.csv")),
        ],
    )
    f1 = float(evaluated["F1"])
    base = float(evaluated["BASELINE_F1"])
    pearson, valid_cells = richness_pearson(outputs["richness"], files["true_richness"])

    shown = species_ids[0]
    import rasterio

    with rasterio.open(outputs["probabilities"]) as src:
        band = next(
            i for i, d in enumerate(src.descriptions, start=1) if (d or "").rstrip().endswith(f"({shown})")
        )
        species_name = src.descriptions[band - 1]
        one = os.path.join(out_dir, f"probability_{shown}.tif")
        profile = src.profile
        profile.update(count=1)
        with rasterio.open(one + ".part.tif", "w", **profile) as dst:
            dst.write(src.read(band), 1)
            dst.set_band_description(1, species_name)
        os.replace(one + ".part.tif", one)
    with rasterio.open(files["true_richness"]) as t:
        hi = float(np.ceil(max(np.nanpercentile(t.read(1, masked=True).compressed(), 99.5), 1.0)))
    log("rendering previews with PyQGIS print layouts ...")
    pngs = render_pairs(
        [
            (
                "Species richness: predicted (left) vs true (right)",
                [
                    (
                        "Predicted richness (expected number of species)",
                        outputs["richness"],
                        0.0,
                        hi,
                        "species",
                    ),
                    ("True richness (sum of true probabilities)", files["true_richness"], 0.0, hi, "species"),
                ],
                "richness.png",
            ),
            (
                f"{species_name}: predicted probability (left) vs true suitability (right)",
                [
                    ("Predicted probability of presence", one, 0.0, 1.0, "probability"),
                    (
                        "True probability of presence",
                        files["true_suitability"][shown],
                        0.0,
                        1.0,
                        "probability",
                    ),
                ],
                f"species_{shown}.png",
            ),
        ],
        out_dir,
    )
    summary = {
        "quick": bool(quick),
        "area_epsg3035": [left, bottom, right, top],
        "cell_size_m": 100,
        "cells": cells,
        "valid_cells": int(float(predicted.get("VALID_CELLS", 0))),
        "seconds": round(seconds, 2),
        "cells_per_second": round(cells / seconds, 1) if seconds > 0 else None,
        "qgis_process_seconds": round(wall, 2),
        "species": 120,
        "test_surveys": int(float(evaluated.get("SURVEYS_EVALUATED", 0))),
        "f1_at_25_model": round(f1, 4),
        "f1_at_25_naive_baseline": round(base, 4),
        "f1_ratio_to_baseline": round(f1 / base, 3) if base > 0 else None,
        "auc_micro": round(float(evaluated["AUC_MICRO"]), 4),
        "auc_macro": round(float(evaluated["AUC_MACRO"]), 4),
        "richness_pearson": round(pearson, 4),
        "richness_cells_compared": valid_cells,
        "evaluate_seconds": round(eval_wall, 2),
        "world_seconds": round(world_seconds, 2),
        "total_seconds": round(time.perf_counter() - t_start, 1),
        "files": {
            "richness": outputs["richness"],
            "top25": outputs["topk"],
            "probabilities": outputs["probabilities"],
            "report": os.path.join(out_dir, "evaluation.html"),
            "table": os.path.join(out_dir, "evaluation_surveys.csv"),
            "previews": pngs,
        },
        "targets": TARGETS,
    }
    from geoplant_qgis.core.modelcard import read_model_card

    summary["species"] = len(read_model_card(MODEL).species)
    summary["targets_met"] = bool(
        summary["f1_ratio_to_baseline"] is not None
        and summary["f1_ratio_to_baseline"] >= TARGETS["f1_ratio_to_baseline"]
        and pearson >= TARGETS["richness_pearson"]
    )
    path = os.path.join(out_dir, "summary.json")
    with open(path + ".part", "w") as fh:
        json.dump(summary, fh, indent=1)
    os.replace(path + ".part", path)
    return summary


def main(argv=None):
    parser = argparse.ArgumentParser(description="GeoPlant demo: world -> model -> maps -> score.")
    parser.add_argument("--output", default="demo_output")
    parser.add_argument("--world", default=None, help="world folder (default OUTPUT/world)")
    parser.add_argument("--quick", action="store_true", help="predict over a 6 km square only")
    parser.add_argument("--seed", type=int, default=0, help="world seed (the bundled model fits seed 0)")
    args = parser.parse_args(argv)
    summary = run(args.output, quick=args.quick, world_dir=args.world, seed=args.seed)
    print(json.dumps({k: v for k, v in summary.items() if k != "files"}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
