"""Patches kept as fine grids until the inference threads copy them into their buffers.

:class:`Patches` (made by :meth:`core.sampling.PatchSampler.patches`) answers which
patches are complete in O(1) each and normalises on the fine grids;
:class:`PatchSelection` is the not-yet-copied model feed the inference threads slice.
"""

from __future__ import annotations

import numpy as np


class Patches:
    """P x P patches of ``n`` points, kept as fine grids and offsets until copied.

    ``valid[i]``: patch i has no NaN pixel in any channel. On a fine grid this is answered
    for every patch at once from a summed-area table of the grid's NaN mask (O(1) per
    patch) instead of a pass over the [N, C, P, P] tensor; :meth:`copy_to` then copies
    patches straight from strided views of the grid into the caller's buffer, runs of
    patches on one grid row (a row of cells) with one copy each.
    """

    def __init__(self, n: int, channels: int, size: int, pre=None):
        """``pre``: a function applied in place to each fine grid or gathered array before
        validity is known (a card's clip/power steps; it turns bad values into NaN)."""
        self.n, self.channels, self.size = int(n), int(channels), int(size)
        self.pre = pre
        self.valid = np.ones(self.n, dtype=bool)
        self._pieces: list[tuple] = []  # (point indices, fine grid, rows, cols) or (indices, array)

    def add_lattice(self, idx: np.ndarray, fine: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> None:
        p = self.size
        if self.pre is not None:
            fine = self.pre(fine)
        nan = np.isnan(fine[0]) if len(fine) == 1 else np.isnan(fine).any(axis=0)
        table = np.zeros((nan.shape[0] + 1, nan.shape[1] + 1), dtype=np.int32)
        np.cumsum(nan, axis=0, dtype=np.int32, out=table[1:, 1:])
        np.cumsum(table[1:, 1:], axis=1, out=table[1:, 1:])
        bad = table[rows + p, cols + p] - table[rows, cols + p] - table[rows + p, cols] + table[rows, cols]
        self.valid[idx] = bad == 0
        self._pieces.append((idx, fine, rows, cols))

    def add_array(self, idx: np.ndarray, array: np.ndarray) -> None:
        if self.pre is not None:
            array = self.pre(array)
        self.valid[idx] = ~np.isnan(array.reshape(len(idx), -1)).any(axis=1)
        self._pieces.append((idx, array))

    def normalise(self, mul: np.ndarray | None, add: np.ndarray | None) -> None:
        """``x * mul + add`` in place (per channel: [C, 1, 1] or scalars), on the fine grids:
        a pixel is shared by every patch over it (41 patches of 64 px at 10 m per 100 m
        cell), so this costs a small share of normalising the patches. NaN stays NaN."""
        # [C, 1, 1] broadcasts over fine grids [C, H, W] and gathered patches [k, C, P, P]
        mul = None if mul is None else np.reshape(mul, (-1, 1, 1))
        add = None if add is None else np.reshape(add, (-1, 1, 1))
        for piece in self._pieces:
            data = piece[1]
            if mul is not None:
                data *= mul
            if add is not None:
                data += add

    def selection(self, which: np.ndarray | None = None) -> PatchSelection:
        """The patches of the points selected by bool ``which`` (default all), in point
        order, not copied yet: a model feed the inference threads copy by slices."""
        if which is None:
            dest = np.arange(self.n)
            count = self.n
        else:
            dest = np.cumsum(which) - 1
            count = int(dest[-1]) + 1 if self.n else 0
        plan: list[tuple] = []
        for piece in self._pieces:
            idx = piece[0]
            sel = slice(None) if which is None else which[idx]
            where = dest[idx[sel]]  # ascending: a piece's points are in point order
            if not len(where):
                continue
            if len(piece) == 2:
                plan.append((where, piece[1][sel]))
            else:
                plan.append((where, piece[1], piece[2][sel], piece[3][sel]))
        return PatchSelection(plan, 0, count, (self.channels, self.size, self.size))

    def copy_to(self, out: np.ndarray, which: np.ndarray | None = None) -> int:
        """Write the patches of the points selected by bool ``which`` (default all), in
        point order, into ``out[:count]`` (float32 [>= count, C, P, P]); returns count."""
        selection = self.selection(which)
        selection.copy_into(out)
        return len(selection)


class PatchSelection:
    """Patches to copy into a model's input tensor, rows ``start`` to ``stop`` of a plan
    made by :meth:`Patches.selection`. Slicing gives a smaller selection, still not
    copied, so each inference thread copies its own micro-batch into a buffer that stays
    in its core's cache while the model reads it (copying a whole block first wrote tens
    of MB to memory, read back once)."""

    def __init__(self, plan: list, start: int, stop: int, patch_shape: tuple):
        self._plan, self.start, self.stop, self.patch_shape = plan, start, stop, patch_shape

    def __len__(self) -> int:
        return self.stop - self.start

    @property
    def shape(self) -> tuple:
        return (len(self), *self.patch_shape)

    def __getitem__(self, key: slice) -> PatchSelection:
        start, stop, step = key.indices(len(self))
        if step != 1:
            raise IndexError("a patch selection slices with step 1 only")
        return PatchSelection(self._plan, self.start + start, self.start + max(start, stop), self.patch_shape)

    def copy_into(self, out: np.ndarray) -> np.ndarray:
        """float32 ``out[:len(self)]`` filled with the patches; returns that view."""
        p = self.patch_shape[-1]
        for piece in self._plan:
            where = piece[0]
            lo, hi = np.searchsorted(where, [self.start, self.stop])
            if lo == hi:
                continue
            dest = where[lo:hi] - self.start
            if len(piece) == 2:
                out[dest] = piece[1][lo:hi]
                continue
            _, fine, rows, cols = piece
            _copy_runs(out, dest, fine, rows[lo:hi], cols[lo:hi], p)
        return out[: len(self)]


def _copy_runs(out, where, fine, rows, cols, p) -> None:
    """``out[where[i]] = fine[:, rows[i]:+p, cols[i]:+p]``, runs of patches on one grid row
    (a row of cells) with one strided copy each."""
    # numpy's stubs take one axis only; a tuple of axes is documented and works
    windows = np.lib.stride_tricks.sliding_window_view(fine, (p, p), axis=(1, 2))  # type: ignore[call-overload]
    windows = windows.transpose(1, 2, 0, 3, 4)  # [H', W', C, P, P], a view
    # runs: same grid row, consecutive destinations, evenly spaced columns
    step = np.diff(cols)
    brk = (np.diff(rows) != 0) | (np.diff(where) != 1) | (step <= 0)
    brk[1:] |= step[1:] != step[:-1]
    starts = np.r_[0, np.flatnonzero(brk) + 1]
    stops = np.r_[starts[1:], len(rows)]
    for a, b in zip(starts.tolist(), stops.tolist(), strict=True):
        if b - a == 1:
            out[where[a]] = windows[rows[a], cols[a]]
            continue
        d = int(cols[a + 1] - cols[a])  # one step through the run (a step change breaks it)
        view = windows[rows[a], int(cols[a]) : int(cols[b - 1]) + 1 : d]
        np.copyto(out[where[a] : where[a] + (b - a)], view)
