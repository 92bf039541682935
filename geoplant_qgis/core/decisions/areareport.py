"""The area report: per candidate site, which species are expected and how sure we are.

:func:`area_report` reads a probability raster (or predicts one under the sites first,
:func:`predict_under_sites`), gathers :mod:`.sites` statistics and writes

- a CSV, one row per site and species: ``site``, ``speciesId``, ``species``, ``cells``
  (cells whose centre is inside the site and with data), ``mean_probability``,
  ``max_probability``, ``area_ha_above_threshold`` (cells with ``p >= threshold`` times the
  cell area; the raster must be in a projected CRS: a geographic one is refused, its cells
  having unequal areas);
- an HTML report with matplotlib charts: per site the expected richness (the per-cell sum
  of probabilities: mean, min, max, a histogram) and the species ranked by mean
  probability with their area above the threshold (the first :data:`TOP_SPECIES` in the
  report, all in the CSV); across sites, the species **expected** in one site only, a
  species being expected in a site when its mean probability there is ``>= threshold``.
"""

from __future__ import annotations

import html
import math
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ..errors import InputDataError
from ..files import Publication, check_outputs
from ..progress import as_progress
from . import charts
from .presence import check_threshold
from .rasters import ProbabilityRaster, cell_area_m2, open_probabilities
from .sites import SiteStats, check_sites, site_statistics
from .writer import csv_text

TABLE_COLUMNS = (
    "site",
    "speciesId",
    "species",
    "cells",
    "mean_probability",
    "max_probability",
    "area_ha_above_threshold",
)
#: species listed per site in the HTML report (the CSV has them all)
TOP_SPECIES = 30


@dataclass
class AreaReport:
    raster: ProbabilityRaster
    threshold: float
    cell_area_m2: float
    sites: list[SiteStats]
    outputs: dict[str, str] = field(default_factory=dict)

    def area_ha(self, stats: SiteStats) -> np.ndarray:
        return stats.above * self.cell_area_m2 / 10_000.0

    def expected(self, stats: SiteStats) -> np.ndarray:
        """Species expected in the site: mean probability >= threshold."""
        with np.errstate(invalid="ignore"):
            return np.nan_to_num(stats.mean, nan=-1.0) >= self.threshold

    def only_in_one_site(self) -> list[tuple[int, str, str, float]]:
        """(species id, name, site, mean p) of species expected in exactly one site."""
        if not self.sites:
            return []
        expected = np.stack([self.expected(s) for s in self.sites])
        once = np.flatnonzero(expected.sum(axis=0) == 1)
        out = []
        for j in once.tolist():
            i = int(np.flatnonzero(expected[:, j])[0])
            site = self.sites[i]
            out.append(
                (self.raster.species_ids[j], self.raster.species_names[j], site.label, float(site.mean[j]))
            )
        return sorted(out, key=lambda row: (row[2], -row[3]))


def table_csv(report: AreaReport) -> str:
    rows = []
    ids, names = report.raster.species_ids, report.raster.species_names
    for stats in report.sites:
        mean, top, area = stats.mean, stats.max_probability, report.area_ha(stats)
        for j in range(report.raster.count):
            rows.append([stats.label, ids[j], names[j], int(stats.cells[j]), mean[j], top[j], float(area[j])])
    return csv_text(TABLE_COLUMNS, rows)


def _f(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:,.{digits}f}"


