"""Layer-activation trace: statistics of every layer's output for one probe batch, as a tree.

One forward pass inside one ``tf.function`` walks the model's graph (nested models expanded) and
reduces each layer output on the device; only small records (and one downsampled preview of one
selected layer) reach the host. Adds weight health per layer and locates the first collapse.

Conventions
-----------
- Paths are relative to the traced model: a top-level layer ``conv1`` is ``conv1``; a layer
  ``conv`` inside a nested model ``encoder`` is ``encoder/conv``. A layer called more than once
  (shared weights) gets ``name#1``, ``name#2`` for its later calls. Model inputs appear as
  entries of type ``InputLayer`` under their input name.
- A layer's ``output`` record merges all of its outputs (complex outputs by amplitude), so its
  ``nonzero_fraction`` is the share of output elements that are exactly nonzero. ``outputs``
  keeps each output apart (``output``, ``output.amplitude``/``output.phase``, ``output_1``...).
- Dead channels: for outputs of rank >= 2 (channel-last), a channel never nonzero anywhere in the
  batch. ``channels`` is the size of the last axis.
- Underflow: nonzero elements whose magnitude is below the smallest *normal* number of their
  float dtype (1.17549435e-38 for float32), counted on the device.
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
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ptytui.core.stats import (
    TensorStats,
    reduce_named_tf,
    stats_from_reduction,
    stats_of_array,
)
from ptytui.core.tfload import tf as _tf

COLLAPSE_NONZERO_MAX = 0.01  # a layer output below this nonzero fraction has collapsed
# An input above this nonzero fraction counts as healthy. Not 0.5: a ReLU layer's output is
# about half zeros by design (40% nonzero is normal), and it must still count as alive.
HEALTHY_NONZERO_MIN = 0.2
PREVIEW_MAX_SIDE = 64  # the preview is strided down to at most this many pixels per side
FLOAT32_SMALLEST_NORMAL = 1.17549435e-38


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

        def num(value: float) -> float | None:
            return float(value) if math.isfinite(value) else None

        return {
            "shape": list(self.shape),
            "count": s.count,
            "mean": num(s.mean) if s.finite_count else None,
            "std": num(s.std) if s.finite_count else None,
            "min": num(s.min),
            "max": num(s.max),
            "l2_norm": num(self.l2_norm),
            "nan_count": s.nan_count,
            "inf_count": s.inf_count,
            "zero_fraction": num(s.zero_fraction) if s.count else None,
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

    @property
    def nonzero_fraction(self) -> float:
        return self.output.nonzero_fraction

    @property
    def dead_channel_fraction(self) -> float:
        return self.dead_channels / self.channels if self.channels else 0.0

    @property
    def underflow_fraction(self) -> float:
        return self.underflow_count / self.output.count if self.output.count else 0.0

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
        }


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
        }

    def _layer_dict(self, entry: LayerTrace) -> dict[str, Any]:
        d = entry.to_dict()
        if self.preview is not None and self.preview.path == entry.path:
            image = self.preview.image
            # the amplitude for complex outputs; the image as it is otherwise
            d["preview"] = (np.abs(image) if np.iscomplexobj(image) else image).astype(float).tolist()
            d["preview_stride"] = list(self.preview.stride)
        return d


# ---- graph walk ---------------------------------------------------------------------------


@dataclass
class _EntryMeta:
    path: str
    name: str
    type: str
    depth: int
    parent: str | None
    is_container: bool
    is_input: bool
    inputs: list[int]  # indices of producer entries
    output_shapes: list[tuple]
    output_dtypes: list[str]
    layer: Any = None  # the Keras layer (leaf layers only), for weight health
    record_names: list[str] = field(default_factory=list)  # set when the outputs are reduced
    ranks: list[int | None] = field(default_factory=list)


def _graph_of(model):
    """The functional graph behind a model (Sequential models keep theirs in ``_functional``)."""
    if hasattr(model, "_nodes_by_depth") and hasattr(model, "_run_through_graph"):
        return model
    functional = getattr(model, "_functional", None)
    if functional is not None and hasattr(functional, "_nodes_by_depth"):
        return functional
    return None


def _is_sequential_unbuilt(op) -> bool:
    return type(op).__name__ == "Sequential" and _graph_of(op) is None


def _call_op(op, args, kwargs):
    # Inference mode for every layer that takes a training flag (what Functional.call does).
    context_args = getattr(op, "_call_context_args", None)
    if context_args is not None:
        if "training" in context_args:
            kwargs = dict(kwargs, training=False)
    elif getattr(op, "_call_has_training_arg", False):
        kwargs = dict(kwargs, training=False)
    return op(*args, **kwargs)


def _shape_of(x) -> tuple:
    shape = getattr(x, "shape", None)
    if shape is None:
        return ()
    return tuple(None if d is None else int(d) for d in shape)


def _dtype_name(x) -> str:
    dtype = getattr(x, "dtype", None)
    return str(getattr(dtype, "name", dtype))


class _Walker:
    """Runs a model node by node (recursing into nested models), reducing every output at once.

    Each output is reduced as soon as it exists (``reduce(meta, outputs)``) and dropped as soon
    as its last consumer has run, so eagerly at most the tensors of the live frontier are held
    (as in a plain forward pass); inside a ``tf.function`` the same walk builds the graph.
    """

    def __init__(self, reduce: Callable[[_EntryMeta, list], Any], preview_path: str | None = None) -> None:
        self.entries: list[_EntryMeta] = []
        self.results: list[Any] = []
        self._reduce = reduce
        self._preview_path = preview_path

    def _add(self, meta: _EntryMeta, outputs: list) -> int:
        self.entries.append(meta)
        self.results.append(self._reduce(meta, outputs) if outputs else None)
        return len(self.entries) - 1

    def run_model(self, model, flat_inputs: list, input_producers: list[int | None],
                  prefix: str, depth: int, parent: str | None) -> tuple[list, list[int | None]]:
        """Run ``model`` on ``flat_inputs``; return its flat outputs and their producer entries."""
        graph = _graph_of(model)
        if graph is None:
            return self._run_unbuilt_sequential(model, flat_inputs, input_producers, prefix,
                                                depth, parent)
        values: dict[int, Any] = {}
        producers: dict[int, int | None] = {}
        for symbolic, value, producer in zip(graph.inputs, flat_inputs, input_producers):
            values[id(symbolic)] = value
            producers[id(symbolic)] = producer
        depth_keys = sorted(graph._nodes_by_depth.keys(), reverse=True)
        # consumers left per tensor, so each can be released after its last use
        pending: dict[int, int] = {}
        for depth_key in depth_keys:
            for node in graph._nodes_by_depth[depth_key]:
                if node.operation and not node.is_input:
                    for x in node.input_tensors:
                        pending[id(x)] = pending.get(id(x), 0) + 1
        keep = {id(x) for x in graph.outputs}
        calls_per_op: dict[int, int] = {}
        for depth_key in depth_keys:
            for node in graph._nodes_by_depth[depth_key]:
                if not node.operation or node.is_input:
                    continue
                if any(id(x) not in values for x in node.input_tensors):
                    continue  # not reachable from the inputs (Keras skips these too)
                args, kwargs = node.arguments.fill_in(values)
                op = node.operation
                n_calls = calls_per_op.get(id(op), 0)
                calls_per_op[id(op)] = n_calls + 1
                name = op.name if n_calls == 0 else f"{op.name}#{n_calls}"
                path = f"{prefix}{name}"
                # producers in argument order (the first argument is the main input on ties)
                feeding = list(dict.fromkeys(p for p in (producers.get(id(x)) for x in node.input_tensors)
                                             if p is not None))
                inner = _graph_of(op) if hasattr(op, "layers") else None
                if inner is not None or _is_sequential_unbuilt(op):
                    outputs = self._run_nested(op, args, feeding, node, path, name, depth, parent,
                                               [producers.get(id(x)) for x in node.input_tensors])
                else:
                    result = _call_op(op, args, kwargs)
                    flat = _flatten(result)
                    index = self._add(_EntryMeta(
                        path=path, name=name, type=type(op).__name__, depth=depth, parent=parent,
                        is_container=False, is_input=False, inputs=feeding,
                        output_shapes=[_shape_of(x) for x in node.outputs],
                        output_dtypes=[_dtype_name(x) for x in node.outputs],
                        layer=op if hasattr(op, "weights") else None), flat)
                    outputs = [(x, index) for x in flat]
                    del result, flat
                del args, kwargs
                for symbolic, (value, producer) in zip(node.outputs, outputs):
                    values[id(symbolic)] = value
                    producers[id(symbolic)] = producer
                del outputs
                for x in node.input_tensors:
                    pending[id(x)] -= 1
                    if pending[id(x)] == 0 and id(x) not in keep:
                        values.pop(id(x), None)
        flat_out = [values[id(x)] for x in graph.outputs]
        out_producers = [producers.get(id(x)) for x in graph.outputs]
        return flat_out, out_producers

    def _run_nested(self, op, args, feeding, node, path, name, depth, parent, arg_producers):
        """Expand a nested model: a container entry, then its layers as children."""
        container = _EntryMeta(
            path=path, name=name, type=type(op).__name__, depth=depth, parent=parent,
            is_container=True, is_input=False, inputs=feeding,
            output_shapes=[_shape_of(x) for x in node.outputs],
            output_dtypes=[_dtype_name(x) for x in node.outputs])
        container_index = self._add(container, [])
        inner_inputs = args[0] if len(args) == 1 else list(args)
        flat_inner = _flatten(inner_inputs)
        graph = _graph_of(op)
        if graph is not None and hasattr(graph, "_standardize_inputs"):
            try:
                flat_inner = list(graph._standardize_inputs(inner_inputs))
            except Exception:  # fall back to plain flattening (same order for lists)
                flat_inner = _flatten(inner_inputs)
        inner_producers = list(arg_producers)
        if len(inner_producers) != len(flat_inner):
            inner_producers = [feeding[0] if feeding else None] * len(flat_inner)
        outputs, out_producers = self.run_model(op, flat_inner, inner_producers, f"{path}/",
                                                depth + 1, path)
        if len(outputs) == 1 and out_producers[0] is not None and path != self._preview_path:
            # a nested model's output is its last layer's output: reuse that reduction
            source = self.entries[out_producers[0]]
            container.record_names, container.ranks = source.record_names, source.ranks
            self.results[container_index] = self.results[out_producers[0]]
        else:
            self.results[container_index] = self._reduce(container, outputs)
        return list(zip(outputs, out_producers))

    def _run_unbuilt_sequential(self, model, flat_inputs, input_producers, prefix, depth, parent):
        x = flat_inputs[0] if len(flat_inputs) == 1 else flat_inputs
        producer = input_producers[0] if input_producers else None
        for layer in model.layers:
            result = _call_op(layer, (x,), {})
            outputs = _flatten(result)
            index = self._add(_EntryMeta(
                path=f"{prefix}{layer.name}", name=layer.name, type=type(layer).__name__,
                depth=depth, parent=parent, is_container=False, is_input=False,
                inputs=[producer] if producer is not None else [],
                output_shapes=[_shape_of(o) for o in outputs],
                output_dtypes=[_dtype_name(o) for o in outputs], layer=layer), outputs)
            x, producer = result, index
        return _flatten(x), [producer] * len(_flatten(x))


def _flatten(structure) -> list:
    if isinstance(structure, (list, tuple)):
        out = []
        for item in structure:
            out.extend(_flatten(item))
        return out
    if isinstance(structure, dict):
        out = []
        for key in sorted(structure):
            out.extend(_flatten(structure[key]))
        return out
    return [structure]


# ---- device reductions --------------------------------------------------------------------


def _reduce_output(rows):
    """Everything the trace keeps of one (part of an) output, computed where the tensor lives.

    ``rows`` is the output reshaped to (rows, channels), channel-last. Returns the statistics
    reduction (``reduce_named_tf``), the underflow count and each channel's liveness (nonzero
    anywhere in these rows). Wrapped in a shape-generic ``tf.function`` (one graph per dtype), so
    a model with hundreds of layers adds hundreds of small call ops to a compiled trace, not tens
    of thousands of ops, and the eager trace never retraces.
    """

    tf = _tf()
    result: dict[str, Any] = {"records": reduce_named_tf("output", rows)}
    if rows.dtype.is_floating or rows.dtype.is_complex:
        magnitude = tf.abs(rows)
        tiny = float(np.finfo(magnitude.dtype.as_numpy_dtype).tiny)
        result["underflow"] = tf.reduce_sum(tf.cast(
            tf.logical_and(tf.not_equal(magnitude, 0), magnitude < tiny), tf.int64))
    else:
        result["underflow"] = tf.constant(0, tf.int64)
    alive = tf.not_equal(rows, tf.zeros([], rows.dtype)) if rows.dtype != tf.bool else rows
    result["alive"] = tf.reduce_any(alive, axis=0)
    return result


_REDUCE_OUTPUT_FNS: dict[str, Any] = {}
# Elements reduced at once in an eager trace. The reduction makes float64 temporaries several
# times the size of its input; slicing big outputs keeps the trace's peak memory near that of a
# plain forward pass (records merge exactly, so slicing changes no number).
REDUCE_CHUNK_ELEMENTS = 1 << 19


def _reduce_output_fn(tf, dtype):
    key = dtype.name
    if key not in _REDUCE_OUTPUT_FNS:
        _REDUCE_OUTPUT_FNS[key] = tf.function(
            _reduce_output, input_signature=[tf.TensorSpec([None, None], dtype)], autograph=False,
            experimental_attributes={"_noinline": True})
    return _REDUCE_OUTPUT_FNS[key]


def _as_rows(tf, x):
    """(rows, channels) view of a tensor: channel-last for rank >= 2, one column otherwise."""
    if x.shape.rank is not None and x.shape.rank >= 2:
        return tf.reshape(x, [-1, tf.shape(x)[-1]])
    return tf.reshape(x, [-1, 1])


def _reduce_parts(tf, x) -> list:
    """Reductions of ``x`` in row slices of at most REDUCE_CHUNK_ELEMENTS (one slice in graphs)."""
    rows = _as_rows(tf, x)
    fn = _reduce_output_fn(tf, rows.dtype)
    if not tf.executing_eagerly():
        return [fn(rows)]
    n_rows, n_channels = (int(d) for d in rows.shape)
    step = max(1, REDUCE_CHUNK_ELEMENTS // max(n_channels, 1))
    return [_host_part(fn(rows[start:start + step])) for start in range(0, max(n_rows, 1), step)]


def _host_part(part) -> dict[str, Any]:
    """One slice's reduction brought to the host (small: records, a count, a channel mask)."""
    return {"records": {k: stats_from_reduction(v) for k, v in part["records"].items()},
            "underflow": int(part["underflow"]), "alive": np.asarray(part["alive"])}


