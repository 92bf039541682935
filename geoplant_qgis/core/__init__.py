"""Pure-Python core of GeoPlant for QGIS.

Nothing in this package imports Qt or qgis: it runs unchanged in the plugin, in
qgis_process, in a plain script or on a cluster. Errors meant for a user are
:class:`geoplant_qgis.core.errors.GeoPlantError` and carry a plain-words message.
"""
