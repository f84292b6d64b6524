"""Layer-activation trace: statistics of every layer's output for one probe batch, as a tree.

One forward pass walks the model's graph (nested models expanded, ``running.walk``) and reduces
each layer output where it lives (``running.layer_health``: by default one compiled step, cached
per model); only small records (and one downsampled preview of one selected layer) reach the
host. Adds weight health per layer and locates the first collapse.

Conventions
-----------
- Paths are relative to the traced model: a top-level layer ``conv1`` is ``conv1``; a layer
  ``conv`` inside a nested model ``encoder`` is ``encoder/conv``. A layer called more than once
  (shared weights) gets ``name#1``, ``name#2`` for its later calls. Model inputs appear as
  entries of type ``InputLayer`` under their input name.
- A layer's ``output`` record merges all of its outputs (complex outputs by amplitude), so its
  ``nonzero_fraction`` is the share of output elements that are exactly nonzero. ``outputs``
  keeps each output apart (``output``, ``output.amplitude``/``output.phase``, ``output_1``...).
- Exact on the batch: counts, zeros, NaN/Inf, min, max, mean, std, dead channels, and the samples
  that are entirely zero (``zero_samples``) or hold a NaN/Inf (``nonfinite_samples``), as
  half-open ranges of the probe's group indices. Sampled: the histogram and the underflow count
  come from each output's first ``hist_samples`` samples (at least 4, and at least 4096
  elements; all of a small batch); ``sampled`` in the JSON says how many.
- Dead channels: for outputs of rank >= 2 (channel-last), a channel never nonzero anywhere in the
  batch. ``channels`` is the size of the last axis.
- Underflow: nonzero elements whose magnitude is below the smallest *normal* number of their
  float dtype (1.17549435e-38 for float32), counted on the device among ``underflow_elements``.
- First collapse: the earliest layer, in execution (topological) order, whose nonzero fraction is
  below ``COLLAPSE_NONZERO_MAX`` (0.01) while at least one of the layers feeding it had a nonzero
  fraction above ``HEALTHY_NONZERO_MIN`` (0.2): a layer that takes something alive and returns
  (almost) nothing. Container entries (nested models) and inputs are never the collapse itself.
"""

from __future__ import annotations

import math
import time
import weakref
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from ptytui.core.health import LayerHealth
from ptytui.core.jsonable import finite_or_none
from ptytui.core.stats import TensorStats, reduce_named_tf, stats_from_reduction, stats_of_array
from ptytui.core.tfload import tf as _tf
from ptytui.core.thresholds import THRESHOLDS
from ptytui.running.layer_health import Probe, probe_health
from ptytui.running.output_count import OutputCount, output_count_of
from ptytui.running.walk import PREVIEW_MAX_SIDE, flatten_model_inputs

COLLAPSE_NONZERO_MAX = THRESHOLDS.collapse_nonzero_max
# An input above this nonzero fraction counts as healthy. Not 0.5: a ReLU layer's output is
# about half zeros by design (40% nonzero is normal), and it must still count as alive.
HEALTHY_NONZERO_MIN = THRESHOLDS.healthy_nonzero_min
FLOAT32_SMALLEST_NORMAL = 1.17549435e-38
__all__ = ["PREVIEW_MAX_SIDE", "flatten_model_inputs"]  # re-exported: the trace's callers use them


# ---- records ------------------------------------------------------------------------------


@dataclass
class WeightHealth:
    """Health of one weight variable (computed on the host from the weight values)."""

    name: str
    shape: tuple[int, ...]
    stats: TensorStats
    l2_norm: float
    is_kernel: bool  # rank >= 2: a kernel or an embedding, never legitimately all zero

    @property
    def all_zero(self) -> bool:
        return self.stats.count > 0 and self.stats.zero_count == self.stats.count

    @property
    def nonfinite_count(self) -> int:
        return self.stats.nan_count + self.stats.inf_count

    def to_dict(self) -> dict[str, Any]:
        s = self.stats
        return {
            "shape": list(self.shape),
            "count": s.count,
            "mean": finite_or_none(s.mean) if s.finite_count else None,
            "std": finite_or_none(s.std) if s.finite_count else None,
            "min": finite_or_none(s.min),
            "max": finite_or_none(s.max),
            "l2_norm": finite_or_none(self.l2_norm),
            "nan_count": s.nan_count,
            "inf_count": s.inf_count,
            "zero_fraction": finite_or_none(s.zero_fraction) if s.count else None,
            "all_zero": self.all_zero,
            "is_kernel": self.is_kernel,
        }


