"""Stitching: object patches averaged into one canvas by their scan positions.

Pure numpy (no TensorFlow).

Public API
----------
``stitch_patches(patches, positions_xy, *, crop=20, placement="bilinear") -> Stitched``
    Average object patches into one canvas by scan position (central crop, overlap count).
``StreamingStitcher(all_positions_xy, patch_size, *, crop=20, placement="bilinear")``
    The same stitching fed batch by batch (``add(patches, positions_xy)``, ``result()``).
``largest_covered_rectangle(covered) -> (row0, col0, height, width)``
    The hole-free part of a canvas that metrics are computed on.
``as_patch_stack``, ``as_positions``
    Input checks shared with ``alignment``.

Conventions
-----------
Positions are object pixels, ``[x, y]`` with x the column and y the row. A patch at (x, y) shows
object rows ``y - N//2 + i`` and columns ``x - N//2 + j`` (the patch ``obj[y-N//2 : y-N//2+N,
x-N//2 : x-N//2+N]`` for integer positions). Image arrays are indexed ``[row, column]``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ptytui.errors import InputError

#: Central crop of each patch before stitching, in pixels (as PtychoPINN's stitching).
DEFAULT_STITCH_CROP = 20


@dataclass(frozen=True)
class Stitched:
    """Patches averaged into one canvas.

    Attributes
    ----------
    canvas : ndarray (H, W)
        Overlap-averaged object (complex when the patches are); 0 where no patch reached.
    weights : ndarray (H, W) float64
        How many patches covered each pixel (fractional with bilinear placement).
    origin : (float, float)
        Object coordinates (row, column) of canvas pixel (0, 0), from the absolute positions.
    crop : int
        Side M of the central crop actually used, min(crop, N).
    placement : str
        "bilinear" or "nearest".
    """

    canvas: np.ndarray
    weights: np.ndarray
    origin: tuple[float, float]
    crop: int
    placement: str

    @property
    def covered_fraction(self) -> float:
        """Fraction of canvas pixels that at least part of a patch reached."""
        return float(np.mean(self.weights > 0))


def as_patch_stack(patches: Any, where: str) -> np.ndarray:
    """Patches as a (B, N, N) stack (a trailing channel of 1 dropped); InputError naming ``where``
    when they are not B >= 1 square patches."""
    array = np.asarray(patches)
    if array.ndim == 4 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim != 3 or array.shape[1] != array.shape[2] or array.shape[0] == 0:
        raise InputError(where, "patches (B, N, N) or (B, N, N, 1)",
                         f"shape {tuple(np.shape(patches))}")
    return array


def as_positions(positions_xy: Any, count: int | None, where: str) -> np.ndarray:
    """Scan positions as a finite float64 (B, 2) array [x, y] in object pixels (B == ``count``
    when given); InputError naming ``where`` otherwise. Shared by stitching and alignment."""
    positions = np.asarray(positions_xy, dtype=np.float64)
    if positions.ndim != 2 or positions.shape[1] != 2 or positions.shape[0] == 0 or (
            count is not None and positions.shape[0] != count):
        want = f"({count}, 2)" if count is not None else "(B, 2)"
        raise InputError(where, f"positions_xy {want} [x, y] in object pixels",
                         f"shape {tuple(np.shape(positions_xy))}")
    if not np.all(np.isfinite(positions)):
        raise InputError(where, "finite positions", "NaN or Inf in positions_xy")
    return positions


def stitch_patches(patches: Any, positions_xy: Any, *, crop: int = DEFAULT_STITCH_CROP,
                   placement: str = "bilinear") -> Stitched:
    """Average object patches into one canvas by scan position.

    Each N x N patch is cropped to its central M x M (M = min(crop, N)), the offsets are taken
    relative to the centre of mass of the positions, every crop is placed on a canvas of
    M + 2*ceil(max |offset|) pixels per axis and the sum is divided by the same placement of
    ones (the overlap count). The canvas is sized per axis, so a square scan gives the square
    canvas of the single-max rule and a rectangular scan wastes no empty band.

    Parameters
    ----------
    patches : array (B, N, N) or (B, N, N, 1), real or complex
        Object patches, one per scan position.
    positions_xy : array (B, 2)
        Absolute scan positions in object pixels, [x, y] with x the column.
    crop : int
        Side M of the central crop, in pixels (20 by default, as PtychoPINN's stitching).
    placement : {"bilinear", "nearest"}
        "bilinear" splats each crop over the four nearest integer placements with bilinear
        weights (sub-pixel positions keep their fraction); "nearest" rounds each placement to
        the nearest pixel (half up).

    Returns
    -------
    Stitched
        Canvas, overlap weights, and the object (row, column) of canvas pixel (0, 0).

    See Also
    --------
    StreamingStitcher : the same placement, fed batch by batch (bounded memory).
    """
    where = "stitch_patches"
    stack = as_patch_stack(patches, where)
    positions = as_positions(positions_xy, stack.shape[0], where)
    stitcher = StreamingStitcher(positions, stack.shape[1], crop=crop, placement=placement)
    stitcher.add(stack, positions)
    return stitcher.result()


class StreamingStitcher:
    """``stitch_patches`` fed batch by batch: only the canvas sums stay in memory.

    The canvas geometry (centre of mass of the positions, reach, size) depends on every position,
    so all positions are given up front (they are small: (M, 2)); patches then arrive in batches
    with their own positions, in any order, and ``result()`` gives exactly what
    ``stitch_patches`` gives for all patches at once (up to float summation order).

    Parameters
    ----------
    all_positions_xy : array (M, 2)
        Every absolute position [x, y] (object pixels) that ``add`` will be given.
    patch_size : int
        N, the side of the square patches.
    crop, placement
        As in ``stitch_patches``.

    Examples
    --------
    >>> stitcher = StreamingStitcher(positions, N)        # doctest: +SKIP
    >>> for patches, xy in batches: stitcher.add(patches, xy)
    >>> stitched = stitcher.result()
    """

    def __init__(self, all_positions_xy: Any, patch_size: int, *, crop: int = DEFAULT_STITCH_CROP,
                 placement: str = "bilinear"):
        where = "StreamingStitcher"
        positions = as_positions(all_positions_xy, None, where)
        if placement not in ("bilinear", "nearest"):
            raise InputError(where, "placement 'bilinear' or 'nearest'", repr(placement))
        if int(crop) < 1:
            raise InputError(where, "crop >= 1 pixel", repr(crop))
        if int(patch_size) < 1:
            raise InputError(where, "patch_size >= 1 pixel", repr(patch_size))
        self.patch_size = int(patch_size)
        self.placement = placement
        self.side = min(int(crop), self.patch_size)
        self.start = (self.patch_size - self.side) // 2
        self.centre = positions.mean(axis=0)  # [x, y]
        offsets = positions - self.centre
        self.reach_x = int(math.ceil(np.max(np.abs(offsets[:, 0]))))
        self.reach_y = int(math.ceil(np.max(np.abs(offsets[:, 1]))))
        self.height = self.side + 2 * self.reach_y
        self.width = self.side + 2 * self.reach_x
        self._real = np.zeros(self.height * self.width, dtype=np.float64)
        self._imag = np.zeros(self.height * self.width, dtype=np.float64)
        self._weights = np.zeros(self.height * self.width, dtype=np.float64)
        self._complex = False
        self.count = 0
        grid_r, grid_c = np.meshgrid(np.arange(self.side), np.arange(self.side), indexing="ij")
        self._grid = grid_r * self.width + grid_c  # flat canvas index of each crop pixel at (0, 0)

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of the canvas in pixels."""
        return (self.height, self.width)

    def add(self, patches: Any, positions_xy: Any) -> "StreamingStitcher":
        """Place one batch of patches (B, N, N) or (B, N, N, 1) at their absolute positions (B, 2).

        Positions must lie within the range given to the constructor (up to rounding noise).
        """
        where = "StreamingStitcher.add"
        stack = as_patch_stack(patches, where)
        if stack.shape[1] != self.patch_size:
            raise InputError(where, f"patches of {self.patch_size} x {self.patch_size} px",
                             f"{stack.shape[1]} x {stack.shape[2]}")
        positions = as_positions(positions_xy, stack.shape[0], where)
        crops = stack[:, self.start:self.start + self.side, self.start:self.start + self.side]
        is_complex = np.iscomplexobj(crops)
        crops = crops.astype(np.complex128 if is_complex else np.float64)
        self._complex = self._complex or is_complex
        offsets = positions - self.centre
        # Top-left corner of each crop on the canvas (continuous); clipped so rounding noise in
        # reach + offset never steps off the canvas.
        top = np.clip(self.reach_y + offsets[:, 1], 0.0, 2.0 * self.reach_y)
        left = np.clip(self.reach_x + offsets[:, 0], 0.0, 2.0 * self.reach_x)
        if self.placement == "nearest":
            rows0 = np.floor(top + 0.5).astype(np.int64)
            cols0 = np.floor(left + 0.5).astype(np.int64)
            terms = [(rows0, cols0, np.ones(stack.shape[0]))]
        else:
            rows0 = np.floor(top).astype(np.int64)
            cols0 = np.floor(left).astype(np.int64)
            frac_r, frac_c = top - rows0, left - cols0
            terms = [
                (rows0 + dr, cols0 + dc, wr * wc)
                for dr, wr in ((0, 1.0 - frac_r), (1, frac_r))
                for dc, wc in ((0, 1.0 - frac_c), (1, frac_c))
            ]
        for rows, cols, term_weight in terms:
            used = term_weight > 0  # a zero-weight term may sit one pixel past the canvas edge
            if not np.any(used):
                continue
            flat = ((rows[used] * self.width + cols[used])[:, None, None] + self._grid).ravel()
            w = np.broadcast_to(term_weight[used, None, None], (int(used.sum()), self.side, self.side)).ravel()
            values = (crops[used] * term_weight[used, None, None]).ravel()
            # Sum over the span this batch touches only: a batch of neighbouring patches covers a
            # band of the canvas, so a large canvas costs no full-size temporary per batch.
            low, high = int(flat.min()), int(flat.max()) + 1
            local = flat - low
            span = slice(low, high)
            self._weights[span] += np.bincount(local, weights=w, minlength=high - low)
            if is_complex:
                self._real[span] += np.bincount(local, weights=values.real, minlength=high - low)
                self._imag[span] += np.bincount(local, weights=values.imag, minlength=high - low)
            else:
                self._real[span] += np.bincount(local, weights=values, minlength=high - low)
        self.count += int(stack.shape[0])
        return self

    def result(self) -> Stitched:
        """The overlap-averaged canvas so far (complex if any complex patch was added)."""
        total = (self._real + 1j * self._imag) if self._complex else self._real.copy()
        total = total.reshape(self.height, self.width)
        weights = self._weights.reshape(self.height, self.width).copy()
        canvas = np.zeros_like(total)
        covered = weights > 0
        canvas[covered] = total[covered] / weights[covered]
        # Crop pixel j of a patch at y shows object row y + (start - N//2) + j, and sits on canvas
        # row top + j, so canvas row 0 is object row centre_y + (start - N//2) - reach_y.
        shift_in_patch = self.start - self.patch_size // 2
        origin = (float(self.centre[1] + shift_in_patch - self.reach_y),
                  float(self.centre[0] + shift_in_patch - self.reach_x))
        return Stitched(canvas=canvas, weights=weights, origin=origin, crop=self.side,
                        placement=self.placement)


def largest_covered_rectangle(covered: Any) -> tuple[int, int, int, int]:
    """Largest axis-aligned rectangle of True pixels: (row0, col0, height, width).

    Used to evaluate a stitched canvas only where patches reached: an uncovered pixel is 0, not
    a prediction, and holes also throw off the registration. (0, 0, 0, 0) when nothing is True.
    """
    mask = np.asarray(covered, dtype=bool)
    heights = np.zeros(mask.shape[1] + 1, dtype=np.int64)  # trailing 0 flushes the stack
    best = (0, 0, 0, 0)
    for row in range(mask.shape[0]):
        heights[:-1] = np.where(mask[row], heights[:-1] + 1, 0)
        stack: list[int] = []  # columns with increasing heights
        for col in range(len(heights)):
            while stack and heights[stack[-1]] >= heights[col]:
                top = stack.pop()
                height = int(heights[top])
                start = stack[-1] + 1 if stack else 0
                width = col - start
                if height * width > best[2] * best[3]:
                    best = (row - height + 1, start, height, width)
            stack.append(col)
    return best

