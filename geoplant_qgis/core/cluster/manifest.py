"""The work folder of a cluster run and its manifest: what lets a run resume.

The work folder sits beside the first output, hidden and recognisable as ours:
``.geoplant-cluster-<output stem>-<fingerprint[:16]>.work/``. It holds the tile files
(``<tile key>-<kind>.tif``, each written by its task under a temporary name then renamed)
and ``manifest.json``: the request's fingerprint (model checksum, inputs, grid, area,
outputs spec, tiling) and, for each finished tile, its files' sha256 and valid cells.
The same arguments give the same fingerprint, so the same folder: a run started again
takes the tiles whose files are there with the recorded checksum and recomputes the others.
The folder is removed after a successful publish.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import OutputError

if TYPE_CHECKING:
    from ..predict.request import PredictRequest
    from .tiles import Layout, Tile

MANIFEST = "manifest.json"
FORMAT = "geoplant-cluster/1"
PREFIX = ".geoplant-cluster-"
SUFFIX = ".work"
_CHUNK = 1 << 20


def sha256_file(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _input_identity(path: str) -> Any:
    """A raster input as the fingerprint sees it: its name, and its size and modification
    time when it is a local file (a /vsis3/ or /vsicurl/ name: the name only)."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return path
    return [os.path.abspath(path), st.st_size, st.st_mtime_ns]


def fingerprint(request: PredictRequest, layout: Layout) -> dict[str, Any]:
    """What a resumed run must share with the first one, as JSON-able values."""
    grid = request.grid
    specs = request.output_specs()
    area = None
    if request.area is not None:
        text = json.dumps(list(request.area), sort_keys=True, default=str)
        area = hashlib.sha256(text.encode()).hexdigest()
    return {
        "format": FORMAT,
        "model": {"path": os.path.abspath(request.model), "sha256": sha256_file(request.model)},
        "rasters": [_input_identity(p) for p in request.rasters],
        "mapping": {k: [_input_identity(v.path), int(v.band)] for k, v in sorted(request.mapping.items())},
        "grid": [str(grid.crs), grid.cell_size, grid.left, grid.top, grid.width, grid.height],
        "area": area,
        "outputs": {
            kind: [s.path, s.count, s.dtype, s.nodata, list(s.descriptions)] for kind, s in specs.items()
        },
        "columns": list(request.columns),
        "top_k": request.top_k,
        "threshold": request.threshold,
        "options": {
            k: repr(getattr(request, k))
            for k in ("threads", "device", "topk_mode", "topk_margin")
            if hasattr(request, k)
        },
        "tiling": [layout.tile_rows, layout.tile_cols, layout.block_cells, layout.strip],
    }


def fingerprint_digest(print_: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(print_, sort_keys=True).encode()).hexdigest()


def work_folder(request: PredictRequest, digest: str) -> str:
    """The work folder's path (not created): beside the first output."""
    first = next(iter(request.outputs.values()))
    folder, name = os.path.split(first)
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", os.path.splitext(name)[0])[:60]
    return os.path.join(folder, f"{PREFIX}{stem}-{digest[:16]}{SUFFIX}")


def other_work_folders(request: PredictRequest, keep: str) -> list[str]:
    """Work folders of earlier interrupted runs for the same first output with other arguments."""
    first = next(iter(request.outputs.values()))
    folder, name = os.path.split(first)
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", os.path.splitext(name)[0])[:60]
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    pattern = re.compile(re.escape(f"{PREFIX}{stem}-") + r"[0-9a-f]{16}" + re.escape(SUFFIX) + "$")
    return sorted(
        os.path.join(folder, n) for n in names if pattern.match(n) and os.path.join(folder, n) != keep
    )


def tile_path(folder: str, tile: Tile, kind: str) -> str:
    return os.path.join(folder, f"{tile.key}-{kind}.tif")


@dataclass
class Manifest:
    """The manifest of one work folder: the fingerprint and the finished tiles."""

    folder: str
    fingerprint: dict[str, Any]
    digest: str
    #: {tile key: {"files": {kind: sha256}, "valid": cells}}
    tiles: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def path(self) -> str:
        return os.path.join(self.folder, MANIFEST)

    @classmethod
    def open(cls, folder: str, print_: dict[str, Any], digest: str) -> Manifest:
        """The folder's manifest when its fingerprint is this run's, else a new empty one
        (the folder made if needed)."""
        try:
            os.makedirs(folder, exist_ok=True)
        except OSError as error:
            raise OutputError(
                f"Cannot create the work folder {folder}: {error.strerror or error}. "
                "Choose an output folder you can write to."
            ) from None
        manifest = cls(folder, print_, digest)
        try:
            with open(manifest.path, encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError):
            return manifest
        if data.get("digest") == digest and data.get("fingerprint") == print_:
            manifest.tiles = {str(k): dict(v) for k, v in (data.get("tiles") or {}).items()}
        return manifest

    def finished(self, tile: Tile, kinds: list[str]) -> bool:
        """True when ``tile`` is recorded and each of its files is there with its checksum."""
        entry = self.tiles.get(tile.key)
        if not entry:
            return False
        files = entry.get("files") or {}
        for kind in kinds:
            path = tile_path(self.folder, tile, kind)
            try:
                if files.get(kind) != sha256_file(path):
                    return False
            except OSError:
                return False
        return True

    def forget(self, tile: Tile) -> None:
        self.tiles.pop(tile.key, None)

    def record(self, tile: Tile, files: dict[str, str], valid: int) -> None:
        self.tiles[tile.key] = {"files": dict(files), "valid": int(valid)}
        self.save()

    def save(self) -> None:
        """Written under a temporary name, then renamed: never half a manifest."""
        data = {"format": FORMAT, "digest": self.digest, "fingerprint": self.fingerprint, "tiles": self.tiles}
        tmp = os.path.join(self.folder, f".{MANIFEST}.{os.getpid()}.part")
        with open(tmp, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=1, sort_keys=True)
        os.replace(tmp, self.path)


__all__ = [
    "MANIFEST",
    "Manifest",
    "fingerprint",
    "fingerprint_digest",
    "other_work_folders",
    "sha256_file",
    "tile_path",
    "work_folder",
]
