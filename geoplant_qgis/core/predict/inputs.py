"""Inputs: the samplers of every model input, and cell centres -> the model's feeds.

One windowed read per source file per block (:mod:`core.sampling`); ``fill`` and the
card's normalisation applied (except to the inputs the inference plan normalises in its
graph, ``leave_raw``, fixed when the stage is made); where the sources can give values
(:meth:`Inputs.reach`, :meth:`Inputs.share_outside`, :meth:`Inputs.check_overlap`),
from the samplers' public :meth:`~core.sampling.PointSampler.footprints`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import InputDataError
from ..grid import outline
from .inference import lazy_patches

if TYPE_CHECKING:
    from ..grid import Grid
    from ..modelcard import ModelCard
    from ..sampling import Footprint
    from ..sources import BandRef

#: cells per side of the tiles :meth:`Inputs.reach` checks against the sources
REACH_TILE = 32
#: points per side of the grid's outline transformed to check it lies inside the sources
OUTLINE_POINTS = 65

Required = tuple[Any, bool, np.ndarray, np.ndarray, list["Footprint"]]


#: rasters named in a missing-variables message (the rest counted)
SHOWN_RASTERS = 12


def resolve_inputs(card: ModelCard, raster_paths: list, mapping) -> dict[str, BandRef]:
    """Every variable of ``card`` -> its band (:func:`core.sources.locate_variables`: band
    descriptions, one-band file stems, folders of rasters, MAPPING). What is missing is
    reported per input, a cube's in runs of consecutive elements ("bioclim: 12 of 912
    missing: tas_2018-01 to tas_2018-12 (12)")."""
    from ..cubenames import describe_missing
    from ..modelcard import listed
    from ..sources import available_text, locate_variables

    refs, missing, catalogue = locate_variables(card.variable_names(), raster_paths, mapping)
    if not missing:
        return refs
    lost = set(missing)
    parts = []
    for spec in card.inputs:
        names = spec.source_names
        if not lost.intersection(names):
            continue
        if spec.kind == "cube":
            parts.append(describe_missing(f"'{spec.name}'", names, lost))
        else:
            gone = [n for n in names if n in lost]
            parts.append(f"'{spec.name}': {len(gone)} of {len(names)} missing: {listed(gone, 20)}")
    raise InputDataError(
        f"{len(missing):,} variable(s) not found in the rasters: {'; '.join(parts)}. A variable is a band "
        "whose description is its name, or a one-band raster named after it (case, '_', '-' and spaces "
        "ignored; a folder given as a raster stands for every raster in it). Available: "
        f"{available_text(catalogue, SHOWN_RASTERS)}. Give the rest with MAPPING, e.g. "
        f"'{missing[0]}=/path/to/raster.tif#1'."
    )