@dataclass
class LayerTrace:
    """One node of the layer tree: a layer call (or a nested model, or a model input)."""

    path: str
    name: str
    type: str
    depth: int  # nesting depth: 0 for layers of the traced model itself
    parent: str | None  # path of the enclosing nested model, None at top level
    is_container: bool  # a nested model whose layers follow as children
    is_input: bool
    inputs: list[str]  # paths of the entries whose outputs feed this one
    output_shapes: list[tuple]
    output_dtypes: list[str]
    output: TensorStats  # all outputs merged (complex outputs by amplitude)
    outputs: dict[str, TensorStats]
    channels: int
    dead_channels: int
    underflow_count: int
    weights: dict[str, WeightHealth] = field(default_factory=dict)
    activation: str | None = None  # a layer's built-in activation ("relu" for Conv2D(activation="relu"))
    config: dict[str, Any] = field(default_factory=dict)  # the layer's plain config values
    underflow_elements: int | None = None  # elements the underflow was counted in (None: all)
    health: LayerHealth | None = None  # output 0's health: sample ranges, what is sampled

    @property
    def nonzero_fraction(self) -> float:
        return self.output.nonzero_fraction

    @property
    def dead_channel_fraction(self) -> float:
        return self.dead_channels / self.channels if self.channels else 0.0

    @property
    def underflow_fraction(self) -> float:
        among = self.output.count if self.underflow_elements is None else self.underflow_elements
        return self.underflow_count / among if among else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "name": self.name,
            "type": self.type,
            "depth": self.depth,
            "parent": self.parent,
            "container": self.is_container,
            "input": self.is_input,
            "inputs": list(self.inputs),
            "shapes": [list(s) for s in self.output_shapes],
            "dtypes": list(self.output_dtypes),
            "output": self.output.to_dict(),
            "outputs": {k: v.to_dict() for k, v in self.outputs.items()},
            "dead_channels": int(self.dead_channels),
            "channels": int(self.channels),
            "underflow_count": int(self.underflow_count),
            "weights": {k: w.to_dict() for k, w in self.weights.items()},
            "activation": self.activation,
            "config": dict(self.config),
            "underflow_elements": self.underflow_elements,
            **self._health_dict(),
        }

    def _health_dict(self) -> dict[str, Any]:
        health = self.health
        if health is None:
            return {}
        return {"zero_samples": [list(r) for r in health.zero_samples],
                "zero_sample_count": health.zero_sample_count,
                "nonfinite_samples": [list(r) for r in health.nonfinite_samples],
                "nonfinite_sample_count": health.nonfinite_sample_count,
                "sampled": health.sampled()}


@dataclass
class Collapse:
    """Where the activations die: the first layer that turns a healthy input into zeros."""

    path: str
    type: str
    upstream_path: str
    upstream_nonzero_fraction: float
    nonzero_fraction: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "type": self.type,
            "upstream_path": self.upstream_path,
            "upstream_nonzero_fraction": float(self.upstream_nonzero_fraction),
            "nonzero_fraction": float(self.nonzero_fraction),
        }


@dataclass
class LayerPreview:
    """One sample of one layer's output, channel 0, strided down to <= 64 x 64 (host numpy)."""

    path: str
    image: np.ndarray  # 2-D; complex for complex outputs
    stride: tuple[int, int]


