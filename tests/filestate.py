"""What a folder holds, to compare before and after a run: the tests of "a user's files are sacred"."""

from __future__ import annotations

import hashlib
import os

from geoplant_qgis.core.files import is_own_temporary


def snapshot(root) -> dict:
    """Every file and folder under ``root``: files by the sha256 of their bytes, symbolic
    links by their target, folders as "dir"."""
    state = {}
    for folder, dirs, names in os.walk(root):
        for name in dirs + names:
            path = os.path.join(folder, name)
            rel = os.path.relpath(path, root)
            if os.path.islink(path):
                state[rel] = "link:" + os.readlink(path)
            elif os.path.isdir(path):
                state[rel] = "dir"
            else:
                with open(path, "rb") as handle:
                    state[rel] = hashlib.sha256(handle.read()).hexdigest()
    return state


def own_temporaries(root) -> list[str]:
    """Every name under ``root`` that a GeoPlant run's temporary file has."""
    return [
        os.path.join(folder, name)
        for folder, dirs, names in os.walk(root)
        for name in dirs + names
        if is_own_temporary(name)
    ]