class Inputs:
    """The samplers of every model input, and the cell -> tensor preparation."""

    def __init__(
        self,
        card: ModelCard,
        raster_paths: Iterable[str | os.PathLike[str]] | None,
        mapping: Mapping[str, BandRef] | str | None,
        crs: Any,
        leave_raw: frozenset[str] = frozenset(),
    ):
        """Samplers for every input of ``card`` in ``crs``; variables resolved from the
        rasters and ``mapping`` (:func:`core.sources.resolve_variables`). ``leave_raw``:
        inputs whose normalisation the inference graph does (fed raw)."""
        from ..sampling import PatchSampler, PointSampler
        from ..sources import parse_mapping

        if isinstance(mapping, str):
            mapping = parse_mapping(mapping)
        refs = resolve_inputs(card, list(raster_paths or []), mapping or None)
        self.specs = card.inputs
        self.leave_raw = frozenset(leave_raw)
        self.refs = {spec.name: [refs[n] for n in spec.source_names] for spec in card.inputs}
        self.samplers: list[Any] = []
        self._required_cache: list[Required] | None = None
        self._inside_key: tuple[Any, ...] | None = None
        self._inside = False
        try:
            for spec in card.inputs:
                sampler: PatchSampler | PointSampler
                if spec.kind == "patch":
                    sampler = PatchSampler(
                        self.refs[spec.name], int(spec.size or 0), float(spec.pixel_size_m or 0), crs
                    )
                else:
                    sampler = PointSampler(self.refs[spec.name], crs)
                self.samplers.append(sampler)
        except BaseException:
            self.close()
            raise

    def prepare(self, xs: np.ndarray, ys: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:
        """Cell centres -> (feeds of the valid cells, valid bool [N]).

        ``fill`` replaces NaN (a raw value); otherwise a cell with any NaN is invalid. The
        card's normalisation is applied except to the inputs named in ``leave_raw`` (the
        graph normalises those). A patch input without ``fill`` is fed as a
        :class:`core.sampling.PatchSelection`, not yet copied (the inference workers cut it).
        """
        leave_raw = self.leave_raw
        n = len(xs)
        valid = np.ones(n, dtype=bool)
        tensors, lazy = {}, {}
        for spec, sampler in zip(self.specs, self.samplers, strict=True):
            if lazy_patches(spec):
                # validity from the fine grid; the valid patches are cut by the inference threads
                pre = spec.apply_head if spec.head else None  # clip, power...: on the fine grid
                lazy[spec.name] = patches = sampler.patches(xs, ys, pre)
                valid &= patches.valid
                continue
            tensor, complete = spec.prepare(sampler.sample(xs, ys), normalise=spec.name not in leave_raw)
            valid &= complete
            tensors[spec.name] = tensor
        if valid.all():
            feeds = {k: np.ascontiguousarray(t, dtype=np.float32) for k, t in tensors.items()}
        else:
            feeds = {k: np.ascontiguousarray(t[valid], dtype=np.float32) for k, t in tensors.items()}
        for spec in self.specs:
            if spec.name in lazy:
                patches = lazy[spec.name]
                if spec.name not in leave_raw:
                    patches.normalise(*spec.affine())
                feeds[spec.name] = patches.selection(None if valid.all() else valid)
        return feeds, valid

    # -- where the sources can give values ------------------------------------------------

    def _required(self) -> list[Required]:
        """The source files an input without ``fill`` reads (a cell none of them reaches gets
        no value), grouped by CRS: [(CRS, same as the grid's, bounds [m, 4] (left, bottom,
        right, top of the corners), halos [m] (patch half-width, grid metres), footprints)]."""
        if self._required_cache is None:
            groups: dict[str, list[Any]] = {}
            seen = set()
            for spec, sampler in zip(self.specs, self.samplers, strict=True):
                if spec.fill is not None:
                    continue
                halo = (spec.size or 0) * (spec.pixel_size_m or 0.0) / 2.0 if spec.kind == "patch" else 0.0
                for footprint in sampler.footprints():
                    if (footprint.path, halo) in seen:
                        continue
                    seen.add((footprint.path, halo))
                    key = footprint.crs.to_wkt()
                    group = groups.setdefault(key, [footprint.crs, footprint.same_crs, [], [], []])
                    group[2].append(footprint.bounds)
                    group[3].append(halo)
                    group[4].append(footprint)
            self._required_cache = [
                (crs, same, np.array(bounds, dtype=np.float64), np.array(halos), footprints)
                for crs, same, bounds, halos, footprints in groups.values()
            ]
        return self._required_cache

    def _transform(self, crs, xs, ys):
        from rasterio.warp import transform

        with np.errstate(invalid="ignore"):
            tx, ty = transform(self.samplers[0].crs, crs, xs.ravel(), ys.ravel())
        return (
            np.asarray(tx, dtype=np.float64).reshape(xs.shape),
            np.asarray(ty, dtype=np.float64).reshape(xs.shape),
        )

    def grid_inside(self, grid: Grid) -> bool:
        """True when the whole grid lies inside every required source (its densified outline
        transformed): then :meth:`reach` has nothing to cut. A wrong True would only cost
        time (every cell sampled, as before), never values."""
        key = (grid.crs, grid.left, grid.top, grid.width, grid.height, grid.cell_size)
        if self._inside_key != key:
            self._inside_key, self._inside = key, False
            left, bottom, right, top = grid.bounds
            xs, ys = outline(grid.bounds, OUTLINE_POINTS)
            inside = True
            for crs, same, bounds, halos, _ in self._required():
                try:
                    tx, ty = (xs, ys) if same else self._transform(crs, xs, ys)
                except Exception:
                    return False
                if not (np.isfinite(tx).all() and np.isfinite(ty).all()):
                    return False
                x0, x1, y0, y1 = tx.min(), tx.max(), ty.min(), ty.max()
                pad = 0.01 * max(x1 - x0, y1 - y0) * (1.0 + halos / max(right - left, top - bottom))
                inside &= bool(
                    np.all((bounds[:, 0] < x0 - pad) & (bounds[:, 2] > x1 + pad))
                    and np.all((bounds[:, 1] < y0 - pad) & (bounds[:, 3] > y1 + pad))
                )
            self._inside = inside
        return self._inside

    def reach(self, grid, row: int, col: int, rows: int, cols: int, tile: int = REACH_TILE):
        """bool [rows * cols]: False for the cells of the window that cannot get a value for
        every input without ``fill`` (no required source overlaps them); None when all may.

        The window is cut into tiles of ``tile`` x ``tile`` cells; the tile corners are
        transformed to each source CRS (once per CRS) and a tile is kept when the bounding
        box of its corners, widened by a quarter of its size (curvature) and by the patch
        half-width, overlaps the source's. Conservative: a tile whose corners do not all
        transform is kept (its cells are then sampled and found invalid as before).
        """
        required = self._required()
        if not required or self.grid_inside(grid):
            return None
        r_edges = np.unique(np.r_[np.arange(row, row + rows, tile), row + rows])
        c_edges = np.unique(np.r_[np.arange(col, col + cols, tile), col + cols])
        size = grid.cell_size
        px, py = np.meshgrid(grid.left + c_edges * size, grid.top - r_edges * size)
        tile_w = (np.diff(c_edges)[None, :] * size)[None]  # metres, [1, 1, tiles x]
        tile_h = (np.diff(r_edges)[:, None] * size)[None]
        keep = np.ones((len(r_edges) - 1, len(c_edges) - 1), dtype=bool)
        for crs, same, bounds, halos, _ in required:
            try:
                tx, ty = (px, py) if same else self._transform(crs, px, py)
            except Exception:  # no transformation: keep everything
                return None
            corners_x = np.stack([tx[:-1, :-1], tx[:-1, 1:], tx[1:, :-1], tx[1:, 1:]])
            corners_y = np.stack([ty[:-1, :-1], ty[:-1, 1:], ty[1:, :-1], ty[1:, 1:]])
            finite = np.isfinite(corners_x).all(axis=0) & np.isfinite(corners_y).all(axis=0)
            with np.errstate(invalid="ignore"):
                x0, x1 = corners_x.min(axis=0)[None], corners_x.max(axis=0)[None]
                y0, y1 = corners_y.min(axis=0)[None], corners_y.max(axis=0)[None]
                w, h = x1 - x0, y1 - y0
                per_metre = np.maximum(w / tile_w, h / tile_h)
                margin = (
                    0.25 * np.maximum(w, h)
                    + halos[:, None, None] * per_metre
                    + 1e-9 * (np.abs(x0) + np.abs(y0) + 1.0)
                )  # [sources, tiles y, tiles x]
                b = bounds[:, :, None, None]
                overlaps = (x0 - margin < b[:, 2]) & (x1 + margin > b[:, 0])
                overlaps &= (y0 - margin < b[:, 3]) & (y1 + margin > b[:, 1])
            keep &= ~finite | overlaps.all(axis=0)
        if keep.all():
            return None
        counts_r, counts_c = np.diff(r_edges), np.diff(c_edges)
        return np.repeat(np.repeat(keep, counts_r, axis=0), counts_c, axis=1).ravel()

    def share_outside(self, grid, samples: int = 256) -> float:
        """Share of the grid's cells (estimated on up to ``samples`` x ``samples`` cell
        centres) that lie outside a source of an input without ``fill``."""
        required = self._required()
        if not required:
            return 0.0
        height, width = grid.shape
        rows = np.unique(np.linspace(0, height - 1, min(samples, height)).round().astype(np.int64))
        cols = np.unique(np.linspace(0, width - 1, min(samples, width)).round().astype(np.int64))
        size = grid.cell_size
        px, py = np.meshgrid(grid.left + (cols + 0.5) * size, grid.top - (rows + 0.5) * size)
        px, py = px.ravel(), py.ravel()
        inside = np.ones(px.size, dtype=bool)
        for crs, same, _, _, footprints in required:
            try:
                tx, ty = (px, py) if same else self._transform(crs, px, py)
            except Exception:
                return 0.0
            for footprint in footprints:
                inside &= footprint.contains(tx, ty)
        return 1.0 - float(inside.mean())

    def close(self):
        for sampler in self.samplers:
            try:
                sampler.close()
            except Exception:  # closing read-only datasets
                pass
        self.samplers = []

    def check_overlap(self, grid) -> None:
        """Refuse up front a grid that does not overlap a source (of an input without fill).

        The samplers' open datasets are used, and the grid's bounds are transformed once per
        source CRS (each costs tens of ms; a card may name 19 variables in one CRS)."""
        from ..grid import outline_bounds

        left, bottom, right, top = grid.bounds
        footprints = {f.path: f for sampler in self.samplers for f in sampler.footprints()}
        in_crs: dict[str, tuple | None] = {}  # CRS WKT -> the grid's bounds in it (None: no transform)
        for spec in self.specs:
            if spec.fill is not None:
                continue
            for name, ref in zip(spec.source_names, self.refs[spec.name], strict=True):
                footprint = footprints[str(ref.path)]
                key = footprint.crs.to_wkt()
                if key not in in_crs:
                    try:
                        in_crs[key] = outline_bounds(grid.bounds, grid.crs, footprint.crs)
                    except Exception:  # no valid transform: leave it to the sampler
                        in_crs[key] = None
                b, s = in_crs[key], footprint.bounds
                if b is None:
                    continue
                if b[0] >= s[2] or b[2] <= s[0] or b[1] >= s[3] or b[3] <= s[1]:
                    raise InputDataError(
                        f"The extent does not overlap the raster of variable '{name}' "
                        f"({os.path.basename(ref.path)}): the grid covers "
                        f"({left:.0f}, {bottom:.0f}, {right:.0f}, {top:.0f}) in {grid.crs}, i.e. "
                        f"({b[0]:.4f}, {b[1]:.4f}, {b[2]:.4f}, {b[3]:.4f}) in the raster's CRS, "
                        f"and the raster covers ({s[0]:.4f}, {s[1]:.4f}, {s[2]:.4f}, "
                        f"{s[3]:.4f}). Choose an extent inside the rasters."
                    )