@dataclass
class Trace:
    """Per-layer statistics of one model on one probe batch of one split."""

    model: str
    split: str
    n_samples: int
    layers: list[LayerTrace]
    first_collapse: Collapse | None
    preview: LayerPreview | None = None
    seconds: float = 0.0
    positions: str | None = None
    health_kernel: str = ""  # "native" (ptytui's one-pass kernel) or "stock (why)"
    # one output per input? (``running.output_count``); None for a trace not made by trace_model
    output_count: OutputCount | None = None

    def layer(self, path: str) -> LayerTrace:
        for entry in self.layers:
            if entry.path == path:
                return entry
        raise KeyError(path)

    def paths(self) -> list[str]:
        return [entry.path for entry in self.layers]

    def first_nonfinite(self) -> LayerTrace | None:
        """The earliest entry whose output holds NaN or Inf."""
        for entry in self.layers:
            if not entry.is_container and entry.output.nan_count + entry.output.inf_count:
                return entry
        return None

    def to_dict(self) -> dict[str, Any]:
        """The TRACE object of CLI.md (plus ``n_samples``, ``seconds`` and more per layer)."""
        return {
            "model": self.model,
            "split": self.split,
            "positions": self.positions,
            "n_samples": self.n_samples,
            "seconds": round(self.seconds, 4),
            "layers": [self._layer_dict(entry) for entry in self.layers],
            "first_collapse": self.first_collapse.to_dict() if self.first_collapse else None,
            "health_kernel": self.health_kernel,
            "output_count": self.output_count.to_dict() if self.output_count else None,
        }

    def per_sample(self, entry: LayerTrace) -> bool:
        """Whether the entry's output keeps the batch's sample axis (its leading dimension is
        the batch): its statistics are then over the probe's samples."""
        return self.output_count is None or entry.path not in self.output_count.not_per_sample

    def _layer_dict(self, entry: LayerTrace) -> dict[str, Any]:
        d = entry.to_dict()
        d["per_sample"] = self.per_sample(entry)
        if self.preview is not None and self.preview.path == entry.path:
            image = self.preview.image
            # the amplitude for complex outputs; the image as it is otherwise
            d["preview"] = (np.abs(image) if np.iscomplexobj(image) else image).astype(float).tolist()
            d["preview_stride"] = list(self.preview.stride)
        return d


# ---- one tensor's records ----------------------------------------------------------------

# Elements reduced at once by ``records_of``. The reduction makes float64 temporaries several
# times the size of its input; slicing big tensors keeps the peak memory near that of the tensor
# (records merge exactly, so slicing changes no number).
REDUCE_CHUNK_ELEMENTS = 1 << 19
_RECORDS_FNS: dict[str, Any] = {}


def records_of(name: str, tensor) -> dict[str, TensorStats]:
    """Statistics records of one tensor (``name`` or ``name.amplitude``/``name.phase``), reduced
    on its device in row slices by a cached shape-generic compiled function."""
    tf = _tf()
    x = tf.convert_to_tensor(tensor)
    rows = tf.reshape(x, [-1, tf.shape(x)[-1]]) if x.shape.rank and x.shape.rank >= 2 else tf.reshape(x, [-1, 1])
    key = rows.dtype.name
    if key not in _RECORDS_FNS:
        _RECORDS_FNS[key] = tf.function(lambda r: reduce_named_tf("output", r),
                                        input_signature=[tf.TensorSpec([None, None], rows.dtype)],
                                        autograph=False)
    n_rows, n_channels = (int(d) for d in rows.shape)
    step = max(1, REDUCE_CHUNK_ELEMENTS // max(n_channels, 1))
    records: dict[str, TensorStats] = {}
    for start in range(0, max(n_rows, 1), step):
        for key_name, reduction in _RECORDS_FNS[key](rows[start:start + step]).items():
            record = stats_from_reduction(reduction)
            records[key_name] = records[key_name].merge(record) if key_name in records else record
    return {name + k[len("output"):]: rec for k, rec in records.items()}


_CONFIG_SKIP = ("name", "trainable", "dtype")


_CONFIGS: "weakref.WeakKeyDictionary[Any, dict[str, Any]]" = weakref.WeakKeyDictionary()


def _plain_config(layer) -> dict[str, Any]:
    """The scalar (and short list) values of a layer's config, for display; read once per layer
    (``get_config`` serializes the layer: a third of a warm MobileNetV2 trace if read each time)."""
    if layer is None:
        return {}
    config = _CONFIGS.get(layer)
    if config is None:
        config = _CONFIGS[layer] = _read_plain_config(layer)
    return dict(config)


def _read_plain_config(layer) -> dict[str, Any]:
    try:
        config = layer.get_config() if hasattr(layer, "get_config") else {}
    except Exception:  # noqa: BLE001 - some layers cannot describe themselves; nothing to show
        return {}

    def plain(value) -> bool:
        if value is None or isinstance(value, (bool, int, float, str)):
            return True
        return isinstance(value, (list, tuple)) and len(value) <= 8 and all(
            v is None or isinstance(v, (bool, int, float, str)) for v in value)

    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in (config or {}).items()
            if k not in _CONFIG_SKIP and plain(v)
            and not (isinstance(v, float) and not math.isfinite(v))}


def _activation_name(layer) -> str | None:
    activation = getattr(layer, "activation", None)
    if activation is None or not callable(activation):
        return None
    name = getattr(activation, "__name__", None)
    return None if name in (None, "linear") else str(name)


# ---- weight health ------------------------------------------------------------------------