def _merge_parts(parts: list) -> tuple[dict[str, TensorStats], int, np.ndarray]:
    records: dict[str, TensorStats] = {}
    underflow = 0
    alive = None
    for part in parts:
        for name, value in part["records"].items():
            record = value if isinstance(value, TensorStats) else stats_from_reduction(value)
            records[name] = records[name].merge(record) if name in records else record
        underflow += int(np.asarray(part["underflow"]))
        mask = np.asarray(part["alive"]).astype(bool)
        alive = mask if alive is None else (alive | mask)
    return records, underflow, alive if alive is not None else np.zeros(0, bool)


def records_of(name: str, tensor) -> dict[str, TensorStats]:
    """Statistics records of one tensor (``name`` or ``name.amplitude``/``name.phase``), reduced
    on its device by a cached shape-generic compiled function (no retracing per shape)."""

    tf = _tf()
    records, _, _ = _merge_parts(_reduce_parts(tf, tf.convert_to_tensor(tensor)))
    return {name + key[len("output"):]: record for key, record in records.items()}


def _reduce_entry(tf, meta: _EntryMeta, outputs: list, want_preview: bool) -> dict[str, Any]:
    """Reductions of one entry's outputs (parts per output); names and ranks go to ``meta``
    (static, so a compiled trace returns only tensors)."""
    tensors = [x for x in outputs if hasattr(x, "dtype") and hasattr(x, "shape")]
    tensors = [x for x in tensors if (lambda d: d.is_floating or d.is_complex or d.is_integer
                                      or d.is_bool)(tf.as_dtype(x.dtype))]
    single = len(tensors) == 1
    meta.record_names = ["output" if single else f"output_{i}" for i in range(len(tensors))]
    meta.ranks = [x.shape.rank for x in tensors]
    result: dict[str, Any] = {"outputs": [_reduce_parts(tf, x) for x in tensors]}
    if want_preview and tensors:
        result["preview"] = _preview_tf(tf, tensors[0])
    return result


