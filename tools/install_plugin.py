#!/usr/bin/env python3
"""Install (or remove) the built plugin in a QGIS profile and enable it.

QGIS desktop and qgis_process load ``<profile root>/profiles/<profile>/python/plugins/<name>``
only when ``[PythonPlugins] <name>=true`` is set in that profile's ``QGIS/QGIS3.ini``.
The runtime dependencies QGIS lacks (``requirements.txt``: onnxruntime, onnx and onnx's
protobuf) go into ``<plugin>/_deps`` with ``pip --target --no-deps``: the plugin appends
that folder to sys.path, so QGIS's own numpy always wins and can never be upgraded under
it (onnx 1.17 works with Debian's numpy 1.24; onnx >= 1.18 needs numpy 2).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

PLUGIN_NAME = "geoplant_qgis"
DEPS_FOLDER = "_deps"
STAMP = ".requirements.sha256"


ROOT = Path(__file__).resolve().parents[1]


def build_plugin(root: Path = ROOT) -> Path:
    """``make build``: the plugin folder as QGIS sees it (``build/plugin/geoplant_qgis``)."""
    subprocess.run(["make", "-s", "build"], cwd=root, check=True, stdout=subprocess.DEVNULL)
    return Path(root) / "build" / "plugin" / "geoplant_qgis"


def headless_env(profile_root: Path | None = None) -> dict:
    """The environment to run QGIS (``qgis_process.bin``, the desktop) without a display and
    as a user's QGIS runs: nothing from our venv, so it finds its packages the way it will."""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if ".venv" not in p)
    if profile_root is not None:
        env["QGIS_CUSTOM_CONFIG_PATH"] = str(profile_root)
    return env


def default_profile_root() -> Path:
    custom = os.environ.get("QGIS_CUSTOM_CONFIG_PATH")
    if custom:
        return Path(custom)
    return Path.home() / ".local" / "share" / "QGIS" / "QGIS3"


def plugins_dir(profile_root: Path, profile: str) -> Path:
    return profile_root / "profiles" / profile / "python" / "plugins"


def settings_file(profile_root: Path, profile: str) -> Path:
    return profile_root / "profiles" / profile / "QGIS" / "QGIS3.ini"


def set_plugin_enabled(ini: Path, name: str, enabled: bool) -> None:
    """Set ``[PythonPlugins] name=true|false`` without disturbing the rest of QSettings' file."""
    ini.parent.mkdir(parents=True, exist_ok=True)
    lines = ini.read_text(encoding="utf-8").splitlines() if ini.exists() else []
    value = f"{name}={'true' if enabled else 'false'}"
    section_start = next((i for i, line in enumerate(lines) if line.strip() == "[PythonPlugins]"), None)
    if section_start is None:
        if lines and lines[-1].strip():
            lines.append("")
        lines += ["[PythonPlugins]", value]
    else:
        end = next(
            (i for i in range(section_start + 1, len(lines)) if lines[i].startswith("[")),
            len(lines),
        )
        for i in range(section_start + 1, end):
            if lines[i].split("=", 1)[0].strip() == name:
                lines[i] = value
                break
        else:
            lines.insert(section_start + 1, value)
    ini.write_text("\n".join(lines) + "\n", encoding="utf-8")


def requirement_lines(requirements: Path) -> list[str]:
    lines = []
    for raw in requirements.read_text(encoding="utf-8").splitlines():
        line = raw.split("#", 1)[0].strip()
        if line and not line.startswith("-"):
            lines.append(line)
    return lines


def install_dependencies(target: Path, requirements: Path, constraints: Path | None) -> None:
    wanted = requirement_lines(requirements)
    digest = hashlib.sha256("\n".join(wanted).encode()).hexdigest()
    stamp = target / STAMP
    if stamp.exists() and stamp.read_text().strip() == digest:
        return
    # installed into a fresh folder and swapped in only when pip succeeds: a failed
    # install (no network...) keeps the dependencies that were there
    fresh = target.with_name(target.name + ".new")
    shutil.rmtree(fresh, ignore_errors=True)
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(fresh)]
    if constraints is not None:
        command += ["-c", str(constraints)]
    try:
        subprocess.run(command + wanted, check=True)
        (fresh / STAMP).write_text(digest + "\n")
    except BaseException:
        shutil.rmtree(fresh, ignore_errors=True)
        raise
    shutil.rmtree(target, ignore_errors=True)
    fresh.rename(target)


def install(
    build_dir: Path,
    profile_root: Path,
    profile: str = "default",
    requirements: Path | None = None,
    constraints: Path | None = None,
) -> Path:
    if not (build_dir / "metadata.txt").exists():
        raise SystemExit(f"{build_dir} is not a built plugin (no metadata.txt): run 'make build' first")
    plugins = plugins_dir(profile_root, profile)
    plugins.mkdir(parents=True, exist_ok=True)
    destination = plugins / PLUGIN_NAME
    staging = Path(tempfile.mkdtemp(prefix=f".{PLUGIN_NAME}-", dir=plugins))
    new = staging / PLUGIN_NAME
    old_deps = destination / DEPS_FOLDER
    try:
        shutil.copytree(build_dir, new, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        if old_deps.is_dir():  # keep installed dependencies; the stamp says if they are current
            shutil.move(str(old_deps), str(new / DEPS_FOLDER))
        if requirements is not None:
            install_dependencies(new / DEPS_FOLDER, requirements, constraints)
        if destination.exists():
            shutil.rmtree(destination)
        new.rename(destination)
    except BaseException:
        # the installed plugin stays as it was, with its dependencies
        if destination.is_dir() and not old_deps.exists() and (new / DEPS_FOLDER).is_dir():
            shutil.move(str(new / DEPS_FOLDER), str(old_deps))
        raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    set_plugin_enabled(settings_file(profile_root, profile), PLUGIN_NAME, True)
    return destination


def uninstall(profile_root: Path, profile: str = "default") -> None:
    shutil.rmtree(plugins_dir(profile_root, profile) / PLUGIN_NAME, ignore_errors=True)
    ini = settings_file(profile_root, profile)
    if ini.exists():
        set_plugin_enabled(ini, PLUGIN_NAME, False)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", type=Path, default=Path("build/plugin") / PLUGIN_NAME)
    parser.add_argument(
        "--profile-root",
        type=Path,
        default=None,
        help="default: $QGIS_CUSTOM_CONFIG_PATH " "or ~/.local/share/QGIS/QGIS3",
    )
    parser.add_argument("--profile", default="default")
    parser.add_argument(
        "--requirements", type=Path, default=None, help="runtime requirements to put in _deps"
    )
    parser.add_argument("--constraints", type=Path, default=None)
    parser.add_argument("--uninstall", action="store_true")
    args = parser.parse_args(argv)
    root = args.profile_root or default_profile_root()
    if args.uninstall:
        uninstall(root, args.profile)
        print(f"removed {PLUGIN_NAME} from {plugins_dir(root, args.profile)}")
        return 0
    destination = install(args.build, root, args.profile, args.requirements, args.constraints)
    print(f"installed and enabled {PLUGIN_NAME} in {destination}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
