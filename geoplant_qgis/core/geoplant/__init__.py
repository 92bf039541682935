"""GeoPlant / GeoLifeCLEF 2024-2025 data formats: path rules, readers and writers.

Pure Python on numpy, rasterio and pandas (no Qt, no qgis). See docs/geoplant-formats.md.
"""
