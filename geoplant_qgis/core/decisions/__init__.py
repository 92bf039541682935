"""From probability maps to decisions: site reports, presence maps with named rules, ensembles.

One job per module: :mod:`.rasters` reads probability rasters block by block, :mod:`.compare`
says how several differ, :mod:`.thresholds` chooses cut-offs by named rules, :mod:`.sites`
gathers statistics under polygons, :mod:`.writer` writes the outputs under temporary names,
:mod:`.presence`, :mod:`.ensemble` and :mod:`.areareport` are the three runs, and
:mod:`.charts` draws the reports' charts with matplotlib (inline SVG). Pure Python: numpy,
rasterio, matplotlib; no Qt, no qgis.
"""
