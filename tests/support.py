"""Helpers for tests that use the built plugin, a QGIS profile and the real executables."""

from __future__ import annotations

import subprocess
from pathlib import Path

import install_plugin  # tools/, put on sys.path by conftest.py

ROOT = Path(__file__).resolve().parents[1]
BUILD_DIR = ROOT / "build" / "plugin" / "geoplant_qgis"
QGIS_PROCESS = "/usr/bin/qgis_process.bin"  # Debian's /usr/bin/qgis_process wrapper is broken


def build_plugin() -> Path:
    """`make build`: the plugin folder as QGIS sees it."""
    return install_plugin.build_plugin(ROOT)


def install_into(profile_root: Path, with_dependencies: bool = True) -> Path:
    build_plugin()
    requirements = ROOT / "requirements.txt" if with_dependencies else None
    return install_plugin.install(
        BUILD_DIR, profile_root, requirements=requirements, constraints=ROOT / "constraints.txt"
    )


headless_env = install_plugin.headless_env


def qgis_process(profile_root: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [QGIS_PROCESS, *args],
        env=headless_env(profile_root),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