def weight_health(layer) -> dict[str, WeightHealth]:
    """Health of each weight a leaf layer owns: NaN/Inf counts, all-zero kernels, L2 norms."""
    out: dict[str, WeightHealth] = {}
    for variable in getattr(layer, "weights", []) or []:
        values = np.asarray(variable.numpy() if hasattr(variable, "numpy") else variable)
        if values.dtype.kind not in "fiuc" or values.size == 0:
            continue
        if np.iscomplexobj(values):
            values = np.abs(values)
        name = str(getattr(variable, "name", "weight")).split(":")[0].split("/")[-1]
        base, k = name, 1
        while name in out:
            name, k = f"{base}_{k}", k + 1
        finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values
        out[name] = WeightHealth(
            name=name, shape=tuple(int(d) for d in values.shape), stats=stats_of_array(values),
            l2_norm=float(np.sqrt(np.sum(np.square(finite.astype(np.float64))))),
            is_kernel=values.ndim >= 2)
    return out


# ---- public API ---------------------------------------------------------------------------


# ---- public API ---------------------------------------------------------------------------


def trace_model(model, inputs, *, model_name: str = "model", split: str = "data",
                preview: str | None = None, positions: str | None = None,
                with_weights: bool = True, compiled: bool = True,
                collapse_threshold: float = COLLAPSE_NONZERO_MAX,
                healthy_threshold: float = HEALTHY_NONZERO_MIN, sample_ids=None) -> Trace:
    """Trace a Keras model on one batch: per-layer output statistics in one forward pass.

    Parameters
    ----------
    model : keras.Model
        A functional or Sequential Keras 3 model (nested models are expanded).
    inputs : array, list of arrays, or dict {input name: array}
        One batch, as the model is fed (first axis: samples).
    model_name, split : str
        Labels carried into the result.
    preview : str, optional
        Path of the one layer whose output (sample 0, channel 0, strided to <= 64 x 64) comes
        back to the host.
    with_weights : bool
        Compute weight health per layer (host side, from the weight values).
    compiled : bool
        Run the walk and every reduction as one ``tf.function``, cached per model and preview
        (the default: building it costs seconds once, after which a trace costs about twice a
        forward pass). ``False`` runs the layers eagerly and reduces each output with a small
        compiled function: no graph of the whole model, for one-off traces of large models.
    collapse_threshold, healthy_threshold : float
        The first-collapse rule (see the module docstring).
    sample_ids : sequence of int, optional
        The group index of each sample in the batch (default 0..B-1), for the sample ranges.

    Returns
    -------
    Trace
        With ``output_count``: the model's outputs against the batch (one output per input);
        where they differ, the first collapse is sought only among the layers that keep the
        sample axis.
    """
    started = time.perf_counter()
    flat = flatten_model_inputs(model, inputs)
    n_samples = int(flat[0].shape[0]) if flat and flat[0].ndim else 0
    probe = probe_health(model, flat, preview_path=preview, compiled=compiled, sample_ids=sample_ids)
    layers = [_layer_trace(probe, index, with_weights) for index in range(len(probe.entries))]
    count = output_count_of(model, probe, n_samples)
    # Where the model merges the samples, a layer's nonzero fraction describes the merged batch:
    # the first collapse is sought only among the layers that keep the sample axis.
    per_sample = layers if count.matches else [e for e in layers if e.path not in count.not_per_sample]
    preview_result = None
    if probe.preview:
        preview_result = LayerPreview(path=preview, image=probe.preview["image"],
                                      stride=tuple(int(s) for s in probe.preview["stride"]))
    trace = Trace(model=model_name, split=split, n_samples=n_samples, layers=layers,
                  first_collapse=find_first_collapse(per_sample, collapse_threshold, healthy_threshold),
                  preview=preview_result, positions=positions, output_count=count,
                  health_kernel=probe.kernel)
    trace.seconds = time.perf_counter() - started
    return trace


