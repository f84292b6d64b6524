"""A workspace opened for work: splits, groupings and models loaded once, runs planned and streamed.

The CLI's streaming commands and the TUI both go through ``Session``: it keeps each model's
settings separate (no global config), caches what is expensive, and yields engine events.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ptytui.core.events import EngineEvent
from ptytui.errors import InputError, UsageError
from ptytui.inputs.grouping import group_split
from ptytui.inputs.models import load_model, read_card
from ptytui.inputs.npz import open_split
from ptytui.inputs.workspace import load_workspace
from ptytui.running.batch_choice import DEFAULT_BATCH_SIZE, BatchChoice, choose_batch_size
from ptytui.running.inference import CancelToken, run_inference


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (``--shard k/n``): every n-th contiguous block of groups."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str | None) -> "Shard | None":
        if not text:
            return None
        try:
            k, n = (int(part) for part in text.split("/"))
        except ValueError:
            raise UsageError(f"--shard: expected k/n with integers (for example 0/4), found {text!r}") from None
        if n < 1 or not 0 <= k < n:
            raise UsageError(f"--shard: expected 0 <= k < n, found {text!r}")
        return cls(k, n)

    def select(self, group_ids: np.ndarray) -> np.ndarray:
        """Contiguous slices, so each shard's groups stay neighbours (geometry preserved)."""
        bounds = np.linspace(0, len(group_ids), self.count + 1).round().astype(int)
        return group_ids[bounds[self.index]:bounds[self.index + 1]]


def index_ranges(ids: np.ndarray) -> list[list[int]]:
    """Sorted group indices as half-open [start, stop) runs of consecutive integers."""
    ids = np.unique(np.asarray(ids, dtype=np.int64))
    if ids.size == 0:
        return []
    breaks = np.flatnonzero(np.diff(ids) != 1) + 1
    starts = np.concatenate([[0], breaks])
    stops = np.concatenate([breaks, [ids.size]])
    return [[int(ids[a]), int(ids[b - 1]) + 1] for a, b in zip(starts, stops)]


@dataclass
class RunPlan:
    """One model x split to stream, with how the model is fed."""

    model: str
    split: str
    positions: str | None
    intensity_scale: str | float | None


