"""Grouping a split's patterns the way PtychoPINN does, and reading groups as model-ready batches.

Conventions (DOMAIN.md section 2): gridsize gs gives C = gs**2 patterns per group; the global
offset is the group mean position, (G, 1, 2, 1) in order [x, y]; relative offsets are
-(position - mean), (G, 1, 2, C); all in object pixels. gs >= 2 groups are drawn, seeded, from a
KD-tree's nearest neighbours; ``n_groups`` keeps a contiguous region of groups, never a sparse pick.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from ptytui.errors import InputError
from ptytui.inputs.npz import Split

__all__ = ["GroupBatch", "Grouping", "group_split"]

@dataclass
class GroupBatch:
    """One batch of groups, ready to feed: arrays in the layouts a PtychoPINN model expects.

    diffraction (B, N, N, C) float32 amplitude (stored scale, no intensity_scale applied);
    global_offsets (B, 1, 2, 1) and relative_offsets (B, 1, 2, C) float32, [x, y];
    positions (B, C, 2) float64 absolute [x, y]; ground_truth (B, N, N, C) complex64 or None;
    indices (B, C) int64 pattern indices into the split; group_indices (B,) into the grouping.
    """

    diffraction: np.ndarray
    global_offsets: np.ndarray
    relative_offsets: np.ndarray
    positions: np.ndarray
    ground_truth: np.ndarray | None
    indices: np.ndarray
    group_indices: np.ndarray

    def __len__(self) -> int:
        return int(self.indices.shape[0])


@dataclass(repr=False)
class Grouping:
    """Groups of C = gridsize**2 patterns of one split, with their offsets.

    Attributes
    ----------
    gridsize, C : gridsize and patterns per group (C = gridsize**2).
    indices : (G, C) int64 pattern indices.
    global_offsets : (G, 1, 2, 1) float64, the group mean position [x, y] in object pixels.
    relative_offsets : (G, 1, 2, C) float64, -(position - mean) per pattern, [x, y].
    seed, k_neighbors : how the groups were drawn (gs >= 2).
    n_groups_requested : the ``n_groups`` asked for, or None for all.
    anchor : [x, y] of the subset's anchor point when a subset was taken, else None.
    """

    gridsize: int
    C: int
    indices: np.ndarray
    global_offsets: np.ndarray
    relative_offsets: np.ndarray
    seed: int = 0
    k_neighbors: int = 7
    n_groups_requested: int | None = None
    anchor: tuple[float, float] | None = None

    def __len__(self) -> int:
        return int(self.indices.shape[0])

    def __repr__(self) -> str:
        return (f"Grouping(gridsize={self.gridsize}, C={self.C}, G={len(self)}, seed={self.seed}, "
                f"n_groups_requested={self.n_groups_requested})")

    def select(self, group_idx: Any) -> "Grouping":
        """A Grouping of only the groups ``group_idx`` (a slice or int array), e.g. for a shard."""
        sel = group_idx if isinstance(group_idx, slice) else np.asarray(group_idx, dtype=np.int64)
        return Grouping(self.gridsize, self.C, self.indices[sel], self.global_offsets[sel],
                        self.relative_offsets[sel], self.seed, self.k_neighbors,
                        self.n_groups_requested, self.anchor)

    def batch(self, split: Split, idx: Any, *, ground_truth: bool = True) -> GroupBatch:
        """Read groups ``idx`` (a slice or int array of group indices) from ``split``.

        Each distinct pattern is read once from disk, even when groups share patterns.
        ``ground_truth=False`` skips reading the ground-truth patches (``batch.ground_truth`` is
        None): inference does not use them, and they are twice the size of the diffraction.
        """
        gidx = np.arange(len(self))[idx] if isinstance(idx, slice) else np.asarray(idx, dtype=np.int64).reshape(-1)
        members = self.indices[gidx]  # (B, C)
        unique, inverse = np.unique(members, return_inverse=True)
        patterns = split.diffraction_batch(unique)  # (U, N, N) float32
        inverse = inverse.reshape(members.shape)
        diffraction = np.ascontiguousarray(np.moveaxis(patterns[inverse], 1, -1))  # (B, C, N, N) -> (B, N, N, C)
        gt = split.ground_truth_batch(unique) if ground_truth else None
        gt_patches = None if gt is None else np.ascontiguousarray(np.moveaxis(gt[inverse], 1, -1))
        positions = np.stack([split.xcoords[members], split.ycoords[members]], axis=-1)
        return GroupBatch(
            diffraction=diffraction,
            global_offsets=self.global_offsets[gidx].astype(np.float32),
            relative_offsets=self.relative_offsets[gidx].astype(np.float32),
            positions=positions,
            ground_truth=gt_patches,
            indices=members,
            group_indices=gidx,
        )

    def iter_batches(self, split: Split, batch_size: int) -> Iterator[GroupBatch]:
        """Yield consecutive batches of at most ``batch_size`` groups, reading each from disk."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, not {batch_size}")
        for start in range(0, len(self), batch_size):
            yield self.batch(split, slice(start, min(start + batch_size, len(self))))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (no arrays)."""
        return {"gridsize": self.gridsize, "C": self.C, "n_groups": len(self), "seed": self.seed,
                "k_neighbors": self.k_neighbors, "n_groups_requested": self.n_groups_requested,
                "anchor": list(self.anchor) if self.anchor is not None else None}


def group_split(split: Split, gridsize: int, *, k_neighbors: int = 7, seed: int = 0,
                n_groups: int | None = None) -> Grouping:
    """Group a split's patterns the way PtychoPINN does.

    gridsize 1: every pattern is its own group (G = M), global offset = its position, relative
    offset 0. gridsize gs >= 2: every pattern is a seed (G = M groups, as PtychoPINN makes about
    one group per scan point); each group is C = gs**2 patterns drawn at random (seeded, without
    replacement) from the ``k_neighbors`` nearest neighbours of the seed, the seed included
    (scipy cKDTree). Members are kept in neighbour-distance order.

    Parameters
    ----------
    split : Split
    gridsize : int
        1, 2, ... (C = gridsize**2 patterns per group).
    k_neighbors : int
        K nearest neighbours to draw from (PtychoPINN uses 7 for gs2); at least C.
    seed : int
        Seeds both the neighbour draw and the subset anchor.
    n_groups : int, optional
        Keep only this many groups: the ``n_groups`` groups whose centres are nearest a seeded
        anchor (the centre of a randomly drawn group), i.e. a contiguous region that preserves
        geometry, never a sparse random pick. None or >= G keeps all groups.

    Returns
    -------
    Grouping
        Offsets in object pixels, [x, y] order: global (G, 1, 2, 1) = group mean position,
        relative (G, 1, 2, C) = -(position - mean).
    """
    if isinstance(gridsize, bool) or not isinstance(gridsize, (int, np.integer)) or gridsize < 1:
        raise InputError(str(split.path), "gridsize an integer >= 1", repr(gridsize))
    gridsize = int(gridsize)
    C = gridsize * gridsize
    if n_groups is not None and (isinstance(n_groups, bool) or int(n_groups) < 1):
        raise InputError(str(split.path), "n_groups >= 1", repr(n_groups))
    positions = split.positions  # (M, 2) [x, y]
    M = positions.shape[0]
    if C == 1:
        indices = np.arange(M, dtype=np.int64)[:, None]
    else:
        if M < C:
            raise InputError(str(split.path), f"at least {C} patterns for gridsize {gridsize}", f"{M} patterns")
        k_neighbors = min(max(int(k_neighbors), C), M)
        indices = _neighbour_groups(positions, C, k_neighbors, seed)
    global_offsets, relative_offsets = _group_offsets(positions[indices])

    grouping = Grouping(gridsize, C, indices, global_offsets, relative_offsets, seed=seed,
                        k_neighbors=int(k_neighbors), n_groups_requested=n_groups)
    G = len(grouping)
    if n_groups is None or int(n_groups) >= G:
        return grouping
    keep, anchor = _contiguous_subset(global_offsets[:, 0, :, 0], int(n_groups), seed)
    sub = grouping.select(keep)
    sub.anchor = anchor
    return sub


def _neighbour_groups(positions: np.ndarray, C: int, K: int, seed: int) -> np.ndarray:
    """(M, C) int64: for every pattern as seed, C distinct patterns drawn (seeded, without
    replacement) from its K nearest neighbours, the seed included, kept in neighbour-distance order."""
    from scipy.spatial import cKDTree  # noqa: PLC0415 - slow to import; only grouping needs it

    M = positions.shape[0]
    _, neighbours = cKDTree(positions).query(positions, k=K)  # (M, K), nearest first (self)
    neighbours = np.asarray(neighbours, dtype=np.int64).reshape(M, K)
    rng = np.random.default_rng(seed)
    # C distinct ranks out of K per seed: the first C of a random permutation, kept sorted
    ranks = np.sort(np.argsort(rng.random((M, K)), axis=1)[:, :C], axis=1)
    return np.take_along_axis(neighbours, ranks, axis=1)


def _group_offsets(member_positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Global (G, 1, 2, 1) = group mean and relative (G, 1, 2, C) = -(position - mean) offsets,
    float64 [x, y] in object pixels, from the members' (G, C, 2) positions."""
    mean = member_positions.mean(axis=1)  # (G, 2)
    global_offsets = mean[:, None, :, None].copy()  # (G, 1, 2, 1)
    relative = -(member_positions - mean[:, None, :])  # (G, C, 2)
    relative_offsets = np.transpose(relative, (0, 2, 1))[:, None, :, :].copy()  # (G, 1, 2, C)
    return global_offsets, relative_offsets


def _contiguous_subset(centres: np.ndarray, k: int, seed: int) -> tuple[np.ndarray, tuple[float, float]]:
    """The k groups whose centres are nearest a seeded anchor, in original order."""
    from scipy.spatial import cKDTree  # noqa: PLC0415 - slow to import; only grouping needs it

    # A separate stream from the neighbour draw, so n_groups does not change which groups exist.
    rng = np.random.default_rng([seed, 1])
    anchor = centres[int(rng.integers(centres.shape[0]))]
    _, nearest = cKDTree(centres).query(anchor, k=k)
    keep = np.sort(np.asarray(nearest, dtype=np.int64).reshape(-1))
    return keep, (float(anchor[0]), float(anchor[1]))
