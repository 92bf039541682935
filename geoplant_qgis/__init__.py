"""GeoPlant for QGIS: deep species distribution models on the GIS desktop."""

import configparser
import os


def plugin_version() -> str:
    """The version from metadata.txt, the single source of it."""
    here = os.path.dirname(os.path.abspath(__file__))
    for folder in (here, os.path.dirname(here)):  # installed plugin, or source tree
        path = os.path.join(folder, "metadata.txt")
        if os.path.exists(path):
            parser = configparser.ConfigParser(interpolation=None)
            parser.read(path, encoding="utf-8")
            return parser.get("general", "version")
    return "unknown"


def classFactory(iface):  # noqa: N802 (QGIS's name)
    """Called by QGIS to create the plugin."""
    from .plugin import GeoPlantPlugin

    return GeoPlantPlugin(iface)
