"""The plugin as QGIS sees it: metadata, loading through qgis.utils, install, zip, qgis_process."""

from __future__ import annotations

import configparser
import json
import subprocess
import zipfile
from pathlib import Path

import pytest
from support import ROOT, build_plugin, headless_env, install_into, install_plugin, qgis_process

LOAD_SCRIPT = ROOT / "tests" / "scripts" / "load_plugin.py"
REQUIRED_METADATA = [
    "name",
    "qgisMinimumVersion",
    "description",
    "about",
    "version",
    "author",
    "email",
    "repository",
]
# Algorithms that need only QGIS, numpy, rasterio and pandas: they must register without onnxruntime.
WITHOUT_ONNXRUNTIME = {
    "geoplant:loadobservations",
    "geoplant:loadpatches",
    "geoplant:sampleenvironment",
    "geoplant:extractpatches",
    "geoplant:evaluate",
    "geoplant:areareport",
    "geoplant:presence",
    "geoplant:ensemble",
}
NEED_ONNXRUNTIME = {"geoplant:predict", "geoplant:modelinfo"}


def read_metadata(path: Path) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    parser.read(path, encoding="utf-8")
    return parser["general"]


def load_through_qgis_utils(plugins_folder: Path) -> dict:
    done = subprocess.run(
        ["/usr/bin/python3", str(LOAD_SCRIPT), str(plugins_folder)],
        env=dict(headless_env(), PYTHONNOUSERSITE="1"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, done.stdout + done.stderr
    return json.loads(lines[-1][len("RESULT ") :])


def test_metadata_has_every_required_field():
    meta = read_metadata(ROOT / "metadata.txt")
    for field in REQUIRED_METADATA:
        assert meta.get(field, "").strip(), f"metadata.txt lacks {field}"
    assert meta["qgisMinimumVersion"] == "3.22"
    assert meta["hasProcessingProvider"] == "yes"
    assert (ROOT / "geoplant_qgis" / meta["icon"]).exists()
    assert meta["tags"] and meta["category"]


def test_version_comes_from_metadata():
    from geoplant_qgis import plugin_version

    assert plugin_version() == read_metadata(ROOT / "metadata.txt")["version"]


def test_core_imports_neither_qt_nor_qgis():
    offenders = []
    for path in (ROOT / "geoplant_qgis" / "core").rglob("*.py"):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            stripped = line.strip()
            words = stripped.split()
            top = words[1].split(".")[0] if len(words) > 1 else ""
            if stripped.startswith(("import ", "from ")) and (
                top in ("qgis", "processing", "sip") or top.startswith(("PyQt", "PySide"))
            ):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {stripped}")
    assert not offenders, "core must stay free of Qt/qgis:\n" + "\n".join(offenders)


def test_settings_file_edit_keeps_other_settings(tmp_path):
    ini = tmp_path / "QGIS" / "QGIS3.ini"
    ini.parent.mkdir()
    ini.write_text("[General]\nlocale=fr\n\n[PythonPlugins]\nother=true\ngeoplant_qgis=false\n\n[Map]\nx=1\n")
    install_plugin.set_plugin_enabled(ini, "geoplant_qgis", True)
    text = ini.read_text()
    assert "geoplant_qgis=true" in text and "geoplant_qgis=false" not in text
    assert "locale=fr" in text and "other=true" in text and "[Map]\nx=1" in text
    install_plugin.set_plugin_enabled(ini, "geoplant_qgis", True)
    assert ini.read_text().count("geoplant_qgis=") == 1


def test_enabling_creates_the_settings_file(tmp_path):
    ini = tmp_path / "profiles" / "default" / "QGIS" / "QGIS3.ini"
    install_plugin.set_plugin_enabled(ini, "geoplant_qgis", True)
    assert ini.read_text() == "[PythonPlugins]\ngeoplant_qgis=true\n"


def test_a_failed_dependency_install_leaves_the_installed_plugin_as_it_was(tmp_path, monkeypatch):
    """pip failing (no network...) during a reinstall keeps the old plugin and its dependencies."""
    build = tmp_path / "build" / "geoplant_qgis"
    build.mkdir(parents=True)
    (build / "metadata.txt").write_text("[general]\nversion=2\n")
    root = tmp_path / "root"
    plugins = install_plugin.plugins_dir(root, "default")
    old = plugins / "geoplant_qgis"
    (old / "_deps" / "onnxruntime").mkdir(parents=True)
    (old / "_deps" / "onnxruntime" / "__init__.py").write_text("old onnxruntime")
    (old / "_deps" / install_plugin.STAMP).write_text("digest of older requirements\n")
    (old / "metadata.txt").write_text("[general]\nversion=1\n")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("onnxruntime==99.0\n")

    def pip_fails(command, check):
        Path(command[command.index("--target") + 1], "half-installed").mkdir(parents=True)
        raise subprocess.CalledProcessError(1, command)

    monkeypatch.setattr(install_plugin.subprocess, "run", pip_fails)
    with pytest.raises(subprocess.CalledProcessError):
        install_plugin.install(build, root, requirements=requirements)
    assert (old / "metadata.txt").read_text() == "[general]\nversion=1\n"
    assert (old / "_deps" / "onnxruntime" / "__init__.py").read_text() == "old onnxruntime"
    assert sorted(p.name for p in (old / "_deps").iterdir()) == [install_plugin.STAMP, "onnxruntime"]
    assert [p.name for p in plugins.iterdir()] == ["geoplant_qgis"]  # no staging folder left


@pytest.fixture(scope="module")
def installed_profile(tmp_path_factory):
    """A fresh QGIS profile root with the plugin installed the way `make install` does."""
    root = tmp_path_factory.mktemp("profile-root")
    install_into(root, with_dependencies=True)
    return root


def test_install_puts_plugin_and_dependencies_in_the_profile(installed_profile):
    plugin = installed_profile / "profiles" / "default" / "python" / "plugins" / "geoplant_qgis"
    assert (plugin / "metadata.txt").exists() and (plugin / "resources_rc.py").exists()
    assert (plugin / "_deps" / "onnxruntime" / "__init__.py").exists()
    # QGIS's numpy must never be shadowed by one in the plugin's dependency folder
    assert not (plugin / "_deps" / "numpy").exists()
    ini = installed_profile / "profiles" / "default" / "QGIS" / "QGIS3.ini"
    assert "geoplant_qgis=true" in ini.read_text()


def test_reinstall_keeps_current_dependencies(installed_profile):
    deps = installed_profile / "profiles" / "default" / "python" / "plugins" / "geoplant_qgis" / "_deps"
    marker = deps / "onnxruntime" / "kept-marker"
    marker.write_text("x")
    install_into(installed_profile, with_dependencies=True)
    assert marker.exists(), "a reinstall with the same requirements must not reinstall dependencies"


def test_loads_unloads_and_reloads_like_qgis_does(installed_profile):
    seen = load_through_qgis_utils(installed_profile / "profiles" / "default" / "python" / "plugins")
    loaded = seen["loaded"]
    assert loaded["providers_named_geoplant"] == 1
    assert loaded["toolbar_actions"] == ["GeoPlantAction"]
    assert loaded["menu_actions"] == ["GeoPlantAction"]
    assert NEED_ONNXRUNTIME | WITHOUT_ONNXRUNTIME <= set(loaded["algorithms"])
    # loading without pandas, rasterio and onnxruntime: 0.3 s less for every qgis_process call
    assert seen["heavy_modules_at_load"] == []
    assert seen["dock_opened"] == 1
    assert not [m for m in seen["messages"] if "Missing" in m or "cannot" in m], seen["messages"]
    assert seen["unloaded"] == {
        "providers_named_geoplant": 0,
        "algorithms": [],
        "toolbar_actions": [],
        "menu_actions": [],
        "docks": 0,
    }
    assert seen["reloaded"] == loaded | {"docks": 0}


def test_package_zip_installs_and_loads_without_onnxruntime(tmp_path):
    subprocess.run(["make", "-s", "package"], cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    version = read_metadata(ROOT / "metadata.txt")["version"]
    archive = ROOT / "dist" / f"geoplant_qgis-{version}.zip"
    with zipfile.ZipFile(archive) as zipped:
        names = set(zipped.namelist())
        assert {
            "geoplant_qgis/metadata.txt",
            "geoplant_qgis/__init__.py",
            "geoplant_qgis/resources_rc.py",
            "geoplant_qgis/icons/geoplant.svg",
        } <= names
        assert not [n for n in names if "__pycache__" in n or "/_deps/" in n]
        # What QGIS's "Install from ZIP" does: unpack into the profile's plugins folder.
        plugins = tmp_path / "plugins"
        zipped.extractall(plugins)
    seen = load_through_qgis_utils(plugins)
    loaded = seen["loaded"]
    # No onnxruntime here: the plugin loads, says exactly what to install, registers the rest.
    assert loaded["providers_named_geoplant"] == 1
    assert WITHOUT_ONNXRUNTIME <= set(loaded["algorithms"])
    assert not NEED_ONNXRUNTIME & set(loaded["algorithms"])
    assert any("onnxruntime" in m and "install" in m.lower() for m in seen["messages"]), seen["messages"]


@pytest.mark.qgis_process
def test_qgis_process_lists_the_algorithms(installed_profile):
    done = qgis_process(installed_profile, "list")
    assert done.returncode == 0, done.stderr
    listed = {line.split()[0] for line in done.stdout.splitlines() if line.strip().startswith("geoplant:")}
    assert NEED_ONNXRUNTIME | WITHOUT_ONNXRUNTIME <= listed


@pytest.mark.qgis_process
def test_qgis_process_runs_an_algorithm(installed_profile, tmp_path):
    from tiny_models import linear_point_model, save_linear_point_model

    model_path = save_linear_point_model(tmp_path / "tiny.onnx")
    _, card = linear_point_model()
    out_json = tmp_path / "card.json"
    done = qgis_process(
        installed_profile, "run", "geoplant:modelinfo", "--", f"MODEL={model_path}", f"OUTPUT_JSON={out_json}"
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(out_json.read_text())["species"] == card.to_dict()["species"]


def test_build_is_the_package_plus_metadata():
    build = build_plugin()
    assert (build / "metadata.txt").read_text() == (ROOT / "metadata.txt").read_text()
    assert not list(build.rglob("__pycache__"))