def report_html(
    report: AreaReport, title: str = "GeoPlant area report", notes: Mapping[str, str] | None = None
) -> str:
    esc = html.escape
    t = report.threshold
    raster = report.raster
    head = [
        ("probabilities", raster.name),
        ("species", f"{raster.count:,}"),
        ("threshold", f"{t:g} (a species is expected in a site when its mean probability there is >= {t:g})"),
        ("cell area", f"{report.cell_area_m2 / 10_000.0:,.4g} ha"),
        ("sites", str(len(report.sites))),
    ] + [(str(k), str(v)) for k, v in (notes or {}).items()]
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{esc(title)}</title><style>body{{font-family:sans-serif;margin:2em;max-width:72em}}",
        "table{border-collapse:collapse;margin:.5em 0}",
        "th,td{border:1px solid #ccc;padding:3px 8px;text-align:left}td.n{text-align:right}",
        "figure{display:inline-block;margin:.5em 1em .5em 0;vertical-align:top}</style></head><body>",
        f"<h1>{esc(title)}</h1><table>",
        "".join(f"<tr><th>{esc(a)}</th><td>{esc(b)}</td></tr>" for a, b in head),
        "</table>",
    ]
    labels = [s.label for s in report.sites]
    parts.append("<h2>Expected richness by site</h2>")
    parts.append(
        "<p>Expected richness of a cell: the sum of every species' probability there (the number of species "
        "expected); bars: the site's mean, lines: its minimum to maximum.</p>"
    )
    parts.append(
        "<figure>"
        + charts.ranges(
            labels,
            [s.richness_mean for s in report.sites],
            [s.richness_min if s.richness_cells else math.nan for s in report.sites],
            [s.richness_max if s.richness_cells else math.nan for s in report.sites],
            "expected richness per site",
            "species per cell",
        )
        + "</figure>"
    )
    once = report.only_in_one_site()
    parts.append("<h2>Species expected in one site only</h2>")
    if once:
        parts.append("<table><tr><th>species</th><th>id</th><th>site</th><th>mean probability</th></tr>")
        parts += [
            f"<tr><td>{esc(n)}</td><td class=n>{sid}</td><td>{esc(site)}</td><td class=n>{_f(m)}</td></tr>"
            for sid, n, site, m in once
        ]
        parts.append("</table>")
    else:
        parts.append(f"<p>None: no species has a mean probability >= {t:g} in exactly one site.</p>")
    for stats in report.sites:
        parts.append(f"<h2>Site: {esc(stats.label)}</h2>")
        if not stats.centres:
            parts.append(
                "<p>No cell centre lies inside this site (it is smaller than a cell, or off the raster): "
                "nothing to report.</p>"
            )
            continue
        area = report.area_ha(stats)
        ha = stats.centres * report.cell_area_m2 / 10_000
        expected = int(report.expected(stats).sum())
        parts.append(
            "<table>"
            f"<tr><th>cells (centre inside)</th><td class=n>{stats.centres:,}</td></tr>"
            f"<tr><th>area of these cells</th><td class=n>{ha:,.2f} ha</td></tr>"
            f"<tr><th>expected richness: mean</th><td class=n>{_f(stats.richness_mean, 2)}</td></tr>"
            f"<tr><th>expected richness: min</th><td class=n>{_f(stats.richness_min, 2)}</td></tr>"
            f"<tr><th>expected richness: max</th><td class=n>{_f(stats.richness_max, 2)}</td></tr>"
            f"<tr><th>species expected (mean p >= {t:g})</th><td class=n>{expected:,}</td></tr>"
            "</table>"
        )
        counts, edges = stats.richness_histogram()
        parts.append(
            "<figure>"
            + charts.histogram_counts(
                counts, edges, f"{stats.label}: expected richness per cell", "species per cell"
            )
            + "</figure>"
        )
        mean = stats.mean
        order = [
            j
            for j in np.argsort(-np.nan_to_num(mean, nan=-1.0), kind="stable").tolist()
            if stats.cells[j] > 0
        ]
        shown = order[:TOP_SPECIES]
        parts.append(
            f"<h3>Species by mean probability ({len(shown)} of {len(order)}; all in the table)</h3>"
            "<table><tr><th>rank</th><th>species</th><th>id</th><th>mean p</th><th>max p</th>"
            f"<th>area with p >= {t:g} (ha)</th><th>expected</th></tr>"
        )
        for rank, j in enumerate(shown, start=1):
            parts.append(
                f"<tr><td class=n>{rank}</td><td>{esc(raster.species_names[j])}</td>"
                f"<td class=n>{raster.species_ids[j]}</td>"
                f"<td class=n>{_f(mean[j])}</td><td class=n>{_f(stats.max_probability[j])}</td>"
                f"<td class=n>{_f(float(area[j]), 2)}</td><td>{'yes' if mean[j] >= t else ''}</td></tr>"
            )
        parts.append("</table>")
    parts.append("</body></html>")
    return "".join(parts)


def sites_in_crs(sites: Sequence[tuple[str, object]], sites_crs, crs) -> list[tuple[str, dict]]:
    """(label, GeoJSON-like polygon in ``crs``) of sites given as WKB/WKT/GeoJSON in ``sites_crs``."""
    from ..grid import area_in_crs

    out = []
    for label, geometry in sites:
        try:
            shapes = area_in_crs([geometry], sites_crs, crs)
        except InputDataError:
            raise InputDataError(f"AREA: the site {label!r} is not a polygon.") from None
        if len(shapes) == 1:
            out.append((label, shapes[0]))
        else:
            out.append((label, {"type": "GeometryCollection", "geometries": shapes}))
    return out