def _layer_trace(probe: Probe, index: int, with_weights: bool) -> LayerTrace:
    """One entry's node of the tree, from its parts' health records."""
    meta = probe.entries[index]
    parts = probe.entry_parts[index]
    outputs = {probe.slots[p].name: probe.records[p].to_stats() for p in parts}
    kept = [p for p in parts if not probe.slots[p].name.endswith(".phase")]
    merged = TensorStats.merge_all(outputs[probe.slots[p].name] for p in kept)
    first = probe.records[parts[0]] if parts else None  # output 0 (its amplitude if complex)
    return LayerTrace(
        path=meta.path, name=meta.name, type=meta.type, depth=meta.depth, parent=meta.parent,
        is_container=meta.is_container, is_input=meta.is_input,
        inputs=[probe.entries[i].path for i in meta.inputs],
        output_shapes=meta.output_shapes, output_dtypes=meta.output_dtypes,
        output=merged, outputs=outputs,
        channels=first.channels if first is not None else 0,
        dead_channels=first.dead_channels if first is not None else 0,
        underflow_count=sum(probe.records[p].underflow_count for p in kept),
        weights=weight_health(meta.layer) if (with_weights and meta.layer is not None) else {},
        activation=_activation_name(meta.layer), config=_plain_config(meta.layer),
        underflow_elements=sum(probe.records[p].hist_elements for p in kept), health=first)


def find_first_collapse(layers: Sequence[LayerTrace],
                        collapse_threshold: float = COLLAPSE_NONZERO_MAX,
                        healthy_threshold: float = HEALTHY_NONZERO_MIN) -> Collapse | None:
    """The earliest layer whose output collapsed while an input to it was healthy."""
    by_path = {entry.path: entry for entry in layers}
    for entry in layers:
        if entry.is_container or entry.is_input or not entry.output.count:
            continue
        if not entry.nonzero_fraction < collapse_threshold:
            continue
        upstream = [by_path[p] for p in entry.inputs if p in by_path and by_path[p].output.count]
        if not upstream:
            continue
        best = max(upstream, key=lambda e: e.nonzero_fraction)
        if best.nonzero_fraction > healthy_threshold:
            return Collapse(path=entry.path, type=entry.type, upstream_path=best.path,
                            upstream_nonzero_fraction=best.nonzero_fraction,
                            nonzero_fraction=entry.nonzero_fraction)
    return None


# ---- side by side -------------------------------------------------------------------------


@dataclass
class LayerComparison:
    path: str
    type: str
    nonzero_fraction: tuple[float | None, float | None]
    mean: tuple[float | None, float | None]
    std: tuple[float | None, float | None]
    dead_channels: tuple[int | None, int | None]

    @property
    def nonzero_fraction_change(self) -> float | None:
        a, b = self.nonzero_fraction
        return None if a is None or b is None else b - a

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "type": self.type,
                "nonzero_fraction": list(self.nonzero_fraction), "mean": list(self.mean),
                "std": list(self.std), "dead_channels": list(self.dead_channels),
                "nonzero_fraction_change": self.nonzero_fraction_change}


@dataclass
class TraceComparison:
    """Two traces of the same model side by side (usually two splits)."""

    model: str
    splits: tuple[str, str]
    layers: list[LayerComparison]
    first_divergence: str | None  # first layer whose nonzero fraction moves by > 0.25

    def to_dict(self) -> dict[str, Any]:
        return {"model": self.model, "splits": list(self.splits),
                "first_divergence": self.first_divergence,
                "layers": [row.to_dict() for row in self.layers]}


DIVERGENCE_NONZERO_CHANGE = 0.25


def compare_traces(a: Trace, b: Trace) -> TraceComparison:
    """Compare two traces layer by layer (rows in ``a``'s order, then layers only in ``b``)."""
    b_by_path = {entry.path: entry for entry in b.layers}
    a_paths = set(a.paths())
    rows: list[LayerComparison] = []
    first_divergence = None

    def pair(x: LayerTrace | None, y: LayerTrace | None, getter):
        return (finite_or_none(getter(x)) if x else None, finite_or_none(getter(y)) if y else None)

    ordered = [(e, b_by_path.get(e.path)) for e in a.layers]
    ordered += [(None, e) for e in b.layers if e.path not in a_paths]
    for x, y in ordered:
        ref = x or y
        row = LayerComparison(
            path=ref.path, type=ref.type,
            nonzero_fraction=pair(x, y, lambda e: e.nonzero_fraction),
            mean=pair(x, y, lambda e: e.output.mean if e.output.finite_count else None),
            std=pair(x, y, lambda e: e.output.std),
            dead_channels=(x.dead_channels if x else None, y.dead_channels if y else None))
        change = row.nonzero_fraction_change
        if (first_divergence is None and change is not None and not ref.is_container
                and not ref.is_input and abs(change) > DIVERGENCE_NONZERO_CHANGE):
            first_divergence = ref.path
        rows.append(row)
    return TraceComparison(model=a.model, splits=(a.split, b.split), layers=rows,
                           first_divergence=first_divergence)