class Session:
    """Opened workspace: lazily loads splits, groupings and models, and streams runs."""

    def __init__(self, workspace, *, trust: bool = False, seed: int = 0, n_groups: int | None = None,
                 batch_size: int | None = None, shard: Shard | None = None, device_set=None):
        self.workspace = workspace
        self.trust = trust
        self.seed = seed
        self.n_groups = n_groups
        # None: ptytui chooses per run (batch_choice), starting at DEFAULT_BATCH_SIZE groups.
        self.batch_size_explicit = batch_size is not None
        self.batch_size = int(batch_size) if batch_size is not None else DEFAULT_BATCH_SIZE
        self.batch_choices: dict[tuple[str, str, str | None], BatchChoice] = {}
        self.shard = shard
        # A distribute.DeviceSet (``--devices all``): models load under its scope (variables
        # mirrored on every replica) and runs split each batch across its replicas.
        self.device_set = device_set
        self.layer_health = True  # record every layer's health while runs stream (--no-layer-health)
        self._splits: dict[str, object] = {}
        self._groupings: dict[tuple[str, int], object] = {}
        self._models: dict[str, object] = {}
        self._cards: dict[str, object] = {}  # cards of models not loaded yet (for the gridsize)

    # ---- opening ---------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, **kwargs) -> "Session":

        return cls(load_workspace(path), **kwargs)

    def split(self, name: str):
        if name not in self._splits:

            if name not in self.workspace.splits:
                raise InputError(self._where(), f"a split named one of {sorted(self.workspace.splits)}",
                                 repr(name))
            # --trust, or `[workspace] trust = true` in ptytui.toml, reads pickled split metadata.
            trusted = self.trust or bool(getattr(self.workspace, "trust", False))
            self._splits[name] = open_split(self.workspace.splits[name], name=name, trust=trusted)
        return self._splits[name]

    def model(self, name: str):
        if name not in self._models:

            entry = self.model_entry(name)
            if self.device_set is not None:
                with self.device_set.scope():
                    self._models[name] = load_model(entry.path, trust=self.trust or bool(entry.trust))
            else:
                self._models[name] = load_model(entry.path, trust=self.trust or bool(entry.trust))
        return self._models[name]

    def model_entry(self, name: str):
        if name not in self.workspace.models:
            raise InputError(self._where(), f"a model named one of {sorted(self.workspace.models)}",
                             repr(name))
        return self.workspace.models[name]

    def gridsize(self, name: str) -> int:
        entry = self.model_entry(name)
        if entry.gridsize:
            return int(entry.gridsize)

        if name in self._models:
            card = self._models[name].card
        else:  # read once: bundles are zips inside zips, and run() asks more than once
            if name not in self._cards:
                self._cards[name] = read_card(entry.path, trust=self.trust or bool(entry.trust))
            card = self._cards[name]
        return int(card.gridsize or 1)

    def grouping(self, split_name: str, gridsize: int):
        key = (split_name, gridsize)
        if key not in self._groupings:

            self._groupings[key] = group_split(self.split(split_name), gridsize, seed=self.seed,
                                               n_groups=self.n_groups)
        return self._groupings[key]

    def _where(self) -> str:
        return str(getattr(self.workspace, "toml_path", None) or getattr(self.workspace, "root", "workspace"))

    # ---- planning ----------------------------------------------------------------------------
    def plan(self, *, models: list[str] | None = None, splits: list[str] | None = None,
             positions: str | None = None) -> list[RunPlan]:
        """Every model x split (or the named ones); ``positions`` overrides the workspace's feeding."""
        model_names = models or list(self.workspace.models)
        split_names = splits or list(self.workspace.splits)
        for name in model_names:
            self.model_entry(name)
        for name in split_names:
            if name not in self.workspace.splits:
                raise InputError(self._where(), f"a split named one of {sorted(self.workspace.splits)}",
                                 repr(name))
        plans = []
        for model_name in model_names:
            entry = self.model_entry(model_name)
            for split_name in split_names:
                plans.append(RunPlan(model_name, split_name, positions or entry.positions or "relative",
                                     entry.intensity_scale if entry.intensity_scale is not None else "apply"))
        return plans

    def group_ids(self, plan: RunPlan) -> np.ndarray:
        grouping = self.grouping(plan.split, self.gridsize(plan.model))
        ids = np.arange(len(grouping.indices))
        return self.shard.select(ids) if self.shard else ids

    def coverage(self, plan: RunPlan) -> dict:
        """Which groups a run covers, for ``ptytui merge`` to check shards (JSON-ready).

        ``ranges`` are half-open [start, stop) group-index ranges of the grouping whose size is
        ``total_groups``; ``gridsize``, ``seed`` and ``n_groups`` say which grouping that is, so
        shards of different groupings are never combined.
        """
        gridsize = self.gridsize(plan.model)
        total = len(self.grouping(plan.split, gridsize).indices)
        ids = self.group_ids(plan)
        return {"shard": f"{self.shard.index}/{self.shard.count}" if self.shard else None,
                "ranges": index_ranges(ids), "total_groups": int(total), "gridsize": int(gridsize),
                "seed": int(self.seed), "n_groups": self.n_groups}

    # ---- streaming ---------------------------------------------------------------------------
    def run(self, plan: RunPlan, *, cancel: CancelToken = None) -> Iterator[EngineEvent]:
        """Stream one planned run (model loaded and split grouped on first use)."""
        # The split first: a bad NPZ is reported before TensorFlow and the model are loaded.
        split = self.split(plan.split)
        grouping = self.grouping(plan.split, self.gridsize(plan.model))
        ids = self.group_ids(plan)
        loaded = self.model(plan.model)
        choice = self.batch_choice(plan)
        yield from run_inference(loaded, split, grouping, model_name=plan.model, split_name=plan.split,
                                 positions=plan.positions, intensity_scale=plan.intensity_scale,
                                 batch_size=choice.chosen, indices=ids, cancel=cancel,
                                 device_set=self.device_set, batch_note=choice.note(),
                                 requested_batch_size=self.batch_size, layer_health=self.layer_health)

    def batch_choice(self, plan: RunPlan) -> BatchChoice:
        """The batch size a planned run streams at, probed once per model, split and feed."""
        key = (plan.model, plan.split, plan.positions)
        if key not in self.batch_choices:
            grouping = self.grouping(plan.split, self.gridsize(plan.model))
            try:
                self.batch_choices[key] = choose_batch_size(
                    self.model(plan.model), self.split(plan.split), grouping, self.group_ids(plan),
                    model=plan.model, positions=plan.positions, intensity_scale=plan.intensity_scale,
                    requested=self.batch_size, explicit=self.batch_size_explicit)
            except Exception:  # noqa: BLE001 - a model that cannot run: the run itself says why
                return BatchChoice(plan.model, plan.split, plan.positions, self.batch_size,
                                   self.batch_size_explicit, self.batch_size)
        return self.batch_choices[key]

    def stats_events(self, plans: list[RunPlan], *, cancel: CancelToken = None) -> Iterator[EngineEvent]:
        for plan in plans:
            yield from self.run(plan, cancel=cancel)