def area_report(
    probabilities,
    sites: Sequence[tuple[str, object]],
    sites_crs=None,
    *,
    threshold=0.5,
    output_table=None,
    output_report=None,
    progress=None,
    input_files: Mapping[str, object] | None = None,
    notes: Mapping[str, str] | None = None,
    check: bool = True,
) -> AreaReport:
    """Statistics of ``probabilities`` under ``sites`` ((label, polygon) in ``sites_crs``;
    default: the raster's CRS), written to ``output_table`` (CSV) and ``output_report``
    (HTML), published together. See the module's text."""
    progress = as_progress(progress)
    check_sites(sites)
    cut = check_threshold(threshold)
    outputs = {k: v for k, v in (("OUTPUT_TABLE", output_table), ("OUTPUT_REPORT", output_report)) if v}
    if check:
        check_outputs(outputs, {"PROBABILITIES": probabilities, **(input_files or {})})
    raster = open_probabilities(probabilities)
    area = cell_area_m2(raster)
    shapes = (
        sites_in_crs(sites, sites_crs, raster.crs)
        if sites_crs is not None
        else sites_in_crs(sites, None, None)
    )
    progress.set_progress(10)
    stats = site_statistics(raster, shapes, cut, progress)
    empty = [s.label for s in stats if not s.centres]
    if len(empty) == len(stats):
        raise InputDataError(
            f"No site of AREA holds the centre of a cell of {raster.name}: the sites are off the raster or "
            "smaller than its cells."
        )
    if empty:
        progress.warning(
            f"{len(empty)} site(s) hold no cell centre (off the raster or smaller than a cell): "
            f"{', '.join(map(str, empty[:5]))}{'...' if len(empty) > 5 else ''}."
        )
    report = AreaReport(raster=raster, threshold=cut, cell_area_m2=area, sites=stats)
    if outputs:
        with Publication(progress) as publication:
            if output_table:
                publication.write_text(publication.temporary(output_table), table_csv(report))
            if output_report:
                publication.write_text(publication.temporary(output_report), report_html(report, notes=notes))
            progress.check_cancelled()
            publication.publish()
        report.outputs = {k: os.path.abspath(os.fspath(v)) for k, v in outputs.items()}
    progress.set_progress(100)
    return report


def predict_under_sites(
    model,
    rasters: Sequence[str],
    sites: Sequence[tuple[str, object]],
    sites_crs,
    *,
    mapping=None,
    crs=None,
    cell_size=None,
    threshold=0.5,
    output_table=None,
    output_report=None,
    progress=None,
    input_files: Mapping[str, object] | None = None,
    device: str | None = "auto",
) -> AreaReport:
    """Predict the model's probabilities under the sites (their polygons as the AREA) into a
    private temporary folder (never one of the user's; removed at the end, whatever happens),
    then :func:`area_report` on them. ``device``: where the model runs ("auto", "cpu",
    "cuda", ...)."""
    from ..engine import predict, run_input_files
    from ..progress import ScaledProgress

    progress = as_progress(progress)
    check_sites(sites)
    check_threshold(threshold)
    outputs = {k: v for k, v in (("OUTPUT_TABLE", output_table), ("OUTPUT_REPORT", output_report)) if v}
    check_outputs(outputs, run_input_files(model, rasters, mapping, dict(input_files or {})))
    folder = tempfile.mkdtemp(prefix="geoplant-areareport-")
    try:
        path = os.path.join(folder, "probabilities.tif")
        predict(
            model,
            list(rasters),
            mapping=mapping,
            area=[g for _, g in sites],
            area_crs=sites_crs,
            crs=crs,
            cell_size=cell_size,
            top_k=0,
            output_probabilities=path,
            progress=ScaledProgress(progress, 0, 60),
            device=device,
        )
        return area_report(
            path,
            sites,
            sites_crs,
            threshold=threshold,
            output_table=output_table,
            output_report=output_report,
            progress=ScaledProgress(progress, 60, 40),
            notes={"predicted with": os.path.basename(os.fspath(model))},
            check=False,
        )
    finally:
        shutil.rmtree(folder, ignore_errors=True)
