"""setuptools glue for pyproject.toml: the version from metadata.txt (the one source of it),
and metadata.txt copied into the installed package (``geoplant_qgis.plugin_version`` reads it)."""

import configparser
import os
import shutil

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))


def version() -> str:
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(os.path.join(HERE, "metadata.txt"), encoding="utf-8")
    return parser.get("general", "version")


class BuildPy(build_py):
    def run(self):
        super().run()
        if not self.dry_run:
            target = os.path.join(self.build_lib, "geoplant_qgis", "metadata.txt")
            shutil.copyfile(os.path.join(HERE, "metadata.txt"), target)


setup(version=version(), cmdclass={"build_py": BuildPy})