def _host_entry(meta: _EntryMeta, result) -> tuple[dict[str, TensorStats], int, int, int]:
    """(records, channels, dead channels, underflow) of one entry, on the host."""
    records: dict[str, TensorStats] = {}
    channels = dead = underflow = 0
    parts_per_output = (result or {}).get("outputs", [])
    for i, (name, rank, parts) in enumerate(zip(meta.record_names, meta.ranks, parts_per_output)):
        part_records, part_underflow, alive = _merge_parts(parts)
        for key, record in part_records.items():
            records[name + key[len("output"):]] = record
        underflow += part_underflow
        if i == 0 and rank is not None and rank >= 2:
            channels, dead = int(alive.size), int(alive.size - alive.sum())
    return records, channels, dead, underflow


def _preview_tf(tf, x):
    """Sample 0, channel 0 (index 0 of every axis past the second), strided to <= 64 per side."""
    sample = x[0] if x.shape.rank and x.shape.rank >= 1 else tf.reshape(x, [1])
    while sample.shape.rank > 2:
        sample = sample[..., 0]
    if sample.shape.rank == 1:
        sample = tf.reshape(sample, [1, -1])
    elif sample.shape.rank == 0:
        sample = tf.reshape(sample, [1, 1])
    height, width = tf.shape(sample)[0], tf.shape(sample)[1]
    stride_y = tf.maximum(1, (height + PREVIEW_MAX_SIDE - 1) // PREVIEW_MAX_SIDE)
    stride_x = tf.maximum(1, (width + PREVIEW_MAX_SIDE - 1) // PREVIEW_MAX_SIDE)
    return {"image": sample[::stride_y, ::stride_x],
            "stride": tf.stack([stride_y, stride_x])}


def _walk(model, flat_inputs: list, preview_path: str | None) -> tuple[list[_EntryMeta], list]:
    """Walk the whole model once; return the entries and their reductions (tensors)."""

    tf = _tf()
    if _graph_of(model) is None and not _is_sequential_unbuilt(model):
        raise TypeError(f"{type(model).__name__} is not a functional or Sequential model")
    walker = _Walker(lambda meta, outputs: _reduce_entry(tf, meta, outputs, meta.path == preview_path),
                     preview_path)
    producers: list[int | None] = []
    for symbolic, value in zip(_model_inputs(model), flat_inputs):
        name = _input_name(symbolic)
        producers.append(walker._add(_EntryMeta(
            path=name, name=name, type="InputLayer", depth=0, parent=None, is_container=False,
            is_input=True, inputs=[], output_shapes=[_shape_of(symbolic)],
            output_dtypes=[_dtype_name(symbolic)]), [value]))
    walker.run_model(model, list(flat_inputs), producers, "", 0, None)
    return walker.entries, walker.results


class _CompiledTrace:
    """The trace of one model as one ``tf.function`` (one per preview selection).

    Worth it when the same model is traced many times (benchmarks, repeated probes): building
    the graph costs seconds for a large model, after which a trace costs little more than the
    forward pass and its reductions.
    """

    def __init__(self, model) -> None:
        self._model_ref = weakref.ref(model)
        self._functions: dict[str | None, Any] = {}
        self.entries: list[_EntryMeta] = []

    def __call__(self, flat_inputs: list, preview_path: str | None) -> tuple[list[_EntryMeta], list]:
        if preview_path not in self._functions:

            compiled = self

            def traced(inputs):
                entries, results = _walk(compiled._model_ref(), list(inputs), preview_path)
                compiled.entries = entries
                return results

            self._functions[preview_path] = _tf().function(traced, reduce_retracing=True,
                                                           autograph=False)
        results = self._functions[preview_path](flat_inputs)
        return self.entries, results


_COMPILED: "weakref.WeakKeyDictionary[Any, _CompiledTrace]" = weakref.WeakKeyDictionary()


def _compiled_for(model) -> _CompiledTrace:
    compiled = _COMPILED.get(model)
    if compiled is None:
        compiled = _CompiledTrace(model)
        _COMPILED[model] = compiled
    return compiled


def _model_inputs(model) -> list:
    graph = _graph_of(model)
    if graph is not None:
        return list(graph.inputs)
    return list(getattr(model, "inputs", None) or [])


def _input_name(symbolic) -> str:
    """The name of the InputLayer behind a model input (what model configs and cards call it)."""
    history = getattr(symbolic, "_keras_history", None)
    operation = getattr(history, "operation", None)
    name = getattr(operation, "name", None) or getattr(symbolic, "name", None) or "input"
    return str(name).split(":")[0]


def flatten_model_inputs(model, inputs) -> list[np.ndarray]:
    """Model inputs (array, list, or dict by input name) in the order of ``model.inputs``."""
    symbolic = _model_inputs(model)
    if isinstance(inputs, Mapping):
        names = [_input_name(s) for s in symbolic]
        missing = [n for n in names if n not in inputs]
        if missing:
            if len(inputs) == len(names):  # dict keyed by role or position: keep its order
                return [np.asarray(v) for v in inputs.values()]
            raise KeyError(f"model inputs {missing} not given (have {sorted(inputs)})")
        return [np.asarray(inputs[n]) for n in names]
    if isinstance(inputs, (list, tuple)):
        return [np.asarray(v) for v in inputs]
    return [np.asarray(inputs)]


_CONFIG_SKIP = ("name", "trainable", "dtype")


def _plain_config(layer) -> dict[str, Any]:
    """The scalar (and short list) values of a layer's config, for display."""
    try:
        config = layer.get_config() if layer is not None and hasattr(layer, "get_config") else {}
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


def trace_model(model, inputs, *, model_name: str = "model", split: str = "data",
                preview: str | None = None, positions: str | None = None,
                with_weights: bool = True, compiled: bool = False,
                collapse_threshold: float = COLLAPSE_NONZERO_MAX,
                healthy_threshold: float = HEALTHY_NONZERO_MIN) -> Trace:
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
        Run the walk as one ``tf.function`` (cached per model). The default runs the layers
        eagerly and each output's reduction as a compiled function, which avoids building a
        graph of the whole model: best for one-off traces. ``compiled=True`` pays that once and
        is fastest for repeated traces of the same model.
    collapse_threshold, healthy_threshold : float
        The first-collapse rule (see the module docstring).

    Returns
    -------
    Trace
    """

    tf = _tf()
    started = time.perf_counter()
    flat = flatten_model_inputs(model, inputs)
    n_samples = int(flat[0].shape[0]) if flat and flat[0].ndim else 0
    tensors = [tf.convert_to_tensor(v) for v in flat]
    if compiled:
        entries, results = _compiled_for(model)(tensors, preview)
    else:
        entries, results = _walk(model, tensors, preview)
    del tensors
    layers: list[LayerTrace] = []
    preview_result: LayerPreview | None = None
    for meta, result in zip(entries, results):
        outputs, channels, dead_channels, underflow = _host_entry(meta, result)
        merged = TensorStats.merge_all(
            rec for name, rec in outputs.items() if not name.endswith(".phase"))
        layers.append(LayerTrace(
            path=meta.path, name=meta.name, type=meta.type, depth=meta.depth, parent=meta.parent,
            is_container=meta.is_container, is_input=meta.is_input,
            inputs=[entries[i].path for i in meta.inputs],
            output_shapes=meta.output_shapes, output_dtypes=meta.output_dtypes,
            output=merged, outputs=outputs, channels=channels, dead_channels=dead_channels,
            underflow_count=underflow,
            weights=weight_health(meta.layer) if (with_weights and meta.layer is not None) else {},
            activation=_activation_name(meta.layer), config=_plain_config(meta.layer)))
        if result and "preview" in result and meta.path == preview:
            preview_result = LayerPreview(
                path=meta.path, image=result["preview"]["image"].numpy(),
                stride=tuple(int(s) for s in result["preview"]["stride"].numpy()))
    trace = Trace(model=model_name, split=split, n_samples=n_samples, layers=layers,
                  first_collapse=find_first_collapse(layers, collapse_threshold,
                                                     healthy_threshold),
                  preview=preview_result, positions=positions)
    trace.seconds = time.perf_counter() - started
    return trace


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

    def num(value: float) -> float | None:
        return float(value) if value is not None and math.isfinite(value) else None

    def pair(x: LayerTrace | None, y: LayerTrace | None, getter):
        return (num(getter(x)) if x else None, num(getter(y)) if y else None)

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
